"""Layer 2: the UMEM, the packet memory shared with the kernel.

One anonymous mapping of ``frame_count * frame_size`` bytes (rounded up to
whole huge pages when they are used), registered with an AF_XDP socket.
Frames are addressed by byte offset: frame ``i`` starts at ``i * frame_size``,
also when several sockets share the UMEM (addresses are UMEM-wide).

**Sharing** (``XDP_SHARED_UMEM``). A user creates a :class:`Umem` once and
passes it to every socket that should use it (``create_socket(...,
umem=u)``). Rules it keeps:

* **Frame ownership is exact.** Each socket leases a contiguous range of
  ``config.frame_count`` frames when it is created; its frames go to its own
  Fill, TX and free pools only, and come back to it (a frame forwarded to
  another socket's TX ring is routed back to the socket that owns it when its
  completion is read). A closed socket's range goes back to the UMEM for the
  next socket, unless some of its frames were lent to another socket (then a
  frame could still be on that socket's TX ring: the range is retired until
  the UMEM itself goes).
* **Registration.** The first socket registers the memory (``XDP_UMEM_REG``)
  and binds normally; every later one binds with ``XDP_SHARED_UMEM`` naming a
  live socket of the UMEM, and gets its own Fill and Completion rings. Flags
  (need_wakeup, copy/zero-copy, multi-buffer) are the first socket's: a later
  socket whose config asks for others is refused.
* **Sockets on the same queue** (``XdpConfig(xskmap_key=...)``). The kernel
  lets several sockets bind one interface queue when they share the UMEM;
  then they share that queue's buffer pool, so one Fill and one Completion
  ring serve them all (and a later one must not set up rings of its own:
  EINVAL). A :class:`_QueueGroup` owns that pair: it is a small socket of
  its own (an RX ring of one entry, in no XSKMAP, so it never receives)
  that is bound first and that every member names in
  ``sxdp_shared_umem_fd``, so any member may close first without leaving
  the shared rings mapped through a closed socket. RX frames of members go
  into the group's pool (the kernel fills any member's RX ring from the one
  Fill ring); TX frames stay each member's own, completions are routed to
  their owner. Members' leases stay with the group until its last member
  closes, then all go back to the UMEM.
* **Lifetime.** Each socket holds a reference to its UMEM (the UMEM refers to
  its sockets only weakly: no cycle). The mapping goes when the last socket is
  closed and the user has closed the :class:`Umem` (or dropped it): whichever
  comes last unmaps, and never under a view somebody still holds.

Bookkeeping that a finalizer must change (a forgotten socket giving its range
back) is queued without a lock and settled by the next lease, which holds it.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import mmap
import resource
import socket
import threading
import time
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _ring
from ._sys import consts as C
from ._sys import xsk as _xsk
from .config import XdpConfig
from .errors import XdpBusyError, XdpError, xdp_error

__all__ = ["Umem"]

# The kernel frees a closed socket's queue slot in deferred work; binding the
# same queue again right away fails with EBUSY for ~16 ms (32 ms max measured).
_BIND_BUSY_RETRY_S = 0.5


def bind_retrying(sock: socket.socket, ifindex: int, queue_id: int, flags: int, ifname: str,
                  shared_umem_fd: int = 0) -> None:
    """``bind()``, retrying EBUSY for up to 0.5 s (a queue just released)."""
    deadline = time.monotonic() + _BIND_BUSY_RETRY_S
    delay = 0.001
    while True:
        try:
            _xsk.bind(sock, ifindex, queue_id, flags, ifname, shared_umem_fd)
            return
        except XdpBusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.02)


class Umem:
    """Packet memory for one or several AF_XDP sockets.

    ``Umem(frame_count, frame_size, headroom=0, huge_page=None)`` maps
    ``frame_count`` frames; pass it as ``umem=`` to each socket you create.
    Each socket takes ``config.frame_count`` frames of it (set that in the
    socket's :class:`~xdp_socket.XdpConfig`; its ``frame_size`` and
    ``headroom`` must match the UMEM's). ``array`` is the whole UMEM as a
    ``(frame_count, frame_size)`` uint8 array.
    """

    def __init__(self, frame_count: int = 4096, frame_size: int = 4096, *, headroom: int = 0,
                 huge_page: bool | None = None) -> None:
        # XdpConfig validates the same fields the same way
        cfg = XdpConfig(frame_count=frame_count, frame_size=frame_size, headroom=headroom,
                        huge_page=huge_page)
        self._init(cfg, None, None, shared=True)

    @classmethod
    def _private(cls, config: XdpConfig, ifname: str, queue_id: int) -> Umem:
        """The UMEM of one socket that was given none (closed with it)."""
        self = cls.__new__(cls)
        self._init(config, ifname, queue_id, shared=False)
        return self

    def _init(self, config: XdpConfig, ifname: str | None, queue_id: int | None,
              shared: bool) -> None:
        self.frame_size = config.frame_size
        self.frame_count = config.frame_count
        self.headroom = config.headroom
        self.size = self.frame_size * self.frame_count
        self.huge_page = False
        self.shared = shared
        self._mm = self._allocate(config.huge_page, ifname, queue_id)
        self.view = memoryview(self._mm)[: self.size]
        self.array: npt.NDArray[np.uint8] = np.frombuffer(self._mm, np.uint8, self.size).reshape(
            self.frame_count, self.frame_size
        )
        self.address = _xsk.buffer_address(self._mm)
        self._lock = threading.Lock()
        self._free: list[tuple[int, int]] = [(0, self.frame_count)]  # (first, count), sorted
        # ranges given back by finalizers (deque.append is atomic: no lock)
        self._returned: collections.deque[tuple[int, int]] = collections.deque()
        # live sockets on this UMEM (weakly: a socket refers to its UMEM)
        self._sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        # same-queue groups, by (ifindex, queue) (weakly: their members hold them)
        self._groups: weakref.WeakValueDictionary[tuple[int, int], _QueueGroup] = (
            weakref.WeakValueDictionary())
        self.bind_flags: int | None = None  # the first socket's flags, once bound
        self._user_closed = not shared
        self._unmapped = False

    # --- the public face ------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (sockets already on the UMEM work on)."""
        return self._user_closed

    @property
    def free_frames(self) -> int:
        """Frames not leased to any socket."""
        with self._lock:
            self._settle()
            return sum(n for _, n in self._free)

    def close(self) -> None:
        """No new sockets on this UMEM; the memory is unmapped once the last
        socket on it is closed too (at once when there is none)."""
        self._user_closed = True
        if not any(not s.closed for s in list(self._sockets)):
            self._unmap()

    def __enter__(self) -> Umem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._user_closed else f"{self.free_frames} free"
        return f"<Umem {self.frame_count} x {self.frame_size} bytes, {state}>"

    # --- leases (the sockets' side) -------------------------------------------
    def _check_config(self, config: XdpConfig, ifname: str, queue_id: int) -> None:
        """Refuse a socket whose frame layout differs from the UMEM's."""
        if self._user_closed:
            raise ValueError("this Umem is closed: create a new one")
        for name in ("frame_size", "headroom"):
            if getattr(config, name) != getattr(self, name):
                raise ValueError(
                    f"socket on {ifname} queue {queue_id}: config.{name} "
                    f"{getattr(config, name)} differs from the shared Umem's "
                    f"{getattr(self, name)}"
                )

    def _lease(self, count: int, ifname: str, queue_id: int) -> int:
        """Take ``count`` adjacent free frames; returns the first one's index."""
        with self._lock:
            self._settle()
            for i, (first, n) in enumerate(self._free):
                if n >= count:
                    if n == count:
                        del self._free[i]
                    else:
                        self._free[i] = (first + count, n - count)
                    return first
            free = sum(n for _, n in self._free)
            largest = max((n for _, n in self._free), default=0)
        raise ValueError(
            f"socket on {ifname} queue {queue_id} asks for {count} frames (config.frame_count) "
            f"but the shared Umem has {free} free ({largest} adjacent): make the Umem larger "
            f"or give each socket fewer frames"
        )

    def _give_back(self, first: int, count: int) -> None:
        """A socket's range is free again. Takes no lock (finalizers call it)."""
        self._returned.append((first, count))

    def _settle(self) -> None:
        # (lock held) merge returned ranges into the sorted free list
        while self._returned:
            self._free.append(self._returned.popleft())
        self._free.sort()
        merged: list[tuple[int, int]] = []
        for first, n in self._free:
            if merged and merged[-1][0] + merged[-1][1] == first:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((first, n))
        self._free = merged

    def _share_source(self) -> Any:
        """A live, bound socket (core) of this UMEM to name in
        ``sxdp_shared_umem_fd``; None when there is none (then the next
        socket registers the memory itself)."""
        for s in [*self._sockets, *self._groups.values()]:
            if not s.closed:
                return s
        return None

    def _live_group(self, ifindex: int, queue_id: int) -> _QueueGroup | None:
        g = self._groups.get((ifindex, queue_id))
        return g if g is not None and not g.closed else None

    def _join_group(self, ifname: str, ifindex: int, queue_id: int, config: XdpConfig,
                    flags: int) -> _QueueGroup:
        """The queue's group, made (and bound) if there is none yet."""
        g = self._live_group(ifindex, queue_id)
        if g is None:
            source = self._share_source()
            g = _QueueGroup(self, ifname, ifindex, queue_id, config, flags, source)
            if self.bind_flags is None or source is None:
                self.bind_flags = flags
            self._groups[(ifindex, queue_id)] = g
        return g

    def _add_socket(self, core: Any, flags: int) -> None:
        if self.bind_flags is None or self._share_source() is None:
            self.bind_flags = flags
        self._sockets.add(core)

    def _detach(self, core: Any) -> None:
        """``core`` was closed: unmap if it was the last socket and the user
        closed the UMEM (a private UMEM: always)."""
        self._sockets.discard(core)
        group = getattr(core, "group", None)
        if group is not None:
            group.leave()
        if self._user_closed and self._share_source() is None:
            self._unmap()

    def _unmap(self) -> None:
        """Unmap, unless somebody still holds a view into the packet memory
        (the user, or a thread still inside an operation): then the mapping
        stays until the last view is gone (never a dangling pointer). Our own
        views are only dropped, not released, for that reason."""
        if self._unmapped:
            return
        self._unmapped = True
        self.array = np.empty((0, self.frame_size), np.uint8)
        self.view = memoryview(b"")
        with contextlib.suppress(BufferError):
            self._mm.close()

    # --- set-up ---------------------------------------------------------------
    def _allocate(self, huge: bool | None, ifname: str | None,
                  queue_id: int | None) -> mmap.mmap:
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

    def _register(self, sock: socket.socket, ifname: str, queue_id: int) -> None:
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

    def _frame_addrs(self, first: int, count: int) -> npt.NDArray[np.uint64]:
        """Byte addresses of frames ``first .. first+count-1``."""
        addrs: npt.NDArray[np.uint64] = np.arange(first, first + count, dtype=np.uint64)
        addrs *= np.uint64(self.frame_size)
        return addrs


def _close_group(sock: socket.socket, umem: Umem, leases: list[tuple[int, int]]) -> None:
    """A group nobody holds any more: close its socket, give its members'
    frames back (queued without a lock). A leaf action."""
    sock.close()
    for lease in leases:
        umem._give_back(*lease)
    leases.clear()


def release_mappings(areas: list[Any], maps: list[mmap.mmap]) -> None:
    """Release our views of ring mappings, then unmap them: a ring mapping
    holds its kernel socket (and queue) until unmapped. A mapping the user
    still views stays until that view goes (BufferError), never dangling."""
    for area in areas:
        area.release()
    for mm in maps:
        with contextlib.suppress(BufferError):  # a view still alive: unmapped with it
            mm.close()


class _QueueGroup:
    """The Fill and Completion ring of one interface queue, shared by every
    socket of a :class:`Umem` bound there with ``XdpConfig(xskmap_key=)``
    (see the module docstring). Owns a socket of its own (the first one bound
    to the queue, named by each member at bind), the two ring mappings, the
    pool of the members' RX frames and the members' leases.

    Members hold the group; the group holds neither them nor their paths
    (only weak references in ``routes``), so there is no cycle. It is closed
    when its last member closes (:meth:`leave`), or, when members are
    dropped unclosed, by its finalizer once nobody refers to it."""

    def __init__(self, umem: Umem, ifname: str, ifindex: int, queue_id: int,
                 config: XdpConfig, flags: int, source: Any) -> None:
        self.ifindex = ifindex
        self.queue_id = queue_id
        self.closed = False
        self.members = 0
        self.leases: list[tuple[int, int]] = []
        # completions go home by address: (first address, end address, weakref to a TxPath)
        self.routes: list[tuple[int, int, Any]] = []
        # reentrant: a member's commit refills the Fill ring under the same lock
        self.lock = threading.RLock()
        self._maps: list[mmap.mmap] = []
        self._areas: list[_ring.RingArea] = []
        self.sock = _xsk.create_socket(ifname, queue_id)
        try:
            self._setup(umem, ifname, config, flags, source)
        except BaseException:
            self._release()
            self.sock.close()
            raise
        self._finalizer = weakref.finalize(self, _close_group, self.sock, umem, self.leases)
        self._finalizer.atexit = False

    def _setup(self, umem: Umem, ifname: str, config: XdpConfig, flags: int,
               source: Any) -> None:
        q, sock = self.queue_id, self.sock
        if source is None:
            umem._register(sock, ifname, q)
        _xsk.set_ring_size(sock, C.XDP_UMEM_FILL_RING, config.fill_size, "fill", ifname, q)
        _xsk.set_ring_size(sock, C.XDP_UMEM_COMPLETION_RING, config.comp_size, "completion",
                           ifname, q)
        # bind needs an RX or a TX ring; an RX ring in no XSKMAP never receives
        _xsk.set_ring_size(sock, C.XDP_RX_RING, 1, "RX (queue group)", ifname, q)
        off = _xsk.mmap_offsets(sock, ifname, q)
        areas = []
        for pgoff, ro, entries, what in (
                (C.XDP_UMEM_PGOFF_FILL_RING, off.fill, config.fill_size, "fill"),
                (C.XDP_UMEM_PGOFF_COMPLETION_RING, off.completion, config.comp_size,
                 "completion")):
            mm = _xsk.map_ring(sock, pgoff, ro, entries, 8, what, ifname, q)
            self._maps.append(mm)
            area = _ring.RingArea(mm, ro.producer, ro.consumer, ro.flags, ro.desc, entries,
                                  "addr")
            self._areas.append(area)
            areas.append(area)
        self.fill = _ring.ProducerRing(areas[0])
        self.comp = _ring.ConsumerRing(areas[1])
        self.rx_pool = _ring.FramePool(umem.frame_count)
        if source is None:
            bind_retrying(sock, self.ifindex, q, flags, ifname)
        else:
            # (another queue or interface: the kernel gives this socket a
            # pool of its own, with the Fill and Completion rings made above)
            bind_retrying(sock, self.ifindex, q, C.XDP_SHARED_UMEM, ifname,
                          source.sock.fileno())
        self.zero_copy = bool(_xsk.options(sock, ifname, q) & C.XDP_OPTIONS_ZEROCOPY)

    def join(self, lease: tuple[int, int]) -> None:
        """A member bound (or is binding): the group keeps its frames."""
        with self.lock:
            self.members += 1
            self.leases.append(lease)

    def add_route(self, lo: int, hi: int, path: Any) -> None:
        with self.lock:
            self.routes.append((lo, hi, weakref.ref(path)))

    def leave(self) -> None:
        """A member closed; the last one closes the group."""
        with self.lock:
            self.members -= 1
            self.routes[:] = [r for r in self.routes if r[2]() is not None
                              and not r[2]().closed]
            last = self.members <= 0
        if last:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._release()
        self._finalizer()  # closes the socket, gives the leases back

    def _release(self) -> None:
        areas, self._areas = self._areas, []
        maps, self._maps = self._maps, []
        release_mappings(areas, maps)
