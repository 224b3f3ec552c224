"""Layer 3: the numpy batch API (zero-copy).

A batch is a set of frames taken from a ring in one step. Its addresses and
lengths are numpy arrays; its bytes are reached through the socket's UMEM
array, without copying. The index arithmetic and wrap-around live in
:mod:`xdp_socket._ring` (shared with the per-packet API); this module only
shapes them for numpy users, so the Python cost is per batch, not per packet.

**Frame ownership.** A batch's frames belong to you between taking and
releasing (RX) or reserving and submitting (TX). After that the kernel owns
them again and may overwrite them at any moment: do not keep views of their
bytes, copy what you need first (``payloads()``, ``gather()``). Views stay
*valid memory* even then (never a crash), just not *your* data.

Used as context managers, batches clean up after themselves: an RX batch is
released when the block ends, also on an exception (its frames go back to the
Fill ring); a TX batch is submitted when the block ends normally and cancelled
if an exception escapes (nothing is sent, its frames stay free).

**Lifetime.** A batch refers to the socket's core (the kernel resource), not
to the half that made it, so dropping a half and its batches frees them by
reference counting. Once its half (or the whole socket) is closed, also
from another thread, every operation on a batch taken before raises
:class:`~xdp_socket.SocketClosedError`; only cleanup after an exception
(``__exit__``) and ``cancel()`` pass quietly, since there is nothing left to
give back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _ring
from ._sys import xsk as _xsk
from .core import XskCore
from .errors import SocketClosedError

__all__ = ["RxBatch", "TxBatch"]

U8Array = npt.NDArray[np.uint8]

_EMPTY_DESCS = np.empty(0, _ring.DESC_DTYPE)


def _frame_rows(addrs: npt.NDArray[np.uint64], frame_size: int) -> npt.NDArray[np.intp]:
    """Each address's frame: its row in the ``(frame_count, frame_size)`` UMEM."""
    shift = frame_size.bit_length() - 1
    rows: npt.NDArray[np.intp] = (addrs >> np.uint64(shift)).astype(np.intp)
    return rows


