"""Layer 2: the built-in XDP program and its XSKMAP, shared per interface.

Rules this module keeps:

* The built-in program is assembled here (no clang): it reads
  ``ctx->rx_queue_index`` and returns ``bpf_redirect_map(&xskmap, queue,
  XDP_PASS)``. The low bits of the helper's flags are the action to take when
  the map has no socket for that queue, so frames on queues nobody listens to
  reach the kernel stack untouched.
* We recognise our own program by its name, :data:`BUILTIN_PROG_NAME`. We
  never replace or detach a program that is not ours: that is a
  :class:`~xdp_socket.errors.XdpProgramConflictError`.
* The program is attached with a BPF link (BPF_LINK_CREATE), never pinned: a
  link lives exactly as long as some fd refers to it, so the program leaves
  the interface when the last socket that needs it is released *or* when the
  last process holding it dies, with no cleanup step that could be skipped.
* One program + map + link per interface per process, shared by all sockets
  of the process on that interface (one map slot per queue). A second
  process that finds our program attached *adopts* it: it opens the program's
  map by id and takes its own fd on the existing link, which keeps the
  program attached while it needs it.
* **Lifetimes without locks in finalizers.** The attachment's three fds are
  owned by the :class:`_Attachment`; each socket's :class:`XskMapEntry` holds
  a plain reference to it, and the registry only a weak one. So the last
  socket to let go (by ``close()``, or by being dropped) frees the attachment
  by reference counting, and its finalizer closes link, map and program: a
  leaf action that takes no lock. Releasing an entry only drops that
  reference; the socket's map slot needs no delete, because the kernel
  removes a socket from every XSKMAP when the socket is released. The
  registry's lock guards the dictionary only and is never held across a
  netlink or bpf call, a thread join, or anything that may run a finalizer
  that could want it.
* Interfaces are keyed by (network namespace, ifindex): an ifindex means
  nothing outside its namespace.
* **Filters** (``XdpConfig(filter=...)``): the attachment then runs the
  filter's program (:mod:`xdp_socket.filter`, named
  :data:`~xdp_socket.filter.FILTER_PROG_NAME`) instead of the plain redirect.
  One program serves the whole interface, so every socket on it must ask for
  the same filter (or all for none); a socket that asks for another one gets
  :class:`~xdp_socket.errors.XdpBusyError`. Another process's filter program
  is adopted only when it is the same filter: the kernel's tag of our own
  translation, loaded against the adopted map, must equal the attached one's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import weakref
from dataclasses import dataclass, field

from . import filter as _filter
from . import iface as _iface
from ._check import check_int
from ._sys import bpf
from ._sys import bpf_asm as asm
from ._sys import consts as C
from .config import XDP_MODE_FLAGS, XDP_MODES
from .errors import XdpBusyError, XdpError, XdpProgramConflictError, xdp_error

__all__ = [
    "BUILTIN_PROG_NAME",
    "XSKMAP_NAME",
    "XskMapEntry",
    "attach_xsk",
    "builtin_program_attached",
    "builtin_program_insns",
]

BUILTIN_PROG_NAME = "xsk_py_redir"  # <= 15 chars (BPF_OBJ_NAME_LEN - 1)
XSKMAP_NAME = "xsk_py_map"
_LICENSE = "Dual MIT/GPL"

# How often to start over when the interface's XDP state changes under us
# (another process attaching or detaching at the same moment).
_RACE_RETRIES = 5


def builtin_program_insns(xskmap_fd: int) -> bytes:
    """The built-in redirect program for the XSKMAP behind ``xskmap_fd``."""
    return b"".join(
        [
            # r2 = ctx->rx_queue_index (r1 holds the struct xdp_md pointer on entry)
            asm.ldx_w(asm.R2, asm.R1, C.XDP_MD_RX_QUEUE_INDEX),
            asm.ld_map_fd(asm.R1, xskmap_fd),
            # flags: action when the map has no socket for this queue
            asm.mov64_imm(asm.R3, C.XDP_PASS),
            asm.call(C.BPF_FUNC_redirect_map),
            asm.exit_(),  # return what bpf_redirect_map returned
        ]
    )


def _netns_key() -> int:
    # The inode of the thread's network namespace; 0 if /proc is unavailable
    # (then all namespaces share keys, which is only wrong in multi-netns use).
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return 0


def _close_fds(*fds: int | None) -> None:
    # Closing the link fd first detaches the program (if it was the last
    # reference), then map and program are freed with their last fd.
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class _Attachment:
    """The built-in program on one interface, as held by this process: owns
    the link, map and program fds, closed when the last socket lets go of
    the attachment (explicit :meth:`close` only on set-up failures)."""

    def __init__(self, ifname: str, ifindex: int, prog_fd: int, map_fd: int,
                 link_fd: int | None, prog_id: int, mode: str, max_entries: int,
                 filter: _Filter = None) -> None:
        self.ifname = ifname
        self.ifindex = ifindex
        self.prog_fd = prog_fd
        self.map_fd = map_fd
        self.link_fd = link_fd  # None when adopted from a netlink attachment (no link to hold)
        self.prog_id = prog_id
        self.mode = mode
        self.max_entries = max_entries
        self.filter = filter  # the classic program it runs, None for the plain redirect
        self._finalizer = weakref.finalize(self, _close_fds, link_fd, map_fd, prog_fd)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


# A filter as the attachment knows it: the classic program, None for the
# plain redirect, or _OTHER_FILTER for another process's filter program that
# is not ours.
_Filter = tuple[tuple[int, int, int, int], ...] | str | None
_OTHER_FILTER = "another process's filter"


# Guards the dictionary only (see the module docstring); entries vanish by
# themselves when their attachment is freed.
_lock = threading.Lock()
_registry: weakref.WeakValueDictionary[tuple[int, int], _Attachment] = (
    weakref.WeakValueDictionary()
)


def _reinit_after_fork() -> None:
    # A child forked while another thread held the lock would deadlock on it.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_after_fork)


@dataclass(eq=False)
class XskMapEntry:
    """A socket's slot in an XSKMAP; for the built-in program also a reference
    on the attachment (dropped by :meth:`release`, or with the entry)."""

    map_fd: int  # the XSKMAP fd (owned by the attachment / the user)
    prog_id: int | None  # id of the built-in program, None when the user passed their own map
    mode: str | None  # "native" | "skb" | None
    queue_id: int
    ifname: str
    _attachment: _Attachment | None = field(default=None, repr=False)
    _released: bool = field(default=False, repr=False)

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Drop this entry's reference on the attachment. Idempotent, takes no
        lock and makes no system call, so it is safe anywhere (a finalizer, a
        signal handler, another thread). The last reference closes link, map
        and program fds, which detaches the program unless another process
        still holds it. The map slot itself is emptied by the kernel when the
        socket is released."""
        self._released = True
        self._attachment = None


