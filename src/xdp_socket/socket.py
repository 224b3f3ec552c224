"""Layer 2/3: the AF_XDP socket, its two halves and the per-packet API.

One kernel socket (:class:`_Xsk`) owns the fd, the UMEM, the four ring
mappings and the XSKMAP entry. Users hold *halves*: :class:`TxSocket` and
:class:`RxSocket`. A bidirectional socket is one :class:`_Xsk` with both
halves; it is torn down when the last half is closed.

The data flow is the seed crate's **seek -> peek -> commit -> kick**:

* ``seek_n(n)`` makes up to ``n`` descriptors available (TX: free frames,
  reclaimed from the Completion ring; RX: received packets),
* ``peek_at(i, ...)`` gives the i-th one's bytes as a memoryview into the UMEM,
* ``commit_n(n)`` hands the first ``n`` to the kernel (TX: to send; RX: frames
  back to the Fill ring),
* ``kick()`` wakes the kernel when its ring asks for it (``need_wakeup``).

A memoryview from ``peek_at`` aliases the UMEM: after ``commit`` the frame
belongs to the kernel again and its bytes may change at any moment. The
copying helpers (``send``, ``recv``) have no such caveat.

Halves are not thread-safe; use each half from one thread at a time (the two
halves of one socket may run in two threads).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
import weakref
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _ring
from ._sys import consts as C
from ._sys import xsk as _xsk
from ._sys.xsk import Statistics
from .batch import RxBatch, TxBatch
from .config import Direction, XdpConfig
from .errors import InterfaceDownError, SocketClosedError, XdpBusyError, xdp_error
from .iface import queue_counts, resolve_interface
from .umem import Umem

if TYPE_CHECKING:
    from .program import XskMapEntry

__all__ = [
    "RingViews",
    "RxSocket",
    "Statistics",
    "TxSocket",
    "create_bi_socket",
    "create_rx_socket",
    "create_socket",
    "create_tx_socket",
]

BytesLike = bytes | bytearray | memoryview

# The kernel frees a closed socket's queue slot in deferred work; binding the
# same queue again right away fails with EBUSY for ~16 ms (32 ms max measured).
_BIND_BUSY_RETRY_S = 0.5

_POLL_ERR = select.POLLERR | select.POLLNVAL | select.POLLHUP


class _Closed:
    """Stands in for a closed half's ring path: any use raises
    SocketClosedError, so the hot paths need no 'is it closed' test."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise SocketClosedError(self._what)


