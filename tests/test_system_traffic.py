"""System tests: real frames through the kernel over veth pairs.

All of it runs in the private network namespace conftest.py entered. Every
loop is bounded by a frame count and a wall-clock deadline. Receivers count
only their own frames (TEST_ETHERTYPE plus a tag and sequence number).

Why the receiving side uses xdp_mode="native": on veth, a frame sent on queue q
arrives on RX queue q of the peer only when the peer runs a native-mode XDP
program; in skb mode the queue is not preserved.

Why MTU 3500 and frames of at most 3514 bytes: veth drops frames longer than
MTU + 18, and it refuses to attach a native XDP program (without multi-buffer
support) when the peer's MTU is above 3506 bytes (a page minus the XDP headroom,
the skb_shared_info and the Ethernet header; measured: ERANGE at 3507). 3514
also fits the copy-mode RX room of a 4096-byte frame (4096 - 256 - headroom).
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import threading
import time
from typing import Any

import pytest
from helpers import make_test_frame, parse_test_frame, retry_busy

import xdp_socket as xs
from xdp_socket import testing

pytestmark = pytest.mark.kernel

N_FRAMES = 100_000
MTU = 3500
MAX_LEN = MTU + 14
DEADLINE_S = 60.0


def rx_cfg(**kw: Any) -> Any:
    return xs.XdpConfig(xdp_mode="native", **kw)


def assert_clean_stats(sock: Any) -> None:
    stats = sock.statistics()._asdict()
    stats.pop("tx_ring_empty_descs")  # grows on every kick that finds the TX ring empty
    assert stats == dict.fromkeys(stats, 0), stats


class Receiver:
    """Drains an RX half, checking frames of stream `tag` arrive complete and in order."""

    def __init__(self, rx: Any, tag: int, max_len: int, batch: int) -> None:
        self.rx = rx
        self.tag = tag
        self.max_len = max_len
        self.batch = batch
        self.got = 0
        self.foreign = 0

    def drain(self) -> None:
        while True:
            n = self.rx.seek_n(self.batch)
            if n == 0:
                return
            for i in range(n):
                view = self.rx.peek_at(i)
                key = parse_test_frame(view)
                if key is None or key[0] != self.tag:
                    self.foreign += 1
                    continue
                assert key[1] == self.got, f"expected frame {self.got}, got {key}"
                expected = make_test_frame(self.tag, self.got, self.max_len)
                assert bytes(view) == expected, f"frame {self.got} differs"
                self.got += 1
            self.rx.commit_n(n)


class Sender:
    """Fills a TX half with frames of stream `tag`, `batch` descriptors at a time."""

    def __init__(self, tx: Any, tag: int, count: int, max_len: int, batch: int) -> None:
        self.tx = tx
        self.tag = tag
        self.count = count
        self.max_len = max_len
        self.batch = batch
        self.sent = 0
        self.max_avail = 0  # the most seek_n() ever offered

    def step(self) -> None:
        want = min(self.batch, self.count - self.sent)
        avail = self.tx.seek_n(want) if want else 0
        assert 0 <= avail <= want, f"seek_n({want}) returned {avail}"
        self.max_avail = max(self.max_avail, avail)
        n = avail
        for i in range(n):
            frame = make_test_frame(self.tag, self.sent + i, self.max_len)
            self.tx.peek_at(i, len(frame))[:] = frame
        if n:
            self.tx.commit_and_kick(n)
            self.sent += n
        else:
            # Copy-mode TX sends at most 32 frames per kick: keep kicking so
            # what is already in the TX ring drains.
            self.tx.kick()


@pytest.mark.parametrize("batch", [1, 7, 64, 3000])
def test_tx_to_rx_100k_frames_identical_and_in_order(veth_factory: Any, batch: int) -> None:
    link = veth_factory(mtu=MTU)
    with (
        xs.create_tx_socket(link.a, 0, xs.XdpConfig()) as tx,
        xs.create_rx_socket(link.b, 0, rx_cfg()) as rx,
    ):
        sender = Sender(tx, 1, N_FRAMES, MAX_LEN, batch)
        receiver = Receiver(rx, 1, MAX_LEN, batch)
        deadline = time.monotonic() + DEADLINE_S
        while receiver.got < N_FRAMES:
            assert time.monotonic() < deadline, (
                f"timeout: sent {sender.sent}, received {receiver.got}, "
                f"tx {tx.statistics()}, rx {rx.statistics()}"
            )
            sender.step()
            receiver.drain()
        assert sender.sent == N_FRAMES
        assert receiver.got == N_FRAMES
        # A batch bigger than the TX ring (2048) is served in partial steps.
        assert sender.max_avail == min(batch, 2048)
        # Nothing extra trails the stream.
        time.sleep(0.05)
        receiver.drain()
        assert receiver.got == N_FRAMES
        assert_clean_stats(tx)
        assert_clean_stats(rx)


def test_bidirectional_both_ways_at_once(veth_factory: Any) -> None:
    link = veth_factory(mtu=MTU)
    count = 20_000
    tx_a, rx_a = xs.create_bi_socket(link.a, 0, rx_cfg())
    tx_b, rx_b = xs.create_bi_socket(link.b, 0, rx_cfg())
    assert tx_a.fileno() == rx_a.fileno(), "both halves share one socket"
    errors: list[BaseException] = []
    # Each end's receiver; a sender keeps at most WINDOW frames ahead of the
    # other end's receiver, so a thread that loses the CPU (2 cores, the GIL)
    # never lets the other overrun its RX ring: without flow control frames
    # would be dropped (rx_ring_full), which is the kernel working as designed.
    window = 1024
    # keyed by the stream each receives: A receives B's stream, B receives A's
    receivers = {0xB: Receiver(rx_a, 0xB, MAX_LEN, 64), 0xA: Receiver(rx_b, 0xA, MAX_LEN, 64)}

    def run(tx: Any, rx: Any, out_tag: int, in_tag: int) -> None:
        try:
            sender = Sender(tx, out_tag, count, MAX_LEN, 64)
            receiver = receivers[in_tag]
            peer = receivers[out_tag]
            deadline = time.monotonic() + DEADLINE_S
            while receiver.got < count or sender.sent < count:
                if time.monotonic() > deadline:
                    raise AssertionError(f"timeout: sent {sender.sent} got {receiver.got}")
                if sender.sent - peer.got < window:
                    sender.step()
                else:
                    tx.kick()
                receiver.drain()
            # keep the TX ring draining until the peer has everything
            for _ in range(100):
                tx.kick()
        except BaseException as e:
            errors.append(e)

    threads = [
        threading.Thread(target=run, args=(tx_a, rx_a, 0xA, 0xB)),
        threading.Thread(target=run, args=(tx_b, rx_b, 0xB, 0xA)),
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE_S + 10)
        assert not any(t.is_alive() for t in threads)
        if errors:
            raise errors[0]
        for sock in (tx_a, rx_a, tx_b, rx_b):
            assert_clean_stats(sock)
    finally:
        for sock in (tx_a, rx_a, tx_b, rx_b):
            sock.close()


def test_create_socket_directions(veth: Any) -> None:
    tx, rx = xs.create_socket(veth.a, 0, xs.Direction.TX, xs.XdpConfig())
    try:
        assert rx is None and tx is not None
        assert (tx.ifname, tx.ifindex, tx.queue_id) == (veth.a, veth.a_index, 0)
        assert tx.frame_size == 4096 and tx.zero_copy is False
    finally:
        tx.close()
    tx, rx = xs.create_socket(veth.b_index, 0, xs.Direction.RX, xs.XdpConfig())
    try:
        assert tx is None and rx is not None
        assert (rx.ifname, rx.ifindex, rx.queue_id) == (veth.b, veth.b_index, 0)
    finally:
        rx.close()
    tx, rx = retry_busy(xs.create_socket, veth.b, 0, xs.Direction.BOTH, xs.XdpConfig())
    try:
        assert tx is not None and rx is not None
        assert tx.fileno() == rx.fileno()
    finally:
        tx.close()
        rx.close()


def test_rx_only_socket_receives_from_af_packet(veth: Any) -> None:
    count = 1000
    with (
        xs.create_rx_socket(veth.b, 0) as rx,
        testing.AfPacketPeer(veth.a) as peer,
    ):
        sent = [make_test_frame(2, i, 1514) for i in range(count)]
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        for i, frame in enumerate(sent):
            peer.send(frame)
            if i % 32 == 31:
                _collect(rx, got, 2)
        while len(got) < count and time.monotonic() < deadline:
            if rx.poll_wait(0.1):
                _collect(rx, got, 2)
        assert got == sent
        assert_clean_stats(rx)


def _collect(rx: Any, out: list[bytes], tag: int) -> None:
    while True:
        frame = rx.recv(0)
        if frame is None:
            return
        key = parse_test_frame(frame)
        if key is not None and key[0] == tag:
            out.append(frame)


def test_tx_only_socket_reaches_af_packet(veth: Any) -> None:
    count = 1000
    with (
        testing.AfPacketPeer(veth.b) as peer,
        xs.create_tx_socket(veth.a, 0) as tx,
    ):
        sent = [make_test_frame(3, i, 1514) for i in range(count)]
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        for frame in sent:
            while not tx.send(frame):
                assert time.monotonic() < deadline, "TX never freed a frame"
                tx.kick()
                _af_collect(peer, got, 3, 0)
            _af_collect(peer, got, 3, 0)
        while len(got) < count and time.monotonic() < deadline:
            tx.kick()
            _af_collect(peer, got, 3, 0.01)
        assert got == sent
        assert_clean_stats(tx)


def _af_collect(peer: testing.AfPacketPeer, out: list[bytes], tag: int, timeout: float) -> None:
    while True:
        frame = peer.recv(timeout)
        if frame is None:
            return
        timeout = 0
        key = parse_test_frame(frame)
        if key is not None and key[0] == tag:
            out.append(frame)


def _read_pcap(path: str) -> list[bytes]:
    """Frames of a classic pcap file (what `tcpdump -w` writes)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    off = 24
    frames = []
    while off + 16 <= len(data):
        _sec, _frac, caplen, _origlen = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        frames.append(data[off : off + caplen])
        off += caplen
    return frames