def _check_args(queue_id: int, xsk_fd: int, mode: str) -> None:
    if not isinstance(mode, str) or mode not in XDP_MODES:
        raise ValueError(f"mode must be one of {', '.join(XDP_MODES)}; got {mode!r}")
    check_int("queue_id", queue_id)
    check_int("xsk_fd", xsk_fd, what="a file descriptor")


def attach_xsk(
    ifname: str,
    ifindex: int,
    queue_id: int,
    xsk_fd: int,
    *,
    mode: str = "auto",
    xskmap_fd: int | None = None,
    filter: str | tuple[tuple[int, int, int, int], ...] | None = None,
    key: int | None = None,
) -> XskMapEntry:
    """Make frames received on ``ifname`` queue ``queue_id`` go to socket ``xsk_fd``.

    With ``xskmap_fd`` (a user's XSKMAP, used by the user's own program) only
    the map slot is set: slot ``key``, by default ``queue_id``. Otherwise the
    built-in program is attached to the interface (or this process's
    attachment, or another process's attachment of it, is reused) and the
    socket goes into its map. ``mode``: ``"native"``
    (driver XDP), ``"skb"`` (generic XDP) or ``"auto"`` (native, falling back
    to skb when the driver has no XDP support). ``filter`` (an expression or
    classic BPF) makes the program redirect only the frames that match.

    Raises :class:`XdpProgramConflictError` when a program that is not ours is
    attached, :class:`XdpBusyError` when the queue already has a socket in the
    map, our program runs in another mode than asked, or with another filter.
    """
    _check_args(queue_id, xsk_fd, mode)
    cbpf: _Filter = None
    if filter is not None:
        if xskmap_fd is not None:
            raise ValueError("filter and xskmap_fd exclude each other")
        cbpf = tuple(tuple(i) for i in _filter.as_cbpf(filter))  # type: ignore[misc]
    if xskmap_fd is not None:
        check_int("xskmap_fd", xskmap_fd, what="a file descriptor")
        info = bpf.map_get_info(xskmap_fd)
        if info.type != C.BPF_MAP_TYPE_XSKMAP:
            raise ValueError(f"xskmap_fd is a BPF map of type {info.type}, not an XSKMAP")
        slot = queue_id if key is None else key
        if slot >= info.max_entries:
            what = f"queue {queue_id}" if key is None else f"xskmap_key {key}"
            raise ValueError(f"{what} does not fit the XSKMAP ({info.max_entries} entries)")
        bpf.map_update_elem(xskmap_fd, slot, xsk_fd, ifname=ifname, queue_id=queue_id)
        return XskMapEntry(xskmap_fd, None, None, queue_id, ifname, None)

    reg_key = (_netns_key(), ifindex)
    att = _attachment_for(reg_key, ifname, ifindex, mode, queue_id, cbpf)
    try:
        if att.filter != cbpf:
            raise XdpBusyError(
                errno.EBUSY,
                "attach XDP program",
                ifname,
                queue_id,
                f"the XDP program on {ifname} runs {_describe(att.filter)}, this socket asks "
                f"for {_describe(cbpf)}; sockets on one interface share one program, so "
                "they need the same filter (or none)",
            )
        if mode != "auto" and att.mode != mode:
            raise XdpBusyError(
                errno.EBUSY,
                "attach XDP program",
                ifname,
                queue_id,
                f"the built-in program is already attached in {att.mode} mode, "
                f"not {mode}; use mode='auto' or '{att.mode}'",
            )
        if queue_id >= att.max_entries:
            raise xdp_error(
                errno.EINVAL,
                "insert socket into XSKMAP",
                ifname,
                queue_id,
                f"{ifname} has {att.max_entries} RX queues (0..{att.max_entries - 1})",
            )
        try:
            # BPF_NOEXIST: never steal a queue from another socket (of this
            # or another process sharing the program).
            bpf.map_update_elem(
                att.map_fd, queue_id, xsk_fd, C.BPF_NOEXIST, ifname=ifname, queue_id=queue_id
            )
        except XdpError as e:
            if e.errno == errno.EEXIST:
                raise XdpBusyError(
                    errno.EBUSY,
                    "insert socket into XSKMAP",
                    ifname,
                    queue_id,
                    "another socket already receives this queue",
                ) from None
            raise
    except BaseException:
        # The traceback keeps this frame: without this line it would keep the
        # attachment (and so the program on the interface) alive with it.
        att = None  # type: ignore[assignment]
        raise
    return XskMapEntry(att.map_fd, att.prog_id, att.mode, queue_id, ifname, att)


