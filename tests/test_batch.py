"""Unit tests of the batch transactions against the fake kernel (no root)."""

from __future__ import annotations

import numpy as np
import pytest
from fake_kernel import U32, FakeCore, FakeKernel, both_paths, entries_between  # noqa: F401

from xdp_socket import _ring
from xdp_socket.batch import RxBatch, TxBatch

NEAR_WRAP = [0, 2**32 - 3, 2**32 - 70]

# every test here runs on both ring paths: pure Python and the C accelerator
pytestmark = pytest.mark.usefixtures("both_paths")


def umem2d(k: FakeKernel) -> np.ndarray:
    return np.frombuffer(k.umem, np.uint8).reshape(k.frame_count, k.frame_size)


def tx_batch(k: FakeKernel, path: _ring.TxPath, n: int, core: FakeCore | None = None) -> TxBatch:
    got = path.seek(n, clear_lengths=False)  # as TxSocket.reserve does
    return TxBatch(core or FakeCore(path), path, got, umem2d(k))  # type: ignore[arg-type]


def rx_batch(k: FakeKernel, path: _ring.RxPath, n: int, core: FakeCore | None = None) -> RxBatch:
    return RxBatch(core or FakeCore(), path, path.seek(n),  # type: ignore[arg-type]
                   umem2d(k).reshape(-1))


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_tx_batch_write_array_and_submit_across_wrap(start: int) -> None:
    k = FakeKernel(frame_size=2048, frame_count=64, ring=32, comp=32, start=start)
    path = k.tx_path()
    sent: list[bytes] = []
    seq = 0
    for _ in range(20):
        core = FakeCore(path)
        with tx_batch(k, path, 24, core) as b:
            n = len(b)
            data = np.zeros((n, 64), np.uint8)
            data[:, :8] = np.arange(seq, seq + n, dtype=">u8").view(np.uint8).reshape(n, 8)
            lens = 60 + np.arange(n) % 4
            b.write_array(data, lens)
            for i in range(n):
                sent.append(bytes(data[i, : lens[i]]))
            seq += n
        assert core.tx_kicks == 1
        k.transmit()
    assert k.sent == sent
    assert k.invalid == 0
    assert seq == 20 * 24


def test_tx_batch_partial_when_ring_short() -> None:
    k = FakeKernel(frame_count=64, ring=16)
    path = k.tx_path()
    b = tx_batch(k, path, 100)
    assert len(b) == 16
    b.fill(b"x" * 60)
    assert b.submit() == 16
    b2 = tx_batch(k, path, 8)
    assert len(b2) == 0  # ring full until the kernel consumes
    b2.submit()
    k.transmit(limit=5)
    b3 = tx_batch(k, path, 8)
    assert len(b3) == 5


def used_once(k: FakeKernel) -> _ring.TxPath:
    """A TX path on ``k`` whose 16 slots have each been used once, so that
    each still holds a length (59) from that round: on a fresh ring a step
    that forgot to clear lengths would look right."""
    path = k.tx_path()
    first = tx_batch(k, path, 16)
    first.fill(b"x" * 59)
    assert first.submit() == 16
    k.transmit()
    assert path.reclaim() == 16 and path.tx.area.lens.tolist() == [59] * 16
    return path


def test_tx_batch_cancel_on_exception_sends_nothing_and_keeps_frames() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = used_once(k)
    with pytest.raises(RuntimeError), tx_batch(k, path, 8) as b:
        b.fill(b"y" * 60)
        raise RuntimeError("boom")
    assert b.done
    assert path.tx.cached_prod == k.tx.prod == 16  # nothing more published
    k.transmit()
    assert k.sent == [b"x" * 59] * 16
    # the frames are still ours: reserved, lengths cleared (cannot be sent stale)
    assert path.reserved == 8
    assert not path.tx.area.lens[:8].any()
    assert path.tx.area.lens[8:].tolist() == [59] * 8  # (slots beyond the batch untouched)
    with pytest.raises(ValueError, match="frame 0 has no length"):
        path.commit(1)
    with pytest.raises(ValueError, match="a frame in the commit has no length"):
        path.commit(8)
    locs = [int(a) for a in path.pool.snapshot()] + [path.frame_addr(i) for i in range(8)]
    assert sorted(locs) == list(k.addrs(0, 16))


