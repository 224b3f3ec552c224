#!/usr/bin/env python3
"""Side-by-side benchmark: C libxdp, xdp-socket (batch and per-packet API) and
plain-Python AF_PACKET, in one run, on one veth pair in a private namespace.

    python3 bench/run.py [-n 5] [-d 3] [--modes rxdrop,txonly,l2fwd,samecore-poll,...]
                         [--impls c,batch,packet,afpacket] [--no-c] [--quick] [-b 64]
                         [--method] [--json-out FILE] [--write | --write-to FILE]
                         [--plot rtt.png] [--from-json FILE] [--markdown]

The script moves itself into a fresh network + mount namespace
(``xdp_socket.testing.enter_private_netns``) before anything else, creates one
single-queue veth pair there (``A`` = traffic side, ``B`` = side under test),
and runs every scenario N times. Every process it starts is pinned to a core,
bounded in time, and killed with the script (PR_SET_PDEATHSIG); the veth pair
and every XDP program die with the namespace, also on Ctrl-C.

Scenarios (rows), with the "measured" program on the measured core (default 1)
and the traffic source on the source core (default 0):

  rxdrop    receiver on B. Source: ``xdp-socket gen`` on A (live frames,
            redirected into A's egress, so they reach B's XDP program). The
            AF_PACKET receiver has no XDP program on B, and veth drops
            redirected frames then, so it is fed by an AF_XDP txonly on A
            (C ``xsk_ref txonly``; ours with --no-c), which goes through the
            skb path.
  txonly    sender on A; a counting XDP drop on B (attached by this script,
            the same for every implementation) is the sink and cross-check.
  l2fwd     forwarder on B, fed like rxdrop; the frames it sends back land on
            A, where a counting XDP drop discards them (and counts them). The
            generator's own frames never run A's program: it redirects them
            into A's *egress*, i.e. straight to B.
  samecore  rxdrop with the generator and the receiver on the same core: on
            veth the receive work the kernel does per packet runs on the
            sending core, so with both on one core every nanosecond the
            receiver spends per packet costs source throughput too. With
            spinning receivers (as xsk_ref's) this row is bound by the
            scheduler, not by per-packet cost: the generator fills the Fill
            ring's 2048 frames within its time slice and the rest is dropped,
            so every implementation gets ~2048 frames per scheduling round.
  samecore-poll
            the same with every receiver waiting in poll(2) when the ring is
            empty (xdp-socket's and xsk_ref's --poll: POLLIN, 100 ms timeout),
            so they give the core back to the generator: this row does show
            the per-packet cost.
  latency, latency-poll
            ping-pong of one frame: the pinger (`latency` mode) on A, its echo
            (an l2fwd of the same implementation) on B, both spinning or both
            in poll(2); p50/p99/p99.9 round-trip time over every run's samples.

Default rows: all but samecore (scheduler-bound, see bench/README.md).
--method adds syscall counts (perf stat, for the measurement window only) to the
"where the time goes" table: CPU time per frame, syscalls and kicks per frame,
EAGAIN kicks, the batch actually taken, ring-full and Fill-empty counters.
--write puts the tables, with the date, kernel, CPU, core count and this exact
command, between the marker comments of README.md and bench/README.md.

Same settings for every AF_XDP program: UMEM 4096 frames x 4096 bytes, all rings
2048, copy mode, native XDP, need_wakeup on, batch 256 (xdp-socket's default; -b 64
for the kernel samples' figure), 64-byte frames (no FCS).

Runs are interleaved (run 1 of every implementation, then run 2, ...), so that a
drift in the machine's state affects every column alike.

Output: a table of median Mpps (min-max) per row and implementation, a table of
ratios, the cross-check rates (what the source offered, what the drop peer
received), round-trip percentiles and where the time goes; all raw results,
medians and ratios as JSON with --json-out.
Exit status 0 when every run produced a result, 1 otherwise, 130 on Ctrl-C.
"""

from __future__ import annotations

import os

# Before numpy is imported anywhere: a mount namespace can only be entered by a
# single-threaded process, and numpy's BLAS starts threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import contextlib
import ctypes
import datetime
import json
import math
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REF = HERE / "ref"
PY = sys.executable

IMPLS = ("c", "batch", "batch-py", "packet", "afpacket")
IMPL_TITLES = {
    "c": "C libxdp",
    "batch": "xdp-socket batch",
    "batch-py": "xdp-socket batch, pure Python",
    "packet": "xdp-socket packet",
    "afpacket": "Python AF_PACKET",
}
# The "batch-py" column runs the batch API with the compiled accelerator turned
# off. It is added to the default columns only once a "batch" run reports an
# active accelerator (the "accel" field of `bench --json`): without one both
# columns would measure the same code.
NO_ACCEL_ENV = "XDP_SOCKET_NO_ACCEL"
NO_ACCEL_VALUES = {None, False, "", "none", "off", "no", "python", "pure-python"}
ACCEL_NAMES = {"c": "C accelerator"}  # "accel" values as column titles say them
THROUGHPUT_ROWS = ("rxdrop", "txonly", "l2fwd", "samecore", "samecore-poll")
LATENCY_ROWS = ("latency", "latency-poll")
ROWS = THROUGHPUT_ROWS + LATENCY_ROWS
DEFAULT_ROWS = ("rxdrop", "txonly", "l2fwd", "samecore-poll", *LATENCY_ROWS)
ROW_TITLES = {
    "rxdrop": "rxdrop",
    "txonly": "txonly",
    "l2fwd": "l2fwd",
    "samecore": "rxdrop, same core",
    "samecore-poll": "rxdrop, same core, poll",
    "latency": "ping-pong, busy-spin",
    "latency-poll": "ping-pong, poll",
}
# (numerator, denominator) of the ratio table, with the targets where it
# gives one. Shown for context only: nothing here is tuned to them.
RATIOS = (
    ("batch", "c"),
    ("batch-py", "c"),
    ("packet", "c"),
    ("afpacket", "c"),
    ("packet", "afpacket"),
)
TARGETS = {
    ("rxdrop", "batch", "c"): 1.0,
    ("txonly", "batch", "c"): 0.95,
    ("l2fwd", "batch", "c"): 0.95,
    ("rxdrop", "packet", "afpacket"): 3.0,
    ("txonly", "packet", "afpacket"): 1.5,
}

