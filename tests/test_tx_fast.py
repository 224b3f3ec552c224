"""The one-call steps of the batch hot paths, on both ring paths:
``TxPath.seek`` and ``TxBatch.submit``'s usual case (in C ``reserve_fast``,
``submit_fast``), ``XskCore.forward``'s (``forward_kick``) and
``RxBatch.release``'s (``release_step``). A corrupt kernel value (Completion
producer or address, TX or Fill consumer) or a frame returned twice raises
and moves nothing (no index word, no slot, no pool, no counter), near the
2**32 wrap too; forwarded RX frames come back to the RX side. On the C path
the usual case is checked on the C call itself, so that the Python code it
falls back to cannot hide a C bug."""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fake_kernel import NEED_WAKEUP, U32, FakeCore, FakeKernel, both_paths  # noqa: F401

from xdp_socket import _ring
from xdp_socket.batch import RxBatch
from xdp_socket.core import XskCore
from xdp_socket.errors import SocketClosedError

pytestmark = pytest.mark.usefixtures("both_paths")

NEAR_WRAP = [0, 2**32 - 3]
FS = 2048  # FakeKernel's frame size


def state(k: FakeKernel, tx: _ring.TxPath) -> tuple[Any, ...]:
    """Everything reserve may change: ring bytes, cached indices, pools, counters.
    (Not the Completion ring's cached producer: a valid producer read before
    a bad address is found may stay cached, it is the kernel's true index.)"""
    return (bytes(k.tx.buf), bytes(k.comp.buf), tx.tx.cached_prod, tx.tx.cached_cons,
            tx.tx.reserved, tx.comp.cached_cons, tx.pool.head,
            tx.pool.tail, tx.pool.snapshot().tolist(), tx.reserved, tx.submitted, tx.completed,
            tx.foreign_in_flight)


def reserve(tx: _ring.TxPath, n: int, clear: bool = True) -> int:
    """``tx.seek(n)``; on the C path the C call itself, which must not leave
    the usual case to the Python code (that would hide a C bug)."""
    if tx.fast_reserve:
        got: int = _ring.C.reserve_fast(tx, tx.tx, tx.comp, tx.pool, n, clear)
        assert got >= 0
        return got
    return tx.seek(n, clear)


