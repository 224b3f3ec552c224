"""AF_XDP socket system calls and the kernel structs of ``if_xdp.h``.

Stdlib only. Each function names its step in the error it raises; callers pass
the interface name and queue so the message reads
``bind xsk on veth1 queue 3: [Errno 19] No such device``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import resource
import socket
import struct
from typing import NamedTuple

from ..errors import xdp_error
from . import consts as C

_libc = ctypes.CDLL(None, use_errno=True)
_libc.bind.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
_libc.bind.restype = ctypes.c_int


class sockaddr_xdp(ctypes.Structure):
    """``struct sockaddr_xdp`` (if_xdp.h)."""

    _fields_ = (
        ("sxdp_family", ctypes.c_uint16),
        ("sxdp_flags", ctypes.c_uint16),
        ("sxdp_ifindex", ctypes.c_uint32),
        ("sxdp_queue_id", ctypes.c_uint32),
        ("sxdp_shared_umem_fd", ctypes.c_uint32),
    )


class xdp_umem_reg(ctypes.Structure):
    """``struct xdp_umem_reg`` (if_xdp.h, Linux 6.8+: 32 bytes with
    ``tx_metadata_len``). Older kernels accept the same 32 bytes: before 6.8 the
    last word was padding, which they require to be zero, and we zero it."""

    _fields_ = (
        ("addr", ctypes.c_uint64),
        ("len", ctypes.c_uint64),
        ("chunk_size", ctypes.c_uint32),
        ("headroom", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("tx_metadata_len", ctypes.c_uint32),
    )


assert ctypes.sizeof(sockaddr_xdp) == 16
assert ctypes.sizeof(xdp_umem_reg) == 32


class RingOffsets(NamedTuple):
    """``struct xdp_ring_offset``: byte offsets inside one ring's mapping."""

    producer: int
    consumer: int
    desc: int
    flags: int


class MmapOffsets(NamedTuple):
    """``struct xdp_mmap_offsets``: one :class:`RingOffsets` per ring."""

    rx: RingOffsets
    tx: RingOffsets
    fill: RingOffsets
    completion: RingOffsets


class Statistics(NamedTuple):
    """``struct xdp_statistics``. Fields an older kernel does not report are 0."""

    rx_dropped: int
    rx_invalid_descs: int
    tx_invalid_descs: int
    rx_ring_full: int
    rx_fill_ring_empty_descs: int
    tx_ring_empty_descs: int


_STATS_FMT = "=6Q"
_STATS_SIZE = struct.calcsize(_STATS_FMT)  # 48 bytes since Linux 5.9; 24 before


def _err(step: str, ifname: str | None, queue_id: int | None, e: OSError | None = None) -> OSError:
    code = e.errno if e is not None and e.errno else ctypes.get_errno()
    return xdp_error(code or errno.EIO, step, ifname, queue_id)


def create_socket(ifname: str, queue_id: int) -> socket.socket:
    """``socket(AF_XDP, SOCK_RAW, 0)``."""
    try:
        return socket.socket(C.AF_XDP, socket.SOCK_RAW, 0)
    except OSError as e:
        if e.errno == errno.EAFNOSUPPORT:
            raise xdp_error(
                e.errno, "create AF_XDP socket", ifname, queue_id,
                hint="this kernel has no AF_XDP (CONFIG_XDP_SOCKETS)",
            ) from None
        raise _err("create AF_XDP socket", ifname, queue_id, e) from None


def set_ring_size(
    sock: socket.socket, optname: int, entries: int, what: str, ifname: str, queue_id: int
) -> None:
    """Ask the kernel for a ring of ``entries`` descriptors (a power of two)."""
    try:
        sock.setsockopt(C.SOL_XDP, optname, struct.pack("=I", entries))
    except OSError as e:
        raise _err(f"set {what} ring size {entries}", ifname, queue_id, e) from None


def register_umem(
    sock: socket.socket,
    addr: int,
    length: int,
    chunk_size: int,
    headroom: int,
    ifname: str,
    queue_id: int,
    flags: int = 0,
) -> None:
    """``setsockopt(XDP_UMEM_REG)`` with a zeroed, exactly sized struct."""
    reg = xdp_umem_reg()  # ctypes zero-fills, so padding / tx_metadata_len are 0
    reg.addr = addr
    reg.len = length
    reg.chunk_size = chunk_size
    reg.headroom = headroom
    reg.flags = flags
    try:
        sock.setsockopt(C.SOL_XDP, C.XDP_UMEM_REG, bytes(reg))
    except OSError as e:
        raise _err("register UMEM", ifname, queue_id, e) from None


