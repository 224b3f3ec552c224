"""Defect 4 of issue 7: ``RxBatch.forward`` in the RX thread while another
thread uses the TX half of the same socket, with real traffic from a peer and
a thread switch every microsecond. Nothing is corrupted, no invalid
descriptor reaches the kernel, every frame that arrives at the peer is exact,
the counts add up, and afterwards every UMEM frame is in exactly one place.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest
from helpers import make_test_frame, parse_test_frame

import xdp_socket as xs
from xdp_socket import testing

pytestmark = pytest.mark.kernel

PEER_FRAMES = 6000  # sent by the peer, forwarded (or dropped) by the RX thread
TX_FRAMES = 6000  # sent by the TX thread
WINDOW = 32  # peer frames in flight at most: fewer than the RX frames free for the Fill ring
RUN_S = 20.0  # hard bound on the traffic phase
FWD_TAG, BATCH_TAG, SEND_TAG = 1, 2, 3


def _swapped(frame: bytes) -> bytes:
    return frame[6:12] + frame[0:6] + frame[12:]


def _frame_places(tx: Any, rx: Any) -> list[int]:
    """Every UMEM frame address the socket's two sides hold (frame bases),
    once the traffic has stopped and everything was drained: TX pool and
    reserved slots, Completion ring, TX ring (in flight); RX pool, returns
    queue, Fill ring (kernel-owned) and RX ring (received, not taken)."""
    core = tx._core
    tpath, rpath = core.tx_path, core.rx_path
    fs = tpath.frame_size
    out: list[int] = []

    def ring(r: Any, lo: int, hi: int) -> None:
        for i in range(lo, lo + ((hi - lo) & 0xFFFFFFFF)):
            out.append(int(r.area.addrs[i & r.mask]) // fs * fs)

    out += [int(a) // fs * fs for a in tpath.pool.snapshot()]
    ring(tpath.tx, tpath.tx.cached_prod, tpath.tx.cached_prod + tpath.reserved)
    ring(tpath.tx, tpath.tx._cons[0], tpath.tx.cached_prod)  # published, not consumed
    ring(tpath.comp, tpath.comp.cached_cons, tpath.comp._prod[0])  # completed, not reclaimed
    out += [int(a) // fs * fs for a in rpath.pool.snapshot()]
    out += [int(a) // fs * fs for a in rpath.returns.snapshot()]
    ring(rpath.fill, rpath.fill._cons[0], rpath.fill.cached_prod)
    ring(rpath.rx, rpath.rx.cached_cons, rpath.rx._prod[0])
    return out


@pytest.mark.timeout(90)
def test_forward_beside_a_tx_thread(veth: Any) -> None:
    cfg = xs.XdpConfig(frame_count=256, rx_size=64, tx_size=64, fill_size=64, comp_size=64,
                       xdp_mode="native")
    tx, rx = xs.create_bi_socket(veth.b, 0, cfg)
    peer = testing.AfPacketPeer(veth.a)
    stop = threading.Event()
    errors: list[BaseException] = []
    fwd = {"forwarded": 0, "dropped": 0, "batches": 0}
    own = {"batch": 0, "send": 0}

    def rx_thread() -> None:
        try:
            while not stop.is_set():
                with rx.receive(64, timeout=0.01) as b:
                    if len(b):
                        b.swap_macs()
                        k = b.forward(tx)
                        fwd["forwarded"] += k
                        fwd["dropped"] += len(b) - k
                        fwd["batches"] += 1
        except BaseException as e:
            errors.append(e)

    def tx_thread() -> None:
        try:
            seq_b = seq_s = turn = 0
            while not stop.is_set() and seq_b + seq_s < TX_FRAMES:
                turn += 1
                if turn % 2:  # both tiers in turn: reserve/write/submit, then send
                    with tx.reserve(8) as out:
                        for i in range(len(out)):
                            s = seq_b + i
                            out.write(i, make_test_frame(BATCH_TAG, s, 60 + (s * 37) % 200))
                    seq_b += len(out)
                    own["batch"] = seq_b
                elif tx.send(make_test_frame(SEND_TAG, seq_s, 60 + (seq_s * 53) % 300)):
                    seq_s += 1
                    own["send"] = seq_s
                else:
                    time.sleep(0.0005)
        except BaseException as e:
            errors.append(e)

    got: dict[int, set[int]] = {FWD_TAG: set(), BATCH_TAG: set(), SEND_TAG: set()}
    bad: list[bytes] = []

    def take(frame: bytes) -> None:
        ts = parse_test_frame(frame)  # (the tag tells forwarded from TX-thread frames)
        if ts is None:
            return
        tag, seq = ts
        if tag == FWD_TAG:
            ok = frame == _swapped(make_test_frame(FWD_TAG, seq, 60 + (seq * 29) % 400))
        elif tag == BATCH_TAG:
            ok = frame == make_test_frame(BATCH_TAG, seq, 60 + (seq * 37) % 200)
        elif tag == SEND_TAG:
            ok = frame == make_test_frame(SEND_TAG, seq, 60 + (seq * 53) % 300)
        else:
            ok = False
        if not ok or seq in got.get(tag, set()):
            bad.append(frame)
            return
        got[tag].add(seq)

    old_switch = sys.getswitchinterval()
    threads = [threading.Thread(target=rx_thread), threading.Thread(target=tx_thread)]
    sent = 0
    try:
        sys.setswitchinterval(1e-6)
        for t in threads:
            t.start()
        deadline = time.monotonic() + RUN_S
        lost = 0
        while sent < PEER_FRAMES and time.monotonic() < deadline and not errors:
            accounted = len(got[FWD_TAG]) + fwd["dropped"] + lost
            if sent - accounted >= WINDOW:
                # frames the kernel dropped (Fill ring empty while forwarded
                # frames are in flight) never come back: count them in
                st = rx.statistics()
                lost = st.rx_dropped + st.rx_ring_full
                accounted = len(got[FWD_TAG]) + fwd["dropped"] + lost
            if sent - accounted < WINDOW:
                peer.send(make_test_frame(FWD_TAG, sent, 60 + (sent * 29) % 400))
                sent += 1
            else:
                f = peer.recv(0.001)
                if f is not None:
                    take(f)
        stop.set()
        for t in threads:
            t.join(10)
            assert not t.is_alive(), "a thread did not stop"
    finally:
        sys.setswitchinterval(old_switch)
        stop.set()
    assert not errors, errors
    try:
        # Drain: forward what is still in the RX ring, send what is queued.
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end:
            with rx.receive(64) as b:
                if len(b):
                    b.swap_macs()
                    k = b.forward(tx)
                    fwd["forwarded"] += k
                    fwd["dropped"] += len(b) - k
            tx.flush(0.05)
            f = peer.recv(0.01)
            if f is not None:
                take(f)
            elif (len(got[FWD_TAG]) == fwd["forwarded"]
                  and len(got[BATCH_TAG]) == own["batch"]
                  and len(got[SEND_TAG]) == own["send"]):
                break
        assert tx.flush(2.0)
        stats = rx.statistics()
        assert stats.tx_invalid_descs == 0 and stats.rx_invalid_descs == 0
        assert not bad, f"{len(bad)} corrupt or duplicate frame(s), first {bad[0][:32].hex()}"
        # Counts add up: every peer frame was forwarded, dropped by forward
        # (no TX room), or dropped by the kernel (statistics); every forwarded
        # and every TX-thread frame arrived exactly once.
        assert sent > 1000, f"only {sent} peer frames in {RUN_S} s"
        assert own["batch"] + own["send"] > 1000
        assert fwd["forwarded"] > 100, fwd
        lost = stats.rx_dropped + stats.rx_ring_full
        assert sent == fwd["forwarded"] + fwd["dropped"] + lost, (sent, fwd, stats)
        assert len(got[FWD_TAG]) == fwd["forwarded"]
        assert len(got[BATCH_TAG]) == own["batch"]
        assert len(got[SEND_TAG]) == own["send"]
        # Every UMEM frame is in exactly one place.
        places = _frame_places(tx, rx)
        all_frames = [i * cfg.frame_size for i in range(cfg.frame_count)]
        assert sorted(places) == all_frames
        print(f"peer {sent}, forwarded {fwd['forwarded']}, dropped by forward "
              f"{fwd['dropped']}, kernel lost {lost}, TX thread {own}")
    finally:
        tx.close()
        rx.close()
        peer.close()