def send(tx: _ring.TxPath, n: int) -> None:
    assert reserve(tx, n) == n
    tx.submit_len(n, 60)


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_reserve_reclaims_then_reserves(start: int) -> None:
    k = FakeKernel(frame_count=8, ring=8, start=start)
    tx = k.tx_path()
    send(tx, 6)
    assert k.transmit() == 6
    # 2 in the pool, 6 completed: reserving 5 reclaims them first
    assert reserve(tx, 5) == 5
    assert tx.completed == 6 and tx.reserved == tx.tx.reserved == 5 and tx.pool.count == 3
    assert k.comp.cons == k.comp.prod
    addrs = tx.reserved_addrs(5).tolist()
    assert len(set(addrs)) == 5 and all(a % FS == 0 and a < 8 * FS for a in addrs)
    # reserved slots carry length 0 ("not written")
    assert [k.tx.entry(tx.tx.cached_prod + i)[1] for i in range(5)] == [0] * 5
    assert reserve(tx, 3) == 3 and tx.reserved == 5  # already there: nothing moves
    assert reserve(tx, 9) == 8 and tx.reserved == 8 and tx.pool.count == 0
    tx.submit_len(8, 61)
    assert k.transmit() == 8 and k.sent[-8:] == [bytes(61)] * 8


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_reserve_refuses_a_corrupt_completion_producer(start: int) -> None:
    k = FakeKernel(frame_count=16, ring=8, start=start)
    tx = k.tx_path()
    send(tx, 4)  # half the Completion ring in flight: the next seek reclaims
    assert k.transmit() == 4
    k.comp.prod = (k.comp.cons + 9) & U32  # 9 ahead in a ring of 8
    before = state(k, tx)
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: producer \d+ is 9 "
                                                       r"entries ahead of consumer \d+ in a "
                                                       r"ring of 8$"):
        tx.seek(4)
    assert state(k, tx) == before
    k.comp.prod = (k.comp.cons + 4) & U32
    assert reserve(tx, 4) == 4 and tx.completed == 4 and tx.pool.count == 12


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_reserve_refuses_a_completion_address_beyond_the_umem(start: int) -> None:
    k = FakeKernel(frame_count=16, ring=8, start=start)
    tx = k.tx_path()
    send(tx, 4)
    assert k.transmit() == 4
    k.comp.put(k.comp.prod - 2, len(k.umem))  # one byte past the UMEM
    before = state(k, tx)
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: the Completion ring "
                                                       r"returned an address beyond the "
                                                       r"32768-byte UMEM$"):
        tx.seek(4)
    assert state(k, tx) == before
    k.comp.put(k.comp.prod - 2, len(k.umem) - 1)  # inside: the frame's start goes back
    assert reserve(tx, 4) == 4 and tx.completed == 4
    assert (len(k.umem) - FS) in tx.pool.snapshot().tolist() + tx.reserved_addrs(4).tolist()


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_reserve_refuses_a_frame_returned_twice(start: int) -> None:
    k = FakeKernel(frame_count=8, ring=8, start=start)
    tx = k.tx_path()
    send(tx, 4)
    assert k.transmit() == 4
    for i in range(4):  # the kernel completes the four in-flight frames again
        k.comp.put(k.comp.prod + i, k.comp.entry(k.comp.prod - 4 + i)[0])
    k.comp.prod += 4
    before = state(k, tx)
    with pytest.raises(RuntimeError, match=r"^frame pool overflow: a frame was returned twice$"):
        tx.seek(8)
    assert state(k, tx) == before


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_reserve_refuses_a_corrupt_tx_consumer(start: int) -> None:
    k = FakeKernel(frame_count=16, ring=8, comp=16, start=start)
    tx = k.tx_path()
    send(tx, 8)  # the TX ring is full as far as the cache knows: seek re-reads it
    k.tx.cons = (k.tx.prod + 1) & U32  # ahead of our producer
    before = state(k, tx)
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: consumer \d+ is ahead "
                                                       r"of producer \d+ in a ring of 8$"):
        tx.seek(1)
    assert state(k, tx) == before
    k.tx.cons = (k.tx.prod - 5) & U32  # the kernel took three
    assert reserve(tx, 8) == 3 and tx.reserved == 3


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_reserve_routes_forwarded_frames_back_to_the_rx_side(start: int) -> None:
    k = FakeKernel(frame_count=32, ring=8, comp=8, start=start)
    rx = k.rx_path(0, 16)
    tx = k.tx_path(16, 16)
    tx.pair(rx, 16 * FS)
    assert k.receive([bytes([i]) * 60 for i in range(3)]) == 3
    assert rx.seek(3) == 3
    rx_frames = [k.rx.entry(k.rx.cons + i)[0] & ~(FS - 1) for i in range(3)]
    assert tx.forward(rx, 3) == 3 and tx.foreign_in_flight == 3
    send(tx, 2)
    assert k.transmit() == 5
    k.comp.put(k.comp.prod - 5, 32 * FS)  # a forwarded frame's completion, corrupt
    before = (state(k, tx), rx.returns.tail)
    with pytest.raises(_ring.RingCorruptedError, match="beyond the 65536-byte UMEM"):
        tx.seek(4)
    assert (state(k, tx), rx.returns.tail) == before
    k.comp.put(k.comp.prod - 5, rx_frames[0] + 256)  # (with the kernel's headroom)
    assert reserve(tx, 4) == 4
    assert tx.completed == 5 and tx.foreign_in_flight == 0
    assert rx.returns.snapshot().tolist() == rx_frames
    assert tx.pool.count + tx.reserved == 16


