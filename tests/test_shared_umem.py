"""Shared UMEM (XDP_SHARED_UMEM) against the real kernel: sockets on several
queues and interfaces on one Umem, zero-copy forwarding between them with
completions routed back to the owner, frame accounting, errors and lifetime.
Every frame is checked byte for byte at an independent peer (AF_PACKET)."""

from __future__ import annotations

import errno
import gc
import time
import weakref
from typing import Any

import pytest
from helpers import make_test_frame, parse_test_frame

import xdp_socket as xs
from xdp_socket import _ring
from xdp_socket.testing import AfPacketPeer

pytestmark = pytest.mark.kernel

# small rings and few frames, so a run of a few thousand frames wraps every
# ring and reuses every frame many times
CFG = xs.XdpConfig(frame_size=2048, frame_count=128, rx_size=64, tx_size=64, fill_size=64,
                   comp_size=64, xdp_mode="native")
ROUNDS = 60
BURST = 24


def frames_home(path: _ring.RxPath) -> list[int]:
    """Every frame the RX side owns, where it can be seen from user space:
    on the Fill ring (not yet consumed by the kernel) or in a pool/queue."""
    fill = path.fill
    pending = (fill.cached_prod - fill.area.consumer[0]) & _ring.U32
    on_fill = _ring.gather_circular(fill.area.addrs, fill.cached_prod - pending, pending)
    held = [path.pool.snapshot()] + [q.snapshot() for q in (path.returns, *path.extra_returns)]
    return sorted([int(a) for a in on_fill] + [int(a) for h in held for a in h])


def test_forward_between_queues_and_interfaces(veth_factory: Any) -> None:
    """Two RX sockets (queues 0 and 1 of one veth) and a TX socket on another
    veth share one Umem; every received frame is forwarded zero-copy out of
    the other interface and arrives intact; completions go back to the RX
    socket that owns each frame."""
    l1 = veth_factory(queues=2)
    l2 = veth_factory(queues=1)
    with xs.Umem(frame_count=512, frame_size=2048) as umem, \
            AfPacketPeer(l2.b) as peer:
        rxs = [xs.create_rx_socket(l1.b, q, CFG, umem=umem) for q in (0, 1)]
        fwd = xs.create_tx_socket(l2.a, 0, CFG, umem=umem)
        senders = [xs.create_tx_socket(l1.a, q) for q in (0, 1)]
        try:
            assert umem.free_frames == 512 - 3 * 128
            ranges = [(r._path.frame_lo, r._path.frame_hi) for r in rxs]
            assert ranges[0][1] <= ranges[1][0]  # disjoint leases
            sent: list[bytes] = []
            forwarded = [0, 0]
            for rnd in range(ROUNDS):
                for q in (0, 1):
                    with senders[q].reserve(BURST) as out:
                        for i in range(len(out)):
                            f = make_test_frame(q, rnd * BURST + i, 1500)
                            out.write(i, f)
                            sent.append(f)
                        assert len(out) == BURST
                    senders[q]._drive()
                for q, rx in enumerate(rxs):
                    want = BURST
                    deadline = time.monotonic() + 2.0
                    while want and time.monotonic() < deadline:
                        with rx.receive(64, timeout=0.2) as b:
                            if not len(b):
                                continue
                            lo, hi = ranges[q]
                            assert ((b.addrs >= lo) & (b.addrs < hi)).all()
                            k = b.forward(fwd)
                            assert k == len(b), "forward dropped frames"
                            forwarded[q] += k
                            want -= k
                    assert want == 0, f"queue {q} round {rnd}: {want} frames missing"
            got = peer.recv_matching(lambda f: parse_test_frame(f) is not None, len(sent),
                                     timeout=5.0)
            assert forwarded == [ROUNDS * BURST] * 2
            assert sorted(got) == sorted(sent)  # byte-exact, each exactly once
            # completions routed home: nothing in flight, every frame back
            assert fwd.flush(timeout=2.0)
            assert fwd._path.foreign_in_flight == 0
            for q, rx in enumerate(rxs):
                rx.seek_n(1)  # the RX side's next look takes its returned frames
                lo, hi = ranges[q]
                home = frames_home(rx._path)
                assert home == list(range(lo, hi, 2048)), f"queue {q} lost or gained frames"
                st = rx.statistics()
                assert st.rx_dropped == 0 and st.rx_invalid_descs == 0
            assert fwd.statistics().tx_invalid_descs == 0
            # fwd's own TX frames were never used, all still free
            assert fwd._path.pool.count == 128
        finally:
            for s in (*rxs, fwd, *senders):
                s.close()
        # lent ranges are retired (a frame might still sit on another socket's
        # TX ring); fwd's range came back
        assert umem.free_frames == 512 - 2 * 128


