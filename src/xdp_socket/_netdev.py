"""Layer 2: XDP features of a device, from the generic-netlink ``netdev`` family.

Since Linux 6.3 drivers declare what XDP they support (``xdp_features``) and
the kernel reports it through the ``netdev`` generic-netlink family
(``NETDEV_CMD_DEV_GET``, include/uapi/linux/netdev.h). pyroute2 (0.9) has no
class for that family, so this module declares its message layout and asks
through pyroute2's :class:`GenericNetlinkSocket`.

Older kernels have no such family, or no attribute for newer fields; those
come back as ``None`` rather than as an error, so callers can print "unknown".
"""

from __future__ import annotations

import errno
import functools
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ._check import check_int
from ._sys.consts import IFINDEX_MAX
from .errors import xdp_error

_T = TypeVar("_T")


def outside_event_loop(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Make a synchronous pyroute2 call safe inside ``async`` code.

    pyroute2's synchronous API drives an asyncio loop of its own, which fails
    ("This event loop is already running") in a thread whose loop is running,
    e.g. when a socket is created inside a coroutine. There the call runs in
    a short-lived thread instead. A new thread starts in the network
    namespace of the thread that creates it, so it sees the same interfaces.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        # No event loop can run before asyncio is imported, and importing it
        # costs ~30 ms of start-up: look it up instead.
        asyncio = sys.modules.get("asyncio")
        in_loop = asyncio is not None and asyncio._get_running_loop() is not None
        # The call must not run inside the ``except`` block: everything it
        # raises (or stores, as pyroute2 does) would chain to that
        # RuntimeError, whose traceback keeps this frame and its callers
        # alive (a socket being created, the program's attachment ...).
        if not in_loop:
            return fn(*args, **kwargs)
        box: list[Any] = []

        def run() -> None:
            try:
                box.append((True, fn(*args, **kwargs)))
            except BaseException as e:  # handed back to the caller below
                box.append((False, e))

        t = threading.Thread(target=run, name="xdp-socket-netlink", daemon=True)
        t.start()
        t.join()
        ok, value = box[0]
        if not ok:
            raise value
        result: _T = value
        return result

    return wrapper

__all__ = [
    "XDP_FEATURE_NAMES",
    "XDP_RX_METADATA_NAMES",
    "XSK_FEATURE_NAMES",
    "LinkBasics",
    "NetdevFeatures",
    "link_basics",
    "netdev_features",
    "netdev_queue_counts",
]

# include/uapi/linux/netdev.h
NETDEV_FAMILY_NAME = "netdev"
NETDEV_FAMILY_VERSION = 1
NETDEV_CMD_DEV_GET = 1
NETDEV_CMD_QUEUE_GET = 10  # Linux 6.8+
NETDEV_QUEUE_TYPE_RX = 0  # enum netdev_queue_type
NETDEV_QUEUE_TYPE_TX = 1

# enum netdev_xdp_act (bit -> the name ynl and `ip` print)
XDP_FEATURE_NAMES: tuple[tuple[int, str], ...] = (
    (1 << 0, "basic"),  # NETDEV_XDP_ACT_BASIC: ABORTED, DROP, PASS, TX
    (1 << 1, "redirect"),  # NETDEV_XDP_ACT_REDIRECT
    (1 << 2, "ndo-xmit"),  # NETDEV_XDP_ACT_NDO_XMIT: can be a redirect target
    (1 << 3, "xsk-zerocopy"),  # NETDEV_XDP_ACT_XSK_ZEROCOPY
    (1 << 4, "hw-offload"),  # NETDEV_XDP_ACT_HW_OFFLOAD
    (1 << 5, "rx-sg"),  # NETDEV_XDP_ACT_RX_SG: multi-buffer receive
    (1 << 6, "ndo-xmit-sg"),  # NETDEV_XDP_ACT_NDO_XMIT_SG
)

# enum netdev_xdp_rx_metadata
XDP_RX_METADATA_NAMES: tuple[tuple[int, str], ...] = (
    (1 << 0, "timestamp"),
    (1 << 1, "hash"),
    (1 << 2, "vlan-tag"),
    (1 << 3, "checksum"),
)

# enum netdev_xsk_flags: AF_XDP TX metadata the driver honours
XSK_FEATURE_NAMES: tuple[tuple[int, str], ...] = (
    (1 << 0, "tx-timestamp"),
    (1 << 1, "tx-checksum"),
    (1 << 2, "tx-launch-time-fifo"),
)


def flag_names(value: int, table: tuple[tuple[int, str], ...]) -> list[str]:
    """Names of the bits set in ``value``; unknown bits as ``bit<N>``."""
    names = [name for bit, name in table if value & bit]
    known = 0
    for bit, _ in table:
        known |= bit
    rest = value & ~known
    n = 0
    while rest:
        if rest & 1:
            names.append(f"bit{n}")
        rest >>= 1
        n += 1
    return names


@dataclass(frozen=True)
class NetdevFeatures:
    """What the ``netdev`` family says about one device.

    ``xdp_features``, ``xdp_rx_metadata`` and ``xsk_features`` are the raw
    bitmasks (``None`` when the kernel did not send the attribute);
    ``xdp_zc_max_segs`` is sent only for zero-copy capable devices.
    """

    ifindex: int
    xdp_features: int | None
    xdp_zc_max_segs: int | None
    xdp_rx_metadata: int | None
    xsk_features: int | None

    def xdp_feature_names(self) -> list[str]:
        return flag_names(self.xdp_features or 0, XDP_FEATURE_NAMES)

    def xdp_rx_metadata_names(self) -> list[str]:
        return flag_names(self.xdp_rx_metadata or 0, XDP_RX_METADATA_NAMES)

    def xsk_feature_names(self) -> list[str]:
        return flag_names(self.xsk_features or 0, XSK_FEATURE_NAMES)


def _msg_class() -> Any:
    from pyroute2.netlink import genlmsg  # type: ignore[import-untyped]

    class netdev_dev_msg(genlmsg):  # type: ignore[misc]
        # enum { NETDEV_A_DEV_* } in include/uapi/linux/netdev.h; index = attr type.
        prefix = "NETDEV_A_DEV_"
        nla_map = (
            ("NETDEV_A_DEV_UNSPEC", "none"),
            ("NETDEV_A_DEV_IFINDEX", "uint32"),
            ("NETDEV_A_DEV_PAD", "none"),
            ("NETDEV_A_DEV_XDP_FEATURES", "uint64"),
            ("NETDEV_A_DEV_XDP_ZC_MAX_SEGS", "uint32"),
            ("NETDEV_A_DEV_XDP_RX_METADATA_FEATURES", "uint64"),
            ("NETDEV_A_DEV_XSK_FEATURES", "uint64"),
        )

    return netdev_dev_msg


@outside_event_loop
def netdev_features(ifindex: int | None = None) -> dict[int, NetdevFeatures] | None:
    """XDP features of device ``ifindex`` (or of every device in the calling
    thread's namespace when ``None``), keyed by ifindex.

    Returns ``None`` when the kernel has no ``netdev`` family (before 6.3).
    An ifindex that does not exist raises :class:`~xdp_socket.XdpError` (ENODEV).
    """
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]
    from pyroute2.netlink.generic import GenericNetlinkSocket  # type: ignore[import-untyped]

    if ifindex is not None:
        check_int("interface index", ifindex, min=1, max=IFINDEX_MAX)
    cls = _msg_class()
    sock = GenericNetlinkSocket()
    try:
        try:
            sock.bind(NETDEV_FAMILY_NAME, cls)
        except NetlinkError as e:
            if e.code in (errno.ENOENT, errno.EOPNOTSUPP):
                return None  # kernel without the family
            raise xdp_error(e.code or errno.EIO, "resolve netdev genl family") from None
        msg = cls()
        msg["cmd"] = NETDEV_CMD_DEV_GET
        msg["version"] = NETDEV_FAMILY_VERSION
        flags = NLM_F_REQUEST
        if ifindex is None:
            flags |= NLM_F_DUMP
        else:
            msg["attrs"] = [("NETDEV_A_DEV_IFINDEX", ifindex)]
        try:
            replies = list(sock.nlm_request(msg, msg_type=sock.prid, msg_flags=flags))
        except NetlinkError as e:
            where = None if ifindex is None else f"#{ifindex}"
            raise xdp_error(e.code or errno.EIO, "netdev dev-get", where) from None
    finally:
        sock.close()
    out: dict[int, NetdevFeatures] = {}
    for r in replies:
        idx = r.get("NETDEV_A_DEV_IFINDEX")
        if idx is None:
            continue
        out[int(idx)] = NetdevFeatures(
            ifindex=int(idx),
            xdp_features=_opt_int(r.get("NETDEV_A_DEV_XDP_FEATURES")),
            xdp_zc_max_segs=_opt_int(r.get("NETDEV_A_DEV_XDP_ZC_MAX_SEGS")),
            xdp_rx_metadata=_opt_int(r.get("NETDEV_A_DEV_XDP_RX_METADATA_FEATURES")),
            xsk_features=_opt_int(r.get("NETDEV_A_DEV_XSK_FEATURES")),
        )
    return out


