#!/usr/bin/env python3
"""Side-by-side benchmark: C libxdp, xdp-socket (batch and per-packet API) and
plain-Python AF_PACKET, in one run, on one veth pair in a private namespace.

    python3 bench/run.py [-n 5] [-d 3] [--modes rxdrop,txonly,l2fwd,samecore]
                         [--impls c,batch,packet,afpacket] [--no-c] [--quick]
                         [--json-out bench/results.json] [--markdown]

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

Same settings for every AF_XDP program: UMEM 4096 frames x 4096 bytes, all rings
2048, copy mode, native XDP, need_wakeup on, batch 64, 64-byte frames (no FCS).

Runs are interleaved (run 1 of every implementation, then run 2, ...), so that a
drift in the machine's state affects every column alike.

Output: a table of median Mpps (min-max) per row and implementation, a table of
ratios, and the cross-check rates (what the source offered, what the drop peer
received); all raw results, medians and ratios as JSON with --json-out.
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
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REF = HERE / "ref"
PY = sys.executable

IMPLS = ("c", "batch", "packet", "afpacket")
IMPL_TITLES = {
    "c": "C libxdp",
    "batch": "xdp-socket batch",
    "packet": "xdp-socket packet",
    "afpacket": "Python AF_PACKET",
}
ROWS = ("rxdrop", "txonly", "l2fwd", "samecore", "samecore-poll")
ROW_TITLES = {
    "rxdrop": "rxdrop",
    "txonly": "txonly",
    "l2fwd": "l2fwd",
    "samecore": "rxdrop, same core",
    "samecore-poll": "rxdrop, same core, poll",
}
# (numerator, denominator) of the ratio table, with the targets where it
# gives one. Shown for context only: nothing here is tuned to them.
RATIOS = (
    ("batch", "c"),
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
BATCH = 64
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

    def start(self, argv: list[str], cpu: int | None) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_child_setup(cpu),
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


def _xs(mode: str, iface: str, api: str, s: Setup, poll: bool = False) -> list[str]:
    return [
        PY, "-m", "xdp_socket", "bench", mode, "-i", iface, "-q", "0",
        "-d", f"{s.duration:g}", "-w", f"{FIRST_PACKET_WAIT:g}",
        "-b", str(BATCH), "-s", str(FRAME_BYTES), "--api", api,
        "--xdp-mode", "native", "--copy", "--quiet", "--json",
    ] + (["--poll"] if poll else [])  # fmt: skip


def _c(mode: str, iface: str, s: Setup, duration: float | None = None,
       poll: bool = False) -> list[str]:
    assert s.xsk_ref is not None
    return [
        s.xsk_ref, mode, "-i", iface, "-q", "0",
        "-d", f"{duration if duration is not None else s.duration:g}",
        "-w", f"{FIRST_PACKET_WAIT:g}", "-b", str(BATCH), "-s", str(FRAME_BYTES),
        "--xdp-mode", "native", "--quiet",
    ] + (["--poll"] if poll else [])  # fmt: skip


def _afpacket(mode: str, iface: str, s: Setup) -> list[str]:
    return [
        PY, str(REF / "afpacket_ref.py"), mode, "-i", iface,
        "-d", f"{s.duration:g}", "-w", f"{FIRST_PACKET_WAIT:g}",
        "-b", str(BATCH), "-s", str(FRAME_BYTES), "--quiet",
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


def plan(row: str, impl: str, s: Setup) -> Plan | None:
    """The run for one cell, or None where the cell does not exist."""
    if impl == "c" and s.xsk_ref is None:
        return None
    samecore = row.startswith("samecore")
    if samecore and impl == "afpacket":
        return None  # its skb-path source is itself an AF_XDP program: not comparable
    poll = row == "samecore-poll"
    mode = "rxdrop" if samecore else row
    iface = s.a if row == "txonly" else s.b
    measured = {
        "c": lambda: _c(mode, iface, s, poll=poll),
        "batch": lambda: _xs(mode, iface, "batch", s, poll),
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
    _wait_no_xdp((s.a_index, s.b_index))
    with contextlib.ExitStack() as stack:
        drop = stack.enter_context(xdp_drop(p.drop_iface)) if p.drop_iface else None
        measured = procs.start(p.measured, p.measured_cpu)
        source = None
        if p.source is not None:
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


def tables(med: dict[str, dict[str, dict[str, Any]]], rat: dict[str, dict[str, float]],
           rows: list[str], impls: list[str], markdown: bool) -> str:
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
    parts.append("Median Mpps (min-max), 64-byte frames:\n\n"
                 + render(["mode", *(IMPL_TITLES[i] for i in impls)], body, markdown))

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
        names = {"c": "C", "batch": "batch", "packet": "packet", "afpacket": "AF_PACKET"}
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
    if body:
        parts.append(
            "Cross-checks (median Mpps): the source's offered rate, and what the counting "
            "XDP drop at the far end received per second of the measured window:\n\n"
            + render(["run", "measured", "source offered", "peer received"], body, markdown)
        )
    return "\n\n".join(parts)


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
                   help=f"rows to run (default all: {','.join(ROWS)})")
    p.add_argument("--impls", type=_csv(IMPLS), default=list(IMPLS),
                   help=f"columns to run (default all: {','.join(IMPLS)})")
    p.add_argument("--no-c", action="store_true", help="skip the C libxdp column (no build)")
    p.add_argument("--quick", action="store_true",
                   help="a fast sanity run: -n 1 -d 1 and no samecore rows unless asked")
    p.add_argument("--cores", default=None, metavar="SRC,DUT",
                   help="source core and measured core (default 0,1)")
    p.add_argument("--json-out", type=Path, default=None, metavar="FILE",
                   help="write every raw result, the medians and the ratios here")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per run on stderr")
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 5
    if args.duration is None:
        args.duration = 1.0 if args.quick else 3.0
    if args.modes is None:
        args.modes = [r for r in ROWS if not (args.quick and r.startswith("samecore"))]
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    with _signals_interrupt():
        try:
            with testing.veth_pair("bencha", "benchb", queues=1) as link:
                s = Setup(link.a, link.b, link.a_index, link.b_index, args.duration,
                          args.cores[0], args.cores[1], xsk_ref)  # fmt: skip
                for row in args.modes:
                    plans = [pl for impl in args.impls if (pl := plan(row, impl, s))]
                    # Round robin over the implementations, so that a drift in the
                    # machine's state (other load, NAPI placement) hits every column
                    # alike instead of one column's whole series.
                    for run in range(1, args.runs + 1):
                        for pl in plans:
                            rec = run_one(pl, run, s, procs)
                            records.append(rec)
                            if args.verbose or not rec["ok"]:
                                what = (f"{rec['pps'] / 1e6:.3f} Mpps" if rec["ok"]
                                        else f"FAILED: {rec.get('error')}")  # fmt: skip
                                _log(f"run.py: {row:<13} {pl.impl:<9} run {run}: {what}")
                            time.sleep(SETTLE)
        except Interrupted as e:
            interrupted = True
            _log(f"run.py: {e}: stopping")
        finally:
            procs.stop_all()
    load_after = os.getloadavg()

    med = summarize(records)
    rat = ratios(med)
    print(tables(med, rat, args.modes, args.impls, args.markdown))
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join(["python3", "bench/run.py", *(argv if argv is not None
                                                           else sys.argv[1:])]),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "runs": args.runs,
        "duration": args.duration,
        "source_core": args.cores[0],
        "measured_core": args.cores[1],
        "settings": {"frame_bytes": FRAME_BYTES, "batch": BATCH, "umem_frames": 4096,
                     "umem_frame_size": 4096, "ring_entries": 2048, "copy_mode": True,
                     "need_wakeup": True, "xdp_mode": "native"},
        "interrupted": interrupted,
    }  # fmt: skip
    print(f"\nload average before {meta['load_before']}, after {meta['load_after']}; "
          f"{args.runs} runs x {args.duration:g} s; source core {args.cores[0]}, "
          f"measured core {args.cores[1]}; kernel {meta['kernel']}")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(
            {"meta": meta, "medians": med, "ratios": rat, "runs": records}, indent=1) + "\n")
    if interrupted:
        return 130
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