FRAME_BYTES = 64
BATCH = 256  # xdp-socket's default; --batch changes it for every implementation alike
PINGS = 10000  # latency rows: recorded round trips per run (--pings)
FIRST_PACKET_WAIT = 10.0  # -w: how long a receiver waits for its first packet
SOURCE_MARGIN = 10.0  # sources may run this much longer than the window; stopped early
SETTLE = 0.2  # between runs: the kernel frees a closed socket's queue slot late

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Interrupted(Exception):
    """SIGINT/SIGTERM/SIGHUP arrived; unwind, stop every child, exit 130."""


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


# --- child processes ---------------------------------------------------------------


def _child_setup(cpu: int | None) -> Callable[[], None]:
    """Runs in the child between fork and exec: pin it, and make the kernel kill it
    if this script dies first, so no sender outlives the run (nor keeps the
    namespace alive)."""

    def setup() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return setup


class Procs:
    """Every child started, so that any exit path can stop the live ones."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[str]] = []

    def start(self, argv: list[str], cpu: int | None,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_child_setup(cpu),
            env={**os.environ, **env} if env else None,
        )
        self.live.append(p)
        return p

    def finish(self, p: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
        """Wait up to ``timeout`` s; then SIGINT (the programs print their result on
        it), then SIGKILL. Returns (exit status, stdout, stderr)."""
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            try:
                out, err = p.communicate(timeout=3.0)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
        with contextlib.suppress(ValueError):
            self.live.remove(p)
        return p.returncode, out, err

    def stop_all(self) -> None:
        for p in list(self.live):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGINT)
        for p in list(self.live):
            try:
                p.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.live.clear()


def parse_json_output(text: str) -> dict[str, Any] | None:
    """The tools print one JSON object: on one line (C, afpacket_ref) or indented
    (xdp-socket --json)."""
    text = text.strip()
    if not text:
        return None
    with contextlib.suppress(ValueError):
        obj = json.loads(text)
        return obj if isinstance(obj, dict) else None
    start = text.rfind("\n{")
    if start >= 0:
        with contextlib.suppress(ValueError):
            obj = json.loads(text[start + 1 :])
            return obj if isinstance(obj, dict) else None
    return None


# --- method: syscall counts (--method) ---------------------------------------------

# (name, tracepoint, filter), counted by `perf stat` for the measured process and its
# threads, during the measurement window only: perf starts with its counters disabled
# (-D -1) and the program turns them on and off through perf's control FIFOs at the
# start and end of its window (perf_ctl in xsk_ref.c, `bench`, afpacket_ref.py). A
# kick is a zero-length sendto (TX) or recvfrom (Fill); no other sendto or recvfrom
# in these programs has length 0.
PERF_EVENTS: tuple[tuple[str, str, str | None], ...] = (
    ("syscalls", "raw_syscalls:sys_enter", None),
    ("kicks", "syscalls:sys_enter_sendto", "len == 0"),
    ("kicks_eagain", "syscalls:sys_exit_sendto", "ret == -11"),  # -EAGAIN
    ("sendto", "syscalls:sys_enter_sendto", None),
    ("fill_wakeups", "syscalls:sys_enter_recvfrom", "size == 0"),
    ("recvfrom", "syscalls:sys_enter_recvfrom", None),
    ("poll", "syscalls:sys_enter_poll", None),
    ("ppoll", "syscalls:sys_enter_ppoll", None),
)


@dataclass
class Perf:
    """``perf stat`` around the measured program, counting syscall tracepoints."""

    path: str
    tmp: Path

    def wrap(self, argv: list[str], tag: str) -> tuple[list[str], Path, dict[str, str]]:
        """perf's command line around ``argv``, its output file, and the
        environment that tells the program where perf's control FIFOs are."""
        out = self.tmp / f"perf-{tag}.csv"
        ctl, ack = self.tmp / f"perf-{tag}.ctl", self.tmp / f"perf-{tag}.ack"
        for fifo in (ctl, ack):
            with contextlib.suppress(FileNotFoundError):
                fifo.unlink()
            os.mkfifo(fifo)
        events: list[str] = []
        for _, tracepoint, flt in PERF_EVENTS:
            events += ["-e", tracepoint] + (["--filter", flt] if flt else [])
        return ([self.path, "stat", "-x", ",", "-o", str(out), "-D", "-1",
                 "--control", f"fifo:{ctl},{ack}", *events, "--", *argv], out,
                {"XDP_BENCH_PERF_CTL": str(ctl), "XDP_BENCH_PERF_ACK": str(ack)})

    @staticmethod
    def parse(path: Path) -> dict[str, int | None] | None:
        """perf's CSV lines, one per event in PERF_EVENTS order (a tracepoint may
        appear twice with different filters, so they are matched by position)."""
        try:
            text = path.read_text()
        except OSError:
            return None
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if len(lines) != len(PERF_EVENTS):
            return None
        out: dict[str, int | None] = {}
        for (name, _, _), line in zip(PERF_EVENTS, lines, strict=True):
            value = line.split(",")[0]
            out[name] = int(value) if value.isdigit() else None  # "<not counted>"
        return out


def setup_perf(tmp: Path) -> Perf | None:
    """A working ``perf stat`` with syscall tracepoints, or None after saying why.
    Runs inside the private mount namespace, whose fresh /sys has no tracefs:
    mount one there (it goes away with the namespace)."""
    path = shutil.which("perf")
    if path is None:
        _log("run.py: --method: perf not found (apt-get install linux-perf); "
             "no syscall counts, CPU times and ring counters only")
        return None
    if not Path("/sys/kernel/tracing/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"],
                       capture_output=True, check=False)
    perf = Perf(path, tmp)
    argv, out, _ = perf.wrap(["true"], "probe")
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if r.returncode != 0 or perf.parse(out) is None:
        why = (r.stderr.strip().splitlines() or ["no output"])[-1]
        _log(f"run.py: --method: perf stat cannot count syscall tracepoints here ({why}); "
             "no syscall counts")
        return None
    return perf


# --- scenarios ----------------------------------------------------------------------


@dataclass
class Setup:
    a: str
    b: str
    a_index: int
    b_index: int
    duration: float
    src_cpu: int
    dut_cpu: int
    xsk_ref: str | None  # None: no C column (--no-c)
    batch: int = BATCH
    pings: int = PINGS
    perf: Perf | None = None  # --method: syscall counts of the measured process
    tx_budget: int | None = None  # --tx-budget: XDP_MAX_TX_SKB_BUDGET for C and xdp-socket
    c_batch_work_ns: int = 0  # --c-batch-work-ns: the same-core experiment (C rxdrop only)


