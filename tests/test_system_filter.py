"""End to end on a veth pair: an AF_XDP socket behind the filter ``udp port
5000`` takes exactly the UDP/5000 frames, while ping, a TCP connection and
UDP to another port keep working through the kernel stack.

The peer end of the veth lives in its own network namespace (a forked child
that unshares one), so its traffic crosses the veth for real: two addresses
in one namespace would talk over loopback. The child uses only the kernel
stack (a raw ICMP socket for ping, ordinary TCP and UDP sockets).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

import xdp_socket as xs
from xdp_socket import FilterError, program, testing
from xdp_socket._sys import bpf
from xdp_socket._sys import consts as C
from xdp_socket.filter import FILTER_PROG_NAME, filter_program_insns

pytestmark = pytest.mark.kernel

HOST_IP, PEER_IP, PREFIX = "10.77.0.1", "10.77.0.2", 24
TCP_PORT, UDP_CAPTURED, UDP_OTHER = 7000, 5000, 5001
N_CAPTURED, N_OTHER, N_PINGS = 20, 5, 3
TAG = b"xdp-socket-filter-e2e"

_ctx = multiprocessing.get_context("fork")


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ping(dst: str, seq: int, timeout: float = 2.0) -> bool:
    """One ICMP echo over a raw socket (the kernel stack answers it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(timeout)
        body = struct.pack("!HH", 0x1234, seq) + b"ping"
        hdr = struct.pack("!BBH", 8, 0, 0)
        ck = _icmp_checksum(hdr + body)
        s.sendto(struct.pack("!BBH", 8, 0, ck) + body, (dst, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = s.recv(2048)
            except TimeoutError:
                return False
            ihl = (data[0] & 0xF) * 4
            typ = data[ihl]
            ident, got_seq = struct.unpack("!HH", data[ihl + 4 : ihl + 8])
            if typ == 0 and ident == 0x1234 and got_seq == seq:
                return True
    return False


def _peer(conn: Connection, peer_if: str) -> None:
    """The child: its own network namespace with the peer end of the veth."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(C.CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        conn.send("ready")
        assert conn.recv() == "moved"
        from pyroute2 import IPRoute  # type: ignore[import-untyped,unused-ignore]

        with IPRoute() as ip:
            idx = ip.link_lookup(ifname=peer_if)[0]
            ip.addr("add", index=idx, address=PEER_IP, prefixlen=PREFIX)
            ip.link("set", index=idx, state="up")
            for _ in range(500):  # carrier: the host end is up already
                if ip.get_links(idx)[0].get_attr("IFLA_OPERSTATE") == "UP":
                    break
                time.sleep(0.01)
        pings = [_ping(HOST_IP, i) for i in range(N_PINGS)]
        with socket.create_connection((HOST_IP, TCP_PORT), timeout=5) as t:
            t.sendall(b"hello over tcp")
            echoed = b""
            while len(echoed) < 14:
                chunk = t.recv(64)
                if not chunk:
                    break
                echoed += chunk
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for i in range(N_CAPTURED):
                u.sendto(TAG + b" %03d" % i, (HOST_IP, UDP_CAPTURED))
            for i in range(N_OTHER):
                u.sendto(TAG + b" other %03d" % i, (HOST_IP, UDP_OTHER))
        conn.send((True, {"pings": pings, "tcp_echo": echoed}))
    except BaseException:
        conn.send((False, traceback.format_exc()))


@contextlib.contextmanager
def _filtered_rx(ifname: str, ifindex: int, expr: str, how: str) -> Iterator[Any]:
    """An RX socket on queue 0 behind the filter program: through
    ``XdpConfig(filter=...)``, or the user-map way (our own XSKMAP, the
    program from filter_program_insns, a BPF link)."""
    if how == "config":
        with xs.create_rx_socket(ifname, 0, xs.XdpConfig(filter=expr)) as rx:
            assert program.builtin_program_attached(ifindex)  # info shows it as ours
            yield rx
        return
    map_fd = bpf.map_create(C.BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "xsk_py_fe2e")
    fds = [map_fd]
    try:
        prog_fd = bpf.prog_load(C.BPF_PROG_TYPE_XDP, filter_program_insns(map_fd, expr),
                                "Dual MIT/GPL", FILTER_PROG_NAME)
        fds.append(prog_fd)
        fds.append(bpf.link_create(prog_fd, ifindex, C.BPF_XDP, C.XDP_FLAGS_DRV_MODE))
        with xs.create_rx_socket(ifname, 0, xs.XdpConfig(xskmap_fd=map_fd)) as rx:
            yield rx
    finally:
        for fd in reversed(fds):
            os.close(fd)


def _tcp_echo_server(srv: socket.socket, result: list[bytes]) -> None:
    with contextlib.suppress(OSError):
        conn, _ = srv.accept()
        with conn:
            data = conn.recv(64)
            result.append(data)
            conn.sendall(data)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["config", "user map"])
def test_filtered_socket_sees_only_udp_5000_and_the_stack_keeps_working(
        veth: testing.VethPair, how: str) -> None:
    from pyroute2 import IPRoute  # type: ignore[import-untyped,unused-ignore]

    with IPRoute() as ip:
        ip.addr("add", index=veth.a_index, address=HOST_IP, prefixlen=PREFIX)
    with contextlib.ExitStack() as stack:
        srv = stack.enter_context(socket.create_server((HOST_IP, TCP_PORT)))
        srv.settimeout(10)
        udp_captured = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        udp_captured.bind((HOST_IP, UDP_CAPTURED))
        udp_other = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        udp_other.bind((HOST_IP, UDP_OTHER))
        tcp_seen: list[bytes] = []
        server = threading.Thread(target=_tcp_echo_server, args=(srv, tcp_seen), daemon=True)
        server.start()

        rx = stack.enter_context(_filtered_rx(veth.a, veth.a_index, "udp port 5000", how))
        parent, child_end = _ctx.Pipe()
        child = _ctx.Process(target=_peer, args=(child_end, veth.b))
        child.start()
        try:
            assert parent.poll(10) and parent.recv() == "ready"
            with IPRoute() as ip:
                ip.link("set", index=veth.b_index, net_ns_pid=child.pid)
            parent.send("moved")
            captured: list[bytes] = []
            deadline = time.monotonic() + 20
            done: Any = None
            while time.monotonic() < deadline:
                frame = rx.recv(timeout=0.05)
                if frame is not None:
                    captured.append(frame)
                if done is None and parent.poll(0):
                    done = parent.recv()
                if done is not None and len(captured) >= N_CAPTURED:
                    break
            # anything else that would (wrongly) arrive
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                frame = rx.recv(timeout=0.05)
                if frame is not None:
                    captured.append(frame)
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join(5)
            parent.close()
            child_end.close()
        assert done is not None, "the peer did not finish"
        ok, info = done
        assert ok, info
        server.join(5)

        # the kernel stack kept working: ping, TCP, UDP to another port
        assert info["pings"] == [True] * N_PINGS
        assert info["tcp_echo"] == b"hello over tcp" and tcp_seen == [b"hello over tcp"]
        udp_other.settimeout(2)
        others = [udp_other.recv(2048) for _ in range(N_OTHER)]
        assert others == [TAG + b" other %03d" % i for i in range(N_OTHER)]
        # the socket saw exactly the UDP/5000 frames, and the stack none of them
        payloads = []
        for f in captured:
            assert f[12:14] == b"\x08\x00" and f[23] == 17, f.hex()
            ihl = (f[14] & 0xF) * 4
            dport = int.from_bytes(f[14 + ihl + 2 : 14 + ihl + 4], "big")
            assert dport == UDP_CAPTURED, f.hex()
            payloads.append(f[14 + ihl + 8 :])
        assert payloads == [TAG + b" %03d" % i for i in range(N_CAPTURED)]
        udp_captured.setblocking(False)
        with pytest.raises(BlockingIOError):
            udp_captured.recv(2048)


_OTHER_PROCESS = """
import sys
import xdp_socket as xs
try:
    with xs.create_rx_socket(sys.argv[1], int(sys.argv[2]), xs.XdpConfig(filter=sys.argv[3])):
        print("ok")
except xs.XdpBusyError as e:
    print(f"busy: {e}")
"""


def _in_child(ifname: str, queue: int, expr: str) -> str:
    """A fresh process (its own registry: it must adopt the attached program)."""
    r = subprocess.run([sys.executable, "-c", _OTHER_PROCESS, ifname, str(queue), expr],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_one_filter_per_interface(veth_factory: Any) -> None:
    """Sockets on one interface share one program: the same filter (on
    another queue, in this process or another one) is fine, a different one
    or none is XdpBusyError naming both; on another interface anything goes."""
    link = veth_factory(queues=3)
    other = veth_factory()
    with xs.create_rx_socket(link.a, 0, xs.XdpConfig(filter="udp port 5000")):
        with xs.create_rx_socket(link.a, 1, xs.XdpConfig(filter="udp  port  5000")):
            pass  # the same classic program, spelled differently
        with pytest.raises(xs.XdpBusyError) as ei:
            xs.create_rx_socket(link.a, 1, xs.XdpConfig(filter="tcp"))
        msg = str(ei.value)
        assert "runs udp port 5000" not in msg  # compiled programs are compared, not text
        assert "share one program" in msg and "20 classic instructions" in msg
        with pytest.raises(xs.XdpBusyError, match="asks for no filter"):
            xs.create_rx_socket(link.a, 2)
        # another process adopts the program only for the same filter
        assert _in_child(link.a, 1, "udp port 5000") == "ok"
        answer = _in_child(link.a, 2, "tcp")
        assert answer.startswith("busy:") and "another process's filter" in answer, answer
        with xs.create_rx_socket(other.a, 0, xs.XdpConfig(filter="tcp")):
            pass
    # the last socket gone, the interface is free for another filter
    deadline = time.monotonic() + 2
    while program.builtin_program_attached(link.a_index) and time.monotonic() < deadline:
        time.sleep(0.01)
    with xs.create_rx_socket(link.a, 0, xs.XdpConfig(filter="tcp")):
        pass


def test_config_checks_the_filter_at_once() -> None:
    with pytest.raises(FilterError, match="syntax error"):
        xs.XdpConfig(filter="udp port")
    with pytest.raises(ValueError, match="exclude each other"):
        xs.XdpConfig(filter="udp", xskmap_fd=3)
    with pytest.raises(TypeError):
        xs.XdpConfig(filter=42)  # type: ignore[arg-type]
    cfg = xs.XdpConfig(filter=[[6, 0, 0, 1]])  # type: ignore[list-item]
    assert cfg.filter == ((6, 0, 0, 1),) and hash(cfg)


def test_untranslatable_filter_leaves_nothing_behind(veth: testing.VethPair) -> None:
    """The translation fails before anything is attached; the queue stays free."""
    cfg = xs.XdpConfig(filter=[(0x0E, 0, 0, 0)])  # ret x: no such thing in classic BPF
    with pytest.raises(xs.UntranslatableFilterError, match="ret must return"):
        xs.create_rx_socket(veth.a, 0, cfg)
    assert not program.builtin_program_attached(veth.a_index)
    with xs.create_rx_socket(veth.a, 0, xs.XdpConfig(filter="arp")):
        assert program.builtin_program_attached(veth.a_index)
