"""System tests of the numpy batch API against the real kernel: a million
frames through each batch path, exact counts, sequence numbers checked for
every frame and full contents for a sample. Runs in conftest's private
namespace on veth pairs with native XDP (so queue steering holds)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import xdp_socket as xs
from xdp_socket import testing

pytestmark = pytest.mark.kernel

TOTAL = 1_000_000
WINDOW = 1024  # frames in flight; far below the receivers' ring and Fill sizes
ETHERTYPE = b"\x88\xb5"
MAC_A = np.frombuffer(b"\x02\x00\x00\x00\x00\x0a", np.uint8)
MAC_B = np.frombuffer(b"\x02\x00\x00\x00\x00\x0b", np.uint8)
WIDTH = 64  # bytes of each frame written and checked
SAMPLE_EVERY = 997


def frames(seq0: int, n: int) -> np.ndarray:
    """n frames of WIDTH bytes: dst B, src A, ethertype, 8-byte sequence
    number, then bytes derived from the sequence number."""
    out = np.empty((n, WIDTH), np.uint8)
    out[:, 0:6] = MAC_B
    out[:, 6:12] = MAC_A
    out[:, 12:14] = np.frombuffer(ETHERTYPE, np.uint8)
    seqs = np.arange(seq0, seq0 + n, dtype=np.uint64)
    out[:, 14:22] = seqs.astype(">u8").view(np.uint8).reshape(n, 8)
    out[:, 22:] = (seqs[:, None] + np.arange(WIDTH - 22, dtype=np.uint64)).astype(np.uint8)
    return out


def seq_of(head: np.ndarray) -> np.ndarray:
    return head[:, 14:22].copy().view(">u8").ravel().astype(np.int64)


def run_stream(tx: Any, rx: Any, forwarder: Any = None, expect_swapped: bool = False,
               deadline_s: float = 120.0) -> dict[str, int]:
    sent = got = sampled = forwarded = 0
    t_end = time.monotonic() + deadline_s
    while got < TOTAL:
        assert time.monotonic() < t_end, f"stalled: sent {sent} got {got}"
        room = min(64, TOTAL - sent, WINDOW - (sent - got))
        if room > 0:
            with tx.reserve(room) as out:
                n = len(out)
                if n:
                    out.write_array(frames(sent, n))
            sent += n
        if forwarder is not None:
            ftx, frx = forwarder
            with frx.receive(64) as b:
                if len(b):
                    b.swap_macs()
                    k = b.forward(ftx)
                    assert k == len(b), "the forwarder dropped frames"
                    forwarded += k
                else:
                    ftx.reclaim()
        with rx.receive(64) as b:
            n = len(b)
            if not n:
                continue
            assert (b.lens == WIDTH).all()
            head = b.gather(WIDTH)
            seqs = seq_of(head)
            expected = np.arange(got, got + n)
            assert (seqs == expected).all(), f"out of order or lost near {got}"
            dst, src = (MAC_A, MAC_B) if expect_swapped else (MAC_B, MAC_A)
            assert (head[:, 0:6] == dst).all() and (head[:, 6:12] == src).all()
            # full contents for a sample
            for i in np.flatnonzero(expected % SAMPLE_EVERY == 0):
                want = frames(int(expected[i]), 1)[0]
                if expect_swapped:
                    want[0:6], want[6:12] = MAC_A, MAC_B
                assert bytes(b.packet(int(i))) == want.tobytes()
                sampled += 1
            got += n
    return {"sent": sent, "got": got, "sampled": sampled, "forwarded": forwarded}


def test_million_frames_tx_batch_to_rx_batch(veth: Any) -> None:
    cfg = xs.XdpConfig(xdp_mode="native")
    with xs.create_rx_socket(veth.b, 0, cfg) as rx, xs.create_tx_socket(veth.a, 0) as tx:
        res = run_stream(tx, rx)
        assert res["got"] == res["sent"] == TOTAL
        assert res["sampled"] >= TOTAL // SAMPLE_EVERY
        assert tx.flush(5.0)
        assert tx.in_flight == 0
        st = rx.statistics()
        assert st.rx_dropped == st.rx_ring_full == st.rx_invalid_descs == 0
        assert tx.statistics().tx_invalid_descs == 0
        # nothing extra arrived
        with rx.receive(64, timeout=0.2) as b:
            assert len(b) == 0


def test_million_frames_forwarded_zero_copy(veth: Any) -> None:
    """A sends, B forwards each received frame back out from its own UMEM
    frame (swap_macs + forward), A receives: l2fwd."""
    cfg = xs.XdpConfig(xdp_mode="native")
    a_tx, a_rx = xs.create_bi_socket(veth.a, 0, cfg)
    b_tx, b_rx = xs.create_bi_socket(veth.b, 0, cfg)
    with a_tx, a_rx, b_tx, b_rx:
        res = run_stream(a_tx, a_rx, forwarder=(b_tx, b_rx), expect_swapped=True)
        assert res["got"] == res["forwarded"] == res["sent"] == TOTAL
        for s in (a_rx, b_rx):
            st = s.statistics()
            assert st.rx_dropped == st.rx_ring_full == st.rx_invalid_descs == 0
        assert b_tx.statistics().tx_invalid_descs == 0
        # every one of B's frames comes home: RX frames forwarded on TX return
        # to B's Fill side on completion (through the RX half's returns queue,
        # taken by its next look), B's own TX frames were never used
        assert b_tx.flush(5.0)
        b_tx.reclaim()
        assert b_rx.seek_n(1) == 0 and b_rx._path.returns.count == 0
        tx_path = b_tx._path
        assert tx_path.foreign_in_flight == 0
        assert tx_path.pool.count == tx_path.frame_count
        rx_path = b_rx._path
        fill_held = (rx_path.fill.cached_prod - rx_path.fill._cons[0]) & 0xFFFFFFFF
        assert fill_held + rx_path.pool.count + rx_path.available == rx_path.frame_count


def test_batch_with_per_packet_api_mixed(veth: Any) -> None:
    """Both tiers on one socket, alternately, on the same ring core."""
    cfg = xs.XdpConfig(xdp_mode="native")
    with xs.create_rx_socket(veth.b, 0, cfg) as rx, xs.create_tx_socket(veth.a, 0) as tx:
        data = frames(0, 200)
        for i in range(0, 200, 2):
            assert tx.send(data[i].tobytes())
            with tx.reserve(1) as out:
                out.write(0, data[i + 1].tobytes())
        assert tx.flush(2.0)
        got: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(got) < 200 and time.monotonic() < deadline:
            p = rx.recv(timeout=0.1)
            if p is not None:
                got.append(p)
            with rx.receive(3) as b:
                got += b.payloads()
        assert got == [row.tobytes() for row in data]


@pytest.mark.timeout(240)
def test_forward_beside_a_tx_thread_keeps_both_streams_whole(veth: Any) -> None:
    """B forwards A's frames back (RX thread: swap_macs + forward) while
    another thread sends B's own frames on the same TX ring (the locked TX
    path; the kick loop reads the producer word while the other thread
    publishes). A gets B's own stream complete and in order, and every frame
    B forwarded, in order, no frame twice. (While the TX thread holds frames
    reserved, forward sends nothing and the batch is released instead: those
    frames are counted as dropped by B.)"""
    import threading

    n_each, window = 200_000, 512
    own_type = np.frombuffer(b"\x88\xb6", np.uint8)
    cfg = xs.XdpConfig(xdp_mode="native")
    a_tx, a_rx = xs.create_bi_socket(veth.a, 0, cfg)
    b_tx, b_rx = xs.create_bi_socket(veth.b, 0, cfg)
    got = {"fwd": 0, "own": 0}
    b_count = {"fwd": 0, "dropped": 0}
    errors: list[BaseException] = []
    stop = threading.Event()

    def b_sender() -> None:  # B's TX half: its own frames, ethertype 88b6
        sent = 0
        try:
            while sent < n_each and not stop.is_set():
                room = min(64, n_each - sent, window - (sent - got["own"]))
                if room <= 0:
                    b_tx.reclaim()
                    time.sleep(0.0001)
                    continue
                with b_tx.reserve(room) as out:
                    k = len(out)
                    if k:
                        f = frames(sent, k)
                        f[:, 0:6], f[:, 6:12], f[:, 12:14] = MAC_A, MAC_B, own_type
                        out.write_array(f)
                sent += k
        except BaseException as e:
            errors.append(e)

    def b_forwarder() -> None:  # B's RX half: forwards everything back
        try:
            while not stop.is_set():
                with b_rx.receive(64) as b:
                    if len(b):
                        b.swap_macs()
                        k = b.forward(b_tx)
                        b_count["fwd"] += k
                        b_count["dropped"] += len(b) - k
                    else:
                        time.sleep(0)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (b_sender, b_forwarder)]
    with a_tx, a_rx, b_tx, b_rx:
        for t in threads:
            t.start()
        try:
            sent = last_fwd = 0
            t_end = time.monotonic() + 200
            while (got["fwd"] + b_count["dropped"] < n_each or got["own"] < n_each) \
                    and not errors:
                assert time.monotonic() < t_end, f"stalled: sent {sent} got {got} B {b_count}"
                room = min(64, n_each - sent, window - (sent - got["fwd"] - b_count["dropped"]))
                if room > 0:
                    with a_tx.reserve(room) as out:
                        k = len(out)
                        if k:
                            out.write_array(frames(sent, k))
                    sent += k
                with a_rx.receive(64) as b:
                    if not len(b):
                        continue
                    head = b.gather(WIDTH)
                    own = (head[:, 12:14] == own_type).all(axis=1)
                    seqs = seq_of(head[own])
                    want = np.arange(got["own"], got["own"] + seqs.shape[0])
                    assert (seqs == want).all(), f"own: out of order or lost near {got}"
                    got["own"] += seqs.shape[0]
                    seqs = seq_of(head[~own])  # forwarded: a subsequence, in order
                    if seqs.shape[0]:
                        assert seqs[0] >= last_fwd and (np.diff(seqs) > 0).all(), got
                        last_fwd = int(seqs[-1]) + 1
                        got["fwd"] += seqs.shape[0]
                    assert (head[:, 0:6] == MAC_A).all()
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not errors, errors
        assert got == {"fwd": b_count["fwd"], "own": n_each}
        assert b_count["fwd"] + b_count["dropped"] == n_each
        assert b_count["fwd"] > n_each // 10  # both streams really ran side by side
        assert b_tx.flush(5.0)
        st = a_rx.statistics()
        assert st.rx_dropped == st.rx_ring_full == st.rx_invalid_descs == 0
        assert b_tx.statistics().tx_invalid_descs == 0


def test_submit_array_sends_every_row_kicking_a_part_at_a_time(veth: Any) -> None:
    """TxBatch.submit_array: rows as the pcap reader hands them out (strided
    views into records), each with its own length, reach an AF_PACKET peer
    byte for byte and in order. With the accelerator the copy is kicked 256
    frames at a time: the kernel counts one empty TX ring per kick that
    drained it (tx_ring_empty_descs), so 1000 rows make 4, where write_array
    and submit make 1."""
    n = 1000
    records = np.zeros((n, 16 + WIDTH), np.uint8)
    records[:, 16:] = frames(0, n)
    rows = records[:, 16:]
    lens = (40 + np.arange(n) % 25).astype(np.uint32)
    cfg = xs.XdpConfig(tx_budget=2048)  # one kick could send them all
    with xs.create_tx_socket(veth.a, 0, cfg) as tx, testing.AfPacketPeer(veth.b) as peer:
        b = tx.reserve(n)
        assert len(b) == n
        assert b.submit_array(rows, lens) == n
        assert b.done
        assert tx.flush(timeout=5.0)
        got = peer.recv_matching(lambda f: True, n, timeout=10.0)
        assert [len(f) for f in got] == lens.tolist()
        assert got == [rows[i, : lens[i]].tobytes() for i in range(n)]
        st = tx.statistics()
        assert st.tx_invalid_descs == 0
        assert st.tx_ring_empty_descs == (4 if xs.accelerator() == "c" else 1)
        # the same through write_array and submit: one kick
        b = tx.reserve(n)
        b.write_array(rows, lens)
        b.submit()
        assert tx.flush(timeout=5.0)
        assert len(peer.recv_matching(lambda f: True, n, timeout=10.0)) == n
        assert tx.statistics().tx_ring_empty_descs == st.tx_ring_empty_descs + 1
