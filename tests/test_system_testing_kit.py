"""System tests of the public test kit, xdp_socket.testing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from xdp_socket import testing

pytestmark = pytest.mark.kernel


def test_private_namespace_is_entered_and_idempotent() -> None:
    assert testing.in_private_netns()
    before = os.stat("/proc/thread-self/ns/net").st_ino
    testing.enter_private_netns()
    assert os.stat("/proc/thread-self/ns/net").st_ino == before
    with open("/proc/sys/net/ipv6/conf/default/disable_ipv6") as f:
        assert f.read().strip() == "1"


def test_threads_started_later_share_the_namespace() -> None:
    seen: list[bool] = []
    t = threading.Thread(target=lambda: seen.append(testing.in_private_netns()))
    t.start()
    t.join(5)
    assert seen == [True]


def test_veth_pair_queues_mtu_sysfs_and_cleanup() -> None:
    with testing.veth_pair(queues=3, mtu=2000) as link:
        assert set(os.listdir("/sys/class/net")) >= {"lo", link.a, link.b}
        for name in (link.a, link.b):
            queues = sorted(os.listdir(f"/sys/class/net/{name}/queues"))
            assert queues == ["rx-0", "rx-1", "rx-2", "tx-0", "tx-1", "tx-2"]
            with open(f"/sys/class/net/{name}/mtu") as f:
                assert f.read().strip() == "2000"
            with open(f"/sys/class/net/{name}/operstate") as f:
                assert f.read().strip() == "up"
        assert (link.queues, link.mtu) == (3, 2000)
        names = (link.a, link.b)
    assert not set(names) & set(os.listdir("/sys/class/net"))


def test_veth_pair_argument_checks() -> None:
    with pytest.raises(ValueError):
        testing.veth_pair(queues=0).__enter__()
    with pytest.raises(ValueError):
        testing.veth_pair("only_a").__enter__()
    with pytest.raises(ValueError):
        testing.veth_pair("x" * 16, "y").__enter__()


def test_veth_pair_refused_outside_the_private_namespace() -> None:
    # A fresh interpreter (in this namespace, but it never called
    # enter_private_netns) must refuse: the module cannot know where it is.
    code = (
        "from xdp_socket import testing\n"
        "try:\n"
        "    testing.veth_pair().__enter__()\n"
        "except RuntimeError as e:\n"
        "    print('refused', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("refused"), out


def test_make_frame() -> None:
    frame = testing.make_frame("02:00:00:00:00:02", testing.LOCAL_MAC, 0x88B5, b"abc")
    assert len(frame) == 60
    assert frame[:6] == b"\x02\x00\x00\x00\x00\x02" and frame[6:12] == testing.LOCAL_MAC
    assert frame[12:14] == b"\x88\xb5" and frame[14:17] == b"abc"
    assert len(testing.make_frame(payload=b"abc", pad=False)) == 17
    for bad in ("zz:00:00:00:00:00", b"\x00" * 5, "00:00"):
        with pytest.raises(ValueError):
            testing.make_frame(bad)
    with pytest.raises(ValueError):
        testing.make_frame(ethertype=0x10000)


def test_af_packet_peer_filters_by_ethertype(veth: Any) -> None:
    with (
        testing.AfPacketPeer(veth.a) as a,
        testing.AfPacketPeer(veth.b) as b,
        testing.AfPacketPeer(veth.b, None) as b_all,
    ):
        other = testing.make_frame(ethertype=0x88B6, payload=b"other")
        ours = [testing.make_frame(payload=bytes([i]) * 100) for i in range(10)]
        a.send(other)
        for f in ours:
            a.send(f)
        assert b.recv_matching(lambda f: True, 10, 2.0) == ours
        assert b.recv(0.05) is None
        everything = b_all.recv_matching(lambda f: True, 11, 2.0)
        assert everything == [other, *ours]
        # the sender does not see its own outgoing frames by default
        assert a.recv(0.05) is None
        with pytest.raises(ValueError):
            a.send(b"short")
