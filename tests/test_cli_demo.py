"""``xdp-socket demo``: runs to completion in its time, exits 0, checks every
byte (and notices when one is wrong), leaves nothing behind, stops cleanly on
Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
from pyroute2 import IPRoute  # type: ignore[import-untyped,unused-ignore]

from xdp_socket.batch import RxBatch
from xdp_socket.cli import demo

pytestmark = pytest.mark.kernel


def link_names() -> set[str]:
    with IPRoute() as ip:
        return {link.get_attr("IFLA_IFNAME") for link in ip.get_links()}


def test_demo_runs_and_leaves_nothing_behind() -> None:
    before = link_names()
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "xdp_socket", "demo", "-d", "1", "--json"],
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ok"] is True
    assert summary["verified"] == summary["sent"] > 1000
    assert summary["lost"] == summary["corrupt"] == 0
    assert summary["stats_a"]["rx_dropped"] == 0
    assert elapsed < 30
    assert "verified" in proc.stderr  # the live table's header
    # the demo made its own namespace: nothing appeared in ours
    assert link_names() == before


def test_demo_stops_cleanly_on_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "xdp_socket", "demo", "-d", "30", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # SIGINT once the first per-second line is out (the demo is running):
        # on a loaded machine start-up alone can take longer than a fixed sleep
        assert proc.stderr is not None
        head: list[str] = []
        while len(head) < 5 and not any(line.strip().startswith("1.") for line in head):
            line = proc.stderr.readline()
            if not line:
                break
            head.append(line)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        err = "".join(head) + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    summary = json.loads(out)
    assert summary["lost"] == 0 and summary["corrupt"] == 0


def test_demo_notices_a_wrong_byte(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Corrupt one byte of every 50th echoed frame on its way back: the demo
    must count them as corrupt and fail."""
    original = RxBatch.swap_macs

    def swap_and_corrupt(self: RxBatch) -> None:
        original(self)
        addrs = self.addrs
        seqs = self.gather(8, 14).copy().view(">u8").ravel()
        for a, s in zip(addrs.tolist(), seqs.tolist(), strict=True):
            if s % 50 == 7:
                self.umem[a + 40] ^= np.uint8(0xFF)

    monkeypatch.setattr(RxBatch, "swap_macs", swap_and_corrupt)
    args = argparse.Namespace(duration=0.5, count=None, batch=64, json=True)
    rc = demo.run(args)
    summary: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert summary["ok"] is False
    assert summary["corrupt"] == summary["sent"] // 50 or \
        abs(summary["corrupt"] - summary["sent"] / 50) <= 1
    assert summary["verified"] + summary["corrupt"] == summary["sent"]


def test_frames_vary_in_length_and_content() -> None:
    data, lens = demo.build_frames(0, 300, demo.MAC_B, demo.MAC_A)
    assert lens.min() == 60 and lens.max() > 1400
    assert len({bytes(data[i, : lens[i]]) for i in range(300)}) == 300