class _Xsk:
    """One AF_XDP kernel socket and everything it owns."""

    def __init__(
        self, iface: str | int, queue_id: int, direction: Direction, config: XdpConfig
    ) -> None:
        if not _ring.ORDERING_SAFE and not os.environ.get("XDP_SOCKET_ALLOW_WEAK_ORDERING"):
            raise RuntimeError(
                "xdp_socket's rings rely on x86-64 memory ordering; this CPU needs "
                "barriers the pure-Python ring code cannot emit (see xdp_socket._ring)"
            )
        if isinstance(queue_id, bool) or not isinstance(queue_id, int):
            raise TypeError(f"queue_id must be an int, not {type(queue_id).__name__}")
        if not 0 <= queue_id <= 0xFFFFFFFF:
            raise ValueError(f"queue_id must be >= 0, got {queue_id}")
        self.ifname, self.ifindex = resolve_interface(iface)
        self.queue_id = queue_id
        self.config = config
        self.direction = direction
        self.refs = 0
        self.closed = False
        self._pid = os.getpid()
        self._pollers: dict[int, Any] = {}
        self.tx_path: _ring.TxPath | None = None
        self.rx_path: _ring.RxPath | None = None
        self.xskmap: XskMapEntry | None = None
        self._areas: list[_ring.RingArea] = []
        self._maps: list[Any] = []
        self.umem: Umem | None = None
        with contextlib.ExitStack() as undo:
            undo.callback(self._teardown)
            self._setup()
            undo.pop_all()

    def _setup(self) -> None:
        cfg, name, q = self.config, self.ifname, self.queue_id
        want_rx = self.direction in (Direction.RX, Direction.BOTH)
        want_tx = self.direction in (Direction.TX, Direction.BOTH)
        self._check_queue(want_rx, want_tx)
        self.sock = _xsk.create_socket(name, q)
        self.umem = umem = Umem(cfg, name, q)
        umem.register(self.sock, name, q)
        # Fill and Completion rings are required by bind even for a one-way
        # socket; each is mapped with exactly the size we asked for.
        _xsk.set_ring_size(self.sock, C.XDP_UMEM_FILL_RING, cfg.fill_size, "fill", name, q)
        _xsk.set_ring_size(self.sock, C.XDP_UMEM_COMPLETION_RING, cfg.comp_size, "completion",
                           name, q)
        if want_rx:
            _xsk.set_ring_size(self.sock, C.XDP_RX_RING, cfg.rx_size, "RX", name, q)
        if want_tx:
            _xsk.set_ring_size(self.sock, C.XDP_TX_RING, cfg.tx_size, "TX", name, q)
        off = _xsk.mmap_offsets(self.sock, name, q)
        fill = self._map(C.XDP_UMEM_PGOFF_FILL_RING, off.fill, cfg.fill_size, "addr", "fill")
        comp = self._map(C.XDP_UMEM_PGOFF_COMPLETION_RING, off.completion, cfg.comp_size, "addr",
                         "completion")
        # Frames: RX-only and TX-only sockets get all of them; a bidirectional
        # socket splits them in half (RX first). No frame is ever on two rings.
        n_rx = cfg.frame_count if not want_tx else (cfg.frame_count // 2 if want_rx else 0)
        n_tx = cfg.frame_count - n_rx if want_tx else 0
        if want_rx:
            rx = self._map(C.XDP_PGOFF_RX_RING, off.rx, cfg.rx_size, "desc", "RX")
            # The Fill ring is filled before bind so the kernel has frames to
            # receive into from the first packet on.
            self.rx_path = _ring.RxPath(rx, fill, umem.frame_addrs(0, n_rx), umem.frame_size,
                                        umem.view)
        if want_tx:
            tx = self._map(C.XDP_PGOFF_TX_RING, off.tx, cfg.tx_size, "desc", "TX")
            self.tx_path = _ring.TxPath(tx, comp, umem.frame_addrs(n_rx, n_tx), umem.frame_size,
                                        umem.view)
            if self.rx_path is not None:
                # one UMEM: RX frames (addresses below rx_limit) may be
                # forwarded on TX and must come back to the RX side
                self.tx_path.rx_peer = self.rx_path
                self.tx_path.rx_limit = n_rx * umem.frame_size
        flags = 0
        if cfg.need_wakeup:
            flags |= C.XDP_USE_NEED_WAKEUP
        if cfg.zero_copy is True:
            flags |= C.XDP_ZEROCOPY
        elif cfg.zero_copy is False:
            flags |= C.XDP_COPY
        self._bind(flags)
        self.zero_copy = bool(_xsk.options(self.sock, name, q) & C.XDP_OPTIONS_ZEROCOPY)
        if cfg.tx_budget is not None and want_tx:
            _xsk.set_tx_budget(self.sock, cfg.tx_budget, name, q)
        if cfg.busy_poll is not None:
            _xsk.set_busy_poll(self.sock, cfg.busy_poll, 64, name, q)
        if want_rx:
            from .program import attach_xsk

            self.xskmap = attach_xsk(name, self.ifindex, q, self.sock.fileno(),
                                     mode=cfg.xdp_mode, xskmap_fd=cfg.xskmap_fd)

    def _check_queue(self, want_rx: bool, want_tx: bool) -> None:
        """The kernel binds a queue id that exists in *either* direction, so a
        TX socket on a queue the device can only receive on binds fine and
        then never sends (and an RX socket on a TX-only queue never
        receives). Refuse those up front, naming the counts."""
        n_rx, n_tx = queue_counts(self.ifindex)
        for wanted, count, what, never in ((want_rx, n_rx, "RX", "receive"),
                                           (want_tx, n_tx, "TX", "send")):
            if wanted and self.queue_id >= count:
                raise xdp_error(
                    errno.EINVAL, "bind xsk", self.ifname, self.queue_id,
                    hint=f"{self.ifname} has {count} {what} queue(s), 0..{count - 1}; a socket "
                         f"on queue {self.queue_id} would never {never}",
                )

    def _map(self, pgoff: int, ro: _xsk.RingOffsets, entries: int, kind: str,
             what: str) -> _ring.RingArea:
        desc_size = 8 if kind == "addr" else 16
        mm = _xsk.map_ring(self.sock, pgoff, ro, entries, desc_size, what, self.ifname,
                           self.queue_id)
        self._maps.append(mm)
        area = _ring.RingArea(mm, ro.producer, ro.consumer, ro.flags, ro.desc, entries, kind)
        self._areas.append(area)
        return area

    def _bind(self, flags: int) -> None:
        deadline = time.monotonic() + _BIND_BUSY_RETRY_S
        delay = 0.001
        while True:
            try:
                _xsk.bind(self.sock, self.ifindex, self.queue_id, flags, self.ifname)
                return
            except XdpBusyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.02)

    def _teardown(self) -> None:
        """Release everything, in an order that never leaves the kernel
        pointing at freed memory: map entry, socket, ring views, mappings, UMEM."""
        self.closed = True
        if self.xskmap is not None:
            # A forked child holds copies of our fds; when it closes them (at
            # its exit, through the finalizer) it must not delete the map
            # entry the parent's socket still uses.
            if os.getpid() == self._pid:
                with contextlib.suppress(Exception):
                    self.xskmap.release()
            self.xskmap = None
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()
        self.tx_path = self.rx_path = None
        for area in self._areas:
            area.release()
        self._areas.clear()
        for mm in self._maps:
            with contextlib.suppress(BufferError):  # user still holds a batch view
                mm.close()
        self._maps.clear()
        if self.umem is not None:
            self.umem.close()
            self.umem = None

    def unref(self) -> None:
        self.refs -= 1
        if self.refs <= 0 and not self.closed:
            self._teardown()

    # --- kernel wakeups -------------------------------------------------------
    def wakeup_error(self, err: int, step: str) -> None:
        if err in _xsk.RETRY_ERRNOS or err == 0:
            return
        if err in (errno.ENETDOWN, errno.ENXIO):
            raise InterfaceDownError(err, step, self.ifname, self.queue_id,
                                     hint="the interface is down or gone")
        raise xdp_error(err, step, self.ifname, self.queue_id)

    def statistics(self) -> Statistics:
        return _xsk.statistics(self.sock, self.ifname, self.queue_id)

    def ring_views(self) -> RingViews:
        empty_d = np.empty(0, _ring.DESC_DTYPE)
        empty_a = np.empty(0, np.uint64)
        rx, tx = self.rx_path, self.tx_path
        return RingViews(
            fill=rx.fill.area.addrs if rx else empty_a,
            completion=tx.comp.area.addrs if tx else empty_a,
            rx=rx.rx.area.descs if rx else empty_d,
            tx=tx.tx.area.descs if tx else empty_d,
        )

    def poll(self, events: int, timeout: float | None) -> bool:
        """One poll(2) on the fd; True if an asked-for event is ready."""
        p = self._pollers.get(events)
        if p is None:  # one poll object per event mask, made once: waits are hot in poll mode
            p = self._pollers[events] = select.poll()
            p.register(self.sock.fileno(), events)
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        res = p.poll(ms)
        for _fd, rev in res:
            if rev & _POLL_ERR:
                err = self.sock.getsockopt(1, 4)  # SOL_SOCKET, SO_ERROR
                raise xdp_error(err or (errno.EBADF if rev & select.POLLNVAL else errno.EIO),
                                "poll", self.ifname, self.queue_id)
            if rev & events:
                return True
        return False


