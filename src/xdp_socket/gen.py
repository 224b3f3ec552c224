"""A fast packet source without AF_XDP: the kernel's XDP "live frames" test run.

How it works: ``BPF_PROG_TEST_RUN`` with ``BPF_F_TEST_XDP_LIVE_FRAMES`` (Linux
5.18+) runs an XDP program ``repeat`` times inside one syscall, each time on a
fresh copy of one frame taken from a page pool, and *performs* the program's
verdict. Our program is ``return bpf_redirect(IFINDEX, 0)``, so every copy is
handed to the egress device's ``ndo_xdp_xmit``: no socket, no rings, no
per-packet Python.

Rules this module keeps (they come from measurements, see KERNEL_NOTES.md):

* The egress device must accept XDP redirects. A veth drops redirected frames
  *silently* unless its peer runs an XDP program (any program: :func:`xdp_drop`
  below, or an AF_XDP socket's redirect program); :attr:`TrafficGenerator.warnings`
  says so when it can tell.
* Every call with ``repeat > 1`` spends ~24 ms asleep in the kernel (measured:
  wall time with no CPU time) however few frames it sends, while ``repeat ==
  1`` is cheap. So calls are long (:data:`CHUNK_SECONDS`, sized from the rate
  the previous call reached), and two worker threads on the same CPU take
  turns: one sends while the other sleeps (measured +10-15% on one core).
* Counts are exact: a chunk's frames are counted when its call returns. The
  kernel stops a test run early on a pending signal (EINTR, count unknown), so
  worker threads block all signals and Ctrl-C is handled by the calling thread
  *between* chunks: at most one chunk (~0.2 s) runs on after it.
* A run is always bounded: ``count`` or ``duration`` (or both) is required.
* Rate limiting is by ticks of :data:`RATE_TICK` seconds: each tick sends
  ``rate * RATE_TICK`` frames as one burst at full speed, then waits. The
  average is exact over whole ticks; within a tick the frames are not spaced.

The kernel picks the veth RX queue of the peer from the CPU the frame is sent
on (``smp_processor_id() % queues``), so ``cpu=`` also picks the queue there.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import iface as _iface
from ._sys import bpf
from ._sys import bpf_asm as asm
from ._sys import consts as C
from .errors import InterfaceDownError, XdpError, XdpProgramConflictError, xdp_error

__all__ = [
    "CHUNK_SECONDS",
    "MAX_LIVE_FRAME",
    "RATE_TICK",
    "GenResult",
    "GenerationInterrupted",
    "TrafficGenerator",
    "XdpDrop",
    "build_udp_frame",
    "xdp_drop",
]

GEN_PROG_NAME = "xsk_py_gen"
DROP_PROG_NAME = "xsk_py_drop"
DROP_MAP_NAME = "xsk_py_dropcnt"
_LICENSE = "Dual MIT/GPL"

#: Longest frame a live-frames test run accepts: the frame shares one 4 KiB page
#: with XDP_PACKET_HEADROOM (256) in front and the aligned skb_shared_info
#: (320 bytes on x86-64) behind; longer input is refused with EINVAL
#: (net/bpf/test_run.c disallows live mode for frames that need fragments).
MAX_LIVE_FRAME = 4096 - C.XDP_PACKET_HEADROOM - 320

#: Wall time one test-run call aims for when running flat out. Longer calls
#: amortise the ~24 ms per-call sleep better; shorter ones stop sooner on
#: Ctrl-C and give smoother progress figures.
CHUNK_SECONDS = 0.2

#: Rate-limit granularity: ``rate * RATE_TICK`` frames leave as one burst per tick.
RATE_TICK = 0.1

_FIRST_CHUNK = 65536  # first call of a run, before any rate is known (~15 ms at 4 Mpps)
_MAX_CHUNK = 1 << 30  # test_run's repeat is a u32; stay far from the edge
_MIN_TAIL = 0.02  # don't start a flat-out call with less time than this left
_MAX_BATCH = 256  # net/bpf/test_run.c TEST_XDP_MAX_BATCH
_WORKERS = 2
_PROGRESS_EVERY = 1.0
_POLL = 0.02  # how often the calling thread looks at the workers and for Ctrl-C
_READY_POLL = 0.05  # wait_ready: a netlink query each time, so not too often

_ETH_ZLEN = 60  # shortest Ethernet frame without FCS (if_ether.h ETH_ZLEN)
_ETH_HLEN = 14
_IPV4_HLEN = 20
_UDP_HLEN = 8
_ETH_P_IP = 0x0800
_IPPROTO_UDP = 17
_IP_DF = 0x4000
_PAYLOAD_TAG = b"xdp-socket-gen"

DEFAULT_DST_MAC = "02:00:00:00:00:02"
DEFAULT_SRC_MAC = "02:00:00:00:00:01"
DEFAULT_SRC_IP = "10.0.0.1"
DEFAULT_DST_IP = "10.0.0.2"
DEFAULT_SPORT = 9000
DEFAULT_DPORT = 9001


# --- frames -----------------------------------------------------------------------


def _mac(addr: bytes | str, what: str) -> bytes:
    if isinstance(addr, str):
        parts = addr.replace("-", ":").split(":")
        try:
            if len(parts) != 6 or any(not 1 <= len(p) <= 2 for p in parts):
                raise ValueError
            return bytes(int(p, 16) for p in parts)
        except ValueError:
            raise ValueError(f"{what}: not a MAC address: {addr!r}") from None
    if isinstance(addr, (bytes, bytearray)) and len(addr) == 6:
        return bytes(addr)
    raise ValueError(f"{what}: a MAC address is 6 bytes or 'aa:bb:cc:dd:ee:ff', got {addr!r}")


def _ipv4(addr: str | bytes | int | ipaddress.IPv4Address, what: str) -> bytes:
    if isinstance(addr, bool):
        raise ValueError(f"{what}: not an IPv4 address: {addr!r}")
    try:
        return ipaddress.IPv4Address(addr).packed
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ValueError(f"{what}: not an IPv4 address: {addr!r}") from None


def _port(v: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF:
        raise ValueError(f"{what} must be a port number 0..65535, got {v!r}")
    return v


def _csum16(data: bytes) -> int:
    """RFC 1071 Internet checksum: one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_udp_frame(
    *,
    dst_mac: bytes | str = DEFAULT_DST_MAC,
    src_mac: bytes | str = DEFAULT_SRC_MAC,
    src_ip: str | bytes | int | ipaddress.IPv4Address = DEFAULT_SRC_IP,
    dst_ip: str | bytes | int | ipaddress.IPv4Address = DEFAULT_DST_IP,
    sport: int = DEFAULT_SPORT,
    dport: int = DEFAULT_DPORT,
    frame_size: int = 64,
    payload: bytes | None = None,
    ttl: int = 64,
) -> bytes:
    """An Ethernet/IPv4/UDP frame of exactly ``frame_size`` bytes (without FCS).

    The IPv4 header has no options, DF set, and a correct header checksum; the
    UDP checksum is filled in too. The UDP payload starts with ``payload``
    (default: the tag ``b"xdp-socket-gen"``, cut to fit) and is padded with the
    bytes 0, 1, 2, ... (mod 256) at their offset in the payload.
    ``frame_size`` is 60 (the Ethernet minimum) to 65549 (largest IPv4 packet
    plus the Ethernet header); what an interface can carry is smaller, see
    :class:`TrafficGenerator`.
    """
    if isinstance(frame_size, bool) or not isinstance(frame_size, int):
        raise ValueError(f"frame_size must be an int, got {frame_size!r}")
    if not _ETH_ZLEN <= frame_size <= _ETH_HLEN + 0xFFFF:
        raise ValueError(
            f"frame_size must be {_ETH_ZLEN}..{_ETH_HLEN + 0xFFFF} bytes (without FCS), "
            f"got {frame_size}"
        )
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 255:
        raise ValueError(f"ttl must be 0..255, got {ttl!r}")
    dst, src = _mac(dst_mac, "dst_mac"), _mac(src_mac, "src_mac")
    sip, dip = _ipv4(src_ip, "src_ip"), _ipv4(dst_ip, "dst_ip")
    sp, dp = _port(sport, "sport"), _port(dport, "dport")
    ip_len = frame_size - _ETH_HLEN
    udp_len = ip_len - _IPV4_HLEN
    room = udp_len - _UDP_HLEN
    if payload is None:
        head = _PAYLOAD_TAG[:room]
    else:
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise ValueError("payload must be bytes")
        head = bytes(payload)
        if len(head) > room:
            raise ValueError(
                f"payload of {len(head)} bytes does not fit a {frame_size}-byte frame "
                f"(room for {room})"
            )
    body = head + bytes(i & 0xFF for i in range(len(head), room))

    udp_nock = sp.to_bytes(2, "big") + dp.to_bytes(2, "big") + udp_len.to_bytes(2, "big")
    pseudo = sip + dip + bytes([0, _IPPROTO_UDP]) + udp_len.to_bytes(2, "big")
    ucsum = _csum16(pseudo + udp_nock + b"\0\0" + body)
    # RFC 768: a computed 0 is sent as all ones (0 means "no checksum").
    udp = udp_nock + (ucsum or 0xFFFF).to_bytes(2, "big") + body

    ip_nock = (
        bytes([0x45, 0])  # version 4, IHL 5 words; DSCP/ECN 0
        + ip_len.to_bytes(2, "big")
        + b"\0\0"  # identification (DF set: never fragmented)
        + _IP_DF.to_bytes(2, "big")
        + bytes([ttl, _IPPROTO_UDP])
    )
    ip = ip_nock + _csum16(ip_nock + b"\0\0" + sip + dip).to_bytes(2, "big") + sip + dip
    frame = dst + src + _ETH_P_IP.to_bytes(2, "big") + ip + udp
    assert len(frame) == frame_size
    return frame