def _describe(f: _Filter) -> str:
    if f is None:
        return "no filter"
    if isinstance(f, str):
        return f
    return f"a filter of {len(f)} classic instructions"


def _attachment_for(key: tuple[int, int], ifname: str, ifindex: int, mode: str,
                    queue_id: int, cbpf: _Filter = None) -> _Attachment:
    """This process's attachment on the interface, made or adopted if there
    is none. The registry lock is held only to read and write the dictionary:
    netlink and bpf calls run outside it (two threads racing to attach find
    each other through the kernel, as two processes do)."""
    with _lock:
        att = _registry.get(key)
    if att is not None and not _still_attached(att):
        # The interface was deleted or someone detached our link: the entries
        # that hold the old attachment let go of it on their own.
        with _lock:
            if _registry.get(key) is att:
                del _registry[key]
        att = None
    if att is None:
        att = _acquire(ifname, ifindex, mode, queue_id, cbpf)
        with _lock:
            # Another thread may have published one meanwhile (then ours is an
            # adoption of the same program, and both work): keep the first.
            first = _registry.setdefault(key, att)
        if first is not att:
            att.close()
            att = first
    return att


def _still_attached(att: _Attachment) -> bool:
    try:
        return att.prog_id in _iface.xdp_state(att.ifindex).prog_ids
    except OSError:
        return False


def builtin_program_attached(ifindex: int) -> bool:
    """Is the built-in program (the plain redirect or a filter's program)
    attached to ``ifindex`` (by any process)?"""
    for prog_id in _iface.xdp_state(ifindex).prog_ids:
        try:
            info = _prog_info(prog_id)
            if _is_builtin(info) or _is_filter(info):
                return True
        except OSError:
            continue
    return False


def _prog_info(prog_id: int) -> bpf.ProgInfo:
    fd = bpf.prog_get_fd_by_id(prog_id)
    try:
        return bpf.prog_get_info(fd)
    finally:
        os.close(fd)


