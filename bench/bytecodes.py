"""Python work per batch of the library's hot loops, counted, not timed.

Runs the batch API's rxdrop, txonly, l2fwd and poll-mode receive steps on a
real socket (a veth pair in a private network namespace; the traffic comes
from a second AF_XDP socket on the peer, fed outside the counted region) and
counts, for the library's calls only:

* bytecodes executed per batch (``sys.settrace`` opcode events), by function;
* calls into C per batch (``sys.setprofile`` c_call events: numpy, the
  accelerator, syscalls).

Counts do not depend on the machine's load or clock, so they show what a change
to the hot path did even on a shared machine; time them with
``bench/run.py`` on a quiet one. Run as root:

    python3 bench/bytecodes.py [--modes rxdrop,txonly,l2fwd,poll] [-b 64] [-r 300]

``XDP_SOCKET_NO_ACCEL=1`` counts the pure-Python ring path; PYTHONPATH pointed at
another checkout's src counts that version.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np

import xdp_socket as xs
from xdp_socket.cli.bench import udp_frame
from xdp_socket.testing import enter_private_netns


class Counter:
    """Counts opcodes (by function) and C calls while ``active``."""

    def __init__(self) -> None:
        self.ops: collections.Counter[str] = collections.Counter()
        self.ccalls: collections.Counter[str] = collections.Counter()
        self.active = False

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode" and self.active:
            co = frame.f_code
            self.ops[f"{co.co_filename.rsplit('/', 1)[-1]}:{co.co_name}"] += 1
        return self.trace

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call" and self.active:
            self.ccalls[getattr(arg, "__qualname__", str(arg))] += 1


def steps(mode: str, batch: int) -> tuple[Callable[[], None], Callable[[], int]]:
    """(feed, step): ``feed`` makes traffic (not counted), ``step`` is one
    batch of the mode's loop, as ``xdp-socket bench`` runs it."""
    frame = udp_frame(64)
    src = xs.create_tx_socket("va", 0)
    src.umem[:, : len(frame)] = np.frombuffer(frame, np.uint8)

    def feed() -> None:
        b = src.reserve(batch)
        b.set_lengths(len(frame))
        b.submit()

    if mode == "txonly":
        tx = xs.create_tx_socket("vb", 0)
        tx.umem[:, : len(frame)] = np.frombuffer(frame, np.uint8)

        def tx_step() -> int:
            b = tx.reserve(batch)
            n = b.count
            if n:
                b.set_lengths(len(frame))
            b.submit()
            return n

        return (lambda: None), tx_step
    if mode == "l2fwd":
        txh, rx = xs.create_socket("vb", 0)
        assert rx is not None and txh is not None

        def fwd_step() -> int:
            b = rx.receive(batch)
            if b.count:
                b.swap_macs()
                k: int = b.forward(txh)
                return k
            b.release()
            txh.reclaim()
            return 0

        return feed, fwd_step
    rxs = xs.create_rx_socket("vb", 0)
    poll = mode == "poll"

    def rx_step() -> int:
        if poll:
            rxs.poll_wait(0.1)
        with rxs.receive(batch) as b:
            n: int = b.count
        return n

    return feed, rx_step


def count(mode: str, batch: int, rounds: int) -> tuple[float, Counter]:
    feed, step = steps(mode, batch)
    for _ in range(20):  # warm up: pools, caches, specialised bytecodes
        feed()
        step()
    c = Counter()
    frames = 0
    sys.settrace(c.trace)
    for _ in range(rounds):
        feed()
        c.active = True
        frames += step()
        c.active = False
    sys.settrace(None)
    sys.setprofile(c.profile)
    for _ in range(rounds):
        feed()
        c.active = True
        step()
        c.active = False
    sys.setprofile(None)
    return frames / rounds, c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--modes", default="rxdrop,txonly,l2fwd,poll")
    p.add_argument("-b", "--batch", type=int, default=64)
    p.add_argument("-r", "--rounds", type=int, default=300)
    p.add_argument("--top", type=int, default=8, help="functions listed per mode")
    a = p.parse_args()
    enter_private_netns()
    subprocess.run(["ip", "link", "add", "va", "type", "veth", "peer", "name", "vb"], check=True)
    for dev in ("va", "vb"):
        subprocess.run(["ip", "link", "set", dev, "up"], check=True)
    print(f"ring path: {getattr(xs, 'accelerator', lambda: 'python')()}; "
          f"batch {a.batch}, {a.rounds} batches per mode")
    for mode in a.modes.split(","):
        per, c = count(mode, a.batch, a.rounds)
        ops = sum(c.ops.values()) / a.rounds
        ccs = sum(c.ccalls.values()) / a.rounds
        print(f"{mode:7s} {per:5.1f} frames/batch  {ops:6.0f} bytecodes/batch  "
              f"{ops / max(per, 1e-9):5.1f} per frame  {ccs:4.1f} C calls/batch")
        for name, v in c.ops.most_common(a.top):
            print(f"          {v / a.rounds:7.1f}  {name}")


if __name__ == "__main__":
    main()