@dataclass
class Plan:
    """One run of one cell: what is measured, what feeds it, where the drop sits."""

    row: str
    impl: str
    measured: list[str]
    measured_cpu: int
    measured_iface_index: int
    attaches_xdp: bool  # the measured program loads an XDP program on its interface
    source: list[str] | None = None
    source_impl: str | None = None
    source_cpu: int | None = None
    drop_iface: str | None = None
    timeout: float = 0.0
    notes: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None  # extra environment of the measured program and source
    source_first: bool = False  # latency: the echo (the "source") must be up first


def _xs(mode: str, iface: str, api: str, s: Setup, poll: bool = False,
        duration: float | None = None) -> list[str]:
    return [
        PY, "-m", "xdp_socket", "bench", mode, "-i", iface, "-q", "0",
        "-d", f"{duration if duration is not None else s.duration:g}",
        "-w", f"{FIRST_PACKET_WAIT:g}",
        "-b", str(s.batch), "-s", str(FRAME_BYTES), "--api", api,
        "--xdp-mode", "native", "--copy", "--quiet", "--json",
    ] + (["--poll"] if poll else []) + _budget(s)  # fmt: skip


def _budget(s: Setup) -> list[str]:
    """The same copy-mode TX budget for every AF_XDP program (none: the kernel's)."""
    return ["--tx-budget", str(s.tx_budget)] if s.tx_budget is not None else []


def _c(mode: str, iface: str, s: Setup, duration: float | None = None,
       poll: bool = False) -> list[str]:
    assert s.xsk_ref is not None
    return [
        s.xsk_ref, mode, "-i", iface, "-q", "0",
        "-d", f"{duration if duration is not None else s.duration:g}",
        "-w", f"{FIRST_PACKET_WAIT:g}", "-b", str(s.batch), "-s", str(FRAME_BYTES),
        "--xdp-mode", "native", "--quiet",
    ] + (["--poll"] if poll else []) + _budget(s) + _work(s, mode)  # fmt: skip


def _work(s: Setup, mode: str) -> list[str]:
    """--c-batch-work-ns: the C rxdrop's busy time per batch (an experiment)."""
    return ["--batch-work-ns", str(s.c_batch_work_ns)] if s.c_batch_work_ns and \
        mode == "rxdrop" else []


def _afpacket(mode: str, iface: str, s: Setup) -> list[str]:
    return [
        PY, str(REF / "afpacket_ref.py"), mode, "-i", iface,
        "-d", f"{s.duration:g}", "-w", f"{FIRST_PACKET_WAIT:g}",
        "-b", str(s.batch), "-s", str(FRAME_BYTES), "--quiet",
    ]  # fmt: skip


def _gen(iface: str, cpu: int, s: Setup) -> list[str]:
    return [
        PY, "-m", "xdp_socket", "gen", "-i", iface, "-s", str(FRAME_BYTES),
        "-d", f"{s.duration + SOURCE_MARGIN:g}", "--cpu", str(cpu), "--json",
    ]  # fmt: skip


def _skb_source(s: Setup) -> tuple[list[str], str]:
    """An AF_XDP txonly on A: its frames take the skb path, so they reach a B
    without an XDP program (the AF_PACKET receivers)."""
    dur = s.duration + SOURCE_MARGIN
    if s.xsk_ref is not None:
        return _c("txonly", s.a, s, dur), "c-libxdp txonly"
    argv = _xs("txonly", s.a, "batch", s)
    argv[argv.index("-d") + 1] = f"{dur:g}"
    return argv, "xdp-socket batch txonly"


def _api(impl: str) -> str:
    return "packet" if impl == "packet" else "batch"


def plan_latency(row: str, impl: str, s: Setup) -> Plan | None:
    """Ping-pong: the pinger on A (measured, on the measured core) and its echo,
    an l2fwd of the same implementation on B (on the source core), both
    spinning or both waiting in poll(2)."""
    if impl == "afpacket":
        return None  # no AF_PACKET ping-pong reference (yet)
    poll = row == "latency-poll"
    echo_d = s.duration + SOURCE_MARGIN
    if impl == "c":
        measured = [*_c("latency", s.a, s, poll=poll), "-n", str(s.pings)]
        echo, echo_impl = _c("l2fwd", s.b, s, echo_d, poll), "c-libxdp l2fwd"
    else:
        measured = [*_xs("latency", s.a, _api(impl), s, poll), "-n", str(s.pings)]
        echo = _xs("l2fwd", s.b, _api(impl), s, poll, echo_d)
        echo_impl = f"xdp-socket {_api(impl)} l2fwd"
    return Plan(
        row=row, impl=impl, measured=measured, measured_cpu=s.dut_cpu,
        measured_iface_index=s.b_index, attaches_xdp=True, source=echo,
        source_impl=echo_impl, source_cpu=s.src_cpu, source_first=True,
        timeout=s.duration + FIRST_PACKET_WAIT + 20.0,
        env={NO_ACCEL_ENV: "1"} if impl == "batch-py" else None,
    )  # fmt: skip


def plan(row: str, impl: str, s: Setup) -> Plan | None:
    """The run for one cell, or None where the cell does not exist."""
    if impl == "c" and s.xsk_ref is None:
        return None
    if row in LATENCY_ROWS:
        return plan_latency(row, impl, s)
    samecore = row.startswith("samecore")
    if samecore and impl == "afpacket":
        return None  # its skb-path source is itself an AF_XDP program: not comparable
    poll = row == "samecore-poll"
    mode = "rxdrop" if samecore else row
    iface = s.a if row == "txonly" else s.b
    measured = {
        "c": lambda: _c(mode, iface, s, poll=poll),
        "batch": lambda: _xs(mode, iface, "batch", s, poll),
        "batch-py": lambda: _xs(mode, iface, "batch", s, poll),
        "packet": lambda: _xs(mode, iface, "packet", s, poll),
        "afpacket": lambda: _afpacket(mode, iface, s),
    }[impl]()
    p = Plan(
        row=row,
        impl=impl,
        measured=measured,
        measured_cpu=s.dut_cpu,
        measured_iface_index=s.a_index if row == "txonly" else s.b_index,
        attaches_xdp=impl != "afpacket" and row != "txonly",
        timeout=s.duration + FIRST_PACKET_WAIT + 20.0,
        env={NO_ACCEL_ENV: "1"} if impl == "batch-py" else None,
    )
    if row == "txonly":
        p.drop_iface = s.b
        return p
    if samecore:
        p.source, p.source_impl, p.source_cpu = _gen(s.a, s.dut_cpu, s), "xdp-socket gen", s.dut_cpu
        return p
    if impl == "afpacket":
        p.source, p.source_impl = _skb_source(s)
    else:
        p.source, p.source_impl = _gen(s.a, s.src_cpu, s), "xdp-socket gen"
    p.source_cpu = s.src_cpu
    if row == "l2fwd":
        p.drop_iface = s.a
    return p


