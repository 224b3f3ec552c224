"""Helpers shared by the system tests (not part of the library).

The foreign XDP program below is loaded with a raw bpf(2) call on purpose: it
must be a program the library did not load, attached the way `ip link set dev X
xdp ...` attaches programs (netlink), so the tests can check that the library
refuses to replace it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pyroute2 import IPRoute

from xdp_socket.testing import BROADCAST, LOCAL_MAC, TEST_ETHERTYPE, in_private_netns

_SYS_BPF = 321  # x86-64 syscall number
_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_XDP = 6
_XDP_PASS = 2
_XDP_FLAGS_DRV_MODE = 1 << 2
_XDP_FLAGS_SKB_MODE = 1 << 1

_libc = ctypes.CDLL(None, use_errno=True)


def load_foreign_xdp_prog() -> int:
    """Load `r0 = XDP_PASS; exit` as an XDP program; return its fd."""
    insns = struct.pack("<BBhi", 0xB7, 0, 0, _XDP_PASS) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into(
        "<IIQQIIQII16s",
        attr,
        0,
        _BPF_PROG_TYPE_XDP,
        len(insns) // 8,
        ctypes.addressof(insn_buf),
        ctypes.addressof(lic),
        0,
        0,
        0,
        0,
        0,
        b"foreign_pass",
    )
    fd = _libc.syscall(_SYS_BPF, _BPF_PROG_LOAD, attr, ctypes.c_uint(128))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_LOAD: {os.strerror(err)}")
    return int(fd)


def attach_xdp_netlink(ifindex: int, prog_fd: int, *, native: bool = True) -> None:
    """Attach a program through netlink (as `ip link set dev X xdp...` does)."""
    flags = _XDP_FLAGS_DRV_MODE if native else _XDP_FLAGS_SKB_MODE
    with IPRoute() as ip:
        ip.link(
            "set",
            index=ifindex,
            xdp={"attrs": [("IFLA_XDP_FD", prog_fd), ("IFLA_XDP_FLAGS", flags)]},
        )


def detach_xdp_netlink(ifindex: int, *, native: bool = True) -> None:
    flags = _XDP_FLAGS_DRV_MODE if native else _XDP_FLAGS_SKB_MODE
    with IPRoute() as ip:
        ip.link(
            "set", index=ifindex, xdp={"attrs": [("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", flags)]}
        )


def xdp_prog_id(ifindex: int) -> int:
    """The id of the XDP program attached to the interface (0 when none), from netlink."""
    with IPRoute() as ip:
        (link,) = ip.get_links(ifindex)
    xdp = link.get_attr("IFLA_XDP")
    if xdp is None:
        return 0
    ids = [
        xdp.get_attr(name) or 0
        for name in ("IFLA_XDP_PROG_ID", "IFLA_XDP_DRV_PROG_ID", "IFLA_XDP_SKB_PROG_ID")
    ]
    return max(ids)


@contextlib.contextmanager
def veth_rx_only_queues(rx_queues: int = 4, tx_queues: int = 1) -> Iterator[tuple[str, str]]:
    """A veth pair whose first end has more RX than TX queues.

    The kernel binds an AF_XDP socket to any queue index below the RX *or* TX
    queue count, but copy-mode TX silently skips a socket whose queue index
    is not a real TX queue (the generic xmit path checks real_num_tx_queues):
    its frames would never leave the TX ring. The library refuses such a TX
    socket; this pair is how the tests show it.
    """
    if not in_private_netns():
        raise RuntimeError("only inside the private namespace")
    a, b = f"nq{os.getpid() % 100000}a", f"nq{os.getpid() % 100000}b"
    with IPRoute() as ip:
        ip.link(
            "add",
            ifname=a,
            kind="veth",
            peer={"ifname": b, "num_rx_queues": rx_queues, "num_tx_queues": rx_queues},
            num_rx_queues=rx_queues,
            num_tx_queues=tx_queues,
        )
        try:
            for name in (a, b):
                ip.link("set", index=ip.link_lookup(ifname=name)[0], state="up")
            yield a, b
        finally:
            ip.link("del", ifname=a)


def set_link(ifindex: int, *, up: bool) -> None:
    with IPRoute() as ip:
        ip.link("set", index=ifindex, state="up" if up else "down")


# --- test frames -------------------------------------------------------------
#
# Frame `seq` of stream `tag`: Ethernet header with TEST_ETHERTYPE, then the tag
# (1 byte) and seq (4 bytes), then bytes from a fixed random block at an offset
# that depends on seq. Every frame is distinct and can be rebuilt from its
# (tag, seq) alone, so a receiver checks each one byte for byte without storing
# what was sent.

HDR_LEN = 14
_TAG_OFF = HDR_LEN
_SEQ_OFF = HDR_LEN + 1
MIN_LEN = 60
_BLOCK = random.Random(0x88B5).randbytes(16384)


def frame_len(seq: int, max_len: int) -> int:
    """A length in [MIN_LEN, max_len] that varies with seq and hits both ends."""
    span = max_len - MIN_LEN + 1
    if seq % 97 == 0:
        return max_len
    return MIN_LEN + (seq * 7919) % span


def make_test_frame(tag: int, seq: int, max_len: int) -> bytes:
    n = frame_len(seq, max_len)
    head = BROADCAST + LOCAL_MAC + TEST_ETHERTYPE.to_bytes(2, "big")
    head += bytes([tag]) + seq.to_bytes(4, "big")
    off = (seq * 131) % 8192
    return head + _BLOCK[off : off + n - len(head)]


def parse_test_frame(frame: bytes | memoryview) -> tuple[int, int] | None:
    """(tag, seq) of one of our frames, None for anything else."""
    if len(frame) < MIN_LEN or bytes(frame[12:14]) != TEST_ETHERTYPE.to_bytes(2, "big"):
        return None
    return frame[_TAG_OFF], int.from_bytes(frame[_SEQ_OFF : _SEQ_OFF + 4], "big")


# --- resource counts ---------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def mapping_count() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def retry_busy(fn: Any, *args: Any, window: float = 1.0, **kwargs: Any) -> Any:
    """Call fn until it stops failing with EBUSY (the kernel releases queue
    slots in deferred work) or `window` seconds pass."""
    deadline = time.monotonic() + window
    while True:
        try:
            return fn(*args, **kwargs)
        except OSError as e:
            if e.errno != 16 or time.monotonic() > deadline:  # 16 = EBUSY
                raise
            time.sleep(0.005)


def start_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException | None]]:
    """Run ``fn`` in a started daemon thread. The list gets one item when it
    ends: None if it returned, else what it raised (for tests that a call
    ends, blocks or raises in time)."""
    box: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            box.append(None)
        except BaseException as e:
            box.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box
