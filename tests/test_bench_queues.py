"""``xdp-socket bench`` over several queues (a worker process per queue):
exact per-queue counts for a known number of frames, usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from helpers import make_test_frame

import xdp_socket as xs
from xdp_socket.iface import xdp_state

pytestmark = pytest.mark.kernel

CLI = [sys.executable, "-m", "xdp_socket"]
N = 2000


def test_bench_rxdrop_two_queues(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    rx = subprocess.Popen(
        [*CLI, "bench", "rxdrop", "-i", link.b, "-q", "0-1", "-d", "2", "-w", "10",
         "--xdp-mode", "native", "--quiet", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        end = time.monotonic() + 10
        while not xdp_state(link.b_index).prog_ids:
            assert rx.poll() is None, rx.communicate()[1]
            assert time.monotonic() < end, "bench never attached its program"
            time.sleep(0.01)
        time.sleep(0.2)  # both workers bound (the second adopts the program)
        for q in (0, 1):
            with xs.create_tx_socket(link.a, q) as tx:
                for s in range(N):
                    while not tx.send(make_test_frame(q, s, 200)):
                        time.sleep(0.0001)
                assert tx.flush(timeout=5.0)
        out, err = rx.communicate(timeout=30)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.communicate()
    assert rx.returncode == 0, err
    res = json.loads(out)
    assert [r["queue"] for r in res["queues"]] == [0, 1]
    assert [r["packets"] for r in res["queues"]] == [N, N]
    assert res["packets"] == 2 * N
    for r in res["queues"]:
        assert r["statistics"]["rx_dropped"] == 0


@pytest.mark.parametrize(("argv", "message"), [
    (["rxdrop", "-q", "0-3"], "queue 2 does not exist"),
    (["txonly", "-q", "0-1"], "rxdrop and l2fwd only"),
    (["rxdrop", "--all-queues", "--api", "packet"], "batch API only"),
    (["rxdrop", "-q", "x"], "not a queue list"),
])
def test_bench_queue_usage_errors(veth_factory: Any, argv: list[str], message: str) -> None:
    link = veth_factory(queues=2)
    r = subprocess.run([*CLI, "bench", *argv, "-i", link.b, "-d", "1"], capture_output=True,
                       text=True, timeout=30, check=False)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