def _wait_no_xdp(indices: tuple[int, ...], timeout: float = 3.0) -> None:
    """The previous run's programs leave their interfaces when their processes
    are reaped (BPF links); a new drop program must not find them there."""
    from xdp_socket.iface import xdp_state

    end = time.monotonic() + timeout
    while any(xdp_state(i).prog_ids for i in indices) and time.monotonic() < end:
        time.sleep(0.01)


def _wait_xdp(index: int, proc: subprocess.Popen[str], timeout: float = 10.0) -> bool:
    """Wait until the measured receiver attached its XDP program (so the generator's
    first frames are not dropped for want of one), or it died."""
    from xdp_socket.iface import xdp_state

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if xdp_state(index).prog_ids:
            return True
        time.sleep(0.01)
    return False


def run_one(p: Plan, run: int, s: Setup, procs: Procs) -> dict[str, Any]:
    """Run one cell once; returns the measured side's JSON plus cross-checks."""
    from xdp_socket.gen import xdp_drop

    rec: dict[str, Any] = {"row": p.row, "impl": p.impl, "run": run, "ok": False}
    argv, perf_out, env = p.measured, None, p.env
    if s.perf is not None:
        argv, perf_out, perf_env = s.perf.wrap(argv, f"{p.row}-{p.impl}-{run}")
        env = {**(env or {}), **perf_env}
    _wait_no_xdp((s.a_index, s.b_index))
    with contextlib.ExitStack() as stack:
        drop = stack.enter_context(xdp_drop(p.drop_iface)) if p.drop_iface else None
        source = None
        if p.source_first and p.source is not None:
            # latency: the echo attaches its program on B first; the pinger
            # gives it FIRST_PACKET_WAIT seconds to answer anyway
            source = procs.start(p.source, p.source_cpu, p.env)
            _wait_xdp(p.measured_iface_index, source)
        measured = procs.start(argv, p.measured_cpu, env)
        if p.source is not None and not p.source_first:
            if p.attaches_xdp:
                _wait_xdp(p.measured_iface_index, measured)
            else:
                time.sleep(0.3)  # AF_PACKET receiver: a stdlib-only start-up
            if measured.poll() is None:
                source = procs.start(p.source, p.source_cpu)
        code, out, err = procs.finish(measured, p.timeout)
        src_out = src_err = ""
        if source is not None:
            # The receiver's window is over: the source has done its job.
            if source.poll() is None:
                source.send_signal(signal.SIGINT)
            _, src_out, src_err = procs.finish(source, 5.0)
        if drop is not None:
            time.sleep(0.02)  # frames still queued in veth's NAPI land within microseconds
            rec["peer_packets"] = drop.count()
    result = parse_json_output(out)
    rec["exit_status"] = code
    if result is None or code not in (0, 130):
        rec["error"] = (err.strip().splitlines() or [f"exit status {code}, no output"])[-1]
        rec["stderr_tail"] = err[-2000:]
        return rec
    rec["ok"] = True
    if perf_out is not None:
        rec["syscalls"] = Perf.parse(perf_out)
    rec["pps"] = float(result["pps"])
    rec["packets"] = int(result["packets"])
    rec["seconds"] = float(result["seconds"])
    rec["result"] = result
    if p.source is not None:
        rec["source_impl"] = p.source_impl
        src = parse_json_output(src_out)
        if src is not None:
            rec["source_pps"] = float(src["pps"])
            rec["source_packets"] = int(src["packets"])
        else:
            rec["source_error"] = (src_err.strip().splitlines() or ["no output"])[-1]
    if "peer_packets" in rec and rec["seconds"] > 0:
        # The drop counts the whole run, the measured program only its window;
        # in txonly and l2fwd both see (nearly) the same frames.
        rec["peer_pps"] = rec["peer_packets"] / rec["seconds"]
    return rec


# --- summary ------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in runs:
        if r["row"] in LATENCY_ROWS:
            continue
        cell = out.setdefault(r["row"], {}).setdefault(
            r["impl"], {"pps": [], "source_pps": [], "peer_pps": [], "failed": 0}
        )
        if not r["ok"]:
            cell["failed"] += 1
            continue
        for k in ("pps", "source_pps", "peer_pps"):
            if k in r:
                cell[k].append(r[k])
    for cells in out.values():
        for cell in cells.values():
            for k in ("pps", "source_pps", "peer_pps"):
                v = cell.pop(k)
                if v:
                    cell[k] = {"median": statistics.median(v), "min": min(v), "max": max(v),
                               "n": len(v)}  # fmt: skip
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank, as `bench latency` and xsk_ref compute it."""
    k = math.ceil(q * len(sorted_values))
    return sorted_values[max(k, 1) - 1]


def summarize_latency(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per latency row and implementation: percentiles of every run's samples
    pooled (a p99.9 needs thousands of samples; one run's median would hide the
    tail), lost pings, and the failed runs."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    pooled: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        if r["row"] not in LATENCY_ROWS:
            continue
        cell = out.setdefault(r["row"], {}).setdefault(
            r["impl"], {"failed": 0, "lost": 0, "runs": 0})
        if not r["ok"]:
            cell["failed"] += 1
            continue
        res = r.get("result", {})
        cell["runs"] += 1
        cell["lost"] += int(res.get("lost", 0))
        pooled.setdefault((r["row"], r["impl"]), []).extend(res.get("samples_us") or [])
    for (row, impl), samples in pooled.items():
        if samples:
            v = sorted(samples)
            out[row][impl].update({"pings": len(v), "min": v[0], "p50": percentile(v, 0.5),
                                   "p99": percentile(v, 0.99), "p99.9": percentile(v, 0.999),
                                   "max": v[-1]})
    return out


def _per_run_method(r: dict[str, Any]) -> dict[str, float]:
    """Where one run's time went, per frame moved in its window (see bench/README.md,
    "Method")."""
    res, n = r.get("result", {}), r.get("packets", 0)
    out: dict[str, float] = {}
    if not n:
        return out
    cpu = res.get("cpu")
    if cpu:
        out["user_us"] = cpu["user_s"] / n * 1e6
        out["sys_us"] = cpu["sys_s"] / n * 1e6
    cnt = res.get("counters") or {}
    # batches that moved frames: xsk_ref counts RX and TX batches, `bench` loop steps
    batches = cnt.get("batches") or (cnt.get("tx_batches") if r["row"] == "txonly"
                                     else cnt.get("rx_batches"))
    if batches:
        out["batch"] = n / batches
    sc = r.get("syscalls") or {}
    if sc.get("syscalls") is not None:
        out["syscalls"] = sc["syscalls"] / n
    if sc.get("kicks"):
        out["frames_per_kick"] = n / sc["kicks"]
        if sc.get("kicks_eagain") is not None:
            out["eagain_pct"] = 100.0 * sc["kicks_eagain"] / sc["kicks"]
    polls = (sc.get("poll") or 0) + (sc.get("ppoll") or 0)
    if sc:
        out["polls"] = polls / n
    st = res.get("xdp_stats") or res.get("statistics")
    if st:
        out["ring_full_pct"] = 100.0 * st.get("rx_ring_full", 0) / n
        out["fill_empty_pct"] = 100.0 * st.get("rx_fill_ring_empty_descs", 0) / n
    return out


def summarize_method(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Medians over the runs of each cell of every per-frame figure."""
    acc: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in runs:
        if not r["ok"] or r["row"] in LATENCY_ROWS:
            continue
        for k, v in _per_run_method(r).items():
            acc.setdefault(r["row"], {}).setdefault(r["impl"], {}).setdefault(k, []).append(v)
    return {row: {impl: {k: statistics.median(v) for k, v in cell.items()}
                  for impl, cell in cells.items()} for row, cells in acc.items()}


