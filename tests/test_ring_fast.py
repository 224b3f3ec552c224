"""The one-call steps of the RX hot paths (``RxPath.seek``, ``release_batch``,
``TxPath.forward``; in C ``peek_fast``, ``release_fast``, ``forward_fast``),
on both ring paths: a corrupt kernel index raises RingCorruptedError and
writes nothing (no index word, no slot, no cached index moves), and the Fill
ring is kicked only when it asks."""

from __future__ import annotations

import numpy as np
import pytest
from fake_kernel import NEED_WAKEUP, U32, FakeCore, FakeKernel, both_paths  # noqa: F401

from xdp_socket import _ring
from xdp_socket.batch import RxBatch

pytestmark = pytest.mark.usefixtures("both_paths")

NEAR_WRAP = [0, 2**32 - 3]
FS = 2048  # FakeKernel's frame size


def rx_batch(k: FakeKernel, path: _ring.RxPath, n: int, core: FakeCore) -> RxBatch:
    return RxBatch(core, path, path.seek(n),  # type: ignore[arg-type]
                   np.frombuffer(k.umem, np.uint8))


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_seek_refuses_a_corrupt_producer_and_moves_nothing(start: int) -> None:
    k = FakeKernel(frame_count=32, ring=8, start=start)
    path = k.rx_path()
    assert k.receive([b"a" * 60] * 3) == 3
    assert path.seek(2) == 2 and path.seek(8) == 3
    k.rx.prod = (k.rx.cons + 9) & U32  # 9 ahead in a ring of 8
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: producer \d+ is 9 "
                                                       r"entries ahead of consumer \d+ in a "
                                                       r"ring of 8$"):
        path.seek(8)
    assert path.available == 3  # the bad producer was not cached
    assert path.seek(3) == 3  # the cache answers: the ring is not read
    k.rx.prod = (k.rx.cons + 5) & U32
    assert path.seek(8) == 5


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_release_refuses_a_corrupt_fill_consumer_and_writes_nothing(start: int) -> None:
    # more frames than the Fill ring holds: it is full, so releasing a batch
    # must re-read the kernel's Fill consumer
    k = FakeKernel(frame_count=32, ring=8, start=start)
    path = k.rx_path()
    assert k.receive([b"a" * 60] * 4) == 4
    core = FakeCore()
    b = rx_batch(k, path, 4, core)
    assert b.count == 4
    addrs = b.addrs.tolist()
    k.fill.cons = (k.fill.prod + 1) & U32  # consumer ahead of our producer
    before = (bytes(k.fill.buf), bytes(k.rx.buf))
    cached = (path.rx.cached_cons, path.fill.cached_prod, path.fill.cached_cons)
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: consumer \d+ is ahead "
                                                       r"of producer \d+ in a ring of 8$"):
        b.release()
    assert (bytes(k.fill.buf), bytes(k.rx.buf)) == before
    assert (path.rx.cached_cons, path.fill.cached_prod, path.fill.cached_cons) == cached
    assert path.received == 0 and core.fill_kicks == 0
    k.fill.cons = (k.fill.prod - 4) & U32  # what the kernel really took
    b.released = False
    b.release()
    assert path.available == 0 and path.received == 4 and k.rx.cons == k.rx.prod
    assert core.fill_kicks == 1
    # the batch's four frames went back to the Fill ring, masked to their starts
    assert k.fill_contents()[-4:] == [a & ~(k.frame_size - 1) for a in addrs]


def test_release_kicks_only_when_the_fill_ring_asks() -> None:
    k = FakeKernel(frame_count=32, ring=8)
    path = k.rx_path()
    core = FakeCore()
    k.fill.set_flags(0)
    k.receive([b"a" * 60] * 3)
    b = rx_batch(k, path, 3, core)
    with b:
        pass
    assert core.fill_kicks == 0 and path.received == 3 and k.rx.cons == k.rx.prod
    k.fill.set_flags(NEED_WAKEUP)
    k.receive([b"b" * 60] * 2)
    rx_batch(k, path, 2, core).release()
    assert core.fill_kicks == 1 and path.received == 5


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_forward_refuses_a_corrupt_tx_consumer_and_writes_nothing(start: int) -> None:
    k = FakeKernel(frame_count=64, ring=4, comp=16, start=start)
    k.rx = type(k.rx)(16, "desc", start)
    rx = k.rx_path(0, 32)
    tx = k.tx_path(32, 32)
    tx.pair(rx, 32 * k.frame_size)
    assert tx.seek(4) == 4
    tx.set_lengths(60, 4)
    tx.commit(4)  # the TX ring is full as far as the cache knows
    assert k.receive([bytes([i]) * 60 for i in range(3)]) == 3
    assert rx.seek(3) == 3
    k.tx.cons = (k.tx.prod + 2) & U32  # ahead of our producer
    before = (bytes(k.tx.buf), bytes(k.rx.buf))
    cached = (rx.rx.cached_cons, tx.tx.cached_prod, tx.tx.cached_cons)
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: consumer \d+ is ahead "
                                                       r"of producer \d+ in a ring of 4$"):
        tx.forward(rx, 3)
    assert (bytes(k.tx.buf), bytes(k.rx.buf)) == before
    assert (rx.rx.cached_cons, tx.tx.cached_prod, tx.tx.cached_cons) == cached
    assert tx.foreign_in_flight == 0 and rx.received == 0
    with pytest.raises(ValueError, match=r"^cannot forward 4 packet\(s\): 3 available$"):
        tx.forward(rx, 4)
    k.tx.cons = (k.tx.prod - 2) & U32  # the kernel sent two: room for two
    assert tx.forward(rx, 3) == 2
    assert tx.foreign_in_flight == 2 and rx.received == 2 and rx.available == 1
    assert [k.tx.entry(i)[:2] for i in (k.tx.prod - 2, k.tx.prod - 1)] == [
        k.rx.entry(i)[:2] for i in (k.rx.cons - 2, k.rx.cons - 1)]
    k.transmit()
    assert k.sent[-2:] == [bytes([0]) * 60, bytes([1]) * 60]