def _queue_msg_class() -> Any:
    from pyroute2.netlink import genlmsg

    class netdev_queue_msg(genlmsg):  # type: ignore[misc]
        # enum { NETDEV_A_QUEUE_* } in include/uapi/linux/netdev.h (the first ones).
        prefix = "NETDEV_A_QUEUE_"
        nla_map = (
            ("NETDEV_A_QUEUE_UNSPEC", "none"),
            ("NETDEV_A_QUEUE_ID", "uint32"),
            ("NETDEV_A_QUEUE_IFINDEX", "uint32"),
            ("NETDEV_A_QUEUE_TYPE", "uint32"),
        )

    return netdev_queue_msg


@outside_event_loop
def netdev_queue_counts(ifindex: int) -> tuple[int, int] | None:
    """``(rx, tx)``: the queues device ``ifindex`` has in use, from the netdev
    family's queue dump (``NETDEV_CMD_QUEUE_GET``, Linux 6.8+).

    The kernel lists exactly the queues below ``real_num_rx_queues`` and
    ``real_num_tx_queues``, the bounds AF_XDP binds against, but only for a
    device that is up. Returns ``None`` when it cannot tell: a kernel without
    the family or the command, or a device that is down.
    """
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.generic import GenericNetlinkSocket

    check_int("interface index", ifindex, min=1, max=IFINDEX_MAX)
    cls = _queue_msg_class()
    sock = GenericNetlinkSocket()
    try:
        try:
            sock.bind(NETDEV_FAMILY_NAME, cls)
        except NetlinkError as e:
            if e.code in (errno.ENOENT, errno.EOPNOTSUPP):
                return None
            raise xdp_error(e.code or errno.EIO, "resolve netdev genl family") from None
        msg = cls()
        msg["cmd"] = NETDEV_CMD_QUEUE_GET
        msg["version"] = NETDEV_FAMILY_VERSION
        msg["attrs"] = [("NETDEV_A_QUEUE_IFINDEX", ifindex)]
        try:
            replies = list(sock.nlm_request(msg, msg_type=sock.prid,
                                            msg_flags=NLM_F_REQUEST | NLM_F_DUMP))
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                raise xdp_error(e.code, "netdev queue-get", f"#{ifindex}") from None
            return None  # EOPNOTSUPP/EINVAL: a kernel before 6.8
    finally:
        sock.close()
    counts = [0, 0]
    for r in replies:
        # A kernel that ignored the ifindex filter would list every device.
        if r.get("NETDEV_A_QUEUE_IFINDEX") != ifindex:
            continue
        kind = r.get("NETDEV_A_QUEUE_TYPE")
        if kind in (NETDEV_QUEUE_TYPE_RX, NETDEV_QUEUE_TYPE_TX):
            counts[kind] += 1
    if counts == [0, 0]:
        return None  # the device is down: the kernel lists no queues for it
    return counts[0], counts[1]