def accel_of(runs: list[dict[str, Any]], impl: str) -> str | None:
    """The accelerator an implementation's runs reported (`bench --json`'s
    "accel"), or None for the pure-Python path / no such field."""
    for r in runs:
        if r["impl"] == impl and r["ok"]:
            a = r.get("result", {}).get("accel")
            return None if a in NO_ACCEL_VALUES else str(a)
    return None


def ratios(med: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for row, cells in med.items():
        for num, den in RATIOS:
            a, b = cells.get(num, {}).get("pps"), cells.get(den, {}).get("pps")
            if a and b and b["median"] > 0:
                out.setdefault(row, {})[f"{num}/{den}"] = a["median"] / b["median"]
    return out


def _mpps(x: float) -> str:
    return f"{x / 1e6:.2f}"


def render(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                  enumerate(zip(cells, widths, strict=True))]  # fmt: skip
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded)

    sep = (
        "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2))
                       for i, w in enumerate(widths)) + "|"
        if markdown
        else "  ".join("-" * w for w in widths)
    )  # fmt: skip
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


@dataclass
class Results:
    """One run's results, as run.py measured them or as --json-out saved them."""

    meta: dict[str, Any]
    runs: list[dict[str, Any]]

    @property
    def rows(self) -> list[str]:
        """The rows asked for (a result saved before run.py recorded them: the
        rows that have runs, in table order)."""
        if "modes" in self.meta:
            return list(self.meta["modes"])
        return [r for r in ROWS if any(x["row"] == r for x in self.runs)]

    @property
    def impls(self) -> list[str]:
        """Columns: those run, less a pure-Python batch column that would only
        repeat the batch column (no accelerator was active)."""
        ran = [i for i in IMPLS if any(r["impl"] == i for r in self.runs)]
        return [i for i in ran if i != "batch-py" or accel_of(self.runs, "batch")
                or "batch-py" in self.meta.get("impls_asked", [])]

    def title(self, impl: str) -> str:
        a = accel_of(self.runs, impl)
        return IMPL_TITLES[impl] + (f" ({ACCEL_NAMES.get(a, a)})" if a else "")


def throughput_tables(res: Results, markdown: bool, cross_checks: bool = True) -> list[str]:
    med, rat = summarize(res.runs), None
    rat = ratios(med)
    rows = [r for r in res.rows if r in THROUGHPUT_ROWS]
    impls = res.impls
    if not rows:
        return []
    parts = []
    body = []
    for row in rows:
        cells = [ROW_TITLES[row]]
        for impl in impls:
            c = med.get(row, {}).get(impl)
            if c is None:
                cells.append("n/a")
            elif "pps" not in c:
                cells.append("failed")
            else:
                v = c["pps"]
                s = f"{_mpps(v['median'])} ({_mpps(v['min'])}-{_mpps(v['max'])})"
                if c["failed"]:
                    s += f" [{c['failed']} failed]"
                cells.append(s)
        body.append(cells)
    parts.append(f"Median Mpps (min-max), {FRAME_BYTES}-byte frames, batch "
                 f"{res.meta['settings']['batch']}:\n\n"
                 + render(["mode", *(res.title(i) for i in impls)], body, markdown))

    keys = [f"{n}/{d}" for n, d in RATIOS if n in impls and d in impls]
    if keys:
        body = []
        for row in rows:
            cells = [ROW_TITLES[row]]
            for k in keys:
                v = rat.get(row, {}).get(k)
                n, d = k.split("/")
                t = TARGETS.get((row, n, d))
                cells.append("n/a" if v is None else
                             f"{v:.2f}x" + (f" (target {t:g}x)" if t else ""))  # fmt: skip
            body.append(cells)
        names = {"c": "C", "batch": "batch", "batch-py": "batch (pure Python)",
                 "packet": "packet", "afpacket": "AF_PACKET"}
        parts.append("Ratios of medians:\n\n" + render(
            ["mode", *(f"{names[k.split('/')[0]]} / {names[k.split('/')[1]]}" for k in keys)],
            body, markdown))  # fmt: skip

    body = []
    for row in rows:
        for impl in impls:
            c = med.get(row, {}).get(impl)
            if not c or "pps" not in c:
                continue
            src, peer = c.get("source_pps"), c.get("peer_pps")
            if not src and not peer:
                continue
            body.append([
                f"{ROW_TITLES[row]} / {IMPL_TITLES[impl]}", _mpps(c["pps"]["median"]),
                _mpps(src["median"]) if src else "-", _mpps(peer["median"]) if peer else "-",
            ])  # fmt: skip
    if body and cross_checks:
        parts.append(
            "Cross-checks (median Mpps): the source's offered rate, and what the counting "
            "XDP drop at the far end received per second of the measured window:\n\n"
            + render(["run", "measured", "source offered", "peer received"], body, markdown)
        )
    return parts