def test_interop_af_packet_and_tcpdump(veth: Any, tmp_path: Any) -> None:
    count = 200
    tcpdump = shutil.which("tcpdump")
    capture = None
    pcap = str(tmp_path / "tx.pcap")
    if tcpdump is not None:
        # The child inherits this thread's (private) network namespace.
        capture = subprocess.Popen(
            [
                tcpdump,
                "-i",
                veth.b,
                "-U",
                "-n",
                "-s",
                "0",
                "-w",
                pcap,
                "-c",
                str(count),
                "ether",
                "proto",
                "0x88b5",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # tcpdump prints "listening on" once its capture is open.
        assert capture.stderr is not None
        os.set_blocking(capture.stderr.fileno(), True)
        line = capture.stderr.readline()
        assert b"listening" in line, line
    try:
        sent = [make_test_frame(4, i, 60 + i * 7) for i in range(count)]
        with (
            testing.AfPacketPeer(veth.b) as peer,
            xs.create_tx_socket(veth.a, 0) as tx,
        ):
            for frame in sent:
                tx.send_blocking(frame, timeout=5)
            got: list[bytes] = []
            deadline = time.monotonic() + 5
            while len(got) < count and time.monotonic() < deadline:
                _af_collect(peer, got, 4, 0.05)
            assert got == sent
        if capture is not None:
            try:
                capture.wait(10)
            except subprocess.TimeoutExpired:
                capture.send_signal(signal.SIGINT)
                capture.wait(5)
            captured = [f for f in _read_pcap(pcap) if parse_test_frame(f)]
            assert captured == sent
    finally:
        if capture is not None:
            if capture.poll() is None:
                capture.kill()
                capture.wait()
            assert capture.stderr is not None
            capture.stderr.close()
    if tcpdump is None:
        pytest.skip("tcpdump not installed: AF_PACKET part passed, capture part skipped")


def test_header_and_data_sent_as_one_frame(veth: Any) -> None:
    with (
        testing.AfPacketPeer(veth.b) as peer,
        xs.create_tx_socket(veth.a, 0) as tx,
    ):
        frame = make_test_frame(5, 1, 200)
        tx.send_blocking(frame[20:], header=frame[:20], timeout=5)
        assert peer.recv_matching(lambda f: f == frame, 1, 2.0) == [frame]


def test_four_queues_each_frame_on_its_queue(veth_factory: Any) -> None:
    queues = 4
    per_queue = 2000
    link = veth_factory(queues=queues, mtu=MTU)
    txs = [xs.create_tx_socket(link.a, q) for q in range(queues)]
    rxs = []
    try:
        for q in range(queues):
            rxs.append(xs.create_rx_socket(link.b, q, rx_cfg()))
        senders = [Sender(txs[q], 0x10 + q, per_queue, 1514, 64) for q in range(queues)]
        receivers = [Receiver(rxs[q], 0x10 + q, 1514, 64) for q in range(queues)]
        deadline = time.monotonic() + DEADLINE_S
        while any(r.got < per_queue for r in receivers):
            assert time.monotonic() < deadline, [r.got for r in receivers]
            for s in senders:
                s.step()
            for r in receivers:
                r.drain()
        # A frame of another queue's stream on socket q counts as foreign.
        time.sleep(0.05)
        for r in receivers:
            r.drain()
        assert [r.got for r in receivers] == [per_queue] * queues
        assert [r.foreign for r in receivers] == [0] * queues
    finally:
        for sock in txs + rxs:
            sock.close()


def test_poll_wait_honours_timeout(veth: Any) -> None:
    with (
        xs.create_rx_socket(veth.b, 0) as rx,
        testing.AfPacketPeer(veth.a) as peer,
    ):
        t0 = time.monotonic()
        assert rx.poll_wait(0.3) is False
        elapsed = time.monotonic() - t0
        assert 0.25 <= elapsed < 1.0, elapsed
        peer.send(make_test_frame(6, 0, 100))
        t0 = time.monotonic()
        assert rx.poll_wait(5.0) is True
        assert time.monotonic() - t0 < 1.0
        assert rx.recv(0) == make_test_frame(6, 0, 100)
        # recv with a timeout on an empty socket returns None after the timeout
        t0 = time.monotonic()
        assert rx.recv(0.2) is None
        assert 0.15 <= time.monotonic() - t0 < 1.0
