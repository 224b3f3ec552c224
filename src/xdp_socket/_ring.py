"""Layer 1: producer/consumer ring logic shared by both API tiers.

Everything that moves a frame between the user, the four rings and the free
frame pools lives here, written once; the per-packet API and the numpy batch
API are thin layers over :class:`TxPath` and :class:`RxPath`.

Rules this module keeps:

* **No I/O.** It is given buffers (kernel mappings in production, bytearrays
  in the unit tests' fake kernel) and byte offsets; it makes no syscalls and
  never decides when to wake the kernel.
* **Free-running u32 indices.** The kernel's producer and consumer words count
  up forever and wrap at 2**32; a slot is ``index & (entries - 1)``. All index
  differences are taken modulo 2**32 (``& U32``), so the wrap is invisible.
  Local counters that never reach the kernel (frame pools) are Python ints.
* **Cached indices.** Like libxdp we keep a cached copy of the other side's
  index and read the shared word only when the cache says we are short; that
  read is the only synchronisation point.
* **Memory ordering.** The kernel's protocol (``xsk_queue.h``) needs an
  *acquire* load of the other side's index before touching descriptors, and a
  *release* store of our index after writing or reading descriptors. On
  x86-64 (TSO) every plain load is an acquire and every plain store a release
  at the hardware level; the remaining risk is compiler reordering, and there
  is none here because every shared-memory access is a separate call into
  CPython or numpy through opaque function pointers that the C compiler cannot
  move accesses across. On arm64 and other weakly ordered CPUs that is not
  enough: a ``dmb ishld`` after the index load and a ``dmb ish`` before the
  index store would be needed, and neither numpy nor memoryview emits them.
  :data:`ORDERING_SAFE` says whether this machine is covered; the socket layer
  refuses to run where it is not.
* **One switch for the compiled path.** The optional C accelerator
  (:mod:`xdp_socket._sys._accel`, built by pip when a compiler is present)
  does the innermost per-batch loops of this module: RX release to the Fill
  ring, RX->TX forwarding, MAC swaps, frame pool <-> ring moves, completion
  reclaim and the TX kick loop, with the same checks as the Python code here;
  the batch API's usual steps (``TxPath.seek``, ``XskCore.submit_tx`` and
  ``XskCore.forward``, ``RxBatch.release``) are one C call each, which hands
  anything unusual (and every error) back to the Python code between whole
  steps (a step it refuses is not begun), for it to redo and report.
  Whether it is used is decided once, here, when this module is imported
  (:data:`accel`; ``XDP_SOCKET_NO_ACCEL=1`` forces pure Python), and each
  ring takes the decision when it is made (``RingArea.ref`` is its C handle
  or None). Everything works without the extension; the Python branches
  below are the reference the C code follows.
* **Every frame accounted for.** A frame is in exactly one place: a free pool,
  a reserved TX slot, a ring (owned by the kernel), or held by the user
  between ``seek`` and ``commit``. Nothing here ever hands one frame to two
  rings.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DESC_DTYPE",
    "ORDERING_SAFE",
    "U32",
    "ConsumerRing",
    "FramePool",
    "GroupRxPath",
    "GroupTxPath",
    "LockedTxPath",
    "ProducerRing",
    "RingArea",
    "RingCorruptedError",
    "RxPath",
    "TxPath",
    "accel",
    "accelerator",
    "check_lengths",
    "copy_circular",
    "gather_circular",
    "scatter_circular",
]

U32 = 0xFFFFFFFF
"""Mask for free-running 32-bit ring indices."""

ORDERING_SAFE = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
"""True where plain loads/stores give the acquire/release the rings need."""

DESC_DTYPE = np.dtype([("addr", "<u8"), ("len", "<u4"), ("options", "<u4")])
"""``struct xdp_desc`` (if_xdp.h): the RX and TX ring entry."""

PKT_CONTD = 1
"""``XDP_PKT_CONTD`` (if_xdp.h): more descriptors of this packet follow."""

RING_NEED_WAKEUP = 1
"""``XDP_RING_NEED_WAKEUP`` (if_xdp.h): the ring's flags word asks for a kick."""

ADDR_DTYPE = np.dtype("<u8")
"""A Fill / Completion ring entry: a UMEM address."""

U64Array = npt.NDArray[np.uint64]


def _load_accel() -> Any:
    if os.environ.get("XDP_SOCKET_NO_ACCEL", "") not in ("", "0"):
        return None
    try:
        from ._sys import _accel
    except ImportError:  # not built (no compiler at install time): pure Python
        return None
    return _accel


C: Any = _load_accel()
"""The compiled accelerator module, or None (not built, or switched off)."""

accel: Any = C
"""The accelerator new rings use (None: pure Python). Read when a ring is
made; tests switch it to run both paths in one process."""


def accelerator() -> str:
    """``"c"`` when new sockets use the compiled accelerator, else ``"python"``."""
    return "c" if accel is not None else "python"



class RingCorruptedError(RuntimeError):
    """A value the kernel wrote into a shared ring (an index, a descriptor, a
    Completion address) cannot be right: acting on it would hand one frame to
    two owners or write outside the UMEM. The socket should be closed."""


def _is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


class RingArea:
    """Views over one ring's memory: the producer, consumer and flags words
    and the descriptor array. ``kind`` is ``"addr"`` (Fill/Completion: u64
    addresses) or ``"desc"`` (RX/TX: :data:`DESC_DTYPE`).

    Scalar access (the per-packet path) goes through ``memoryview`` casts,
    which cost far less per element than numpy scalars; vector access (the
    batch path) through numpy arrays. Both view the same bytes.
    """

    def __init__(
        self,
        buf: Any,
        producer_off: int,
        consumer_off: int,
        flags_off: int,
        desc_off: int,
        entries: int,
        kind: str,
    ) -> None:
        if not _is_pow2(entries):
            raise ValueError(f"ring entries must be a power of two, got {entries}")
        if kind not in ("addr", "desc"):
            raise ValueError(f"unknown ring kind {kind!r}")
        self.entries = entries
        self.kind = kind
        esize = 8 if kind == "addr" else 16
        end = desc_off + entries * esize
        base = memoryview(buf)
        if base.nbytes < end or max(producer_off, consumer_off, flags_off) + 4 > base.nbytes:
            base.release()
            raise ValueError("ring mapping is smaller than its offsets and entries need")
        self._base = base
        # the C handle holds the memoryview and the offsets, never an export
        # between calls: releasing ``_base`` below disarms it too
        self.ref: Any = (None if accel is None else
                         accel.Ring(base, producer_off, consumer_off, flags_off, desc_off,
                                    entries, esize))
        self.producer = base[producer_off : producer_off + 4].cast("I")
        self.consumer = base[consumer_off : consumer_off + 4].cast("I")
        self.flags = base[flags_off : flags_off + 4].cast("I")
        area = base[desc_off:end]
        self._area = area
        if kind == "addr":
            self.addr_q = area.cast("Q")  # addr of slot i at [i]
            self.desc_q = self.addr_q
            self.desc_i = area.cast("I")
            self.addrs: U64Array = np.frombuffer(area, dtype=ADDR_DTYPE, count=entries)
            self.descs: np.ndarray[Any, Any] = self.addrs
            self.lens: npt.NDArray[np.uint32] = np.empty(0, np.uint32)
            self.options: npt.NDArray[np.uint32] = np.empty(0, np.uint32)
        else:
            self.desc_q = area.cast("Q")  # addr of slot i at [2*i]
            self.desc_i = area.cast("I")  # len at [4*i+2], options at [4*i+3]
            self.addr_q = self.desc_q
            self.descs = np.frombuffer(area, dtype=DESC_DTYPE, count=entries)
            self.addrs = self.descs["addr"]
            self.lens = self.descs["len"]
            self.options = self.descs["options"]

    def release(self) -> None:
        """Drop every view this object made, so the mapping can be closed.

        numpy arrays hold an export on ``_area``; they are dropped first.
        """
        self.descs = self.addrs = np.empty(0, np.uint64)
        self.lens = self.options = np.empty(0, np.uint32)
        for mv in (self.producer, self.consumer, self.flags, self.desc_q, self.desc_i,
                   self.addr_q, self._area, self._base):
            with contextlib.suppress(BufferError, ValueError):  # user still holds a view
                mv.release()


