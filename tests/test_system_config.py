"""System tests of socket setup: how frames are split per direction, huge
pages and their fallback, what the kernel reports back, the numpy views."""

from __future__ import annotations

import errno
from typing import Any

import numpy as np
import pytest

import xdp_socket as xs
from xdp_socket._sys.xsk import free_huge_pages

pytestmark = pytest.mark.kernel


def held_by_fill(path: Any) -> int:
    return (path.fill.cached_prod - path.fill._cons[0]) & 0xFFFFFFFF


def test_tx_only_socket_has_every_frame_free(veth: Any) -> None:
    cfg = xs.XdpConfig(frame_count=1024, tx_size=512)
    with xs.create_tx_socket(veth.a, 0, cfg) as tx:
        assert tx.in_flight == 0
        assert tx.seek_n(2000) == 512  # the TX ring bounds one reservation
        assert tx._path.pool.count == 1024 - 512


def test_rx_only_socket_starts_empty_with_fill_ring_full(veth: Any) -> None:
    cfg = xs.XdpConfig(frame_count=4096, fill_size=2048, xdp_mode="native")
    with xs.create_rx_socket(veth.b, 0, cfg) as rx:
        assert rx.seek_n(64) == 0
        assert rx.available == 0
        path = rx._path
        assert held_by_fill(path) == 2048
        assert path.pool.count == 4096 - 2048  # the rest waits for room


def test_bidirectional_socket_splits_frames_and_rings_are_disjoint(veth: Any) -> None:
    cfg = xs.XdpConfig(frame_count=256, fill_size=128, tx_size=128, xdp_mode="native")
    tx, rx = xs.create_bi_socket(veth.b, 0, cfg)
    with tx, rx:
        assert tx.fileno() == rx.fileno()
        fill = set(rx.rings.fill[:128].tolist())
        assert len(fill) == 128
        assert tx.seek_n(128) == 128
        tx_frames = {tx._path.frame_addr(i) for i in range(128)}
        assert not (fill & tx_frames), "a frame is on two rings"
        assert len(fill | tx_frames) == 256


def test_frame_count_smaller_than_fill_ring(veth: Any) -> None:
    cfg = xs.XdpConfig(frame_count=64, fill_size=2048, xdp_mode="native")
    with xs.create_rx_socket(veth.b, 0, cfg) as rx:
        assert held_by_fill(rx._path) == 64


def test_huge_pages_auto_falls_back(veth: Any) -> None:
    with xs.create_tx_socket(veth.a, 0, xs.XdpConfig(huge_page=None)) as tx:
        core = tx._core
        assert core.umem.huge_page == (free_huge_pages() * 2 * 1024 * 1024 >= core.umem.size)
        assert tx.umem.shape == (4096, 4096)
    with xs.create_tx_socket(veth.a, 0, xs.XdpConfig(huge_page=False)) as tx:
        assert tx._core.umem.huge_page is False


@pytest.mark.skipif(free_huge_pages() > 0, reason="this machine has free huge pages")
def test_huge_pages_required_but_none_free(veth: Any) -> None:
    with pytest.raises(xs.XdpError) as info:
        xs.create_tx_socket(veth.a, 0, xs.XdpConfig(huge_page=True))
    assert info.value.errno == errno.ENOMEM
    assert "huge page" in str(info.value) and veth.a in str(info.value)


def test_socket_reports_copy_mode_and_statistics_fields(veth: Any) -> None:
    with xs.create_tx_socket(veth.a, 0) as tx:
        assert tx.zero_copy is False  # veth has copy mode only
        st = tx.statistics()
        assert st._fields == ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs",
                              "rx_ring_full", "rx_fill_ring_empty_descs",
                              "tx_ring_empty_descs")
        assert all(isinstance(v, int) for v in st)
        assert (tx.ifname, tx.ifindex, tx.queue_id, tx.frame_size) == \
            (veth.a, veth.a_index, 0, 4096)
    with xs.create_tx_socket(veth.a_index, 0) as tx:  # by index
        assert tx.ifname == veth.a


def test_umem_and_ring_views_are_the_shared_memory(veth: Any) -> None:
    with xs.create_tx_socket(veth.a, 0, xs.XdpConfig(frame_size=2048)) as tx:
        assert tx.umem.dtype == np.uint8 and tx.umem.shape == (4096, 2048)
        rings = tx.rings
        assert rings.tx.dtype.names == ("addr", "len", "options")
        assert rings.completion.dtype == np.uint64 and rings.rx.shape == (0,)
        tx.seek_n(1)
        tx.peek_at(0, 60)[:4] = b"\xde\xad\xbe\xef"
        addr = tx._path.frame_addr(0)
        assert bytes(tx.umem.reshape(-1)[addr : addr + 4]) == b"\xde\xad\xbe\xef"
        assert int(rings.tx["len"][0]) == 60
        view = tx.umem
    # after close the view is still valid memory (the mapping outlives it)
    assert view.shape == (4096, 2048)
    assert int(view[0, 0]) >= 0


def test_views_held_after_close_keep_memory_valid(veth: Any) -> None:
    tx = xs.create_tx_socket(veth.a, 0)
    tx.seek_n(1)
    buf = tx.peek_at(0, 100)
    rings = tx.rings
    tx.close()
    buf[:5] = b"hello"  # no crash: the mapping lives until the view is gone
    assert bytes(buf[:5]) == b"hello"
    assert rings.tx.shape[0] == 2048
    with pytest.raises(xs.SocketClosedError):
        tx.seek_n(1)
    with pytest.raises(xs.SocketClosedError):
        tx.umem  # noqa: B018


def test_idle_receive_returns_an_empty_batch(veth: Any) -> None:
    with xs.create_rx_socket(veth.b, 0, xs.XdpConfig(xdp_mode="native")) as rx:
        first = rx.receive(64)
        assert len(first) == 0
        with rx.receive(64, timeout=0.05) as again:  # waits, then gives an empty batch
            assert len(again) == 0 and again.payloads() == []
        # an empty batch never blocks the next receive
        assert len(rx.receive(8)) == 0