def _opt_int(v: object) -> int | None:
    return None if v is None else int(v)  # type: ignore[call-overload]


@dataclass(frozen=True)
class LinkBasics:
    """The rtnetlink facts ``xdp-socket info`` prints for one link."""

    ifindex: int
    name: str
    mtu: int
    operstate: str
    admin_up: bool
    mac: str | None
    kind: str | None
    num_rx_queues: int
    num_tx_queues: int


_IFF_UP = 0x1  # include/uapi/linux/if.h


@outside_event_loop
def link_basics(ifindex: int | None = None) -> list[LinkBasics]:
    """One link (``ifindex``) or every link of the calling thread's namespace,
    sorted by index. An ifindex that does not exist raises
    :class:`~xdp_socket.XdpError` (ENODEV)."""
    from pyroute2 import IPRoute  # type: ignore[import-untyped]
    from pyroute2.netlink.exceptions import NetlinkError

    if ifindex is not None:  # ifinfomsg packs it as a C int (struct.error beyond)
        check_int("interface index", ifindex, min=1, max=IFINDEX_MAX)
    try:
        with IPRoute() as ipr:
            links = ipr.get_links(ifindex) if ifindex is not None else ipr.get_links()
    except NetlinkError as e:
        where = None if ifindex is None else f"#{ifindex}"
        raise xdp_error(e.code or errno.EIO, "query interface", where) from None
    out = []
    for link in links:
        info = link.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info is not None else None
        out.append(LinkBasics(
            ifindex=int(link["index"]),
            name=str(link.get("IFLA_IFNAME")),
            mtu=int(link.get("IFLA_MTU") or 0),
            operstate=str(link.get("IFLA_OPERSTATE") or "UNKNOWN"),
            admin_up=bool(int(link["flags"]) & _IFF_UP),
            mac=link.get("IFLA_ADDRESS"),
            kind=None if kind is None else str(kind),
            num_rx_queues=int(link.get("IFLA_NUM_RX_QUEUES") or 1),
            num_tx_queues=int(link.get("IFLA_NUM_TX_QUEUES") or 1),
        ))
    out.sort(key=lambda b: b.ifindex)
    return out
