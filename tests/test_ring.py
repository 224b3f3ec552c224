"""Unit tests of the ring core against the fake kernel (no root needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fake_kernel import U32, FakeKernel, both_paths, entries_between  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st

from xdp_socket import _ring

NEAR_WRAP = [0, 2**32 - 5, 2**32 - 1, 2**32 - 16]

# every test here runs on both ring paths: pure Python and the C accelerator
pytestmark = pytest.mark.usefixtures("both_paths")


def frame_of(addr: int, size: int) -> int:
    return addr // size


def tx_locations(k: FakeKernel, path: _ring.TxPath) -> list[int]:
    """Every TX frame's location: pool, reserved slot, TX ring (kernel), completion ring."""
    locs = [int(a) for a in path.pool.snapshot()]
    for i in range(path.reserved):
        locs.append(path.frame_addr(i))
    locs += entries_between(k.tx, k.tx.cons, path.tx.cached_prod)
    locs += entries_between(k.comp, path.comp.cached_cons, k.comp.prod, path.base_mask)
    return locs


def rx_locations(k: FakeKernel, path: _ring.RxPath) -> list[int]:
    """Every RX frame's location: Fill ring, RX ring (unreleased), pool."""
    in_rx = entries_between(k.rx, path.rx.cached_cons, k.rx.prod, path.base_mask)
    return sorted(k.fill_contents() + in_rx + [int(a) for a in path.pool.snapshot()])


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_tx_starts_with_every_frame_free(start: int) -> None:
    k = FakeKernel(frame_count=32, ring=16, start=start)
    path = k.tx_path()
    assert path.pool.count == 32
    assert path.reserved == 0
    assert path.seek(100) == 16  # limited by the TX ring
    assert path.seek(3) == 3
    assert sorted(tx_locations(k, path)) == list(k.addrs(0, 32))


@pytest.mark.parametrize("start", NEAR_WRAP)
@pytest.mark.parametrize("batch", [1, 3, 7, 16, 17, 40])
def test_tx_send_many_batches_across_wrap(start: int, batch: int) -> None:
    k = FakeKernel(frame_count=24, ring=8, comp=16, start=start)
    path = k.tx_path()
    sent = []
    seq = 0
    for _ in range(60):
        n = path.seek(batch)
        assert 0 <= n <= batch
        for i in range(n):
            payload = seq.to_bytes(4, "big") * (1 + seq % 5)
            buf = path.peek_at(i, len(payload))
            buf[:] = payload
            sent.append(payload)
            seq += 1
        path.commit(n)
        k.transmit(limit=5)
        locs = tx_locations(k, path)
        assert sorted(locs) == list(k.addrs(0, 24)), "a frame was lost or duplicated"
    k.transmit()
    # every committed frame was sent, in order, with its own bytes and length
    assert k.sent == sent
    assert k.invalid == 0
    path.reclaim()
    assert path.submitted == path.completed == len(sent) == seq
    assert path.in_flight == 0
    assert path.reserved == 0
    assert sorted(path.pool.snapshot().tolist()) == list(k.addrs(0, 24))


def test_tx_seek_never_hands_out_a_frame_twice() -> None:
    # seed bug 5: seek_n(n>1) wrote reclaimed frames into the wrong slot
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    assert path.seek(16) == 16
    for i in range(16):
        path.peek_at(i, 60)
    path.commit(16)
    k.transmit()
    assert path.seek(16) == 16
    addrs = [path.frame_addr(i) for i in range(16)]
    assert len(set(addrs)) == 16


def test_tx_full_frame_and_limits() -> None:
    # seed bug 7: a full frame panicked
    k = FakeKernel(frame_size=2048)
    path = k.tx_path()
    path.seek(1)
    assert len(path.peek_at(0, 2048)) == 2048
    with pytest.raises(ValueError):
        path.peek_at(0, 2049)
    with pytest.raises(ValueError):
        path.peek_at(0, 0)
    with pytest.raises(IndexError):
        path.peek_at(1, 10)
    with pytest.raises(IndexError):
        path.peek_at(-1, 10)
    with pytest.raises(ValueError):
        path.commit(2)


def test_tx_commit_without_length_is_refused() -> None:
    k = FakeKernel()
    path = k.tx_path()
    assert path.seek(3) == 3
    path.peek_at(0, 60)
    path.peek_at(2, 60)
    with pytest.raises(ValueError):
        path.commit(3)  # frame 1 was never written: would leak in the kernel
    path.commit(1)
    with pytest.raises(ValueError):
        path.commit(1)
    assert path.reserved == 2