def test_reserve_fast_and_submit_fast_refuse_what_they_cannot_do() -> None:
    if _ring.accel is None:
        pytest.skip("the accelerator's own entry points")
    C = _ring.C
    k = FakeKernel(frame_count=16, ring=8)
    tx = k.tx_path()
    args = (tx, tx.tx, tx.comp, tx.pool)
    assert C.reserve_fast(*args, -1, True) == -4
    send(tx, 4)
    k.transmit()
    # the C call itself (not the Python code it falls back to) refuses
    k.comp.prod = (k.comp.cons + 9) & U32
    before = state(k, tx)
    assert C.reserve_fast(*args, 4, True) == -1
    assert state(k, tx) == before
    k.comp.prod = (k.comp.cons + 4) & U32
    k.comp.put(k.comp.prod - 1, len(k.umem))
    before = state(k, tx)
    assert C.reserve_fast(*args, 4, True) == -1
    assert state(k, tx) == before
    k.comp.put(k.comp.prod - 1, 0)
    before = state(k, tx)
    tx.peers.append((0, 0, _ring.FramePool(1)))  # completions routed in Python
    assert C.reserve_fast(*args, 4, True) == -4
    assert state(k, tx) == before
    tx.peers.clear()
    assert C.reserve_fast(*args, 4, True) == 4 and tx.completed == 4
    with pytest.raises(ValueError, match="needs a TX ring and a Completion ring"):
        C.reserve_fast(tx, tx.comp, tx.tx, tx.pool, 5, True)

    # submit_fast: only 1..reserved frames; lengths, publish, counters
    before = state(k, tx)
    for n in (0, 5):
        assert C.submit_fast(tx, tx.tx, n, 60, -1, False) == -4
    assert state(k, tx) == before
    with pytest.raises(ValueError, match="needs a TX ring"):
        C.submit_fast(tx, tx.comp, 1, 60, -1, False)
    assert C.submit_fast(tx, tx.tx, 3, 70, -1, False) == 0  # fd -1: no kick
    assert tx.reserved == tx.tx.reserved == 1 and tx.submitted == 7
    assert k.tx.prod == tx.tx.cached_prod == 7
    assert k.transmit() == 3 and k.sent[-3:] == [bytes(70)] * 3

    # the kick loop: only while frames are pending and the ring asks (or always)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        k.tx.set_flags(0)
        assert C.submit_fast(tx, tx.tx, 1, 60, s.fileno(), False) == 0  # not asked: no kick
        assert tx.seek(2) == 2
        k.tx.set_flags(NEED_WAKEUP)
        # (an unconnected UDP socket refuses the kick: proof one was made)
        assert C.submit_fast(tx, tx.tx, 1, 60, s.fileno(), False) == errno.EDESTADDRREQ
        k.tx.cons = (k.tx.prod - 9) & U32  # more pending than the ring holds
        assert C.submit_fast(tx, tx.tx, 1, 60, s.fileno(), True) == -3


