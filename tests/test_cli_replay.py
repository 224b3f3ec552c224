"""`xdp-socket replay`, end to end: a capture file is sent through AF_XDP by
the CLI (a subprocess in this test's private namespace) and must arrive at
an AF_PACKET peer byte for byte, in order, and at the asked rate."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xdp_socket import testing
from xdp_socket.pcap import PcapngWriter, PcapWriter

pytestmark = pytest.mark.kernel

CLI = [sys.executable, "-m", "xdp_socket"]


def frames(n: int, tag: bytes = b"rpl") -> list[bytes]:
    return [testing.make_frame(payload=tag + i.to_bytes(4, "big") + bytes(i % 300))
            for i in range(n)]


def write_pcap(path: Path, pkts: list[bytes], *, ng: bool = False, linktype: int = 1) -> None:
    cls = PcapngWriter if ng else PcapWriter
    with cls(str(path), linktype=linktype) as w:
        for i, p in enumerate(pkts):
            w.write(p, 1_700_000_000_000_000_000 + i * 1_000_000)  # 1 ms apart


class Collector(threading.Thread):
    """Receives our frames on the peer, with arrival times, until quiet."""

    def __init__(self, ifname: str, expect: int, timeout: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.peer = testing.AfPacketPeer(ifname, rcvbuf=16 << 20)
        self.expect = expect
        self.timeout = timeout
        self.got: list[tuple[float, bytes]] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while len(self.got) < self.expect and time.monotonic() < deadline:
            f = self.peer.recv(0.5)
            if f is not None:
                self.got.append((time.monotonic(), f))

    def finish(self) -> list[tuple[float, bytes]]:
        self.join(self.timeout + 5)
        self.peer.close()
        return self.got


def replay(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "replay", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("ng", [False, True])
def test_replay_paced_byte_exact(veth: testing.VethPair, tmp_path: Path, ng: bool) -> None:
    pkts = frames(2000)
    path = tmp_path / "in.pcap"
    write_pcap(path, pkts, ng=ng)
    col = Collector(veth.b, len(pkts))
    col.start()
    r = replay(str(path), "-i", veth.a, "--pps", "2000", "--json")
    got = col.finish()
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    summary = json.loads(r.stdout)
    assert summary["sent"] == len(pkts) and summary["flushed"] is True
    assert [f for _, f in got] == pkts
    span = got[-1][0] - got[0][0]
    expected = (len(pkts) - 1) / 2000
    assert abs(span - expected) <= 0.1 * expected, (span, expected)


def test_replay_mbps_and_loop(veth: testing.VethPair, tmp_path: Path) -> None:
    pkts = frames(200)
    path = tmp_path / "in.pcap"
    write_pcap(path, pkts)
    total_bits = sum(len(p) for p in pkts) * 8 * 2
    col = Collector(veth.b, 2 * len(pkts))
    col.start()
    r = replay(str(path), "-i", veth.a, "--mbps", "2", "--loop", "2", "--json")
    got = col.finish()
    assert r.returncode == 0, r.stderr
    assert [f for _, f in got] == pkts + pkts
    span = got[-1][0] - got[0][0]
    expected = total_bits / 2e6
    assert 0.85 * expected <= span <= 1.15 * expected, (span, expected)


def test_replay_capture_timing_and_topspeed(veth: testing.VethPair, tmp_path: Path) -> None:
    pkts = frames(300)
    path = tmp_path / "in.pcap"
    write_pcap(path, pkts)  # 1 ms apart: 0.299 s with the capture's timing
    col = Collector(veth.b, len(pkts))
    col.start()
    r = replay(str(path), "-i", veth.a)
    got = col.finish()
    assert r.returncode == 0, r.stderr
    assert f"{len(pkts)} packets" in r.stdout
    assert [f for _, f in got] == pkts
    span = got[-1][0] - got[0][0]
    assert 0.25 <= span <= 0.35, span

    col = Collector(veth.b, len(pkts))
    col.start()
    r = replay(str(path), "-i", veth.a, "--topspeed")
    got = col.finish()
    assert r.returncode == 0, r.stderr
    assert [f for _, f in got] == pkts


def test_replay_skips_frames_longer_than_a_umem_frame(veth: testing.VethPair,
                                                      tmp_path: Path) -> None:
    # (an MTU of 1500 fits a 2048-byte frame: no multi-buffer socket, so a
    # longer packet in the file cannot be sent and is skipped)
    pkts = frames(3)
    long = testing.make_frame(payload=b"rpl" + bytes(2100))
    path = tmp_path / "in.pcap"
    write_pcap(path, [pkts[0], long, pkts[1], pkts[2]])
    col = Collector(veth.b, 3, timeout=5)
    col.start()
    r = replay(str(path), "-i", veth.a, "--frame-size", "2048", "--topspeed", "--json")
    got = col.finish()
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["sent"] == 3 and summary["skipped_too_long"] == 1
    assert [f for _, f in got] == pkts


def test_replay_sends_frames_longer_than_a_umem_frame_as_chains(veth_factory: object,
                                                                 tmp_path: Path) -> None:
    """An MTU above the UMEM frame turns multi-buffer on: the long packet goes
    out as a descriptor chain and arrives whole, in order."""
    link = veth_factory(mtu=3000)  # type: ignore[operator]
    pkts = frames(3)
    long = testing.make_frame(payload=b"rpl" + bytes(range(256)) * 8 + bytes(100))
    want = [pkts[0], long, pkts[1], pkts[2]]
    path = tmp_path / "in.pcap"
    write_pcap(path, want)
    col = Collector(link.b, 4, timeout=5)
    col.start()
    r = replay(str(path), "-i", link.a, "--frame-size", "2048", "--topspeed", "--json")
    got = col.finish()
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["sent"] == 4 and summary["skipped_too_long"] == 0
    assert [f for _, f in got] == want


def test_replay_refuses_non_ethernet(veth: testing.VethPair, tmp_path: Path) -> None:
    path = tmp_path / "raw.pcap"
    write_pcap(path, [b"\x45" + bytes(40)], linktype=101)  # LINKTYPE_RAW (IP)
    r = replay(str(path), "-i", veth.a)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not Ethernet" in lines[0], r.stderr


def test_replay_refuses_a_pcapng_packet_of_a_non_ethernet_interface(
        veth: testing.VethPair, tmp_path: Path) -> None:
    """pcapng: each packet's own interface is checked, in a batch that mixes
    interfaces too."""
    from test_pcap import _epb, _idb, _shb

    le = "<"
    eth = testing.make_frame(payload=b"eth")
    raw = _shb(le) + _idb(le, 1, 0) + _idb(le, 101, 0)  # Ethernet, then RAW (IP)
    raw += b"".join(_epb(le, 0, i, eth) for i in range(3)) + _epb(le, 1, 9, b"\x45" + bytes(40))
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(raw)
    r = replay(str(path), "-i", veth.a, "--topspeed", "--json")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "packet on capture interface 1 has link type 101" in lines[0], \
        r.stderr


def _good_pcap(tmp_path: Path) -> bytes:
    path = tmp_path / "good.pcap"
    write_pcap(path, frames(5))
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "magic", "huge", "empty", "pcapng-huge"])
def test_replay_malformed_file_is_one_line(veth: testing.VethPair, tmp_path: Path,
                                           damage: str) -> None:
    good = _good_pcap(tmp_path)
    if damage == "truncated":
        data = good[: len(good) - 7]
    elif damage == "magic":
        data = b"NOPE" + good[4:]
    elif damage == "huge":
        data = bytearray(good)
        struct.pack_into("<I", data, 24 + 8, 0xFFFFFFF0)  # first record's incl_len
        data = bytes(data)
    elif damage == "empty":
        data = b""
    else:
        p = tmp_path / "ng.pcapng"
        write_pcap(p, frames(2), ng=True)
        data = bytearray(p.read_bytes())
        struct.pack_into("<I", data, 4, 0x7FFFFFF0)  # section header block length
        data = bytes(data)
    path = tmp_path / "bad.pcap"
    path.write_bytes(data)
    col = Collector(veth.b, 10, timeout=2)
    col.start()
    r = replay(str(path), "-i", veth.a, "--topspeed")
    col.finish()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("xdp-socket replay: malformed capture file:")


def test_replay_from_stdin(veth: testing.VethPair, tmp_path: Path) -> None:
    pkts = frames(50)
    path = tmp_path / "in.pcapng"
    write_pcap(path, pkts, ng=True)
    col = Collector(veth.b, len(pkts))
    col.start()
    r = subprocess.run([*CLI, "replay", "-", "-i", veth.a, "--pps", "1000"],
                       input=path.read_bytes(), capture_output=True, timeout=60)
    got = col.finish()
    assert r.returncode == 0, r.stderr
    assert [f for _, f in got] == pkts
    r2 = subprocess.run([*CLI, "replay", "-", "-i", veth.a, "--loop", "2"], input=b"",
                        capture_output=True, timeout=60)
    assert r2.returncode == 2 and b"--loop" in r2.stderr


def test_replay_raises_the_tx_budget_and_falls_back_on_an_older_kernel(
        veth: testing.VethPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """replay raises the copy-mode TX budget so one kick sends a batch; a
    kernel without XDP_MAX_TX_SKB_BUDGET (before 6.15) refuses the option
    with ENOPROTOOPT, and replay then runs with the default budget."""
    import errno

    from xdp_socket._sys import xsk
    from xdp_socket.cli import replay as replay_mod
    from xdp_socket.cli.main import main

    budgets: list[int] = []
    real = xsk.set_tx_budget

    def old_kernel(sock: object, budget: int, ifname: str, queue_id: int) -> None:
        budgets.append(budget)
        raise xsk._err(f"set TX budget {budget}", ifname, queue_id,
                       OSError(errno.ENOPROTOOPT, "Protocol not available"))

    pkts = frames(600)
    path = tmp_path / "in.pcap"
    write_pcap(path, pkts)
    for patch, want in ((real, [replay_mod.BATCH]), (old_kernel, [replay_mod.BATCH])):
        budgets.clear()
        with monkeypatch.context() as m:
            if patch is old_kernel:
                m.setattr(xsk, "set_tx_budget", old_kernel)
            else:
                def spy(sock: object, budget: int, ifname: str, queue_id: int) -> None:
                    budgets.append(budget)
                    real(sock, budget, ifname, queue_id)  # type: ignore[arg-type]
                m.setattr(xsk, "set_tx_budget", spy)
            col = Collector(veth.b, len(pkts))
            col.start()
            rc = main(["replay", str(path), "-i", veth.a, "--topspeed", "--quiet", "--json"])
            got = col.finish()
        out = json.loads(capsys.readouterr().out)
        assert rc == 0 and out["sent"] == len(pkts) and out["flushed"] is True
        assert [f for _, f in got] == pkts
        assert budgets == want