def latency_table(res: Results, markdown: bool) -> list[str]:
    lat = summarize_latency(res.runs)
    rows = [r for r in res.rows if r in LATENCY_ROWS]
    impls = [i for i in res.impls if i != "afpacket"]
    if not rows:
        return []
    body = []
    for row in rows:
        for impl in impls:
            c = lat.get(row, {}).get(impl)
            if c is None:
                continue
            if "p50" not in c:
                body.append([f"{ROW_TITLES[row]} / {res.title(impl)}", "failed", "", "", "",
                             "", ""])
                continue
            body.append([f"{ROW_TITLES[row]} / {res.title(impl)}",
                         f"{c['p50']:.1f}", f"{c['p99']:.1f}", f"{c['p99.9']:.1f}",
                         f"{c['min']:.1f}", f"{c['pings']}",
                         f"{c['lost']}" + (f" [{c['failed']} failed]" if c["failed"] else "")])
    if not body:
        return []
    return ["Round-trip time of one 64-byte frame, microseconds (every run's samples "
            "pooled; pinger on the measured core, its echo, an l2fwd of the same "
            "implementation, on the source core):\n\n"
            + render(["ping-pong / implementation", "p50", "p99", "p99.9", "min", "pings",
                      "lost"], body, markdown)]


def method_table(res: Results, markdown: bool) -> list[str]:
    meth = summarize_method(res.runs)
    rows = [r for r in res.rows if r in THROUGHPUT_ROWS]
    have_sc = any(r.get("syscalls") for r in res.runs)
    cols = [("user_us", "user us/frame", "{:.3f}"), ("sys_us", "sys us/frame", "{:.3f}"),
            ("batch", "avg batch", "{:.1f}")]
    if have_sc:
        cols += [("syscalls", "syscalls/frame", "{:.3f}"),
                 ("frames_per_kick", "frames/kick", "{:.1f}"),
                 ("eagain_pct", "EAGAIN kicks %", "{:.0f}"),
                 ("polls", "polls/frame", "{:.3f}")]
    cols += [("ring_full_pct", "RX ring full %", "{:.2f}"),
             ("fill_empty_pct", "Fill empty %", "{:.2f}")]
    body = []
    for row in rows:
        for impl in res.impls:
            c = meth.get(row, {}).get(impl)
            if not c:
                continue
            body.append([f"{ROW_TITLES[row]} / {IMPL_TITLES[impl]}",
                         *(fmt.format(c[k]) if k in c else "-" for k, _, fmt in cols)])
    if not body:
        return []
    note = ("Where the time goes (medians over the runs; CPU time of the measured process "
            "in its window, per frame moved; " + (
                "syscalls counted by perf in the same window; "
                if have_sc else "no syscall counts: run with --method; ")
            + "RX ring full / Fill empty: XDP_STATISTICS per 100 frames):\n\n")
    return [note + render(["run", *(t for _, t, _ in cols)], body, markdown)]


def tables(res: Results, markdown: bool, full: bool = True) -> str:
    """Every table: full (terminal, bench/README.md), or the short set for the
    top-level README (throughput, ratios, latency)."""
    parts = throughput_tables(res, markdown, cross_checks=full)
    parts += latency_table(res, markdown)
    if full:
        parts += method_table(res, markdown)
    return "\n\n".join(parts)


# --- the table in the READMEs (--write) -----------------------------------------------

MARK_START = "<!-- bench/run.py table: start -->"
MARK_END = "<!-- bench/run.py table: end -->"


def marks(batch: int) -> tuple[str, str]:
    """The marker comments a run writes between: the default batch's block,
    or a block of its own for another batch size (so the README can show the
    table at the default batch and at batch 64 side by side)."""
    if batch == BATCH:
        return MARK_START, MARK_END
    return (f"<!-- bench/run.py table (batch {batch}): start -->",
            f"<!-- bench/run.py table (batch {batch}): end -->")
WRITE_TARGETS = (HERE.parent / "README.md", HERE / "README.md")


def header(meta: dict[str, Any]) -> str:
    """Where and how the figures were taken, from the run's own record."""
    st = meta["settings"]
    lb = meta.get("load_before") or []
    return (
        f"Measured {meta['date']} on Linux {meta['kernel']} ({meta['machine']}), "
        f"CPU {meta.get('cpu_model', 'unknown')}, {meta['cpus']} cores, "
        f"Python {meta['python']}, xdp-socket commit {meta.get('commit') or 'unknown'}; "
        f"load average before the run {' / '.join(f'{x:.2f}' for x in lb) or 'unknown'}.\n"
        f"Command: `{meta['command']}`.\n"
        f"Settings, the same for every AF_XDP program: {st['frame_bytes']}-byte frames, "
        f"**batch {st['batch']}**, rings {st['ring_entries']}, UMEM {st['umem_frames']} x "
        f"{st['umem_frame_size']}, copy mode, native XDP, need_wakeup on, TX budget "
        f"{st.get('tx_budget') or 'the kernel default (32)'}; "
        f"{meta['runs']} runs x {meta['duration']:g} s per cell, interleaved; source on "
        f"core {meta['source_core']}, measured program on core {meta['measured_core']}."
    )


def block(res: Results, full: bool) -> str:
    start, end = marks(res.meta["settings"]["batch"])
    return (f"{start}\n<!-- written by bench/run.py --write from one run; "
            f"do not edit by hand -->\n\n{header(res.meta)}\n\n"
            f"{tables(res, markdown=True, full=full)}\n\n{end}")


def write_block(path: Path, text: str, batch: int = BATCH) -> None:
    """Replace what lies between the markers in ``path`` (both must be there)."""
    start, end = marks(batch)
    old = path.read_text()
    i, j = old.find(start), old.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{path}: no '{start}' ... '{end}' block to replace")
    path.write_text(old[:i] + text + old[j + len(end):])


def write_tables(res: Results, paths: list[Path]) -> None:
    """The top-level README gets the short set, every other file the full one."""
    for path in paths:
        top_level = path.name == "README.md" and path.resolve().parent.name != "bench"
        write_block(path, block(res, full=not top_level), res.meta["settings"]["batch"])


# --- the latency histogram (--plot) -------------------------------------------------