# --- interface facts --------------------------------------------------------------

_NETDEV_XDP_ACT_NDO_XMIT = 1 << 2  # include/uapi/linux/netdev.h: can be a redirect target


def _redirect_warnings(ifname: str, ifindex: int, facts: _iface.LinkFacts) -> list[str]:
    out: list[str] = []
    if facts.operstate not in ("UP", "UNKNOWN"):
        out.append(f"{ifname} is {facts.operstate.lower()} (no carrier): frames will be dropped")
    # Since Linux 6.3 the device says whether it takes redirected frames right
    # now (veth turns ndo-xmit on only while its peer runs an XDP program).
    try:
        features = _iface.netdev_features(ifindex)
    except OSError:
        features = None
    feat = None if features is None else features.get(ifindex)
    accepts: bool | None = None
    if feat is not None and feat.xdp_features is not None:
        accepts = bool(feat.xdp_features & _NETDEV_XDP_ACT_NDO_XMIT)
    if facts.peer_ifindex is not None and accepts is not True:
        try:
            peer_name, _ = _iface.resolve_interface(facts.peer_ifindex)
            if accepts is None:  # older kernel: judge by the peer's program
                accepts = bool(_iface.xdp_state(facts.peer_ifindex).prog_ids)
        except OSError:
            return out
        if not accepts:
            out.append(
                f"{ifname} is a veth whose peer {peer_name} runs no XDP program: veth drops "
                f"redirected frames silently; attach one to {peer_name} (an AF_XDP socket, "
                "or xdp_socket.gen.xdp_drop)"
            )
        return out
    if accepts is False:
        out.append(
            f"{ifname} does not accept XDP redirects (no ndo-xmit in its XDP features): "
            "the kernel will drop the frames"
        )
    return out


