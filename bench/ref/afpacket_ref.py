#!/usr/bin/env python3
"""afpacket_ref: the plain-Python reference for xdp-socket's benchmarks.

The same three jobs as ``xsk_ref`` (the C libxdp reference), done the way a Python
programmer would without AF_XDP: one ``AF_PACKET``/``SOCK_RAW`` socket, one syscall
per packet.

    rxdrop  recv_into() in a loop, count
    txonly  send() one fixed 64-byte UDP/IPv4 frame in a loop
    l2fwd   recv_into(), swap the MAC addresses, send() back out of the same interface

The command line is xsk_ref's, so a harness can run both with the same arguments;
options that only mean something for AF_XDP (-q, --xdp-mode, --no-need-wakeup,
--tx-budget) are accepted and recorded but change nothing. One JSON line on stdout
at the end, per-second rates on stderr. Stdlib only, on purpose.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from types import FrameType

ETH_P_ALL = 0x0003  # linux/if_ether.h
SOL_PACKET = 263  # linux/socket.h
PACKET_STATISTICS = 6  # linux/if_packet.h: struct tpacket_stats {u32 packets, drops}
PACKET_IGNORE_OUTGOING = 23  # linux/if_packet.h (Linux 4.20+)
SO_RCVBUFFORCE = 33  # asm-generic/socket.h: SO_RCVBUF above rmem_max, needs CAP_NET_ADMIN
SO_RCVTIMEO = 20  # asm-generic/socket.h

# Kernel socket receive buffer: a 64-byte frame costs ~1 KiB of skb truesize, so the
# default (~208 KiB) holds only ~200 frames. 4 MiB holds a few thousand, the same order
# as the C reference's 2048-entry RX ring.
RCVBUF_BYTES = 4 << 20
# A blocking recv wakes up this often when no traffic comes, to check the clock and
# the stop flag without putting a poll() in the per-packet path.
IDLE_TIMEOUT_S = 0.1
PAYLOAD_TAG = b"XSKREF01"  # same tag as the C references (ref_common.h)
MIN_FRAME = 14 + 20 + 8
MAX_FRAME = 4096
MODES = ("rxdrop", "txonly", "l2fwd")


class Stop:
    """Set by SIGINT/SIGTERM; the loops look at it between packets."""

    flag = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    Stop.flag = True


def perf_ctl(cmd: str) -> None:
    """bench/run.py --method: start/stop perf's syscall count with the window (the
    same protocol as xsk_ref.c's perf_ctl and `xdp-socket bench`)."""
    ctl, ack = os.environ.get("XDP_BENCH_PERF_CTL"), os.environ.get("XDP_BENCH_PERF_ACK")
    if not ctl:
        return
    try:
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, cmd.encode() + b"\n")
    except OSError:
        return
    finally:
        os.close(fd)
    if not ack:
        return
    try:
        fd = os.open(ack, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        while p.poll(1000) and b"\n" not in os.read(fd, 16):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def build_udp_frame(length: int, src_mac: bytes, dst_mac: bytes) -> bytes:
    """The same frame as ref_common.h's build_udp_frame: 10.0.0.1:9000 -> 10.0.0.2:9001."""
    ip_len, udp_len = length - 14, length - 34
    ip = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            ip_len,
            0,
            0x4000,
            64,
            17,
            0,
            bytes([10, 0, 0, 1]),
            bytes([10, 0, 0, 2]),
        )
    )
    struct.pack_into("!H", ip, 10, ip_checksum(bytes(ip)))
    room = udp_len - 8
    payload = bytearray(i & 0xFF for i in range(room))
    tag = PAYLOAD_TAG[:room]
    payload[: len(tag)] = tag
    udp = struct.pack("!HHHH", 9000, 9001, udp_len, 0)  # checksum 0: "none" in IPv4
    return dst_mac + src_mac + b"\x08\x00" + bytes(ip) + udp + bytes(payload)


