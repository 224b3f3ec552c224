#!/usr/bin/env python3
"""Multi-queue scaling of rxdrop: xdp-socket (a worker process per queue,
``xdp-socket bench rxdrop -q 0-1``) and the C reference (``xsk_ref rxdrop``,
one process per queue), with 1 and 2 queues, in one run.

    python3 bench/scaling.py [-n 3] [-d 3] [--no-c] [--no-pin]   (root)

Set-up: a two-queue veth ``A -> B`` in a private namespace, 64-byte frames
from ``xdp-socket gen`` (BPF live frames) on A, the receivers on B with the
XDP program in native mode. On veth the receiving side's kernel work (NAPI,
the XDP program, the copy into the UMEM) runs on the *sending* core, and a
frame sent on CPU c arrives on RX queue c (mod the queue count), so where the
generators run decides which queue gets the traffic:

* 1 queue: one generator on CPU 0 (queue 0); the receiver on CPU 1.
* 2 queues: a generator on CPU 0 (queue 0) and one on CPU 1 (queue 1); the
  receiver of queue q on CPU q, next to its generator (xdp-socket bench pins
  its workers so; the C processes are started pinned so).

On a 2-core machine the 2-queue case therefore shares each core between a
generator, the kernel's receive work for its queue and a receiver, while the
1-queue case leaves a whole core to the receiver: the figure shows what a
second queue gives when it costs a core, not how far the design scales (see
bench/README.md, "Several queues"). Each receiver measures from its own first
packet for -d seconds; a row's rate is the sum of its receivers' rates.

Cells run interleaved (-n rounds of every cell); the table gives the median
and the range. This script only prints the table: figures for bench/README.md
come from a quiet machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as benchrun  # noqa: E402  (bench/run.py: Procs, build_c, JSON parsing)

PY = sys.executable
SETUPS = (1, 2)  # queue counts


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _ours(b: str, nq: int, args: argparse.Namespace) -> list[list[str]]:
    """xdp-socket: one command; with 2 queues it forks a worker per queue."""
    return [[
        PY, "-m", "xdp_socket", "bench", "rxdrop", "-i", b, "-q", "0" if nq == 1 else "0-1",
        "-d", f"{args.duration:g}", "-w", f"{benchrun.FIRST_PACKET_WAIT:g}",
        "-b", str(args.batch), "-s", str(benchrun.FRAME_BYTES), "--api", "batch",
        "--xdp-mode", "native", "--copy", "--quiet", "--json",
    ] + (["--no-pin"] if args.no_pin else []) + (["--poll"] if args.poll else [])]  # fmt: skip


def _c(b: str, nq: int, args: argparse.Namespace, xsk_ref: str) -> list[list[str]]:
    """The C reference: one process per queue."""
    return [[
        xsk_ref, "rxdrop", "-i", b, "-q", str(q), "-d", f"{args.duration:g}",
        "-w", f"{benchrun.FIRST_PACKET_WAIT:g}", "-b", str(args.batch),
        "-s", str(benchrun.FRAME_BYTES), "--xdp-mode", "native", "--quiet",
        # libxdp's own program: the first process loads it, the second finds it
        # on the interface and adds its socket to its map (xsk_ref's own
        # program, the default, is one per process: the second attach is EBUSY)
        "--prog", "libxdp",
    ] + (["--poll"] if args.poll else []) for q in range(nq)]  # fmt: skip


def _gen(a: str, cpu: int, args: argparse.Namespace) -> list[str]:
    return [PY, "-m", "xdp_socket", "gen", "-i", a, "-s", str(benchrun.FRAME_BYTES),
            "-d", f"{args.duration + benchrun.SOURCE_MARGIN:g}", "--cpu", str(cpu), "--json"]


def run_cell(impl: str, nq: int, a: str, b: str, b_index: int, args: argparse.Namespace,
             xsk_ref: str | None, procs: benchrun.Procs) -> dict[str, Any]:
    """One measurement: receivers on B, then generators on A; the sum of the
    receivers' rates."""
    receivers = _ours(b, nq, args) if impl == "xdp-socket" else _c(b, nq, args, xsk_ref or "")
    # 1 queue: the receiver on CPU 1 (the generator has CPU 0). 2 queues: the
    # C process of queue q on CPU q; ours pins its own workers (CPU q for queue
    # q), so the parent is left unpinned.
    if nq == 1:
        cpus: list[int | None] = [1]
    else:
        cpus = [None] if impl == "xdp-socket" else list(range(nq))
    benchrun._wait_no_xdp((b_index,))
    started = []
    for argv, cpu in zip(receivers, cpus, strict=True):
        # one after the other: the first attaches the program, the next ones
        # must find it there (two loading at once would race for the attach)
        started.append(procs.start(argv, None if args.no_pin else cpu))
        benchrun._wait_xdp(b_index, started[-1])
        time.sleep(0.3)  # its socket enters the map right after the attach
    gens = [procs.start(_gen(a, cpu, args), cpu) for cpu in range(nq)]
    timeout = args.duration + benchrun.FIRST_PACKET_WAIT + 20
    outs = [procs.finish(p, timeout) for p in started]
    for g in gens:
        if g.poll() is None:
            g.send_signal(2)  # SIGINT: the generator prints its JSON and stops
        procs.finish(g, 5.0)
    rec: dict[str, Any] = {"impl": impl, "queues": nq, "ok": True, "per_receiver": []}
    total = 0.0
    for code, out, err in outs:
        res = benchrun.parse_json_output(out)
        if res is None or code not in (0, 130):
            rec["ok"] = False
            rec["error"] = (err.strip().splitlines() or [f"exit status {code}"])[-1]
            return rec
        total += float(res["pps"])
        rec["per_receiver"].append(float(res["pps"]))
    rec["pps"] = total
    return rec