def test_fast_calls_refuse_what_they_cannot_do() -> None:
    if _ring.accel is None:
        pytest.skip("the accelerator's own entry points")
    k = FakeKernel(frame_count=32, ring=8)
    path = k.rx_path()
    k.receive([b"a" * 60] * 2)
    C = _ring.C
    assert C.peek_fast(path.rx, -1) == -4  # not the usual case: Python answers
    assert C.peek_fast(path.rx, 8) == 2
    fill_before = bytes(k.fill.buf)
    assert C.release_fast(path.rx, path.fill, 3, path.base_mask) == -4  # only 2 there
    assert C.release_fast(path.rx, path.fill, 1, path.base_mask) == -4  # (commit's n == 1)
    assert bytes(k.fill.buf) == fill_before and path.available == 2
    with pytest.raises(ValueError, match="needs an RX ring and a Fill ring"):
        C.release_fast(path.fill, path.rx, 2, path.base_mask)
    with pytest.raises(TypeError):
        C.peek_fast(object(), 1)
    # a ring made on the Python path never adopted a layout: refused, not read
    with pytest.raises(ValueError, match="not initialised"):
        C.peek_fast(C.Ring.__new__(C.Ring), 1)
    # after the mapping is let go, a call fails cleanly instead of reading it
    k.rx.area.release()
    with pytest.raises(ValueError):
        C.peek_fast(path.rx, 1)


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_per_packet_peek_at_bounds_and_bytes(start: int) -> None:
    """peek_at (a C call per packet when accelerated) sees exactly what seek
    made available: the right bytes, an IndexError one past the end and for
    a negative index, and after commits only what is still reserved or
    unreleased; a TX peek sets the length that commit sends."""
    k = FakeKernel(frame_count=32, ring=8, start=start)
    rx = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    assert k.receive([bytes([i]) * (60 + i) for i in range(3)]) == 3
    assert rx.seek(8) == 3
    assert [bytes(rx.peek_at(i)) for i in range(3)] == [bytes([i]) * (60 + i) for i in range(3)]
    for bad in (3, -1):
        with pytest.raises(IndexError, match=rf"^packet index {bad} out of range: 3 packet"):
            rx.peek_at(bad)
    rx.commit(2)
    assert bytes(rx.peek_at(0)) == bytes([2]) * 62
    with pytest.raises(IndexError, match=r"^packet index 1 out of range: 1 packet\(s\) available"):
        rx.peek_at(1)

    assert tx.seek(4) == 4
    for i in range(4):
        tx.peek_at(i, 50 + i)[:] = bytes([0x40 + i]) * (50 + i)
    for bad in (4, -1):
        with pytest.raises(IndexError, match=rf"^frame index {bad} out of range: 4 frame"):
            tx.peek_at(bad, 10)
    for length in (0, FS + 1):
        with pytest.raises(ValueError, match=rf"^length must be 1\.\.{FS} \(the frame size\), "
                                             rf"got {length}$"):
            tx.peek_at(0, length)
    tx.commit(3)
    with pytest.raises(IndexError, match=r"^frame index 1 out of range: 1 frame\(s\) available"):
        tx.peek_at(1, 10)  # the copy of ``reserved`` the C bound reads moved with commit
    tx.peek_at(0, 5)[:] = b"last!"
    tx.commit(1)
    with pytest.raises(IndexError, match=r"^frame index 0 out of range: 0 frame"):
        tx.peek_at(0, 10)
    assert k.transmit() == 4
    assert k.sent == [bytes([0x40 + i]) * (50 + i) for i in range(3)] + [b"last!"]
