"""Queue counts: the library counts the queues a device *uses* (the kernel's
real_num_rx/tx_queues), not the ones it allocated, and every place that needs
the count (the socket's own check, the XSKMAP size, `info`, `capture
--all-queues`) agrees with the kernel.

The kernel's word comes from two independent places: this namespace's own
sysfs (conftest mounted a fresh one), and bind() itself, with our check
bypassed: the first queue id past the count must fail with EINVAL there.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import set_link, veth_rx_only_queues

import xdp_socket as xs
import xdp_socket.core as xs_core
from xdp_socket import iface, testing
from xdp_socket._netdev import netdev_queue_counts
from xdp_socket._sys import bpf
from xdp_socket._sys.ethtool import get_channels
from xdp_socket.pcap import read_capture
from xdp_socket.program import builtin_program_attached

pytestmark = pytest.mark.kernel

CLI = [sys.executable, "-m", "xdp_socket"]


def sysfs_queues(name: str) -> tuple[int, int]:
    entries = [p.name for p in Path(f"/sys/class/net/{name}/queues").iterdir()]
    return (sum(e.startswith("rx-") for e in entries), sum(e.startswith("tx-") for e in entries))


def allocated(ifindex: int) -> tuple[int, int]:
    q = iface.queue_info(ifindex)
    return q.allocated_rx, q.allocated_tx


def kernel_binds(monkeypatch: pytest.MonkeyPatch, name: str, queue: int) -> int:
    """0 when the kernel binds a TX socket on ``queue``, else the errno; our own
    queue check is switched off so that the answer is the kernel's."""
    with monkeypatch.context() as m:
        m.setattr(xs_core, "has_queue", lambda *a, **k: True)
        m.setattr(xs_core, "queue_counts", lambda ifindex: (1 << 16, 1 << 16))
        try:
            xs.create_tx_socket(name, queue).close()
        except xs.XdpError as e:
            assert e.step == "bind xsk"
            return e.errno
    return 0


