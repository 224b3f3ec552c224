"""A test kit for programs that use xdp_socket, without a physical NIC.

Everything here works inside a *private* network namespace that the test
process creates for itself, with virtual Ethernet (veth) pairs as the links::

    from xdp_socket import testing

    testing.enter_private_netns()          # once, early (root needed)
    with testing.veth_pair(queues=2) as link:
        peer = testing.AfPacketPeer(link.b)
        tx = xdp_socket.create_tx_socket(link.a, 0)
        tx.send(testing.make_frame(testing.BROADCAST, testing.LOCAL_MAC, payload=b"hi"))
        frame = peer.recv(timeout=1.0)

Nothing is ever created in the host's namespace: :func:`veth_pair` refuses to
run unless :func:`enter_private_netns` moved the calling thread first, and
everything created in the private namespace disappears with the process.

Notes on what the kernel does to test traffic:

* A new interface sends IPv6 router/neighbour discovery frames a few seconds
  after it comes up. :func:`enter_private_netns` turns IPv6 off for new
  interfaces; tests that count frames should still match their own frames,
  e.g. by :data:`TEST_ETHERTYPE` (an IEEE "local experimental" ethertype).
* veth silently drops frames longer than its MTU + 18 bytes; pass ``mtu=`` to
  :func:`veth_pair` to test long frames.
* On veth, a frame sent on queue *q* of one end arrives on RX queue *q* of the
  other end only when that end runs a native-mode XDP program.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ._check import check_int
from ._netdev import outside_event_loop
from ._sys import bpf as _bpf
from ._sys import bpf_asm as _asm
from ._sys import consts
from ._sys.ns import mount, unshare
from .config import XDP_MODE_FLAGS
from .frames import ETH_HLEN, ETH_ZLEN, mac_bytes
from .iface import queue_counts, resolve_interface

__all__ = [
    "BROADCAST",
    "LOCAL_MAC",
    "TEST_ETHERTYPE",
    "AfPacketPeer",
    "VethPair",
    "enter_private_netns",
    "in_private_netns",
    "make_frame",
    "udp_port_steering",
    "veth_pair",
]

#: IEEE 802 "local experimental ethertype 1": nothing in the kernel sends it,
#: so frames of this type are the test's own.
TEST_ETHERTYPE = 0x88B5

#: The broadcast MAC address.
BROADCAST = b"\xff" * 6

#: A locally administered unicast MAC address (bit 1 of the first byte set).
LOCAL_MAC = b"\x02\x00\x00\x00\x00\x01"

_ETH_P_ALL = 0x0003  # include/uapi/linux/if_ether.h
_PACKET_OUTGOING = 4  # include/uapi/linux/if_packet.h: pkttype of frames we transmit

# The namespace the kit created: (pid, netns inode). Recorded so that
# veth_pair() can check that the *calling thread* still lives there: a network
# namespace belongs to a thread, and a thread started before
# enter_private_netns() stays in the host's namespace.
_private_ns: tuple[int, int] | None = None
_ns_lock = threading.Lock()
_name_counter = itertools.count()


def _thread_netns_inode() -> int:
    return os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino


def in_private_netns() -> bool:
    """True when the calling thread lives in the namespace :func:`enter_private_netns` made."""
    # A forked child inherits the namespace (same inode): still private.
    ns = _private_ns
    return ns is not None and _thread_netns_inode() == ns[1]


def enter_private_netns(*, mount_sysfs: bool = True) -> None:
    """Move the calling thread into a new, empty network namespace.

    With ``mount_sysfs`` (the default) the process also gets a new mount
    namespace in which ``/`` is made recursively private (so nothing mounted
    here propagates to the host) and a fresh sysfs is mounted on ``/sys``:
    sysfs shows the network namespace it was mounted in, so without this
    ``/sys/class/net`` would still list the host's interfaces. A mount
    namespace can only be entered while the process has a single thread, so
    call this early (before importing numpy, whose BLAS starts threads);
    otherwise pass ``mount_sysfs=False`` — the network namespace alone works
    per thread.

    In the new namespace ``lo`` is brought up and IPv6 is disabled for
    interfaces created from now on, so that router and neighbour discovery do
    not add frames to the test's counts.

    Calling it again in the same process does nothing. Needs root
    (CAP_SYS_ADMIN); raises :class:`PermissionError` otherwise.
    """
    global _private_ns
    with _ns_lock:
        if _private_ns is not None and in_private_netns():
            return
        flags = consts.CLONE_NEWNET
        if mount_sysfs:
            flags |= consts.CLONE_NEWNS
        try:
            unshare(flags)
        except OSError as e:
            if e.errno == errno.EINVAL and mount_sysfs and threading.active_count() > 1:
                raise RuntimeError(
                    "cannot enter a new mount namespace: the process already runs "
                    f"{threading.active_count()} threads; call enter_private_netns() "
                    "earlier or pass mount_sysfs=False"
                ) from e
            raise
        if mount_sysfs:
            # Stop propagation first, or the sysfs mount below would show up
            # on the host's /sys.
            mount(None, "/", None, consts.MS_REC | consts.MS_PRIVATE)
            mount("sysfs", "/sys", "sysfs", 0)
        _private_ns = (os.getpid(), _thread_netns_inode())
        # /proc/sys/net is resolved in the namespace of the thread that opens
        # the file, so this changes the private namespace only.
        with (
            contextlib.suppress(FileNotFoundError),  # kernel without IPv6
            open("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w") as f,
        ):
            f.write("1")
        from pyroute2 import IPRoute  # type: ignore[import-untyped,unused-ignore]

        with IPRoute() as ip:
            (lo,) = ip.link_lookup(ifname="lo")
            ip.link("set", index=lo, state="up")


def _require_private_netns() -> None:
    if not in_private_netns():
        raise RuntimeError(
            "xdp_socket.testing creates interfaces only inside a private network "
            "namespace: call xdp_socket.testing.enter_private_netns() first (from "
            "this thread, or before starting threads)"
        )


@dataclass(frozen=True)
class VethPair:
    """The two ends of a veth pair: names and interface indices, and the
    RX/TX queues each end uses."""

    a: str
    b: str
    a_index: int
    b_index: int
    queues: int
    mtu: int


def _unique_names() -> tuple[str, str]:
    n = next(_name_counter)
    base = f"xt{os.getpid() % 100000}x{n}"
    return base + "a", base + "b"


@contextlib.contextmanager
def veth_pair(
    a: str | None = None,
    b: str | None = None,
    *,
    queues: int | None = 1,
    mtu: int | None = None,
    timeout: float = 5.0,
) -> Iterator[VethPair]:
    """Create a veth pair, bring it up, and delete it when the block ends.

    ``a``/``b`` name the two ends (unique names are made up when omitted);
    both get ``queues`` RX and TX queues (``None``: the kernel's default, as
    ``ip link add A type veth peer name B`` makes it: one queue per CPU
    allocated, one in use; :attr:`VethPair.queues` is then the count in use);
    ``mtu`` sets both ends' MTU (veth drops frames longer than MTU + 18 bytes).
    The block starts only once both ends are operationally up (carrier on), or
    :class:`TimeoutError` after ``timeout`` seconds.

    Raises :class:`RuntimeError` unless the calling thread is in the private
    namespace made by :func:`enter_private_netns`: the kit never creates
    interfaces on the host.
    """
    _require_private_netns()
    if queues is not None:  # None: the kernel default (one queue per CPU)
        check_int("queues", queues, min=1, max=4096)
    if mtu is not None:
        check_int("mtu", mtu, min=68)  # IPv4's minimum MTU (RFC 791)
    if (a is None) != (b is None):
        raise ValueError("give both names or neither")
    if a is None or b is None:
        a, b = _unique_names()
    for name in (a, b):
        if not name or len(name) >= 16 or "/" in name or " " in name:
            raise ValueError(f"not a valid interface name: {name!r}")

    pair = _create_veth(a, b, queues, mtu, timeout)
    try:
        yield pair
    finally:
        # Deleting one end deletes both; it also detaches any XDP program.
        _delete_link(pair.a_index)


@outside_event_loop
def _create_veth(
    a: str, b: str, queues: int | None, mtu: int | None, timeout: float
) -> VethPair:
    from pyroute2 import IPRoute  # type: ignore[import-untyped,unused-ignore]

    with IPRoute() as ip:
        if queues is None:
            ip.link("add", ifname=a, kind="veth", peer={"ifname": b})
        else:
            ip.link(
                "add",
                ifname=a,
                kind="veth",
                peer={"ifname": b, "num_rx_queues": queues, "num_tx_queues": queues},
                num_rx_queues=queues,
                num_tx_queues=queues,
            )
        try:
            a_index = ip.link_lookup(ifname=a)[0]
            b_index = ip.link_lookup(ifname=b)[0]
            for index in (a_index, b_index):
                (link,) = ip.get_links(index)
                got = (link.get_attr("IFLA_NUM_RX_QUEUES"), link.get_attr("IFLA_NUM_TX_QUEUES"))
                if queues is not None and got != (queues, queues):
                    raise RuntimeError(
                        f"veth {link.get_attr('IFLA_IFNAME')} got (rx, tx) queues {got}, "
                        f"asked for {queues}"
                    )
                if mtu is not None:
                    ip.link("set", index=index, mtu=mtu)
            for index in (a_index, b_index):
                ip.link("set", index=index, state="up")
            _wait_oper_up(ip, (a_index, b_index), timeout)
            (link,) = ip.get_links(a_index)
            if queues is None:
                queues = queue_counts(a_index)[0]
            pair = VethPair(a, b, a_index, b_index, queues, int(link.get_attr("IFLA_MTU")))
        except BaseException:
            with contextlib.suppress(Exception):
                ip.link("del", ifname=a)
            raise
    return pair


@outside_event_loop
def _delete_link(index: int) -> None:
    from pyroute2 import IPRoute  # type: ignore[import-untyped,unused-ignore]

    # A fresh netlink socket: the caller may have switched threads.
    with IPRoute() as ip, contextlib.suppress(Exception):
        ip.link("del", index=index)


def _wait_oper_up(ip: object, indices: tuple[int, ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = [
            ip.get_links(i)[0].get_attr("IFLA_OPERSTATE")  # type: ignore[attr-defined]
            for i in indices
        ]
        if all(s == "UP" for s in states):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"veth not operationally up after {timeout} s: {states}")
        time.sleep(0.005)


def make_frame(
    dst: bytes | str = BROADCAST,
    src: bytes | str = LOCAL_MAC,
    ethertype: int = TEST_ETHERTYPE,
    payload: bytes = b"",
    *,
    pad: bool = True,
) -> bytes:
    """Build an Ethernet frame: ``dst`` + ``src`` + ``ethertype`` + ``payload``.

    MAC addresses are 6 bytes or ``"aa:bb:cc:dd:ee:ff"`` strings. With ``pad``
    (the default) frames shorter than 60 bytes (the Ethernet minimum without
    FCS) are padded with zero bytes, as a NIC would do.
    """
    check_int("ethertype", ethertype, max=0xFFFF)
    frame = mac_bytes(dst, "dst") + mac_bytes(src, "src") + ethertype.to_bytes(2, "big") \
        + bytes(payload)
    if pad and len(frame) < ETH_ZLEN:
        frame += bytes(ETH_ZLEN - len(frame))
    return frame


class AfPacketPeer:
    """A plain ``AF_PACKET``/``SOCK_RAW`` socket bound to one interface: the
    kernel's ordinary packet path, as a reference peer for AF_XDP sockets.

    With ``ethertype`` (default :data:`TEST_ETHERTYPE`) the kernel delivers
    only frames of that type; pass ``None`` to see every frame. Frames the
    interface itself transmits are skipped unless ``outgoing=True``.
    """

    def __init__(
        self,
        ifname: str,
        ethertype: int | None = TEST_ETHERTYPE,
        *,
        outgoing: bool = False,
        rcvbuf: int = 4 << 20,
    ) -> None:
        proto = _ETH_P_ALL if ethertype is None else ethertype
        if not 0 <= proto < 65536:
            raise ValueError(f"ethertype must be in 0..0xffff, got {ethertype!r}")
        self.ifname = ifname
        self.outgoing = outgoing
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
        try:
            # Best effort: a bigger buffer lets a burst wait for recv().
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((ifname, proto))
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, frame: bytes) -> None:
        """Transmit one complete Ethernet frame (header included) on the interface."""
        if len(frame) < ETH_HLEN:
            raise ValueError(f"an Ethernet frame has at least {ETH_HLEN} bytes")
        # Blocking send: the socket is non-blocking for recv, so wait for room.
        while True:
            try:
                self._sock.send(frame)
                return
            except BlockingIOError:
                select.select([], [self._sock], [], 0.1)

    def recv(self, timeout: float | None = 1.0) -> bytes | None:
        """Return the next frame, or ``None`` after ``timeout`` seconds
        (``None`` waits forever, ``0`` only looks)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                data, addr = self._sock.recvfrom(65536)
            except BlockingIOError:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                select.select([self._sock], [], [], left)
                continue
            if addr[2] == _PACKET_OUTGOING and not self.outgoing:
                continue
            return data

    def recv_matching(
        self, pred: Callable[[bytes], bool], count: int, timeout: float = 5.0
    ) -> list[bytes]:
        """Collect up to ``count`` frames for which ``pred(frame)`` is true,
        dropping the rest, for at most ``timeout`` seconds in total. Returns
        what arrived (fewer than ``count`` when time ran out)."""
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            frame = self.recv(max(0.0, deadline - time.monotonic()))
            if frame is None:
                break
            if pred(frame):
                out.append(frame)
        return out

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AfPacketPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _steering_insns(map_fd: int, keys: int) -> bytes:
    """XDP: IPv4 UDP frames (no IP options) -> XSKMAP key ``dport % keys``;
    everything else, and keys with no socket, -> XDP_PASS."""
    A = _asm
    d, end, tmp = A.R2, A.R3, A.R5
    head: list[bytes | tuple[str, int, int]] = [
        A.ldx_w(d, A.R1, consts.XDP_MD_DATA),
        A.ldx_w(end, A.R1, consts.XDP_MD_DATA_END),
        A.mov64_reg(A.R4, d),
        A.alu64_imm("add", A.R4, 38),           # through the UDP destination port
        ("jgt", A.R4, end),
        A.ldx_h(tmp, d, 12),                     # ethertype, network order
        ("jne_imm", tmp, 0x0008),                # 08 00 read little-endian: IPv4
        A.ldx_b(tmp, d, 14),
        ("jne_imm", tmp, 0x45),                  # version 4, 20-byte header
        A.ldx_b(tmp, d, 23),
        ("jne_imm", tmp, 17),                    # UDP
        A.ldx_h(tmp, d, 36),
        A.endian_be(tmp, 16),                    # the destination port
        A.alu64_imm("mod", tmp, keys),
        A.ld_map_fd(A.R1, map_fd),
        A.mov64_reg(A.R2, tmp),
        A.mov64_imm(A.R3, consts.XDP_PASS),     # no socket at that key: pass
        A.call(consts.BPF_FUNC_redirect_map),
        A.exit_(),
    ]
    tail = A.mov64_imm(A.R0, consts.XDP_PASS) + A.exit_()
    # jumps go to the tail: offsets in instructions from the next one
    sizes = [1 if isinstance(i, tuple) else len(i) // 8 for i in head]
    total = sum(sizes)
    out = b""
    at = 0
    for i, n in zip(head, sizes, strict=True):
        at += n
        if isinstance(i, bytes):
            out += i
        elif i[0] == "jgt":
            out += A.jmp_reg("jgt", i[1], i[2], total - at)
        else:
            out += A.jmp_imm("jne", i[1], i[2], total - at)
    return out + tail


@contextlib.contextmanager
def udp_port_steering(iface: str, keys: int = 2, *, mode: str = "native") -> Iterator[int]:
    """For tests and examples of sockets that share a queue: attach an XDP
    program to ``iface`` that redirects every IPv4 UDP frame to key
    ``destination port % keys`` of an XSKMAP of ``keys`` entries (other
    frames pass to the kernel stack), and yield that map's fd, to give as
    ``XdpConfig(xskmap_fd=..., xskmap_key=k)``. Detached, and map and
    program closed, when the block ends."""
    check_int("keys", keys, min=1, max=1 << 16)
    ifname, ifindex = resolve_interface(iface)
    fds: list[int] = []
    try:
        map_fd = _bpf.map_create(consts.BPF_MAP_TYPE_XSKMAP, 4, 4, keys, "xsk_py_steer",
                                 ifname=ifname)
        fds.append(map_fd)
        prog_fd = _bpf.prog_load(consts.BPF_PROG_TYPE_XDP, _steering_insns(map_fd, keys),
                                 "Dual MIT/GPL", "xsk_py_steer", ifname=ifname,
                                 prog_flags=consts.BPF_F_XDP_HAS_FRAGS)
        fds.append(prog_fd)
        fds.append(_bpf.link_create(prog_fd, ifindex, consts.BPF_XDP, XDP_MODE_FLAGS[mode],
                                    ifname=ifname))
        yield map_fd
    finally:
        for fd in reversed(fds):  # the link first: that detaches the program
            os.close(fd)
