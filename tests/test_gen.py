"""The live-frames traffic generator (xdp_socket.gen) and `xdp-socket gen`.

Frame-builder tests are pure Python and check the checksums with a separate
computation (and scapy's, when installed). Kernel tests run in the private
network namespace conftest.py entered: veth A is the generator's egress, its
peer B has the counting drop program or an AF_XDP socket. Every run is
bounded by a count or a duration of at most a few seconds.
"""

from __future__ import annotations

import errno
import gc
import ipaddress
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
import weakref
from typing import Any

import pytest
from helpers import attach_xdp_netlink, detach_xdp_netlink, load_foreign_xdp_prog, set_link

import xdp_socket as xs
from xdp_socket import gen as G
from xdp_socket import iface
from xdp_socket.errors import InterfaceDownError, XdpProgramConflictError

# --- frame builder (no kernel) ---------------------------------------------------------


def ones_complement_sum(data: bytes) -> int:
    """Independent of gen._csum16: sum the 16-bit words with struct, fold at the end."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total >> 16) + (total & 0xFFFF)
    return total


@pytest.mark.parametrize("size", [60, 61, 64, 65, 128, 1514, 3520, 9014])
def test_udp_frame_layout_and_checksums(size: int) -> None:
    f = G.build_udp_frame(
        dst_mac="52:54:00:12:34:56",
        src_mac=b"\x02\x00\x00\x00\x00\x09",
        src_ip="192.0.2.1",
        dst_ip="198.51.100.7",
        sport=1234,
        dport=53,
        frame_size=size,
    )
    assert len(f) == size
    assert f[:6] == bytes.fromhex("525400123456")
    assert f[6:12] == bytes.fromhex("020000000009")
    assert f[12:14] == b"\x08\x00"
    ip, udp = f[14:34], f[34:]
    ver_ihl, _tos, tot_len, _id, frag, ttl, proto, _ck = struct.unpack("!BBHHHBBH", ip[:12])
    assert (ver_ihl, tot_len, frag, ttl, proto) == (0x45, size - 14, 0x4000, 64, 17)
    assert ip[12:16] == ipaddress.IPv4Address("192.0.2.1").packed
    assert ip[16:20] == ipaddress.IPv4Address("198.51.100.7").packed
    # A correct header checksum makes the header sum to 0xffff.
    assert ones_complement_sum(ip) == 0xFFFF
    sport, dport, ulen, uck = struct.unpack("!HHHH", udp[:8])
    assert (sport, dport, ulen) == (1234, 53, size - 34)
    assert uck != 0
    pseudo = ip[12:20] + b"\x00\x11" + ulen.to_bytes(2, "big")
    assert ones_complement_sum(pseudo + udp) == 0xFFFF
    payload = udp[8:]
    tag = b"xdp-socket-gen"[: len(payload)]
    assert payload[: len(tag)] == tag
    assert payload[len(tag) :] == bytes(i & 0xFF for i in range(len(tag), len(payload)))


def test_udp_frame_checksums_match_scapy() -> None:
    scapy_all = pytest.importorskip("scapy.all")
    for size in (60, 64, 333, 1514):
        f = G.build_udp_frame(frame_size=size, payload=b"hello")
        pkt = scapy_all.Ether(f)
        ours_ip, ours_udp = pkt[scapy_all.IP].chksum, pkt[scapy_all.UDP].chksum
        del pkt[scapy_all.IP].chksum
        del pkt[scapy_all.UDP].chksum
        again = scapy_all.Ether(bytes(pkt))
        assert (again[scapy_all.IP].chksum, again[scapy_all.UDP].chksum) == (ours_ip, ours_udp)
        assert bytes(again) == f
        assert bytes(pkt[scapy_all.UDP].payload)[:5] == b"hello"


def test_udp_frame_bad_args() -> None:
    bad: list[dict[str, Any]] = [
        {"frame_size": 59},
        {"frame_size": 14 + 65536},
        {"dst_mac": "zz:00:00:00:00:00"},
        {"src_mac": b"\x00" * 5},
        {"src_ip": "10.0.0"},
        {"dst_ip": "::1"},
        {"sport": 65536},
        {"dport": -1},
        {"ttl": 256},
        {"payload": b"x" * 100, "frame_size": 64},
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            G.build_udp_frame(**kw)
    # a wrong type is a TypeError (the shared check_int), a bad value a ValueError
    for kw in ({"frame_size": True}, {"frame_size": 64.0}, {"sport": "53"}, {"ttl": None},
               {"payload": "text"}):
        with pytest.raises(TypeError):
            G.build_udp_frame(**kw)


# --- kernel ----------------------------------------------------------------------------

kernel = pytest.mark.kernel


@kernel
def test_count_is_exact_at_the_drop_program(veth: Any) -> None:
    with G.TrafficGenerator(veth.a) as gen:
        assert any(veth.b in w for w in gen.warnings)  # no program on the peer yet
    with G.xdp_drop(veth.b) as sink, G.TrafficGenerator(veth.a) as gen:
        assert gen.warnings == []
        assert gen.frame_size == 64
        for n in (1, 5000, 1_500_000):
            sink.reset()
            r = gen.run(count=n)
            assert r.packets == n
            assert sink.count() == n
            assert r.seconds > 0 and r.pps == pytest.approx(n / r.seconds)
    assert iface.xdp_state(veth.b_index).prog_ids == ()  # detached with the context


@kernel
def test_warns_when_the_device_takes_no_redirects() -> None:
    with G.TrafficGenerator("lo") as gen:  # loopback has no ndo_xdp_xmit
        assert gen.warnings and "redirect" in gen.warnings[0]


@kernel
def test_duration_bounded_and_counted(veth: Any) -> None:
    seen: list[G.GenResult] = []
    with G.xdp_drop(veth.b) as sink, G.TrafficGenerator(veth.a, frame_size=128) as gen:
        t = time.monotonic()
        r = gen.run(duration=1.5, on_progress=seen.append)
        wall = time.monotonic() - t
    assert r.packets == sink.count() > 0
    assert 1.4 < r.seconds < 1.9 and wall < 2.5
    assert len(seen) == 1 and 0 < seen[0].packets <= r.packets


@kernel
def test_frames_reach_an_af_xdp_socket_byte_exact(veth: Any) -> None:
    n = 1500  # well under the 2048 Fill/RX slots: no draining needed during the run
    frame = G.build_udp_frame(dst_mac="02:00:00:00:00:0b", frame_size=300, payload=b"gen-test")
    with xs.create_rx_socket(veth.b, 0, xs.XdpConfig(xdp_mode="native")) as rx:
        with G.TrafficGenerator(veth.a, frame) as gen:
            assert gen.warnings == []  # the socket's program is the redirect target
            assert gen.run(count=n).packets == n
        got = other = 0
        deadline = time.monotonic() + 5.0
        while got < n and time.monotonic() < deadline:
            k = rx.seek_n(64)
            if not k:
                rx.poll_wait(0.05)
                continue
            for i in range(k):
                if bytes(rx.peek_at(i)) == frame:
                    got += 1
                else:
                    other += 1
            rx.commit_n(k)
        assert (got, other) == (n, 0)
        stats = rx.statistics()
        assert stats.rx_dropped == 0 and stats.rx_ring_full == 0


@kernel
def test_rate_limit(veth: Any) -> None:
    rate, duration = 20_000, 1.0
    samples: list[tuple[float, int]] = []
    with G.xdp_drop(veth.b) as sink, G.TrafficGenerator(veth.a) as gen:
        stop = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not stop.wait(0.05):
                samples.append((time.monotonic() - t0, sink.count()))

        th = threading.Thread(target=sample)
        t = time.monotonic()
        th.start()
        try:
            r = gen.run(duration=duration, rate=rate)
        finally:
            stop.set()
            th.join()
        wall = time.monotonic() - t
        assert r.packets == sink.count()
    assert r.packets == pytest.approx(rate * duration, rel=0.1)
    assert r.pps == pytest.approx(rate, rel=0.1)
    assert wall == pytest.approx(duration, rel=0.1)
    # Paced, not one burst: halfway through, about half has arrived.
    mid = [c for s, c in samples if 0.45 <= s <= 0.6]
    assert mid and all(0.3 * rate <= c <= 0.75 * rate for c in mid), samples


@kernel
def test_generator_argument_errors(veth: Any) -> None:
    with pytest.raises(ValueError):
        G.TrafficGenerator(veth.a, frame_size=veth.mtu + 15)
    with G.xdp_drop(veth.b) as sink, G.TrafficGenerator(veth.a, frame_size=veth.mtu + 14) as gen:
        assert gen.run(count=10).packets == 10 == sink.count()  # MTU + 14 is the limit
    for kw in (
        {"frame_size": 59},
        {"cpu": -1},
        {"cpu": 4096},
        {"batch_size": 0},
        {"batch_size": 257},
        {"dst_mac": "nope"},
        {"src_ip": "1.2.3.4.5"},
    ):
        with pytest.raises(ValueError):
            G.TrafficGenerator(veth.a, **kw)
    with pytest.raises(ValueError):
        G.TrafficGenerator(veth.a, b"\x00" * 10)  # shorter than an Ethernet header
    with pytest.raises(ValueError):
        G.TrafficGenerator(veth.a, b"\x00" * 60, sport=1)  # frame and header fields
    with pytest.raises(OSError):
        G.TrafficGenerator("nosuchif0")
    gen = G.TrafficGenerator(veth.a, b"\xff" * 14)
    assert len(gen.frame) == 60  # padded like a NIC pads
    for kw in (
        {},
        {"count": 0},
        {"duration": -1},
        {"duration": float("nan")},
        {"count": 5, "rate": 0},
    ):
        with pytest.raises(ValueError):
            gen.run(**kw)
    with pytest.raises(TypeError):
        gen.run(count=1.5)
    gen.close()
    gen.close()
    with pytest.raises(ValueError):
        gen.run(count=1)
    set_link(veth.a_index, up=False)
    with pytest.raises(InterfaceDownError):
        G.TrafficGenerator(veth.a)


@kernel
def test_xdp_drop_never_replaces_a_program(veth: Any) -> None:
    with G.xdp_drop(veth.b) as first:
        with pytest.raises(XdpProgramConflictError):
            G.xdp_drop(veth.b)
        with pytest.raises(XdpProgramConflictError, match=f"program id {first.prog_id}"):
            G.xdp_drop(veth.b, mode="skb")  # the other mode: EEXIST from the kernel
        assert not first.closed
    with G.xdp_drop(veth.b, mode="skb") as first, pytest.raises(XdpProgramConflictError):
        G.xdp_drop(veth.b)
    fd = load_foreign_xdp_prog()
    try:
        attach_xdp_netlink(veth.b_index, fd)
        with pytest.raises(XdpProgramConflictError):
            G.xdp_drop(veth.b)
        detach_xdp_netlink(veth.b_index)
    finally:
        os.close(fd)
    with (
        xs.create_rx_socket(veth.b, 0, xs.XdpConfig(xdp_mode="native")),
        pytest.raises(XdpProgramConflictError),
    ):
        G.xdp_drop(veth.b)
    with pytest.raises(ValueError):
        G.xdp_drop(veth.b, mode="hw")
    d = G.xdp_drop(veth.b_index, mode="skb")
    assert iface.xdp_state(veth.b_index).mode == "skb"
    d.close()
    d.close()
    assert d.closed and d.count() == 0  # the final count stays readable
    with pytest.raises(ValueError):
        d.reset()
    assert iface.xdp_state(veth.b_index).prog_ids == ()


# --- forgotten without close(): one owner per fd, freed by refcounting ----------------


def _open_fds() -> set[int]:
    # listdir's own directory fd is listed too, and closed by the time we look.
    return {int(n) for n in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{n}")}


def _prog_exists(prog_id: int) -> bool:
    from xdp_socket._sys import bpf

    try:
        os.close(bpf.prog_get_fd_by_id(prog_id))
    except OSError as e:
        assert e.errno == errno.ENOENT, e
        return False
    return True


def _prog_ids(ifindex: int) -> tuple[int, ...]:
    return iface.xdp_state(ifindex).prog_ids


@kernel
@pytest.mark.parametrize("gc_enabled", [True, False], ids=["gc", "refcount-only"])
def test_forgotten_xdp_drop_detaches_and_closes(veth: Any, gc_enabled: bool) -> None:
    assert _prog_ids(veth.b_index) == ()
    gc.collect()  # earlier tests' garbage must not close fds during the test
    before = _open_fds()
    if not gc_enabled:
        gc.disable()  # no cycle may hold it: refcounting alone must free it
    try:
        d = G.xdp_drop(veth.b)
        prog_id = d.prog_id
        assert _prog_ids(veth.b_index) == (prog_id,)
        assert len(_open_fds() - before) == 3  # map, program, link
        ref = weakref.ref(d)
        with pytest.warns(ResourceWarning, match=f"unclosed XdpDrop on {veth.b}"):
            del d
            if gc_enabled:
                gc.collect()
        assert ref() is None
        assert _open_fds() == before
        assert _prog_ids(veth.b_index) == ()  # the link went with its fd
        assert not _prog_exists(prog_id)
    finally:
        gc.enable()
    with G.xdp_drop(veth.b) as again:  # the interface is free for the next one
        assert not again.closed


@kernel
@pytest.mark.parametrize("gc_enabled", [True, False], ids=["gc", "refcount-only"])
def test_forgotten_generator_unloads_after_a_run(veth: Any, gc_enabled: bool) -> None:
    from xdp_socket._sys import bpf

    with G.xdp_drop(veth.b) as sink:
        gc.collect()  # earlier tests' garbage must not close fds during the test
        before = _open_fds()
        if not gc_enabled:
            gc.disable()
        try:
            gen = G.TrafficGenerator(veth.a)
            assert gen.run(count=1000).packets == 1000 == sink.count()
            (prog_fd,) = _open_fds() - before  # the generator holds one fd: its program
            prog_id = bpf.prog_get_info(prog_fd).id
            ref = weakref.ref(gen)
            with pytest.warns(ResourceWarning, match=f"unclosed TrafficGenerator on {veth.a}"):
                del gen
                if gc_enabled:
                    gc.collect()
            assert ref() is None
            assert _open_fds() == before
            assert not _prog_exists(prog_id)
        finally:
            gc.enable()


@kernel
def test_closed_objects_do_not_warn(veth: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with G.xdp_drop(veth.b), G.TrafficGenerator(veth.a) as gen:
            gen.run(count=10)
        d = G.xdp_drop(veth.b)
        d.close()
        del d, gen
        gc.collect()


@kernel
def test_forked_child_closing_its_copy_leaves_the_drop_attached(veth: Any) -> None:
    with G.xdp_drop(veth.b) as sink, G.TrafficGenerator(veth.a) as gen:
        pid = os.fork()
        if pid == 0:  # the child closes its inherited copies, as a forgotten one would
            code = 1
            try:
                sink.close()
                gen.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _prog_ids(veth.b_index) == (sink.prog_id,)
        assert gen.run(count=100).packets == 100 == sink.count()


# --- the command line ------------------------------------------------------------------

CLI = [sys.executable, "-m", "xdp_socket.cli.main", "gen"]


def cli(*argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=timeout)


@kernel
def test_cli_json_summary(veth: Any) -> None:
    with G.xdp_drop(veth.b) as sink:
        r = cli("-i", veth.a, "-c", "200000", "-s", "100", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["mode"] == "gen"
        assert out["packets"] == 200_000 == sink.count()
        assert out["seconds"] > 0 and out["pps"] == pytest.approx(200_000 / out["seconds"], 1e-3)
        sink.reset()
        r = cli("-i", str(veth.a_index), "-d", "1.2", "--cpu", "0")
        assert r.returncode == 0, r.stderr
        assert "frames of 64 bytes" in r.stdout
        assert "pps" in r.stderr  # the per-second status line
        assert sink.count() > 0


@kernel
def test_cli_usage_errors_are_one_line(veth: Any) -> None:
    for argv in (
        ["-i", veth.a, "-s", "59"],
        ["-i", veth.a, "-s", "4000"],
        ["-i", veth.a, "-s", str(veth.mtu + 15)],
        ["-i", veth.a, "--dst-mac", "xx"],
        ["-i", veth.a, "--src-ip", "300.1.1.1"],
        ["-i", veth.a, "--dport", "70000"],
        ["-i", veth.a, "--cpu", "999"],
        ["-i", veth.a, "--rate", "-5"],
        ["-i", veth.a, "-c", "5", "-d", "1"],
        ["-i", "nosuchif0", "-c", "1"],
    ):
        r = cli(*argv)
        assert r.returncode == 2, (argv, r.stderr)
        assert "Traceback" not in r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("xdp-socket gen"), (argv, r.stderr)


@kernel
def test_cli_ctrl_c_stops_with_an_exact_count(veth: Any) -> None:
    with G.xdp_drop(veth.b) as sink:
        p = subprocess.Popen(
            [*CLI, "-i", veth.a, "-d", "20", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A shell may start us with SIGINT ignored; the CLI must see it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            # SIGINT once frames arrive at the sink, plus a moment: a slow
            # start on a loaded machine must not make it land in the
            # interpreter's start-up instead
            deadline = time.monotonic() + 20
            while sink.count() == 0 and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.05)
            time.sleep(0.3)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 130, err
        summary = json.loads(out)
        assert summary["interrupted"] is True
        assert summary["packets"] == sink.count() > 0
        assert summary["seconds"] < 5


@kernel
def test_cli_says_when_nothing_can_have_arrived(veth: Any) -> None:
    # loopback takes no XDP redirects at all: no point waiting
    r = cli("-i", "lo", "-c", "1000")
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""  # no "sent N frames" claim
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("xdp-socket gen: handed 1,000 frames of 64 bytes out of lo")
    assert "none can have arrived" in last and "does not accept XDP redirects" in last
    # a veth whose peer never gets a program: waits --wait seconds, then the same
    t = time.monotonic()
    r = cli("-i", veth.a, "-c", "1000", "--wait", "0.5", "--json")
    assert time.monotonic() - t >= 0.5
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["packets"] == 1000 and out["dropped"] == "all"
    assert any(veth.b in w for w in out["warnings"])


def _start_gen(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@kernel
def test_cli_waits_for_a_receiver_started_later(veth: Any) -> None:
    """The `gen & bench` recipe: the receiver attaches after gen started; gen
    waits for it, warns about nothing, and every frame arrives."""
    p = _start_gen("-i", veth.a, "-c", "300000", "--wait", "20", "--json")
    try:
        time.sleep(1.5)  # gen is up and waiting
        assert p.poll() is None
        with G.xdp_drop(veth.b) as sink:
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, err
            assert "warning" not in err
            summary = json.loads(out)
            assert summary["dropped"] is None and summary["warnings"] == []
            assert summary["packets"] == sink.count() == 300_000
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@kernel
def test_cli_says_some_were_dropped_when_the_receiver_came_late(veth: Any) -> None:
    p = _start_gen("-i", veth.a, "-d", "2.5", "--rate", "20000", "--wait", "0")
    try:
        # wait for gen's start line (it comes after the start warnings), so a
        # slow start on a loaded machine cannot let the sink come first
        assert p.stderr is not None
        head: list[str] = []
        while len(head) < 10 and "frames out of" not in "".join(head):
            head.append(p.stderr.readline())
        assert "frames out of" in head[-1], head
        time.sleep(0.8)  # most of a second of frames into the void
        with G.xdp_drop(veth.b) as sink:
            out, err = p.communicate(timeout=30)
            err = "".join(head) + err
            got = sink.count()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "warning:" in err  # it did warn at the start: that was true
    assert out.startswith("handed ") and "some were dropped" in out
    sent = int(out.split()[1].replace(",", ""))
    assert 0 < got < sent
