"""`xdp-socket capture`, end to end: frames from an AF_PACKET peer are captured
through AF_XDP by the CLI (a subprocess, so it shares this test's private
namespace) and read back by tcpdump and by our own reader, byte for byte.

The capturing end runs the XDP program in native mode so the queue of a
frame is the queue it was sent on (veth keeps it only then).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from xdp_socket import testing
from xdp_socket.pcap import read_capture
from xdp_socket.program import builtin_program_attached

pytestmark = pytest.mark.kernel

CLI = [sys.executable, "-m", "xdp_socket"]


def frames(n: int, tag: bytes = b"cap") -> list[bytes]:
    return [
        testing.make_frame(payload=tag + i.to_bytes(4, "big") + bytes((i + k) & 0xFF
                                                                    for k in range(i % 200)))
        for i in range(n)
    ]


def start_capture(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, "capture", *args], stdout=stdout, stderr=subprocess.PIPE)


def wait_attached(ifindex: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Wait until the capture's program is attached and its socket is (very
    likely) in the XSKMAP: the map entry follows the attach within microseconds."""
    deadline = time.monotonic() + timeout
    while not builtin_program_attached(ifindex):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "capture never attached its XDP program"
        time.sleep(0.02)
    time.sleep(0.3)


def tcpdump_packets(path: Path | str) -> list[bytes]:
    """Every packet of a capture file as tcpdump reads it (hex dump with -xx)."""
    out = subprocess.run(["tcpdump", "-r", str(path), "-nn", "-xx"], capture_output=True,
                         check=True, text=True).stdout
    packets: list[bytes] = []
    cur: list[str] = []
    for line in out.splitlines():
        m = re.match(r"\s+0x[0-9a-f]+:\s+(.*)", line)
        if m:
            # the hex columns end where tcpdump puts two spaces before ASCII (with -X);
            # with -xx there is no ASCII column.
            cur.append(m.group(1).replace(" ", ""))
        else:
            if cur:
                packets.append(bytes.fromhex("".join(cur)))
            cur = []
    if cur:
        packets.append(bytes.fromhex("".join(cur)))
    return packets


needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")


@needs_tcpdump
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_capture_count_exact_and_byte_exact(veth: testing.VethPair, tmp_path: Path,
                                           fmt: str) -> None:
    out = tmp_path / f"c.{fmt}"
    sent = frames(300)
    proc = start_capture("-i", veth.b, "-w", str(out), "-c", str(len(sent)), "-d", "20",
                         "--format", fmt, "--xdp-mode", "native")
    try:
        wait_attached(veth.b_index, proc)
        with testing.AfPacketPeer(veth.a) as peer:
            for f in sent:
                peer.send(f)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert b"Traceback" not in stderr
    summary = stdout.decode()
    assert f"{len(sent)} packets received, {len(sent)} written" in summary
    assert tcpdump_packets(out) == sent
    pkts = list(read_capture(out))
    assert [p.data for p in pkts] == sent
    stamps = [p.timestamp_ns for p in pkts]
    assert stamps == sorted(stamps)
    assert abs(stamps[-1] / 1e9 - time.time()) < 60
    assert not builtin_program_attached(veth.b_index)  # the CLI cleaned up


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_capture_signal_stops_cleanly_with_complete_file(veth: testing.VethPair,
                                                         tmp_path: Path, sig: int) -> None:
    out = tmp_path / "t.pcap"
    sent = frames(40, b"trm")
    proc = start_capture("-i", veth.b, "-w", str(out), "-d", "30", "--json", "--xdp-mode",
                         "native")
    try:
        wait_attached(veth.b_index, proc)
        with testing.AfPacketPeer(veth.a) as peer:
            for f in sent:
                peer.send(f)
        time.sleep(0.5)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, stderr  # 143 for SIGTERM, 130 for Ctrl-C
    assert b"Traceback" not in stderr
    import json

    summary = json.loads(stdout)
    assert summary["received"] == summary["written"] == len(sent)
    assert summary["stopped_by"] == signal.Signals(sig).name
    assert set(summary["kernel"]) == {"rx_dropped", "rx_ring_full",
                                      "rx_fill_ring_empty_descs", "rx_invalid_descs"}
    assert [p.data for p in read_capture(out)] == sent