def plot_latency(res: Results, path: Path) -> bool:
    """One panel per latency row, one step histogram per implementation, on a
    log time axis (the tail spans orders of magnitude). False if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in res.rows if r in LATENCY_ROWS]
    samples: dict[tuple[str, str], list[float]] = {}
    for r in res.runs:
        if r["ok"] and r["row"] in rows:
            samples.setdefault((r["row"], r["impl"]), []).extend(
                r.get("result", {}).get("samples_us") or [])
    samples = {k: v for k, v in samples.items() if v}
    if not samples:
        return False
    lo = max(min(min(v) for v in samples.values()), 0.1)
    hi = max(max(v) for v in samples.values())
    edges = [lo * (hi / lo) ** (i / 120) for i in range(121)] if hi > lo else [lo, lo * 1.01]
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 3.2 * len(rows)), squeeze=False)
    for ax, row in zip(axes[:, 0], rows, strict=True):
        for impl in res.impls:
            v = samples.get((row, impl))
            if v:
                ax.hist(v, bins=edges, histtype="step", linewidth=1.4,
                        label=f"{res.title(impl)} (p50 {percentile(sorted(v), 0.5):.1f} us)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(ROW_TITLES[row])
        ax.set_xlabel("round-trip time (us)")
        ax.set_ylabel("pings")
        ax.legend(fontsize=8)
    fig.suptitle(f"xdp-socket ping-pong, {res.meta['date']}, Linux {res.meta['kernel']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- main ---------------------------------------------------------------------------


def build_c() -> str | None:
    """Build the C reference; returns xsk_ref's path, or None after explaining."""
    r = subprocess.run([str(REF / "build.sh")], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        print("run.py: the C reference did not build; install its build dependencies with\n"
              "  apt-get install gcc libxdp-dev libbpf-dev pkg-config\n"
              "or run without the C column: --no-c", file=sys.stderr)  # fmt: skip
        return None
    for line in r.stdout.splitlines():
        if line.endswith("/xsk_ref"):
            return line
    print("run.py: build.sh did not print the xsk_ref path", file=sys.stderr)
    return None


def _csv(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"choose from {','.join(allowed)} (comma-separated), got {text!r}")
        return [a for a in allowed if a in items]  # table order

    return parse


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"need seconds, got {text!r}") from None
    if not 0.2 <= v <= 60:
        raise argparse.ArgumentTypeError("the window must be 0.2 .. 60 s")
    return v


def _runs(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"need a count, got {text!r}") from None
    if not 1 <= v <= 50:
        raise argparse.ArgumentTypeError("runs must be 1 .. 50")
    return v


def _count(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"need a count, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be {lo} .. {hi}")
        return v

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-n", "--runs", type=_runs, default=None, help="repeats per cell (default 5)")
    p.add_argument("-d", "--duration", type=_seconds, default=None,
                   help="measurement window in seconds (default 3)")
    p.add_argument("--modes", type=_csv(ROWS), default=None,
                   help=f"rows to run (default {','.join(DEFAULT_ROWS)}; also: samecore)")
    p.add_argument("--impls", type=_csv(IMPLS), default=None,
                   help="columns to run (default c,batch,packet,afpacket, and batch-py when "
                        "the batch API reports an accelerator)")
    p.add_argument("--no-c", action="store_true", help="skip the C libxdp column (no build)")
    p.add_argument("--quick", action="store_true",
                   help="a fast sanity run: -n 1 -d 1, no samecore rows, 1000 pings")
    p.add_argument("--cores", default=None, metavar="SRC,DUT",
                   help="source core and measured core (default 0,1)")
    p.add_argument("-b", "--batch", type=_count(1, 2048, "--batch"), default=BATCH,
                   help=f"descriptors per batch for every implementation (default {BATCH})")
    p.add_argument("--tx-budget", type=_count(1, 2048, "--tx-budget"), default=None,
                   help="XDP_MAX_TX_SKB_BUDGET (frames per copy-mode kick) for C and xdp-socket "
                        "alike (default: the kernel's, 32)")
    p.add_argument("--c-batch-work-ns", type=_count(0, 100_000_000, "--c-batch-work-ns"),
                   default=0, metavar="NS",
                   help="an experiment, not a comparison: the C rxdrop spins NS ns on every "
                        "batch, as a slower receiver loop would (bench/README.md, 'Same core, "
                        "poll'); refuses --write")
    p.add_argument("--pings", type=_count(1, 1000000, "--pings"), default=None,
                   help=f"latency rows: round trips recorded per run (default {PINGS})")
    p.add_argument("--method", action="store_true",
                   help="also count the measured programs' syscalls with perf (kicks, EAGAIN "
                        "kicks, polls; slows syscall-heavy programs slightly)")
    p.add_argument("--json-out", type=Path, default=None, metavar="FILE",
                   help="write every raw result, the medians and the ratios here")
    p.add_argument("--from-json", type=Path, default=None, metavar="FILE",
                   help="measure nothing: render (and --write, --plot) a saved --json-out")
    p.add_argument("--write", action="store_true",
                   help="write the tables into README.md and bench/README.md (between their "
                        "marker comments)")
    p.add_argument("--write-to", type=Path, action="append", default=[], metavar="FILE",
                   help="write the tables into FILE instead (repeatable; a dry run on copies)")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="latency histogram as a PNG (needs matplotlib: pip install "
                        "'xdp-socket[bench]')")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per run on stderr")
    args = p.parse_args(argv)
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib: pip install 'xdp-socket[bench]' "
                    "(or pip install matplotlib)")
    if args.c_batch_work_ns and (args.write or args.write_to):
        p.error("--c-batch-work-ns makes the C column an experiment: not for --write")
    if args.c_batch_work_ns:
        IMPL_TITLES["c"] = f"C libxdp, +{args.c_batch_work_ns} ns per batch"
    # (checked before a run, so a missing block does not waste it; --from-json
    # writes the saved run's batch size)
    start, end = marks(_saved_batch(args.from_json) if args.from_json else args.batch)
    for path in ([*WRITE_TARGETS] if args.write else []) + args.write_to:
        text = path.read_text() if path.is_file() else ""
        if start not in text or end not in text:
            p.error(f"{path}: no '{start}' ... '{end}' block to write into")
    if args.runs is None:
        args.runs = 1 if args.quick else 5
    if args.duration is None:
        args.duration = 1.0 if args.quick else 3.0
    if args.pings is None:
        args.pings = 1000 if args.quick else PINGS
    if args.modes is None:
        args.modes = [r for r in DEFAULT_ROWS if not (args.quick and r.startswith("samecore"))]
    args.impls_asked = args.impls or []
    if args.impls is None:
        args.impls = list(IMPLS)
    if args.no_c:
        args.impls = [i for i in args.impls if i != "c"]
    cpus = sorted(os.sched_getaffinity(0))
    if args.cores is None:
        args.cores = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    else:
        try:
            a, b = (int(x) for x in args.cores.split(","))
        except ValueError:
            p.error(f"--cores needs two core numbers like 0,1, got {args.cores!r}")
        if a not in cpus or b not in cpus:
            p.error(f"--cores {a},{b}: this process may use cores {cpus}")
        args.cores = (a, b)
    return args