# --- the generator ------------------------------------------------------------------


@dataclass(frozen=True)
class GenResult:
    """What a run sent: ``packets`` frames in ``seconds`` (wall time), ``pps`` on average."""

    packets: int
    seconds: float
    pps: float


class GenerationInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :meth:`TrafficGenerator.run`; ``result`` holds what was sent
    (exact: the chunk running at that moment was completed and counted)."""

    def __init__(self, result: GenResult) -> None:
        super().__init__("generation interrupted")
        self.result = result


def generator_program_insns(ifindex: int) -> bytes:
    """``return bpf_redirect(ifindex, 0)``: every frame leaves through ``ifindex``."""
    return b"".join(
        [
            asm.mov64_imm(asm.R1, ifindex),
            asm.mov64_imm(asm.R2, 0),  # flags: 0 = transmit (BPF_F_INGRESS would receive)
            asm.call(C.BPF_FUNC_redirect),
            asm.exit_(),  # XDP_REDIRECT, or XDP_ABORTED for a bad ifindex
        ]
    )


class _Plan:
    """The shared schedule of one run: workers claim chunks and report them done."""

    def __init__(self, count: int | None, duration: float | None, rate: float | None) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()  # set to stop: wakes workers waiting for their tick
        self.t0 = time.monotonic()
        self.count = count
        self.deadline = None if duration is None else self.t0 + duration
        self.rate = rate
        self.tick_chunk = 0 if rate is None else max(1, min(round(rate * RATE_TICK), _MAX_CHUNK))
        self.claimed = 0
        self.done = 0
        self.last_end = self.t0
        self.call_rate: float | None = None  # frames/s one call reached last time
        self.stopped = False
        self.error: BaseException | None = None
        # Workers still running. The calling thread polls this with
        # time.sleep() rather than waiting on Thread.join() or an Event: a
        # KeyboardInterrupt that lands inside those (pure-Python lock code)
        # can leave a lock released or held wrongly (seen here: a join()
        # marking a running thread stopped, so a chunk in flight went
        # uncounted; an Event.wait() leaving a lock held, a deadlock).
        self.running = _WORKERS

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
        self.wake.set()

    def claim(self) -> tuple[int, float] | None:
        """``(frames, start_time)`` for the next call, or None when the run is over."""
        with self.lock:
            if self.stopped:
                return None
            now = time.monotonic()
            left = _MAX_CHUNK if self.count is None else self.count - self.claimed
            if left <= 0:
                return None
            if self.rate is not None:
                start = self.t0 + self.claimed / self.rate
                n = min(self.tick_chunk, left)
                if self.deadline is not None:
                    if start >= self.deadline:
                        return None
                    # the last tick may be partial: no more than fits before the deadline
                    n = min(n, max(1, math.ceil((self.deadline - start) * self.rate)))
            else:
                start = now
                span = CHUNK_SECONDS
                if self.deadline is not None:
                    remaining = self.deadline - now
                    if remaining <= 0 or (remaining < _MIN_TAIL and self.claimed):
                        return None
                    span = min(span, remaining)
                n = _FIRST_CHUNK if self.call_rate is None else int(self.call_rate * span)
                n = max(1, min(n, left, _MAX_CHUNK))
            self.claimed += n
            return n, start

    def complete(self, n: int, call_seconds: float) -> None:
        with self.lock:
            self.done += n
            self.last_end = max(self.last_end, time.monotonic())
            if n > 1 and call_seconds > 0:
                self.call_rate = n / call_seconds

    def give_back(self, n: int) -> None:
        with self.lock:
            self.claimed -= n

    def fail(self, e: BaseException) -> None:
        with self.lock:
            if self.error is None:
                self.error = e
            self.stopped = True
        self.wake.set()

    @property
    def finished(self) -> bool:
        return self.running <= 0

    def worker_done(self) -> None:
        with self.lock:
            self.running -= 1

    def wait_finished(self, timeout: float | None = None) -> bool:
        # Each worker finishes its current call (at most one chunk) and leaves.
        end = None if timeout is None else time.monotonic() + timeout
        while self.running > 0:
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(_POLL)
        return True

    def snapshot(self, now: float | None = None) -> GenResult:
        with self.lock:
            end = self.last_end if now is None else now
            seconds = max(end - self.t0, 0.0)
            if now is None and self.rate is not None:
                # A rate-limited run owns the whole tick of its last burst.
                seconds = max(seconds, self.done / self.rate)
            return GenResult(self.done, seconds, self.done / seconds if seconds > 0 else 0.0)


def _current_cpu() -> int:
    """The CPU the calling thread runs on now (within its affinity mask)."""
    allowed = os.sched_getaffinity(0)
    try:
        with open("/proc/thread-self/stat") as f:
            stat = f.read()
        # Field 39 "processor"; the command name (field 2) may hold spaces,
        # so count from the ')' that closes it (field 3 comes next).
        cpu = int(stat.rsplit(")", 1)[1].split()[39 - 3])
    except (OSError, ValueError, IndexError):
        cpu = -1
    return cpu if cpu in allowed else min(allowed)


class _SigintFlag:
    """While a run lasts, Ctrl-C sets a flag instead of raising KeyboardInterrupt
    wherever the calling thread happens to be (possibly inside lock code); a
    second Ctrl-C raises as usual. Only from the main thread, and only when
    SIGINT has Python's default handler: a program's own handler is left alone."""

    def __init__(self) -> None:
        self.hit = False
        self._old: Any = None
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return
        self._old = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum: int, frame: object) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class TrafficGenerator:
    """Send one frame, over and over, out of an interface at kernel speed.

    ``iface`` is a name or an index. The frame is ``frame`` (raw bytes,
    Ethernet header first; shorter than 60 bytes is zero-padded to 60) or,
    without it, :func:`build_udp_frame` from the keyword arguments
    (``src_mac`` defaults to the interface's own address). ``frame_size``
    counts bytes without FCS and may not exceed the interface MTU + 14 nor
    :data:`MAX_LIVE_FRAME`. ``cpu`` pins the sending threads to that CPU
    (default: the CPU the caller runs on when :meth:`run` starts);
    ``batch_size`` (1..256, default the kernel's 64) is how many frames the
    kernel sends per NAPI-like batch; above 64 a veth may drop some (its
    peer's ring holds 256 frames; measured: a few hundred lost in 12 million
    at 256, and no gain).

    :attr:`warnings` lists reasons the frames would be dropped that could be
    seen up front (link without carrier, a device that takes no redirects,
    such as a veth whose peer has no XDP program); :meth:`check_egress`
    looks again, :meth:`wait_ready` waits for a veth's peer to get a program.

    The XDP program is loaded here and unloaded by :meth:`close` (or the end
    of a ``with`` block); nothing is attached to the interface. See the module
    docstring for what the egress device must support.
    """

    def __init__(
        self,
        iface: str | int,
        frame: bytes | None = None,
        *,
        dst_mac: bytes | str | None = None,
        src_mac: bytes | str | None = None,
        src_ip: str | bytes | int | ipaddress.IPv4Address | None = None,
        dst_ip: str | bytes | int | ipaddress.IPv4Address | None = None,
        sport: int | None = None,
        dport: int | None = None,
        frame_size: int | None = None,
        cpu: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        self._prog_fd: int | None = None
        self._plan: _Plan | None = None
        if cpu is not None:
            if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0:
                raise ValueError(f"cpu must be a CPU number >= 0, got {cpu!r}")
            allowed = os.sched_getaffinity(0)
            if cpu not in allowed:
                raise ValueError(
                    f"cpu {cpu} is not available to this process "
                    f"(allowed: {', '.join(map(str, sorted(allowed)))})"
                )
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= _MAX_BATCH
        ):
            raise ValueError(f"batch_size must be 1..{_MAX_BATCH}, got {batch_size!r}")
        header_args = (dst_mac, src_mac, src_ip, dst_ip, sport, dport, frame_size)
        if frame is not None and any(a is not None for a in header_args):
            raise ValueError("give either frame or the header fields (and frame_size), not both")
        self.ifname, self.ifindex = _iface.resolve_interface(iface)
        self.cpu = cpu
        self.batch_size = batch_size or 0

        facts = _iface.link_facts(self.ifindex)
        if not facts.admin_up:
            raise InterfaceDownError(
                errno.ENETDOWN,
                "start traffic generator",
                self.ifname,
                None,
                "the interface is down; `ip link set IFACE up`",
            )
        self.max_frame_size = min(facts.mtu + _ETH_HLEN, MAX_LIVE_FRAME)
        if frame is not None:
            if not isinstance(frame, (bytes, bytearray, memoryview)):
                raise ValueError("frame must be bytes")
            data = bytes(frame)
            if len(data) < _ETH_HLEN:
                raise ValueError(f"frame must hold at least an Ethernet header ({_ETH_HLEN} bytes)")
            data = data.ljust(_ETH_ZLEN, b"\0")  # as a NIC pads short frames
        else:
            size = 64 if frame_size is None else frame_size
            if isinstance(size, bool) or not isinstance(size, int):
                raise ValueError(f"frame_size must be an int, got {size!r}")
            if size > self.max_frame_size:
                raise ValueError(self._too_long(size, facts.mtu))
            data = build_udp_frame(
                dst_mac=DEFAULT_DST_MAC if dst_mac is None else dst_mac,
                src_mac=src_mac if src_mac is not None else (facts.mac or DEFAULT_SRC_MAC),
                src_ip=DEFAULT_SRC_IP if src_ip is None else src_ip,
                dst_ip=DEFAULT_DST_IP if dst_ip is None else dst_ip,
                sport=DEFAULT_SPORT if sport is None else sport,
                dport=DEFAULT_DPORT if dport is None else dport,
                frame_size=size,
            )
        if len(data) > self.max_frame_size:
            raise ValueError(self._too_long(len(data), facts.mtu))
        self.frame = data
        self._veth = facts.kind == "veth"
        self.warnings: list[str] = _redirect_warnings(self.ifname, self.ifindex, facts)
        self._prog_fd = bpf.prog_load(
            C.BPF_PROG_TYPE_XDP,
            generator_program_insns(self.ifindex),
            _LICENSE,
            GEN_PROG_NAME,
            ifname=self.ifname,
        )

    def check_egress(self) -> list[str]:
        """Look again, now, for reasons the frames would be dropped (the same
        checks as :attr:`warnings`, which this updates and returns).

        A veth's answer changes when an XDP program is attached to its peer
        or taken away, so a run that started with a warning may deliver
        after all, and the other way round.
        """
        try:
            facts = _iface.link_facts(self.ifindex)
        except OSError as e:
            self.warnings = [f"{self.ifname} cannot be queried any more: {e}"]
        else:
            self.warnings = _redirect_warnings(self.ifname, self.ifindex, facts)
        return self.warnings

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until :meth:`check_egress` finds no
        problem; True when it found none.

        Made for a veth whose peer gets its receiver a moment later (a
        benchmark started in parallel): only a veth can become ready by
        itself, so for any other device with a problem this returns False
        at once.
        """
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not (
            math.isfinite(timeout) and timeout >= 0
        ):
            raise ValueError(f"timeout must be a finite number >= 0, got {timeout!r}")
        deadline = time.monotonic() + timeout
        while self.check_egress():
            if not self._veth or time.monotonic() >= deadline:
                return False
            time.sleep(_READY_POLL)
        return True

    def _too_long(self, size: int, mtu: int) -> str:
        return (
            f"frame of {size} bytes is too long for {self.ifname}: at most "
            f"{self.max_frame_size} (MTU {mtu} + 14, and {MAX_LIVE_FRAME} for live frames)"
        )

    @property
    def frame_size(self) -> int:
        return len(self.frame)

    @property
    def closed(self) -> bool:
        return self._prog_fd is None

    def close(self) -> None:
        """Unload the program (idempotent). A run in another thread is stopped first."""
        plan = self._plan
        if plan is not None:
            plan.stop()
            if not plan.wait_finished(5.0):
                # Workers still inside a call: leaking the fd beats letting a
                # later call use a number that may name something else.
                return
            self._plan = None
        fd, self._prog_fd = self._prog_fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> TrafficGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.frame_size}-byte frames"
        return f"<TrafficGenerator {self.ifname} ({state})>"

    def run(
        self,
        count: int | None = None,
        duration: float | None = None,
        rate: float | None = None,
        on_progress: Callable[[GenResult], None] | None = None,
    ) -> GenResult:
        """Send ``count`` frames, or for ``duration`` seconds (whichever ends
        first when both are given), at most ``rate`` frames per second.

        ``on_progress`` is called about once per second, from the calling
        thread, with the totals so far. Returns the totals; on Ctrl-C raises
        :class:`GenerationInterrupted` carrying them. ``packets`` is exact
        (frames handed to the device; a device may still drop them).
        """
        if self._prog_fd is None:
            raise ValueError("the traffic generator is closed")
        if self._plan is not None and not self._plan.finished:
            raise RuntimeError("this generator is already running")
        if count is None and duration is None:
            raise ValueError("give count or duration: a run must be bounded")
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count <= 0
        ):
            raise ValueError(f"count must be a positive int, got {count!r}")
        for name, v in (("duration", duration), ("rate", rate)):
            if v is not None and (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v <= 0
            ):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")

        # Both workers send from one CPU: they exist to fill each other's
        # sleep, not to add cores. Two senders on two CPUs feeding one veth
        # queue overflow the peer's ring (drops) and make counts meaningless.
        cpu = self.cpu if self.cpu is not None else _current_cpu()
        plan = _Plan(
            count,
            None if duration is None else float(duration),
            None if rate is None else float(rate),
        )
        self._plan = plan
        workers = [
            threading.Thread(
                target=self._worker, args=(plan, cpu), name=f"xdp-gen-{i}", daemon=True
            )
            for i in range(_WORKERS)
        ]
        started = 0
        sigint = _SigintFlag()
        try:
            try:
                for w in workers:
                    w.start()
                    started += 1
                next_report = plan.t0 + _PROGRESS_EVERY
                while not plan.finished:
                    if sigint.hit:
                        raise KeyboardInterrupt
                    now = time.monotonic()
                    if on_progress is not None and now >= next_report:
                        on_progress(plan.snapshot(now))
                        next_report += _PROGRESS_EVERY
                    time.sleep(_POLL)
                if plan.error is not None:
                    raise plan.error
                if plan.rate is not None:
                    # Keep the pace across runs: the last burst's tick is ours.
                    end = plan.t0 + plan.done / plan.rate
                    while not sigint.hit and (left := end - time.monotonic()) > 0:
                        time.sleep(min(left, _POLL))
                    if sigint.hit:
                        raise KeyboardInterrupt
                    return plan.snapshot(time.monotonic())
                return plan.snapshot()
            except BaseException as e:
                plan.stop()
                for _ in range(started, _WORKERS):
                    plan.worker_done()  # never started: nothing to wait for
                plan.wait_finished()
                if isinstance(e, KeyboardInterrupt):
                    raise GenerationInterrupted(plan.snapshot()) from None
                raise
        finally:
            sigint.restore()
            if plan.finished:
                self._plan = None

    def _worker(self, plan: _Plan, cpu: int) -> None:
        # Signals go to the calling thread: a signal pending on *this* thread
        # would end the kernel's test run early with EINTR and an unknown count.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            os.sched_setaffinity(0, {cpu})  # 0: this thread only
            fd = self._prog_fd
            if fd is None:
                return
            while True:
                job = plan.claim()
                if job is None:
                    return
                n, start = job
                delay = start - time.monotonic()
                if delay > 0 and plan.wake.wait(delay):
                    plan.give_back(n)  # stopped while waiting for the tick
                    return
                t = time.monotonic()
                self._send(fd, n)
                plan.complete(n, time.monotonic() - t)
        except BaseException as e:  # handed to the calling thread
            plan.fail(e)
        finally:
            plan.worker_done()

    def _send(self, fd: int, n: int) -> None:
        try:
            bpf.prog_test_run(
                fd,
                self.frame,
                repeat=n,
                flags=C.BPF_F_TEST_XDP_LIVE_FRAMES,
                batch_size=self.batch_size,
            )
        except XdpError as e:
            if e.errno == errno.EINVAL:
                raise xdp_error(
                    e.errno,
                    "send live frames (BPF_PROG_TEST_RUN)",
                    self.ifname,
                    None,
                    "needs Linux 5.18+ for BPF_F_TEST_XDP_LIVE_FRAMES",
                ) from None
            raise xdp_error(
                e.errno or errno.EIO, "send live frames (BPF_PROG_TEST_RUN)", self.ifname
            ) from None


