"""Defect 9 of issue 7: values the kernel writes into the shared rings are
checked before they are used. With the fake kernel we write what a broken
(or hostile) kernel could: an RX descriptor address >= 2**63 or beyond the
UMEM, a Fill consumer ahead of our producer, a Completion address beyond the
UMEM. Each must give a clear RingCorruptedError (a RuntimeError), rewrite no
frame, and return at once (no spin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fake_kernel import FakeCore, FakeKernel
from helpers import start_in_thread

from xdp_socket import _ring
from xdp_socket.batch import RxBatch, TxBatch


def _raises_corrupted_promptly(fn: Callable[[], Any], seconds: float = 2.0) -> str:
    t, box = start_in_thread(fn)
    t.join(seconds)
    assert not t.is_alive(), "still running: a corrupted ring value made it spin"
    err = box[0]
    assert isinstance(err, _ring.RingCorruptedError), repr(err)
    assert isinstance(err, RuntimeError)
    assert "corrupted" in str(err)
    return str(err)


def _umem2d(k: FakeKernel) -> np.ndarray:
    return np.frombuffer(k.umem, np.uint8).reshape(k.frame_count, k.frame_size)


def _received(k: FakeKernel, n: int) -> tuple[_ring.RxPath, RxBatch]:
    rx = k.rx_path(0, k.frame_count)
    pkts = [bytes([0x10 + i]) * 6 + bytes([0x20 + i]) * 6 + b"\x88\xb5" + bytes(46)
            for i in range(n)]
    assert k.receive(pkts) == n
    batch = RxBatch(FakeCore(), rx, rx.seek(64), _umem2d(k).reshape(-1))  # type: ignore[arg-type]
    assert len(batch) == n
    return rx, batch


BAD_RX_ADDRS = {
    "2**63": 2**63 + 256,  # negative after astype(intp)
    "2**64-1": 2**64 - 2048,
    "past_umem": 64 * 2048 + 256,  # one frame beyond a 64-frame UMEM
    "last_byte_past": 64 * 2048,
}


@pytest.mark.parametrize("bad", sorted(BAD_RX_ADDRS))
@pytest.mark.parametrize("op", ["swap_macs", "gather", "addrs", "payloads", "packet",
                                "frame_indices"])
def test_rx_descriptor_outside_the_umem(bad: str, op: str) -> None:
    k = FakeKernel(frame_count=64, ring=16, fill=64)
    _rx, batch = _received(k, 4)
    k.rx.put(k.rx.prod - 2, BAD_RX_ADDRS[bad], 60)  # the kernel "wrote" a bad descriptor
    before = bytes(k.umem)
    msg = _raises_corrupted_promptly({
        "swap_macs": batch.swap_macs,
        "gather": lambda: batch.gather(12),
        "addrs": lambda: batch.addrs,
        "payloads": batch.payloads,
        "packet": lambda: batch.packet(0),
        "frame_indices": lambda: batch.frame_indices,
    }[op])
    assert "outside the UMEM" in msg
    assert bytes(k.umem) == before, "a frame was rewritten"


def test_rx_descriptor_longer_than_a_frame() -> None:
    k = FakeKernel(frame_count=64, ring=16, fill=64)
    _, batch = _received(k, 2)
    k.rx.put(k.rx.prod - 1, 256, 2049)
    before = bytes(k.umem)
    _raises_corrupted_promptly(batch.swap_macs)
    assert bytes(k.umem) == before


def test_rx_producer_too_far_ahead() -> None:
    k = FakeKernel(frame_count=64, ring=16, fill=64)
    rx = k.rx_path(0, 64)
    k.rx.prod = k.rx.cons + 17  # more entries than the ring has
    _raises_corrupted_promptly(lambda: rx.seek(64))
    # the bad value is not cached: the next look says the same
    _raises_corrupted_promptly(lambda: rx.seek(1))
    assert rx.available == 0


@pytest.mark.parametrize("ahead", [1, 5, 2**31])
def test_fill_consumer_ahead_of_producer(ahead: int) -> None:
    # 32 RX frames, a Fill ring of 16: 16 frames in the ring, 16 in the pool,
    # so releasing packets makes the ring re-read the kernel's consumer.
    k = FakeKernel(frame_count=32, ring=16, fill=16)
    rx, batch = _received(k, 4)
    fill_before = bytes(k.fill.buf[192:])  # the slot area
    k.fill.cons = k.fill.prod + ahead
    _raises_corrupted_promptly(batch.release)
    assert bytes(k.fill.buf[192:]) == fill_before, "unread Fill slots were overwritten"
    # the bad consumer was not cached: the per-packet path (which wants one
    # slot, fewer than the bad value would show free) refuses it too
    _raises_corrupted_promptly(lambda: rx.commit(1))
    assert bytes(k.fill.buf[192:]) == fill_before


def _sent(k: FakeKernel, n: int) -> _ring.TxPath:
    tx = k.tx_path(0, k.frame_count)
    assert tx.seek(n) == n
    for i in range(n):
        tx.peek_at(i, 60)[:] = bytes([i]) * 60
    tx.commit(n)
    assert k.transmit() == n
    return tx


@pytest.mark.parametrize("addr", [64 * 2048, 2**63, 2**64 - 1])
def test_completion_address_beyond_the_umem(addr: int) -> None:
    k = FakeKernel(frame_count=64, ring=16, comp=16)
    tx = _sent(k, 8)
    k.comp.put(k.comp.prod - 3, addr)
    pool_before = tx.pool.snapshot().copy()
    msg = _raises_corrupted_promptly(tx.reclaim)
    assert "Completion" in msg
    assert (tx.pool.snapshot() == pool_before).all(), "a bogus address reached the free pool"
    # the batch API's reserve reclaims first: same error, no batch
    core = FakeCore(tx)
    umem2d = _umem2d(k)

    def reserve() -> TxBatch:
        got = tx.seek(64, clear_lengths=False)
        return TxBatch(core, tx, got, umem2d)  # type: ignore[arg-type]

    _raises_corrupted_promptly(reserve)


def test_completion_producer_too_far_ahead_does_not_wedge_tx() -> None:
    k = FakeKernel(frame_count=64, ring=16, comp=16)
    tx = _sent(k, 4)
    k.comp.prod = k.comp.cons + 100
    _raises_corrupted_promptly(tx.reclaim)
    _raises_corrupted_promptly(tx.reclaim)  # not cached: still refused
    assert tx.completed == 0


def test_tx_consumer_ahead_of_producer() -> None:
    k = FakeKernel(frame_count=64, ring=16, comp=16)
    tx = _sent(k, 16)  # the TX ring's cache now shows it full
    tx.reclaim()
    k.tx.cons = k.tx.prod + 3
    _raises_corrupted_promptly(lambda: tx.seek(16))
    _raises_corrupted_promptly(lambda: tx.seek(1))  # not cached: still refused