def test_default_veth_uses_one_queue_of_those_it_allocated(
    veth_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = veth_factory(queues=None)  # like `ip link add A type veth peer name B`
    for name, index in ((link.a, link.a_index), (link.b, link.b_index)):
        assert iface.queue_counts(index) == sysfs_queues(name) == (1, 1)
        assert allocated(index) >= (1, 1)
    assert link.queues == 1
    # The kernel agrees: queue 0 binds, queue 1 (allocated, unused) does not.
    assert kernel_binds(monkeypatch, link.a, 0) == 0
    time.sleep(0.05)  # the closed socket's queue slot is freed in deferred work
    assert kernel_binds(monkeypatch, link.a, 1) == errno.EINVAL
    # ... and our check says so first, naming the count.
    with pytest.raises(xs.XdpError) as ei:
        xs.create_rx_socket(link.b, 1)
    assert ei.value.errno == errno.EINVAL
    assert f"{link.b} has 1 RX queue(s), 0..0" in str(ei.value)


def test_allocated_more_than_used_on_a_multi_cpu_machine(veth_factory: Any) -> None:
    if os.cpu_count() in (None, 1):
        pytest.skip("one CPU: a default veth allocates one queue, nothing to tell apart")
    link = veth_factory(queues=None)
    q = iface.queue_info(link.a_index)
    assert (q.rx, q.tx) == (1, 1)
    assert q.allocated_rx > 1 and q.allocated_tx > 1
    assert q.source == "netdev"


def test_multi_queue_veth(veth_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    link = veth_factory(queues=3)
    assert iface.queue_counts(link.a_index) == sysfs_queues(link.a) == (3, 3)
    assert kernel_binds(monkeypatch, link.a, 2) == 0
    time.sleep(0.05)
    assert kernel_binds(monkeypatch, link.a, 3) == errno.EINVAL
    with pytest.raises(xs.XdpError, match=r"has 3 TX queue\(s\), 0\.\.2"):
        xs.create_tx_socket(link.a, 3)


def test_sources_agree_and_a_down_link_is_counted_by_ethtool(veth_factory: Any) -> None:
    link = veth_factory(queues=None)
    big = veth_factory(queues=4)
    for name, index in ((link.a, link.a_index), (big.a, big.a_index)):
        used = sysfs_queues(name)
        assert netdev_queue_counts(index) == used
        ch = get_channels(name)
        assert ch is not None
        assert (ch.combined_count + ch.rx_count, ch.combined_count + ch.tx_count) == used
        assert iface.queue_info(index).source == "netdev"
    set_link(link.a_index, up=False)
    # the netlink queue list leaves out links that are down; ethtool still answers
    assert netdev_queue_counts(link.a_index) is None
    q = iface.queue_info(link.a_index)
    assert (q.rx, q.tx, q.source) == (1, 1, "ethtool")


def test_rx_and_tx_counts_differ() -> None:
    with veth_rx_only_queues(rx_queues=4, tx_queues=1) as (a, _b):
        index = iface.resolve_interface(a)[1]
        assert iface.queue_counts(index) == sysfs_queues(a) == (4, 1)
        # the quick check (ethtool alone) answers as the counts do, per direction
        for q in range(6):
            for rx, tx in ((True, False), (False, True), (True, True)):
                want = (not rx or q < 4) and (not tx or q < 1)
                assert iface.has_queue(a, index, q, rx=rx, tx=tx) is want, (q, rx, tx)


def test_has_queue_agrees_with_the_counts(veth_factory: Any) -> None:
    link = veth_factory(queues=3)
    for q in range(5):
        assert iface.has_queue(link.a, link.a_index, q, rx=True, tx=True) is (q < 3)
    set_link(link.a_index, up=False)  # (ethtool still answers for a link that is down)
    assert iface.has_queue(link.a, link.a_index, 2, rx=False, tx=True)
    assert not iface.has_queue(link.a, link.a_index, 3, rx=False, tx=True)


def test_a_tx_socket_and_replay_start_without_pyroute2(veth: Any, tmp_path: Path) -> None:
    """pyroute2 takes ~0.2 s to import: a TX-only socket (and `replay`, which
    makes one) needs nothing from netlink, so it must not import it (nor
    asyncio, which nothing TX-only uses, nor the XDP program modules, which
    only an RX socket needs)."""
    code = (
        "import sys, xdp_socket as xs\n"
        f"tx = xs.create_tx_socket({veth.a!r}, 0)\n"
        "tx.close()\n"
        "from xdp_socket.cli.main import main\n"
        f"rc = main(['replay', {str(tmp_path / 'one.pcap')!r}, '-i', {veth.a!r}, "
        "'--topspeed', '--quiet'])\n"
        "print(rc, sorted(set(sys.modules) & {'pyroute2', 'asyncio', 'xdp_socket.program', "
        "'xdp_socket.filter', 'xdp_socket._sys.bpf'}))\n"
    )
    from xdp_socket.pcap import PcapWriter

    with PcapWriter(str(tmp_path / "one.pcap")) as w:
        w.write(testing.make_frame(payload=b"one"), 0)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "0 []", r.stdout


def _xskmap_entries(ifindex: int) -> int:
    """max_entries of the XSKMAP of the program attached to ``ifindex``."""

    (prog_id,) = iface.xdp_state(ifindex).prog_ids
    fd = bpf.prog_get_fd_by_id(prog_id)
    try:
        (map_id,) = bpf.prog_get_info(fd).map_ids
    finally:
        os.close(fd)
    mfd = bpf.map_get_fd_by_id(map_id)
    try:
        return bpf.map_get_info(mfd).max_entries
    finally:
        os.close(mfd)


def test_xskmap_has_one_slot_per_queue_in_use(veth_factory: Any) -> None:
    link = veth_factory(queues=None)
    with xs.create_rx_socket(link.b, 0, xs.XdpConfig(xdp_mode="native")):
        assert _xskmap_entries(link.b_index) == 1
    three = veth_factory(queues=3)
    with xs.create_rx_socket(three.b, 2, xs.XdpConfig(xdp_mode="native")):
        assert _xskmap_entries(three.b_index) == 3


def test_info_shows_the_queues_in_use(veth_factory: Any) -> None:
    link = veth_factory(queues=None)
    r = subprocess.run([*CLI, "info", "--json", link.a], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert (row["rx_queues"], row["tx_queues"]) == sysfs_queues(link.a)
    assert (row["allocated_rx_queues"], row["allocated_tx_queues"]) == allocated(link.a_index)
    assert row["queues_from"] == "netdev"
    bad = subprocess.run([*CLI, "capture", "-i", link.b, "-q", "1", "-w", "/dev/null"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert f"{link.b} has 1 RX queue (0..0); queue 1 does not exist" in bad.stderr


def test_capture_all_queues_on_a_default_veth(veth_factory: Any, tmp_path: Path) -> None:
    link = veth_factory(queues=None)
    out = tmp_path / "all.pcap"
    sent = [testing.make_frame(payload=b"q" + bytes([i]) * 20) for i in range(5)]
    proc = subprocess.Popen([*CLI, "capture", "-i", link.b, "--all-queues", "-w", str(out),
                             "-c", str(len(sent)), "-d", "20", "--xdp-mode", "native"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not builtin_program_attached(link.b_index):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "capture never attached its program"
            time.sleep(0.02)
        time.sleep(0.3)
        with testing.AfPacketPeer(link.a) as peer:
            for f in sent:
                peer.send(f)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert [p.data for p in read_capture(out)] == sent