def parse_mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise argparse.ArgumentTypeError("need aa:bb:cc:dd:ee:ff")
    try:
        octets = bytes(int(p, 16) for p in parts)
    except ValueError as e:
        raise argparse.ArgumentTypeError("need aa:bb:cc:dd:ee:ff") from e
    return octets


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError("need a positive number") from e
    if not 0 < v <= 1e6:
        raise argparse.ArgumentTypeError("need a positive number")
    return v


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"need an integer {lo}..{hi}") from e
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"need an integer {lo}..{hi}")
        return v

    return check


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="afpacket_ref",
        description="Plain-Python AF_PACKET reference (rxdrop, txonly, l2fwd).",
    )
    p.add_argument("mode", choices=MODES)
    p.add_argument("-i", dest="iface", required=True, help="interface")
    p.add_argument(
        "-q",
        dest="queue",
        type=_int_range(0, 63),
        default=0,
        help="accepted for xsk_ref compatibility; AF_PACKET sees all queues",
    )
    p.add_argument(
        "-d",
        dest="duration",
        type=_positive_float,
        default=5.0,
        help="measurement window in seconds; rx modes start it at the first packet",
    )
    p.add_argument(
        "-w",
        dest="wait",
        type=_positive_float,
        default=10.0,
        help="rx modes: give up if no packet arrives within this many seconds",
    )
    p.add_argument(
        "-b",
        dest="batch",
        type=_int_range(1, 2048),
        default=64,
        help="packets between clock checks",
    )
    p.add_argument(
        "-s",
        dest="frame_size",
        type=_int_range(MIN_FRAME, MAX_FRAME),
        default=64,
        help="txonly frame length in bytes, without FCS",
    )
    p.add_argument(
        "--xdp-mode", choices=("native", "skb"), default="native", help="ignored (AF_XDP only)"
    )
    p.add_argument("--no-need-wakeup", action="store_true", help="ignored (AF_XDP only)")
    p.add_argument("--count", type=_int_range(1, 1 << 62), default=0, help="stop after N packets")
    p.add_argument("--tx-budget", type=_int_range(1, 2048), default=0, help="ignored (AF_XDP only)")
    p.add_argument(
        "--dst-mac",
        type=parse_mac,
        default=parse_mac("02:00:00:00:00:02"),
        help="txonly destination MAC",
    )
    p.add_argument("--quiet", action="store_true", help="no per-second lines on stderr")
    return p.parse_args(argv)


class Meter:
    """Counts, the measurement window and the per-second lines on stderr."""

    def __init__(self, mode: str, duration: float, count: int, quiet: bool) -> None:
        self.mode = mode
        self.duration = duration
        self.count = count
        self.quiet = quiet
        self.rx = 0
        self.tx = 0
        self.t0 = 0.0
        self.t_end = 0.0
        self.started = False
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self._last_t = 0.0
        self._last_rx = 0
        self._last_tx = 0

    def start(self, now: float) -> None:
        self.started = True
        self.t0 = self._last_t = now
        perf_ctl("enable")
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)  # the window's CPU time

    def primary(self) -> int:
        return self.rx if self.mode == "rxdrop" else self.tx

    def done(self, now: float) -> bool:
        """Report once a second; True when the window or --count is used up."""
        if now - self._last_t >= 1.0:
            dt = now - self._last_t
            if not self.quiet:
                print(
                    f"afpacket_ref {self.mode}: {now - self.t0:6.2f}s "
                    f"rx {(self.rx - self._last_rx) / dt:10.0f} pps  "
                    f"tx {(self.tx - self._last_tx) / dt:10.0f} pps",
                    file=sys.stderr,
                )
            self._last_t, self._last_rx, self._last_tx = now, self.rx, self.tx
        if self.count and self.primary() >= self.count:
            return True
        return now - self.t0 >= self.duration


def open_socket(iface: str, rx: bool) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.bind((iface, ETH_P_ALL))
        if rx:
            # An ETH_P_ALL socket also sees the frames its own host sends on the
            # interface; l2fwd would forward its own output again. Ignore them.
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
            except PermissionError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            # Kernel-side timeout: the socket stays "blocking" for Python (no poll()
            # per recv), yet recv returns EAGAIN when idle so the loop can stop.
            sec = int(IDLE_TIMEOUT_S)
            usec = int((IDLE_TIMEOUT_S - sec) * 1e6)
            s.setsockopt(socket.SOL_SOCKET, SO_RCVTIMEO, struct.pack("@ll", sec, usec))
    except BaseException:
        s.close()
        raise
    return s


def wait_first(s: socket.socket, buf: bytearray, wait: float) -> int:
    """Block until the first packet; its length, or -1 on timeout/stop."""
    deadline = time.monotonic() + wait
    while not Stop.flag:
        try:
            return s.recv_into(buf)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                print(f"afpacket_ref: no packet within {wait:.1f} s, giving up", file=sys.stderr)
                return -1
    return -1


def run_rxdrop(s: socket.socket, m: Meter, batch: int, wait: float) -> None:
    buf = bytearray(MAX_FRAME)
    recv_into = s.recv_into
    clock = time.monotonic
    if wait_first(s, buf, wait) < 0:
        return
    m.start(clock())
    m.rx = 1
    rx = 1
    while not Stop.flag:
        try:
            for _ in range(batch):
                recv_into(buf)
                rx += 1
        except BlockingIOError:
            pass
        m.rx = rx
        if m.done(clock()):
            break
    m.rx = rx
    m.t_end = clock()