class RingViews(NamedTuple):
    """numpy views of a socket's rings: ``fill`` and ``completion`` are uint64
    UMEM addresses, ``rx`` and ``tx`` structured ``(addr u8, len u4, options
    u4)`` descriptors. Empty for a ring the socket does not have."""

    fill: npt.NDArray[np.uint64]
    completion: npt.NDArray[np.uint64]
    rx: np.ndarray[Any, Any]
    tx: np.ndarray[Any, Any]


class _Half:
    """What both halves share: identity, lifetime, statistics, poll."""

    _core: _Xsk
    _what: str
    _path: Any

    def __init__(self, core: _Xsk) -> None:
        self._core = core
        core.refs += 1
        self._finalizer = weakref.finalize(self, core.unref)

    # identity ---------------------------------------------------------------
    @property
    def ifname(self) -> str:
        """Interface name."""
        return self._core.ifname

    @property
    def ifindex(self) -> int:
        """Interface index."""
        return self._core.ifindex

    @property
    def queue_id(self) -> int:
        """The queue this socket is bound to."""
        return self._core.queue_id

    @property
    def frame_size(self) -> int:
        """UMEM frame size in bytes."""
        return self._core.config.frame_size

    @property
    def zero_copy(self) -> bool:
        """True when the kernel bound the socket in zero-copy mode (XDP_OPTIONS)."""
        return self._core.zero_copy

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    @property
    def umem(self) -> npt.NDArray[np.uint8]:
        """The UMEM as a ``(frame_count, frame_size)`` uint8 numpy array over
        the shared mapping (zero copy; see :mod:`xdp_socket.batch` on frame
        ownership)."""
        self._check_open()
        assert self._core.umem is not None
        return self._core.umem.array

    @property
    def rings(self) -> RingViews:
        """numpy views of the rings' descriptor areas (low-level tier: read
        them, do not write them unless you manage the indices yourself)."""
        self._check_open()
        return self._core.ring_views()

    def fileno(self) -> int:
        """The AF_XDP socket's fd (shared by both halves of a bidirectional socket)."""
        self._check_open()
        return self._core.sock.fileno()

    def statistics(self) -> Statistics:
        """The kernel's XDP_STATISTICS for this socket (all six fields)."""
        self._check_open()
        return self._core.statistics()

    # seek and commit: the same ring core call for both halves -------------------
    def seek_n(self, n: int) -> int:
        """Make up to ``n`` descriptors available and return how many are
        available now (0..n). TX: free frames, reclaiming completed ones; RX:
        received packets. Never raises for a full or empty ring."""
        if n.__class__ is not int or n < 0:
            _check_count(n)
        seek: int = self._path.seek(n)
        return seek

    def seek(self) -> int:
        """``seek_n(1)``."""
        one: int = self._path.seek(1)
        return one

    def commit_n(self, n: int) -> None:
        """TX: publish the first ``n`` available frames to the TX ring (each
        needs a length from ``peek_at``). RX: release the first ``n`` packets'
        frames to the Fill ring. More than are available is a ValueError."""
        if n.__class__ is not int:
            _check_count(n)
        self._path.commit(n)

    def commit(self) -> None:
        """``commit_n(1)``."""
        self._path.commit(1)

    def close(self) -> None:
        """Close this half; the socket itself goes when its last half closes.
        Idempotent."""
        if self._finalizer.alive:
            self._path = _Closed(self._what)
            self.__dict__.pop("peek_at", None)  # back to the method, which now raises
            self.__dict__.pop("_umem_flat", None)  # no export left on the UMEM mapping
            self.__dict__.pop("_no_packets", None)
            self._finalizer()

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise SocketClosedError(self._what)

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.ifname} queue {self.queue_id}"
        return f"<{type(self).__name__} {state}>"


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"count must be an int, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"count must be >= 0, got {n}")
    return n