def table(results: dict[tuple[str, int], list[dict[str, Any]]], impls: list[str]) -> str:
    def cell(impl: str, nq: int) -> str:
        ok = [r["pps"] / 1e6 for r in results.get((impl, nq), []) if r.get("ok")]
        if not ok:
            return "-"
        return f"{statistics.median(ok):.2f} ({min(ok):.2f}-{max(ok):.2f}) Mpps"

    lines = ["| setup | " + " | ".join(impls) + " |", "|---" * (len(impls) + 1) + "|"]
    for nq in SETUPS:
        what = "1 queue, 1 receiver" if nq == 1 else f"{nq} queues, {nq} receivers"
        lines.append(f"| {what} | " + " | ".join(cell(i, nq) for i in impls) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--runs", type=int, default=3, help="rounds of every cell (default 3)")
    p.add_argument("-d", "--duration", type=float, default=3.0,
                   help="seconds each receiver measures (default 3)")
    p.add_argument("-b", "--batch", type=int, default=benchrun.BATCH,
                   help=f"descriptors per batch (default {benchrun.BATCH}, as bench/run.py)")
    p.add_argument("--no-c", action="store_true", help="leave out the C reference")
    p.add_argument("--no-pin", action="store_true", help="pin no receiver to a CPU")
    p.add_argument("--poll", action="store_true",
                   help="receivers wait in poll(2) when their ring is empty (both "
                        "implementations): with 2 queues each receiver shares its core "
                        "with a generator, and a spinning one takes the core from it"),
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        _log("scaling.py: needs root (network namespaces, AF_XDP, BPF)")
        return 1
    if len(os.sched_getaffinity(0)) < 2:
        _log("scaling.py: needs CPUs 0 and 1")
        return 1
    xsk_ref = None if args.no_c else benchrun.build_c()
    impls = ["xdp-socket"] + (["C xsk_ref"] if xsk_ref else [])
    from xdp_socket import testing

    testing.enter_private_netns()
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    procs = benchrun.Procs()
    load_before = os.getloadavg()
    try:
        with benchrun._signals_interrupt(), testing.veth_pair("scla", "sclb", queues=2) as link:
            for run in range(1, args.runs + 1):
                for nq in SETUPS:
                    for impl in impls:
                        rec = run_cell("xdp-socket" if impl == "xdp-socket" else "c", nq,
                                       link.a, link.b, link.b_index, args, xsk_ref, procs)
                        results.setdefault((impl, nq), []).append(rec)
                        state = (f"{rec['pps'] / 1e6:.2f} Mpps "
                                 f"({' + '.join(f'{x / 1e6:.2f}' for x in rec['per_receiver'])})"
                                 if rec["ok"] else f"FAILED: {rec.get('error')}")
                        _log(f"run {run}: {impl}, {nq} queue(s): {state}")
    except benchrun.Interrupted:
        _log("scaling.py: interrupted; the table has what was measured")
    finally:
        procs.stop_all()
    print(table(results, impls))
    print(f"\nload average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"{args.runs} runs of {args.duration:g} s, median (min-max)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
