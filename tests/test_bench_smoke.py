"""Smoke tests of the benchmark tools: packets flow and the JSON parses. No speed
assertions: the machine may be busy, and speed is what bench/run.py reports.

Everything runs in this test process's private network namespace (conftest); the
subprocesses inherit it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import xdp_socket as xs
from xdp_socket import testing
from xdp_socket.gen import xdp_drop
from xdp_socket.iface import xdp_state

pytestmark = pytest.mark.kernel

CLI = [sys.executable, "-m", "xdp_socket"]
RUN_PY = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def _json(text: str) -> dict[str, Any]:
    obj = json.loads(text)
    assert isinstance(obj, dict)
    return obj


def test_bench_txonly_into_drop_peer(veth: testing.VethPair) -> None:
    with xdp_drop(veth.b) as sink:
        r = subprocess.run(
            [*CLI, "bench", "txonly", "-i", veth.a, "-d", "1", "--copy", "--quiet", "--json"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        time.sleep(0.05)  # let frames still in veth's queue reach the program
        received = sink.count()
    res = _json(r.stdout)
    assert res["mode"] == "txonly" and res["api"] == "batch"
    assert res["accel"] == xs.accelerator()  # the ring path that ran
    assert res["packets"] > 0 and res["pps"] > 0 and res["seconds"] > 0
    # The peer saw what the kernel completed (copy mode: a completion means the
    # frame went into veth; IPv6 is off in the namespace, so nothing else arrives).
    # Slack both ways: veth may drop when its queue to the peer overflows, and up
    # to a ring's worth may still have been in flight when the count was taken.
    assert 0.99 * res["packets"] <= received <= res["packets"] + 2048


@pytest.mark.parametrize("api", ["batch", "packet"])
def test_bench_rxdrop_fed_by_gen(veth: testing.VethPair, api: str) -> None:
    rx = subprocess.Popen(
        [*CLI, "bench", "rxdrop", "-i", veth.b, "-d", "1", "-w", "10", "--api", api,
         "--copy", "--quiet", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    gen = None
    try:
        # The generator's frames reach B only once B runs an XDP program.
        end = time.monotonic() + 10
        while not xdp_state(veth.b_index).prog_ids:
            assert rx.poll() is None, rx.communicate()[1]
            assert time.monotonic() < end, "bench rxdrop never attached its program"
            time.sleep(0.01)
        gen = subprocess.Popen(
            [*CLI, "gen", "-i", veth.a, "-d", "8", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, err = rx.communicate(timeout=20)
        assert rx.returncode == 0, err
        gen.send_signal(signal.SIGINT)  # the receiver's window is over
        g_out, g_err = gen.communicate(timeout=10)
    finally:
        for p in (rx, gen):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    res = _json(out)
    assert res["mode"] == "rxdrop" and res["api"] == api
    assert res["packets"] > 0 and res["pps"] > 0
    assert 0.9 < res["seconds"] < 2.0
    g = _json(g_out)
    assert g["mode"] == "gen" and g["packets"] >= res["packets"], g_err


def test_run_py_quick_txonly(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    r = subprocess.run(
        [sys.executable, str(RUN_PY), "--quick", "--no-c", "-n", "1", "-d", "1",
         "--modes", "txonly", "--markdown", "--json-out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| txonly" in r.stdout and "xdp-socket batch" in r.stdout
    data = json.loads(out.read_text())
    runs = data["runs"]
    assert {x["impl"] for x in runs} == {"batch", "packet", "afpacket"}
    for x in runs:
        assert x["ok"] and x["row"] == "txonly"
        assert x["packets"] > 0
        # The counting drop on the peer saw the frames the sender reported.
        assert x["peer_packets"] >= 0.99 * x["packets"]
    assert data["medians"]["txonly"]["batch"]["pps"]["n"] == 1
    assert data["meta"]["settings"]["batch"] == 64