def _is_builtin(info: bpf.ProgInfo) -> bool:
    return (
        info.name == BUILTIN_PROG_NAME
        and info.type == C.BPF_PROG_TYPE_XDP
        and len(info.map_ids) == 1
    )


def _is_filter(info: bpf.ProgInfo) -> bool:
    return (
        info.name == _filter.FILTER_PROG_NAME
        and info.type == C.BPF_PROG_TYPE_XDP
        and len(info.map_ids) == 1
    )


def _same_filter(info: bpf.ProgInfo, map_fd: int, cbpf: _Filter) -> bool:
    """Does the attached filter program ``info`` run ``cbpf``? The kernel's
    tag hashes the instructions with map fds blanked out, so our translation
    loaded against the same map has the same tag exactly when it is the same
    program."""
    if cbpf is None or isinstance(cbpf, str):
        return False
    fd = bpf.prog_load(C.BPF_PROG_TYPE_XDP, _filter.filter_program_insns(map_fd, cbpf),
                       _LICENSE, _filter.FILTER_PROG_NAME)
    try:
        return bpf.prog_get_info(fd).tag == info.tag
    finally:
        os.close(fd)


class _Retry(Exception):
    """The interface's XDP state changed while we looked at it."""


def _acquire(ifname: str, ifindex: int, mode: str, queue_id: int,
             cbpf: _Filter = None) -> _Attachment:
    for _ in range(_RACE_RETRIES):
        state = _iface.xdp_state(ifindex)
        try:
            if state.prog_ids:
                return _adopt(ifname, ifindex, mode, queue_id, state, cbpf)
            return _create(ifname, ifindex, mode, queue_id, cbpf)
        except _Retry:
            continue
    raise XdpBusyError(
        errno.EBUSY,
        "attach XDP program",
        ifname,
        queue_id,
        "the interface's XDP program keeps changing; retry later",
    )


def _conflict(
    ifname: str, queue_id: int, state: _iface.XdpState, prog_id: int, name: str
) -> XdpProgramConflictError:
    return XdpProgramConflictError(
        errno.EBUSY,
        "attach XDP program",
        ifname,
        queue_id,
        f"{ifname} already runs XDP program id {prog_id} '{name}' in {state.mode} mode, "
        "which xdp_socket did not load; detach it, or pass its XSKMAP as xskmap_fd",
    )


def _adopt(
    ifname: str, ifindex: int, mode: str, queue_id: int, state: _iface.XdpState,
    cbpf: _Filter = None,
) -> _Attachment:
    if state.mode not in ("native", "skb") or state.prog_id is None:
        # hw or several programs at once: not something we set up.
        names = []
        for pid in state.prog_ids:
            try:
                names.append(f"{pid} '{_prog_info(pid).name}'")
            except OSError:
                names.append(str(pid))
        raise XdpProgramConflictError(
            errno.EBUSY,
            "attach XDP program",
            ifname,
            queue_id,
            f"{ifname} runs XDP programs {', '.join(names)} in {state.mode} mode",
        )
    prog_id = state.prog_id
    try:
        prog_fd = bpf.prog_get_fd_by_id(prog_id)
    except OSError as e:
        if e.errno == errno.ENOENT:  # detached and freed since we asked
            raise _Retry from None
        raise
    fds: list[int] = [prog_fd]
    try:
        info = bpf.prog_get_info(prog_fd)
        if not _is_builtin(info) and not _is_filter(info):
            raise _conflict(ifname, queue_id, state, prog_id, info.name)
        map_fd = bpf.map_get_fd_by_id(info.map_ids[0])
        fds.append(map_fd)
        minfo = bpf.map_get_info(map_fd)
        if minfo.type != C.BPF_MAP_TYPE_XSKMAP:
            raise _conflict(ifname, queue_id, state, prog_id, info.name)
        adopted: _Filter = None
        if _is_filter(info):
            adopted = cbpf if _same_filter(info, map_fd, cbpf) else _OTHER_FILTER
        link_fd = _find_xdp_link(prog_id, ifindex)
        if link_fd is not None:
            fds.append(link_fd)
        # Between our netlink query and taking the link, the last holder may
        # have let go: then the program we hold is no longer attached.
        if prog_id not in _iface.xdp_state(ifindex).prog_ids:
            raise _Retry
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return _Attachment(
        ifname, ifindex, prog_fd, map_fd, link_fd, prog_id, state.mode, minfo.max_entries,
        adopted,
    )


