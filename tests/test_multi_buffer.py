"""Multi-buffer (XDP_USE_SG) against the real kernel on a 9000-byte-MTU veth:
jumbo frames both ways, byte-exact, mixed with small ones, across ring wrap,
in both API tiers, with an independent peer (AF_PACKET) on the other end and
the kernel's statistics checked."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

import xdp_socket as xs
from xdp_socket import testing

pytestmark = pytest.mark.kernel

MTU = 9000
# 2048-byte frames: a 9000-byte packet is 5 RX descriptors (1792 bytes of
# room each in copy mode) and 5 TX ones; the small rings wrap many times
CFG = xs.XdpConfig(multi_buffer=True, frame_size=2048, frame_count=256, rx_size=64,
                   fill_size=64, tx_size=64, comp_size=64, xdp_mode="native")
ROUNDS = 40
PER_ROUND = 8


def packets(seed: int, n: int) -> list[bytes]:
    """Jumbo, small and in-between packets, each with its own bytes."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        size = rnd.choice((MTU + 14, 60, 1514, 1793, 4000, rnd.randint(60, MTU + 14)))
        body = rnd.randbytes(size - 14 - 4)
        out.append(testing.make_frame(payload=(seed * 1000 + i).to_bytes(4, "big") + body))
    return out


def assert_clean(*socks: Any) -> None:
    for s in socks:
        st = s.statistics()
        assert st.rx_dropped == 0 and st.rx_invalid_descs == 0 and st.tx_invalid_descs == 0, st
        assert st.rx_ring_full == 0, st


def test_jumbo_both_ways_per_packet_and_batch(veth_factory: Any) -> None:
    link = veth_factory(mtu=MTU)
    ta, ra = xs.create_bi_socket(link.a, 0, CFG)
    tb, rb = xs.create_bi_socket(link.b, 0, CFG)
    try:
        for rnd in range(ROUNDS):
            # A -> B, received per packet (recv joins the descriptors)
            sent = packets(rnd, PER_ROUND)
            for p in sent:
                assert ta.send(p)
            assert ta.flush(timeout=2.0)
            got = [rb.recv(timeout=2.0) for _ in sent]
            assert got == sent
            # B -> A, received in batches of few descriptors: never cut inside
            # a packet, payloads() joins them
            sent = packets(10_000 + rnd, PER_ROUND)
            for p in sent:
                assert tb.send(p)
            assert tb.flush(timeout=2.0)
            got = []
            for _ in range(200):
                if len(got) == len(sent):
                    break
                with ra.receive(3, timeout=1.0) as b:
                    if len(b):
                        assert b.ends[-1], "a batch ended inside a packet"
                        assert int(b.ends.sum()) == len(b.payloads())
                        got += b.payloads()
            assert got == sent
        assert_clean(ra, rb, ta, tb)
    finally:
        for s in (ta, ra, tb, rb):
            s.close()


def test_jumbo_against_af_packet(veth_factory: Any) -> None:
    """An independent peer on each side: the kernel's own packet sockets."""
    link = veth_factory(mtu=MTU)
    sent = packets(7, 30)
    # AF_XDP TX chains -> AF_PACKET (no XDP program on B)
    with xs.create_tx_socket(link.a, 0, CFG) as tx, testing.AfPacketPeer(link.b) as peer:
        for p in sent:
            assert tx.send(p)
        assert tx.flush(timeout=2.0)
        assert peer.recv_matching(lambda f: True, len(sent), timeout=5.0) == sent
        assert tx.statistics().tx_invalid_descs == 0
    # AF_PACKET -> AF_XDP RX (descriptor chains joined)
    with xs.create_rx_socket(link.b, 0, CFG) as rx, testing.AfPacketPeer(link.a) as peer:
        got = []
        for p in sent:
            peer.send(p)
            got.append(rx.recv(timeout=2.0))
        assert got == sent
        assert_clean(rx)


