"""CPU cost per batch of the library's ring path, without a kernel.

Runs the batch API's rxdrop, txonly and l2fwd steps over the test suite's
fake kernel (tests/fake_kernel.py: rings in bytearrays) and times only the
library's calls (time.process_time_ns around each step; the fake kernel's own
work is done with numpy between the timed calls and not counted). The
syscalls (TX kicks) are not part of it: that is the kernel's share.

    PYTHONPATH=src python3 bench/ring_cost.py [-b 64] [-r 5000] [-n 5]

It runs the pure-Python path and, when the extension is built, the C
accelerator, alternating in one process. ``--evict MIB`` touches a buffer of
that size between batches (outside the timed calls), as the kernel's TX kick or
a context switch does to the caches on a real socket: the library's calls then
run cache-cold, which is what they cost there. Pointing PYTHONPATH at another
checkout's src measures that version's Python path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_kernel import FakeCore, FakeKernel

from xdp_socket import _ring
from xdp_socket.batch import RxBatch, TxBatch

RING = 2048
U32 = 0xFFFFFFFF


def deliver(k: FakeKernel, n: int, length: int = 64) -> None:
    """The kernel's RX side, vectorised: n frames from Fill into RX."""
    fill, rx = k.fill, k.rx
    n = min(n, (fill.prod - fill.cons) & U32, RING - ((rx.prod - rx.cons) & U32))
    fi = (np.arange(n) + fill.cons) & (fill.entries - 1)
    ri = (np.arange(n) + rx.prod) & (rx.entries - 1)
    rx.area.descs["addr"][ri] = fill.area.addrs[fi] + np.uint64(256)
    rx.area.descs["len"][ri] = length
    fill.cons += n
    rx.prod += n


def transmit(k: FakeKernel) -> None:
    """The kernel's TX side, vectorised: every TX descriptor completes."""
    tx, comp = k.tx, k.comp
    n = min((tx.prod - tx.cons) & U32, comp.entries - ((comp.prod - comp.cons) & U32))
    ti = (np.arange(n) + tx.cons) & (tx.entries - 1)
    ci = (np.arange(n) + comp.prod) & (comp.entries - 1)
    comp.area.addrs[ci] = tx.area.descs["addr"][ti]
    tx.cons += n
    comp.prod += n


def run(mode: str, batch: int, rounds: int, evict: np.ndarray | None = None) -> float:
    k = FakeKernel(frame_size=2048, frame_count=4096, ring=RING)

    def cold() -> None:
        if evict is not None:
            evict[::64] += 1  # one write per cache line
    umem = np.frombuffer(k.umem, np.uint8)
    spent = 0
    if mode == "rxdrop":
        rx = k.rx_path()
        core = FakeCore()
        for _ in range(rounds):
            deliver(k, batch)
            cold()
            t = time.process_time_ns()
            n = rx.seek(batch)
            with RxBatch(core, rx, n, umem) as b:  # type: ignore[arg-type]
                b.count  # noqa: B018
            spent += time.process_time_ns() - t
    elif mode == "txonly":
        tx = k.tx_path()
        core = FakeCore(tx)
        umem2d = umem.reshape(-1, 2048)
        for _ in range(rounds):
            cold()
            t = time.process_time_ns()
            n = tx.seek(batch, clear_lengths=False)
            b = TxBatch(core, tx, n, umem2d)  # type: ignore[arg-type]
            b.set_lengths(64)
            b.submit()
            spent += time.process_time_ns() - t
            transmit(k)
    else:
        rx = k.rx_path(0, 2048)
        tx = k.tx_path(2048, 2048)
        tx.rx_peer = rx
        tx.rx_limit = 2048 * 2048
        core = FakeCore(tx)
        half = argparse.Namespace(_core=core)  # what forward() checks: the same socket
        for _ in range(rounds):
            deliver(k, batch)
            cold()
            t = time.process_time_ns()
            n = rx.seek(batch)
            b = RxBatch(core, rx, n, umem)  # type: ignore[arg-type]
            b.swap_macs()
            b.forward(half)
            tx.reclaim()
            spent += time.process_time_ns() - t
            transmit(k)
    return spent / rounds / 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-b", "--batch", type=int, default=64)
    p.add_argument("-r", "--rounds", type=int, default=5000)
    p.add_argument("-n", "--repeat", type=int, default=5, help="runs per path (median)")
    p.add_argument("--paths", default="python,c",
                   help="which ring paths to run (default python,c; c only when built)")
    p.add_argument("--modes", default="rxdrop,txonly,l2fwd")
    p.add_argument("--evict", type=int, default=0, metavar="MIB",
                   help="touch MIB MiB between batches (untimed), so each batch runs "
                        "cache-cold as after a kernel TX kick (default 0: warm)")
    a = p.parse_args()
    evict = np.zeros(a.evict << 20, np.uint8) if a.evict else None
    # Both paths in one process, alternating, so that a machine whose load
    # changes during the run slows both alike; the median of the runs counts.
    paths = [path for path in a.paths.split(",")
             if path == "python" or getattr(_ring, "C", None) is not None]
    print(f"batch {a.batch}, {a.rounds} rounds x {a.repeat} runs per path"
          f"{f', {a.evict} MiB touched between batches' if a.evict else ''}; "
          "median us of CPU per batch (ns per frame)")
    print(f"  {'mode':7s} " + "  ".join(f"{path:>18s}" for path in paths))
    for mode in a.modes.split(","):
        runs: dict[str, list[float]] = {path: [] for path in paths}
        for _ in range(a.repeat):
            for path in paths:
                if hasattr(_ring, "accel"):
                    _ring.accel = _ring.C if path == "c" else None
                runs[path].append(run(mode, a.batch, a.rounds, evict))
        cells = []
        for path in paths:
            med = statistics.median(runs[path])
            cells.append(f"{med:7.2f} ({med * 1000 / a.batch:6.1f})")
        print(f"  {mode:7s} " + "  ".join(f"{c:>18s}" for c in cells))


if __name__ == "__main__":
    main()
