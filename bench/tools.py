#!/usr/bin/env python3
"""Side-by-side benchmark of the tools: ``xdp-socket capture`` vs tcpdump and
``xdp-socket replay`` vs tcpreplay, on one veth pair in a private namespace.

    python3 bench/tools.py [-n 3] [-d 3] [--frames 1000000] [--rows ROWS]
                           [--no-c] [--write-readme] [--json-out FILE]

Like bench/run.py (whose child-process handling it reuses), the script moves
into a fresh network + mount namespace, makes one single-queue veth pair
(``A`` = traffic side, ``B`` = side under test), pins every process it starts
(source on core 0, tool on core 1), bounds every run in time and packets, and
kills its children with itself. Files go to /dev/shm (tmpfs), so the disk is
not what is measured. Rows (64-byte frames):

  capture-skb   a C AF_XDP txonly on A (xsk_ref; our ``bench txonly`` with
                --no-c) sends for -d seconds through the skb path; tcpdump
                -B 65536 and ``capture --xdp-mode native`` on B write a pcap.
                Measured: packets in the file / packets the source sent, and
                the kernel's drops.
  capture-live  ``xdp-socket gen`` (XDP live frames) on A for -d seconds;
                ``capture`` on B writes a pcap. Reference: the C rxdrop
                (xsk_ref) on the same stream. tcpdump sees none of these
                frames (veth hands redirected frames only to an XDP program).
  replay-top    a pcap of --frames frames sent from A with ``--topspeed``,
                counted at B by a counting XDP drop; rate = frames counted /
                wall time of the whole command (start-up included).
  replay-top-rx the same, counted by B's own rx_packets counter with nothing
                attached to B (the frames go up B's stack and are dropped
                there). On veth the peer's receive work runs on the sending
                core, inside the replaying command's time: a counting XDP
                program makes veth copy every skb-path frame into a page-pool
                page first (skb_pp_cow_data) and run the program, per frame
                work that both tools pay, so the two rows give different
                ratios (bench/README.md has the figures).
  replay-ng-rx  replay-top-rx with the same frames in a pcapng file (one
                Enhanced Packet Block each), for both tools.
  replay-pps    the same file at ``--pps 200000`` (5 s for a million frames):
                the rate the command reports (sent / its own seconds), its
                error against 200000, and what the peer counted.

Each cell runs -n times, interleaved; the table shows medians (min-max).
--write-readme replaces the tools section of bench/README.md (between the
markers) with the table, date, kernel, CPU, load average and command.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The tools start as an installed package does: with compiled bytecode. A
# development shell may set PYTHONDONTWRITEBYTECODE, and then every run of
# `python -m xdp_socket` compiles the whole package again (~0.15 s of the
# replay row's whole-command time that no user pays). The cache goes to a
# directory of its own, not into the source tree; main() warms it once.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", "/tmp/xdp-socket-bench-pycache")

import argparse
import datetime
import json
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as benchrun  # noqa: E402  (bench/run.py: Procs, build_c, JSON parsing)

PY = sys.executable
XS = [PY, "-m", "xdp_socket"]
SHM = Path("/dev/shm")
ROWS = ("capture-skb", "capture-live", "replay-top", "replay-top-rx", "replay-ng-rx",
        "replay-pps")
PPS_TARGET = 200_000
FRAME_BYTES = 64
README_START = "<!-- tools-table: written by bench/tools.py --write-readme -->"
README_END = "<!-- /tools-table -->"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def count_packets(path: Path) -> int:
    """Records in a capture file, read in batches (fast for millions)."""
    from xdp_socket.pcap import open_capture

    with open_capture(str(path)) as r:
        return sum(len(b.lens) for b in r.batches(4096))


def rx_packets(ifname: str) -> int:
    """The interface's rx_packets counter, as `ip -s link` reports it."""
    out = subprocess.run(["ip", "-s", "-j", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def to_pcapng(src: Path, dst: Path) -> None:
    """The same packets and timestamps as a pcapng file (one EPB each)."""
    from xdp_socket.pcap import PcapngWriter, open_capture

    with open_capture(str(src)) as r, PcapngWriter(str(dst)) as w:
        for b in r.batches(65536):
            w.write_batch(b.data, b.lens, b.timestamps_ns)


def make_replay_file(path: Path, frames: int) -> None:
    import numpy as np

    from xdp_socket import testing
    from xdp_socket.pcap import PcapWriter

    base = np.frombuffer(testing.make_frame(payload=bytes(FRAME_BYTES - 14)), np.uint8)
    with PcapWriter(str(path)) as w:
        step = 65536
        for start in range(0, frames, step):
            k = min(step, frames - start)
            rows = np.tile(base, (k, 1))
            # a sequence number in the payload, so a sample can be checked
            rows[:, 14:18] = (np.arange(start, start + k, dtype=">u4")
                              .view(np.uint8).reshape(k, 4))
            ts = 1_700_000_000_000_000_000 + np.arange(start, start + k, dtype=np.int64) * 1000
            w.write_batch(rows, np.full(k, FRAME_BYTES), ts)


class Bench:
    def __init__(self, args: argparse.Namespace, a: str, b: str, a_index: int,
                 b_index: int, xsk_ref: str | None) -> None:
        self.args = args
        self.a, self.b, self.a_index, self.b_index = a, b, a_index, b_index
        self.xsk_ref = xsk_ref
        self.src_cpu, self.dut_cpu = args.cores
        self.procs = benchrun.Procs()
        self.replay_file = SHM / f"xs-tools-{os.getpid()}-in.pcap"
        self.replay_ng = SHM / f"xs-tools-{os.getpid()}-in.pcapng"  # the same frames
        self.out_file = SHM / f"xs-tools-{os.getpid()}-out.pcap"

    def cleanup(self) -> None:
        self.procs.stop_all()
        for p in (self.replay_file, self.replay_ng, self.out_file):
            p.unlink(missing_ok=True)

    # --- sources ---------------------------------------------------------------------
    def skb_source(self) -> list[str]:
        d = f"{self.args.duration:g}"
        if self.xsk_ref is not None:
            return [self.xsk_ref, "txonly", "-i", self.a, "-q", "0", "-d", d, "-b", "64",
                    "-s", str(FRAME_BYTES), "--quiet"]
        return [*XS, "bench", "txonly", "-i", self.a, "-q", "0", "-d", d, "-b", "64",
                "-s", str(FRAME_BYTES), "--quiet", "--json"]

    def live_source(self) -> list[str]:
        return [*XS, "gen", "-i", self.a, "-s", str(FRAME_BYTES), "-d",
                f"{self.args.duration:g}", "--cpu", str(self.src_cpu), "--json"]

    def _source(self, argv: list[str]) -> dict[str, Any]:
        p = self.procs.start(argv, self.src_cpu)
        code, out, err = self.procs.finish(p, self.args.duration + 20)
        res = benchrun.parse_json_output(out)
        if res is None:
            raise RuntimeError(f"source failed ({code}): {err.strip()[-300:]}")
        return res

    def _settle(self) -> None:
        benchrun._wait_no_xdp((self.a_index, self.b_index))
        time.sleep(benchrun.SETTLE)
        self.out_file.unlink(missing_ok=True)

    # --- capture -----------------------------------------------------------------------
    def capture_xs(self, source: list[str]) -> dict[str, Any]:
        self._settle()
        cap = self.procs.start([*XS, "capture", "-i", self.b, "-w", str(self.out_file),
                                "--xdp-mode", "native", "--json", "--quiet",
                                "--no-stack-warning", "-d", f"{self.args.duration + 30:g}"],
                               self.dut_cpu)
        if not benchrun._wait_xdp(self.b_index, cap):
            _, _, err = self.procs.finish(cap, 5)
            raise RuntimeError(f"capture did not start: {err.strip()[-300:]}")
        time.sleep(0.3)  # the socket joins the XSKMAP right after the attach
        src = self._source(source)
        time.sleep(0.5)
        cap.send_signal(signal.SIGINT)
        code, out, err = self.procs.finish(cap, 10)
        res = benchrun.parse_json_output(out)
        if res is None:
            raise RuntimeError(f"capture failed ({code}): {err.strip()[-300:]}")
        in_file = count_packets(self.out_file)
        return {"sent": int(src["packets"]), "source_seconds": float(src["seconds"]),
                "written": int(res["written"]), "in_file": in_file,
                "kernel": res["kernel"], "kept": in_file / max(1, int(src["packets"])),
                "pps": in_file / max(1e-9, float(src["seconds"]))}

    def capture_tcpdump(self, source: list[str]) -> dict[str, Any]:
        self._settle()
        td = self.procs.start(["tcpdump", "-i", self.b, "-B", "65536", "-w",
                               str(self.out_file), "-nn", "-s", "0"], self.dut_cpu)
        time.sleep(1.0)  # tcpdump's socket is up well within this
        src = self._source(source)
        time.sleep(0.5)
        td.send_signal(signal.SIGINT)
        _, _, err = self.procs.finish(td, 10)
        m = re.search(r"(\d+) packets dropped by kernel", err)
        in_file = count_packets(self.out_file)
        return {"sent": int(src["packets"]), "source_seconds": float(src["seconds"]),
                "in_file": in_file, "kernel_dropped": int(m.group(1)) if m else None,
                "kept": in_file / max(1, int(src["packets"])),
                "pps": in_file / max(1e-9, float(src["seconds"]))}

    def rxdrop_c(self) -> dict[str, Any]:
        assert self.xsk_ref is not None
        self._settle()
        p = self.procs.start([self.xsk_ref, "rxdrop", "-i", self.b, "-q", "0", "-d",
                              f"{max(0.5, self.args.duration - 1):g}", "-w", "10", "-b", "64",
                              "-s", str(FRAME_BYTES), "--xdp-mode", "native", "--quiet"],
                             self.dut_cpu)
        benchrun._wait_xdp(self.b_index, p)
        src = self.procs.start(self.live_source(), self.src_cpu)
        code, out, err = self.procs.finish(p, self.args.duration + 20)
        self.procs.finish(src, self.args.duration + 20)
        res = benchrun.parse_json_output(out)
        if res is None:
            raise RuntimeError(f"xsk_ref rxdrop failed ({code}): {err.strip()[-300:]}")
        return {"pps": float(res["pps"]), "packets": int(res["packets"])}

    # --- replay --------------------------------------------------------------------------
    def _replay(self, argv: list[str], counter: bool) -> tuple[dict[str, Any], str]:
        from xdp_socket.drop import xdp_drop

        self._settle()

        def run() -> tuple[int, str, str, dict[str, float]]:
            # the command's own CPU time: this process's children, around
            # the one child started and reaped here
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.monotonic()
            p = self.procs.start(argv, self.dut_cpu)
            code, out, err = self.procs.finish(p, 120)
            wall = time.monotonic() - t
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            return code, out, err, {"wall": wall, "user": r1.ru_utime - r0.ru_utime,
                                    "sys": r1.ru_stime - r0.ru_stime}

        if counter:
            # The peer's own interface counter, with nothing attached to it:
            # the frames go up the peer's stack and are dropped there.
            before = rx_packets(self.b)
            code, out, err, rec = run()
            time.sleep(0.05)
            peer = rx_packets(self.b) - before
        else:
            with xdp_drop(self.b) as drop:
                code, out, err, rec = run()
                time.sleep(0.05)
                peer = drop.count()
        if code != 0:
            raise RuntimeError(f"{argv[0]} failed ({code}): {err.strip()[-300:]}")
        return {**rec, "peer": peer, "pps": peer / rec["wall"]}, out

    def replay_xs(self, extra: list[str], counter: bool = False,
                  file: Path | None = None) -> dict[str, Any]:
        rec, out = self._replay([*XS, "replay", str(file or self.replay_file), "-i", self.a,
                                 "--quiet", "--json", *extra], counter)
        res = benchrun.parse_json_output(out) or {}
        rec["sent"] = res.get("sent")
        rec["seconds"] = res.get("seconds")
        if res.get("seconds"):
            rec["rate"] = res["sent"] / res["seconds"]
        return rec

    def replay_tcpreplay(self, extra: list[str], counter: bool = False,
                         file: Path | None = None) -> dict[str, Any]:
        rec, out = self._replay(["tcpreplay", "-i", self.a, *extra,
                                 str(file or self.replay_file)],
                                counter)
        m = re.search(r"Actual: (\d+) packets .*? sent in ([\d.]+) seconds", out)
        if m:
            rec["sent"], rec["seconds"] = int(m.group(1)), float(m.group(2))
            rec["rate"] = rec["sent"] / max(rec["seconds"], 1e-9)
        return rec

    # --- one round ---------------------------------------------------------------------
    def cells(self) -> list[tuple[str, str, Any]]:
        rows = self.args.rows
        out: list[tuple[str, str, Any]] = []
        if "capture-skb" in rows:
            out.append(("capture-skb", "tcpdump",
                        lambda: self.capture_tcpdump(self.skb_source())))
            out.append(("capture-skb", "xdp-socket", lambda: self.capture_xs(self.skb_source())))
        if "capture-live" in rows:
            if self.xsk_ref is not None:
                out.append(("capture-live", "C rxdrop", self.rxdrop_c))
            out.append(("capture-live", "xdp-socket",
                        lambda: self.capture_xs(self.live_source())))
        if "replay-top" in rows:
            if shutil.which("tcpreplay"):
                out.append(("replay-top", "tcpreplay",
                            lambda: self.replay_tcpreplay(["--topspeed"])))
            out.append(("replay-top", "xdp-socket", lambda: self.replay_xs(["--topspeed"])))
        if "replay-top-rx" in rows:
            if shutil.which("tcpreplay"):
                out.append(("replay-top-rx", "tcpreplay",
                            lambda: self.replay_tcpreplay(["--topspeed"], counter=True)))
            out.append(("replay-top-rx", "xdp-socket",
                        lambda: self.replay_xs(["--topspeed"], counter=True)))
        if "replay-ng-rx" in rows:
            ng = self.replay_ng
            if shutil.which("tcpreplay"):
                out.append(("replay-ng-rx", "tcpreplay",
                            lambda: self.replay_tcpreplay(["--topspeed"], True, ng)))
            out.append(("replay-ng-rx", "xdp-socket",
                        lambda: self.replay_xs(["--topspeed"], True, ng)))
        if "replay-pps" in rows:
            if shutil.which("tcpreplay"):
                out.append(("replay-pps", "tcpreplay",
                            lambda: self.replay_tcpreplay(["--pps", str(PPS_TARGET)])))
            out.append(("replay-pps", "xdp-socket",
                        lambda: self.replay_xs(["--pps", str(PPS_TARGET)])))
        return out


def _med(vals: list[float], fmt: str) -> str:
    if not vals:
        return "-"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(vals))}-{fmt.format(max(vals))})"


