#!/usr/bin/env python3
"""What a tcpdump filter costs on the receive path (issue 11): rxdrop on the
batch API with no filter and with a filter that every frame matches, side by
side on one veth pair in a private namespace, runs interleaved.

    python3 bench/filter_cost.py [-n 3] [-d 3] [--filter udp]

The traffic source is ``xdp-socket gen`` (live frames, 64-byte UDP) on core 0,
the receiver runs in this process on core 1. Prints the median Mpps of each
and the ratio; every gen frame is UDP, so ``udp`` matches all of them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import subprocess
import sys
import time

import xdp_socket as xs
from xdp_socket import testing


def rxdrop(iface: str, flt: str | None, seconds: float) -> float:
    cfg = xs.XdpConfig(xdp_mode="native", filter=flt)
    with xs.create_rx_socket(iface, 0, cfg) as rx:
        deadline = time.monotonic() + 10
        while True:  # wait for the first packet
            with rx.receive(64, timeout=0.1) as b:
                if b.count:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("no traffic arrived")
        n = 0
        t0 = time.monotonic()
        end = t0 + seconds
        now = t0
        while now < end:
            with rx.receive(64) as b:
                n += b.count
            now = time.monotonic()
        return n / (now - t0) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3, help="runs of each (default 3)")
    ap.add_argument("-d", type=float, default=3.0, help="seconds per run (default 3)")
    ap.add_argument("--filter", default="udp", help="a filter every frame matches")
    args = ap.parse_args()
    testing.enter_private_netns()
    with testing.veth_pair() as v:
        total = args.n * 2 * (args.d + 1.5) + 15
        gen = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "xdp_socket",
                                "gen", "-i", v.a, "-d", str(total), "--wait", "10"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            os.sched_setaffinity(0, {1})
            plain: list[float] = []
            filtered: list[float] = []
            for _ in range(args.n):
                plain.append(rxdrop(v.b, None, args.d))
                filtered.append(rxdrop(v.b, args.filter, args.d))
        finally:
            gen.terminate()
            gen.wait(10)
    mp, mf = statistics.median(plain), statistics.median(filtered)
    print(f"rxdrop, batch API, {args.n} runs x {args.d:g} s, load {os.getloadavg()[0]:.2f}")
    print(f"  no filter:           {mp:.2f} Mpps  {[round(x, 2) for x in plain]}")
    print(f"  filter {args.filter!r:12} {mf:.2f} Mpps  {[round(x, 2) for x in filtered]}")
    print(f"  filtered / plain:    {mf / mp:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