class TxSocket(_Half):
    """The sending half of an AF_XDP socket."""

    _what = "TX socket"

    def __init__(self, core: _Xsk) -> None:
        assert core.tx_path is not None
        self._path: _ring.TxPath = core.tx_path
        self._always_kick = not core.config.need_wakeup
        self._batch: TxBatch | None = None
        super().__init__(core)
        # The per-packet hot call goes straight to the ring core: an instance
        # attribute shadows the method below (same signature, same checks),
        # saving a Python frame per packet. close() removes it again.
        setattr(self, "peek_at", self._path.peek_at)  # noqa: B010

    # seek -> peek -> commit -> kick: seek_n/seek/commit_n/commit are _Half's
    def peek_at(self, i: int, length: int) -> memoryview:
        """Writable view of the first ``length`` bytes of the i-th available
        frame; sets the length its descriptor will be sent with."""
        return self._path.peek_at(i, length)

    def peek(self, length: int) -> memoryview:
        """``peek_at(0, length)``."""
        return self._path.peek_at(0, length)

    def seek_and_peek(self, length: int) -> memoryview:
        """Reserve one frame and return its first ``length`` bytes; raises
        BlockingIOError when no frame is free."""
        if not self._path.seek(1):
            raise BlockingIOError(errno.EAGAIN, "no free TX frame (all in flight)")
        return self._path.peek_at(0, length)

    def kick(self) -> None:
        """Wake the kernel if the TX ring asks for it (or always, without
        need_wakeup). EAGAIN/EBUSY/ENOBUFS are normal; ENETDOWN raises
        :class:`~xdp_socket.InterfaceDownError`."""
        path = self._path
        if self._always_kick or path.tx.flags[0] & C.XDP_RING_NEED_WAKEUP:
            err = _xsk.wakeup_tx(self._core.sock)
            if err:
                self._core.wakeup_error(err, "kick TX")

    def commit_and_kick(self, n: int) -> None:
        """``commit_n(n)`` then drive the TX ring: copy mode sends at most a
        budget of frames (32 by default) per kick, so this kicks until the
        kernel has taken what was committed or says it cannot take more now."""
        self.commit_n(n)
        self._drive()

    def _drive(self) -> int:
        """Kick until the kernel has consumed the TX ring, or a kick made no
        progress. Returns the number of entries still pending."""
        path = self._path
        tx = path.tx
        core = self._core
        pending = tx.kernel_pending()
        while pending:
            if not (self._always_kick or tx.flags[0] & C.XDP_RING_NEED_WAKEUP):
                return pending  # the kernel is polling the ring by itself
            err = _xsk.wakeup_tx(core.sock)
            if err and err not in _xsk.RETRY_ERRNOS:
                core.wakeup_error(err, "kick TX")
            left = tx.kernel_pending()
            if left >= pending:
                # No progress: the Completion ring may be full (reclaiming
                # makes room) or the driver is busy (try again later).
                if path.reclaim():
                    continue
                return left
            pending = left
        return 0

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every committed frame is completed by the kernel and
        reclaimed. Returns False on timeout."""
        return self._wait_completed(self._path.submitted, timeout)

    # copying helpers ------------------------------------------------------------
    def send(self, data: BytesLike, header: BytesLike | None = None) -> bool:
        """Copy ``header`` (optional) then ``data`` into one frame, commit and
        kick. Returns False when no frame is free; never blocks."""
        hlen = 0 if header is None else len(header)
        total = hlen + len(data)
        path = self._path
        if not 0 < total <= path.frame_size:
            raise ValueError(
                f"packet of {total} bytes does not fit a {path.frame_size}-byte frame"
                if total else "cannot send an empty packet"
            )
        if not path.seek(1):
            self._drive()  # completions are produced by the kernel's send work
            if not path.seek(1):
                return False
        buf = path.peek_at(0, total)
        if header is not None and hlen:
            buf[:hlen] = header
        buf[hlen:] = data
        path.commit(1)
        self._drive()
        return True

    def send_blocking(
        self, data: BytesLike, header: BytesLike | None = None, timeout: float | None = None
    ) -> None:
        """Send one packet, waiting for a free frame and then until the kernel
        reports the frame completed. Raises TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.poll_wait(timeout):
            raise TimeoutError(f"no free TX frame on {self.ifname} queue {self.queue_id} "
                               f"within {timeout} s")
        if not self.send(data, header):  # pragma: no cover - poll_wait just reserved one
            raise TimeoutError("no free TX frame")
        target = self._path.submitted
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._wait_completed(target, remaining):
            raise TimeoutError(f"frame not completed by the kernel on {self.ifname} queue "
                               f"{self.queue_id} within {timeout} s")

    def _drive_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Drive the TX ring until ``done()``; back off from 50 us to 5 ms
        between looks. False when ``timeout`` seconds passed first. (In copy
        mode the kernel sends, and so completes frames, only inside a kick.)"""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.00005
        while True:
            self._drive()
            if done():
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            time.sleep(delay if deadline is None else min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 0.005)

    def _wait_completed(self, target: int, timeout: float | None) -> bool:
        """Wait until ``target`` frames ever committed have completed."""
        path = self._path

        def completed() -> bool:
            path.reclaim()
            return bool(path.completed >= target)

        return self._drive_until(completed, timeout)

    def poll_wait(self, timeout: float | None = None) -> bool:
        """Wait until a frame can be reserved (``seek`` would return 1).
        True when ready, False when ``timeout`` seconds passed."""
        path = self._path
        return bool(path.seek(1)) or self._drive_until(lambda: bool(path.seek(1)), timeout)

    # batch API ------------------------------------------------------------------
    def reserve(self, n: int) -> TxBatch:
        """Reserve up to ``n`` free frames in one step (reclaiming completed
        ones first); the batch may hold fewer, even none. Write them, then
        ``submit()`` (or use the batch as a context manager)."""
        if n.__class__ is not int or n < 0:
            _check_count(n)
        prev = self._batch
        if prev is not None and not prev.done:
            raise ValueError("the previous TxBatch is still open: submit() or cancel() it first")
        path = self._path
        k = path.seek(n, clear_lengths=False)
        self._batch = batch = TxBatch(path, k, self._core.umem.array,  # type: ignore[union-attr]
                                      self._drive)
        return batch

    def _forward_target(self) -> tuple[_ring.TxPath, Any]:
        return self._path, self._drive

    def reclaim(self) -> int:
        """Move every completed frame from the Completion ring back to the
        free pool in one step; returns how many."""
        return self._path.reclaim()

    @property
    def available(self) -> int:
        """Frames reserved by ``seek`` and not yet committed."""
        return self._path.reserved

    async def send_async(self, data: BytesLike, header: BytesLike | None = None) -> None:
        """asyncio: send one packet, waiting (without blocking the event loop)
        for a free frame. See :mod:`xdp_socket.aio`."""
        from . import aio  # aio builds on this module

        await aio.send_async(self, data, header)

    @property
    def in_flight(self) -> int:
        """Frames committed and not yet reclaimed from the Completion ring."""
        return self._path.in_flight


class RxSocket(_Half):
    """The receiving half of an AF_XDP socket."""

    _what = "RX socket"

    def __init__(self, core: _Xsk) -> None:
        assert core.rx_path is not None
        self._path: _ring.RxPath = core.rx_path
        self._batch: RxBatch | None = None
        assert core.umem is not None
        self._umem_flat = core.umem.array.reshape(-1)  # made once, not per batch
        self._no_packets = RxBatch(self._path, 0, self._umem_flat)
        super().__init__(core)
        setattr(self, "peek_at", self._path.peek_at)  # noqa: B010  (see TxSocket)

    def peek_at(self, i: int) -> memoryview:
        """The i-th available packet's bytes (a view into the UMEM, valid until
        ``commit``)."""
        return self._path.peek_at(i)

    def peek(self) -> memoryview:
        """``peek_at(0)``."""
        return self._path.peek_at(0)

    def seek_and_peek(self) -> memoryview:
        """The next packet's bytes; raises BlockingIOError when none is there."""
        if not self._path.seek(1):
            raise BlockingIOError(errno.EAGAIN, "no packet received")
        return self._path.peek_at(0)

    def kick(self) -> None:
        """Wake the kernel if the *Fill* ring asks for it (the kernel sets
        need_wakeup on the Fill and TX rings, never on RX)."""
        path = self._path
        if path.fill.flags[0] & C.XDP_RING_NEED_WAKEUP:
            err = _xsk.wakeup_rx(self._core.sock)
            if err:
                self._core.wakeup_error(err, "kick RX")

    def commit_and_kick(self, n: int) -> None:
        """``commit_n(n)`` then ``kick()``."""
        self.commit_n(n)
        self.kick()

    def poll_wait(self, timeout: float | None = None) -> bool:
        """Wait until a packet is available. True when ready, False when
        ``timeout`` seconds passed. POLLERR/POLLNVAL raise."""
        path = self._path
        if path.seek(1):
            return True
        self.kick()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = self._core.poll(select.POLLIN, remaining)
            if path.seek(1):
                return True
            if not ready and remaining is not None and remaining <= 0:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def recv(self, timeout: float | None = None) -> bytes | None:
        """Receive one packet as bytes (copied out; its frame goes back to the
        Fill ring at once). ``timeout=0`` does not wait; ``None`` waits forever.
        Returns None on timeout."""
        path = self._path
        if not path.seek(1) and (timeout == 0 or not self.poll_wait(timeout)):
            return None
        data = bytes(path.peek_at(0))
        path.commit(1)
        if path.fill.flags[0] & C.XDP_RING_NEED_WAKEUP:
            self.kick()
        return data

    # batch API ------------------------------------------------------------------
    def receive(self, n: int = 64, timeout: float | None = 0) -> RxBatch:
        """Take up to ``n`` received packets in one step, waiting up to
        ``timeout`` seconds for the first (0: don't wait, None: forever). The
        batch may be empty. Release it (or use it as a context manager) to give
        the frames back."""
        if n.__class__ is not int or n < 0:
            _check_count(n)
        prev = self._batch
        if prev is not None and not prev.released:
            raise ValueError("the previous RxBatch is still open: release() it first")
        path = self._path
        k = path.seek(n)
        if not k and timeout != 0 and n and self.poll_wait(timeout):
            k = path.seek(n)
        if not k:
            # nothing arrived: one shared empty batch (nothing to release), so
            # a polling loop does not build and release an object per look
            return self._no_packets
        self._batch = batch = RxBatch(path, k, self._umem_flat, self._kick_if_asked)
        return batch

    def _kick_if_asked(self) -> None:
        if self._path.fill.flags[0] & C.XDP_RING_NEED_WAKEUP:
            self.kick()

    @property
    def available(self) -> int:
        """Packets seen by ``seek`` and not yet committed."""
        return self._path.available

    async def recv_async(self) -> bytes:
        """asyncio: the next packet, copied out, waiting on the event loop's
        reader callback for the socket fd (no thread, no busy loop)."""
        from . import aio  # aio builds on this module

        return await aio.recv_async(self)

    def batches_async(self, max_batch: int = 64) -> AsyncIterator[list[bytes]]:
        """asyncio: ``async for packets in rx.batches_async():`` lists of up to
        ``max_batch`` packets (copied out) as they arrive."""
        from . import aio  # aio builds on this module

        return aio.batches(self, max_batch)