def table(results: dict[tuple[str, str], list[dict[str, Any]]]) -> str:
    def get(row: str, tool: str, key: str) -> list[float]:
        return [r[key] for r in results.get((row, tool), []) if r.get(key) is not None]

    lines = ["| job | reference | xdp-socket | ratio |", "|---|---|---|---|"]

    def ratio(x: list[float], y: list[float]) -> str:
        if not x or not y:
            return "-"
        return f"{statistics.median(x) / statistics.median(y):.2f}x"

    if any(k[0] == "capture-skb" for k in results):
        td, xs = get("capture-skb", "tcpdump", "kept"), get("capture-skb", "xdp-socket", "kept")
        sent = get("capture-skb", "xdp-socket", "sent") + get("capture-skb", "tcpdump", "sent")
        rate = statistics.median(sent) / max(1e-9, statistics.median(
            get("capture-skb", "xdp-socket", "source_seconds")
            + get("capture-skb", "tcpdump", "source_seconds"))) if sent else 0.0
        xs_drops = [r["kernel"]["rx_ring_full"] + r["kernel"]["rx_dropped"]
                    for r in results.get(("capture-skb", "xdp-socket"), [])]
        td_drops = get("capture-skb", "tcpdump", "kernel_dropped")
        lines.append(
            f"| capture a {rate / 1e6:.2f} Mpps skb-path stream to a pcap on tmpfs "
            f"(share of sent frames in the file; kernel drops) "
            f"| tcpdump -B 65536: {_med([100 * v for v in td], '{:.2f}')}% "
            f"(dropped {_med(td_drops, '{:.0f}')}) "
            f"| {_med([100 * v for v in xs], '{:.2f}')}% "
            f"(rx_ring_full+rx_dropped {_med([float(d) for d in xs_drops], '{:.0f}')}) "
            f"| {ratio(xs, td)} |")
    if any(k[0] == "capture-live" for k in results):
        c, xs = get("capture-live", "C rxdrop", "pps"), get("capture-live", "xdp-socket", "pps")
        lines.append(
            f"| capture the live-frames stream to a pcap on tmpfs (Mpps written) "
            f"| C rxdrop takes {_med([v / 1e6 for v in c], '{:.2f}')} "
            f"| {_med([v / 1e6 for v in xs], '{:.2f}')} | {ratio(xs, c)} |")
    def cpu(row: str, tool: str) -> str:
        return (f"; user {_med(get(row, tool, 'user'), '{:.2f}')} s, "
                f"sys {_med(get(row, tool, 'sys'), '{:.2f}')} s")

    for row, how in (("replay-top", "by a counting XDP drop on the peer"),
                     ("replay-top-rx", "by the peer's rx_packets, nothing attached"),
                     ("replay-ng-rx", "by the peer's rx_packets; the same frames in a "
                                      "pcapng file")):
        if not any(k[0] == row for k in results):
            continue
        n = None
        for k in ((row, "xdp-socket"), (row, "tcpreplay")):
            for r in results.get(k, []):
                n = n or r.get("sent")
        t, xs = get(row, "tcpreplay", "pps"), get(row, "xdp-socket", "pps")

        lines.append(
            f"| replay {n or '?'} frames --topspeed (Mpps over the whole command, counted "
            f"{how}; the command's CPU time) "
            f"| tcpreplay {_med([v / 1e6 for v in t], '{:.3f}')}{cpu(row, 'tcpreplay')} "
            f"| {_med([v / 1e6 for v in xs], '{:.3f}')}{cpu(row, 'xdp-socket')} "
            f"| {ratio(xs, t)} |")
    if any(k[0] == "replay-pps" for k in results):
        t = get("replay-pps", "tcpreplay", "rate")
        xs = get("replay-pps", "xdp-socket", "rate")

        def err(v: list[float]) -> list[float]:
            return [100 * (x - PPS_TARGET) / PPS_TARGET for x in v]

        lines.append(
            f"| replay --pps {PPS_TARGET} (achieved pps, error) "
            f"| tcpreplay {_med(t, '{:.0f}')} ({_med(err(t), '{:+.2f}')}%) "
            f"| {_med(xs, '{:.0f}')} ({_med(err(xs), '{:+.2f}')}%) | - |")
    return "\n".join(lines)


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def write_readme(text: str) -> None:
    path = HERE / "README.md"
    doc = path.read_text()
    block = f"{README_START}\n{text}\n{README_END}"
    if README_START in doc and README_END in doc:
        pre = doc[: doc.index(README_START)]
        post = doc[doc.index(README_END) + len(README_END):]
        doc = pre + block + post
    else:
        doc = doc.rstrip("\n") + "\n\n## Tools: capture and replay\n\n" + block + "\n"
    path.write_text(doc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/tools.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--runs", type=int, default=3, help="repeats per cell (default 3)")
    p.add_argument("-d", "--duration", type=float, default=3.0,
                   help="seconds of traffic in the capture rows (default 3)")
    p.add_argument("--frames", type=int, default=1_000_000,
                   help="frames in the replay file (default 1000000)")
    p.add_argument("--rows", type=benchrun._csv(ROWS), default=list(ROWS))
    p.add_argument("--no-c", action="store_true", help="no C reference (no build)")
    p.add_argument("--write-readme", action="store_true",
                   help="put the table into bench/README.md")
    p.add_argument("--json-out", type=Path, default=None, metavar="FILE")
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 20 or not 0.5 <= args.duration <= 30:
        p.error("runs must be 1..20 and the duration 0.5..30 s")
    if not 1000 <= args.frames <= 20_000_000:
        p.error("--frames must be 1000..20000000")
    cpus = sorted(os.sched_getaffinity(0))
    args.cores = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        _log("tools.py: needs root (network namespaces, AF_XDP, BPF)")
        return 1
    if "capture-skb" in args.rows and not shutil.which("tcpdump"):
        _log("tools.py: tcpdump not found: its column stays empty")
    if not shutil.which("tcpreplay"):
        _log("tools.py: tcpreplay not found (apt-get install tcpreplay): its column stays "
             "empty")
    xsk_ref = None if args.no_c else benchrun.build_c()
    # Compile every module the tools import into the bytecode cache (see the top).

    subprocess.run([*XS, "replay", "--help"], capture_output=True, check=False)
    subprocess.run([PY, "-c", "import xdp_socket.cli.capture, xdp_socket.cli.replay, "
                    "xdp_socket.cli.gen, xdp_socket.pcap, xdp_socket.workers, "
                    "xdp_socket.program"], capture_output=True, check=False)
    from xdp_socket import testing

    testing.enter_private_netns()
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    interrupted = False
    with benchrun._signals_interrupt(), testing.veth_pair("toola", "toolb", queues=1) as link:
        bench = Bench(args, link.a, link.b, link.a_index, link.b_index, xsk_ref)
        try:
            if {"replay-top", "replay-top-rx", "replay-ng-rx", "replay-pps"} & set(args.rows):
                make_replay_file(bench.replay_file, args.frames)
            if "replay-ng-rx" in args.rows:
                to_pcapng(bench.replay_file, bench.replay_ng)
            cells = bench.cells()
            for run in range(1, args.runs + 1):
                for row, tool, fn in cells:
                    try:
                        rec = fn()
                    except RuntimeError as e:
                        _log(f"tools.py: {row} {tool} run {run}: FAILED: {e}")
                        continue
                    results.setdefault((row, tool), []).append(rec)
                    _log(f"tools.py: {row} {tool} run {run}: "
                         + json.dumps({k: v for k, v in rec.items() if k != "kernel"}))
        except benchrun.Interrupted:
            interrupted = True
        finally:
            bench.cleanup()
    load_after = os.getloadavg()
    text = table(results)
    cmd = " ".join(["python3", "bench/tools.py", *(argv if argv is not None else sys.argv[1:])])
    meta = (f"Measured {started:%Y-%m-%d %H:%M} UTC, kernel {platform.release()}, "
            f"{cpu_model()} ({os.cpu_count()} cores), Python {platform.python_version()}; "
            f"source core {args.cores[0]}, tool core {args.cores[1]}; {args.runs} runs, "
            f"median (min-max); load average before {load_before[0]:.2f}, after "
            f"{load_after[0]:.2f}. Command: `{cmd}`.")
    print(text)
    print()
    print(meta)
    if args.write_readme and not interrupted:
        write_readme(text + "\n\n" + meta)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(
            {"meta": meta, "results": {f"{r}/{t}": v for (r, t), v in results.items()}},
            indent=1) + "\n")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