def mmap_offsets(sock: socket.socket, ifname: str, queue_id: int) -> MmapOffsets:
    """``getsockopt(XDP_MMAP_OFFSETS)``; kernels before 5.4 lack the flags word,
    which then sits right after the consumer index (as libxdp assumes)."""
    try:
        raw = sock.getsockopt(C.SOL_XDP, C.XDP_MMAP_OFFSETS, 128)
    except OSError as e:
        raise _err("get ring mmap offsets", ifname, queue_id, e) from None
    rings: list[RingOffsets] = []
    if len(raw) >= 128:
        vals = struct.unpack("=16Q", raw[:128])
        for i in range(4):
            p, c, d, f = vals[4 * i : 4 * i + 4]
            rings.append(RingOffsets(p, c, d, f))
    elif len(raw) >= 96:
        vals = struct.unpack("=12Q", raw[:96])
        for i in range(4):
            p, c, d = vals[3 * i : 3 * i + 3]
            rings.append(RingOffsets(p, c, d, c + 4))
    else:
        raise xdp_error(errno.EPROTO, "get ring mmap offsets (short reply)", ifname, queue_id)
    return MmapOffsets(*rings)


def map_ring(
    sock: socket.socket,
    pgoff: int,
    offsets: RingOffsets,
    entries: int,
    desc_size: int,
    what: str,
    ifname: str,
    queue_id: int,
) -> mmap.mmap:
    """Map one ring: its index words and exactly ``entries`` descriptors."""
    length = offsets.desc + entries * desc_size
    try:
        return mmap.mmap(
            sock.fileno(),
            length,
            flags=mmap.MAP_SHARED | C.MAP_POPULATE,
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
            offset=pgoff,
        )
    except OSError as e:
        raise _err(f"mmap {what} ring", ifname, queue_id, e) from None


def bind(
    sock: socket.socket,
    ifindex: int,
    queue_id: int,
    flags: int,
    ifname: str,
    shared_umem_fd: int = 0,
) -> int:
    """``bind()`` with a ``sockaddr_xdp``. Returns 0 or raises; EBUSY is raised
    like any other error (the caller decides whether to retry)."""
    addr = sockaddr_xdp(C.AF_XDP, flags, ifindex, queue_id, shared_umem_fd)
    if _libc.bind(sock.fileno(), ctypes.byref(addr), ctypes.sizeof(addr)) != 0:
        code = ctypes.get_errno()
        raise xdp_error(code, "bind xsk", ifname, queue_id, hint=_bind_hint(code, flags))
    return 0


def _bind_hint(code: int, flags: int) -> str | None:
    if code == errno.EOPNOTSUPP and flags & C.XDP_ZEROCOPY:
        return "the driver has no zero-copy AF_XDP support; use zero_copy=None or False"
    if code == errno.EINVAL:
        return "is the queue id within the interface's queue count?"
    if code == errno.EBUSY:
        return "the queue is in use by another AF_XDP socket, or one was closed a moment ago"
    return None


# The kernel's copy-mode TX builds one skb per packet: the first descriptor's
# bytes in the linear part, each further one a page fragment, at most
# MAX_SKB_FRAGS of them (net/xdp/xsk.c xsk_build_skb: EOVERFLOW beyond).
# MAX_SKB_FRAGS is a build option (17 by default); the sysctl
# net.core.max_skb_frags starts at it and can only be set lower, so reading it
# gives a limit that is never too high.
_MAX_SKB_FRAGS_SYSCTL = "/proc/sys/net/core/max_skb_frags"
_DEFAULT_MAX_SKB_FRAGS = 17


def max_tx_chain() -> int:
    """The most descriptors one packet may take on TX (copy mode):
    ``net.core.max_skb_frags`` + 1 (18 when /proc does not say)."""
    try:
        with open(_MAX_SKB_FRAGS_SYSCTL) as f:
            return int(f.read()) + 1
    except (OSError, ValueError):
        return _DEFAULT_MAX_SKB_FRAGS + 1


def statistics(sock: socket.socket, ifname: str, queue_id: int) -> Statistics:
    """``getsockopt(XDP_STATISTICS)``, tolerating the 3-field struct of old kernels."""
    try:
        raw = sock.getsockopt(C.SOL_XDP, C.XDP_STATISTICS, _STATS_SIZE)
    except OSError as e:
        raise _err("get statistics", ifname, queue_id, e) from None
    n = len(raw) // 8
    vals = list(struct.unpack(f"={n}Q", raw[: n * 8])) + [0] * (6 - n)
    return Statistics(*vals[:6])