def _saved_batch(path: Path) -> int:
    """The batch size a saved --json-out run was taken at (the default if the
    file cannot tell; main() reports a broken file)."""
    try:
        return int(json.loads(path.read_text())["meta"]["settings"]["batch"])
    except (OSError, ValueError, KeyError, TypeError):
        return BATCH


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    old = {s: signal.signal(s, _raise_interrupted)
           for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}  # fmt: skip
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    """The checkout's commit, "+dirty" when tracked files differ from it."""
    def git(*a: str) -> str | None:
        with contextlib.suppress(OSError):
            r = subprocess.run(["git", "-C", str(HERE.parent), *a], capture_output=True,
                               text=True, check=False)
            if r.returncode == 0:
                return r.stdout.strip()
        return None

    head = git("rev-parse", "--short", "HEAD")
    if head and git("status", "--porcelain", "--untracked-files=no"):
        head += "+dirty"
    return head


def output(res: Results, args: argparse.Namespace) -> None:
    """Print the tables; write them (--write, --write-to) and the plot (--plot)."""
    print(tables(res, args.markdown))
    m = res.meta
    print(f"\nload average before {m['load_before']}, after {m['load_after']}; "
          f"{m['runs']} runs x {m['duration']:g} s; batch {m['settings']['batch']}; source "
          f"core {m['source_core']}, measured core {m['measured_core']}; kernel {m['kernel']}")
    targets = ([*WRITE_TARGETS] if args.write else []) + args.write_to
    if targets:
        write_tables(res, targets)
        _log("run.py: tables written into " + ", ".join(str(t) for t in targets))
    if args.plot is not None:
        if plot_latency(res, args.plot):
            _log(f"run.py: latency histogram written to {args.plot}")
        else:
            _log("run.py: --plot: no latency samples (run the latency rows)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        try:
            data = json.loads(args.from_json.read_text())
            res = Results(data["meta"], data["runs"])
            output(res, args)
        except (OSError, ValueError, KeyError) as e:
            print(f"run.py: --from-json {args.from_json}: {e}", file=sys.stderr)
            return 1
        return 0
    if os.geteuid() != 0:
        print("run.py: needs root (network namespaces, AF_XDP, BPF)", file=sys.stderr)
        return 1
    xsk_ref = None
    if "c" in args.impls:
        xsk_ref = build_c()
        if xsk_ref is None:
            return 1
    if not shutil.which("ip"):
        print("run.py: note: iproute2 ('ip') not found; not needed, but handy to inspect",
              file=sys.stderr)
    commit = git_commit()

    from xdp_socket import testing

    # Everything below lives in a namespace that dies with this process and its
    # children: the veth pair, the XDP programs, the sockets.
    testing.enter_private_netns()

    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        # Two busy cores are what this measures: anything else running skews it.
        _log(f"run.py: warning: load average {load_before[0]:.2f}; results are only "
             "comparable on an otherwise idle machine")
    started = datetime.datetime.now(datetime.timezone.utc)
    procs = Procs()
    records: list[dict[str, Any]] = []
    interrupted = False
    # batch-py is worth a column only when the batch path is accelerated
    auto_py = "batch-py" not in args.impls_asked
    with tempfile.TemporaryDirectory(prefix="xdp-bench-") as tmp, _signals_interrupt():
        try:
            perf = setup_perf(Path(tmp)) if args.method else None
            with testing.veth_pair("bencha", "benchb", queues=1) as link:
                s = Setup(link.a, link.b, link.a_index, link.b_index, args.duration,
                          args.cores[0], args.cores[1], xsk_ref, args.batch, args.pings,
                          perf, args.tx_budget, args.c_batch_work_ns)  # fmt: skip
                for row in args.modes:
                    plans = [pl for impl in args.impls if (pl := plan(row, impl, s))]
                    # Round robin over the implementations, so that a drift in the
                    # machine's state (other load, NAPI placement) hits every column
                    # alike instead of one column's whole series.
                    for run in range(1, args.runs + 1):
                        for pl in plans:
                            if pl.impl == "batch-py" and auto_py and not accel_of(records,
                                                                                  "batch"):
                                continue
                            rec = run_one(pl, run, s, procs)
                            records.append(rec)
                            if args.verbose or not rec["ok"]:
                                what = (f"{rec['pps'] / 1e6:.3f} Mpps" if rec["ok"]
                                        else f"FAILED: {rec.get('error')}")  # fmt: skip
                                if rec["ok"] and pl.row in LATENCY_ROWS:
                                    rtt = rec["result"].get("rtt_us", {})
                                    what = (f"p50 {rtt.get('p50', 0):.1f} us, "
                                            f"p99 {rtt.get('p99', 0):.1f} us")
                                _log(f"run.py: {row:<13} {pl.impl:<9} run {run}: {what}")
                            time.sleep(SETTLE)
        except Interrupted as e:
            interrupted = True
            _log(f"run.py: {e}: stopping")
        finally:
            procs.stop_all()
    load_after = os.getloadavg()

    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit,
        "command": " ".join(["python3", "bench/run.py", *(argv if argv is not None
                                                           else sys.argv[1:])]),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "runs": args.runs,
        "duration": args.duration,
        "modes": args.modes,
        "impls_asked": args.impls_asked,
        "method": args.method,
        "pings": args.pings,
        "source_core": args.cores[0],
        "measured_core": args.cores[1],
        "settings": {"frame_bytes": FRAME_BYTES, "batch": args.batch, "umem_frames": 4096,
                     "umem_frame_size": 4096, "ring_entries": 2048, "copy_mode": True,
                     "need_wakeup": True, "xdp_mode": "native", "tx_budget": args.tx_budget},
        "interrupted": interrupted,
    }  # fmt: skip
    res = Results(meta, records)
    if args.json_out is not None:
        med = summarize(records)
        args.json_out.write_text(json.dumps(
            {"meta": meta, "medians": med, "ratios": ratios(med),
             "latency": summarize_latency(records), "method": summarize_method(records),
             "runs": records}, indent=1) + "\n")
    if interrupted:
        print(tables(res, args.markdown))
        return 130
    output(res, args)
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