class RxBatch:
    """Received packets taken in one step (see :meth:`RxSocket.receive`).

    ``addrs`` (uint64 UMEM byte addresses of each packet's first byte) and
    ``lens`` (uint32) are numpy arrays of ``len(batch)`` entries, read lazily
    from the RX ring. ``umem`` is the flat uint8 view of the whole UMEM.
    """

    __slots__ = ("_core", "_descs", "_path", "_start", "count", "released", "umem")

    def __init__(self, core: XskCore, path: _ring.RxPath, count: int, umem: U8Array) -> None:
        self._core = core
        self._path = path
        self.count = count
        self._start = path.rx.cached_cons
        self._descs: np.ndarray[Any, Any] | None = None
        self.umem = umem
        self.released = count == 0  # an empty batch has nothing to give back

    def __len__(self) -> int:
        return self.count

    def _d(self) -> np.ndarray[Any, Any]:
        if not self.count:
            return _EMPTY_DESCS
        if self.released:
            raise ValueError("this batch was released: its frames belong to the kernel again")
        if self._path.closed:
            raise SocketClosedError("RX socket")
        if self._descs is None:
            self._check()
            self._descs = self._path.taken_descs(self.count)
        return self._descs

    @property
    def addrs(self) -> npt.NDArray[np.uint64]:
        """UMEM byte address of each packet."""
        out: npt.NDArray[np.uint64] = self._d()["addr"]
        return out

    @property
    def lens(self) -> npt.NDArray[np.uint32]:
        """Length of each packet."""
        out: npt.NDArray[np.uint32] = self._d()["len"]
        return out

    @property
    def frame_indices(self) -> npt.NDArray[np.intp]:
        """Index of each packet's frame (its row in ``sock.umem``)."""
        rows = _frame_rows(self.addrs, self._path.frame_size)
        out: npt.NDArray[np.intp] = rows
        return out

    def packet(self, i: int) -> U8Array:
        """Packet ``i``'s bytes as a numpy view into the UMEM (zero copy)."""
        d = self._d()
        if not -self.count <= i < self.count:
            raise IndexError(f"packet index {i} out of range for a batch of {self.count}")
        a = int(d["addr"][i])
        return self.umem[a : a + int(d["len"][i])]

    def __getitem__(self, i: int) -> U8Array:
        return self.packet(i)

    @property
    def ends(self) -> npt.NDArray[np.bool_]:
        """Multi-buffer: True for each descriptor that ends a packet (its
        ``XDP_PKT_CONTD`` option is clear). A packet is descriptors
        ``ends``-to-``ends``; a batch always ends with a packet's end. Without
        multi-buffer every descriptor is a whole packet (all True)."""
        out: npt.NDArray[np.bool_] = (self._d()["options"] & _ring.PKT_CONTD) == 0
        return out

    def payloads(self) -> list[bytes]:
        """Every packet copied out as bytes (the descriptors of a multi-buffer
        packet joined into one)."""
        d = self._d()
        mv = memoryview(self.umem)  # type: ignore[arg-type]
        pairs = zip(d["addr"].tolist(), d["len"].tolist(), strict=True)
        parts = [bytes(mv[a : a + n]) for a, n in pairs]
        if not self.count or not (d["options"] & _ring.PKT_CONTD).any():
            return parts
        out: list[bytes] = []
        cur: list[bytes] = []
        for part, more in zip(parts, (d["options"] & _ring.PKT_CONTD).tolist(), strict=True):
            cur.append(part)
            if not more:
                out.append(b"".join(cur))
                cur = []
        return out

    def gather(self, width: int, offset: int = 0) -> U8Array:
        """A ``(len(batch), width)`` copy of bytes ``offset .. offset+width`` of
        every packet, gathered with one numpy indexing operation. Bytes past a
        packet's end are whatever the frame holds (mask with ``lens``)."""
        if width < 0 or offset < 0:
            raise ValueError("width and offset must be >= 0")
        room = self._path.frame_size
        d = self._d()
        starts = d["addr"].astype(np.int64) + offset
        if self.count and int((starts & (room - 1)).max()) + width > room:
            raise ValueError(f"bytes {offset}..{offset + width} run past the end of a frame")
        out: U8Array
        if self.count:
            offs = starts & (room - 1)
            first = int(offs[0])
            if (offs == first).all():
                # the usual case: the kernel puts every packet at the same
                # offset in its frame, so this is rows x one slice
                rows = starts >> (room.bit_length() - 1)
                out = self.umem.reshape(-1, room)[rows, first : first + width]
                return out
        idx = starts[:, None] + np.arange(width, dtype=np.int64)
        out = self.umem[idx]
        return out

    def swap_macs(self) -> None:
        """Swap destination and source MAC addresses of every packet in place
        (one gather and one scatter for the whole batch)."""
        if self.count == 0:
            return
        path = self._path
        if self.released or path.closed or path.rx.cached_cons != self._start:
            self._check()  # raises, saying which
        # straight from the ring (in C when accelerated), or from the
        # descriptors this batch already read
        path.swap_macs(self.count, self.umem, self._descs)

    def _check(self) -> None:
        if self.released:
            raise ValueError("this batch was released: its frames belong to the kernel again")
        if self._path.closed:
            raise SocketClosedError("RX socket")
        if self._path.rx.cached_cons != self._start:
            raise ValueError("the RX ring moved under this batch (packets committed elsewhere)")

    def release(self) -> None:
        """Give the frames back to the Fill ring (and kick if the ring asks)."""
        if self.released:
            return
        path = self._path
        if path.fast_release:
            # one C call (the accelerator's: see _ring.RxPath.fast_release),
            # which also checks that the path is open and the ring did not
            # move; < 0: nothing done, the code below checks and reports
            st = _ring.C.release_step(path, self.count, self._start)
            if st >= 0:
                self.released = True
                if st and (st == 1 or path.finish_release()):
                    self._core.wake_fill()  # the Fill ring asks for a wakeup
                return
        if path.closed or path.rx.cached_cons != self._start:
            self._check()  # raises, saying which
        self.released = True
        if path.release_batch(self.count):
            self._core.wake_fill()  # the Fill ring asks for a wakeup

    def forward(self, tx: Any) -> int:
        """Send every packet of this batch out of ``tx`` (a
        :class:`~xdp_socket.TxSocket`) from its own frame, zero copy: ``tx``
        must be the other half of the same socket, or a socket on another
        queue or interface created with the same shared
        :class:`~xdp_socket.Umem` (its frames then come back to this socket
        when that one's kernel completes them). Packets that do
        not fit in the TX ring right now (or all of them, while the TX half
        has frames reserved) are released instead of sent; returns how many
        descriptors were forwarded. On a multi-buffer socket a packet's
        descriptors go together (their ``XDP_PKT_CONTD`` options kept), never
        part of one. May run in another thread than the TX half's."""
        if not self.count:
            return 0
        if self.released:
            raise ValueError("this batch was released")
        path = self._path
        if path.closed or path.rx.cached_cons != self._start:
            self._check()  # raises, saying which
        core = self._core
        tx_core = getattr(tx, "_core", None)
        if tx_core is not core and (
            not isinstance(tx_core, XskCore) or tx_core.umem is None
            or tx_core.umem is not core.umem or tx_core.tx_path is None
        ):
            raise ValueError("can only forward to a TX half on the same UMEM (the other half "
                             "of this socket, or a socket created with the same umem=)")
        assert tx_core is not None
        k: int = tx_core.forward(path, self.count)
        self.released = True
        if k < self.count:
            path.commit(self.count - k)  # no room on TX: drop the rest
            core.kick_fill()
        return k

    def __enter__(self) -> RxBatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # (release()'s body, inlined: this is the receive loop's every batch)
        if self.released:
            return
        path = self._path
        if path.fast_release:  # (as in release())
            st = _ring.C.release_step(path, self.count, self._start)
            if st >= 0:
                self.released = True
                if st and (st == 1 or path.finish_release()):
                    self._core.wake_fill()
                return
        if path.closed or path.rx.cached_cons != self._start:
            if exc_type is not None and path.closed:
                return  # nothing to give back; let the block's own exception through
            self._check()  # raises, saying which
        self.released = True
        if path.release_batch(self.count):
            self._core.wake_fill()

    def __repr__(self) -> str:
        return f"<RxBatch {self.count} packet(s){' released' if self.released else ''}>"


