"""Layer 2: a counting XDP drop program, attached with a BPF link.

The receiving end for transmit benchmarks and the live-frames generator
(:mod:`xdp_socket.gen`): a veth transmits redirected frames only while its
peer runs an XDP program, and this one counts each frame and drops it at the
earliest point.

Ownership: the map, the program and the link are three fds, each held by one
:class:`~xdp_socket._sys.fd.OwnedFd`. A forgotten :class:`XdpDrop` is freed
by reference counting (it is in no reference cycle): the link fd closes, and
the kernel detaches the program from the interface with it. Dropping it that
way emits a :class:`ResourceWarning`, as an unclosed file does.
"""

from __future__ import annotations

import contextlib
import errno

from . import iface as _iface
from ._sys import bpf
from ._sys import bpf_asm as asm
from ._sys import consts as C
from ._sys.fd import OwnedFd
from .config import XDP_MODE_FLAGS
from .errors import XdpError, XdpProgramConflictError

__all__ = ["XdpDrop", "xdp_drop"]

DROP_PROG_NAME = "xsk_py_drop"
DROP_MAP_NAME = "xsk_py_dropcnt"
_LICENSE = "Dual MIT/GPL"


def drop_program_insns(map_fd: int) -> bytes:
    """Count every frame in slot 0 of the u64 array ``map_fd``, then drop it."""
    atomic_add_dw = C.BPF_ATOMIC | asm.BPF_DW | asm.BPF_STX
    return b"".join(
        [
            asm.st_w(asm.R10, -4, 0),  # key 0, on the stack
            asm.mov64_reg(asm.R2, asm.R10),
            asm.alu64_imm("add", asm.R2, -4),
            asm.ld_map_fd(asm.R1, map_fd),
            asm.call(C.BPF_FUNC_map_lookup_elem),
            asm.jmp_imm("jeq", asm.R0, 0, 2),  # the verifier insists on the NULL check
            asm.mov64_imm(asm.R1, 1),
            # lock *(u64 *)(r0 + 0) += r1: frames may arrive on several CPUs at once
            asm.insn(atomic_add_dw, asm.R0, asm.R1, 0, C.BPF_ATOMIC_ADD),
            asm.mov64_imm(asm.R0, C.XDP_DROP),
            asm.exit_(),
        ]
    )


class XdpDrop:
    """A counting drop program attached to an interface (see :func:`xdp_drop`)."""

    def __init__(self, iface: str | int, mode: str = "native") -> None:
        self._map: OwnedFd | None = None
        self._prog: OwnedFd | None = None
        self._link: OwnedFd | None = None
        self._final = 0
        if not isinstance(mode, str) or mode not in XDP_MODE_FLAGS:
            raise ValueError(f"mode must be one of {', '.join(XDP_MODE_FLAGS)}; got {mode!r}")
        self.ifname, self.ifindex = _iface.resolve_interface(iface)
        self.mode = mode
        step = "attach XDP drop program"
        # No netlink look before attaching: the kernel refuses a link over any
        # program in the same or the other mode (EBUSY / EEXIST, below), which
        # is the same check without the race between looking and attaching.
        try:
            # Each fd gets its owner the moment it exists: an exception (or
            # KeyboardInterrupt) between two steps leaks nothing.
            self._map = OwnedFd(bpf.map_create(
                C.BPF_MAP_TYPE_ARRAY, 4, 8, 1, DROP_MAP_NAME, ifname=self.ifname
            ))
            self._prog = OwnedFd(bpf.prog_load(
                C.BPF_PROG_TYPE_XDP,
                drop_program_insns(self._map.fileno()),
                _LICENSE,
                DROP_PROG_NAME,
                ifname=self.ifname,
            ))
            self.prog_id = bpf.prog_get_info(self._prog.fileno()).id
            try:
                # A BPF link, not netlink: the program leaves the interface
                # when the link fd closes, even if the process dies.
                link_fd = bpf.link_create(
                    self._prog.fileno(), self.ifindex, C.BPF_XDP, XDP_MODE_FLAGS[mode],
                    ifname=self.ifname,
                )
            except XdpError as e:
                # EBUSY: a program or link in this mode; EEXIST: a program in
                # the other mode (net/core/dev.c dev_xdp_attach).
                if e.errno in (errno.EBUSY, errno.EEXIST):
                    raise self._conflict(step, _iface.xdp_state(self.ifindex).prog_ids) from None
                raise
            # The link is what a forgotten XdpDrop leaves behind that matters
            # (the interface drops every frame): its owner is the one that warns.
            self._link = OwnedFd(link_fd, f"unclosed XdpDrop on {self.ifname}")
        except BaseException:
            self.close()
            raise

    def _conflict(self, step: str, prog_ids: tuple[int, ...]) -> XdpProgramConflictError:
        ids = ", ".join(map(str, prog_ids)) or "?"
        return XdpProgramConflictError(
            errno.EBUSY,
            step,
            self.ifname,
            None,
            f"{self.ifname} already runs XDP program id {ids}; xdp_drop never replaces one",
        )

    def count(self) -> int:
        """Frames dropped (and counted) so far; after :meth:`close`, the final count."""
        if self._map is None:
            return self._final
        return bpf.map_lookup_elem(self._map.fileno(), 0, ifname=self.ifname) or 0

    def reset(self) -> None:
        """Set the count back to 0."""
        if self._map is None or self._link is None:
            raise ValueError("the drop program was detached")
        bpf.map_update_elem(self._map.fileno(), 0, 0, ifname=self.ifname)

    @property
    def closed(self) -> bool:
        return self._link is None

    def close(self) -> None:
        """Detach the program and free it (idempotent); :meth:`count` keeps the final count."""
        # Detach first, then read the count, which can no longer change.
        link, self._link = self._link, None
        if link is not None:
            link.close()
        if self._map is not None:
            with contextlib.suppress(OSError):
                self._final = self.count()
        prog, self._prog = self._prog, None
        mp, self._map = self._map, None
        for owned in (prog, mp):
            if owned is not None:
                owned.close()

    def __enter__(self) -> XdpDrop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<XdpDrop {self.ifname} {self.mode}{' (detached)' if self.closed else ''}>"


def xdp_drop(iface: str | int, *, mode: str = "native") -> XdpDrop:
    """Attach a tiny XDP program to ``iface`` that counts and drops every frame.

    Use it as a context manager; ``.count()`` reads the counter::

        with xdp_drop("vb") as sink, TrafficGenerator("va") as gen:
            gen.run(count=1_000_000)
            assert sink.count() == 1_000_000

    It gives transmit benchmarks a peer that discards at the earliest point,
    and a veth peer the XDP program the live-frames generator needs. Attached
    with a BPF link (``mode`` ``"native"`` or ``"skb"``): it leaves the
    interface when the context ends, when the object is dropped without
    ``close()`` (with a :class:`ResourceWarning`), or when the process dies.
    Refuses, with :class:`~xdp_socket.errors.XdpProgramConflictError`, an
    interface that already runs any XDP program.
    """
    return XdpDrop(iface, mode)