def test_capture_to_stdout(veth: testing.VethPair) -> None:
    sent = frames(25, b"out")
    proc = start_capture("-i", veth.b, "-w", "-", "-c", str(len(sent)), "-d", "20",
                         "--format", "pcapng", "--xdp-mode", "native")
    try:
        wait_attached(veth.b_index, proc)
        with testing.AfPacketPeer(veth.a) as peer:
            for f in sent:
                peer.send(f)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    # the summary went to stderr, the capture alone to stdout
    assert b"25 packets received" in stderr
    assert [p.data for p in read_capture(io.BytesIO(stdout))] == sent


def test_capture_all_queues(veth_factory: Any, tmp_path: Path) -> None:
    link = veth_factory(queues=2)
    out = tmp_path / "all.pcap"
    sent = frames(50, b"all")
    proc = start_capture("-i", link.b, "--all-queues", "-w", str(out), "-c", str(len(sent)),
                         "-d", "20", "--xdp-mode", "native")
    try:
        wait_attached(link.b_index, proc)
        time.sleep(0.2)  # the second queue's socket joins the map right after the first
        with testing.AfPacketPeer(link.a) as peer:
            for f in sent:
                peer.send(f)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    # One socket per queue: frames may arrive on either, so compare as sets.
    got = [p.data for p in read_capture(out)]
    assert sorted(got) == sorted(sent)