def test_tx_batch_submit_array_sends_rows_and_leaves_the_rest_reserved_unwritten() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = used_once(k)
    core = FakeCore(path)
    b = tx_batch(k, path, 6, core)
    rows = np.arange(3 * 80, dtype=np.uint16).astype(np.uint8).reshape(3, 80)[:, 5:75]
    assert b.submit_array(rows, np.array([60, 61, 70])) == 3
    assert b.done and core.tx_kicks == 1
    with pytest.raises(ValueError, match="already submitted"):
        b.submit_array(rows)
    k.transmit()
    assert k.sent[16:] == [bytes(rows[0, :60]), bytes(rows[1, :61]), bytes(rows[2])]
    # the other three stay reserved, their stale lengths cleared
    assert path.reserved == 3
    with pytest.raises(ValueError, match="frame 0 has no length"):
        path.commit(1)
    # bad input leaves the batch open and the UMEM untouched
    b = tx_batch(k, path, 3, core)
    umem = bytes(k.umem)
    with pytest.raises(ValueError, match="expected a"):
        b.submit_array(np.zeros((4, 10), np.uint8))
    with pytest.raises(ValueError, match="do not fit"):
        b.submit_array(np.zeros((1, k.frame_size + 1), np.uint8))
    with pytest.raises(ValueError, match="expected 2 lengths"):
        b.submit_array(np.zeros((2, 10), np.uint8), [10])
    assert bytes(k.umem) == umem and not b.done
    assert b.submit_array(np.full((3, 10), 7, np.uint8), kick=False) == 3
    assert core.tx_kicks == 1
    k.transmit()
    assert k.sent[19:] == [bytes([7] * 10)] * 3


@pytest.mark.parametrize("how", ["write_array", "submit_array"])
def test_tx_batch_rows_may_be_views_into_the_frames_they_go_to(how: str) -> None:
    """Rows that overlap their own destination frames come out as they were
    before the copy, on both paths: each row starts 8 bytes before its frame,
    where a plain forward copy would read bytes it has just overwritten
    (numpy copies overlapping arrays through a buffer; the C loops memmove)."""
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    fs = k.frame_size
    first = tx_batch(k, path, 1)  # frame 0 goes round once: the batch gets 1..5
    first.fill(b"x" * 60)
    first.submit()
    k.transmit()
    b = tx_batch(k, path, 5)
    assert b.addrs.tolist() == [i * fs for i in range(1, 6)]
    flat = np.frombuffer(k.umem, np.uint8)
    flat[: 6 * fs] = np.arange(6 * fs, dtype=np.uint32).astype(np.uint8)
    rows = np.lib.stride_tricks.as_strided(flat[fs - 8 :], shape=(5, 60), strides=(fs, 1))
    want = [bytes(r) for r in rows]
    if how == "write_array":
        b.write_array(rows)
        b.submit()
    else:
        assert b.submit_array(rows) == 5
    k.transmit()
    assert k.sent[1:] == want


def test_tx_batch_context_submits_only_written_prefix() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.tx_path()
    with tx_batch(k, path, 8) as b:
        b.write(0, b"a" * 60)
        b.write(1, b"b" * 61)
    k.transmit()
    assert k.sent == [b"a" * 60, b"b" * 61]
    assert path.reserved == 6


def test_tx_batch_errors() -> None:
    k = FakeKernel(frame_size=2048, frame_count=16, ring=16)
    path = k.tx_path()
    b = tx_batch(k, path, 4)
    with pytest.raises(ValueError, match="packet of 2049 bytes does not fit a 2048-byte frame"):
        b.write(0, b"z" * 2049)
    with pytest.raises(IndexError, match="frame index 4 out of range for a batch of 4"):
        b.write(4, b"z")
    with pytest.raises(ValueError, match="no frame in the submit has a length"):
        b.submit()  # no lengths
    with pytest.raises(ValueError, match=r"expected 4 lengths, got shape \(3,\)"):
        b.set_lengths([1, 2, 3])
    with pytest.raises(ValueError, match=r"expected a \(k <= 4, L\) uint8 array"):
        b.write_array(np.zeros((5, 10), np.uint8))
    b.set_lengths(60)
    assert b.submit(2) == 2
    # the batch's own guard, not the ring's (the ring did move: that check
    # would raise too, with another message)
    with pytest.raises(ValueError, match="this batch was already submitted or cancelled"):
        b.submit()  # already submitted
    with pytest.raises(ValueError, match="this batch was already submitted or cancelled"):
        b.write(0, b"late")
    k.transmit()
    assert k.sent == [b"\0" * 60] * 2  # only the two submitted


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_rx_batch_take_and_release_across_wrap(start: int) -> None:
    k = FakeKernel(frame_size=2048, frame_count=48, ring=16, fill=16, start=start)
    path = k.rx_path()
    got: list[bytes] = []
    expect: list[bytes] = []
    seq = 0
    for _ in range(30):
        pkts = [seq.to_bytes(4, "big") + bytes([seq & 0xFF]) * (seq % 50) for seq in
                range(seq, seq + 11)]
        n = k.receive(pkts)
        expect += pkts[:n]
        seq += n
        with rx_batch(k, path, 7) as b:
            got += b.payloads()
            if len(b):
                assert [len(p) for p in b.payloads()] == b.lens.tolist()
                assert (b.addrs % 2048 == k.headroom).all()
        assert b.released
    while True:
        with rx_batch(k, path, 64) as b:
            if not len(b):
                break
            got += b.payloads()
    assert got == expect
    in_rx = entries_between(k.rx, path.rx.cached_cons, k.rx.prod, path.base_mask)
    assert sorted(k.fill_contents() + in_rx + [int(a) for a in path.pool.snapshot()]) == \
        list(k.addrs(0, 48))