class _PyRingBase:
    """Where a ring keeps its cached indices on the pure-Python path.

    When the accelerator is built, the rings derive from its ``Ring`` type
    instead, which keeps them as two C u32 fields with the same names: Python
    reads and writes them as ints, and the accelerator's one-call steps
    (``peek_fast``, ``release_fast``, ``forward_fast``) update them in place,
    so a batch needs no Python code to carry indices in and out of C."""

    __slots__ = ("cached_cons", "cached_prod", "reserved")

    cached_prod: int
    cached_cons: int
    reserved: int  # TX: TxPath.reserved's copy, which the C tx_peek checks against


if TYPE_CHECKING:
    _RingBase = _PyRingBase
else:
    _RingBase = _PyRingBase if C is None else C.Ring


class _Ring(_RingBase):
    """What both ring directions hold: the area, its size, the shared words."""

    __slots__ = ("_cons", "_prod", "area", "entries", "flags", "mask", "ref")

    def __init__(self, area: RingArea) -> None:
        self.area = area
        self.ref = area.ref  # C handle: this ring's loops run in C
        if area.ref is not None:
            # this object is then an accelerator Ring too (see _PyRingBase):
            # the one-call steps take it, with its layout and cached indices
            C.Ring.adopt(self, area.ref)
        self.entries = area.entries
        self.mask = area.entries - 1
        self._prod = area.producer
        self._cons = area.consumer
        self.flags = area.flags
        self.cached_prod: int = area.producer[0]
        self.cached_cons: int = area.consumer[0]


class ProducerRing(_Ring):
    """A ring this process produces into: Fill or TX.

    ``cached_prod`` is our producer (the kernel sees it after :meth:`submit`);
    ``cached_cons`` is the kernel's consumer *plus the ring size*, so that
    ``cached_cons - cached_prod`` is the number of free slots.
    """

    __slots__ = ()

    def __init__(self, area: RingArea) -> None:
        super().__init__(area)
        self.cached_cons = (self.cached_cons + self.entries) & U32

    def free_entries(self, wanted: int) -> int:
        """Free slots; re-reads the kernel's consumer only when the cache has
        fewer than ``wanted``."""
        free = (self.cached_cons - self.cached_prod) & U32
        if free >= wanted:
            return free
        # acquire load of the kernel's consumer (see the module docstring)
        cons = (self._cons[0] + self.entries) & U32
        free = (cons - self.cached_prod) & U32
        if free > self.entries:
            # a consumer ahead of our producer: trusting it would overwrite
            # slots the kernel has not read yet (and it is not cached, so
            # the next call does not trust it either)
            raise RingCorruptedError(
                f"ring corrupted: consumer {(cons - self.entries) & U32} is ahead "
                f"of producer {self.cached_prod} in a ring of {self.entries}"
            )
        self.cached_cons = cons
        return free

    def submit(self, n: int) -> None:
        """Publish ``n`` more entries (their slots must be written already)."""
        self.cached_prod = (self.cached_prod + n) & U32
        # release store: every slot write above happened in earlier calls
        self._prod[0] = self.cached_prod

    def kernel_pending(self) -> int:
        """Entries published but not yet consumed by the kernel."""
        return (self.cached_prod - self._cons[0]) & U32


class ConsumerRing(_Ring):
    """A ring this process consumes from: RX or Completion.

    Starts with nothing available: the cached producer is the kernel's
    producer at creation (0 for a new socket), never the ring size.
    """

    __slots__ = ()

    def available(self, wanted: int) -> int:
        """Entries ready to read; re-reads the kernel's producer only when the
        cache has fewer than ``wanted``."""
        n = (self.cached_prod - self.cached_cons) & U32
        if n >= wanted:
            return n
        # acquire load of the kernel's producer
        prod = self._prod[0]
        n = (prod - self.cached_cons) & U32
        if n > self.entries:
            # not cached: the next call must not trust it either
            raise RingCorruptedError(
                f"ring corrupted: producer {prod} is {n} entries ahead of "
                f"consumer {self.cached_cons} in a ring of {self.entries}"
            )
        self.cached_prod = prod
        return n

    def release(self, n: int) -> None:
        """Give ``n`` read entries back to the kernel."""
        self.cached_cons = (self.cached_cons + n) & U32
        # release store: all reads of those slots happened in earlier calls
        self._cons[0] = self.cached_cons


def copy_circular(
    dst: np.ndarray[Any, Any],
    dst_start: int,
    src: np.ndarray[Any, Any],
    src_start: int,
    n: int,
    and_mask: int | None = None,
) -> None:
    """Copy ``n`` elements between two circular arrays (power-of-two lengths),
    starting at free-running positions, splitting at each wrap (at most three
    slices). With ``and_mask``, each element is ANDed with it on the way
    (used to turn a packet address into its frame's base address)."""
    dlen = dst.shape[0]
    slen = src.shape[0]
    if n > 0 and not (dlen and slen):
        raise ValueError("copy between circular arrays of size 0")  # would never progress
    while n > 0:
        d = dst_start & (dlen - 1)
        s = src_start & (slen - 1)
        k = min(n, dlen - d, slen - s)
        if and_mask is None:
            dst[d : d + k] = src[s : s + k]
        else:
            np.bitwise_and(src[s : s + k], np.uint64(and_mask), out=dst[d : d + k])
        n -= k
        dst_start += k
        src_start += k


def gather_circular(src: np.ndarray[Any, Any], start: int, n: int) -> np.ndarray[Any, Any]:
    """A contiguous copy of ``n`` elements of circular array ``src`` from
    free-running position ``start`` (one or two slices)."""
    size = src.shape[0]
    if n > 0 and not size:
        raise ValueError("gather from a circular array of size 0")
    s = start & (size - 1)
    if s + n <= size:
        return np.array(src[s : s + n])  # a copy: the ring slot may be reused
    out: np.ndarray[Any, Any] = np.concatenate((src[s:], src[: n - (size - s)]))
    return out


