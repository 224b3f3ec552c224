"""Several sockets of one Umem on the SAME interface queue (XDP_SHARED_UMEM
with one buffer pool), against the real kernel: an XDP program steers IPv4
UDP frames by destination port to XSKMAP key 0 or 1, an independent AF_PACKET
peer sends them, and each socket must receive exactly its own frames, byte for
byte. The shared Fill and Completion rings belong to the queue group: frame
accounting is checked exactly after every round (no frame lost, none on two
rings), and closing one socket leaves the other working."""

from __future__ import annotations

import errno
import gc
import threading
import time
from typing import Any

import pytest
from helpers import open_fds

import xdp_socket as xs
from xdp_socket import _ring
from xdp_socket.frames import build_udp_frame
from xdp_socket.testing import AfPacketPeer, udp_port_steering

pytestmark = pytest.mark.kernel

FS = 2048
ROUNDS = 40
BURST = 16


def cfg(mfd: int, key: int, **kw: Any) -> xs.XdpConfig:
    # small rings and few frames: the rounds wrap every ring many times
    base: dict[str, Any] = dict(frame_size=FS, frame_count=128, rx_size=64, tx_size=64,
                                fill_size=64, comp_size=64, xdp_mode="native",
                                xskmap_fd=mfd, xskmap_key=key)
    base.update(kw)
    return xs.XdpConfig(**base)


def udp(seq: int) -> bytes:
    """A UDP frame whose destination port's parity (so its socket) and length vary."""
    return build_udp_frame(dport=5000 + (seq * 7) % 13, frame_size=60 + (seq * 37) % 1400,
                           payload=b"seq %08d" % seq)


def key_of(frame: bytes) -> int:
    return int.from_bytes(frame[36:38], "big") % 2


def group_rx_frames(group: Any) -> list[int]:
    """RX frames the group holds where user space can see them: on its Fill
    ring (not yet taken by the kernel) or in its pool."""
    fill = group.fill
    pending = (fill.cached_prod - fill.area.consumer[0]) & _ring.U32
    on_fill = _ring.gather_circular(fill.area.addrs, fill.cached_prod - pending, pending)
    return sorted([int(a) for a in on_fill] + [int(a) for a in group.rx_pool.snapshot()])


def receive_all(rx: xs.RxSocket, want: int, batch_api: bool) -> list[bytes]:
    got: list[bytes] = []
    for _ in range(200):
        if len(got) >= want:
            break
        if batch_api:
            with rx.receive(64, timeout=0.05) as b:
                got += b.payloads()
        else:
            p = rx.recv(timeout=0.05)
            if p is not None:
                got.append(p)
    return got


def test_two_sockets_on_one_queue(veth_factory: Any) -> None:
    link = veth_factory()
    gc.collect()  # earlier tests' garbage
    fds0 = open_fds()
    with xs.Umem(frame_count=512, frame_size=FS) as umem, \
            udp_port_steering(link.b, 2) as mfd, AfPacketPeer(link.a) as peer:
        socks = [xs.create_bi_socket(link.b, 0, cfg(mfd, k), umem=umem) for k in (0, 1)]
        group = socks[0][1]._core.group
        assert group is not None and socks[1][1]._core.group is group
        assert umem.free_frames == 512 - 2 * 128
        # each lease: 64 RX frames (into the group's pool), then 64 TX frames
        leases = sorted(group.leases)
        rx_frames = sorted(a for first, _ in leases
                           for a in range(first * FS, (first + 64) * FS, FS))
        tx_frames = [sorted(range((first + 64) * FS, (first + 128) * FS, FS))
                     for first, _ in group.leases]
        seq = 0
        sent_back: list[bytes] = []

        def round_trip(live: list[int]) -> None:
            nonlocal seq
            frames = [udp(seq + i) for i in range(BURST)]
            seq += BURST
            for f in frames:
                peer.send(f)
            for k in live:
                tx, rx = socks[k]
                want = [f for f in frames if key_of(f) == k]
                got = receive_all(rx, len(want), batch_api=(k == 0))
                assert got == want, f"socket {k}: not exactly its frames"
                # and it sends one back out of the shared queue
                reply = xs.testing.make_frame(payload=b"reply %d %08d" % (k, seq))
                assert tx.send(reply)
                sent_back.append(reply)
            for k in live:
                assert socks[k][0].flush(timeout=2.0)

        def check_accounting(live: list[int]) -> None:
            # every RX frame of the group is back, exactly once
            assert group_rx_frames(group) == rx_frames
            for k in live:
                tx = socks[k][0]
                assert tx.in_flight == 0
                assert sorted(int(a) for a in tx._path.pool.snapshot()) == tx_frames[k]

        for _ in range(ROUNDS):
            round_trip([0, 1])
            check_accounting([0, 1])
        got = peer.recv_matching(lambda f: f[12:14] == b"\x88\xb5", len(sent_back),
                                 timeout=5.0)
        assert sorted(got) == sorted(sent_back)  # completions came from the shared ring
        for k in (0, 1):
            st = socks[k][1].statistics()
            assert st.rx_dropped == 0 and st.rx_invalid_descs == 0 and st.rx_ring_full == 0
            assert socks[k][0].statistics().tx_invalid_descs == 0
        # forwarding could not route a group's RX frames home: refused
        peer.send(udp(1))
        with socks[1][1].receive(8, timeout=1.0) as batch:
            assert batch.payloads() == [udp(1)]
            with pytest.raises(ValueError, match="share a queue"):
                batch.forward(socks[1][0])
        check_accounting([0, 1])

        # close socket 0: the kernel takes it out of the map (its frames now
        # pass to the stack), socket 1 keeps working with the same accounting
        for half in socks[0]:
            half.close()
        assert not group.closed
        for _ in range(5):
            round_trip([1])
            check_accounting([1])
        assert umem.free_frames == 512 - 2 * 128  # the group keeps socket 0's lease
        for half in socks[1]:
            half.close()
        assert group.closed
        assert umem.free_frames == 512
        # nothing lingers: the queue can be shared again at once
        again = [xs.create_rx_socket(link.b, 0, cfg(mfd, k), umem=umem) for k in (0, 1)]
        peer.send(udp(1))  # dport 5007: key 1
        assert again[1].recv(timeout=1.0) == udp(1)
        assert again[0].recv(timeout=0.1) is None
        for s in again:
            s.close()
        socks.clear()  # (each socket's wake fd goes with it)
        again.clear()
        group = None
        del half, s, batch
    gc.collect()
    assert open_fds() == fds0


