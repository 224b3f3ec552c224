"""A model of where every frame is, checked against the ring core and the
batch API after every step (Hypothesis state machine, fake kernel, no root).

One socket with both halves sharing a UMEM: RX frames 0..11, TX frames
12..23. The machine runs random sequences of per-packet and batch operations
on both sides, zero-copy forwarding, and what the kernel does (receive into
Fill frames, transmit, complete), with the rings' free-running indices
starting just below 2**32 so that the wrap happens inside most runs. After
each step it compares, list for list and in order, the model with the fake
kernel's rings and the paths' pools: the TX pool, the reserved TX slots and
their lengths, the TX ring, the Completion ring, the Fill ring, the RX ring,
the RX pool and the RX side's returns queue, plus the counters, the kicks and
every byte of the UMEM. What the kernel sent must be exactly what the model
expects, and the kernel must never see an invalid descriptor.

The model keeps to the documented behaviour: pools are FIFOs; TX ``seek``
reclaims completions when its pool is short or half the Completion ring is in
flight; RX ``commit`` puts the frames straight back into the Fill ring when
it has room (the pool when not), and tops it up from the pool once it is at
most half full; cached ring indices are invisible in every returned count.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from fake_kernel import U32, FakeCore, FakeKernel, FakeRing, entries_between
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from xdp_socket import _ring
from xdp_socket.batch import RxBatch, TxBatch

FS = 512  # frame size
HEADROOM = 64  # where the fake kernel puts a received packet in its frame
RX_FRAMES = 12
TX_FRAMES = 12
RX_LIMIT = RX_FRAMES * FS
LENGTHS = st.sampled_from([1, 2, 14, 60, FS - 1, FS])
NO_LENGTH = r"has no length|no frame in the submit has a length"


class _FakeTx:
    """What ``RxBatch.forward`` is given: the TX half of the same socket."""

    def __init__(self, core: FakeCore) -> None:
        self._core = core


def _descs(ring: FakeRing) -> list[tuple[int, int]]:
    """(addr, len) of the descriptors between the ring's consumer and producer."""
    n = (ring.prod - ring.cons) & U32
    return [ring.entry(i)[:2] for i in range(ring.cons, ring.cons + n)]