def test_errors_are_clear(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    with xs.Umem(frame_count=256, frame_size=2048) as umem, \
            xs.create_rx_socket(link.b, 0, CFG, umem=umem) as rx0:
        with pytest.raises(ValueError, match="frame_size 4096 differs"):
            xs.create_rx_socket(link.b, 1, xs.XdpConfig(frame_count=128), umem=umem)
        with pytest.raises(ValueError, match=r"asks for 256 frames .* 128 free"):
            xs.create_rx_socket(link.b, 1, xs.XdpConfig(frame_size=2048, frame_count=256),
                                umem=umem)
        with pytest.raises(ValueError, match="need_wakeup=False differs"):
            xs.create_rx_socket(
                link.b, 1, xs.XdpConfig(frame_size=2048, frame_count=64, need_wakeup=False),
                umem=umem)
        with pytest.raises(xs.XdpError, match="already bound to") as ei:
            xs.create_tx_socket(link.b, 0, CFG, umem=umem)
        assert ei.value.errno == errno.EBUSY
        # a queue bound by a socket outside the Umem: the kernel's EBUSY
        with xs.create_tx_socket(link.a, 1) as other:
            with pytest.raises(xs.XdpBusyError) as bi:
                xs.create_tx_socket(link.a, 1, xs.XdpConfig(frame_size=2048,
                                                            frame_count=64), umem=umem)
            assert bi.value.errno == errno.EBUSY and other.queue_id == 1
        # every refused socket gave its lease back
        assert umem.free_frames == 128
        assert rx0.statistics().rx_invalid_descs == 0
    with pytest.raises(ValueError, match="closed"):
        xs.create_rx_socket(link.b, 0, CFG, umem=umem)
    with pytest.raises(TypeError, match="umem must be"):
        xs.create_rx_socket(link.b, 0, CFG, umem="u")  # type: ignore[arg-type]


def test_lifetime_last_one_unmaps(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    umem = xs.Umem(frame_count=256, frame_size=2048)
    mm = umem._mm
    a = xs.create_tx_socket(link.a, 0, CFG, umem=umem)
    b = xs.create_tx_socket(link.a, 1, CFG, umem=umem)
    umem.close()  # the user lets go first: the sockets keep it
    assert not mm.closed
    assert b.send(b"\x02" * 60) and b.flush(timeout=1.0)
    a.close()  # the registering socket goes; b's kernel UMEM lives on
    assert not mm.closed
    assert b.send(b"\x02" * 60) and b.flush(timeout=1.0)
    b.close()
    assert mm.closed
    # a new Umem whose first socket closes while the user still holds it:
    # the next socket registers the memory again
    umem = xs.Umem(frame_count=256, frame_size=2048)
    with xs.create_tx_socket(link.a, 0, CFG, umem=umem):
        pass
    assert umem.free_frames == 256 and not umem._mm.closed
    with xs.create_tx_socket(link.a, 0, CFG, umem=umem) as c:
        assert c.send(b"\x02" * 60) and c.flush(timeout=1.0)
    # a forgotten socket: its finalizer queues the range back (no lock taken)
    d = xs.create_tx_socket(link.a, 1, CFG, umem=umem)
    assert umem.free_frames == 128
    with pytest.warns(ResourceWarning):
        del d
        gc.collect()
    assert umem.free_frames == 256
    # dropped without close(), no socket left: freed with its mapping
    gone = weakref.ref(umem._mm)
    del umem
    gc.collect()
    assert gone() is None
