"""Layer 2: facts about network interfaces (index, name, queues, XDP state).

Interfaces are looked up in the network namespace of the calling thread.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any

from ._check import check_int

# XDP features and link facts from the netdev generic-netlink family: the
# message layouts live in _netdev; this module is their public face.
from ._netdev import (
    LinkBasics,
    NetdevFeatures,
    link_basics,
    netdev_features,
    netdev_queue_counts,
    outside_event_loop,
)
from ._sys import ethtool as _ethtool
from ._sys.consts import IFINDEX_MAX
from .errors import xdp_error

__all__ = [
    "LinkBasics",
    "LinkFacts",
    "NetdevFeatures",
    "QueueInfo",
    "StackUse",
    "XdpState",
    "has_queue",
    "link_basics",
    "link_facts",
    "mtu",
    "netdev_features",
    "queue_counts",
    "queue_info",
    "resolve_interface",
    "stack_use",
    "xdp_state",
]


def resolve_interface(iface: str | int) -> tuple[str, int]:
    """Return ``(name, ifindex)`` for an interface given by name or index.

    Raises :class:`~xdp_socket.errors.XdpError` with ``ENODEV`` when there is no
    such interface, :class:`TypeError`/:class:`ValueError` for a malformed argument.
    """
    if isinstance(iface, bool) or not isinstance(iface, (str, int)):
        raise TypeError(f"interface must be a name or an index, not {type(iface).__name__}")
    if isinstance(iface, int):
        check_int("interface index", iface, min=1, what="positive")
        if iface > IFINDEX_MAX:
            # No interface has it; and if_indextoname() would raise OverflowError
            # past 2**64 or silently look up the index modulo 2**32 below that.
            raise xdp_error(errno.ENODEV, "look up interface", f"#{iface}")
        try:
            return socket.if_indextoname(iface), iface
        except OSError:
            raise xdp_error(errno.ENODEV, "look up interface", f"#{iface}") from None
    if not iface or len(iface) >= 16 or "/" in iface or "\0" in iface:
        raise ValueError(f"not a valid interface name: {iface!r}")
    try:
        return iface, socket.if_nametoindex(iface)
    except OSError:
        raise xdp_error(errno.ENODEV, "look up interface", iface) from None


# --- link facts over rtnetlink (pyroute2) ------------------------------------
# pyroute2 is imported lazily: it is slow to import and only the XDP program
# code needs it. Each query opens its own netlink socket, in the network
# namespace of the calling thread at that moment.

# pyroute2 decodes IFLA_XDP_ATTACHED (if_link.h XDP_ATTACHED_*) into strings;
# older versions may hand back the raw number, so both spellings are mapped.
_ATTACHED_MODES: dict[object, str | None] = {
    None: None,
    0: None,
    1: "native",
    "xdp": "native",
    2: "skb",
    "xdpgeneric": "skb",
    3: "hw",
    "xdpoffload": "hw",
    4: "multi",
    "xdpmulti": "multi",
}


@dataclass(frozen=True)
class XdpState:
    """What XDP program an interface runs, as rtnetlink reports it (IFLA_XDP).

    ``mode`` is ``None`` (nothing attached), ``"native"``, ``"skb"``, ``"hw"``,
    or ``"multi"`` (programs in more than one mode at once); ``prog_id`` is the
    program id when exactly one is attached, and ``prog_ids`` lists every
    attached program (one per mode).
    """

    mode: str | None
    prog_id: int | None
    prog_ids: tuple[int, ...] = ()


@outside_event_loop
def _get_link(ifindex: int) -> Any:
    from pyroute2 import IPRoute  # type: ignore[import-untyped]
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    check_int("interface index", ifindex, min=1, max=IFINDEX_MAX)
    try:
        with IPRoute() as ipr:
            links = ipr.get_links(ifindex)
    except NetlinkError as e:
        raise xdp_error(e.code or errno.EIO, "query interface", f"#{ifindex}") from None
    if not links:
        raise xdp_error(errno.ENODEV, "query interface", f"#{ifindex}")
    return links[0]


def xdp_state(ifindex: int) -> XdpState:
    """The XDP program(s) attached to interface ``ifindex`` (ENODEV if it is gone)."""
    nested = _get_link(ifindex).get("IFLA_XDP")
    if nested is None:
        return XdpState(None, None)
    attached = nested.get("IFLA_XDP_ATTACHED")
    mode = _ATTACHED_MODES.get(attached, str(attached))
    if mode is None:
        return XdpState(None, None)
    ids: list[int] = []
    for name in ("IFLA_XDP_DRV_PROG_ID", "IFLA_XDP_SKB_PROG_ID", "IFLA_XDP_HW_PROG_ID"):
        v = nested.get(name)
        if v:
            ids.append(int(v))
    # The kernel sends IFLA_XDP_PROG_ID only when a single mode is in use.
    single = nested.get("IFLA_XDP_PROG_ID")
    prog_id = int(single) if single else None
    if prog_id is not None and prog_id not in ids:
        ids.append(prog_id)
    return XdpState(mode, prog_id, tuple(ids))


@dataclass(frozen=True)
class QueueInfo:
    """The queues of one device.

    ``rx``/``tx`` are the queues in use (the kernel's ``real_num_rx_queues`` /
    ``real_num_tx_queues``): a socket binds to a queue id below one of them,
    and the kernel answers EINVAL for any other. ``allocated_rx``/``allocated_tx``
    are the queues the device was created with (rtnetlink
    ``IFLA_NUM_RX/TX_QUEUES``), an upper bound a driver may grow into
    (``ethtool -L``); a veth made without explicit counts gets one per CPU
    and uses one. ``source`` says where ``rx``/``tx`` came from:
    ``"netdev"`` (the netlink queue dump, Linux 6.8+, links that are up),
    ``"ethtool"`` (the driver's channel counts) or ``"allocated"`` (neither
    answered; then the counts are only an upper bound).
    """

    rx: int
    tx: int
    allocated_rx: int
    allocated_tx: int
    source: str


def queue_info(ifindex: int) -> QueueInfo:
    """The queues device ``ifindex`` uses and has allocated (see :class:`QueueInfo`)."""
    link = _get_link(ifindex)
    alloc_rx = int(link.get("IFLA_NUM_RX_QUEUES") or 1)
    alloc_tx = int(link.get("IFLA_NUM_TX_QUEUES") or 1)
    # Why not sysfs (/sys/class/net/IF/queues): it shows the network namespace
    # it was mounted in, not the caller's, so in a private namespace it may
    # describe another device of the same name.
    used = netdev_queue_counts(ifindex)
    if used is not None:
        return QueueInfo(used[0], used[1], alloc_rx, alloc_tx, "netdev")
    name = link.get("IFLA_IFNAME")
    ch = None
    if name:
        try:
            ch = _ethtool.get_channels(str(name))
        except OSError:
            ch = None  # e.g. renamed since we asked: fall back to the bound
    if ch is not None:
        # Drivers count queue pairs as "combined" channels and lone queues as
        # rx/tx ones; the device runs combined + rx RX queues (ethtool(8) -l).
        rx, tx = ch.combined_count + ch.rx_count, ch.combined_count + ch.tx_count
        if 0 < rx <= alloc_rx and 0 < tx <= alloc_tx:
            return QueueInfo(rx, tx, alloc_rx, alloc_tx, "ethtool")
    return QueueInfo(alloc_rx, alloc_tx, alloc_rx, alloc_tx, "allocated")


def queue_counts(ifindex: int) -> tuple[int, int]:
    """``(rx, tx)``: how many RX and TX queues device ``ifindex`` has in use.

    These bound the queue ids a socket can use (``0..rx-1`` to receive,
    ``0..tx-1`` to send). They may be fewer than the queues the device was
    created with; :func:`queue_info` has both and says where the figures came from.
    """
    q = queue_info(ifindex)
    return q.rx, q.tx


def mtu(ifname: str) -> int:
    """The MTU of interface ``ifname`` (an ioctl: cheaper than
    :func:`link_facts`, which asks rtnetlink through pyroute2)."""
    return _ethtool.get_mtu(ifname)


def has_queue(ifname: str, ifindex: int, queue: int, *, rx: bool, tx: bool) -> bool:
    """Whether device ``ifname`` (index ``ifindex``) uses queue ``queue`` in
    every direction asked for, as :func:`queue_counts` would answer.

    The quick answer comes from the ethtool channel ioctl alone: when the
    driver reports the queue in use, that settles it without netlink (and
    without importing pyroute2, ~0.2 s of a TX-only tool's start-up). Any
    other answer (no ethtool support, a queue beyond the reported channels,
    an error) is decided by :func:`queue_counts` with its usual order.
    """
    try:
        ch = _ethtool.get_channels(ifname)
    except (OSError, ValueError):
        ch = None
    if ch is not None:
        # The same reading as queue_info's ethtool fallback (ethtool(8) -l).
        n_rx, n_tx = ch.combined_count + ch.rx_count, ch.combined_count + ch.tx_count
        if (n_rx > 0 and n_tx > 0 and (not rx or queue < n_rx)
                and (not tx or queue < n_tx)):
            return True
    n_rx, n_tx = queue_counts(ifindex)
    return (not rx or queue < n_rx) and (not tx or queue < n_tx)


_IFF_UP = 0x1  # include/uapi/linux/if.h


@dataclass(frozen=True)
class LinkFacts:
    """What a sender needs to know about a link."""

    mtu: int
    mac: str | None
    admin_up: bool
    operstate: str
    kind: str | None  # "veth", "dummy", ... (None for a physical NIC)
    peer_ifindex: int | None  # a veth's peer, when it lives in this namespace


def link_facts(ifindex: int) -> LinkFacts:
    """MTU, MAC, state, kind and (for veth) the peer of interface ``ifindex``."""
    link = _get_link(ifindex)
    info = link.get("IFLA_LINKINFO")
    kind = info.get("IFLA_INFO_KIND") if info is not None else None
    peer = link.get("IFLA_LINK")
    # IFLA_LINK_NETNSID: the peer's index is in another namespace, meaningless here.
    same_ns = link.get("IFLA_LINK_NETNSID") is None
    return LinkFacts(
        mtu=int(link.get("IFLA_MTU") or 1500),
        mac=link.get("IFLA_ADDRESS"),
        admin_up=bool(int(link["flags"]) & _IFF_UP),
        operstate=str(link.get("IFLA_OPERSTATE") or "UNKNOWN"),
        kind=None if kind is None else str(kind),
        peer_ifindex=int(peer) if (kind == "veth" and peer and same_ns) else None,
    )


_RT_SCOPE_UNIVERSE = 0  # rtnetlink.h: a global address (not link- or host-local)


@dataclass(frozen=True)
class StackUse:
    """What the kernel's IP stack uses an interface for: its addresses
    (``"10.0.0.1/24"``; IPv6 link-local ones left out, every up interface has
    one) and whether a default route leaves through it."""

    addresses: tuple[str, ...]
    default_route: bool

    def __bool__(self) -> bool:
        return bool(self.addresses) or self.default_route


@outside_event_loop
def stack_use(ifindex: int) -> StackUse:
    """The IP addresses and default routes interface ``ifindex`` carries.

    A socket that takes a queue (an RX socket with the library's program)
    takes that queue's packets away from the stack, so a caller may want to
    warn when this is truthy.
    """
    from pyroute2 import IPRoute  # type: ignore[import-untyped,unused-ignore]
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped,unused-ignore]

    if isinstance(ifindex, bool) or not isinstance(ifindex, int) or ifindex <= 0:
        raise ValueError(f"interface index must be a positive int, got {ifindex!r}")
    addrs: list[str] = []
    default = False
    try:
        with IPRoute() as ipr:
            for msg in ipr.get_addr(index=ifindex):
                if msg["family"] == socket.AF_INET6 and msg["scope"] != _RT_SCOPE_UNIVERSE:
                    continue
                a = msg.get("IFA_ADDRESS") or msg.get("IFA_LOCAL")
                if a:
                    addrs.append(f"{a}/{msg['prefixlen']}")
            for family in (socket.AF_INET, socket.AF_INET6):
                for r in ipr.get_routes(family=family, dst_len=0):
                    if r.get("RTA_OIF") == ifindex:
                        default = True
                    mp = r.get("RTA_MULTIPATH") or ()
                    if any(hop.get("oif") == ifindex for hop in mp):
                        default = True
    except NetlinkError as e:
        raise xdp_error(e.code or errno.EIO, "query addresses", f"#{ifindex}") from None
    return StackUse(tuple(addrs), default)