class RingModel(RuleBasedStateMachine):
    # --- set-up ------------------------------------------------------------------
    @initialize(
        start=st.one_of(st.integers(2**32 - 24, U32), st.just(0)),
        tx_ring=st.sampled_from([4, 8]),
        fill=st.sampled_from([4, 8, 16]),
        comp=st.sampled_from([4, 8]),
    )
    def setup(self, start: int, tx_ring: int, fill: int, comp: int) -> None:
        k = FakeKernel(frame_size=FS, frame_count=RX_FRAMES + TX_FRAMES, ring=8, fill=fill,
                       comp=comp, start=start, headroom=HEADROOM)
        k.tx = FakeRing(tx_ring, "desc", start)
        self.k = k
        self.rx = k.rx_path(0, RX_FRAMES)
        self.tx = _ring.LockedTxPath(k.tx.area, k.comp.area, k.addrs(RX_FRAMES, TX_FRAMES), FS,
                                     k.umem_view)
        self.tx.pair(self.rx, RX_LIMIT)
        self.umem = np.frombuffer(k.umem, np.uint8)
        self.umem2d = self.umem.reshape(-1, FS)
        self.tag = 1
        # the model
        self.m_umem = np.zeros_like(self.umem)
        self.tx_pool: deque[int] = deque(int(a) for a in k.addrs(RX_FRAMES, TX_FRAMES))
        self.res: list[int] = []  # reserved TX frames, in slot order
        self.res_len: list[int] = []  # their descriptor lengths (0: not written)
        self.txq: deque[tuple[int, int]] = deque()  # published, not yet sent
        self.compq: deque[int] = deque()  # completed, not yet reclaimed
        self.sent: list[bytes] = []
        self.submitted = self.completed = self.foreign = 0
        self.reclaim_at = comp // 2  # half the Completion ring in flight: reclaim
        rx_addrs = [int(a) for a in k.addrs(0, RX_FRAMES)]
        self.fill: deque[int] = deque(rx_addrs[:fill])
        self.rx_pool: deque[int] = deque(rx_addrs[fill:])
        self.rxq: deque[tuple[int, int]] = deque()  # received, not yet released
        self.seen = 0
        self.returns: deque[int] = deque()
        self.received = 0

    # --- model helpers ---------------------------------------------------------------
    def payload(self, n: int) -> np.ndarray:
        self.tag += 1
        return ((np.arange(n) + self.tag * 7) & 0xFF).astype(np.uint8)

    def m_reclaim(self) -> int:
        n = len(self.compq)
        for a in self.compq:
            base = a & ~(FS - 1)
            if base < RX_LIMIT:
                self.returns.append(base)
                self.foreign -= 1
            else:
                self.tx_pool.append(base)
        self.compq.clear()
        self.completed += n
        return n

    def m_tx_seek(self, n: int, clear: bool) -> int:
        if len(self.res) >= n:
            return n
        want = n - len(self.res)
        if len(self.tx_pool) < want or self.submitted - self.completed >= self.reclaim_at:
            self.m_reclaim()
        got = min(want, len(self.tx_pool), self.k.tx.entries - len(self.txq) - len(self.res))
        for _ in range(max(got, 0)):
            self.res.append(self.tx_pool.popleft())
            # one new slot is always cleared; several only when asked (the
            # batch API sets or clears them itself): -1 = whatever was there
            self.res_len.append(0 if clear or got == 1 else -1)
        return n if len(self.res) >= n else len(self.res)

    def m_tx_commit(self, lens: list[int]) -> None:
        n = len(lens)
        for a, ln in zip(self.res[:n], lens, strict=True):
            assert 0 < ln <= FS
            self.txq.append((a, ln))
        del self.res[:n]
        del self.res_len[:n]
        self.submitted += n

    def m_refill(self) -> None:
        room = self.k.fill.entries - len(self.fill)
        for _ in range(min(room, len(self.rx_pool))):
            self.fill.append(self.rx_pool.popleft())

    def m_take_returns(self) -> None:
        if self.returns:
            self.rx_pool.extend(self.returns)
            self.returns.clear()
            self.m_refill()

    def m_rx_seek(self, n: int) -> int:
        if self.seen >= n:
            return n
        self.seen = len(self.rxq)
        if self.seen >= n:
            return n
        self.m_take_returns()
        return self.seen

    def m_rx_commit(self, n: int) -> None:
        if n == 0:
            return
        self.m_take_returns()
        bases = [self.rxq[i][0] & ~(FS - 1) for i in range(n)]
        free = self.k.fill.entries - len(self.fill)
        if n == 1:
            if free:
                self.fill.append(bases[0])
            else:
                self.rx_pool.append(bases[0])
        elif free >= n:
            self.fill.extend(bases)
        else:
            self.rx_pool.extend(bases)
        # spare frames top the Fill ring up once it is at most half full
        if self.k.fill.entries - len(self.fill) >= self.k.fill.entries // 2:
            self.m_refill()
        for _ in range(n):
            self.rxq.popleft()
        self.seen -= n
        self.received += n

    def m_forward(self, n: int) -> int:
        self.m_take_returns()
        if self.res:
            return 0
        if self.submitted - self.completed >= self.reclaim_at:
            self.m_reclaim()
        got = min(n, self.k.tx.entries - len(self.txq))
        for _ in range(got):
            self.txq.append(self.rxq.popleft())
        self.submitted += got
        self.foreign += got
        self.seen -= got
        self.received += got
        return got

    # --- what the kernel does -----------------------------------------------------------
    @rule(n=st.integers(0, 10))
    def kernel_receives(self, n: int) -> None:
        pkts = []
        for _ in range(n):
            data = self.payload(int(self.payload(1)[0]) % (FS - HEADROOM) + 1)
            pkts.append(data.tobytes())
        got = self.k.receive(pkts)
        want = 0
        for p in pkts:
            if not self.fill or len(self.rxq) >= self.k.rx.entries:
                break
            addr = self.fill.popleft() + HEADROOM
            self.m_umem[addr : addr + len(p)] = np.frombuffer(p, np.uint8)
            self.rxq.append((addr, len(p)))
            want += 1
        assert got == want

    @rule(limit=st.integers(1, 10))
    def kernel_transmits(self, limit: int) -> None:
        got = self.k.transmit(limit)
        want = 0
        while self.txq and want < limit and len(self.compq) < self.k.comp.entries:
            addr, ln = self.txq.popleft()
            self.sent.append(self.m_umem[addr : addr + ln].tobytes())
            self.compq.append(addr)
            want += 1
        assert got == want

    # --- TX, per packet -------------------------------------------------------------
    @rule(n=st.integers(0, 10))
    def tx_seek(self, n: int) -> None:
        assert self.tx.seek(n) == self.m_tx_seek(n, clear=True)

    @precondition(lambda self: self.res)
    @rule(data=st.data(), length=LENGTHS)
    def tx_write(self, data: st.DataObject, length: int) -> None:
        i = data.draw(st.integers(0, len(self.res) - 1))
        p = self.payload(length)
        buf = self.tx.peek_at(i, length)
        assert len(buf) == length
        buf[:] = p.tobytes()
        self.m_umem[self.res[i] : self.res[i] + length] = p
        self.res_len[i] = length
        assert self.tx.frame_addr(i) == self.res[i]

    @precondition(lambda self: self.res)
    @rule(data=st.data(), length=st.sampled_from([0, FS + 1, 10**6]))
    def tx_write_bad_length(self, data: st.DataObject, length: int) -> None:
        i = data.draw(st.integers(0, len(self.res) - 1))
        with pytest.raises(ValueError, match=rf"length must be 1\.\.{FS} \(the frame size\), "
                                             rf"got {length}$"):
            self.tx.peek_at(i, length)

    @rule(n=st.integers(0, 9), write_all=st.booleans())
    def tx_commit(self, n: int, write_all: bool) -> None:
        if write_all:  # most commits should go through
            for i, ln in enumerate(self.res_len):
                if ln <= 0:
                    p = self.payload(60)
                    self.tx.peek_at(i, 60)[:] = p.tobytes()
                    self.m_umem[self.res[i] : self.res[i] + 60] = p
                    self.res_len[i] = 60
        if n > len(self.res):
            with pytest.raises(ValueError, match=rf"^cannot commit {n} frame\(s\): "
                                                 rf"{len(self.res)} available \(call seek_n"):
                self.tx.commit(n)
        elif 0 in self.res_len[:n]:
            with pytest.raises(ValueError, match=NO_LENGTH):
                self.tx.commit(n)
        else:
            self.tx.commit(n)
            self.m_tx_commit(self.res_len[:n])

    @rule()
    def tx_reclaim(self) -> None:
        assert self.tx.reclaim() == self.m_reclaim()

    # --- TX, batches ------------------------------------------------------------------
    @rule(n=st.integers(0, 10), data=st.data())
    def tx_batch(self, n: int, data: st.DataObject) -> None:
        core = FakeCore(self.tx)
        c = self.tx.seek(n, clear_lengths=False)  # as TxSocket.reserve does
        assert c == self.m_tx_seek(n, clear=False)
        b = TxBatch(core, self.tx, c, self.umem2d)  # type: ignore[arg-type]
        assert len(b) == c
        assert b.addrs.tolist() == self.res[:c]
        assert b.frame_indices.tolist() == [a // FS for a in self.res[:c]]
        blens = [0] * c
        for op in data.draw(st.lists(st.sampled_from(
                ["fill", "write", "write_array", "set_lengths", "edit", "frame", "user_lens",
                 "packets"]), max_size=3)):
            self.tx_batch_op(b, op, blens, data)
        want_frames = [self.m_umem[a : a + FS] for a in self.res[:c]]
        assert np.array_equal(b.frames(), np.array(want_frames).reshape(c, FS))
        end = data.draw(st.sampled_from(["with", "submit", "raise", "cancel", "submit_array"]))
        bad = [ln for ln in blens if not 0 <= ln <= FS]
        if end == "with":
            first0 = blens.index(0) if 0 in blens else c
            if any(not 0 < ln <= FS for ln in blens[:first0]):
                with pytest.raises(ValueError, match=rf"every length must be 1\.\.{FS}"), b:
                    pass
                end = "cancel"
            else:
                with b:
                    pass
                self.m_tx_commit(blens[:first0])
                self.res_len[: c - first0] = [0] * (c - first0)
                assert core.tx_kicks == 1
        elif end == "submit":
            k = data.draw(st.integers(0, c))
            if 0 in blens[:k]:
                with pytest.raises(ValueError, match=NO_LENGTH):
                    b.submit(k)
                end = "cancel"
            elif bad and any(not 0 < ln <= FS for ln in blens[:k]):
                with pytest.raises(ValueError, match=rf"every length must be 1\.\.{FS}"):
                    b.submit(k)
                end = "cancel"
            else:
                assert b.submit(k, kick=bool(k % 2)) == k
                self.m_tx_commit(blens[:k])
                self.res_len[: c - k] = [0] * (c - k)
                assert core.tx_kicks == k % 2
        elif end == "submit_array":
            # rows and lengths given now: whatever the ops above wrote into
            # the first k frames is overwritten, and only those k go
            k = data.draw(st.integers(0, c))
            width = data.draw(st.sampled_from([1, 14, 60, FS]))
            arr = np.stack([self.payload(width) for _ in range(k)]) if k else \
                np.zeros((0, width), np.uint8)
            how = data.draw(st.sampled_from(["default", "scalar", "array", "bad"]))
            arg: object
            if how == "default":
                lens, arg = [width] * k, None
            elif how == "scalar":
                ln = data.draw(LENGTHS)
                lens, arg = [ln] * k, ln
            elif how == "array":
                lens = [data.draw(LENGTHS) for _ in range(k)]
                arg = np.array(lens, np.uint32)
            else:
                lens, arg = [0] * k, np.zeros(k, np.uint32)
            if how == "bad" and k:
                before = self.umem2d.copy()
                with pytest.raises(ValueError, match=rf"every length must be 1\.\.{FS}"):
                    b.submit_array(arr, arg)
                assert np.array_equal(self.umem2d, before)  # nothing copied
                end = "cancel"
            else:
                kick = data.draw(st.booleans())
                assert b.submit_array(arr, arg, kick=kick) == k
                for i in range(k):
                    self.m_umem[self.res[i] : self.res[i] + width] = arr[i]
                self.m_tx_commit(lens)
                self.res_len[: c - k] = [0] * (c - k)
                assert core.tx_kicks == (1 if kick else 0)
        elif end == "raise":
            with pytest.raises(KeyError), b:
                raise KeyError("boom")
            self.res_len[:c] = [0] * c
            assert core.tx_kicks == 0
        if end == "cancel":
            assert not b.done
            b.cancel()
            self.res_len[:c] = [0] * c
        assert b.done
        assert repr(b) == f"<TxBatch {c} frame(s) done>"

    def tx_batch_op(self, b: TxBatch, op: str, blens: list[int], data: st.DataObject) -> None:
        c = len(blens)
        if op == "fill":
            ln = data.draw(LENGTHS)
            cnt = data.draw(st.integers(0, c))
            p = self.payload(ln)
            b.fill(p.tobytes(), cnt if cnt < c or data.draw(st.booleans()) else None)
            for i in range(cnt):
                self.m_umem[self.res[i] : self.res[i] + ln] = p
                blens[i] = ln
        elif op == "write" and c:
            for i in data.draw(st.lists(st.integers(-c, c - 1), max_size=4)):
                ln = data.draw(LENGTHS)
                p = self.payload(ln)
                b.write(i, p.tobytes() if data.draw(st.booleans()) else p)
                a = self.res[i % c]  # (the batch may hold fewer than the reserved frames)
                self.m_umem[a : a + ln] = p
                blens[i] = ln
        elif op == "packets":
            pkts = [self.payload(data.draw(LENGTHS)).tobytes()
                    for _ in range(data.draw(st.integers(0, c + 2)))]
            assert b.write_packets(pkts) == min(len(pkts), c)
            for i, p in enumerate(pkts[:c]):
                self.m_umem[self.res[i] : self.res[i] + len(p)] = np.frombuffer(p, np.uint8)
                blens[i] = len(p)
        elif op == "write_array":
            k = data.draw(st.integers(0, c))
            width = data.draw(st.sampled_from([1, 14, 60, FS]))
            arr = np.stack([self.payload(width) for _ in range(k)]) if k else \
                np.zeros((0, width), np.uint8)
            how = data.draw(st.sampled_from(["default", "scalar", "array"]))
            if how == "default":
                b.write_array(arr)
                lens = [width] * k
            elif how == "scalar":
                ln = data.draw(LENGTHS)
                b.write_array(arr, ln)
                lens = [ln] * k
            else:
                lens = [data.draw(LENGTHS) for _ in range(k)]
                b.write_array(arr, np.array(lens, np.uint32))
            for i in range(k):
                self.m_umem[self.res[i] : self.res[i] + width] = arr[i]
                blens[i] = lens[i]
        elif op == "set_lengths":
            cnt = data.draw(st.integers(0, c))
            if data.draw(st.booleans()):
                ln = data.draw(LENGTHS)
                b.set_lengths(ln, cnt if cnt < c or data.draw(st.booleans()) else None)
                blens[:cnt] = [ln] * cnt
            else:
                lens = [data.draw(LENGTHS) for _ in range(cnt)]
                b.set_lengths(lens, cnt)
                blens[:cnt] = lens
        elif op == "edit":
            cnt = data.draw(st.integers(0, c))
            width = data.draw(st.sampled_from([1, 60, FS]))
            rows = [self.payload(width) for _ in range(cnt)]
            with b.edit(cnt if cnt < c or data.draw(st.booleans()) else None) as fr:
                assert fr.shape == (cnt, FS)
                for i in range(cnt):
                    fr[i, :width] = rows[i]
            for i in range(cnt):
                self.m_umem[self.res[i] : self.res[i] + width] = rows[i]
        elif op == "frame" and c:
            i = data.draw(st.integers(-c, c - 1))
            ln = data.draw(LENGTHS)
            p = self.payload(ln)
            row = b.frame(i)
            assert row.shape == (FS,)
            row[:ln] = p
            b.lens[i] = ln
            self.m_umem[self.res[i % c] : self.res[i % c] + ln] = p
            blens[i] = ln
        elif op == "user_lens" and c:
            i = data.draw(st.integers(0, c - 1))
            ln = data.draw(st.sampled_from([0, 1, 60, FS, FS + 1]))
            b.lens[i] = ln
            blens[i] = ln

    # --- RX, per packet ----------------------------------------------------------------
    # (the RX rules let packets arrive first: with many rules and short runs,
    # a packet-less RX ring would otherwise be the common case)
    @rule(n=st.integers(0, 10), arrive=st.integers(0, 6))
    def rx_seek(self, n: int, arrive: int) -> None:
        self.kernel_receives(arrive)
        assert self.rx.seek(n) == self.m_rx_seek(n)

    @precondition(lambda self: self.seen)
    @rule(data=st.data())
    def rx_peek(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, self.seen - 1))
        addr, ln = self.rxq[i]
        assert bytes(self.rx.peek_at(i)) == self.m_umem[addr : addr + ln].tobytes()

    @rule(i=st.integers(-2, 10))
    def rx_peek_out_of_range(self, i: int) -> None:
        if 0 <= i < self.seen:
            return
        with pytest.raises(IndexError, match=rf"^packet index {i} out of range: {self.seen} "
                                             r"packet\(s\) available \(call seek_n\)$"):
            self.rx.peek_at(i)

    @rule(n=st.integers(0, 10))
    def rx_commit(self, n: int) -> None:
        if n > self.seen:
            with pytest.raises(ValueError, match=rf"^cannot commit {n} packet\(s\): {self.seen} "
                                                 r"available \(call seek_n first\)$"):
                self.rx.commit(n)
        else:
            self.rx.commit(n)
            self.m_rx_commit(n)

    # --- RX, batches ----------------------------------------------------------------------
    @rule(n=st.integers(0, 10), end=st.sampled_from(["release", "with", "raise", "forward"]),
          arrive=st.integers(0, 6))
    def rx_batch(self, n: int, end: str, arrive: int) -> None:
        self.kernel_receives(arrive)
        core = FakeCore(self.tx)
        c = self.rx.seek(n)
        assert c == self.m_rx_seek(n)
        b = RxBatch(core, self.rx, c, self.umem)  # type: ignore[arg-type]
        want = [self.m_umem[a : a + ln].tobytes() for a, ln in list(self.rxq)[:c]]
        assert b.payloads() == want
        assert b.addrs.tolist() == [a for a, _ in list(self.rxq)[:c]]
        assert b.lens.tolist() == [ln for _, ln in list(self.rxq)[:c]]
        assert b.frame_indices.tolist() == [a // FS for a, _ in list(self.rxq)[:c]]
        if c:
            assert b[c - 1].tobytes() == want[-1]
            assert repr(b) == f"<RxBatch {c} packet(s)>"
        if end == "release":
            b.release()
            self.m_rx_commit(c)
            assert core.fill_kicks == (1 if c else 0)
        elif end == "with":
            with b:
                pass
            self.m_rx_commit(c)
        elif end == "raise":
            with pytest.raises(KeyError), b:
                raise KeyError("boom")
            self.m_rx_commit(c)
        else:
            if c:
                got = b.forward(_FakeTx(core))
                want_k = self.m_forward(c)
                assert got == want_k
                self.m_rx_commit(c - got)
                assert core.tx_kicks == 1
                assert core.fill_kicks == (1 if got < c else 0)
            else:
                assert b.forward(_FakeTx(core)) == 0
        assert b.released
        assert repr(b).endswith(" released>") or not c

    # --- after every step ------------------------------------------------------------------
    @invariant()
    def every_frame_where_the_model_says(self) -> None:
        if not hasattr(self, "k"):
            return
        k, tx, rx = self.k, self.tx, self.rx
        # TX side
        assert tx.pool.snapshot().tolist() == list(self.tx_pool)
        assert tx.reserved == len(self.res)
        assert tx.reserved_addrs(len(self.res)).tolist() == self.res
        ring_lens = [int(k.tx.area.lens[(tx.tx.cached_prod + i) & (k.tx.entries - 1)])
                     for i in range(len(self.res))]
        for got, want in zip(ring_lens, self.res_len, strict=True):
            assert want == -1 or got == want, (ring_lens, self.res_len)
        assert k.tx.prod == tx.tx.cached_prod
        assert _descs(k.tx) == list(self.txq)
        assert entries_between(k.comp, k.comp.cons, k.comp.prod) == list(self.compq)
        assert k.comp.cons == tx.comp.cached_cons
        assert k.sent == self.sent
        assert k.invalid == 0
        assert (tx.submitted, tx.completed, tx.foreign_in_flight) == \
            (self.submitted, self.completed, self.foreign)
        assert tx.in_flight == self.submitted - self.completed
        # RX side
        assert k.fill_contents() == list(self.fill)
        assert k.fill.prod == rx.fill.cached_prod
        assert _descs(k.rx) == list(self.rxq)
        assert k.rx.cons == rx.rx.cached_cons
        assert rx.available == self.seen
        assert rx.pool.snapshot().tolist() == list(self.rx_pool)
        assert rx.returns.snapshot().tolist() == list(self.returns)
        assert rx.received == self.received
        # and every byte
        assert np.array_equal(self.umem, self.m_umem)


TestRingModel = RingModel.TestCase
TestRingModel.settings = settings(max_examples=25, stateful_step_count=40, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])
