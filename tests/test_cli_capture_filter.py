"""`xdp-socket capture ... EXPR`: only the frames that match the tcpdump
filter are captured; the others reach the kernel stack, as an independent
AF_PACKET listener on the capturing interface sees."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from xdp_socket import testing
from xdp_socket.frames import build_udp_frame
from xdp_socket.pcap import read_capture
from xdp_socket.program import builtin_program_attached

pytestmark = pytest.mark.kernel

CLI = [sys.executable, "-m", "xdp_socket"]


def test_capture_with_filter(veth: testing.VethPair, tmp_path: Path) -> None:
    out = tmp_path / "f.pcap"
    wanted = [build_udp_frame(dport=5000, payload=b"want %02d" % i) for i in range(10)]
    others = ([build_udp_frame(dport=9001, payload=b"other %02d" % i) for i in range(10)]
              + [testing.make_frame(payload=b"plain %02d" % i) for i in range(10)])
    proc = subprocess.Popen([*CLI, "capture", "-i", veth.b, "-w", str(out), "-c", "10",
                             "-d", "20", "--xdp-mode", "native", "udp", "port", "5000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not builtin_program_attached(veth.b_index):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "capture never attached its XDP program"
            time.sleep(0.02)
        time.sleep(0.3)
        with testing.AfPacketPeer(veth.b, None) as stack, testing.AfPacketPeer(veth.a) as peer:
            for w, o1, o2 in zip(wanted, others[:10], others[10:], strict=True):
                peer.send(o1)
                peer.send(w)
                peer.send(o2)
            seen = stack.recv_matching(lambda f: f in others or f in wanted, len(others), 5.0)
            extra = stack.recv_matching(lambda f: f in others or f in wanted, 1, 0.3)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "10 packets received, 10 written" in stdout.decode()
    assert [p.data for p in read_capture(out)] == wanted
    assert sorted(seen) == sorted(others) and extra == []


def test_capture_bad_filter_is_one_line_usage_error(veth: testing.VethPair,
                                                    tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "capture", "-i", veth.b, "-w", str(tmp_path / "x.pcap"),
                        "udp", "port"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip() == ("xdp-socket capture: bad filter expression: "
                                "can't parse filter expression: syntax error")
    assert not (tmp_path / "x.pcap").exists()
    assert not builtin_program_attached(veth.b_index)
