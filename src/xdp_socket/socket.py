"""Layer 3: the two halves of an AF_XDP socket and the per-packet API.

One kernel socket (:class:`~xdp_socket.core.XskCore`, layer 2) owns the fd,
the UMEM, the four ring mappings and the XSKMAP entry. Users hold *halves*:
:class:`TxSocket` and :class:`RxSocket`. A bidirectional socket is one core
with both halves; it is torn down when the last half is closed, or, when the
user forgets to close, as soon as the last half and batch are dropped
(reference counting, with a ``ResourceWarning``).

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

Threads: use each half from one thread at a time; the two halves of one
socket may run in two threads (also with ``RxBatch.forward`` in the RX
thread). ``close()`` may be called from any thread: a thread waiting in the
socket wakes up with :class:`~xdp_socket.SocketClosedError`.
"""

from __future__ import annotations

import errno
import select
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _aio, _ring
from ._check import check_int
from ._sys import consts as C
from ._sys import xsk as _xsk
from .batch import RxBatch, TxBatch
from .config import Direction, XdpConfig
from .core import RingViews, Statistics, XskCore
from .errors import SocketClosedError
from .umem import Umem

__all__ = [
    "RxSocket",
    "TxSocket",
    "create_bi_socket",
    "create_rx_socket",
    "create_socket",
    "create_tx_socket",
]

BytesLike = bytes | bytearray | memoryview

# The longest descriptor chain the kernel's copy-mode TX path builds into one
# skb (see _sys.xsk.max_tx_chain: net.core.max_skb_frags + 1, 18 by default).
MAX_TX_CHAIN = _xsk.max_tx_chain()


class _Closed:
    """Stands in for a closed half's ring path: any use raises
    SocketClosedError, so the hot paths need no 'is it closed' test."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise SocketClosedError(self._what)


class _Half:
    """What both halves share: identity, lifetime, statistics, poll."""

    _core: XskCore
    _what: str
    _path: Any
    _batch: Any

    def __init__(self, core: XskCore) -> None:
        # The half refers to the core and never the other way round: a
        # dropped half is freed by reference counting alone.
        self._core = core
        self._closed = False
        core.open_half(self._what)

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
        """True once this half (or its socket) is closed."""
        return self._closed or self._core.closed

    @property
    def umem(self) -> npt.NDArray[np.uint8]:
        """The UMEM as a ``(frame_count, frame_size)`` uint8 numpy array over
        the shared mapping (zero copy; see :mod:`xdp_socket.batch` on frame
        ownership)."""
        self._check_open()
        umem = self._core.umem
        if umem is None:
            raise SocketClosedError(self._what)
        return umem.array

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
            check_int("count", n)
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
            check_int("count", n)
        self._path.commit(n)

    def commit(self) -> None:
        """``commit_n(1)``."""
        self._path.commit(1)

    def close(self) -> None:
        """Close this half; the socket itself goes when its last half closes.
        Idempotent; safe from any thread (a thread waiting in this socket
        raises :class:`~xdp_socket.SocketClosedError`). Batches taken before
        raise it too; views into the UMEM you still hold stay valid memory
        (the mapping goes when the last of them does)."""
        if self._closed:
            return
        self._closed = True
        self._path = _Closed(self._what)
        self.__dict__.pop("peek_at", None)  # back to the method, which now raises
        # no export of ours left on the UMEM mapping, so the core can unmap it
        for name in ("_umem_flat", "_umem2d", "_no_packets"):
            self.__dict__.pop(name, None)
        self._batch = None
        self._core.close_half(self._what)

    def _check_open(self) -> None:
        if self._closed or self._core.closed:
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


class TxSocket(_Half):
    """The sending half of an AF_XDP socket."""

    _what = "TX socket"

    def __init__(self, core: XskCore) -> None:
        assert core.tx_path is not None
        self._path: _ring.TxPath = core.tx_path
        self._always_kick = not core.config.need_wakeup
        self._batch = None  # the last batch (the next reserve() checks it was submitted)
        assert core.umem is not None
        self._umem2d = core.umem.array
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
        self._core.kick_tx(self._always_kick)

    def commit_and_kick(self, n: int) -> None:
        """``commit_n(n)`` then drive the TX ring: copy mode sends at most a
        budget of frames (32 by default) per kick, so this kicks until the
        kernel has taken what was committed or says it cannot take more now."""
        self.commit_n(n)
        self._drive()

    def _drive(self) -> int:
        """Kick until the kernel has consumed the TX ring (see XskCore.drive_tx)."""
        return self._core.drive_tx()

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
            if total and path.multi_buffer:
                return self._send_chain(data if header is None else bytes(header) + bytes(data))
            raise ValueError(
                f"packet of {total} bytes does not fit a {path.frame_size}-byte frame "
                "(XdpConfig(multi_buffer=True) sends longer ones as descriptor chains)"
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

    def _send_chain(self, packet: BytesLike) -> bool:
        """One packet longer than a frame as a chain of descriptors, each but
        the last flagged XDP_PKT_CONTD, committed together."""
        path = self._path
        size = path.frame_size
        total = len(packet)
        n = -(-total // size)
        if n > MAX_TX_CHAIN:
            raise ValueError(
                f"packet of {total} bytes needs {n} {size}-byte frames; the kernel sends at "
                f"most {MAX_TX_CHAIN} descriptors per packet (up to {MAX_TX_CHAIN * size} bytes)"
            )
        if path.seek(n) < n:
            self._drive()
            if path.seek(n) < n:
                return False
        mv = memoryview(packet).cast("B")
        for i in range(n):
            chunk = mv[i * size : (i + 1) * size]
            path.peek_at(i, len(chunk))[:] = chunk
            path.set_options(i, C.XDP_PKT_CONTD if i < n - 1 else 0)
        path.commit(n)
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

    def _wait_completed(self, target: int, timeout: float | None) -> bool:
        """Wait until ``target`` frames ever committed have completed."""
        path = self._path

        def completed() -> bool:
            path.reclaim()
            return bool(path.completed >= target)

        return self._core.drive_until(completed, timeout, self._what)

    def poll_wait(self, timeout: float | None = None) -> bool:
        """Wait until a frame can be reserved (``seek`` would return 1).
        True when ready, False when ``timeout`` seconds passed."""
        path = self._path
        return bool(path.seek(1)) or self._core.drive_until(lambda: bool(path.seek(1)), timeout,
                                                             self._what)

    # batch API ------------------------------------------------------------------
    def reserve(self, n: int) -> TxBatch:
        """Reserve up to ``n`` free frames in one step (reclaiming completed
        ones first); the batch may hold fewer, even none. Write them, then
        ``submit()`` (or use the batch as a context manager)."""
        if n.__class__ is not int or n < 0:
            check_int("count", n)
        prev = self._batch
        if prev is not None and not prev.done:
            raise ValueError("the previous TxBatch is still open: submit() or cancel() it first")
        path = self._path
        k = path.seek(n, clear_lengths=False)
        self._batch = batch = TxBatch(self._core, path, k, self._umem2d)
        return batch

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
        for a free frame (kicking, then sleeping on the loop from 50 us to 2 ms)."""
        await _aio.send_async(self, data, header)

    @property
    def in_flight(self) -> int:
        """Frames committed and not yet reclaimed from the Completion ring."""
        return self._path.in_flight


