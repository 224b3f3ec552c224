"""The built-in program's fallback: frames on a queue with no AF_XDP socket
go up the kernel stack (XDP_PASS), frames on a socket's queue go to the
socket only. Checked with an independent AF_PACKET listener on the same
interface. Native XDP on veth keeps the sender's queue (KERNEL_NOTES.md)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import xdp_socket as xs
from xdp_socket import testing

pytestmark = pytest.mark.kernel


def test_unclaimed_queue_reaches_the_stack_claimed_queue_does_not(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    cfg = xs.XdpConfig(xdp_mode="native")
    to_socket = [testing.make_frame(payload=b"Q0-%03d" % i) for i in range(50)]
    to_stack = [testing.make_frame(payload=b"Q1-%03d" % i) for i in range(50)]
    with xs.create_rx_socket(link.b, 0, cfg) as rx, \
            testing.AfPacketPeer(link.b) as listener, \
            xs.create_tx_socket(link.a, 0) as tx0, \
            xs.create_tx_socket(link.a, 1) as tx1:
        for f0, f1 in zip(to_socket, to_stack, strict=True):
            assert tx0.send(f0)
            assert tx1.send(f1)
        assert tx0.flush(2.0) and tx1.flush(2.0)
        got_socket: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(got_socket) < len(to_socket) and time.monotonic() < deadline:
            p = rx.recv(timeout=0.1)
            if p is not None:
                got_socket.append(p)
        seen_by_stack = listener.recv_matching(lambda f: True, len(to_stack), timeout=3.0)
        # nothing more trickles in
        extra = listener.recv_matching(lambda f: True, 1, timeout=0.3)
    assert got_socket == to_socket
    assert seen_by_stack == to_stack
    assert extra == []