def scatter_circular(dst: np.ndarray[Any, Any], start: int, values: Any, n: int) -> None:
    """Write ``values`` (an array of ``n`` or a scalar) into circular array
    ``dst`` from free-running position ``start``."""
    size = dst.shape[0]
    s = start & (size - 1)
    first = min(n, size - s)
    if np.ndim(values) == 0:
        dst[s : s + first] = values
        if n > first:
            dst[: n - first] = values
    else:
        dst[s : s + first] = values[:first]
        if n > first:
            dst[: n - first] = values[first:n]


def check_lengths(lens: Any, n: int, frame_size: int) -> Any:
    """Validate TX lengths for ``n`` frames: an int (or 0-d array) for all of
    them, or ``n`` values, each 1..frame_size. Returns an int or an array."""
    if not isinstance(lens, int):
        arr = np.asarray(lens)
        if arr.ndim == 0:
            lens = int(arr)
        else:
            if arr.shape != (n,):
                raise ValueError(f"expected {n} lengths, got shape {arr.shape}")
            if n and (int(arr.min()) <= 0 or int(arr.max()) > frame_size):
                raise ValueError(f"every length must be 1..{frame_size}")
            return arr
    if not 0 < lens <= frame_size:
        raise ValueError(f"length must be 1..{frame_size}, got {lens}")
    return lens


class FramePool:
    """A FIFO of free UMEM frame addresses owned by this process.

    TX keeps its free frames here (completions come back into it); RX keeps the
    frames that do not fit in the Fill ring right now.
    """

    __slots__ = ("buf", "capacity", "head", "mask", "mv", "tail")

    def __init__(self, capacity: int) -> None:
        cap = 1
        while cap < max(capacity, 1):
            cap <<= 1
        self.capacity = cap
        self.mask = cap - 1
        self.buf: U64Array = np.zeros(cap, dtype=np.uint64)
        self.mv = memoryview(self.buf)  # type: ignore[arg-type]  # fast scalar access
        self.head = 0  # Python ints: local only, no 2**32 wrap needed
        self.tail = 0

    @property
    def count(self) -> int:
        return self.tail - self.head

    def push(self, addr: int) -> None:
        if self.tail - self.head >= self.capacity:
            raise RuntimeError("frame pool overflow: a frame was returned twice")
        self.mv[self.tail & self.mask] = addr
        self.tail += 1

    def pop(self) -> int:
        if self.tail == self.head:
            raise RuntimeError("frame pool underflow")
        addr: int = self.mv[self.head & self.mask]
        self.head += 1
        return addr

    def push_from(self, src: np.ndarray[Any, Any], src_start: int, n: int,
                  and_mask: int | None = None) -> None:
        """Append ``n`` addresses read from circular array ``src``."""
        if self.tail - self.head + n > self.capacity:
            raise RuntimeError("frame pool overflow: a frame was returned twice")
        copy_circular(self.buf, self.tail, src, src_start, n, and_mask)
        self.tail += n

    def push_array(self, addrs: np.ndarray[Any, Any]) -> None:
        """Append a contiguous array of addresses."""
        n = addrs.shape[0]
        if self.tail - self.head + n > self.capacity:
            raise RuntimeError("frame pool overflow: a frame was returned twice")
        scatter_circular(self.buf, self.tail, addrs, n)
        self.tail += n

    def pop_into(self, dst: np.ndarray[Any, Any], dst_start: int, n: int) -> None:
        """Remove ``n`` addresses into circular array ``dst``."""
        if n > self.tail - self.head:
            raise RuntimeError("frame pool underflow")
        copy_circular(dst, dst_start, self.buf, self.head, n)
        self.head += n

    def snapshot(self) -> U64Array:
        """The free addresses, oldest first (a copy; for tests and checks)."""
        idx = np.arange(self.head, self.tail, dtype=np.int64) & self.mask
        out: U64Array = self.buf[idx]
        return out


class _FramePath:
    """What both sides share: the UMEM view and a pool of this side's frames
    (all of them free at the start)."""

    def __init__(self, frame_addrs: U64Array, frame_size: int, umem: memoryview) -> None:
        self.frame_size = frame_size
        self.base_mask = ~(frame_size - 1) & 0xFFFFFFFFFFFFFFFF
        self.umem = umem
        # bound for addresses the kernel hands us (descriptors, completions)
        self.umem_size = umem.nbytes
        self.frame_count = len(frame_addrs)
        self.pool = FramePool(self.frame_count)
        self.pool.push_array(frame_addrs)
        # Set (by the socket) when the half using this side is closed, also
        # while the other half of the socket stays open: batches taken on
        # this side check it and raise SocketClosedError.
        self.closed = False