def _as_direction(direction: Direction | str) -> Direction:
    if isinstance(direction, Direction):
        return direction
    try:
        return Direction(str(direction).lower())
    except ValueError:
        raise ValueError(f"direction must be Direction.TX, RX or BOTH, got {direction!r}") from None


def create_socket(
    iface: str | int,
    queue_id: int = 0,
    direction: Direction | str = Direction.BOTH,
    config: XdpConfig | None = None,
) -> tuple[TxSocket | None, RxSocket | None]:
    """Create an AF_XDP socket on ``iface`` (name or index) and ``queue_id``.

    Returns ``(tx, rx)`` with ``None`` for a half not asked for. An RX half
    loads and attaches the library's XDP redirect program (shared by all
    sockets of this process on the interface; detached when the last one
    closes or the process dies) unless ``config.xskmap_fd`` names your own
    XSKMAP.
    """
    d = _as_direction(direction)
    cfg = config if config is not None else XdpConfig()
    if not isinstance(cfg, XdpConfig):
        raise TypeError(f"config must be an XdpConfig, not {type(cfg).__name__}")
    core = _Xsk(iface, queue_id, d, cfg)
    tx = TxSocket(core) if core.tx_path is not None else None
    rx = RxSocket(core) if core.rx_path is not None else None
    return tx, rx


def create_tx_socket(iface: str | int, queue_id: int = 0,
                     config: XdpConfig | None = None) -> TxSocket:
    """A send-only AF_XDP socket (no XDP program is loaded)."""
    tx, _ = create_socket(iface, queue_id, Direction.TX, config)
    assert tx is not None
    return tx


def create_rx_socket(iface: str | int, queue_id: int = 0,
                     config: XdpConfig | None = None) -> RxSocket:
    """A receive-only AF_XDP socket, with the built-in XDP program attached."""
    _, rx = create_socket(iface, queue_id, Direction.RX, config)
    assert rx is not None
    return rx


def create_bi_socket(iface: str | int, queue_id: int = 0,
                     config: XdpConfig | None = None) -> tuple[TxSocket, RxSocket]:
    """A bidirectional socket: one fd and one UMEM, returned as ``(tx, rx)``."""
    tx, rx = create_socket(iface, queue_id, Direction.BOTH, config)
    assert tx is not None and rx is not None
    return tx, rx



