"""Every error of the ring core and the batch API, type and message (the
messages are part of the interface), and the boundaries around them; plus
the paths the model in ``test_ring_model.py`` does not take (closed sockets,
kernel-written values that cannot be right, mappings released).

Surviving mutants of ``tools/mutation.py`` that cannot change behaviour
(equivalent), and why (names as ``mutmut show`` prints them):

* ``_ring.ProducerRing.free_entries`` / ``ConsumerRing.available`` and the
  ``free_entries(2)`` of ``RxPath.commit``'s one-packet case: thresholds that
  only decide whether the shared index is read again; a fresh read is never
  smaller than the cache, so every count returned stays the same.
* ``TxPath.seek``'s last line (``n if reserved >= n else reserved`` with the
  test weakened or dropped): after reserving, ``reserved <= n``, so
  ``reserved >= n`` means ``reserved == n``. ``k > 0`` to ``k >= 0``: with
  ``k == 0`` the branch moves nothing.
* ``TxPath.peek_at`` / ``RxPath.peek_at``: ``0 <= i`` to ``0 < i`` or ``1 <= i``
  in the fast guard, which only sends bad indices on to ``slot()``; index 0
  then goes through ``slot()``'s own check and on.
* ``TxPath.commit`` ``n > first`` to ``n >= first``, ``gather_circular``
  ``s + n <= size`` to ``<``, and the like in the circular helpers: the extra
  slice is empty (``lens[:0].all()`` is True, concatenating nothing).
* ``FramePool.snapshot`` / ``RxBatch.gather``: ``np.arange(..., dtype=np.int64)``
  without the dtype is int64 on Linux anyway.
* ``TxPath.__init__``: ``max(1, entries // 2)`` to ``max(2, ...)`` or
  ``entries / 2`` (same comparisons for any ring the kernel accepts), and
  ``rx_peer`` / ``rx_limit`` start values: nothing reads them before the socket
  sets them (``foreign_in_flight`` stays 0 without forwarding).
* ``RingArea.release``: the dtypes of the empty arrays left in place of the
  dropped views.
* ``batch._frame_rows``: every mutant of its second result (the offset in the
  frame): every caller discards it (``rows, _ = ...``).
* ``RxBatch.payloads``: ``zip(..., strict=True)`` with ``strict`` dropped,
  False or None: both lists come from the same descriptors.
* ``TxBatch.frames``: ``out.flags.writeable = None`` is the same as False.
* ``RxBatch.gather``: mutants that only make the "same offset everywhere"
  test fail (``first = None``, ``!=``): the general path gives the same bytes.
  ``reshape(-2, room)``: numpy takes any negative size as "the rest".
* ``TxBatch.write_array``: ``np.asarray(data, dtype=np.uint8)`` without the
  dtype: a uint8 array stays one, and other integers are cast to uint8 when
  stored into the UMEM.
* ``TxBatch.submit``: ``set_lengths(..., checked=True)`` / ``commit(k,
  checked=True)`` turned to False or None only re-validate lengths validated
  a line earlier; ``k < self.count`` to ``<=`` clears the lengths of no frames.

Survivors that are not equivalent but no test reaches: ``RingArea.release``'s
``contextlib.suppress(BufferError, ValueError)`` mutants (no object this test
can make holds an export that makes ``memoryview.release()`` raise; numpy and
ctypes views keep the mapping's own export, which the test does check).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable

import numpy as np
import pytest
from fake_kernel import U32, FakeCore, FakeKernel, both_paths  # noqa: F401

from xdp_socket import _ring
from xdp_socket.batch import RxBatch, TxBatch
from xdp_socket.errors import SocketClosedError

FS = 2048


def umem2d(k: FakeKernel) -> np.ndarray:
    return np.frombuffer(k.umem, np.uint8).reshape(k.frame_count, k.frame_size)


def tx_batch(k: FakeKernel, path: _ring.TxPath, n: int,
             core: FakeCore | None = None) -> TxBatch:
    got = path.seek(n, clear_lengths=False)
    return TxBatch(core or FakeCore(path), path, got, umem2d(k))  # type: ignore[arg-type]


def rx_batch(k: FakeKernel, path: _ring.RxPath, n: int,
             core: FakeCore | None = None) -> RxBatch:
    return RxBatch(core or FakeCore(), path, path.seek(n),  # type: ignore[arg-type]
                   umem2d(k).reshape(-1))


# --- ring areas and rings ------------------------------------------------------------------
def test_ring_area_errors() -> None:
    with pytest.raises(ValueError, match=r"^ring entries must be a power of two, got 12$"):
        _ring.RingArea(bytearray(1024), 0, 64, 128, 192, 12, "addr")
    with pytest.raises(ValueError, match=r"^ring entries must be a power of two, got 0$"):
        _ring.RingArea(bytearray(1024), 0, 64, 128, 192, 0, "addr")
    with pytest.raises(ValueError, match=r"^unknown ring kind 'fill'$"):
        _ring.RingArea(bytearray(1024), 0, 64, 128, 192, 8, "fill")
    small = r"^ring mapping is smaller than its offsets and entries need$"
    # 192 + 16 * 8 = 320 bytes needed for an address ring of 16
    _ring.RingArea(bytearray(320), 0, 64, 128, 192, 16, "addr")
    with pytest.raises(ValueError, match=small):
        _ring.RingArea(bytearray(319), 0, 64, 128, 192, 16, "addr")
    # a descriptor ring needs 16 bytes a slot
    _ring.RingArea(bytearray(192 + 16 * 16), 0, 64, 128, 192, 16, "desc")
    with pytest.raises(ValueError, match=small):
        _ring.RingArea(bytearray(192 + 16 * 16 - 1), 0, 64, 128, 192, 16, "desc")
    # the index words themselves must fit, whichever of them is last
    for offs in ((316, 0, 4), (0, 316, 4), (0, 4, 316)):
        _ring.RingArea(bytearray(320), *offs, 0, 16, "addr")
    for offs in ((317, 0, 4), (0, 317, 4), (0, 4, 317)):
        with pytest.raises(ValueError, match=small):
            _ring.RingArea(bytearray(320), *offs, 0, 16, "addr")


def test_ring_area_views_share_the_bytes() -> None:
    buf = bytearray(192 + 16 * 4)
    area = _ring.RingArea(buf, 0, 64, 128, 192, 4, "desc")
    area.descs[3] = (0x1122334455, 77, 5)
    assert area.desc_q[2 * 3] == 0x1122334455 == area.addr_q[6] == area.addrs[3]
    assert area.desc_i[4 * 3 + 2] == 77 == area.lens[3]
    assert area.desc_i[4 * 3 + 3] == 5 == area.options[3]
    area.producer[0], area.consumer[0], area.flags[0] = 7, 8, 9
    assert bytes(buf[0:4]) == (7).to_bytes(4, "little")
    assert bytes(buf[64:68]) == (8).to_bytes(4, "little")
    assert bytes(buf[128:132]) == (9).to_bytes(4, "little")
    addr = _ring.RingArea(bytearray(192 + 8 * 4), 0, 64, 128, 192, 4, "addr")
    addr.addrs[2] = 4096
    assert addr.addr_q[2] == 4096 == addr.desc_q[2] and addr.descs is addr.addrs
    assert addr.lens.shape == (0,) and addr.options.shape == (0,)
    assert addr.desc_i[4] == 4096


def test_ring_area_release_lets_the_mapping_close() -> None:
    m = mmap.mmap(-1, 4096)
    area = _ring.RingArea(m, 0, 64, 128, 192, 16, "desc")
    with pytest.raises(BufferError):
        m.close()  # the views are exported
    area.release()
    assert area.descs.shape == (0,) and area.addrs.shape == (0,)
    assert area.lens.shape == (0,) and area.options.shape == (0,)
    m.close()
    # a user still holding a view: release() does not fail, the rest goes
    m2 = mmap.mmap(-1, 4096)
    area2 = _ring.RingArea(m2, 0, 64, 128, 192, 16, "addr")
    held = area2.addrs[:4]
    area2.release()
    with pytest.raises(BufferError):
        m2.close()
    del held
    m2.close()


def test_producer_ring_corrupted_consumer() -> None:
    k = FakeKernel(ring=8, start=2**32 - 2)
    ring = _ring.ProducerRing(k.tx.area)
    ring.submit(3)  # producer wraps to 1
    assert k.tx.prod == 1
    k.tx.cons = 2  # the kernel's consumer ahead of our producer
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: consumer 2 is ahead of "
                                                       r"producer 1 in a ring of 8$"):
        ring.free_entries(8)
    with pytest.raises(_ring.RingCorruptedError):  # not trusted on the next call either
        ring.free_entries(8)
    k.tx.cons = 1  # consumed everything: the whole ring is free again
    assert ring.free_entries(8) == 8
    assert ring.kernel_pending() == 0


def test_consumer_ring_corrupted_producer() -> None:
    k = FakeKernel(ring=8, start=2**32 - 1)
    ring = _ring.ConsumerRing(k.rx.area)
    assert ring.available(1) == 0
    k.rx.prod = 7  # 8 entries ahead: a full ring, still right
    assert ring.available(1) == 8
    ring.release(8)
    assert k.rx.cons == 7
    k.rx.prod = 7 + 9
    ahead = r"^ring corrupted: producer 16 is 9 entries ahead of consumer 7 in a ring of 8$"
    with pytest.raises(_ring.RingCorruptedError, match=ahead):
        ring.available(1)
    with pytest.raises(_ring.RingCorruptedError):  # not trusted on the next call either
        ring.available(1)
    k.rx.prod = 7 + 2
    assert ring.available(1) == 2


def test_consumer_ring_reads_the_kernel_only_when_short() -> None:
    k = FakeKernel(ring=8)
    ring = _ring.ConsumerRing(k.rx.area)
    k.rx.prod = 3
    assert ring.available(2) == 3
    k.rx.prod = 5
    assert ring.available(3) == 3  # cache has enough: no read
    assert ring.available(4) == 5


# --- circular helpers and lengths ----------------------------------------------------------
def test_circular_helpers_refuse_empty_arrays() -> None:
    empty = np.empty(0, np.uint64)
    full = np.arange(4, dtype=np.uint64)
    with pytest.raises(ValueError, match=r"^copy between circular arrays of size 0$"):
        _ring.copy_circular(empty, 0, full, 0, 1)
    with pytest.raises(ValueError, match=r"^copy between circular arrays of size 0$"):
        _ring.copy_circular(full, 0, empty, 0, 1)
    _ring.copy_circular(empty, 0, empty, 0, 0)  # nothing to copy: fine
    with pytest.raises(ValueError, match=r"^gather from a circular array of size 0$"):
        _ring.gather_circular(empty, 0, 1)
    assert _ring.gather_circular(empty, 0, 0).shape == (0,)
    with pytest.raises(ValueError, match=r"^fill of a circular array of size 0$"):
        _ring._fill_circular(empty, 0, 1, 0)
    _ring._fill_circular(empty, 0, 0, 0)


@pytest.mark.parametrize("start", [0, 5, 7, 2**32 - 1])
def test_circular_helpers_across_the_end(start: int) -> None:
    arr = np.zeros(8, np.uint64)
    _ring.scatter_circular(arr, start, np.arange(1, 7, dtype=np.uint64), 6)
    want = np.zeros(8, np.uint64)
    for i in range(6):
        want[(start + i) & 7] = i + 1
    assert arr.tolist() == want.tolist()
    assert _ring.gather_circular(arr, start, 6).tolist() == list(range(1, 7))
    assert _ring._max_circular(arr, start, 6) == 6
    assert _ring._max_circular(arr, start + 1, 5) == 6
    assert _ring._max_circular(arr, start, 1) == 1
    _ring.scatter_circular(arr, start, 9, 5)  # a scalar
    assert sorted(arr.tolist()) == [0, 0, 0, 6, 9, 9, 9, 9, 9][1:]
    _ring._fill_circular(arr, start + 5, 3, 4)
    assert sorted(arr.tolist()) == [4, 4, 4, 6, 9, 9, 9, 9][:3] + [9] * 5
    out = np.zeros(8, np.uint64)
    _ring.copy_circular(out, start + 3, arr, start, 8, and_mask=~3 & 0xFFFFFFFFFFFFFFFF)
    assert sorted(out.tolist()) == [4, 4, 4, 8, 8, 8, 8, 8]


def test_check_lengths_boundaries() -> None:
    check = _ring.check_lengths
    assert check(1, 3, FS) == 1
    assert check(FS, 3, FS) == FS
    assert check(np.uint32(60), 3, FS) == 60 and isinstance(check(np.uint32(60), 3, FS), int)
    for bad in (0, -1, FS + 1):
        with pytest.raises(ValueError, match=rf"^length must be 1\.\.{FS}, got {bad}$"):
            check(bad, 3, FS)
    with pytest.raises(ValueError, match=rf"^length must be 1\.\.{FS}, got 0$"):
        check(np.array(0), 3, FS)
    assert check([1, FS, 60], 3, FS).tolist() == [1, FS, 60]
    for bad_arr in ([0, 60, 60], [60, FS + 1, 60], [60, 60, 0]):
        with pytest.raises(ValueError, match=rf"^every length must be 1\.\.{FS}$"):
            check(bad_arr, 3, FS)
    with pytest.raises(ValueError, match=r"^expected 3 lengths, got shape \(2,\)$"):
        check([60, 60], 3, FS)
    with pytest.raises(ValueError, match=r"^expected 2 lengths, got shape \(1, 2\)$"):
        check([[60, 60]], 2, FS)
    assert check([], 0, FS).shape == (0,)


def test_frame_pool_overflow_and_underflow() -> None:
    pool = _ring.FramePool(3)
    assert pool.capacity == 4 and pool.count == 0
    assert _ring.FramePool(0).capacity == 1 and _ring.FramePool(4).capacity == 4
    with pytest.raises(RuntimeError, match=r"^frame pool underflow$"):
        pool.pop()
    with pytest.raises(RuntimeError, match=r"^frame pool underflow$"):
        pool.pop_into(np.zeros(4, np.uint64), 0, 1)
    pool.push_array(np.array([10, 20], np.uint64))
    pool.push(30)
    pool.push_from(np.array([40, 50], np.uint64), 1, 1)
    assert pool.snapshot().tolist() == [10, 20, 30, 50]
    twice = r"^frame pool overflow: a frame was returned twice$"
    with pytest.raises(RuntimeError, match=twice):
        pool.push(60)
    with pytest.raises(RuntimeError, match=twice):
        pool.push_array(np.array([60], np.uint64))
    with pytest.raises(RuntimeError, match=twice):
        pool.push_from(np.array([60], np.uint64), 0, 1)
    assert pool.pop() == 10
    dst = np.zeros(4, np.uint64)
    pool.pop_into(dst, 3, 2)
    assert dst.tolist() == [30, 0, 0, 20]
    with pytest.raises(RuntimeError, match=r"^frame pool underflow$"):
        pool.pop_into(dst, 0, 2)
    assert pool.count == 1 and pool.pop() == 50 and pool.count == 0


# --- TX path -------------------------------------------------------------------------------
def test_paths_refuse_the_wrong_rings() -> None:
    k = FakeKernel()
    addrs = k.addrs(0, 4)
    with pytest.raises(ValueError, match=r"^TxPath needs a descriptor TX ring and an address "
                                         r"completion ring$"):
        _ring.TxPath(k.comp.area, k.tx.area, addrs, FS, k.umem_view)
    with pytest.raises(ValueError, match=r"^TxPath needs"):
        _ring.TxPath(k.tx.area, k.rx.area, addrs, FS, k.umem_view)
    with pytest.raises(ValueError, match=r"^RxPath needs a descriptor RX ring and an address "
                                         r"fill ring$"):
        _ring.RxPath(k.fill.area, k.rx.area, addrs, FS, k.umem_view)
    with pytest.raises(ValueError, match=r"^RxPath needs"):
        _ring.RxPath(k.rx.area, k.tx.area, addrs, FS, k.umem_view)


def test_tx_index_and_count_errors() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    assert path.seek(3) == 3
    rng = r"out of range: 3 frame\(s\) available \(call seek_n\)$"
    for i in (3, -1):
        with pytest.raises(IndexError, match=rf"^frame index {i} {rng}"):
            path.peek_at(i, 60)
        with pytest.raises(IndexError, match=rf"^frame index {i} {rng}"):
            path.frame_addr(i)
    assert path.frame_addr(2) == 2 * FS
    asked = r"^4 frame\(s\) asked for, 3 reserved$"
    with pytest.raises(ValueError, match=asked):
        path.reserved_addrs(4)
    with pytest.raises(ValueError, match=asked):
        path.set_lengths(60, 4)
    with pytest.raises(ValueError, match=r"^-1 frame\(s\) asked for"):
        path.set_lengths(60, -1)
    with pytest.raises(ValueError, match=rf"^length must be 1\.\.{FS}, got 0$"):
        path.set_lengths(0, 3)
    with pytest.raises(ValueError, match=r"^cannot commit 4 frame\(s\): 3 available \(call "
                                         r"seek_n first\)$"):
        path.commit(4)
    with pytest.raises(ValueError, match=r"^cannot commit -1 frame"):
        path.commit(-1)
    with pytest.raises(ValueError, match=r"^frame 0 has no length: call peek_at\(0, length\) "
                                         r"before commit$"):
        path.commit(1)
    with pytest.raises(ValueError, match=r"^a frame in the commit has no length: call peek_at "
                                         r"for each one$"):
        path.commit(2)
    path.commit(0)
    assert path.reserved == 3 and k.tx.prod == 0


@pytest.mark.parametrize("start", [2**32 - 3, 2**32 - 1, 0])
def test_tx_commit_checks_lengths_across_the_wrap_after_reuse(start: int) -> None:
    """Fill a batch of 8 near the wrap, send it, then reuse the same slots:
    a frame left unwritten after the wrap must be refused, whichever it is."""
    k = FakeKernel(frame_count=16, ring=8, start=start)
    path = k.tx_path()
    assert path.seek(8) == 8
    path.set_lengths(60, 8)
    path.commit(8)
    k.transmit()
    assert k.invalid == 0 and len(k.sent) == 8
    for hole in range(8):
        assert path.seek(8) == 8  # the slots still hold length 60 from the first round
        for i in range(8):
            if i != hole:
                path.peek_at(i, 61)
        with pytest.raises(ValueError, match="has no length"):
            path.commit(8)
        with pytest.raises(ValueError, match="has no length"):
            path.commit(hole + 1)
        path.commit(hole)
        path.peek_at(0, 62)
        path.commit(path.reserved)
        k.transmit()
        path.reclaim()
    assert k.invalid == 0


def test_tx_reclaim_rejects_a_completion_outside_the_umem() -> None:
    k = FakeKernel(frame_count=16, ring=8)
    path = k.tx_path()
    path.seek(1)
    path.peek_at(0, 60)
    path.commit(1)
    k.transmit()
    k.comp.put(k.comp.prod - 1, 16 * FS)  # one past the last byte
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: the Completion ring "
                                                       rf"returned an address beyond the "
                                                       rf"{16 * FS}-byte UMEM$"):
        path.reclaim()
    k.comp.put(k.comp.prod - 1, 16 * FS - 1)  # the last byte: inside
    assert path.reclaim() == 1
    assert path.pool.snapshot().tolist()[-1] == 15 * FS


def test_forward_errors() -> None:
    k = FakeKernel(frame_count=32, ring=16)
    rx = k.rx_path(0, 16)
    other = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    tx.pair(rx, 16 * FS)
    with pytest.raises(ValueError, match=r"^can only forward from an RX half on the same "
                                         r"UMEM$"):
        tx.forward(other, 0)
    k.receive([b"a" * 60] * 2)
    assert rx.seek(1) == 1
    assert rx.available == 2  # the kernel's producer was read once: both are seen
    with pytest.raises(ValueError, match=r"^cannot forward 3 packet\(s\): 2 available$"):
        tx.forward(rx, 3)
    with pytest.raises(ValueError, match=r"^cannot forward -1 packet"):
        tx.forward(rx, -1)
    assert tx.forward(rx, 0) == 0
    assert tx.forward(rx, 2) == 2 and tx.foreign_in_flight == 2 and rx.received == 2


def test_forward_partial_when_the_tx_ring_is_short() -> None:
    k = FakeKernel(frame_count=32, ring=4, fill=16)
    k.rx = type(k.rx)(16, "desc")
    rx = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    tx.pair(rx, 16 * FS)
    tx.seek(2)
    tx.set_lengths(60, 2)
    tx.commit(2)  # two of four TX slots in use
    k.receive([bytes([i]) * 60 for i in range(5)])
    core = FakeCore(tx)
    b = rx_batch(k, rx, 5, core)
    assert len(b) == 5

    class FakeTx:
        _core = core

    assert b.forward(FakeTx()) == 2
    assert b.released and core.fill_kicks == 1 and core.tx_kicks == 1
    assert rx.available == 0 and rx.received == 5
    k.transmit()
    assert k.sent[2:] == [bytes([0]) * 60, bytes([1]) * 60]
    # completions: two own frames back to the TX pool, two RX frames to returns
    assert tx.reclaim() == 4
    assert tx.foreign_in_flight == 0 and tx.in_flight == 0
    assert rx.returns.snapshot().tolist() == [0, FS]
    assert sorted(tx.pool.snapshot().tolist()) == list(k.addrs(16, 16))
    # the three dropped frames went straight back to the Fill ring
    assert (k.fill.prod - k.fill.cons) & U32 == 16 - 2


def test_forward_never_sends_part_of_a_multi_buffer_packet() -> None:
    """With room for fewer descriptors than the batch has, forward stops at the
    last packet end that fits; chain options travel to the TX ring."""
    for room, sent in ((2, 1), (3, 3), (4, 3)):
        k = FakeKernel(frame_count=32, ring=8, fill=16)
        k.rx = type(k.rx)(16, "desc")
        rx = k.rx_path(0, 16)
        tx = k.tx_path(16, 16)
        rx.multi_buffer = tx.multi_buffer = True
        tx.pair(rx, 16 * FS)
        tx.seek(8 - room)
        tx.set_lengths(60, 8 - room)
        tx.commit(8 - room)  # room for `room` descriptors
        # packets: [0], [1, 2], [3, 4]: XDP_PKT_CONTD on 1 and 3
        k.receive([bytes([i]) * 60 for i in range(5)])
        for i in (1, 3):
            k.rx.area.options[i] = _ring.PKT_CONTD
        core = FakeCore(tx)
        b = rx_batch(k, rx, 5, core)

        class FakeTx:
            _core = core

        assert b.forward(FakeTx()) == sent, room
        assert rx.available == 0 and rx.received == 5
        opts = [int(k.tx.area.options[(8 - room + i) & 7]) for i in range(sent)]
        assert opts == [0, _ring.PKT_CONTD, 0][:sent]
        # the rest went back to the Fill ring, the forwarded ones are in flight
        assert (k.fill.prod - k.fill.cons) & U32 == 16 - sent
        assert tx.foreign_in_flight == sent


def test_rx_seek_returns_no_more_than_asked() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    k.receive([b"abc"] * 5)
    assert path.seek(2) == 2
    assert path.available == 5
    assert path.seek(7) == 5
    assert path.seek(0) == 0


def test_rx_errors() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    k.receive([b"abc"] * 2)
    assert path.seek(2) == 2
    for i in (2, -1):
        with pytest.raises(IndexError, match=rf"^packet index {i} out of range: 2 packet\(s\) "
                                             r"available \(call seek_n\)$"):
            path.peek_at(i)
    with pytest.raises(IndexError, match=r"^packet index 2 out of range"):
        path.slot(2)
    assert path.slot(1) == 1
    with pytest.raises(ValueError, match=r"^3 packet\(s\) asked for, 2 available$"):
        path.taken_descs(3)
    with pytest.raises(ValueError, match=r"^cannot commit 3 packet\(s\): 2 available \(call "
                                         r"seek_n first\)$"):
        path.commit(3)
    with pytest.raises(ValueError, match=r"^cannot commit -1 packet"):
        path.commit(-1)


@pytest.mark.parametrize(("addr", "length", "ok"), [
    (15 * FS + 256, FS, True), (16 * FS - 1, 1, True), (16 * FS, 1, False),
    (0, FS + 1, False), (2**63, 1, False),
])
def test_rx_descriptors_checked_against_the_umem(addr: int, length: int, ok: bool) -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    k.receive([b"abc"] * 2)
    k.rx.put(k.rx.prod - 1, addr, length)
    assert path.seek(2) == 2
    assert path.taken_descs(1)["addr"].tolist() == [256]
    if ok:
        assert path.taken_descs(2)["addr"].tolist() == [256, addr]
    else:
        with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: an RX descriptor "
                                                           r"points outside the UMEM or is "
                                                           r"longer than a frame$"):
            path.taken_descs(2)


def test_rx_commit_returns_frames_to_fill_and_tops_up_at_half() -> None:
    """Released frames go straight back into the Fill ring while it has
    room; the spare frames in the pool wait until it is at most half full,
    then fill it (so the frames in use stay about a Fill ring's worth)."""
    k = FakeKernel(frame_count=12, ring=8, fill=8)
    path = k.rx_path()
    assert k.fill_contents() == [i * FS for i in range(8)]
    assert path.pool.snapshot().tolist() == [8 * FS, 9 * FS, 10 * FS, 11 * FS]
    k.receive([b"x" * 60] * 3)  # frames 0, 1, 2: the Fill ring holds 5 of 8
    assert path.seek(3) == 3
    path.commit(1)  # 6 of 8: more than half, the spares wait
    assert k.fill_contents() == [3 * FS, 4 * FS, 5 * FS, 6 * FS, 7 * FS, 0]
    path.commit(2)  # a batch of two likewise: 8 of 8
    assert k.fill_contents() == [3 * FS, 4 * FS, 5 * FS, 6 * FS, 7 * FS, 0, FS, 2 * FS]
    assert path.pool.count == 4
    k.receive([b"y" * 60] * 5)  # 3 of 8 left: below half
    assert path.seek(5) == 5
    path.commit(1)  # 4 of 8 after it: half full, so the spares top it up
    assert k.fill_contents() == [0, FS, 2 * FS, 3 * FS, 8 * FS, 9 * FS, 10 * FS, 11 * FS]
    assert path.pool.count == 0
    path.commit(4)  # no room for 4: they wait in the pool
    assert path.pool.snapshot().tolist() == [4 * FS, 5 * FS, 6 * FS, 7 * FS]


# --- batches -------------------------------------------------------------------------------
def test_rx_batch_errors() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    k.receive([b"a" * 11, b"b" * 60])
    core = FakeCore()
    b = rx_batch(k, path, 8, core)
    assert repr(b) == "<RxBatch 2 packet(s)>"
    for i in (2, -3):
        with pytest.raises(IndexError, match=rf"^packet index {i} out of range for a batch of 2$"):
            b.packet(i)
    assert bytes(b.packet(-2)) == b"a" * 11
    with pytest.raises(ValueError, match=r"^width and offset must be >= 0$"):
        b.gather(-1)
    with pytest.raises(ValueError, match=r"^width and offset must be >= 0$"):
        b.gather(1, -1)
    assert b.gather(FS - 256).shape == (2, FS - 256)
    with pytest.raises(ValueError, match=rf"^bytes 0\.\.{FS - 255} run past the end of a frame$"):
        b.gather(FS - 255)
    with pytest.raises(ValueError, match=r"^bytes 1\.\.1793 run past the end of a frame$"):
        b.gather(FS - 256, 1)
    with pytest.raises(ValueError, match=r"^a packet is shorter than two MAC addresses$"):
        b.swap_macs()

    class OtherTx:
        _core = FakeCore()

    with pytest.raises(ValueError, match=r"^can only forward to a TX half on the same UMEM "
                                         r"\(the other half of this socket, or a socket "
                                         r"created with the same umem=\)$"):
        b.forward(OtherTx())
    with pytest.raises(ValueError, match=r"^can only forward to a TX half"):
        b.forward(object())
    path.commit(1)  # the per-packet API moved the ring meanwhile
    with pytest.raises(ValueError, match=r"^the RX ring moved under this batch \(packets "
                                         r"committed elsewhere\)$"):
        b.release()
    assert not b.released and core.fill_kicks == 0


def test_rx_batch_after_release_and_close() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    k.receive([b"a" * 60] * 3)
    core = FakeCore()
    b = rx_batch(k, path, 1, core)
    b.release()
    assert core.fill_kicks == 1 and path.available == 2 and path.received == 1
    b.release()
    assert core.fill_kicks == 1 and path.received == 1
    gone = r"^this batch was released: its frames belong to the kernel again$"
    with pytest.raises(ValueError, match=gone):
        _ = b.addrs
    with pytest.raises(ValueError, match=r"^this batch was released$"):
        b.forward(object())
    b2 = rx_batch(k, path, 1, core)
    b2.released = True  # as after forward
    with pytest.raises(ValueError, match=gone):
        b2._check()
    b3 = rx_batch(k, path, 2, core)
    path.closed = True  # (what closing the half does to its ring path)
    with pytest.raises(SocketClosedError, match=r"RX socket is closed"):
        _ = b3.lens
    with pytest.raises(SocketClosedError, match=r"RX socket is closed"):
        b3.release()
    with pytest.raises(SocketClosedError, match=r"RX socket is closed"):
        b3.forward(object())
    with pytest.raises(KeyError), b3:  # cleanup after an exception passes quietly
        raise KeyError("x")
    assert not b3.released
    with pytest.raises(SocketClosedError), b3:
        pass


def test_rx_batch_descriptors_are_read_once() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    k.receive([b"a" * 60] * 2)
    b = rx_batch(k, path, 2)
    d = b.addrs
    k.rx.put(k.rx.cons, 5 * FS, 7)  # (a kernel would not, but the batch must not re-read)
    assert b.addrs is not d and b.addrs.tolist() == d.tolist()
    assert b.lens.tolist() == [60, 60]


def test_rx_batch_gather_with_packets_at_different_offsets() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    k.receive([bytes(range(20)), bytes(range(100, 120))])
    k.rx.put(k.rx.prod - 1, FS + 300, 20)  # second packet 44 bytes further in its frame
    k.umem[FS + 300 : FS + 320] = bytes(range(100, 120))
    b = rx_batch(k, path, 2)
    g = b.gather(4, 2)
    assert g.tolist() == [[2, 3, 4, 5], [102, 103, 104, 105]]
    assert b.gather(0).shape == (2, 0)
    b.swap_macs()
    assert bytes(b.packet(1)[:12]) == bytes(range(106, 112)) + bytes(range(100, 106))
    b.release()


def test_tx_batch_errors_with_messages() -> None:
    k = FakeKernel(frame_size=FS, frame_count=16, ring=16)
    path = k.tx_path()
    b = tx_batch(k, path, 4)
    assert repr(b) == "<TxBatch 4 frame(s)>"
    for i in (4, -5):
        with pytest.raises(IndexError, match=rf"^frame index {i} out of range for a batch of 4$"):
            b.write(i, b"z")
        with pytest.raises(IndexError, match=rf"^frame index {i} out of range for a batch of 4$"):
            b.frame(i)
    with pytest.raises(ValueError, match=rf"^packet of 0 bytes does not fit a {FS}-byte frame$"):
        b.write(0, b"")
    with pytest.raises(ValueError, match=rf"^packet of {FS + 1} bytes does not fit a {FS}-byte "
                                         r"frame \(XdpConfig\(multi_buffer=True\) sends longer "
                                         r"ones as descriptor chains\)$"):
        b.write(0, b"z" * (FS + 1))
    b.write(0, b"z" * FS)  # a full frame fits
    with pytest.raises(ValueError, match=r"^expected a \(k <= 4, L\) uint8 array, got "
                                         r"\(5, 10\)$"):
        b.write_array(np.zeros((5, 10), np.uint8))
    with pytest.raises(ValueError, match=r"^expected a \(k <= 4, L\) uint8 array, got \(10,\)$"):
        b.write_array(np.zeros(10, np.uint8))
    with pytest.raises(ValueError, match=rf"^rows of {FS + 1} bytes do not fit {FS}-byte "
                                         r"frames$"):
        b.write_array(np.zeros((1, FS + 1), np.uint8))
    for bad in (-1, 5):
        with pytest.raises(ValueError, match=r"^count must be 0\.\.4$"):
            b.fill(b"x" * 60, bad)
        with pytest.raises(ValueError, match=r"^count must be 0\.\.4$"):
            b.submit(bad)
        with pytest.raises(ValueError, match=r"^count must be 0\.\.4$"), b.edit(bad):
            pass
    for n in (0, FS + 1):
        with pytest.raises(ValueError, match=rf"^packet of {n} bytes does not fit a frame$"):
            b.fill(b"x" * n)
    with pytest.raises(ValueError, match=r"^expected 4 lengths, got shape \(3,\)$"):
        b.set_lengths([1, 2, 3])
    ro = b.frames()
    assert not ro.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        ro[0, 0] = 1
    b.lens[1] = FS + 1
    with pytest.raises(ValueError, match=r"^a frame in the submit has no length: write it or "
                                         r"set_lengths\(\)$"):
        b.submit()
    with pytest.raises(ValueError, match=rf"^every length must be 1\.\.{FS}$"):
        b.submit(2)
    assert k.tx.prod == 0 and not b.done
    b.lens[1] = FS
    assert b.submit(2) == 2
    done = r"^this batch was already submitted or cancelled$"
    for call in (lambda: b.submit(), lambda: b.write(0, b"late"), lambda: b.fill(b"late"),
                 lambda: b.set_lengths(60), lambda: b.frame(0),
                 lambda: b.write_array(np.zeros((1, 4), np.uint8))):
        with pytest.raises(ValueError, match=done):
            call()
    with pytest.raises(ValueError, match=done), b.edit():
        pass
    b.cancel()  # after submit: nothing to do
    assert path.reserved == 2 and not path.tx.area.lens[2:4].any()


def test_tx_batch_no_length_at_all() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    b = tx_batch(k, path, 3)
    with pytest.raises(ValueError, match=r"^no frame in the submit has a length: write them or "
                                         r"set_lengths\(\)$"):
        b.submit()
    assert b.submit(0) == 0 and b.done and path.reserved == 3


def test_tx_batch_ring_moved_and_closed() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    b = tx_batch(k, path, 4)
    path.peek_at(0, 60)
    path.commit(1)  # the per-packet API sent frame 0 meanwhile
    with pytest.raises(ValueError, match=r"^the TX ring moved under this batch \(frames "
                                         r"committed elsewhere\)$"):
        b.fill(b"x" * 60)
    # an empty batch reserved nothing: the ring may move under it
    empty = TxBatch(FakeCore(path), path, 0, umem2d(k))  # type: ignore[arg-type]
    path.peek_at(0, 60)
    path.commit(1)
    assert empty.submit() == 0
    core = FakeCore(path)
    b2 = tx_batch(k, path, 2, core)
    b2.set_lengths(60)
    with pytest.raises(ValueError, match="moved"), b2.edit() as fr:  # checked again at the end
        path.peek_at(0, 60)
        path.commit(1)
        fr[:] = 7
    path.closed = True  # (what closing the half does to its ring path)
    with pytest.raises(SocketClosedError, match=r"TX socket is closed"):
        b2.submit()
    path.tx.area.lens[path.tx.cached_prod & 15] = 99
    b2.cancel()  # closed: nothing to give back, nothing touched
    assert b2.done and path.tx.area.lens[path.tx.cached_prod & 15] == 99
    assert not (umem2d(k) == 7).any()


def test_tx_batch_edit_writes_back_only_on_success() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    b = tx_batch(k, path, 3)
    with b.edit(2) as fr:
        assert fr.shape == (2, k.frame_size)
        fr[:, :4] = [1, 2, 3, 4]
    with pytest.raises(KeyError), b.edit() as fr:
        fr[:] = 9
        raise KeyError("x")
    rows = umem2d(k)
    assert rows[0, :5].tolist() == rows[1, :5].tolist() == [1, 2, 3, 4, 0]
    assert not rows[2].any() and not (rows == 9).any()
    b.set_lengths(4, count=2)
    with b:
        pass
    k.transmit()
    assert k.sent == [bytes([1, 2, 3, 4])] * 2 and path.reserved == 1


def test_tx_batch_set_lengths_count_then_submit() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    b = tx_batch(k, path, 4)
    b.fill(b"abc" * 20)
    b.set_lengths(10, count=2)
    assert b.lens.tolist() == [10, 10, 60, 60]
    assert b.submit() == 4
    k.transmit()
    assert k.sent == [b"abc" * 3 + b"a"] * 2 + [b"abc" * 20] * 2


def test_tx_batch_with_block_that_only_fills() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    core = FakeCore(path)
    with tx_batch(k, path, 3, core) as b:
        b.fill(b"q" * 60)
    assert core.tx_kicks == 1 and b.done and path.reserved == 0
    with tx_batch(k, path, 3, core) as b2:
        pass  # an empty block sends nothing, keeps the frames
    assert core.tx_kicks == 2 and b2.done and path.reserved == 3
    assert not path.tx.area.lens[path.tx.cached_prod & 15 :][:3].any()
    with tx_batch(k, path, 3, core) as b3:
        b3.fill(b"r" * 61, count=2)
    assert path.reserved == 1
    k.transmit()
    assert k.sent == [b"q" * 60] * 3 + [b"r" * 61] * 2
    with pytest.raises(ValueError, match="has no length"):
        path.commit(1)


def test_locked_tx_path_holds_its_lock_and_passes_arguments() -> None:
    """Each ring operation of a LockedTxPath waits for the lock (the RX
    thread's forward and the TX thread's seek/commit share the TX ring) and
    does what TxPath does."""
    import threading

    k = FakeKernel(frame_count=32, ring=16)
    rx = k.rx_path(0, 16)
    tx = _ring.LockedTxPath(k.tx.area, k.comp.area, k.addrs(16, 16), FS, k.umem_view)
    tx.pair(rx, 16 * FS)
    k.receive([b"f" * 60] * 2)
    assert rx.seek(2) == 2
    results: list[object] = []

    def blocked(call: object) -> None:
        t = threading.Thread(target=lambda: results.append(call()))  # type: ignore[operator]
        with tx.lock:
            t.start()
            t.join(0.05)
            assert t.is_alive(), "ran without the lock"
        t.join(5)
        assert not t.is_alive()

    blocked(lambda: tx.forward(rx, 1))
    assert results[-1] == 1 and tx.foreign_in_flight == 1
    blocked(lambda: tx.seek(3))  # (a new slot's stale length from forward is cleared)
    assert results[-1] == 3 and not tx.tx.area.lens[1:4].any()
    with pytest.raises(ValueError, match="has no length"):
        tx.commit(3)
    blocked(lambda: tx.commit(0))
    tx.set_lengths(60, 3)
    tx.tx.area.lens[(tx.tx.cached_prod + 1) & 15] = 0
    with pytest.raises(ValueError, match="has no length"):
        tx.commit(2)  # checked=False is passed on
    blocked(lambda: tx.commit(1, checked=True))
    assert tx.reserved == 2 and tx.submitted == 2
    tx.seek(2, clear_lengths=True)
    k.transmit()
    blocked(tx.reclaim)
    assert results[-1] == 2 and rx.returns.count == 1 and tx.in_flight == 0
    # seek passes clear_lengths on: slots reused without clearing keep their lengths
    tx.set_lengths(77, 2)
    tx.commit(2, checked=True)
    k.transmit()
    tx.reclaim()
    while tx.tx.cached_prod & 15:
        assert tx.seek(1) == 1
        tx.peek_at(0, 77)
        tx.commit(1)
        k.transmit()
        tx.reclaim()
    tx.tx.area.lens[:] = 55
    assert tx.seek(4, clear_lengths=False) == 4
    assert tx.tx.area.lens[:4].tolist() == [55] * 4
    tx.commit(4)  # the stale lengths count as written (the batch API sets its own)
    # the batch API's one-step submit publishes too: under the lock
    k.transmit()
    tx.reclaim()
    assert tx.seek(3, clear_lengths=False) == 3
    blocked(lambda: tx.submit_len(3, 66))
    assert tx.reserved == 0 and tx.in_flight == 3
    assert k.transmit() == 3 and [len(f) for f in k.sent[-3:]] == [66] * 3


@pytest.mark.usefixtures("both_paths")
def test_group_rx_path_holds_the_group_lock() -> None:
    """A same-queue group's members share one Fill ring and one pool, from
    several threads: every operation of a GroupRxPath that moves frames
    through them waits for the group's lock (a two-thread system test passes
    without it, the race window being narrow under the GIL)."""
    import threading

    k = FakeKernel(frame_count=16, ring=16)
    lock = threading.RLock()
    fill = _ring.ProducerRing(k.fill.area)
    pool = _ring.FramePool(16)
    rx = _ring.GroupRxPath(k.rx.area, fill, pool, lock, k.addrs(0, 16), FS, k.umem_view)
    # every frame in the Fill ring, none pooled: release_batch then needs no
    # refill (whose own lock would hide a release_batch without one)
    assert k.fill.prod == 16 and pool.count == 0
    done: list[str] = []

    def blocked(name: str, call: Callable[[], object]) -> None:
        t = threading.Thread(target=lambda: (call(), done.append(name)))
        with lock:
            t.start()
            t.join(0.05)
            assert t.is_alive(), f"{name} ran without the group lock"
        t.join(5)
        assert not t.is_alive() and done[-1] == name

    k.receive([b"g" * 60] * 6)
    assert rx.seek(6) == 6
    blocked("commit", lambda: rx.commit(1))
    blocked("release_batch", lambda: rx.release_batch(2))
    blocked("refill", rx.refill)
    blocked("take_returns", rx.take_returns)
    assert rx.available == 3


def test_rx_batch_gather_and_swap_boundaries() -> None:
    k = FakeKernel(frame_count=16, ring=16, headroom=257)  # an odd offset in the frame
    path = k.rx_path()
    k.receive([bytes(range(12)), bytes(range(50, 70)), bytes(range(90, 110))])
    one = rx_batch(k, path, 1)
    assert one.gather(3).tolist() == [[0, 1, 2]]
    assert one.gather(3, 1).tolist() == [[1, 2, 3]]
    one.swap_macs()  # exactly two MAC addresses long: fine
    assert bytes(one.packet(0)) == bytes(range(6, 12)) + bytes(range(6))
    one.release()
    two = rx_batch(k, path, 2)
    assert two.gather(2, 3).tolist() == [[53, 54], [93, 94]]
    assert two.gather(0).shape == (2, 0)
    assert two.gather(FS - 257).shape == (2, FS - 257)
    two.release()


def test_rx_batch_forward_of_everything_gives_nothing_back_to_fill() -> None:
    k = FakeKernel(frame_count=32, ring=16)
    rx = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    tx.pair(rx, 16 * FS)
    core = FakeCore(tx)

    class FakeTx:
        _core = core

    k.receive([b"w" * 60] * 3)
    fill_prod = k.fill.prod
    b = rx_batch(k, rx, 3, core)
    assert b.released is False
    assert b.forward(FakeTx()) == 3
    assert core.fill_kicks == 0 and core.tx_kicks == 1 and k.fill.prod == fill_prod
    assert b.released and repr(b) == "<RxBatch 3 packet(s) released>"


def test_tx_batch_index_and_input_boundaries() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    b = tx_batch(k, path, 4)
    assert b.done is False and b.frame_size == FS
    b.write(-4, b"first")  # -len(batch) is frame 0
    assert b.frame(-4)[:5].tobytes() == b"first"
    assert b.frame(-4).tobytes() == b.frame(0).tobytes()
    data = np.arange(40, dtype=np.uint8)[::2]  # not contiguous
    b.write(1, data)
    b.fill(b"z", count=0)
    b.write_array(np.full((1, FS), 7, np.uint8), 3)  # a row as wide as a frame fits
    b.write_array([[1, 2], [3, 4]])  # a list; default lengths: the row width
    b.fill(b"1", count=3)  # a one-byte packet is a packet
    assert b.lens.tolist() == [1, 1, 1, 0]
    b.set_lengths(5)  # one length for all, after the array exists
    assert b.submit() == 4
    k.transmit()
    assert k.sent == [b"1\x02\x07\x07\x07", b"1\x04\x04\x06\x08", b"1" + bytes(4), bytes(5)]


def test_zero_counts_and_small_helpers() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    tx = k.tx_path()
    assert tx.seek(2) == 2
    tx.set_lengths(60, 0)  # nothing to set: fine
    assert tx.reserved_addrs(0).shape == (0,)
    assert tx.tx.area.lens[:2].tolist() == [0, 0]
    rx = k.rx_path()
    assert rx.refill() == 0  # every frame is in the Fill ring already
    k.receive([b"abc"] * 2)
    assert rx.seek(2) == 2
    assert rx.slot(0) == 0 and rx.taken_descs(0).shape == (0,)
    assert _ring.FramePool(5).capacity == 8 and _ring.FramePool(9).capacity == 16


def test_rx_commit_of_one_into_a_full_fill_ring_waits_in_the_pool() -> None:
    k = FakeKernel(frame_count=8, ring=4, fill=4)
    path = k.rx_path()
    k.receive([b"p" * 60])  # frame 0 taken from the Fill ring
    assert path.seek(1) == 1
    assert path.refill() == 1  # the pool tops the Fill ring up first
    assert (k.fill.prod - k.fill.cons) & U32 == 4
    path.commit(1)
    assert path.pool.snapshot().tolist() == [5 * FS, 6 * FS, 7 * FS, 0]
    assert k.fill_contents() == [FS, 2 * FS, 3 * FS, 4 * FS]


def test_reclaim_bound_check_reads_only_the_completed_slots() -> None:
    """Slots outside consumer..producer may hold anything (the kernel's
    leftovers): only the completed ones are checked, also across the wrap."""
    k = FakeKernel(frame_count=16, ring=8, comp=8, start=2**32 - 2)
    path = k.tx_path()
    for i in range(8):
        k.comp.area.addrs[i] = 2**40  # garbage everywhere
    assert path.seek(3) == 3
    path.set_lengths(60, 3)
    path.commit(3)
    assert k.transmit() == 3  # completions in slots 6, 7, 0
    assert path.reclaim() == 3
    assert path.pool.snapshot().tolist()[-3:] == [0, FS, 2 * FS]


def test_forward_takes_returns_and_reclaims_at_half_the_completion_ring() -> None:
    k = FakeKernel(frame_count=32, ring=16, fill=16, comp=8)  # reclaim at 4 in flight
    rx = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    tx.pair(rx, 16 * FS)
    k.receive([b"a" * 60] * 2)
    assert rx.seek(2) == 2 and tx.forward(rx, 2) == 2
    k.transmit()
    assert tx.reclaim() == 2 and rx.returns.count == 2
    k.receive([b"b" * 60] * 4)
    assert rx.seek(2) == 2  # enough packets: the returns wait
    assert rx.returns.count == 2
    fill_prod = k.fill.prod
    assert tx.forward(rx, 1) == 1  # the RX side's next look takes them
    assert rx.returns.count == 0 and (k.fill.prod - fill_prod) & U32 == 2
    k.transmit()
    assert tx.reclaim() == 1 and tx.in_flight == 0
    # three own frames in flight and completed: below half the ring, no reclaim
    assert tx.seek(3) == 3
    tx.set_lengths(60, 3)
    tx.commit(3)
    k.transmit()
    completed = tx.completed
    assert tx.forward(rx, 1) == 1
    assert tx.completed == completed and tx.in_flight == 4
    # four in flight: forward reclaims first
    k.transmit()
    assert tx.forward(rx, 1) == 1
    assert tx.completed == completed + 4 and tx.in_flight == 1
    # the commit of a packet also takes the returns
    assert rx.returns.count == 1
    k.receive([b"c" * 60])
    assert rx.seek(1) == 1
    rx.commit(1)
    assert rx.returns.count == 0


def test_locked_tx_path_takes_keywords_and_passes_checked_on() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    tx = _ring.LockedTxPath(tx=k.tx.area, comp=k.comp.area, frame_addrs=k.addrs(0, 16),
                            frame_size=FS, umem=k.umem_view)
    assert tx.seek(2) == 2
    tx.commit(1, checked=True)  # the caller vouches for the length: not scanned
    assert tx.reserved == 1 and tx.submitted == 1


def test_tx_batch_leaves_lengths_of_frames_reserved_beyond_it() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    assert path.seek(3) == 3
    path.peek_at(2, 70)  # written with the per-packet API
    b = tx_batch(k, path, 2)  # covers the first two reserved frames only
    assert len(b) == 2
    b.set_lengths(60, count=1)
    assert b.submit(1) == 1
    assert path.reserved == 2
    path.peek_at(0, 61)
    path.commit(2)  # the frame written before the batch still has its length
    k.transmit()
    assert [len(p) for p in k.sent] == [60, 61, 70]


def test_tx_seek_reclaims_only_when_short_or_half_the_completion_ring_is_in_flight() -> None:
    k = FakeKernel(frame_count=8, ring=8, comp=8)  # reclaim at 4 in flight
    tx = k.tx_path()
    assert tx.seek(6) == 6
    tx.set_lengths(60, 4)
    tx.commit(4)
    k.transmit()
    assert tx.seek(2) == 2 and tx.completed == 0  # enough reserved: nothing else happens
    k2 = FakeKernel(frame_count=8, ring=8, comp=8)
    tx2 = k2.tx_path()
    assert tx2.seek(3) == 3
    tx2.set_lengths(60, 3)
    tx2.commit(3)
    k2.transmit()
    assert tx2.seek(5) == 5 and tx2.completed == 0  # the pool has exactly enough
    k3 = FakeKernel(frame_count=8, ring=8, comp=16)  # reclaim at 8 in flight
    tx3 = k3.tx_path()
    assert tx3.seek(4) == 4
    tx3.set_lengths(60, 4)
    tx3.commit(4)
    k3.transmit()
    assert tx3.reclaim() == 4 and tx3.seek(4) == 4
    tx3.set_lengths(60, 4)
    tx3.commit(4)
    k3.transmit()
    assert tx3.seek(1) == 1 and tx3.completed == 4  # 4 in flight, pool not short
    assert tx3.seek(5) == 5 and tx3.completed == 8  # the pool is short: reclaim


def test_tx_seek_of_one_clears_a_reused_slot_length() -> None:
    k = FakeKernel(frame_count=8, ring=4)
    tx = k.tx_path()
    assert tx.seek(4) == 4
    tx.set_lengths(60, 4)
    tx.commit(4)
    k.transmit()
    tx.reclaim()
    assert tx.seek(1) == 1  # slot 0 again, with length 60 from the last round
    with pytest.raises(ValueError, match="frame 0 has no length"):
        tx.commit(1)
    assert tx.tx.area.lens.tolist() == [0, 60, 60, 60]


@pytest.mark.usefixtures("both_paths")
@pytest.mark.parametrize("layout", ["pcap records", "contiguous", "column strided"])
def test_write_array_copies_strided_rows(layout: str) -> None:
    """write_array takes rows as the pcap reader hands them out (views into a
    chunk, a header between rows) on both paths, and a layout the C loop does
    not take (bytes not adjacent in a row) still goes through numpy."""
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    b = tx_batch(k, path, 5)
    rows = np.arange(5 * 80, dtype=np.uint16).astype(np.uint8).reshape(5, 80)
    data = {"pcap records": rows[:, 16:76], "contiguous": np.ascontiguousarray(rows[:, :60]),
            "column strided": rows[:, ::2][:, :30]}[layout]
    b.write_array(data, 30)
    assert b.submit() == 5
    k.transmit()
    assert k.sent == [bytes(r[:30]) for r in data]


def test_write_array_refuses_a_tx_address_it_would_write_past_a_frame_with(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The C copy trusts no address in the (shared) TX ring: one outside the
    UMEM, or so far into its frame that the row would reach the next frame, is
    RingCorruptedError, and nothing at all is written."""
    if _ring.C is None:
        pytest.skip("the C accelerator is not built or is switched off (XDP_SOCKET_NO_ACCEL)")
    monkeypatch.setattr(_ring, "accel", _ring.C)
    for bad in (16 * FS, 16 * FS - 10, 3 * FS + FS - 30):
        k = FakeKernel(frame_count=16, ring=16)
        path = k.tx_path()
        b = tx_batch(k, path, 4)
        slot = (path.tx.cached_prod + 2) & path.tx.mask
        path.tx.area.addrs[slot] = bad
        before = bytes(k.umem)
        with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: a TX descriptor"):
            b.write_array(np.full((4, 60), 0xAB, np.uint8))
        assert bytes(k.umem) == before