class TxBatch:
    """Free TX frames reserved in one step (see :meth:`TxSocket.reserve`).

    ``addrs`` are the frames' UMEM byte addresses; ``lens`` is a writable
    uint32 array of the lengths to send (0 = not written yet). Write the bytes
    with :meth:`write`, :meth:`write_array`, :meth:`fill` or directly into
    ``frames()``, then :meth:`submit`.

    **Chains** (multi-buffer sockets, ``XdpConfig(multi_buffer=True)``): a
    packet longer than a frame given to :meth:`write` or
    :meth:`write_packets` takes as many adjacent frames of the batch as it
    needs, each but the last flagged ``XDP_PKT_CONTD`` (``options``), and is
    sent as one packet. ``write`` returns the number of frames it used, so
    the next packet goes at ``i + used``. At most
    :func:`~xdp_socket._sys.xsk.max_tx_chain` frames per packet (18 with the
    kernel's defaults); :meth:`submit` never cuts a chain.
    """

    __slots__ = ("_addrs", "_core", "_len_all", "_lens", "_opts", "_path", "_start", "count",
                 "done", "umem2d")

    def __init__(self, core: XskCore, path: _ring.TxPath, count: int, umem2d: U8Array) -> None:
        self._core = core
        self._path = path
        self.count = count
        self._start = path.tx.cached_prod
        self.umem2d = umem2d
        self.done = False
        # Arrays are made on first use: the common txonly loop only sets one
        # length for the whole batch and never needs them.
        self._addrs: npt.NDArray[np.uint64] | None = None
        self._lens: npt.NDArray[np.uint32] | None = None
        self._len_all = 0  # one validated length for every frame, while _lens is None
        self._opts: npt.NDArray[np.uint32] | None = None  # made by the first chain

    @property
    def addrs(self) -> npt.NDArray[np.uint64]:
        """The frames' UMEM byte addresses."""
        if self._addrs is None:
            self._addrs = self._path.reserved_addrs(self.count)
        return self._addrs

    @property
    def frame_indices(self) -> npt.NDArray[np.intp]:
        """Index of each reserved frame (its row in ``sock.umem``)."""
        rows = _frame_rows(self.addrs, self._path.frame_size)
        out: npt.NDArray[np.intp] = rows
        return out

    @property
    def lens(self) -> npt.NDArray[np.uint32]:
        """Lengths to send, writable (0 = frame not written)."""
        if self._lens is None:
            self._lens = np.full(self.count, self._len_all, np.uint32)
        return self._lens

    @property
    def umem(self) -> U8Array:
        """The whole UMEM as a flat uint8 array."""
        return self.umem2d.reshape(-1)

    def __len__(self) -> int:
        return self.count

    @property
    def frame_size(self) -> int:
        return self._path.frame_size

    def frames(self) -> U8Array:
        """A read-only ``(len(batch), frame_size)`` *copy* of the frames' bytes
        (the frames need not be adjacent in the UMEM, so numpy cannot give a
        view). To write, use :meth:`edit`, :meth:`frame`, :meth:`write_array`,
        :meth:`fill` or :meth:`write`."""
        rows = _frame_rows(self.addrs, self.frame_size)
        out: U8Array = self.umem2d[rows]
        out.flags.writeable = False  # a write would be lost silently: refuse it
        return out

    def frame(self, i: int) -> U8Array:
        """Frame ``i``'s bytes as a writable numpy view into the UMEM (zero copy).
        Set its length with :meth:`set_lengths` or ``lens[i]``."""
        self._check()
        if not -self.count <= i < self.count:
            raise IndexError(f"frame index {i} out of range for a batch of {self.count}")
        row: U8Array = self.umem2d[int(self.addrs[i]) // self.frame_size]
        return row

    @contextlib.contextmanager
    def edit(self, count: int | None = None) -> Iterator[U8Array]:
        """``with batch.edit() as frames:`` a writable ``(count, frame_size)``
        array of the first ``count`` frames (default all), written back into the
        UMEM in one numpy operation when the block ends without an exception.
        Set the lengths as usual."""
        self._check()
        k = self.count if count is None else count
        if not 0 <= k <= self.count:
            raise ValueError(f"count must be 0..{self.count}")
        rows = _frame_rows(self.addrs[:k], self.frame_size)
        work: U8Array = self.umem2d[rows]
        yield work
        self._check()
        self.umem2d[rows] = work

    def write(self, i: int, data: bytes | bytearray | memoryview | U8Array) -> int:
        """Copy one packet into frame ``i`` and set its length; returns the
        number of frames it took (1, or a chain's length on a multi-buffer
        socket: see the class docstring)."""
        self._check()
        if not -self.count <= i < self.count:
            raise IndexError(f"frame index {i} out of range for a batch of {self.count}")
        n = len(data)
        size = self.frame_size
        if n > size and self._path.multi_buffer:
            return self._write_chain(i % self.count, data)
        if not 0 < n <= size:
            raise ValueError(
                f"packet of {n} bytes does not fit a {size}-byte frame"
                + (" (XdpConfig(multi_buffer=True) sends longer ones as descriptor chains)"
                   if n else ""))
        a = int(self.addrs[i])
        self.umem[a : a + n] = np.frombuffer(data, np.uint8) if not isinstance(
            data, np.ndarray) else data
        self.lens[i] = n
        if self._opts is not None:
            self._opts[i] = 0  # (it may have been a chain's frame before)
        return 1

    def _write_chain(self, i: int, data: bytes | bytearray | memoryview | U8Array) -> int:
        size = self.frame_size
        n = len(data)
        m = -(-n // size)
        most = _xsk.max_tx_chain()
        if m > most:
            raise ValueError(
                f"packet of {n} bytes needs {m} {size}-byte frames; the kernel sends at most "
                f"{most} descriptors per packet (up to {most * size} bytes)")
        if i + m > self.count:
            raise ValueError(
                f"packet of {n} bytes needs {m} frames from frame {i}, the batch has "
                f"{self.count - i}: reserve more, or write it into a later batch")
        src = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
        addrs = self.addrs
        lens = self.lens
        if self._opts is None:
            self._opts = np.zeros(self.count, np.uint32)
        for j in range(m):
            chunk = src[j * size : (j + 1) * size]
            a = int(addrs[i + j])
            self.umem[a : a + chunk.shape[0]] = chunk
            lens[i + j] = chunk.shape[0]
        self._opts[i : i + m - 1] = _ring.PKT_CONTD
        self._opts[i + m - 1] = 0
        return m

    def write_packets(self, packets: Sequence[bytes | bytearray | memoryview]) -> int:
        """Copy packets in, from frame 0, while they fit; returns how many
        packets were written (a chain takes several frames)."""
        at = 0
        for k, p in enumerate(packets):
            need = -(-len(p) // self.frame_size) if self._path.multi_buffer else 1
            if at + max(need, 1) > self.count:
                return k
            at += self.write(at, p)
        return len(packets)

    def write_array(self, data: U8Array, lens: npt.ArrayLike | None = None) -> None:
        """Copy a ``(k, L)`` uint8 array into the first ``k`` frames in one numpy
        operation; ``lens`` (scalar or k values, default ``L``) sets lengths."""
        self._check()
        arr = np.asarray(data, dtype=np.uint8)
        if arr.ndim != 2 or arr.shape[0] > self.count:
            raise ValueError(f"expected a (k <= {self.count}, L) uint8 array, got {arr.shape}")
        k, width = arr.shape
        if width > self.frame_size:
            raise ValueError(f"rows of {width} bytes do not fit {self.frame_size}-byte frames")
        if not self._path.write_rows(arr, k):
            rows = _frame_rows(self.addrs[:k], self.frame_size)
            self.umem2d[rows, :width] = arr
        self._set_lens(k, width if lens is None else lens)

    def fill(self, template: bytes | U8Array, count: int | None = None) -> None:
        """Copy the same packet into the first ``count`` frames (default all)."""
        self._check()
        tpl = np.frombuffer(bytes(template), np.uint8)
        k = self.count if count is None else count
        if not 0 <= k <= self.count:
            raise ValueError(f"count must be 0..{self.count}")
        if not 0 < tpl.shape[0] <= self.frame_size:
            raise ValueError(f"packet of {tpl.shape[0]} bytes does not fit a frame")
        rows = _frame_rows(self.addrs[:k], self.frame_size)
        self.umem2d[rows, : tpl.shape[0]] = tpl
        self._set_lens(k, int(tpl.shape[0]))

    def set_lengths(self, lens: npt.ArrayLike, count: int | None = None) -> None:
        """Set the lengths of the first ``count`` frames (scalar or array)."""
        path = self._path
        if (lens.__class__ is int and count is None and self._lens is None
                and 0 < lens <= path.frame_size):
            # the txonly loop's call: one length for the whole batch, kept
            # as an int until submit (no array, no ring write yet)
            if self.done or path.closed or (self.count and path.tx.cached_prod != self._start):
                self._refuse()  # (_check, inlined)
            self._len_all = lens
            return
        self._check()
        self._set_lens(self.count if count is None else count, lens)

    def _set_lens(self, k: int, lens: npt.ArrayLike) -> None:
        checked = _ring.check_lengths(lens, k, self.frame_size)
        if self._opts is not None:
            self._opts[:k] = 0  # whole frames now, no chain among them
        if isinstance(checked, int) and k == self.count and self._lens is None:
            self._len_all = checked  # fast path: no array at all
        else:
            self.lens[:k] = checked

    def _check(self) -> None:
        path = self._path
        if self.done or path.closed or (self.count and path.tx.cached_prod != self._start):
            self._refuse()

    def _refuse(self) -> None:
        """Why ``_check`` failed (kept out of the per-batch path)."""
        if self.done:
            raise ValueError("this batch was already submitted or cancelled")
        if self._path.closed:
            raise SocketClosedError("TX socket")
        # (an empty batch reserved nothing, so frames forwarded by the RX half
        # in another thread may move the ring under it harmlessly)
        raise ValueError("the TX ring moved under this batch (frames committed elsewhere)")

    def submit(self, count: int | None = None, kick: bool = True) -> int:
        """Send the first ``count`` frames (default: all); each must have a
        length. The rest stay reserved for the next :meth:`TxSocket.reserve`.
        Returns how many were submitted."""
        path = self._path
        if (count is None and self._len_all and self._lens is None and self._opts is None
                and not self.done and not path.closed and path.tx.cached_prod == self._start):
            # the usual case (every frame, one length; _check passed):
            # lengths, publish and kick in one step
            self.done = True
            self._core.submit_tx(path, self.count, self._len_all, kick)
            return self.count
        self._check()
        k = self.count if count is None else count
        if not 0 <= k <= self.count:
            raise ValueError(f"count must be 0..{self.count}")
        opts = self._opts
        if opts is not None and k and opts[k - 1] & _ring.PKT_CONTD:
            raise ValueError(f"frame {k - 1} is inside a chain: submit the whole packet")
        if k:
            if opts is not None:
                path.set_options_n(opts[:k], k)
            if self._lens is None:
                if not self._len_all:
                    raise ValueError("no frame in the submit has a length: write them or "
                                     "set_lengths()")
                if k == self.count:
                    # every frame, one length
                    self.done = True
                    self._core.submit_tx(path, k, self._len_all, kick)
                    return k
                path.set_lengths(self._len_all, k, checked=True)
            else:
                lens = self._lens[:k]
                if int(lens.min()) == 0:
                    raise ValueError("a frame in the submit has no length: write it or "
                                     "set_lengths()")
                # ``lens`` is writable by the user, so it is checked here, once
                path.set_lengths(lens, k)
            # lengths were validated here: skip the ring's own zero-length scan
            path.commit(k, checked=True)
        if k < self.count:
            # the rest stay reserved; reserve() did not clear their lengths
            path.clear_lengths(self.count - k)
        self.done = True
        if kick:
            self._core.drive_tx()
        return k

    def submit_array(self, data: U8Array, lens: npt.ArrayLike | None = None,
                     kick: bool = True) -> int:
        """:meth:`write_array` then :meth:`submit` of those ``k`` rows, in one
        step; returns ``k``. The other frames stay reserved.

        With the compiled accelerator the copy and the kicks are interleaved
        (256 frames at a time): in copy mode the kernel copies every frame
        again during the kick, and does so while the frame is still in the
        CPU cache, instead of after thousands of others have pushed it out.
        That is what ``xdp-socket replay`` sends with."""
        self._check()
        arr = np.asarray(data, dtype=np.uint8)
        if arr.ndim != 2 or arr.shape[0] > self.count:
            raise ValueError(f"expected a (k <= {self.count}, L) uint8 array, got {arr.shape}")
        k, width = int(arr.shape[0]), int(arr.shape[1])
        if width > self.frame_size:
            raise ValueError(f"rows of {width} bytes do not fit {self.frame_size}-byte frames")
        # (checked before anything is copied, on either path)
        checked = _ring.check_lengths(width if lens is None else lens, k, self.frame_size)
        if k and self._lens is None and self._opts is None and (
                width <= 1 or arr.strides[1] == 1):
            c_lens = checked if isinstance(checked, int) else np.ascontiguousarray(
                checked, dtype=np.uint32)
            try:
                sent = self._core.write_submit_tx(self._path, arr, k, c_lens, kick,
                                                  self.count - k)
            except BaseException:
                self.done = True  # the frames were published: the batch is spent
                raise
            if sent:
                self.done = True
                return k
        self.write_array(arr, checked)
        return self.submit(k, kick)

    def cancel(self) -> None:
        """Send nothing; the frames stay free (reserved for the next batch).
        After the socket was closed there is nothing to give back: a no-op."""
        if self.done:
            return
        self.done = True
        if not self._path.closed:
            self._path.clear_lengths(self.count)

    def __enter__(self) -> TxBatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.done:
            return
        if exc_type is None:
            if self._lens is None:
                self.submit(self.count if self._len_all else 0)
                return
            # submit the written prefix; unwritten frames stay reserved
            zero = np.flatnonzero(self._lens == 0)
            self.submit(int(zero[0]) if zero.shape[0] else self.count)
        else:
            self.cancel()

    def __repr__(self) -> str:
        return f"<TxBatch {self.count} frame(s){' done' if self.done else ''}>"
