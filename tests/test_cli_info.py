"""`xdp-socket info` against what iproute2 reports (`ip -d -j link`), and the
netdev-family query against the kernel's own view."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import xdp_socket as xs
from xdp_socket import testing
from xdp_socket._netdev import XDP_FEATURE_NAMES, flag_names, netdev_features

pytestmark = pytest.mark.kernel

CLI = [sys.executable, "-m", "xdp_socket"]


def ip_links() -> dict[str, Any]:
    out = subprocess.run(["ip", "-d", "-j", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def sysfs_queues(name: str) -> tuple[int, int]:
    """(rx, tx) queues in use, from the test process's own sysfs (conftest
    mounted it in this namespace)."""
    entries = [p.name for p in Path(f"/sys/class/net/{name}/queues").iterdir()]
    return (sum(e.startswith("rx-") for e in entries), sum(e.startswith("tx-") for e in entries))


def info_json(*args: str) -> list[dict[str, Any]]:
    r = subprocess.run([*CLI, "info", "--json", *args], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_info_matches_ip_link(veth_factory: Any) -> None:
    link = veth_factory(queues=3, mtu=2000)
    rows = {r["name"]: r for r in info_json()}
    ip = ip_links()
    assert set(rows) == set(ip)
    for name, r in rows.items():
        assert r["ifindex"] == ip[name]["ifindex"]
        assert r["mtu"] == ip[name]["mtu"]
        assert r["allocated_rx_queues"] == ip[name]["num_rx_queues"]
        assert r["allocated_tx_queues"] == ip[name]["num_tx_queues"]
        if r["admin_up"]:  # queues in use: what this namespace's own sysfs lists
            assert (r["rx_queues"], r["tx_queues"]) == sysfs_queues(name)
        assert r["state"] == ip[name]["operstate"]
        assert r["xdp"]["mode"] is None and not r["xdp"]["builtin"]
    assert rows[link.a]["rx_queues"] == 3 and rows[link.a]["mtu"] == 2000
    # veth drivers declare at least the basic XDP actions
    assert "basic" in rows[link.a]["xdp_features"]


def test_info_shows_the_attached_program(veth: testing.VethPair) -> None:
    with xs.create_rx_socket(veth.b, 0, xs.XdpConfig(xdp_mode="native")):
        (row,) = info_json(veth.b)
        xdp = ip_links()[veth.b]["xdp"]
        assert row["xdp"]["mode"] == "native"
        assert row["xdp"]["builtin"] is True
        assert row["xdp"]["prog_id"] == xdp["prog"]["id"]
        table = subprocess.run([*CLI, "info", veth.b], capture_output=True, text=True,
                               timeout=30).stdout
        assert f"native:{xdp['prog']['id']} ours" in table
    (row,) = info_json(str(veth.b_index))  # by index, after the socket closed
    assert row["name"] == veth.b and row["xdp"]["mode"] is None


def test_info_table_has_a_row_per_interface(veth: testing.VethPair) -> None:
    r = subprocess.run([*CLI, "info"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["IDX", "NAME", "MTU", "STATE"]
    names = {line.split()[1] for line in lines[1:]}
    assert {"lo", veth.a, veth.b} <= names


def test_netdev_features_single_and_dump_agree(veth: testing.VethPair) -> None:
    everything = netdev_features()
    assert everything is not None  # 6.18 has the netdev family
    one = netdev_features(veth.a_index)
    assert one is not None
    assert one[veth.a_index] == everything[veth.a_index]
    with pytest.raises(xs.XdpError) as e:
        netdev_features(999_999)
    assert e.value.errno == 19  # ENODEV


def test_flag_names_reports_unknown_bits() -> None:
    assert flag_names(0b1000011, XDP_FEATURE_NAMES) == ["basic", "redirect", "ndo-xmit-sg"]
    assert flag_names(1 << 9, XDP_FEATURE_NAMES) == ["bit9"]


def test_info_says_which_ring_path_is_active() -> None:
    """The compiled accelerator is used unless it is missing or switched off;
    the environment variable always forces pure Python."""
    import os

    env = {**os.environ, "XDP_SOCKET_NO_ACCEL": "1"}
    for extra, want in (({}, xs.accelerator()), (env, "python")):
        r = subprocess.run([*CLI, "info", "--json", "lo"], capture_output=True, text=True,
                           timeout=30, env=extra or None)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["accel"] == want
        r = subprocess.run([*CLI, "info", "lo"], capture_output=True, text=True, timeout=30,
                           env=extra or None)
        assert r.stdout.splitlines()[-1].startswith(f"ring path: {want} ("), r.stdout


def test_info_unknown_interface() -> None:
    r = subprocess.run([*CLI, "info", "nosuchif0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip() == "xdp-socket info: no such interface: nosuchif0"