def test_write_submit_refuses_what_it_cannot_do_and_sends_the_rows() -> None:
    """TxBatch.submit_array's C step: anything unusual (no or too many
    frames, a length outside 1..frame, an address that would not hold its
    row) is -4 with nothing written or moved; the usual case copies, sets
    the lengths, publishes and counts; a failed kick still publishes every
    frame and returns the kick's status."""
    if _ring.accel is None:
        pytest.skip("the accelerator's own entry points")
    C = _ring.C
    k = FakeKernel(frame_count=16, ring=8)
    tx = k.tx_path()
    assert reserve(tx, 6) == 6
    records = np.arange(8 * 90, dtype=np.uint16).astype(np.uint8).reshape(8, 90)
    rows = records[:, 10:80]  # strided, like the pcap reader's (8 rows, 6 frames)

    def call(n: int, lens: Any, fd: int = -1, always: bool = False, tx_ring: Any = None,
             data: Any = rows) -> int:
        st: int = C.write_submit(tx, tx_ring or tx.tx, n, tx.umem, data, FS, lens, fd, always)
        return st

    before, umem = state(k, tx), bytes(k.umem)
    for n, lens in ((0, 60), (7, 60), (6, 0), (6, FS + 1),
                    (6, np.array([60] * 5 + [0], np.uint32))):
        assert call(n, lens) == -4
    slot = (tx.tx.cached_prod + 3) & tx.tx.mask
    good = int(tx.tx.area.addrs[slot])
    for bad in (16 * FS, 16 * FS - 10, FS - 30):
        tx.tx.area.addrs[slot] = bad
        assert call(6, 60) == -4
    tx.tx.area.addrs[slot] = good
    assert state(k, tx) == before and bytes(k.umem) == umem
    with pytest.raises(ValueError, match="needs a TX ring"):
        call(6, 60, tx_ring=tx.comp)
    with pytest.raises(ValueError, match="n uint32 lengths"):
        call(6, np.full(6, 60, np.int64))
    with pytest.raises(ValueError, match="n uint32 lengths"):
        call(6, np.full(5, 60, np.uint32))
    with pytest.raises(ValueError, match="rows of at most a frame"):
        call(2, 60, data=np.zeros((2, FS + 1), np.uint8))
    with pytest.raises(ValueError, match="rows of at most a frame"):
        call(6, 60, data=rows[:5])
    with pytest.raises(ValueError, match="rows of at most a frame"):
        call(6, 60, data=records[:, ::2])  # bytes not adjacent in a row
    assert state(k, tx) == before and bytes(k.umem) == umem

    lens = np.array([60, 61, 62, 63, 70], np.uint32)
    assert call(5, lens) == 0  # fd -1: no kick
    assert tx.reserved == tx.tx.reserved == 1 and tx.submitted == 5
    assert k.tx.prod == tx.tx.cached_prod
    assert k.transmit() == 5
    assert k.sent[-5:] == [bytes(rows[i, : lens[i]]) for i in range(5)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # (an unconnected UDP socket refuses the kick: proof one was made,
        # and every frame is published all the same)
        assert reserve(tx, 6) == 6
        assert call(6, 64, s.fileno(), True) == errno.EDESTADDRREQ
        assert tx.reserved == 0 and tx.submitted == 11 and k.tx.prod == tx.tx.cached_prod
        assert k.transmit() == 6 and k.sent[-6:] == [bytes(r[:64]) for r in rows[:6]]


class _Sock:
    def fileno(self) -> int:
        return -1  # the C call makes no kick


class Core:
    """XskCore's forward (its C fast path, or the Python steps it falls back
    to) over the fake kernel, without a socket."""

    forward = XskCore.forward
    _kick_status = XskCore._kick_status

    def __init__(self, tx: _ring.TxPath) -> None:
        self.tx_path = tx
        self.sock = _Sock()
        self._kick_always = False

    def drive_tx(self) -> int:
        return 0


def fwd(core: Core, rx: _ring.RxPath, n: int) -> int:
    """``core.forward(rx, n)``; on the C path the C call itself, which must
    not leave the usual case to the Python code (that would hide a C bug)."""
    tx = core.tx_path
    if tx.fast_forward:
        got = _ring.C.forward_kick(tx, rx, n, -1, False, tx.lock)
        assert got.__class__ is int and got >= 0
        return int(got)
    return core.forward(rx, n)


def l2fwd(start: int, comp: int = 8) -> tuple[FakeKernel, _ring.RxPath, _ring.LockedTxPath]:
    k = FakeKernel(frame_count=32, ring=8, comp=comp, start=start)
    rx = k.rx_path(0, 16)
    tx = _ring.LockedTxPath(k.tx.area, k.comp.area, k.addrs(16, 16), FS, k.umem_view)
    tx.pair(rx, 16 * FS)
    return k, rx, tx


def fwd_state(k: FakeKernel, rx: _ring.RxPath, tx: _ring.TxPath) -> tuple[Any, ...]:
    return (state(k, tx), bytes(k.rx.buf), bytes(k.fill.buf), rx.rx.cached_cons,
            rx.fill.cached_prod, rx.received, rx.returns.head, rx.returns.tail, rx.pool.head,
            rx.pool.tail)


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_forward_reclaims_and_gives_frames_back_to_the_fill_ring(start: int) -> None:
    k, rx, tx = l2fwd(start)
    core = Core(tx)
    fill_before = k.fill_contents()
    spare = rx.pool.snapshot().tolist()  # the 8 frames the Fill ring had no room for
    assert len(fill_before) == len(spare) == 8
    assert k.receive([bytes([i]) * 60 for i in range(5)]) == 5
    frames = [k.rx.entry(k.rx.cons + i)[0] & ~(FS - 1) for i in range(5)]
    assert rx.seek(5) == 5
    assert fwd(core, rx, 5) == 5
    assert tx.foreign_in_flight == 5 and rx.received == 5 and rx.available == 0
    assert k.transmit() == 5 and k.sent == [bytes([i]) * 60 for i in range(5)]
    # five in flight (>= half the Completion ring): the next forward reclaims
    # them to the RX side, which puts them back into the Fill ring after the
    # spare frames that waited longer (as take_returns and refill do)
    assert k.receive([b"x" * 60]) == 1 and rx.seek(1) == 1
    assert fwd(core, rx, 1) == 1
    assert tx.completed == 5 and tx.foreign_in_flight == 1 and rx.returns.count == 0
    assert not tx.lock.locked()
    assert k.fill_contents() == fill_before[6:] + spare[:6]
    assert rx.pool.snapshot().tolist() == spare[6:] + frames
    # with no spares left, returned frames go straight into the Fill ring
    k, rx, tx = l2fwd(start)
    core = Core(tx)
    rx.pool.head = rx.pool.tail  # (as if the spares were in use)
    assert k.receive([bytes([i]) * 60 for i in range(5)]) == 5
    frames = [k.rx.entry(k.rx.cons + i)[0] & ~(FS - 1) for i in range(5)]
    assert rx.seek(5) == 5 and fwd(core, rx, 5) == 5 and k.transmit() == 5
    assert k.receive([b"x" * 60]) == 1 and rx.seek(1) == 1
    assert fwd(core, rx, 1) == 1
    assert k.fill_contents() == fill_before[6:] + frames and rx.pool.count == 0


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_forward_refuses_corrupt_kernel_values_and_moves_nothing(start: int) -> None:
    k, rx, tx = l2fwd(start)
    core = Core(tx)
    assert k.receive([bytes([i]) * 60 for i in range(8)]) == 8
    assert rx.seek(4) == 4 and core.forward(rx, 4) == 4 and k.transmit() == 4
    assert rx.seek(4) == 4
    good = k.comp.entry(k.comp.prod - 1)[0]
    k.comp.put(k.comp.prod - 1, len(k.umem))  # a completion beyond the UMEM
    before = fwd_state(k, rx, tx)
    with pytest.raises(_ring.RingCorruptedError, match="beyond the 65536-byte UMEM"):
        core.forward(rx, 4)
    assert fwd_state(k, rx, tx) == before and not tx.lock.locked()
    k.comp.put(k.comp.prod - 1, good)
    k.tx.cons = (k.tx.prod + 1) & U32  # a TX consumer ahead of our producer
    assert tx.reclaim() == 4
    rx.take_returns()  # (forward does that first: a step of its own)
    tx.tx.cached_cons = tx.tx.cached_prod  # (the cache says full: the word is read)
    before = fwd_state(k, rx, tx)
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: consumer \d+ is ahead"):
        core.forward(rx, 4)
    assert fwd_state(k, rx, tx) == before and not tx.lock.locked()
    k.tx.cons = k.tx.prod
    assert core.forward(rx, 4) == 4


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_forward_leaves_a_corrupt_fill_consumer_to_take_returns(start: int) -> None:
    k, rx, tx = l2fwd(start, comp=4)
    core = Core(tx)
    assert k.receive([bytes([i]) * 60 for i in range(3)]) == 3
    assert rx.seek(2) == 2 and core.forward(rx, 2) == 2 and k.transmit() == 2
    assert rx.seek(1) == 1
    k.fill.cons = (k.fill.prod + 1) & U32  # ahead of our producer
    fill_before = bytes(k.fill.buf)
    with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: consumer \d+ is ahead"):
        core.forward(rx, 1)
    # the packet went (a step of its own); its frames wait in the returns queue
    assert k.tx.prod == tx.tx.cached_prod and rx.received == 3 and rx.available == 0
    assert bytes(k.fill.buf) == fill_before
    assert tx.completed == 2 and rx.returns.count + rx.pool.count == 8 + 2
    assert not tx.lock.locked()


def test_forward_kick_refuses_what_it_cannot_do() -> None:
    if _ring.accel is None:
        pytest.skip("the accelerator's own entry points")
    C = _ring.C
    k, rx, tx = l2fwd(0)
    assert k.receive([b"a" * 60] * 2) == 2 and rx.seek(2) == 2
    before = fwd_state(k, rx, tx)
    assert C.forward_kick(tx, rx, -1, -1, False, tx.lock) == -4
    assert C.forward_kick(tx, rx, 3, -1, False, tx.lock) == -4  # only 2 there
    assert reserve(tx, 4) == 4
    before = fwd_state(k, rx, tx)
    assert C.forward_kick(tx, rx, 2, -1, False, tx.lock) == -4  # reserved frames come first
    assert fwd_state(k, rx, tx) == before and not tx.lock.locked()
    tx.submit_len(4, 60)
    tx.peers.append((0, 0, _ring.FramePool(1)))  # completions routed in Python
    assert tx.in_flight >= tx._reclaim_at
    assert C.forward_kick(tx, rx, 2, -1, False, tx.lock) == -4
    tx.peers.clear()
    rx.extra_returns.append(_ring.FramePool(4))  # another socket's queue: Python's
    assert C.forward_kick(tx, rx, 2, -1, False, None) == (2, 0, 1)
    with pytest.raises(ValueError, match="needs TX, Completion and RX rings"):
        C.forward_kick(tx, SimpleNamespace(rx=tx.comp), 0, -1, False, None)
    with pytest.raises(AttributeError):
        C.forward_kick(tx, tx, 0, -1, False, None)  # (not an RX side)


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_forward_refuses_frames_returned_twice(start: int) -> None:
    k, rx, tx = l2fwd(start)
    core = Core(tx)
    # the Fill ring is full and 8 spare frames wait in the RX pool (of 16):
    # 9 more "returned" frames cannot all be RX frames in flight
    rx.returns.push_array(k.addrs(0, 9))
    before = fwd_state(k, rx, tx)
    if tx.fast_forward:
        assert _ring.C.forward_kick(tx, rx, 0, -1, False, tx.lock) == (0, 0, 1)
        assert fwd_state(k, rx, tx) == before
    with pytest.raises(RuntimeError, match=r"^frame pool overflow: a frame was returned twice$"):
        core.forward(rx, 0)
    assert bytes(k.fill.buf) == before[2] and rx.pool.count == 8


def rx_batch(k: FakeKernel, path: _ring.RxPath, n: int, core: FakeCore) -> RxBatch:
    return RxBatch(core, path, path.seek(n),  # type: ignore[arg-type]
                   np.frombuffer(k.umem, np.uint8))


def rx_state(k: FakeKernel, path: _ring.RxPath) -> tuple[Any, ...]:
    return (bytes(k.fill.buf), bytes(k.rx.buf), path.rx.cached_cons, path.fill.cached_prod,
            path.fill.cached_cons, path.received, path.pool.head, path.pool.tail,
            path.returns.head)


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_release_refuses_a_moved_ring_or_a_closed_path(start: int) -> None:
    # (no spare frames: the Fill ring has room for the batch, so only the
    # checks stop the C call)
    k = FakeKernel(frame_count=8, ring=8, start=start)
    path = k.rx_path()
    core = FakeCore()
    assert k.receive([b"a" * 60] * 6) == 6
    b = rx_batch(k, path, 3, core)
    path.commit(1)  # elsewhere: the batch's packets are not the first ones any more
    before = rx_state(k, path)
    if path.fast_release:
        assert _ring.C.release_step(path, 3, b._start) == -4
    with pytest.raises(ValueError, match="the RX ring moved under this batch"):
        b.release()
    assert rx_state(k, path) == before and not b.released
    b = rx_batch(k, path, 3, core)
    path.closed = True
    before = rx_state(k, path)
    if path.fast_release:
        assert _ring.C.release_step(path, 3, b._start) == -4
    with pytest.raises(SocketClosedError):
        b.release()
    assert rx_state(k, path) == before
    path.closed = False
    b.release()
    assert path.received == 4 and path.available == 2


def release(path: _ring.RxPath, b: RxBatch) -> int:
    """``b.release()``; on the C path the C call itself, which must not
    leave the usual case to the Python code."""
    if path.fast_release:
        st: int = _ring.C.release_step(path, b.count, b._start)
        assert 0 <= st < 4
        b.released = True
        return st
    return int(path.release_batch(b.count))


def top_up_meets_corrupt_fill_consumer(path: _ring.RxPath, b: RxBatch,
                                       status_ok: Callable[[int], bool]) -> None:
    """Release ``b`` when the top-up will read a corrupt Fill consumer: the C
    release (its status checked by ``status_ok``) does the release and leaves
    the top-up to the Python code, which raises; the Python path raises at
    once."""
    if path.fast_release:
        assert status_ok(_ring.C.release_step(path, b.count, b._start))  # top-up left to Python
        b.released = True
        with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: consumer \d+ is "
                                                           r"ahead of producer"):
            path.finish_release()
    else:
        with pytest.raises(_ring.RingCorruptedError, match=r"^ring corrupted: consumer \d+ is "
                                                           r"ahead of producer"):
            b.release()


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_release_tops_the_fill_ring_up_and_takes_returned_frames(start: int) -> None:
    k = FakeKernel(frame_count=32, ring=8, start=start)
    path = k.rx_path()
    core = FakeCore()
    spare = path.pool.snapshot().tolist()
    assert len(spare) == 24 and k.receive([b"a" * 60] * 8) == 8
    frames = [k.rx.entry(k.rx.cons + i)[0] & ~(FS - 1) for i in range(8)]
    assert release(path, rx_batch(k, path, 3, core)) == 1  # (the Fill ring asks)
    # at most half full (5 of 8 free): the spares fill it up
    assert k.fill_contents() == frames[:3] + spare[:5]
    assert path.received == 3 and path.pool.count == 19
    # frames a TX side gave back go in before the batch's own, as commit
    # takes them: with some waiting, the C release leaves the batch to the
    # Python code (nothing done), whose release_batch takes them first
    path.has_returners = True
    k.fill.set_flags(0)
    taken = k.fill_contents()[:4]
    k.fill.cons = (k.fill.cons + 4) & U32  # the kernel took four more
    path.returns.push_array(path.pool.snapshot()[-2:])  # (as if two were in flight)
    path.pool.tail -= 2
    b = rx_batch(k, path, 2, core)
    if path.fast_release:
        fill_prod, rx_cons = k.fill.prod, k.rx.cons
        assert _ring.C.release_step(path, 2, b._start) == -4
        assert (k.fill.prod, k.rx.cons, path.returns.count) == (fill_prod, rx_cons, 2)
    assert path.release_batch(2) == 0  # (not asked: no wakeup)
    # the returned frames queue behind the spares that waited longer, the
    # oldest four of which fill the Fill ring up; the batch's own frames
    # then find it full and wait in the pool after the returned ones
    assert k.fill_contents()[-4:] == spare[5:9]
    assert path.pool.snapshot().tolist()[-4:] == spare[-2:] + frames[3:5]
    assert path.returns.count == 0 and path.received == 5
    free = set(range(0, 32 * FS, FS)) - set(taken) - set(frames[5:8])
    assert sorted(k.fill_contents() + path.pool.snapshot().tolist()) == sorted(free)


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_release_leaves_a_corrupt_fill_consumer_to_the_top_up(start: int) -> None:
    k = FakeKernel(frame_count=32, ring=8, fill=16, start=start)
    path = k.rx_path()
    core = FakeCore()
    assert k.receive([b"a" * 60] * 8) == 8
    rx_batch(k, path, 2, core).release()  # 6 of 16 free: no top-up
    fill_prod = k.fill.prod
    # ahead of our producer once the next batch's 2 frames are in: only the
    # top-up reads it (the release's room is in the cache)
    k.fill.cons = (k.fill.prod + 3) & U32
    b = rx_batch(k, path, 2, core)
    top_up_meets_corrupt_fill_consumer(path, b, lambda st: bool(st & 4))
    assert k.fill.prod == (fill_prod + 2) & U32  # the batch's frames, no spares


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_release_refuses_frames_returned_twice(start: int) -> None:
    k = FakeKernel(frame_count=16, ring=8, start=start)
    path = k.rx_path()
    core = FakeCore()
    path.has_returners = True
    assert k.receive([b"a" * 60] * 4) == 4
    path.returns.push_array(k.addrs(0, 9))  # 8 spares + 9 > 16: some came back twice
    b = rx_batch(k, path, 4, core)
    if path.fast_release:
        # returned frames wait: the C release leaves it all to the Python code
        assert _ring.C.release_step(path, 4, b._start) == -4
        assert path.returns.count == 9 and path.received == 0
    with pytest.raises(RuntimeError, match=r"^frame pool overflow: a frame was returned "
                                           r"twice$"):
        b.release()


