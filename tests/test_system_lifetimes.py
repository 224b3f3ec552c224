"""System tests of the lifetime rules (issue 7's defects 1-3, 5, 10 and
issue 8's forgotten sockets), through the public API on real sockets.

Runs in the private network namespace conftest.py entered. The scenarios that
can deadlock a process run in a child process under a faulthandler watchdog
(``lifetime_child.py``): a hang fails the test with every thread's stack.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    attach_xdp_netlink,
    detach_xdp_netlink,
    load_foreign_xdp_prog,
    make_test_frame,
    mapping_count,
    open_fds,
    parse_test_frame,
    xdp_prog_id,
)

import xdp_socket as xs
from xdp_socket import testing

pytestmark = pytest.mark.kernel

HERE = Path(__file__).parent
SMALL = xs.XdpConfig(frame_count=64, rx_size=32, tx_size=32, fill_size=32, comp_size=32)


def _run_child(scenario: str, ifname: str, seed: int, rounds: int, watchdog: float) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), *sys.path) if p)
    # -X dev would turn warnings into noise; the child counts ResourceWarnings itself
    r = subprocess.run(
        [sys.executable, str(HERE / "lifetime_child.py"), scenario, ifname, str(seed),
         str(rounds), str(watchdog)],
        capture_output=True, text=True, env=env, timeout=watchdog + 30,
    )
    assert r.returncode == 0, (
        f"{scenario} seed {seed}: exit {r.returncode} (a hang shows every thread's stack "
        f"below)\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-12000:]}"
    )
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("OK "), r.stdout
    return r.stdout


def _field(out: str, name: str) -> int:
    for line in out.splitlines():
        for word in line.split():
            if word.startswith(name + "="):
                return int(float(word.split("=", 1)[1]))
    raise AssertionError(f"{name} not in {out!r}")


# --- defect 1: the garbage collector, signals and coroutines never deadlock ---

@pytest.mark.timeout(200)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_forgotten_batch_sockets_never_deadlock_the_gc(veth_factory: Any, seed: int) -> None:
    """Hundreds of rounds of "forget a batch-using socket (sometimes inside a
    reference cycle, so a GC pass finalizes it at an arbitrary point), open
    and close another" with a GC pass at nearly every allocation. The old
    code hung within 2-13 rounds with stock GC settings."""
    link = veth_factory(queues=2)
    out = _run_child("gc_forget", link.b, seed, 200, watchdog=150)
    # one ResourceWarning per forgotten socket, none for the closed ones
    assert _field(out, "warnings") == _field(out, "forgotten") == 200


@pytest.mark.timeout(120)
def test_signal_handler_closes_sockets_during_creation(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    out = _run_child("signal_close", link.b, 7, 150, watchdog=90)
    assert _field(out, "closed_by_handler") > 0, "the timer never closed a socket: no test"
    assert _field(out, "warnings") == 0


@pytest.mark.timeout(120)
def test_sockets_created_in_a_coroutine_while_gc_finalizes(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    out = _run_child("coroutine", link.b, 11, 100, watchdog=90)
    assert _field(out, "warnings") == _field(out, "forgotten") == 100