class RxSocket(_Half):
    """The receiving half of an AF_XDP socket."""

    _what = "RX socket"

    def __init__(self, core: XskCore) -> None:
        assert core.rx_path is not None
        self._path: _ring.RxPath = core.rx_path
        self._batch = None  # the last batch (the next receive() checks it was released)
        assert core.umem is not None
        self._umem_flat = core.umem.array.reshape(-1)  # made once, not per batch
        self._multi_buffer = core.config.multi_buffer
        self._no_packets = RxBatch(core, self._path, 0, self._umem_flat)
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
        self._core.kick_fill()

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
        if path.fast_release and timeout is not None and 0 < timeout < 1e6:
            # a poll loop's usual call: one C call (look, kick, poll, look)
            core = self._core
            st = core.wait_rx(path, int(timeout * 1000 + 0.999))
            if st == 1:
                return True
            if st == 0:  # timed out
                if core.closed or path.closed:
                    raise SocketClosedError(self._what)
                return False
            # (2: poll(2) failed, < 0: a ring or socket error or a close:
            # the steps below redo it and report. Wakes with nothing,
            # signals among them, the C call waits out itself.)
        self.kick()
        deadline = None if timeout is None else time.monotonic() + timeout
        if deadline is not None and timeout:
            # a poll loop's usual call: one poll(2), and a packet at its return
            ready = self._core.poll(select.POLLIN, timeout, self._what)
            if path.seek(1):
                return True
            if not ready and time.monotonic() >= deadline:
                return False
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = self._core.poll(select.POLLIN, remaining, self._what)
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
        if self._multi_buffer:
            return self._recv_chain()
        data = bytes(path.peek_at(0))
        path.commit(1)
        if path.fill.flags[0] & C.XDP_RING_NEED_WAKEUP:
            self.kick()
        return data

    def _recv_chain(self) -> bytes | None:
        """The next packet of a multi-buffer socket: its descriptors joined."""
        path = self._path
        span = path.packet_span()
        if not span:  # pragma: no cover - the kernel publishes whole packets
            return None
        data = b"".join([bytes(path.peek_at(i)) for i in range(span)])
        path.commit(span)
        if path.fill.flags[0] & C.XDP_RING_NEED_WAKEUP:
            self.kick()
        return data

    # batch API ------------------------------------------------------------------
    def receive(self, n: int = 256, timeout: float | None = 0) -> RxBatch:
        """Take up to ``n`` received packets in one step, waiting up to
        ``timeout`` seconds for the first (0: don't wait, None: forever). The
        batch may be empty. Release it (or use it as a context manager) to give
        the frames back."""
        if n.__class__ is not int or n < 0:
            check_int("count", n)
        prev = self._batch
        if prev is not None and not prev.released:
            raise ValueError("the previous RxBatch is still open: release() it first")
        path = self._path
        k = path.seek(n)
        if k and not self._multi_buffer:  # the usual case first
            self._batch = batch = RxBatch(self._core, path, k, self._umem_flat)
            return batch
        if not k and timeout != 0 and n and self.poll_wait(timeout):
            k = path.seek(n)
        if k and self._multi_buffer:
            # a batch never ends inside a packet (see RxBatch.ends)
            k = path.whole_packets(k)
        if not k:
            # nothing arrived: one shared empty batch (nothing to release), so
            # a polling loop does not build and release an object per look
            return self._no_packets
        self._batch = batch = RxBatch(self._core, path, k, self._umem_flat)
        return batch

    @property
    def available(self) -> int:
        """Packets seen by ``seek`` and not yet committed."""
        return self._path.available

    async def recv_async(self) -> bytes:
        """asyncio: the next packet, copied out, waiting on the event loop's
        reader callback for the socket fd (no thread, no busy loop)."""
        return await _aio.recv_async(self)

    def batches_async(self, max_batch: int = 64) -> AsyncIterator[list[bytes]]:
        """asyncio: ``async for packets in rx.batches_async():`` lists of up to
        ``max_batch`` packets (copied out) as they arrive."""
        return _aio.batches(self, max_batch)


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
    *,
    umem: Umem | None = None,
) -> tuple[TxSocket | None, RxSocket | None]:
    """Create an AF_XDP socket on ``iface`` (name or index) and ``queue_id``.

    Returns ``(tx, rx)`` with ``None`` for a half not asked for. An RX half
    loads and attaches the library's XDP redirect program (shared by all
    sockets of this process on the interface; detached when the last one
    closes or the process dies) unless ``config.xskmap_fd`` names your own
    XSKMAP.

    ``umem``: a shared :class:`~xdp_socket.Umem` (``XDP_SHARED_UMEM``); the
    socket takes ``config.frame_count`` of its frames, and its batches may
    forward to any other socket on that UMEM. Without it the socket gets a
    UMEM of its own.
    """
    d = _as_direction(direction)
    cfg = config if config is not None else XdpConfig()
    if not isinstance(cfg, XdpConfig):
        raise TypeError(f"config must be an XdpConfig, not {type(cfg).__name__}")
    if umem is not None and not isinstance(umem, Umem):
        raise TypeError(f"umem must be an xdp_socket.Umem, not {type(umem).__name__}")
    core = XskCore(iface, queue_id, d, cfg, umem)
    tx = TxSocket(core) if core.tx_path is not None else None
    rx = RxSocket(core) if core.rx_path is not None else None
    return tx, rx


def create_tx_socket(iface: str | int, queue_id: int = 0,
                     config: XdpConfig | None = None, *, umem: Umem | None = None) -> TxSocket:
    """A send-only AF_XDP socket (no XDP program is loaded)."""
    tx, _ = create_socket(iface, queue_id, Direction.TX, config, umem=umem)
    assert tx is not None
    return tx


def create_rx_socket(iface: str | int, queue_id: int = 0,
                     config: XdpConfig | None = None, *, umem: Umem | None = None) -> RxSocket:
    """A receive-only AF_XDP socket, with the built-in XDP program attached."""
    _, rx = create_socket(iface, queue_id, Direction.RX, config, umem=umem)
    assert rx is not None
    return rx


def create_bi_socket(iface: str | int, queue_id: int = 0,
                     config: XdpConfig | None = None, *,
                     umem: Umem | None = None) -> tuple[TxSocket, RxSocket]:
    """A bidirectional socket: one fd and one UMEM, returned as ``(tx, rx)``."""
    tx, rx = create_socket(iface, queue_id, Direction.BOTH, config, umem=umem)
    assert tx is not None and rx is not None
    return tx, rx