@pytest.mark.parametrize("start", NEAR_WRAP)
def test_release_top_up_rereads_the_fill_consumer(start: int) -> None:
    # the top-up wants more room than the cache says: it re-reads the Fill
    # consumer, and a corrupt one is left to the Python code (nothing more
    # goes into the Fill ring)
    k = FakeKernel(frame_count=32, ring=16, start=start)
    path = k.rx_path()
    core = FakeCore()
    spare = path.pool.snapshot()
    path.pool.head = path.pool.tail  # (the spares are in use)
    assert k.receive([b"a" * 60] * 12) == 12
    rx_batch(k, path, 2, core).release()  # 10 of 16 free, in the cache
    path.pool.push_array(spare[:9])  # back: more than the cache's room
    k.fill.cons = (k.fill.prod + 3) & U32  # ahead of our producer after the next 2
    fill_prod = k.fill.prod
    b = rx_batch(k, path, 2, core)
    top_up_meets_corrupt_fill_consumer(path, b, lambda st: st == 4 | 1)  # (1: the Fill ring asks)
    assert k.fill.prod == (fill_prod + 2) & U32 and path.pool.count == 9


def test_rx_wait_looks_kicks_polls_and_looks_again() -> None:
    if _ring.accel is None:
        pytest.skip("the accelerator's own entry points")
    C = _ring.C
    k = FakeKernel(frame_count=16, ring=8)
    path = k.rx_path()
    wake = os.eventfd(0, os.EFD_NONBLOCK)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        k.fill.set_flags(0)
        t0 = time.monotonic()
        assert C.rx_wait(path.rx, path.fill, a.fileno(), wake, 50) == 0  # timed out
        assert time.monotonic() - t0 >= 0.04
        b.send(b"x")  # readable but no packet in the ring: it waits out its timeout
        t0 = time.monotonic()
        assert C.rx_wait(path.rx, path.fill, a.fileno(), wake, 50) == 0
        assert time.monotonic() - t0 >= 0.04
        a.recv(1)
        k.receive([b"p" * 60])
        assert C.rx_wait(path.rx, path.fill, a.fileno(), wake, 5000) == 1  # no wait
        assert path.rx.cached_prod == k.rx.prod
        path.commit(1)
        os.eventfd_write(wake, 1)  # a close() in another thread
        assert C.rx_wait(path.rx, path.fill, a.fileno(), wake, 5000) == -3
        os.eventfd_read(wake)
        k.rx.prod = (k.rx.cons + 9) & U32  # 9 ahead in a ring of 8
        cached = path.rx.cached_prod
        assert C.rx_wait(path.rx, path.fill, a.fileno(), wake, 0) == -1
        assert path.rx.cached_prod == cached  # not cached
        k.rx.prod = k.rx.cons
        # the Fill ring asks: a kick (recvfrom) first; on a non-socket it fails
        k.fill.set_flags(NEED_WAKEUP)
        assert C.rx_wait(path.rx, path.fill, wake, wake, 0) == -(100 + errno.ENOTSOCK)
        assert C.rx_wait(path.rx, path.fill, a.fileno(), wake, 0) == 0  # (EAGAIN is fine)
        b.close()  # the peer hung up: an error, not a packet
        assert C.rx_wait(path.rx, path.fill, a.fileno(), wake, 5000) == -2
    finally:
        a.close()
        b.close()
        os.close(wake)


