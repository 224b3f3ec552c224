"""Unit tests of L0 parsing, errors and configuration (no root, no kernel)."""

from __future__ import annotations

import ctypes
import errno
import pickle
import struct

import pytest

import xdp_socket as xs
from xdp_socket._sys import xsk as _xsk
from xdp_socket.errors import xdp_error


class FakeSock:
    """Answers getsockopt with canned bytes, like an older or newer kernel."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def getsockopt(self, level: int, opt: int, size: int) -> bytes:
        return self.reply[:size]


def test_kernel_struct_sizes() -> None:
    assert ctypes.sizeof(_xsk.sockaddr_xdp) == 16
    assert ctypes.sizeof(_xsk.xdp_umem_reg) == 32


def test_statistics_tolerate_old_three_field_struct() -> None:
    old = FakeSock(struct.pack("=3Q", 1, 2, 3))  # before Linux 5.9
    st = _xsk.statistics(old, "eth0", 0)  # type: ignore[arg-type]
    assert st == (1, 2, 3, 0, 0, 0)
    new = FakeSock(struct.pack("=6Q", 1, 2, 3, 4, 5, 6))
    assert _xsk.statistics(new, "eth0", 0).tx_ring_empty_descs == 6  # type: ignore[arg-type]


def test_mmap_offsets_of_old_kernels_get_a_flags_word() -> None:
    vals = []
    for ring in range(4):
        vals += [ring * 1000, ring * 1000 + 64, ring * 1000 + 128]
    old = FakeSock(struct.pack("=12Q", *vals))  # before Linux 5.4: no flags offset
    off = _xsk.mmap_offsets(old, "eth0", 0)  # type: ignore[arg-type]
    assert off.fill.consumer == 2064 and off.fill.flags == 2068
    new = FakeSock(struct.pack("=16Q", *range(16)))
    assert _xsk.mmap_offsets(new, "eth0", 0).completion == (12, 13, 14, 15)  # type: ignore[arg-type]
    with pytest.raises(xs.XdpError):
        _xsk.mmap_offsets(FakeSock(b"\0" * 40), "eth0", 0)  # type: ignore[arg-type]


def test_errors_keep_errno_and_name_step_interface_queue() -> None:
    e = xdp_error(errno.ENODEV, "bind xsk", "veth1", 3)
    assert isinstance(e, OSError) and isinstance(e, xs.XdpError)
    assert e.errno == errno.ENODEV and e.step == "bind xsk"
    assert (e.ifname, e.queue_id) == ("veth1", 3)
    assert str(e).startswith("bind xsk on veth1 queue 3: [Errno 19]")
    perm = xdp_error(errno.EPERM, "create AF_XDP socket", "veth1", 0)
    assert isinstance(perm, PermissionError) and isinstance(perm, xs.XdpPermissionError)
    assert "CAP_NET_RAW" in str(perm)
    assert isinstance(xdp_error(errno.EBUSY, "bind xsk"), xs.XdpBusyError)
    assert isinstance(xdp_error(errno.ENETDOWN, "kick TX"), xs.InterfaceDownError)
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is type(e) and str(again) == str(e)
    closed = xs.SocketClosedError("TX socket")
    assert closed.errno == errno.EBADF and "closed" in str(closed)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame_size": 1024},
        {"frame_size": 3000},
        {"rx_size": 1000},
        {"tx_size": 0},
        {"fill_size": -2},
        {"comp_size": 1 << 21},
        {"frame_count": 1},
        {"headroom": -1},
        {"headroom": 4000},
        {"xdp_mode": "hw"},
        {"xskmap_fd": -1},
        {"tx_budget": 0},
        {"tx_budget": 4096},  # above the 2048-entry TX ring: the kernel says EACCES
        {"tx_budget": 65, "tx_size": 64},
        {"busy_poll": 0},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        xs.XdpConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"frame_count": 2.5}, {"rx_size": True},
                                    {"zero_copy": "yes"}])
def test_config_rejects_bad_types(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        xs.XdpConfig(**kwargs)  # type: ignore[arg-type]


def test_config_defaults_and_rx_room() -> None:
    cfg = xs.XdpConfig()
    assert (cfg.frame_size, cfg.frame_count, cfg.rx_size, cfg.xdp_mode) == (4096, 4096, 2048,
                                                                            "auto")
    assert cfg.need_wakeup is True and cfg.zero_copy is None and cfg.huge_page is None
    assert xs.XdpConfig(frame_size=2048, headroom=64).rx_room == 2048 - 256 - 64


def test_bad_arguments_before_the_kernel() -> None:
    with pytest.raises(TypeError):
        xs.create_tx_socket(3.5, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        xs.create_tx_socket("", 0)
    with pytest.raises(ValueError):
        xs.create_tx_socket("x" * 20, 0)
    with pytest.raises(ValueError):
        xs.create_socket("lo", 0, "sideways")
    with pytest.raises(TypeError):
        xs.create_tx_socket("lo", 0, config={"frame_size": 2048})  # type: ignore[arg-type]
