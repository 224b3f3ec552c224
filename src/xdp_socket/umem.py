"""Layer 2: the UMEM, the packet memory shared with the kernel.

One anonymous mapping of ``frame_count * frame_size`` bytes (rounded up to
whole huge pages when they are used), registered with an AF_XDP socket.
Frames are addressed by byte offset: frame ``i`` starts at ``i * frame_size``.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import resource
import socket

import numpy as np
import numpy.typing as npt

from ._sys import consts as C
from ._sys import xsk as _xsk
from .config import XdpConfig
from .errors import XdpError, xdp_error

__all__ = ["Umem"]


class Umem:
    """The packet buffer of one socket (later: shared by several)."""

    def __init__(self, config: XdpConfig, ifname: str, queue_id: int) -> None:
        self.frame_size = config.frame_size
        self.frame_count = config.frame_count
        self.headroom = config.headroom
        self.size = self.frame_size * self.frame_count
        self.huge_page = False
        self._mm = self._allocate(config.huge_page, ifname, queue_id)
        self.view = memoryview(self._mm)[: self.size]
        self.array: npt.NDArray[np.uint8] = np.frombuffer(self._mm, np.uint8, self.size).reshape(
            self.frame_count, self.frame_size
        )
        self.address = _xsk.buffer_address(self._mm)

    def _allocate(self, huge: bool | None, ifname: str, queue_id: int) -> mmap.mmap:
        hp = C.HUGE_PAGE_SIZE
        huge_len = -(-self.size // hp) * hp
        # Auto mode tries huge pages only when enough are free for the whole
        # UMEM (the seed checked for one page and used four) and falls back
        # quietly; huge=True must get them.
        if huge or (huge is None and _xsk.free_huge_pages() * hp >= huge_len):
            try:
                mm = _xsk.alloc_umem(huge_len, huge=True)
                self.huge_page = True
                return mm
            except OSError as e:
                if huge:
                    raise xdp_error(
                        e.errno or 12, f"allocate {huge_len >> 21} huge page(s) for the UMEM",
                        ifname, queue_id,
                        hint="not enough free 2 MiB huge pages (see /proc/sys/vm/nr_hugepages)",
                    ) from None
        try:
            return _xsk.alloc_umem(self.size, huge=False)
        except OSError as e:
            raise xdp_error(e.errno or 12, "allocate UMEM", ifname, queue_id) from None

    def register(self, sock: socket.socket, ifname: str, queue_id: int) -> None:
        args = (sock, self.address, self.size, self.frame_size, self.headroom, ifname, queue_id)
        # Without CAP_IPC_LOCK the kernel charges the UMEM to RLIMIT_MEMLOCK
        # and says ENOBUFS when it does not fit. The soft limit may be raised
        # to the hard one without privilege (libxdp's samples do the same),
        # then the registration is tried once more.
        for retry in (False, True):
            try:
                _xsk.register_umem(*args)
                return
            except XdpError as e:
                if e.errno != errno.ENOBUFS:
                    raise
            if retry or not _xsk.raise_memlock_to_hard():
                break
        soft, hard = _xsk.memlock_limits()

        def show(v: int) -> str:
            return "unlimited" if v == resource.RLIM_INFINITY else f"{v >> 10} KiB"

        raise xdp_error(
            errno.ENOBUFS, "register UMEM", ifname, queue_id,
            hint=f"the {self.size >> 20} MiB UMEM counts against the locked-memory limit "
                 f"(RLIMIT_MEMLOCK soft {show(soft)}, hard {show(hard)}): raise it "
                 f"(ulimit -l), grant CAP_IPC_LOCK, or use a smaller frame_count",
        )

    def frame_addrs(self, first: int, count: int) -> npt.NDArray[np.uint64]:
        """Byte addresses of frames ``first .. first+count-1``."""
        addrs: npt.NDArray[np.uint64] = np.arange(first, first + count, dtype=np.uint64)
        addrs *= np.uint64(self.frame_size)
        return addrs

    def close(self) -> None:
        """Unmap, unless somebody still holds a view into the packet memory
        (the user, or a thread still inside an operation): then the mapping
        stays until the last view is gone (never a dangling pointer). Our own
        views are only dropped, not released, for that reason."""
        self.array = np.empty((0, self.frame_size), np.uint8)
        self.view = memoryview(b"")
        with contextlib.suppress(BufferError):
            self._mm.close()
