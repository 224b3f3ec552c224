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
from ._check import check_int
from ._sys import bpf
from ._sys import bpf_asm as asm
from ._sys import consts as C
from ._sys.fd import OwnedFd

# Re-exported: the docs import these from xdp_socket.gen, where they used to live.
from .drop import XdpDrop, drop_program_insns, xdp_drop  # noqa: F401
from .errors import InterfaceDownError, XdpError, xdp_error
from .frames import (
    DEFAULT_DPORT,
    DEFAULT_DST_IP,
    DEFAULT_DST_MAC,
    DEFAULT_SPORT,
    DEFAULT_SRC_IP,
    DEFAULT_SRC_MAC,
    ETH_HLEN,
    ETH_ZLEN,
    build_udp_frame,
)

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
# Longest single Event.wait() of a worker waiting for its tick: a tiny rate can
# put the tick centuries (or, for rate < 1e-308, infinitely) ahead, and
# Event.wait() refuses a timeout that large with OverflowError.
_MAX_WAIT = 1.0



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
                    # (min first: with a huge rate and duration the product is inf)
                    n = min(n, max(1, math.ceil(min((self.deadline - start) * self.rate, n))))
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
                # A rate-limited run owns the whole tick of its last burst,
                # but not beyond this moment (a run stopped early, with a
                # tick of 1/rate = years, did not last years).
                tick_end = min(self.done / self.rate, time.monotonic() - self.t0)
                seconds = max(seconds, tick_end)
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
        self._prog: OwnedFd | None = None
        self._plan: _Plan | None = None
        if cpu is not None:
            check_int("cpu", cpu, what="a CPU number >= 0")
            allowed = os.sched_getaffinity(0)
            if cpu not in allowed:
                raise ValueError(
                    f"cpu {cpu} is not available to this process "
                    f"(allowed: {', '.join(map(str, sorted(allowed)))})"
                )
        if batch_size is not None:
            check_int("batch_size", batch_size, min=1, max=_MAX_BATCH)
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
        self.max_frame_size = min(facts.mtu + ETH_HLEN, MAX_LIVE_FRAME)
        if frame is not None:
            if not isinstance(frame, (bytes, bytearray, memoryview)):
                raise ValueError("frame must be bytes")
            data = bytes(frame)
            if len(data) < ETH_HLEN:
                raise ValueError(f"frame must hold at least an Ethernet header ({ETH_HLEN} bytes)")
            data = data.ljust(ETH_ZLEN, b"\0")  # as a NIC pads short frames
        else:
            size = 64 if frame_size is None else frame_size
            check_int("frame_size", size, min=None)
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
        self._prog = OwnedFd(
            bpf.prog_load(
                C.BPF_PROG_TYPE_XDP,
                generator_program_insns(self.ifindex),
                _LICENSE,
                GEN_PROG_NAME,
                ifname=self.ifname,
            ),
            f"unclosed TrafficGenerator on {self.ifname}",
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
        return self._prog is None

    def close(self) -> None:
        """Unload the program (idempotent). A run in another thread is stopped first."""
        plan = self._plan
        if plan is not None:
            plan.stop()
            if not plan.wait_finished(5.0):
                # Workers still inside a call (they hold this object): the
                # fd's owner closes it once they are done and it is dropped;
                # closing now could let their next call use a number that
                # names something else by then.
                return
            self._plan = None
        prog, self._prog = self._prog, None
        if prog is not None:
            prog.close()

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
        if self._prog is None:
            raise ValueError("the traffic generator is closed")
        if self._plan is not None and not self._plan.finished:
            raise RuntimeError("this generator is already running")
        if count is None and duration is None:
            raise ValueError("give count or duration: a run must be bounded")
        if count is not None:
            check_int("count", count, min=1)
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
                    if plan.deadline is not None:
                        # ... but never past the duration asked for (with a
                        # tiny rate one tick may last longer than the run).
                        end = min(end, plan.deadline)
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
            prog = self._prog
            if prog is None:
                return
            fd = prog.fileno()
            while True:
                job = plan.claim()
                if job is None:
                    return
                n, start = job
                stopped = False
                while (delay := start - time.monotonic()) > 0:
                    if plan.wake.wait(min(delay, _MAX_WAIT)):
                        stopped = True
                        break
                if stopped:
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
