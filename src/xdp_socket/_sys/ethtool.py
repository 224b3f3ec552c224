"""Layer 0: the ethtool ``SIOCETHTOOL`` ioctl, for the channel (queue) counts.

Only ``ETHTOOL_GCHANNELS`` is needed: it tells how many queues a driver runs
right now, which is what the kernel binds AF_XDP sockets against, and it works
on a link that is down (the netdev netlink queue dump does not). The ioctl is
answered for the interface of that name in the network namespace of the
calling thread.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct
from typing import NamedTuple

from ..errors import xdp_error

__all__ = ["Channels", "get_channels", "get_mtu"]

SIOCETHTOOL = 0x8946  # include/uapi/linux/sockios.h
SIOCGIFMTU = 0x8921  # include/uapi/linux/sockios.h: get MTU size
ETHTOOL_GCHANNELS = 0x0000003C  # include/uapi/linux/ethtool.h: get channel counts
_IFNAMSIZ = 16  # include/uapi/linux/if.h
_IFREQ_SIZE = 40  # sizeof(struct ifreq) on 64-bit: name[16] + a 24-byte union


class Channels(NamedTuple):
    """``struct ethtool_channels`` (ethtool.h), without its ``cmd`` word."""

    max_rx: int
    max_tx: int
    max_other: int
    max_combined: int
    rx_count: int
    tx_count: int
    other_count: int
    combined_count: int


_CHANNELS = struct.Struct("=9I")  # cmd, then the eight fields above


def get_channels(ifname: str) -> Channels | None:
    """The driver's channel counts of ``ifname``, or ``None`` when the driver
    does not report them (EOPNOTSUPP, as ``lo`` and ``dummy`` do).

    Raises :class:`~xdp_socket.XdpError` for anything else (ENODEV when the
    interface does not exist in this namespace).
    """
    name = ifname.encode()
    if not name or len(name) >= _IFNAMSIZ:
        raise ValueError(f"not a valid interface name: {ifname!r}")
    buf = ctypes.create_string_buffer(_CHANNELS.pack(ETHTOOL_GCHANNELS, *([0] * 8)))
    # struct ifreq: the name, then ifr_data pointing at our ethtool_channels.
    ifreq = struct.pack(f"{_IFNAMSIZ}sP", name, ctypes.addressof(buf)).ljust(_IFREQ_SIZE, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
        except OSError as e:
            if e.errno == errno.EOPNOTSUPP:
                return None
            raise xdp_error(e.errno or errno.EIO, "ethtool get channels", ifname) from None
    return Channels(*_CHANNELS.unpack_from(buf.raw)[1:])


def get_mtu(ifname: str) -> int:
    """The MTU of ``ifname`` (``SIOCGIFMTU``, the neighbouring ioctl: no
    netlink needed), in the network namespace of the calling thread."""
    name = ifname.encode()
    if not name or len(name) >= _IFNAMSIZ:
        raise ValueError(f"not a valid interface name: {ifname!r}")
    ifreq = struct.pack(f"{_IFNAMSIZ}s", name).ljust(_IFREQ_SIZE, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            out = fcntl.ioctl(s.fileno(), SIOCGIFMTU, ifreq)
        except OSError as e:
            raise xdp_error(e.errno or errno.EIO, "get MTU", ifname) from None
    mtu: int = struct.unpack_from("=i", out, _IFNAMSIZ)[0]  # ifr_mtu
    return mtu