def test_limits_and_errors(veth_factory: Any) -> None:
    link = veth_factory(mtu=MTU)
    with xs.create_tx_socket(link.a, 0, CFG) as tx:
        with pytest.raises(ValueError, match="at most 18 descriptors"):
            tx.send(bytes(18 * 2048 + 1))
        assert tx.send(testing.make_frame(payload=bytes(18 * 2048 - 14)))  # the longest chain
        assert tx.flush(timeout=2.0)
        assert tx.statistics().tx_invalid_descs == 0
    plain = xs.XdpConfig(frame_size=2048, xdp_mode="native")
    with xs.create_tx_socket(link.a, 0, plain) as tx, \
            pytest.raises(ValueError, match="multi_buffer=True"):
        tx.send(bytes(3000))
    # Without XDP_USE_SG a jumbo packet cannot be received: the kernel drops
    # it and counts it; small packets pass. (The program attaches at MTU 9000
    # because it is loaded frags-aware.)
    with xs.create_rx_socket(link.b, 0, plain) as rx, \
            xs.create_tx_socket(link.a, 0, CFG) as tx:
        big, small = testing.make_frame(payload=bytes(5000)), testing.make_frame(payload=b"s")
        assert tx.send(big) and tx.send(small) and tx.flush(timeout=2.0)
        assert rx.recv(timeout=2.0) == small
        assert rx.statistics().rx_dropped == 1