def _find_xdp_link(prog_id: int, ifindex: int) -> int | None:
    """An fd on the XDP link that attaches ``prog_id`` to ``ifindex``, or None."""
    link_id = bpf.link_get_next_id(0)
    while link_id is not None:
        try:
            fd = bpf.link_get_fd_by_id(link_id)
        except OSError as e:
            if e.errno != errno.ENOENT:  # a link that went away meanwhile is fine
                raise
        else:
            try:
                li = bpf.link_get_info(fd)
            except OSError:
                os.close(fd)
                raise
            if li.type == C.BPF_LINK_TYPE_XDP and li.prog_id == prog_id and li.ifindex == ifindex:
                return fd
            os.close(fd)
        link_id = bpf.link_get_next_id(link_id)
    return None


def _load_frags_aware(insns: bytes, name: str, ifname: str, queue_id: int) -> int:
    """Load an XDP program as frags-aware (``BPF_F_XDP_HAS_FRAGS``) so it
    attaches to devices whose frames exceed a page (a 9000-byte MTU on veth)
    and passes multi-buffer packets to ``XDP_USE_SG`` sockets. The built-in
    program never reads packet data; the filter program reads only the first
    buffer directly (a load past it misses, see :mod:`xdp_socket.filter`) and
    takes ``len`` from ``bpf_xdp_get_buff_len``, which counts every fragment.
    Kernels before 5.18 do not know the flag (EINVAL): then it is loaded
    without it."""
    try:
        return bpf.prog_load(C.BPF_PROG_TYPE_XDP, insns, _LICENSE, name,
                             ifname=ifname, queue_id=queue_id,
                             prog_flags=C.BPF_F_XDP_HAS_FRAGS)
    except XdpError as e:
        if e.errno != errno.EINVAL:
            raise
    return bpf.prog_load(C.BPF_PROG_TYPE_XDP, insns, _LICENSE, name,
                         ifname=ifname, queue_id=queue_id)


def _create(ifname: str, ifindex: int, mode: str, queue_id: int,
            cbpf: _Filter = None) -> _Attachment:
    rx, _tx = _iface.queue_counts(ifindex)
    max_entries = max(rx, 1)
    if queue_id >= max_entries:
        raise xdp_error(
            errno.EINVAL,
            "insert socket into XSKMAP",
            ifname,
            queue_id,
            f"{ifname} has {rx} RX queues (0..{rx - 1})",
        )
    map_fd = bpf.map_create(
        C.BPF_MAP_TYPE_XSKMAP, 4, 4, max_entries, XSKMAP_NAME, ifname=ifname, queue_id=queue_id
    )
    fds = [map_fd]
    try:
        if cbpf is None or isinstance(cbpf, str):
            prog_fd = _load_frags_aware(builtin_program_insns(map_fd), BUILTIN_PROG_NAME,
                                        ifname, queue_id)
        else:
            prog_fd = _load_frags_aware(_filter.filter_program_insns(map_fd, cbpf),
                                        _filter.FILTER_PROG_NAME, ifname, queue_id)
        fds.append(prog_fd)
        tries = ["native", "skb"] if mode == "auto" else [mode]
        link_fd = None
        used = ""
        for i, m in enumerate(tries):
            try:
                link_fd = bpf.link_create(
                    prog_fd, ifindex, C.BPF_XDP, XDP_MODE_FLAGS[m], ifname=ifname, queue_id=queue_id
                )
                used = m
                break
            except XdpError as e:
                # EBUSY (native) / EEXIST (skb): a program appeared since we
                # looked; go back and decide between adopting and a conflict.
                if e.errno in (errno.EBUSY, errno.EEXIST):
                    raise _Retry from None
                # "auto": only a driver without native XDP sends us to skb.
                if i + 1 < len(tries) and e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                    continue
                if e.errno == errno.ERANGE:
                    # veth (and some drivers) refuse single-buffer XDP when a
                    # frame could exceed one page (peer MTU > 3506): our
                    # program is frags-aware except on kernels before 5.18
                    raise xdp_error(
                        e.errno, f"attach XDP program ({m} mode)", ifname, queue_id,
                        hint="the MTU (on veth: the peer's MTU) is too large for XDP "
                             "without multi-buffer; lower it to 3500 or less",
                    ) from None
                raise
        assert link_fd is not None
        fds.append(link_fd)
        prog_id = bpf.prog_get_info(prog_fd).id
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return _Attachment(ifname, ifindex, prog_fd, map_fd, link_fd, prog_id, used, max_entries,
                       cbpf)