def run_l2fwd(s: socket.socket, m: Meter, batch: int, wait: float) -> None:
    buf = bytearray(MAX_FRAME)
    view = memoryview(buf)
    recv_into, send = s.recv_into, s.send
    clock = time.monotonic
    n = wait_first(s, buf, wait)
    if n < 0:
        return
    m.start(clock())
    rx = tx = 0
    while True:
        try:
            for _ in range(batch):
                if n > 0:
                    rx += 1
                    if n >= 12:
                        # bytearray slices are copies, so this in-place swap is safe.
                        buf[0:6], buf[6:12] = buf[6:12], buf[0:6]
                    try:
                        send(view[:n])
                        tx += 1
                    except OSError as e:
                        # ENOBUFS: no room in the device queue for this frame: it is
                        # lost, like a full TX ring would lose it. Anything else is real.
                        if e.errno != errno.ENOBUFS:
                            raise
                n = recv_into(buf)
        except BlockingIOError:  # idle for IDLE_TIMEOUT_S
            n = 0
        m.rx, m.tx = rx, tx
        if Stop.flag or m.done(clock()):
            break
    m.t_end = clock()


def run_txonly(s: socket.socket, m: Meter, batch: int, frame: bytes) -> None:
    send = s.send
    clock = time.monotonic
    limit = m.count or (1 << 62)
    tx = 0
    m.start(clock())
    while not Stop.flag:
        k = min(batch, limit - tx)
        try:
            for _ in range(k):
                send(frame)
                tx += 1
        except OSError as e:
            if e.errno != errno.ENOBUFS:  # qdisc/device full: just try again
                raise
        m.tx = tx
        if m.done(clock()):
            break
    m.tx = tx
    m.t_end = clock()


def packet_stats(s: socket.socket) -> dict[str, int] | None:
    try:
        raw = s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    except OSError:
        return None
    packets, drops = struct.unpack("@II", raw)
    return {"packets": packets, "drops": drops}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        s = open_socket(a.iface, rx=a.mode != "txonly")
    except OSError as e:
        print(f"afpacket_ref: AF_PACKET socket on {a.iface!r}: {e}", file=sys.stderr)
        return 1
    m = Meter(a.mode, a.duration, a.count, a.quiet)
    error: str | None = None
    try:
        if a.mode == "rxdrop":
            run_rxdrop(s, m, a.batch, a.wait)
        elif a.mode == "l2fwd":
            run_l2fwd(s, m, a.batch, a.wait)
        else:
            try:
                src = _iface_mac(a.iface)
            except OSError:
                src = bytes(6)
            run_txonly(s, m, a.batch, build_udp_frame(a.frame_size, src, a.dst_mac))
    except OSError as e:
        error = f"{a.mode}: {e}"
        print(f"afpacket_ref: {error}", file=sys.stderr)
        m.t_end = time.monotonic()
    seconds = m.t_end - m.t0 if m.started else 0.0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    if m.started:
        perf_ctl("disable")
    packets = m.primary()
    out: dict[str, object] = {
        "impl": "py-afpacket",
        "mode": a.mode,
        "pps": round(packets / seconds, 1) if seconds > 0 else 0.0,
        "packets": packets,
        "seconds": round(seconds, 6),
        "rx_packets": m.rx,
        "tx_packets": m.tx,
        "iface": a.iface,
        "queue": a.queue,
        "batch": a.batch,
        "frame_size": a.frame_size,
        "xdp_mode": a.xdp_mode,
        "need_wakeup": not a.no_need_wakeup,
        "tx_budget": a.tx_budget or None,
    }
    if m.started:
        # One syscall per packet by construction (recv_into / send), so no counters.
        out["cpu"] = {"user_s": round(ru1.ru_utime - m.ru0.ru_utime, 6),
                      "sys_s": round(ru1.ru_stime - m.ru0.ru_stime, 6)}
    if a.mode != "txonly":
        out["packet_stats"] = packet_stats(s)
    if error:
        out["error"] = error
    s.close()
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 1 if error else 0


def _iface_mac(iface: str) -> bytes:
    """The interface's MAC, from a packet socket's bound address (no sysfs needed)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
        s.bind((iface, 0))
        addr = s.getsockname()
    mac = addr[4]
    return mac[:6] if isinstance(mac, bytes) and len(mac) >= 6 else bytes(6)


if __name__ == "__main__":
    sys.exit(main())