def test_batch_is_extended_to_the_packet_end(veth_factory: Any) -> None:
    """receive(1) on a 5-descriptor packet returns all 5 (a batch never ends
    inside a packet); the descriptors' bytes are the packet's."""
    link = veth_factory(mtu=MTU)
    with xs.create_rx_socket(link.b, 0, CFG) as rx, xs.create_tx_socket(link.a, 0, CFG) as tx:
        p = testing.make_frame(payload=bytes(range(256)) * 35)  # 8974 bytes
        assert tx.send(p) and tx.flush(timeout=2.0)
        with rx.receive(1, timeout=2.0) as b:
            n = -(-len(p) // 1792)
            assert len(b) == n and b.ends.tolist() == [False] * (n - 1) + [True]
            joined = np.concatenate([b.packet(i) for i in range(len(b))]).tobytes()
            assert joined == p == b.payloads()[0]


def test_forward_keeps_chains(veth_factory: Any) -> None:
    """Zero-copy forward of jumbo packets (descriptor chains) mixed with small
    ones: an AF_PACKET peer sends, a multi-buffer socket forwards every batch
    out of its own TX half, and the peer gets every packet back whole and
    byte-exact (so XDP_PKT_CONTD travelled from the RX to the TX ring)."""
    link = veth_factory(mtu=MTU)
    ftx, frx = xs.create_bi_socket(link.b, 0, CFG)
    try:
        with testing.AfPacketPeer(link.a) as peer:
            sent: list[bytes] = []
            descs = 0
            for rnd in range(ROUNDS // 2):
                batch_in = packets(rnd + 500, PER_ROUND)
                for p in batch_in:
                    peer.send(p)
                sent += batch_in
                want = sum(-(-len(p) // CFG.rx_room) for p in batch_in)
                got = 0
                for _ in range(100):
                    if got >= want:
                        break
                    with frx.receive(64, timeout=0.05) as b:
                        if len(b):
                            assert b.ends[-1]  # a batch ends with a packet's end
                            k = b.forward(ftx)
                            assert k == len(b), "forward dropped descriptors"
                            got += k
                assert got == want, f"round {rnd}: {got} of {want} descriptors"
                descs += got
                # the forwarded frames come home before the next burst (a
                # burst of chains needs up to 48 frames on the 64-entry Fill
                # ring; the kernel drops a packet it cannot place whole)
                assert ftx.flush(timeout=2.0)
                frx.seek_n(1)
            back = peer.recv_matching(lambda f: f[12:14] == b"\x88\xb5", len(sent),
                                      timeout=5.0)
            assert sorted(back) == sorted(sent)  # whole packets, each once, byte-exact
            assert descs > 2 * len(sent)  # jumbo packets really were chains
            assert ftx.flush(timeout=2.0)
            assert ftx._path.foreign_in_flight == 0
        assert_clean(frx, ftx)
    finally:
        ftx.close()
        frx.close()


def test_filter_on_a_jumbo_link(veth_factory: Any) -> None:
    """The filter program is loaded frags-aware too, so it attaches at MTU
    9000; it matches on header bytes (in the first buffer) and on the whole
    packet's length, which counts every fragment. Matching packets reach the
    multi-buffer socket whole; the others pass to the kernel stack, where an
    AF_PACKET socket on the same interface sees them."""
    link = veth_factory(mtu=MTU)
    cfg = xs.XdpConfig(multi_buffer=True, xdp_mode="native",
                       filter="ether[14] == 1 or greater 8000")

    def pkt(first: int, size: int) -> bytes:
        return testing.make_frame(payload=bytes([first]) + random.randbytes(size - 15))

    sent = [pkt(2, MTU + 14), pkt(1, 60), pkt(2, 5000), pkt(1, 6000), pkt(2, 100)]
    match = [sent[0], sent[1], sent[3]]  # len >= 8000, or first payload byte 1
    with xs.create_rx_socket(link.b, 0, cfg) as rx, \
            testing.AfPacketPeer(link.b) as stack, xs.create_tx_socket(link.a, 0, CFG) as tx:
        for p in sent:
            assert tx.send(p)
        assert tx.flush(timeout=2.0)
        got = [rx.recv(timeout=2.0) for _ in match]
        assert got == match
        assert rx.recv(timeout=0.2) is None
        passed = stack.recv_matching(lambda f: f[12:14] == b"\x88\xb5", 2, timeout=2.0)
        assert sorted(passed) == sorted([sent[2], sent[4]])
        assert_clean(rx)


def test_tx_batch_chains(veth_factory: Any) -> None:
    """TxBatch.write / write_packets send packets longer than a frame as
    descriptor chains; an AF_PACKET peer (no XDP program on its side) gets
    every one whole and byte-exact, across ring wrap, mixed with small ones."""
    link = veth_factory(mtu=MTU)
    with xs.create_tx_socket(link.a, 0, CFG) as tx, testing.AfPacketPeer(link.b) as peer:
        sent: list[bytes] = []
        for rnd in range(ROUNDS):
            pkts = packets(rnd + 900, PER_ROUND)
            with tx.reserve(64) as batch:
                if rnd % 2:
                    assert batch.write_packets(pkts) == len(pkts)
                else:
                    at = 0
                    for p in pkts:
                        used = batch.write(at, p)
                        assert used == -(-len(p) // 2048)
                        at += used
            sent += pkts
            assert tx.flush(timeout=2.0)
        got = peer.recv_matching(lambda f: f[12:14] == b"\x88\xb5", len(sent), timeout=5.0)
        assert got == sent
        assert tx.statistics().tx_invalid_descs == 0
        # every frame back: free, or still reserved for the next batch
        assert tx._path.pool.count + tx.available == CFG.frame_count


def test_tx_batch_chain_errors(veth_factory: Any) -> None:
    link = veth_factory(mtu=MTU)
    with xs.create_tx_socket(link.a, 0, CFG) as tx, testing.AfPacketPeer(link.b) as peer:
        most = xs._sys.xsk.max_tx_chain()
        with tx.reserve(64) as b:
            with pytest.raises(ValueError, match=f"at most {most} descriptors"):
                b.write(0, bytes(most * 2048 + 1))
            with pytest.raises(ValueError, match="needs 5 frames from frame 62"):
                b.write(62, bytes(9000))
            assert b.write(0, bytes(most * 2048)) == most  # the longest chain
            assert b.write(most, testing.make_frame(payload=b"x")) == 1
            with pytest.raises(ValueError, match="inside a chain"):
                b.submit(2)
            b.cancel()  # nothing sent
        assert tx.in_flight == 0
        assert peer.recv(timeout=0.2) is None
        # after a cancel, the same slots carry no stale chain flags
        small = testing.make_frame(payload=b"after")
        with tx.reserve(2) as b:
            b.write(0, small)
            b.write(1, small)
        assert tx.flush(timeout=2.0)
        assert peer.recv_matching(lambda f: f == small, 2, timeout=2.0) == [small, small]
        assert tx.statistics().tx_invalid_descs == 0
    plain = xs.XdpConfig(frame_size=2048, xdp_mode="native")
    with xs.create_tx_socket(link.a, 0, plain) as tx, tx.reserve(4) as b:
        with pytest.raises(ValueError, match="multi_buffer=True"):
            b.write(0, bytes(3000))
        b.cancel()