class TxPath(_FramePath):
    """The TX side: TX ring (we produce), Completion ring (we consume), and a
    pool of free TX frames.

    ``seek(n)`` reclaims completions into the pool and *reserves* TX slots
    beyond our published producer, writing a free frame's address into each:
    those ``reserved`` slots are the frames available to the user, in order.
    ``peek_at(i, length)`` sets slot i's length and returns the frame's bytes;
    ``commit(n)`` publishes the first n reserved slots. The kernel never reads
    past the producer, so reserved slots are private to us.
    """

    def __init__(
        self,
        tx: RingArea,
        comp: RingArea,
        frame_addrs: U64Array,
        frame_size: int,
        umem: memoryview,
    ) -> None:
        if tx.kind != "desc" or comp.kind != "addr":
            raise ValueError("TxPath needs a descriptor TX ring and an address completion ring")
        super().__init__(frame_addrs, frame_size, umem)
        self.tx = ProducerRing(tx)
        self.comp = ConsumerRing(comp)
        # (kept equal to self.tx.reserved at every change: the C peek_at
        # bound below checks its index against the ring's copy)
        self.reserved = self.tx.reserved = 0
        if self.tx.ref is not None:
            # The per-packet API's peek_at in one C call (see RxPath's)
            setattr(self, "peek_at",  # noqa: B010
                    functools.partial(C.tx_peek, self.tx, umem, frame_size))
        self.submitted = 0  # frames ever committed (Python int, no wrap)
        self.completed = 0  # frames ever reclaimed from the Completion ring
        self._reclaim_at = max(1, self.comp.entries // 2)
        # Zero-copy forwarding (RX frame sent on TX): completions of those
        # frames belong to the RX side; they are handed to its ``returns``
        # queue, never to its pool or Fill ring directly, because the RX half
        # may run in another thread. ``rx_peer`` and ``rx_limit`` (RX frames
        # are the addresses below it) are set by the socket when both halves
        # share one UMEM.
        self.rx_peer: RxPath | None = None  # (set by pair())
        self.rx_limit = 0
        self.foreign_in_flight = 0
        # Other sockets' RX sides on a shared UMEM that forward into this TX
        # ring: (first address, end address, the queue back to that side).
        # Each gets its own returns queue, so every queue keeps one producer
        # (this side) and one consumer (that RX side).
        self.peers: list[tuple[int, int, FramePool]] = []
        self._peer_paths: list[RxPath] = []
        # XDP_USE_SG: descriptors may carry XDP_PKT_CONTD, so every reserved
        # slot gets its options cleared (a slot keeps what it last carried)
        self.multi_buffer = False
        self._q = tx.desc_q
        self._i = tx.desc_i
        # seek's usual case is one C call (C.reserve_fast: reclaim, then
        # pool frames into TX slots); GroupTxPath reclaims its own way
        self.fast_reserve = self.tx.ref is not None
        # TxBatch.submit's usual case is one C call (C.submit_fast, made by
        # XskCore.submit_tx: lengths, publish, kick); not where publishing
        # needs a lock (LockedTxPath)
        self.fast_submit = self.tx.ref is not None
        # XskCore.forward's usual case is one C call (C.forward_kick: reclaim
        # and forward with ``lock`` held, kick, returned frames to Fill): set
        # by LockedTxPath, the TX side of every socket that also receives
        self.fast_forward = False
        self.lock: Any = None

    @property
    def in_flight(self) -> int:
        """Frames committed to the kernel and not yet seen on the Completion ring."""
        return self.submitted - self.completed

    def reclaim(self) -> int:
        """Move every completed frame from the Completion ring to the pool."""
        return self._reclaim()

    def _reclaim(self) -> int:
        # (the unlocked body: seek and forward call it with the lock held)
        comp = self.comp
        n = comp.available(comp.entries)
        if n and comp.ref is not None and not self.peers:
            # (completions for other sockets of a shared UMEM: the Python path)
            self._reclaim_c(n)
        elif n:
            if _max_circular(comp.area.addrs, comp.cached_cons, n) >= self.umem_size:
                raise RingCorruptedError(
                    f"ring corrupted: the Completion ring returned an address beyond the "
                    f"{self.umem_size}-byte UMEM"
                )
            if not self.foreign_in_flight:
                self.pool.push_from(comp.area.addrs, comp.cached_cons, n, self.base_mask)
            else:
                self._reclaim_routed(n)
            comp.release(n)
            self.completed += n
        return n

    def _reclaim_c(self, n: int) -> None:
        """``_reclaim`` in C: the same checks (every address inside the
        UMEM, pools never overflow), one call."""
        comp = self.comp
        pool = self.pool
        if not self.foreign_in_flight:
            if pool.tail - pool.head + n > pool.capacity:
                raise RuntimeError("frame pool overflow: a frame was returned twice")
            res: Any = C.ring_to_pool(comp.ref, comp.cached_cons, n, pool.buf, pool.tail,
                                      self.base_mask, self.umem_size)
            if res < 0:
                raise RingCorruptedError(
                    f"ring corrupted: the Completion ring returned an address beyond the "
                    f"{self.umem_size}-byte UMEM"
                )
            pool.tail += n
        else:
            peer = self.rx_peer
            assert peer is not None
            ret = peer.returns
            res = C.comp_route(comp.ref, comp.cached_cons, n, self.base_mask, self.umem_size,
                               self.rx_limit, pool.buf, pool.tail,
                               pool.capacity - (pool.tail - pool.head), ret.buf, ret.tail,
                               ret.capacity - (ret.tail - ret.head))
            if res == -3:
                raise RuntimeError("frame pool overflow: a frame was returned twice")
            if isinstance(res, int):
                raise RingCorruptedError(
                    f"ring corrupted: the Completion ring returned an address beyond the "
                    f"{self.umem_size}-byte UMEM"
                )
            own, theirs = res
            pool.tail += own
            if theirs:
                # single producer (this side), single consumer (the RX side)
                ret.tail += theirs
                self.foreign_in_flight -= theirs
        comp.release(n)
        self.completed += n

    def pair(self, rx: RxPath, rx_limit: int) -> None:
        """Make ``rx`` (the RX half on the same UMEM, whose frames are the
        addresses below ``rx_limit``) this side's peer: frames it forwards
        here come back to it through its ``returns`` queue, which its
        releases then look at (``has_returners``)."""
        self.rx_peer = rx
        self.rx_limit = rx_limit
        rx.has_returners = True

    def add_peer(self, rx: RxPath) -> None:
        """Let ``rx`` (another socket's RX side on the same UMEM) forward into
        this TX ring; called in ``rx``'s thread (it owns ``rx.extra_returns``)."""
        if rx is self.rx_peer or any(p is rx for p in self._peer_paths):
            return
        queue = FramePool(rx.frame_count)
        rx.has_returners = True
        rx.extra_returns.append(queue)
        self._peer_paths.append(rx)
        self.peers.append((rx.frame_lo, rx.frame_hi, queue))

    def _reclaim_routed(self, n: int) -> None:
        """Completions that mix forwarded RX frames and our own: each goes
        back to the pool of the side that owns it."""
        addrs = gather_circular(self.comp.area.addrs, self.comp.cached_cons, n)
        addrs &= np.uint64(self.base_mask)
        for lo, hi, queue in self.peers:
            theirs = (addrs >= np.uint64(lo)) & (addrs < np.uint64(hi))
            k = int(np.count_nonzero(theirs))
            if k:
                queue.push_array(addrs[theirs])
                self.foreign_in_flight -= k
                addrs = addrs[~theirs]
        n = addrs.shape[0]
        if not n:
            return
        peer = self.rx_peer
        if peer is None:
            self.pool.push_array(addrs)
            return
        is_rx = addrs < np.uint64(self.rx_limit)
        rx_addrs = addrs[is_rx]
        if rx_addrs.shape[0]:
            # single producer (this side), single consumer (the RX side)
            peer.returns.push_array(rx_addrs)
            self.foreign_in_flight -= rx_addrs.shape[0]
        if rx_addrs.shape[0] != n:
            self.pool.push_array(addrs[~is_rx])

    def reserved_addrs(self, n: int) -> U64Array:
        """Addresses of the first ``n`` reserved frames (a copy)."""
        if not 0 <= n <= self.reserved:
            raise ValueError(f"{n} frame(s) asked for, {self.reserved} reserved")
        out: U64Array = gather_circular(self.tx.area.addrs, self.tx.cached_prod, n)
        return out

    def write_rows(self, rows: np.ndarray[Any, Any], n: int) -> bool:
        """Copy the first ``n`` rows of a 2-D uint8 array (rows no wider than
        a frame; each row's bytes adjacent) into the first ``n`` reserved
        frames, in one C loop. False when there is no accelerator or the rows
        are laid out otherwise: the caller copies with numpy then."""
        if not 0 <= n <= self.reserved:
            raise ValueError(f"{n} frame(s) asked for, {self.reserved} reserved")
        tx = self.tx
        if tx.ref is None or (rows.shape[1] > 1 and rows.strides[1] != 1):
            return False
        if C.write_rows(tx.ref, tx.cached_prod, n, self.umem, rows, self.frame_size):
            raise RingCorruptedError("ring corrupted: a TX descriptor's address is outside "
                                     "the UMEM or too close to its frame's end for the row")
        return True

    def set_lengths(self, lens: Any, n: int, checked: bool = False) -> None:
        """Set the lengths of the first ``n`` reserved frames (an int for all,
        or ``n`` values). ``checked``: the caller validated them already."""
        if not 0 <= n <= self.reserved:
            raise ValueError(f"{n} frame(s) asked for, {self.reserved} reserved")
        if not checked:
            lens = check_lengths(lens, n, self.frame_size)
        if isinstance(lens, int):
            if self.tx.ref is not None:
                C.set_lens(self.tx.ref, self.tx.cached_prod, n, lens)
                return
            _fill_circular(self.tx.area.lens, self.tx.cached_prod, n, lens)
        else:
            scatter_circular(self.tx.area.lens, self.tx.cached_prod, lens, n)

    def submit_len(self, n: int, length: int) -> None:
        """``set_lengths(length, n, checked=True)`` then ``commit(n,
        checked=True)``: the batch API's usual submit in one step (the caller
        validated ``length`` and that ``n`` frames are reserved)."""
        tx = self.tx
        if tx.ref is not None:
            C.set_lens(tx.ref, tx.cached_prod, n, length)
        else:
            _fill_circular(tx.area.lens, tx.cached_prod, n, length)
        tx.submit(n)
        self.reserved = self.tx.reserved = self.reserved - n
        self.submitted += n

    def clear_lengths(self, n: int) -> None:
        """Forget the lengths of the first ``n`` reserved frames (cancel)."""
        scatter_circular(self.tx.area.lens, self.tx.cached_prod, 0, min(n, self.reserved))

    def forward(self, rx: RxPath, n: int) -> int:
        """Send the first ``n`` available RX packets from their own frames
        (zero copy): their descriptors move from the RX ring to the TX ring,
        and the frames come back to ``rx``'s pool on completion. Returns how
        many were forwarded (fewer when the TX ring is short of room, none
        while frames are reserved on TX: those slots come first in the ring and
        belong to whoever reserved them, possibly another thread).

        Runs in the RX half's thread: it also hands frames the TX side gave
        back to the RX side's Fill ring (or leaves that to the caller:
        ``XskCore.forward`` does it after the kick)."""
        tx = self.tx
        if (tx.ref is not None and rx is self.rx_peer and not self.reserved
                and not rx.multi_buffer):
            # The usual l2fwd step (this socket's own RX half, accelerated, no
            # frames reserved, no chains to keep whole): the checks, the
            # copy, publishing TX and releasing RX are one call. (One socket's
            # rings are all made on the same path.)
            returns = rx.returns
            if returns.tail != returns.head or rx.extra_returns:
                rx.take_returns()
            if self.submitted - self.completed >= self._reclaim_at:
                self._reclaim()
            k: int = C.forward_fast(rx.rx, tx, n)
            if k >= 0:
                self.submitted += k
                self.foreign_in_flight += k
                rx.received += k
                return k
            # (-4: more than are available, which the code below reports;
            # -1: a corrupt TX consumer, which free_entries reports)
        if rx is not self.rx_peer and not any(p is rx for p in self._peer_paths):
            raise ValueError("can only forward from an RX half on the same UMEM")
        avail = rx.available
        if not 0 <= n <= avail:
            raise ValueError(f"cannot forward {n} packet(s): {avail} available")
        if rx.returns.tail != rx.returns.head or rx.extra_returns:
            rx.take_returns()
        if self.reserved:
            return 0
        if self.submitted - self.completed >= self._reclaim_at:
            self._reclaim()
        k = min(n, self.tx.free_entries(n))
        if k < n and rx.multi_buffer:
            # never part of a packet: the kernel would send its head alone,
            # and its tail as a packet of its own
            k = rx.packets_within(k)
        if k:
            rxr = rx.rx
            start = rxr.cached_cons
            tx = self.tx
            if tx.ref is not None and rxr.ref is not None:
                # copy, publish TX, release RX: one call
                C.forward(rxr.ref, tx.ref, start, tx.cached_prod, k)
                tx.cached_prod = (tx.cached_prod + k) & U32
                rxr.cached_cons = (start + k) & U32
                self.submitted += k
                self.foreign_in_flight += k
                if rx is not self.rx_peer:
                    rx.lent = True
                rx.received += k
                return k
            # descriptors are copied as they are: addr (with the kernel's
            # headroom offset), len, options (XDP_PKT_CONTD keeps a
            # multi-buffer packet's chain together on TX)
            copy_circular(tx.area.descs, tx.cached_prod, rxr.area.descs, start, k)
            tx.submit(k)
            self.submitted += k
            self.foreign_in_flight += k
            if rx is not self.rx_peer:
                rx.lent = True
            rxr.release(k)
            rx.received += k
        return k

    def seek(self, n: int, clear_lengths: bool = True) -> int:
        """Reserve frames until ``n`` are available (or no more can be);
        returns ``min(n, available)``. Newly reserved slots get length 0
        ("not written", which commit refuses) unless ``clear_lengths`` is
        False: the batch API sets or clears every length itself."""
        if self.fast_reserve:
            # everything below in one call; < 0: not the usual case, or a
            # corrupt kernel value (nothing done): the code below redoes it
            # and reports
            got: int = C.reserve_fast(self, self.tx, self.comp, self.pool, n, clear_lengths)
            if got >= 0:
                return got
        reserved = self.reserved
        if reserved >= n:
            return n
        want = n - reserved
        pool = self.pool
        # Reclaim when the pool is short, and also when many frames are in
        # flight: the kernel stops sending (EAGAIN) once the Completion ring
        # is full, so it must not fill up while the pool still has frames.
        if pool.tail - pool.head < want or self.submitted - self.completed >= self._reclaim_at:
            self._reclaim()
        tx = self.tx
        free = (tx.cached_cons - tx.cached_prod) & U32  # (free_entries' cached answer)
        if free < n:
            free = tx.free_entries(n)
        k = pool.tail - pool.head
        if want < k:
            k = want
        if free - reserved < k:
            k = free - reserved
        if k > 0:
            start = tx.cached_prod + reserved
            # Options stay 0: the kernel zeroed the ring, and the only
            # descriptors we write (ours, or RX ones moved by forward without
            # XDP_USE_SG) have options 0.
            if k == 1:
                slot = start & tx.mask
                self._q[2 * slot] = pool.pop()
                self._i[4 * slot + 2] = 0  # length set by peek_at; 0 = not yet written
                if self.multi_buffer:
                    self._i[4 * slot + 3] = 0
            elif tx.ref is not None and not self.multi_buffer:
                C.pool_to_ring(pool.buf, pool.head, tx.ref, start, k, clear_lengths)
                pool.head += k
            else:
                area = tx.area
                pool.pop_into(area.addrs, start, k)
                if clear_lengths:
                    _fill_circular(area.lens, start, k, 0)
                if self.multi_buffer:
                    _fill_circular(area.options, start, k, 0)
            reserved += k
            self.reserved = self.tx.reserved = reserved
        return n if reserved >= n else reserved

    def slot(self, i: int) -> int:
        if not 0 <= i < self.reserved:
            raise IndexError(
                f"frame index {i} out of range: {self.reserved} frame(s) available (call seek_n)"
            )
        return (self.tx.cached_prod + i) & self.tx.mask

    def peek_at(self, i: int, length: int) -> memoryview:
        """The i-th available frame's first ``length`` bytes (writable); sets
        its descriptor length."""
        if not 0 < length <= self.frame_size:
            raise ValueError(f"length must be 1..{self.frame_size} (the frame size), got {length}")
        if not 0 <= i < self.reserved:
            self.slot(i)  # raises the IndexError
        slot = (self.tx.cached_prod + i) & self.tx.mask
        addr = self._q[2 * slot]
        self._i[4 * slot + 2] = length
        return self.umem[addr : addr + length]

    def frame_addr(self, i: int) -> int:
        addr: int = self._q[2 * self.slot(i)]
        return addr

    def set_options_n(self, options: Any, n: int) -> None:
        """Set the options of the first ``n`` reserved descriptors (``n``
        values: XDP_PKT_CONTD on every descriptor of a chain but its last)."""
        if not 0 <= n <= self.reserved:
            raise ValueError(f"{n} frame(s) asked for, {self.reserved} reserved")
        scatter_circular(self.tx.area.options, self.tx.cached_prod, options, n)

    def set_options(self, i: int, options: int) -> None:
        """Set the i-th reserved descriptor's options (XDP_PKT_CONTD for every
        descriptor of a chain but the last; multi-buffer sockets only)."""
        self._i[4 * self.slot(i) + 3] = options

    def commit(self, n: int, checked: bool = False) -> None:
        """Publish the first ``n`` reserved frames to the kernel. ``checked``:
        the caller just wrote valid lengths for all of them."""
        if not 0 <= n <= self.reserved:
            raise ValueError(
                f"cannot commit {n} frame(s): {self.reserved} available (call seek_n first)"
            )
        if n == 0:
            return
        tx = self.tx
        if checked:
            tx.submit(n)
            self.reserved = self.tx.reserved = self.reserved - n
            self.submitted += n
            return
        # A zero length means the frame was never peeked: the kernel would
        # count it as an invalid descriptor and never complete it, leaking the
        # frame. Refuse instead.
        if n == 1:
            if self._i[4 * (tx.cached_prod & tx.mask) + 2] == 0:
                raise ValueError("frame 0 has no length: call peek_at(0, length) before commit")
        else:
            lens = tx.area.lens
            s = tx.cached_prod & tx.mask
            first = min(n, tx.entries - s)
            if (first and not lens[s : s + first].all()) or (
                n > first and not lens[: n - first].all()
            ):
                raise ValueError("a frame in the commit has no length: call peek_at for each one")
        tx.submit(n)
        self.reserved = self.tx.reserved = self.reserved - n
        self.submitted += n


class RxPath(_FramePath):
    """The RX side: RX ring (we consume), Fill ring (we produce), and a pool
    of free RX frames that do not fit in the Fill ring at the moment.

    All RX frames start in the Fill ring (or the pool when it is smaller).
    ``seek(n)`` looks for received descriptors; ``peek_at(i)`` returns the
    i-th packet's bytes; ``commit(n)`` returns the first n packets' frames to
    the Fill ring and releases their RX slots.
    """

    def __init__(
        self,
        rx: RingArea,
        fill: RingArea,
        frame_addrs: U64Array,
        frame_size: int,
        umem: memoryview,
    ) -> None:
        if rx.kind != "desc" or fill.kind != "addr":
            raise ValueError("RxPath needs a descriptor RX ring and an address fill ring")
        super().__init__(frame_addrs, frame_size, umem)
        self.rx = ConsumerRing(rx)
        self.fill = ProducerRing(fill)
        if self.rx.ref is not None:
            # The per-packet API's peek_at in one C call instead of a Python
            # method (a third of its cost; it runs once per packet). Bound
            # to the ring and the UMEM view, not to this path: no cycle.
            setattr(self, "peek_at",  # noqa: B010
                    functools.partial(C.rx_peek, self.rx, umem))
        self.received = 0  # packets ever released back (Python int)
        # this side's frames: byte addresses frame_lo .. frame_hi-1 (adjacent)
        self.frame_lo = int(frame_addrs[0]) if len(frame_addrs) else 0
        self.frame_hi = self.frame_lo + len(frame_addrs) * frame_size
        # returns queues from other sockets' TX sides (shared UMEM), one each
        self.extra_returns: list[FramePool] = []
        self.lent = False  # frames were forwarded to another socket's TX ring
        # A TX side may hand frames back through ``returns`` or
        # ``extra_returns``: this socket's own TX half (set by the socket),
        # or another socket's on a shared UMEM (set by its add_peer, in this
        # side's thread, before it forwards anything). It spares the
        # receive-only loop the look at those queues.
        self.has_returners = False
        self.multi_buffer = False  # XDP_USE_SG: packets may span descriptors
        # Frames the TX side gives back after forwarding them (a queue with one
        # producer, the TX side, and one consumer, this side: each moves only
        # its own index, so the two halves need no lock for it).
        self.returns = FramePool(self.frame_count)
        # RxBatch's release is one C call (C.release_step); not for
        # GroupRxPath, whose Fill ring and pool need the group's lock
        self.fast_release = self.rx.ref is not None
        self._q = rx.desc_q
        self._i = rx.desc_i
        self.refill()

    @property
    def available(self) -> int:
        """Packets seen and not yet committed."""
        return (self.rx.cached_prod - self.rx.cached_cons) & U32

    def refill(self) -> int:
        """Move as many pooled frames as fit into the Fill ring."""
        pool = self.pool
        want = pool.tail - pool.head
        if not want:
            return 0
        fill = self.fill
        n = min(want, fill.free_entries(want))
        if n:
            if fill.ref is not None:
                C.pool_to_ring(pool.buf, pool.head, fill.ref, fill.cached_prod, n, False)
                pool.head += n
            else:
                pool.pop_into(fill.area.addrs, fill.cached_prod, n)
            fill.submit(n)
        return n

    def _top_up(self) -> None:
        """Move spare frames from the pool into the Fill ring, once it is at
        most half full. Until then released frames go straight back into it
        and the spares wait: the frames the kernel writes into stay about a
        Fill ring's worth, as in libxdp's programs, instead of every UMEM
        frame in turn (twice the memory, and in rxdrop ~10% fewer frames per
        second from the same source). The spares are there for when the
        reader holds many frames, or falls behind."""
        if self.pool.tail != self.pool.head:
            half = self.fill.entries // 2
            if self.fill.free_entries(half) >= half:  # (re-reads the kernel's index if needed)
                self.refill()

    def take_returns(self) -> None:
        """Move the frames the TX side(s) gave back into the Fill ring (or the pool)."""
        moved = False
        for ret in (self.returns, *self.extra_returns):
            k = ret.tail - ret.head
            if not k:
                continue
            moved = True
            if self.pool.tail == self.pool.head:
                # nothing older waits in the pool: straight into the Fill ring
                fill = self.fill
                m = min(k, fill.free_entries(k))
                if m:
                    if fill.ref is not None:
                        C.pool_to_ring(ret.buf, ret.head, fill.ref, fill.cached_prod, m, False)
                    else:
                        copy_circular(fill.area.addrs, fill.cached_prod, ret.buf, ret.head, m)
                    ret.head += m
                    fill.submit(m)
                    k -= m
            if k:
                self.pool.push_from(ret.buf, ret.head, k)
                ret.head += k
        if moved:
            self.refill()

    def seek(self, n: int) -> int:
        rx = self.rx
        if rx.ref is not None:
            # available(n) capped at n, in one call; < 0: a corrupt producer
            # (or n < 0), left to available() to report (or answer)
            avail: int = C.peek_fast(rx, n)
            if avail == n:
                return n
            if avail < 0:
                avail = rx.available(n)
                if avail >= n:
                    return n
        else:
            avail = rx.available(n)
            if avail >= n:
                return n
        if self.returns.tail != self.returns.head or self.extra_returns:
            # short of packets: perhaps the Fill ring is short of frames
            self.take_returns()
        return avail

    def slot(self, i: int) -> int:
        rx = self.rx
        if not 0 <= i < ((rx.cached_prod - rx.cached_cons) & U32):
            raise IndexError(
                f"packet index {i} out of range: {self.available} packet(s) available "
                "(call seek_n)"
            )
        return (rx.cached_cons + i) & rx.mask

    def peek_at(self, i: int) -> memoryview:
        rx = self.rx
        if not 0 <= i < ((rx.cached_prod - rx.cached_cons) & U32):
            self.slot(i)  # raises the IndexError
        slot = (rx.cached_cons + i) & rx.mask
        addr = self._q[2 * slot]
        return self.umem[addr : addr + self._i[4 * slot + 2]]

    def packet_span(self, first: int = 0) -> int:
        """Descriptors of the packet starting at available descriptor
        ``first``: 1 plus the number of ``XDP_PKT_CONTD`` ones before its
        last. 0 when the packet is not complete in the ring yet (the kernel
        publishes a packet's descriptors together, so that is rare)."""
        rx = self.rx
        i = first
        while True:
            if i >= ((rx.cached_prod - rx.cached_cons) & U32) and rx.available(i + 1) <= i:
                return 0
            if not self._i[4 * ((rx.cached_cons + i) & rx.mask) + 3] & PKT_CONTD:
                return i + 1 - first
            i += 1

    def whole_packets(self, k: int) -> int:
        """The largest count <= ``k`` of available descriptors that ends at a
        packet's end; when the first packet alone is longer than ``k``, its
        whole length (0 if it is incomplete)."""
        if not k:
            return 0
        return self.packets_within(k) or self.packet_span(0)

    def packets_within(self, k: int) -> int:
        """The largest count <= ``k`` of available descriptors that ends at a
        packet's end (0 when the first packet is longer than ``k``)."""
        rx = self.rx
        opts = rx.area.options
        start = rx.cached_cons
        # scan back from the k-th descriptor for one without XDP_PKT_CONTD
        for j in range(k - 1, -1, -1):
            if not int(opts[(start + j) & rx.mask]) & PKT_CONTD:
                return j + 1
        return 0

    def taken_descs(self, n: int) -> np.ndarray[Any, Any]:
        """The first ``n`` available descriptors (a contiguous copy, DESC_DTYPE),
        checked against the UMEM's bounds: batch users turn them into numpy
        indices, where an address the kernel got wrong would reach another
        frame (or, past 2**63, a negative index)."""
        avail = self.available
        if not 0 <= n <= avail:
            raise ValueError(f"{n} packet(s) asked for, {avail} available")
        d = gather_circular(self.rx.area.descs, self.rx.cached_cons, n)
        if n and (int(d["addr"].max()) >= self.umem_size
                  or int(d["len"].max()) > self.frame_size):
            raise RingCorruptedError(
                "ring corrupted: an RX descriptor points outside the UMEM or is longer than a frame"
            )
        return d

    def swap_macs(self, n: int, umem: Any, descs: np.ndarray[Any, Any] | None = None) -> None:
        """Swap destination and source MAC of the first ``n`` available packets
        in place (``umem``: the flat uint8 UMEM array; ``descs``: their
        descriptors if the caller has them already). Raises
        RingCorruptedError for a descriptor outside the UMEM, ValueError for
        a packet shorter than 12 bytes; either way nothing is written."""
        rx = self.rx
        if descs is None and rx.ref is not None:
            # (the ring itself is an accelerator Ring: see _PyRingBase)
            st = C.swap_macs(rx, rx.cached_cons, n, umem, self.frame_size)
            if st:
                if st == -1:
                    raise RingCorruptedError("ring corrupted: an RX descriptor points outside "
                                             "the UMEM or is longer than a frame")
                raise ValueError("a packet is shorter than two MAC addresses")
            return
        if not n:
            return
        d = self.taken_descs(n) if descs is None else descs
        if int(d["addr"].max()) > umem.shape[0] - 12:
            # (below the UMEM's end, but its MACs would reach past it)
            raise RingCorruptedError("ring corrupted: an RX descriptor points outside the UMEM")
        if int(d["len"].min()) < 12:
            raise ValueError("a packet is shorter than two MAC addresses")
        starts = d["addr"].astype(np.intp)[:, None]
        # read bytes 6..11 then 0..5, write them to 0..11
        umem[starts + _ARANGE12] = umem[starts + _SWAP12]

    def release_batch(self, n: int) -> int:
        """``commit(n)`` for a batch of ``n`` (> 0) available packets; returns
        non-zero when the Fill ring then asks for a wakeup. The usual case
        (accelerated, room in the Fill ring) is one C call; the rest, and
        every error, goes to ``commit``."""
        rx = self.rx
        if rx.ref is not None:
            if self.has_returners:
                returns = self.returns
                if returns.tail != returns.head or self.extra_returns:
                    # frames a TX side gave back go in first, as in commit
                    self.take_returns()
            # copy to Fill, publish Fill, release RX, read the Fill flags
            st: int = C.release_fast(rx, self.fill, n, self.base_mask)
            if st >= 0:
                self.received += n
                if st > 1 and self.pool.tail != self.pool.head:
                    # (flag 2: the Fill ring is at most half full) the spare
                    # frames top it up (see _top_up)
                    self.refill()
                return st & 1
            # (-4: not the usual case; -1: a corrupt Fill consumer, which
            # commit's free_entries reports)
        self.commit(n)
        return self.fill.flags[0] & RING_NEED_WAKEUP

    def finish_release(self) -> int:
        """What ``C.release_step`` left to the Python code (flag 4: a top-up
        or returned frames it could not move; this reports why); returns
        non-zero when the Fill ring asks for a wakeup."""
        self._top_up()
        if self.has_returners:
            returns = self.returns
            if returns.tail != returns.head or self.extra_returns:
                self.take_returns()
        return self.fill.flags[0] & RING_NEED_WAKEUP

    def commit(self, n: int) -> None:
        """Release the first ``n`` available packets: their frames go back to
        the Fill ring (via the pool if it is full), then their RX slots."""
        rx = self.rx
        avail = (rx.cached_prod - rx.cached_cons) & U32
        if not 0 < n <= avail:
            if n == 0:
                return
            raise ValueError(f"cannot commit {n} packet(s): {avail} available (call seek_n first)")
        if self.returns.tail != self.returns.head or self.extra_returns:
            self.take_returns()
        fill = self.fill
        if n == 1:
            pool = self.pool
            # per-packet path, scalar only: the frame goes back to the Fill
            # ring (the pool when it is full)
            addr = self._q[2 * (rx.cached_cons & rx.mask)] & self.base_mask
            if fill.free_entries(1):
                fill.area.addr_q[fill.cached_prod & fill.mask] = addr
                fill.submit(1)
            else:
                pool.push(addr)
            self._top_up()
        elif fill.free_entries(n) >= n:
            # the usual batch case: straight from the RX slots into the Fill
            # ring, masked to frame starts, in one pass
            if fill.ref is not None and rx.ref is not None:
                # copy, publish Fill, release RX: one call
                C.rx_to_fill(rx.ref, fill.ref, rx.cached_cons, fill.cached_prod, n,
                             self.base_mask)
                fill.cached_prod = (fill.cached_prod + n) & U32
                rx.cached_cons = (rx.cached_cons + n) & U32
                self.received += n
                self._top_up()
                return
            copy_circular(fill.area.addrs, fill.cached_prod, rx.area.addrs, rx.cached_cons, n,
                          self.base_mask)
            fill.submit(n)
            self._top_up()
        else:
            self.pool.push_from(rx.area.addrs, rx.cached_cons, n, self.base_mask)
            self._top_up()
        # the RX slots are read; only now may the kernel reuse them
        rx.release(n)
        self.received += n


_ARANGE12 = np.arange(12, dtype=np.intp)
_SWAP12 = np.array([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5], dtype=np.intp)


def _fill_circular(arr: np.ndarray[Any, Any], start: int, n: int, value: int) -> None:
    size = arr.shape[0]
    if n > 0 and not size:
        raise ValueError("fill of a circular array of size 0")  # would never progress
    while n > 0:
        s = start & (size - 1)
        k = min(n, size - s)
        arr[s : s + k] = value
        n -= k
        start += k



def _max_circular(arr: np.ndarray[Any, Any], start: int, n: int) -> int:
    """The largest of ``n`` elements of circular array ``arr`` from ``start``."""
    size = arr.shape[0]
    s = start & (size - 1)
    first = min(n, size - s)
    top = int(arr[s : s + first].max())
    if n > first:
        top = max(top, int(arr[: n - first].max()))
    return top


class LockedTxPath(TxPath):
    """A TxPath whose ring operations hold a lock: used when the socket also
    receives, because ``RxBatch.forward`` (run by the RX half's thread) then
    produces into the same TX ring and consumes the same Completion ring as
    the TX half. Reserved slots are private to whoever reserved them and need
    no lock; ``forward`` sends nothing while any are reserved."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.fast_submit = False  # publishing holds the lock: submit_len below
        self.fast_forward = self.tx.ref is not None

    def reclaim(self) -> int:
        with self.lock:
            return self._reclaim()

    def seek(self, n: int, clear_lengths: bool = True) -> int:
        with self.lock:
            return super().seek(n, clear_lengths)

    def commit(self, n: int, checked: bool = False) -> None:
        with self.lock:
            super().commit(n, checked)

    def submit_len(self, n: int, length: int) -> None:
        # (publishes, like commit: the RX thread's forward moves the same
        # producer and counters)
        with self.lock:
            super().submit_len(n, length)

    def forward(self, rx: RxPath, n: int) -> int:
        with self.lock:
            return super().forward(rx, n)

    def add_peer(self, rx: RxPath) -> None:
        with self.lock:
            super().add_peer(rx)


class GroupRxPath(RxPath):
    """An RX side whose Fill ring is shared with other sockets bound to the
    same interface queue (``XDP_SHARED_UMEM`` on one queue: the kernel gives
    them one buffer pool). ``fill`` and ``pool`` are the group's objects, the
    same for every member, and each use of them holds the group's lock (the
    members may run in several threads). Frames are the group's, not the
    member's: the kernel fills whichever member's RX ring the program picks
    from the one Fill ring, so this side's frames join the group's pool."""

    def __init__(self, rx: RingArea, fill: ProducerRing, pool: FramePool, lock: Any,
                 frame_addrs: U64Array, frame_size: int, umem: memoryview) -> None:
        with lock:
            self.lock = lock
            # (no frames of its own: refill() below finds an empty pool)
            super().__init__(rx, fill.area, frame_addrs[:0], frame_size, umem)
            self.fill = fill
            self.pool = pool
            self.frame_count = len(frame_addrs)
            self.fast_release = False  # (release_batch, with the lock)
            pool.push_array(frame_addrs)
            self.refill()

    def refill(self) -> int:
        with self.lock:
            return super().refill()

    def take_returns(self) -> None:
        with self.lock:
            super().take_returns()

    def commit(self, n: int) -> None:
        with self.lock:
            super().commit(n)

    def release_batch(self, n: int) -> int:
        with self.lock:
            return super().release_batch(n)


class GroupTxPath(LockedTxPath):
    """A TX side whose Completion ring is shared with other sockets bound to
    the same interface queue. Each member keeps its own TX frames; whoever
    reads the shared Completion ring (holding the group's lock) routes every
    address to the pool of the member whose frame it is (``routes``: the
    group's list of ``(first address, end address, weakref to the path)``).
    A closed member's completions are dropped: its frames stay with the group
    until the group goes (see :mod:`xdp_socket.umem`)."""

    def __init__(self, tx: RingArea, comp: ConsumerRing, routes: list[Any], lock: Any,
                 frame_addrs: U64Array, frame_size: int, umem: memoryview) -> None:
        super().__init__(tx, comp.area, frame_addrs, frame_size, umem)
        self.comp = comp
        self.fast_reserve = False  # the group's Completion ring: _reclaim below
        self.fast_forward = False  # (forward refuses)
        self.group_lock = lock
        self._routes = routes

    def _reclaim(self) -> int:
        with self.group_lock:
            comp = self.comp
            n = comp.available(comp.entries)
            if not n:
                return 0
            addrs = gather_circular(comp.area.addrs, comp.cached_cons, n)
            if int(addrs.max()) >= self.umem_size:
                raise RingCorruptedError(
                    f"ring corrupted: the Completion ring returned an address beyond the "
                    f"{self.umem_size}-byte UMEM"
                )
            addrs &= np.uint64(self.base_mask)
            for lo, hi, ref in self._routes:
                theirs = (addrs >= np.uint64(lo)) & (addrs < np.uint64(hi))
                k = int(np.count_nonzero(theirs))
                if not k:
                    continue
                path = ref()
                if path is not None:
                    # (every producer into a member's pool holds the group
                    # lock; the member alone pops: one producer, one consumer)
                    path.pool.push_array(addrs[theirs])
                    path.completed += k
            comp.release(n)
            return n

    def forward(self, rx: RxPath, n: int) -> int:
        raise ValueError("forward is not supported on sockets that share a queue (xskmap_key)")

    def add_peer(self, rx: RxPath) -> None:
        raise ValueError("forward is not supported on sockets that share a queue (xskmap_key)")