def test_tx_partial_when_frames_in_flight() -> None:
    k = FakeKernel(frame_count=4, ring=8)
    path = k.tx_path()
    assert path.seek(8) == 4
    for i in range(4):
        path.peek_at(i, 64)
    path.commit(4)
    assert path.seek(1) == 0  # all in flight, nothing completed
    k.transmit(limit=2)
    assert path.seek(4) == 2
    assert path.in_flight == 2


def test_rx_starts_empty_and_fill_is_full() -> None:
    # seed bugs 3 and 4
    k = FakeKernel(frame_count=16, ring=16, start=2**32 - 3)
    path = k.rx_path()
    assert path.seek(64) == 0
    assert path.available == 0
    assert sorted(k.fill_contents()) == list(k.addrs(0, 16))
    assert (k.fill.prod - k.fill.cons) & U32 == 16


@pytest.mark.parametrize("start", NEAR_WRAP)
@pytest.mark.parametrize("batch", [1, 2, 5, 8, 13])
def test_rx_receive_in_order_across_wrap(start: int, batch: int) -> None:
    k = FakeKernel(frame_count=12, ring=8, fill=8, start=start)
    path = k.rx_path()
    packets = [i.to_bytes(2, "big") * (1 + i % 7) for i in range(300)]
    got: list[bytes] = []
    it = iter(packets)
    pending = list(itertools.islice(it, 3))
    fill_prod_seen = k.fill.prod
    for _ in range(2000):
        if pending:
            n = k.receive(pending)
            pending = pending[n:]
        if not pending:
            pending = list(itertools.islice(it, 3))
        n = path.seek(batch)
        for i in range(n):
            got.append(bytes(path.peek_at(i)))
        path.commit(n)
        # the fill producer only ever moves forward
        assert (k.fill.prod - fill_prod_seen) & U32 <= 2**31
        fill_prod_seen = k.fill.prod
        # every RX frame is in exactly one place
        assert rx_locations(k, path) == list(k.addrs(0, 12))
        if len(got) == len(packets):
            break
    assert got == packets


def test_rx_index_errors() -> None:
    k = FakeKernel()
    path = k.rx_path()
    with pytest.raises(IndexError):
        path.peek_at(0)
    k.receive([b"abc"])
    assert path.seek(1) == 1
    assert bytes(path.peek_at(0)) == b"abc"
    with pytest.raises(IndexError):
        path.peek_at(1)
    with pytest.raises(ValueError):
        path.commit(2)
    path.commit(1)
    assert path.seek(1) == 0


def test_rx_pool_holds_frames_that_do_not_fit_fill() -> None:
    k = FakeKernel(frame_count=32, ring=16, fill=8)
    path = k.rx_path()
    assert path.pool.count == 24
    k.receive([b"x" * 10] * 8)
    assert path.seek(8) == 8
    path.commit(8)
    # all 8 fill slots are free again: refilled from the pool (oldest first)
    assert (k.fill.prod - k.fill.cons) & U32 == 8
    assert path.pool.count == 24


def test_producer_ring_free_entries_cache() -> None:
    k = FakeKernel(ring=8)
    ring = _ring.ProducerRing(k.tx.area)
    assert ring.free_entries(1) == 8
    ring.submit(8)
    assert ring.free_entries(1) == 0
    k.tx.cons += 3
    assert ring.free_entries(1) == 3  # re-reads the kernel's consumer only when short
    assert ring.kernel_pending() == 5


def test_consumer_ring_detects_corruption() -> None:
    k = FakeKernel(ring=8)
    ring = _ring.ConsumerRing(k.rx.area)
    k.rx.prod = 100  # more than the ring can hold
    with pytest.raises(RuntimeError):
        ring.available(1)


def test_copy_circular_wraps_both_sides() -> None:
    src = np.arange(8, dtype=np.uint64)
    dst = np.zeros(4, dtype=np.uint64)
    _ring.copy_circular(dst, 3, src, 6, 4)
    assert list(dst) == [7, 0, 1, 6]