def options(sock: socket.socket, ifname: str, queue_id: int) -> int:
    """``getsockopt(XDP_OPTIONS)``: the ``xdp_options.flags`` word."""
    try:
        raw = sock.getsockopt(C.SOL_XDP, C.XDP_OPTIONS, 4)
    except OSError as e:
        raise _err("get options", ifname, queue_id, e) from None
    return int(struct.unpack("=I", raw[:4])[0])


def set_tx_budget(sock: socket.socket, budget: int, ifname: str, queue_id: int) -> None:
    """``setsockopt(XDP_MAX_TX_SKB_BUDGET)`` (Linux 6.15+): frames per copy-mode kick."""
    try:
        sock.setsockopt(C.SOL_XDP, C.XDP_MAX_TX_SKB_BUDGET, struct.pack("=I", budget))
    except OSError as e:
        raise _err(f"set TX budget {budget}", ifname, queue_id, e) from None


# include/uapi/asm-generic/socket.h
SO_BUSY_POLL = 46
SO_PREFER_BUSY_POLL = 69
SO_BUSY_POLL_BUDGET = 70


def set_busy_poll(sock: socket.socket, usecs: int, budget: int, ifname: str,
                  queue_id: int) -> None:
    """Preferred busy polling: the app's syscalls run the driver's NAPI poll."""
    for opt, val, what in ((SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"),
                           (SO_BUSY_POLL, usecs, "SO_BUSY_POLL"),
                           (SO_BUSY_POLL_BUDGET, budget, "SO_BUSY_POLL_BUDGET")):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, val)
        except OSError as e:
            raise _err(f"set {what}", ifname, queue_id, e) from None


def memlock_limits() -> tuple[int, int]:
    """(soft, hard) RLIMIT_MEMLOCK in bytes (resource.RLIM_INFINITY = unlimited)."""
    return resource.getrlimit(resource.RLIMIT_MEMLOCK)


def raise_memlock_to_hard() -> bool:
    """Raise the soft RLIMIT_MEMLOCK to the hard limit (no privilege needed).
    Returns True if it was raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == hard or (hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY
                        and soft >= hard):
        return False
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    except (OSError, ValueError):
        return False
    return True


def alloc_umem(length: int, huge: bool) -> mmap.mmap:
    """An anonymous private mapping for the UMEM, optionally on 2 MiB huge pages.

    Raises a plain OSError (no interface yet); the caller decides on fallback.
    """
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | C.MAP_POPULATE
    if huge:
        flags |= C.MAP_HUGETLB
    return mmap.mmap(-1, length, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def buffer_address(buf: mmap.mmap) -> int:
    """The virtual address of a mapping, for XDP_UMEM_REG."""
    view = ctypes.c_char.from_buffer(buf)
    try:
        return ctypes.addressof(view)
    finally:
        del view  # drop the export at once so the mapping can be closed later


def free_huge_pages() -> int:
    """HugePages_Free from /proc/meminfo (0 when unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("HugePages_Free:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def make_wake_fd() -> int:
    """An eventfd that a closing thread writes to wake a thread in poll()."""
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def signal_wake_fd(fd: int) -> None:
    """Make ``fd`` (from :func:`make_wake_fd`) readable for good."""
    with contextlib.suppress(OSError):  # counter full (never) or already closed
        os.eventfd_write(fd, 1)


# --- wakeups (the "kick") ----------------------------------------------------
# A zero-length sendto()/recvfrom() with MSG_DONTWAIT tells the kernel to look
# at the TX / Fill rings. These errnos only mean "try again later" and are not
# failures: EAGAIN (copy mode sends at most a budget of frames per call, or the
# completion ring is full), EBUSY (another CPU is already driving the queue),
# ENOBUFS (no skb could be allocated this time).
RETRY_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.ENOBUFS})
_MSG_FLAGS = socket.MSG_DONTWAIT


def wakeup_tx(sock: socket.socket) -> int:
    """Kick the TX ring. Returns 0 or the errno (the caller maps it)."""
    try:
        sock.send(b"", _MSG_FLAGS)
    except OSError as e:
        return e.errno or errno.EIO
    return 0


def wakeup_rx(sock: socket.socket) -> int:
    """Kick the Fill ring (a zero-length recvfrom). Returns 0 or the errno."""
    try:
        sock.recv(0, _MSG_FLAGS)
    except OSError as e:
        return e.errno or errno.EIO
    return 0