def test_capture_snaplen_cuts_but_keeps_orig_len(veth: testing.VethPair,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "s.pcap"
    sent = [testing.make_frame(payload=b"snap" + bytes(200))] * 3
    proc = start_capture("-i", veth.b, "-w", str(out), "-c", "3", "-d", "20",
                         "--snaplen", "64", "--xdp-mode", "native")
    try:
        wait_attached(veth.b_index, proc)
        with testing.AfPacketPeer(veth.a) as peer:
            for f in sent:
                peer.send(f)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    pkts = list(read_capture(out))
    assert [p.data for p in pkts] == [f[:64] for f in sent]
    assert [p.orig_len for p in pkts] == [len(f) for f in sent]


def test_capture_queue_that_does_not_exist(veth: testing.VethPair, tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "capture", "-i", veth.b, "-q", "4", "-w",
                        str(tmp_path / "x.pcap")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "has 1 RX queue" in lines[0] and "queue 4" in lines[0]
    assert not os.path.exists(tmp_path / "x.pcap")


def run_capture(veth: testing.VethPair, *args: str, send: list[bytes] | None = None,
                timeout: float = 30) -> tuple[int, bytes, bytes]:
    proc = start_capture("-i", veth.b, "--xdp-mode", "native", *args)
    try:
        if send is not None:
            wait_attached(veth.b_index, proc)
            with testing.AfPacketPeer(veth.a) as peer:
                for f in send:
                    peer.send(f)
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout, stderr


def test_capture_refuses_symlink_output(veth: testing.VethPair, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    link = tmp_path / "out.pcap"
    link.symlink_to(target)
    code, _, stderr = run_capture(veth, "-w", str(link), "-c", "1", "-d", "5")
    assert code == 1
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, stderr
    assert "symbolic link" in lines[0] and str(link) in lines[0]
    assert target.read_bytes() == b"keep me"
    assert not builtin_program_attached(veth.b_index)


def test_capture_refuses_fifo_output(veth: testing.VethPair, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, _, stderr = run_capture(veth, "-w", str(fifo), "-c", "1", "-d", "5")
    assert code == 1
    assert "not a regular file" in stderr.decode() and b"Traceback" not in stderr


@pytest.mark.parametrize("how", ["count", "duration"])
def test_capture_json_says_what_stopped_it(veth: testing.VethPair, tmp_path: Path,
                                           how: str) -> None:
    import json

    sent = frames(5, b"why")
    stop = ["-c", "5", "-d", "20"] if how == "count" else ["-d", "1.5"]
    code, stdout, stderr = run_capture(veth, "-w", str(tmp_path / "w.pcap"), "--json", *stop,
                                       send=sent)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == how
    assert summary["written"] == 5


def _add_address(ifindex: int, address: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.addr("add", index=ifindex, address=address, prefixlen=24)


def test_capture_warns_when_the_interface_carries_addresses(veth: testing.VethPair,
                                                           tmp_path: Path) -> None:
    out = str(tmp_path / "a.pcap")
    code, _, stderr = run_capture(veth, "-w", out, "-d", "0.2", "--quiet")
    assert code == 0 and b"warning" not in stderr  # no address: nothing to say
    _add_address(veth.b_index, "192.0.2.7")
    code, _, stderr = run_capture(veth, "-w", out, "-d", "0.2", "--quiet")
    assert code == 0, stderr
    warnings = [ln for ln in stderr.decode().splitlines() if "warning" in ln]
    assert len(warnings) == 1, stderr
    assert "192.0.2.7/24" in warnings[0] and "--no-stack-warning" in warnings[0]
    code, _, stderr = run_capture(veth, "-w", out, "-d", "0.2", "--quiet",
                                  "--no-stack-warning")
    assert code == 0 and b"warning" not in stderr


def test_capture_status_shows_the_current_rate(veth: testing.VethPair, tmp_path: Path) -> None:
    """Traffic at the start, then silence: the last status lines say 0 now,
    not an average that only slowly falls."""
    code, _, stderr = run_capture(veth, "-w", str(tmp_path / "r.pcap"), "-d", "4.5",
                                  send=frames(200, b"rate"))
    assert code == 0, stderr
    status = [ln for ln in stderr.decode().splitlines() if " packets, " in ln]
    assert len(status) >= 3, stderr
    assert status[-1].startswith("200 packets, ")
    assert "now 0 pps" in status[-1], status


@needs_tcpdump
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_capture_workers_a_process_per_queue_merged_by_time(veth_factory: Any, tmp_path: Path,
                                                            fmt: str) -> None:
    """--workers on a 4-queue veth: each queue's frames (steered there by an
    AF_XDP sender on the same queue of the peer) are counted by its own
    worker, and the merged file holds every frame once, byte-exact, in
    timestamp order, as our reader and tcpdump both read it."""
    import json

    from helpers import make_test_frame, parse_test_frame

    import xdp_socket as xs

    link = veth_factory(queues=4)
    per_queue = {0: 300, 1: 200, 2: 250, 3: 150}
    total = sum(per_queue.values())
    out = tmp_path / f"w.{fmt}"
    proc = start_capture("-i", link.b, "-q", "0-3", "--workers", "-w", str(out),
                         "--format", fmt, "-c", str(total), "-d", "30", "--xdp-mode",
                         "native", "--json", "--quiet")
    try:
        wait_attached(link.b_index, proc)
        time.sleep(0.5)  # every worker's socket joins the map right after the first
        sent: dict[int, list[bytes]] = {}
        for q, n in per_queue.items():
            with xs.create_tx_socket(link.a, q) as tx:
                sent[q] = [make_test_frame(q, s, 1400) for s in range(n)]
                for f in sent[q]:
                    while not tx.send(f):
                        time.sleep(0.0005)
                assert tx.flush(5.0)
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == "count"
    assert {w["queue"]: w["packets"] for w in summary["workers"]} == per_queue
    assert summary["received"] == summary["written"] == total
    want_bytes = sum(len(f) for fs in sent.values() for f in fs)
    assert summary["bytes"] == want_bytes
    assert summary["kernel"]["rx_dropped"] == summary["kernel"]["rx_ring_full"] == 0
    pkts = list(read_capture(out))
    stamps = [p.timestamp_ns for p in pkts]
    assert stamps == sorted(stamps)
    by_queue: dict[int, list[bytes]] = {q: [] for q in per_queue}
    for p in pkts:
        parsed = parse_test_frame(p.data)
        assert parsed is not None
        by_queue[parsed[0]].append(p.data)
    # each queue's frames in the order they were sent (one worker, one ring)
    assert by_queue == sent
    assert tcpdump_packets(out) == [p.data for p in pkts]
    # nothing of the per-queue files is left next to the output
    assert sorted(os.listdir(tmp_path)) == [out.name]