def test_ring_area_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        _ring.RingArea(bytearray(1024), 0, 64, 128, 192, 12, "addr")
    with pytest.raises(ValueError):
        _ring.RingArea(bytearray(200), 0, 64, 128, 192, 16, "addr")


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=U32),
    ops=st.lists(st.tuples(st.sampled_from(["seek", "commit", "xmit", "recv", "rcommit"]),
                           st.integers(min_value=0, max_value=20)), max_size=80),
)
def test_random_operations_keep_every_frame_accounted(
    start: int, ops: list[tuple[str, int]]
) -> None:
    """Bidirectional split: RX frames 0..15, TX frames 16..31; after any
    sequence of operations each frame is in exactly one place."""
    k = FakeKernel(frame_count=32, ring=8, fill=8, comp=8, start=start)
    rx = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    for op, n in ops:
        if op == "seek":
            got = tx.seek(n)
            assert 0 <= got <= n
        elif op == "commit":
            m = min(n, tx.reserved)
            for i in range(m):
                tx.peek_at(i, 60)
            tx.commit(m)
        elif op == "xmit":
            k.transmit(limit=n)
        elif op == "recv":
            k.receive([b"p" * 20] * n)
        else:
            m = rx.seek(n)
            rx.commit(m)
        assert sorted(tx_locations(k, tx)) == list(k.addrs(16, 16))
        assert rx_locations(k, rx) == list(k.addrs(0, 16))


def test_tx_reclaims_before_the_completion_ring_fills() -> None:
    """More TX frames than completion slots: the kernel stops when the
    completion ring is full, so seek must reclaim while the pool still has
    frames (a real stall seen on veth before this was fixed)."""
    k = FakeKernel(frame_count=64, ring=16, comp=8)
    path = k.tx_path()
    for _ in range(40):
        n = path.seek(4)
        assert n == 4
        for i in range(n):
            path.peek_at(i, 60)
        path.commit(n)
        k.transmit()
    assert len(k.sent) == 160
    assert path.in_flight < 8


# --- the two paths, and the checks the C accelerator must keep ------------------------


def test_rings_use_the_chosen_path(request: pytest.FixtureRequest) -> None:
    path = request.node.callspec.params["both_paths"]
    k = FakeKernel()
    assert (k.tx.area.ref is not None) == (path == "c")
    assert _ring.accelerator() == path


def test_corrupt_completion_address_is_refused_and_nothing_moves() -> None:
    k = FakeKernel(frame_count=32, ring=16)
    tx = k.tx_path()
    assert tx.seek(4) == 4
    for i in range(4):
        tx.peek_at(i, 60)
    tx.commit(4)
    assert k.transmit() == 4
    k.comp.put(k.comp.prod - 2, len(k.umem))  # one address just past the UMEM
    free = tx.pool.count
    with pytest.raises(_ring.RingCorruptedError):
        tx.reclaim()
    assert tx.pool.count == free and tx.comp.cached_cons == k.comp.cons == 0


def test_corrupt_routed_completion_is_refused() -> None:
    k = FakeKernel(frame_count=32, ring=16)
    rx, tx = k.rx_path(0, 16), k.tx_path(16, 16)
    tx.pair(rx, 16 * k.frame_size)
    assert k.receive([bytes(60)] * 3) == 3
    assert rx.seek(3) == 3
    assert tx.forward(rx, 3) == 3
    assert k.transmit() == 3
    k.comp.put(k.comp.prod - 1, 2**63)
    with pytest.raises(_ring.RingCorruptedError):
        tx.reclaim()
    assert rx.returns.count == 0 and tx.foreign_in_flight == 3


def test_swap_macs_checks_descriptors_before_writing() -> None:
    k = FakeKernel(frame_count=32, ring=16)
    rx = k.rx_path()
    pkts = [bytes(range(i, i + 60)) for i in range(3)]
    assert k.receive(pkts) == 3
    assert rx.seek(3) == 3
    umem = np.frombuffer(k.umem, np.uint8)
    rx.swap_macs(3, umem)
    for i, p in enumerate(pkts):
        got = bytes(rx.peek_at(i))
        assert got == p[6:12] + p[:6] + p[12:]
    before = bytes(k.umem)
    # a packet shorter than two MACs: refused, nothing written
    k.rx.area.lens[1] = 11
    with pytest.raises(ValueError, match="shorter"):
        rx.swap_macs(3, umem)
    # an address the kernel cannot have written: corrupt, nothing written
    k.rx.area.lens[1] = 60
    k.rx.area.addrs[2] = len(k.umem) - 4
    with pytest.raises(_ring.RingCorruptedError):
        rx.swap_macs(3, umem)
    assert bytes(k.umem) == before


def test_ring_ops_after_release_raise_not_crash() -> None:
    k = FakeKernel(frame_count=32, ring=16)
    tx = k.tx_path()
    assert tx.seek(2) == 2
    for area in (k.tx.area, k.comp.area):
        area.release()
    with pytest.raises(ValueError):
        tx.set_lengths(60, 2)
        tx.commit(2, checked=True)