# --- a counting drop program for the receiving end --------------------------------


def drop_program_insns(map_fd: int) -> bytes:
    """Count every frame in slot 0 of the u64 array ``map_fd``, then drop it."""
    atomic_add_dw = C.BPF_ATOMIC | asm.BPF_DW | asm.BPF_STX
    return b"".join(
        [
            asm.st_w(asm.R10, -4, 0),  # key 0, on the stack
            asm.mov64_reg(asm.R2, asm.R10),
            asm.alu64_imm("add", asm.R2, -4),
            asm.ld_map_fd(asm.R1, map_fd),
            asm.call(C.BPF_FUNC_map_lookup_elem),
            asm.jmp_imm("jeq", asm.R0, 0, 2),  # the verifier insists on the NULL check
            asm.mov64_imm(asm.R1, 1),
            # lock *(u64 *)(r0 + 0) += r1: frames may arrive on several CPUs at once
            asm.insn(atomic_add_dw, asm.R0, asm.R1, 0, C.BPF_ATOMIC_ADD),
            asm.mov64_imm(asm.R0, C.XDP_DROP),
            asm.exit_(),
        ]
    )


_DROP_MODES = {"native": C.XDP_FLAGS_DRV_MODE, "skb": C.XDP_FLAGS_SKB_MODE}