def test_rx_wait_keeps_its_timeout_through_signals() -> None:
    """A signal during the wait runs its handler and the wait goes on for
    what is left of the timeout: not returned early, not restarted whole
    (a process that takes a signal every few ms would otherwise never time
    out); a handler that raises ends the wait with its exception."""
    if _ring.accel is None:
        pytest.skip("the accelerator's own entry points")
    C = _ring.C
    k = FakeKernel(frame_count=16, ring=8)
    path = k.rx_path()
    k.fill.set_flags(0)
    wake = os.eventfd(0, os.EFD_NONBLOCK)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    seen: list[int] = []

    def note(signum: int, frame: object) -> None:
        seen.append(signum)

    def boom(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, note)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.15, 0.05)  # at 0.15 s, then every 50 ms
        t0 = time.monotonic()
        assert C.rx_wait(path.rx, path.fill, a.fileno(), wake, 400) == 0
        spent = time.monotonic() - t0
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert len(seen) >= 3
        assert 0.39 <= spent < 0.6  # (back at the first signal: 0.15 s; restarted: >= 0.55)
        signal.signal(signal.SIGALRM, boom)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            C.rx_wait(path.rx, path.fill, a.fileno(), wake, 5000)
        assert time.monotonic() - t0 < 1.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        a.close()
        b.close()
        os.close(wake)