def test_errors(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    with pytest.raises(ValueError, match="set xskmap_fd too"):
        xs.XdpConfig(xskmap_key=1)
    with xs.Umem(frame_count=512, frame_size=FS) as umem, \
            udp_port_steering(link.b, 2) as mfd:
        a = xs.create_rx_socket(link.b, 0, cfg(mfd, 0), umem=umem)
        try:
            with pytest.raises(ValueError, match="xskmap_key 2 does not fit"):
                xs.create_rx_socket(link.b, 0, cfg(mfd, 2), umem=umem)
            with pytest.raises(ValueError, match="need_wakeup=False differs"):
                xs.create_rx_socket(link.b, 0, cfg(mfd, 1, need_wakeup=False), umem=umem)
            # a socket without xskmap_key on the group's queue
            with pytest.raises(xs.XdpError, match="xskmap_key") as ei:
                xs.create_tx_socket(link.b, 0, cfg(mfd, 0, xskmap_fd=None, xskmap_key=None),
                                    umem=umem)
            assert ei.value.errno == errno.EBUSY
            # a group on a queue a plain socket of the Umem holds
            plain = xs.create_tx_socket(link.b, 1, cfg(mfd, 0, xskmap_fd=None,
                                                       xskmap_key=None), umem=umem)
            with pytest.raises(xs.XdpError, match="already bound") as ei:
                xs.create_rx_socket(link.b, 1, cfg(mfd, 1), umem=umem)
            assert ei.value.errno == errno.EBUSY
            plain.close()
            # a queue held by a socket outside the Umem: the kernel's EBUSY
            with xs.create_tx_socket(link.a, 0) as other:
                with pytest.raises(xs.XdpBusyError) as bi:
                    xs.create_tx_socket(link.a, 0, cfg(mfd, 0), umem=umem)
                assert bi.value.errno == errno.EBUSY and other.queue_id == 0
            # every refused socket gave its frames back (the group keeps its
            # members' until it goes)
            assert umem.free_frames == 512 - 2 * 128
        finally:
            a.close()
        assert umem.free_frames == 512


@pytest.mark.timeout(120)
def test_members_in_two_threads(veth_factory: Any) -> None:
    """Each socket of the queue receives (and releases into the shared Fill
    ring) in its own thread while the other does the same: every frame
    arrives at its socket, and the group's RX frames are all back after."""
    link = veth_factory()
    total = 3000
    with xs.Umem(frame_count=512, frame_size=FS) as umem, \
            udp_port_steering(link.b, 2) as mfd, AfPacketPeer(link.a) as peer:
        rxs = [xs.create_rx_socket(link.b, 0, cfg(mfd, k, rx_size=256), umem=umem)
               for k in (0, 1)]
        group = rxs[0]._core.group
        frames = [udp(i) for i in range(total)]
        want = [[f for f in frames if key_of(f) == k] for k in (0, 1)]
        got: list[list[bytes]] = [[], []]
        stop = threading.Event()

        def worker(k: int) -> None:
            rx = rxs[k]
            while len(got[k]) < len(want[k]) and not stop.is_set():
                with rx.receive(32, timeout=0.01) as b:
                    got[k] += b.payloads()

        threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        try:
            burst = 16
            for i in range(0, total, burst):
                for f in frames[i : i + burst]:
                    peer.send(f)
                # (pace the source: at most two bursts outstanding, so the
                # 64-entry Fill ring never runs dry while frames sit in RX
                # rings: that would be a drop, not what this test is about)
                deadline = time.monotonic() + 2.0
                while sum(map(len, got)) < i and time.monotonic() < deadline:
                    time.sleep(0.0002)
            for t in threads:
                t.join(timeout=10.0)
        finally:
            stop.set()
            for t in threads:
                t.join()
        for k in (0, 1):
            assert got[k] == want[k], f"socket {k}: {len(got[k])} of {len(want[k])}"
            st = rxs[k].statistics()
            assert st.rx_dropped == 0 and st.rx_invalid_descs == 0
        leases = sorted(group.leases)
        assert group_rx_frames(group) == sorted(
            a for first, count in leases for a in range(first * FS, (first + count) * FS, FS))
        for r in rxs:
            r.close()