def test_rx_batch_released_on_exception() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    k.receive([b"abc"] * 5)
    with pytest.raises(KeyError), rx_batch(k, path, 8) as b:
        assert len(b) == 5
        raise KeyError("x")
    assert b.released
    assert path.available == 0
    assert (k.fill.prod - k.fill.cons) & U32 == 16


def test_rx_batch_gather_and_swap_macs() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    pkts = [bytes(range(1, 7)) + bytes(range(11, 17)) + bytes([i]) * 50 for i in range(4)]
    k.receive(pkts)
    b = rx_batch(k, path, 4)
    h = b.gather(14)
    assert h.shape == (4, 14)
    assert bytes(h[2]) == pkts[2][:14]
    b.swap_macs()
    assert bytes(b.packet(1)[:12]) == bytes(range(11, 17)) + bytes(range(1, 7))
    assert bytes(b[3][12:]) == pkts[3][12:]
    b.release()
    with pytest.raises(ValueError):
        b.packet(0)
    b.release()  # idempotent


def test_rx_batch_detects_ring_moved_underneath() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    k.receive([b"abc"] * 4)
    b = rx_batch(k, path, 2)
    path.commit(1)  # somebody used the per-packet API meanwhile
    with pytest.raises(ValueError):
        b.release()


def test_forward_moves_frames_without_copy_and_routes_completions() -> None:
    k = FakeKernel(frame_size=2048, frame_count=32, ring=16, fill=16, comp=16)
    rx = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    tx.pair(rx, 16 * 2048)

    core = FakeCore(tx)

    class FakeTx:
        _core = core

    total = 0
    for round_ in range(10):
        pkts = [bytes([round_]) * 60] * 10
        n = k.receive(pkts)
        b = rx_batch(k, rx, 64, core)
        addrs = b.addrs.copy()
        fwd = b.forward(FakeTx())
        total += fwd
        sent_before = len(k.sent)
        k.transmit()
        assert k.sent[sent_before:] == [bytes([round_]) * 60] * fwd
        # the kernel sent the RX frames themselves (same addresses)
        assert n == fwd
        assert (addrs < 16 * 2048).all()
        tx.reclaim()  # (the TX side's work: it may run in another thread)
        assert tx.foreign_in_flight == 0
        assert sorted([int(a) for a in tx.pool.snapshot()]) == list(k.addrs(16, 16))
        # forwarded frames wait in the RX side's returns queue ...
        assert rx.returns.count == fwd
        # ... until the RX side's next look, which puts them in the Fill ring
        assert rx.seek(1) == 0 and rx.returns.count == 0
        in_rx = entries_between(k.rx, rx.rx.cached_cons, k.rx.prod, rx.base_mask)
        rx_side = [int(a) for a in rx.pool.snapshot()]
        assert sorted(k.fill_contents() + in_rx + rx_side) == list(k.addrs(0, 16))
    assert total == 100


def test_forward_sends_nothing_while_tx_frames_are_reserved() -> None:
    """Reserved TX slots come first in the ring and belong to whoever reserved
    them (maybe the TX thread): forward takes none of the ring then."""
    k = FakeKernel(frame_count=32, ring=16)
    rx = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    tx.pair(rx, 16 * k.frame_size)
    tx.seek(1)
    k.receive([b"q" * 60])
    rx.seek(1)
    prod = tx.tx.cached_prod
    assert tx.forward(rx, 1) == 0
    assert tx.tx.cached_prod == prod and tx.reserved == 1 and rx.available == 1


def test_frame_indices_are_umem_rows() -> None:
    k = FakeKernel(frame_size=2048, frame_count=32, ring=16)
    rx = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    k.receive([b"abc" * 20] * 3)
    b = rx_batch(k, rx, 8)
    rows = b.frame_indices
    assert rows.tolist() == (b.addrs // 2048).tolist()
    assert bytes(umem2d(k)[rows[1], 256:259]) == b"abc"
    t = tx_batch(k, tx, 4)
    assert t.frame_indices.tolist() == [16, 17, 18, 19]


def test_empty_rx_batch_is_usable_and_needs_no_release() -> None:
    k = FakeKernel(frame_count=16, ring=16)
    path = k.rx_path()
    b = rx_batch(k, path, 64)
    assert len(b) == 0 and b.released
    assert b.addrs.shape == (0,) and b.lens.shape == (0,)
    assert b.payloads() == [] and b.gather(14).shape == (0, 14)
    b.swap_macs()
    assert b.forward(object()) == 0
    with b:
        pass
    with pytest.raises(IndexError):
        b.packet(0)