class XdpDrop:
    """A counting drop program attached to an interface (see :func:`xdp_drop`)."""

    def __init__(self, iface: str | int, mode: str = "native") -> None:
        self._map_fd: int | None = None
        self._prog_fd: int | None = None
        self._link_fd: int | None = None
        self._final = 0
        if mode not in _DROP_MODES:
            raise ValueError(f"mode must be one of {', '.join(_DROP_MODES)}; got {mode!r}")
        self.ifname, self.ifindex = _iface.resolve_interface(iface)
        self.mode = mode
        step = "attach XDP drop program"
        state = _iface.xdp_state(self.ifindex)
        if state.prog_ids:
            raise self._conflict(step, state.prog_ids)
        try:
            self._map_fd = bpf.map_create(
                C.BPF_MAP_TYPE_ARRAY, 4, 8, 1, DROP_MAP_NAME, ifname=self.ifname
            )
            self._prog_fd = bpf.prog_load(
                C.BPF_PROG_TYPE_XDP,
                drop_program_insns(self._map_fd),
                _LICENSE,
                DROP_PROG_NAME,
                ifname=self.ifname,
            )
            self.prog_id = bpf.prog_get_info(self._prog_fd).id
            try:
                # A BPF link, not netlink: the program leaves the interface
                # when the link fd closes, even if the process dies.
                self._link_fd = bpf.link_create(
                    self._prog_fd, self.ifindex, C.BPF_XDP, _DROP_MODES[mode], ifname=self.ifname
                )
            except XdpError as e:
                # EBUSY (native) / EEXIST (skb): a program appeared since we looked.
                if e.errno in (errno.EBUSY, errno.EEXIST):
                    raise self._conflict(step, _iface.xdp_state(self.ifindex).prog_ids) from None
                raise
        except BaseException:
            self.close()
            raise

    def _conflict(self, step: str, prog_ids: tuple[int, ...]) -> XdpProgramConflictError:
        ids = ", ".join(map(str, prog_ids)) or "?"
        return XdpProgramConflictError(
            errno.EBUSY,
            step,
            self.ifname,
            None,
            f"{self.ifname} already runs XDP program id {ids}; xdp_drop never replaces one",
        )

    def count(self) -> int:
        """Frames dropped (and counted) so far; after :meth:`close`, the final count."""
        if self._map_fd is None:
            return self._final
        return bpf.map_lookup_elem(self._map_fd, 0, ifname=self.ifname) or 0

    def reset(self) -> None:
        """Set the count back to 0."""
        if self._map_fd is None or self._link_fd is None:
            raise ValueError("the drop program was detached")
        bpf.map_update_elem(self._map_fd, 0, 0, ifname=self.ifname)

    @property
    def closed(self) -> bool:
        return self._link_fd is None

    def close(self) -> None:
        """Detach the program and free it (idempotent); :meth:`count` keeps the final count."""
        # Detach first, then read the count, which can no longer change.
        link, self._link_fd = self._link_fd, None
        if link is not None:
            with contextlib.suppress(OSError):
                os.close(link)
        if self._map_fd is not None:
            with contextlib.suppress(OSError):
                self._final = self.count()
        for name in ("_prog_fd", "_map_fd"):
            fd = getattr(self, name)
            setattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> XdpDrop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<XdpDrop {self.ifname} {self.mode}{' (detached)' if self.closed else ''}>"


def xdp_drop(iface: str | int, *, mode: str = "native") -> XdpDrop:
    """Attach a tiny XDP program to ``iface`` that counts and drops every frame.

    Use it as a context manager; ``.count()`` reads the counter::

        with xdp_drop("vb") as sink, TrafficGenerator("va") as gen:
            gen.run(count=1_000_000)
            assert sink.count() == 1_000_000

    It gives transmit benchmarks a peer that discards at the earliest point,
    and a veth peer the XDP program the live-frames generator needs. Attached
    with a BPF link (``mode`` ``"native"`` or ``"skb"``): it leaves the
    interface when the context ends or the process dies. Refuses, with
    :class:`~xdp_socket.errors.XdpProgramConflictError`, an interface that
    already runs any XDP program.
    """
    return XdpDrop(iface, mode)
