"""xdp_socket.scapy_compat: scapy packets through AF_XDP, and the core's
independence from scapy."""

from __future__ import annotations

import subprocess
import sys

import pytest

import xdp_socket as xs
from xdp_socket import testing


def test_core_never_imports_scapy() -> None:
    code = ("import sys, xdp_socket, xdp_socket.pcap, xdp_socket.cli.main; "
            "xdp_socket.cli.main.build_parser(); "
            "assert not any(m == 'scapy' or m.startswith('scapy.') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_import_without_scapy_gives_a_hint() -> None:
    code = ("import sys; sys.modules['scapy'] = None\n"
            "try:\n    import xdp_socket.scapy_compat\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert "pip install xdp-socket[scapy]" in out


@pytest.mark.kernel
def test_send_and_receive_scapy_packets(veth: testing.VethPair) -> None:
    pytest.importorskip("scapy")
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    from xdp_socket.scapy_compat import recv_scapy, send_scapy

    pkt = Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01",
                type=testing.TEST_ETHERTYPE) / Raw(b"scapy over af_xdp" + bytes(40))
    # scapy -> AF_XDP TX -> AF_PACKET peer
    with xs.create_tx_socket(veth.a, 0) as tx, testing.AfPacketPeer(veth.b) as peer:
        send_scapy(tx, pkt)
        assert peer.recv(2.0) == bytes(pkt)
    # AF_PACKET peer -> AF_XDP RX -> scapy
    with xs.create_rx_socket(veth.b, 0, xs.XdpConfig(xdp_mode="native")) as rx, \
            testing.AfPacketPeer(veth.a) as peer:
        assert recv_scapy(rx, timeout=0) is None
        peer.send(bytes(pkt))
        got = None
        for _ in range(20):  # skip anything that is not ours
            got = recv_scapy(rx, timeout=2.0)
            if got is None or got.type == testing.TEST_ETHERTYPE:
                break
        assert got is not None and isinstance(got, Ether)
        assert bytes(got) == bytes(pkt)
        assert got[Raw].load.startswith(b"scapy over af_xdp")
