"""The built-in XDP program: attach, share, adopt, conflict, cleanup.

Every test runs its kernel part in a forked child that first moves into a new
network namespace (unshare(CLONE_NEWNET)), so veth pairs and XDP programs live
and die with that child. Helper processes forked from that child share its
namespace. The fixture is deliberately local and small.
"""

from __future__ import annotations

import ctypes
import errno
import multiprocessing
import os
import signal
import socket
import struct
import subprocess
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pytest

from xdp_socket import iface, program
from xdp_socket._sys import bpf
from xdp_socket._sys import bpf_asm as A
from xdp_socket._sys import consts as C
from xdp_socket.errors import XdpBusyError, XdpError, XdpProgramConflictError

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF, netns)"),
]

_ctx = multiprocessing.get_context("fork")


def _unshare_net() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(C.CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def in_netns(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Run ``fn`` in a forked child inside a fresh network namespace."""
    r, w = _ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            _unshare_net()
            w.send((True, fn()))
        except BaseException:
            w.send((False, traceback.format_exc()))

    p = _ctx.Process(target=child)
    p.start()
    w.close()
    try:
        if not r.poll(timeout):
            pytest.fail(f"test body did not finish within {timeout}s")
        ok, value = r.recv()
    finally:
        if p.is_alive():
            p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
    if not ok:
        pytest.fail(f"in netns:\n{value}", pytrace=False)
    return value


def veth(name: str = "xa", peer: str = "xb", queues: int = 4) -> int:
    subprocess.run(
        [
            "ip", "link", "add", "name", name,
            "numrxqueues", str(queues), "numtxqueues", str(queues),
            "type", "veth", "peer", "name", peer,
            "numrxqueues", str(queues), "numtxqueues", str(queues),
        ],
        check=True,
    )  # fmt: skip
    for n in (name, peer):
        subprocess.run(["ip", "link", "set", "dev", n, "up"], check=True)
    return socket.if_nametoindex(name)


def xsk() -> socket.socket:
    # A raw AF_XDP socket; this kernel accepts it in an XSKMAP even unbound.
    return socket.socket(C.AF_XDP, socket.SOCK_RAW)


def wait_detached(ifindex: int, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if iface.xdp_state(ifindex).mode is None:
            return True
        time.sleep(0.01)
    return False


def run_on_queue(prog_id: int, ifindex: int, queue: int) -> int:
    """XDP action the program returns for a frame on ``queue`` (BPF_PROG_TEST_RUN)."""
    data = bytes(64)
    # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress
    md = struct.pack("=6I", 0, len(data), 0, ifindex, queue, 0)
    fd = bpf.prog_get_fd_by_id(prog_id)
    try:
        return bpf.prog_test_run(fd, data, ctx=md).retval
    finally:
        os.close(fd)


def load_foreign_pass() -> int:
    return bpf.prog_load(
        C.BPF_PROG_TYPE_XDP, A.mov64_imm(A.R0, C.XDP_PASS) + A.exit_(), "GPL", "foreign_pass"
    )


# --- tests ----------------------------------------------------------------------


def test_attach_native_on_veth() -> None:
    def body() -> None:
        idx = veth()
        s0 = xsk()
        e = program.attach_xsk("xa", idx, 0, s0.fileno())
        assert e.mode == "native"
        assert e.prog_id is not None
        st = iface.xdp_state(idx)
        assert (st.mode, st.prog_id) == ("native", e.prog_id)
        assert program.builtin_program_attached(idx)
        out = subprocess.run(
            ["ip", "-d", "link", "show", "dev", "xa"], capture_output=True, text=True, check=True
        ).stdout
        assert program.BUILTIN_PROG_NAME in out
        # Queue 0 has a socket: redirect; queue 1 has none: pass to the stack.
        assert run_on_queue(e.prog_id, idx, 0) == C.XDP_REDIRECT
        assert run_on_queue(e.prog_id, idx, 1) == C.XDP_PASS
        e.release()
        assert wait_detached(idx)
        assert not program.builtin_program_attached(idx)

    in_netns(body)


def test_two_queues_share_one_program() -> None:
    def body() -> None:
        idx = veth()
        s0, s1 = xsk(), xsk()
        e0 = program.attach_xsk("xa", idx, 0, s0.fileno())
        e1 = program.attach_xsk("xa", idx, 1, s1.fileno())
        assert e0.prog_id == e1.prog_id
        assert e0.map_fd == e1.map_fd
        assert run_on_queue(e0.prog_id or 0, idx, 1) == C.XDP_REDIRECT
        assert run_on_queue(e0.prog_id or 0, idx, 0) == C.XDP_REDIRECT
        # Closing a socket empties its slot (the kernel does it: release
        # only drops the entry's hold on the program, and is idempotent)
        s0.close()
        e0.release()
        e0.release()
        assert iface.xdp_state(idx).prog_id == e1.prog_id
        assert run_on_queue(e1.prog_id or 0, idx, 0) == C.XDP_PASS  # slot emptied
        e1.release()
        assert wait_detached(idx)
        assert len(program._registry) == 0

    in_netns(body)


def test_queue_taken_and_bad_queue_and_mode() -> None:
    def body() -> None:
        idx = veth(queues=2)
        s0, s1 = xsk(), xsk()
        e0 = program.attach_xsk("xa", idx, 0, s0.fileno())
        with pytest.raises(XdpBusyError):
            program.attach_xsk("xa", idx, 0, s1.fileno())
        with pytest.raises(XdpError) as ei:
            program.attach_xsk("xa", idx, 2, s1.fileno())
        assert ei.value.errno == errno.EINVAL
        assert "2 RX queues" in str(ei.value)
        with pytest.raises(XdpBusyError):
            program.attach_xsk("xa", idx, 1, s1.fileno(), mode="skb")
        with pytest.raises(ValueError):
            program.attach_xsk("xa", idx, 1, s1.fileno(), mode="hw")
        with pytest.raises(ValueError):
            program.attach_xsk("xa", idx, -1, s1.fileno())
        # failures above took no reference: one release detaches
        e0.release()
        assert wait_detached(idx)

    in_netns(body)


def test_auto_falls_back_to_skb_without_native_support() -> None:
    def body() -> None:
        subprocess.run(["ip", "link", "set", "dev", "lo", "up"], check=True)
        s0 = xsk()
        with pytest.raises(XdpError) as ei:
            program.attach_xsk("lo", 1, 0, s0.fileno(), mode="native")
        assert ei.value.errno == errno.EOPNOTSUPP
        assert iface.xdp_state(1).mode is None
        e = program.attach_xsk("lo", 1, 0, s0.fileno(), mode="auto")
        assert e.mode == "skb"
        assert iface.xdp_state(1).mode == "skb"
        e.release()
        assert wait_detached(1)

    in_netns(body)


@pytest.mark.parametrize("how", ["netlink", "bpf_link_skb"])
def test_foreign_program_is_a_conflict(how: str) -> None:
    def body() -> None:
        from pyroute2 import IPRoute

        idx = veth()
        fd = load_foreign_pass()
        if how == "netlink":
            with IPRoute() as ipr:
                ipr.link("set", index=idx, xdp_fd=fd)
        else:
            link = bpf.link_create(fd, idx, C.BPF_XDP, C.XDP_FLAGS_SKB_MODE)
        before = iface.xdp_state(idx)
        assert before.prog_id is not None
        with pytest.raises(XdpProgramConflictError) as ei:
            program.attach_xsk("xa", idx, 0, xsk().fileno())
        assert ei.value.errno == errno.EBUSY
        msg = str(ei.value)
        assert "xa" in msg and "foreign_pass" in msg and str(before.prog_id) in msg
        assert iface.xdp_state(idx) == before  # untouched
        assert not program.builtin_program_attached(idx)
        if how != "netlink":
            os.close(link)

    in_netns(body)


def test_user_xskmap_only_sets_the_slot() -> None:
    def body() -> None:
        idx = veth()
        m = bpf.map_create(C.BPF_MAP_TYPE_XSKMAP, 4, 4, 4, "user_map")
        s0 = xsk()
        e = program.attach_xsk("xa", idx, 2, s0.fileno(), xskmap_fd=m)
        assert (e.prog_id, e.mode, e.map_fd) == (None, None, m)
        assert iface.xdp_state(idx).mode is None  # nothing attached
        # BPF_NOEXIST proves the slot is taken, then free again once the
        # socket is closed (the kernel empties it; release() touches no map)
        s1 = xsk()
        with pytest.raises(XdpError) as ei:
            bpf.map_update_elem(m, 2, s1.fileno(), C.BPF_NOEXIST)
        assert ei.value.errno == errno.EEXIST
        e.release()
        with pytest.raises(XdpError):
            bpf.map_update_elem(m, 2, s1.fileno(), C.BPF_NOEXIST)
        s0.close()
        bpf.map_update_elem(m, 2, s1.fileno(), C.BPF_NOEXIST)
        with pytest.raises(ValueError):
            program.attach_xsk("xa", idx, 4, s0.fileno(), xskmap_fd=m)
        os.close(m)

    in_netns(body)


def _holder(ifindex: int, queue: int, conn: Connection, release_on_msg: bool) -> None:
    """Helper process: attach on ``queue``, report the prog id, wait for a message."""
    s = xsk()
    e = program.attach_xsk("xa", ifindex, queue, s.fileno())
    conn.send(e.prog_id)
    conn.poll(20)
    if release_on_msg:
        e.release()
    conn.send("done")
    conn.poll(20)


def test_killed_holder_takes_program_with_it() -> None:
    def body() -> None:
        idx = veth()
        parent, child = _ctx.Pipe()
        p = _ctx.Process(target=_holder, args=(idx, 0, child, False))
        p.start()
        try:
            assert parent.poll(10)
            prog_id = parent.recv()
            assert iface.xdp_state(idx).prog_id == prog_id
            assert program.builtin_program_attached(idx)
            os.kill(p.pid or 0, signal.SIGKILL)
            p.join(5)
            assert wait_detached(idx), "program still attached after its holder died"
        finally:
            if p.is_alive():
                p.kill()
                p.join()

    in_netns(body)


def test_adoption_across_processes() -> None:
    def body() -> None:
        idx = veth()
        parent, child = _ctx.Pipe()
        p = _ctx.Process(target=_holder, args=(idx, 0, child, True))
        p.start()
        try:
            assert parent.poll(10)
            prog_id = parent.recv()
            s1 = xsk()
            e1 = program.attach_xsk("xa", idx, 1, s1.fileno())  # adopts
            assert e1.prog_id == prog_id
            assert e1.mode == "native"
            # both slots are live in the shared map
            assert run_on_queue(prog_id, idx, 0) == C.XDP_REDIRECT
            assert run_on_queue(prog_id, idx, 1) == C.XDP_REDIRECT
            parent.send("release")  # process 1 releases its entry ...
            assert parent.poll(10) and parent.recv() == "done"
            parent.send("exit")  # ... and exits
            p.join(5)
            assert p.exitcode == 0
            time.sleep(0.1)
            st = iface.xdp_state(idx)
            assert st.prog_id == prog_id, "program left while process 2 still holds it"
            assert run_on_queue(prog_id, idx, 0) == C.XDP_PASS  # process 1's slot emptied
            assert run_on_queue(prog_id, idx, 1) == C.XDP_REDIRECT
            e1.release()
            assert wait_detached(idx)
        finally:
            if p.is_alive():
                p.kill()
                p.join()

    in_netns(body)


def test_dead_interface_release_does_not_raise() -> None:
    def body() -> None:
        idx = veth()
        s0 = xsk()
        e = program.attach_xsk("xa", idx, 0, s0.fileno())
        subprocess.run(["ip", "link", "del", "dev", "xa"], check=True)
        e.release()
        e.release()

    in_netns(body)


def test_frames_from_peer_reach_the_socket() -> None:
    """End to end: frames sent on the peer with AF_PACKET arrive through the
    built-in program in an RX socket; after close the program is gone."""

    def body() -> int:
        import xdp_socket

        idx = veth(queues=1)  # one queue: every frame lands on RX queue 0
        rx = xdp_socket.create_rx_socket("xa", 0)
        try:
            assert program.builtin_program_attached(idx)
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            tx.bind(("xb", 0))
            ethertype = 0x88B5  # IEEE local experimental: only our frames carry it
            tag = b"xsk_py_redir-test"
            frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype) + tag
            frame = frame.ljust(60, b"\0")
            got = 0
            for _ in range(5):
                tx.send(frame)
            deadline = time.monotonic() + 3.0
            while got < 5 and time.monotonic() < deadline:
                data = rx.recv(timeout=0.5)
                if data is not None and data[12:14] == struct.pack("!H", ethertype):
                    assert data[14 : 14 + len(tag)] == tag
                    got += 1
            tx.close()
        finally:
            rx.close()
        assert wait_detached(idx)
        return got

    assert in_netns(body) == 5


def test_map_helpers_size_buffers_from_the_map() -> None:
    """The kernel writes value_size bytes on lookup: an 8-byte value must
    round-trip whole (a 4-byte buffer would be overrun)."""

    def body() -> None:
        m = bpf.map_create(C.BPF_MAP_TYPE_ARRAY, 4, 8, 2, "u64_arr")
        try:
            bpf.map_update_elem(m, 1, (1 << 40) + 7)
            assert bpf.map_lookup_elem(m, 1) == (1 << 40) + 7
            assert bpf.map_lookup_elem(m, 0) == 0
            with pytest.raises(ValueError):
                bpf.map_update_elem(m, 0, 1 << 64)
        finally:
            os.close(m)
        percpu = bpf.map_create(6, 4, 8, 1, "pcpu")  # BPF_MAP_TYPE_PERCPU_ARRAY
        try:
            with pytest.raises(ValueError):
                bpf.map_lookup_elem(percpu, 0)
        finally:
            os.close(percpu)

    in_netns(body)


def test_live_frames_generator() -> None:
    """prog_test_run with BPF_F_TEST_XDP_LIVE_FRAMES really transmits: a
    program doing bpf_redirect(xa) sends frames that a counting program on
    the peer sees."""

    def body() -> int:
        idx = veth(queues=1)
        peer = socket.if_nametoindex("xb")
        counter = bpf.map_create(C.BPF_MAP_TYPE_ARRAY, 4, 8, 1, "count")
        count_prog = b"".join(
            [
                A.st_w(A.R10, -4, 0),  # key 0 on the stack
                A.mov64_reg(A.R2, A.R10),
                A.alu64_imm("add", A.R2, -4),
                A.ld_map_fd(A.R1, counter),
                A.call(1),  # bpf_map_lookup_elem
                A.jmp_imm("jeq", A.R0, 0, 2),
                A.mov64_imm(A.R1, 1),
                # BPF_STX | BPF_DW | BPF_ATOMIC (0xc0) = 0xdb, imm BPF_ADD: *(u64 *)r0 += r1
                A.insn(0xDB, A.R0, A.R1, 0, 0),
                A.mov64_imm(A.R0, C.XDP_DROP),
                A.exit_(),
            ]
        )
        cfd = bpf.prog_load(C.BPF_PROG_TYPE_XDP, count_prog, "GPL", "count_drop")
        link = bpf.link_create(cfd, peer, C.BPF_XDP, C.XDP_FLAGS_DRV_MODE)
        gen = bpf.prog_load(
            C.BPF_PROG_TYPE_XDP,
            A.mov64_imm(A.R1, idx) + A.mov64_imm(A.R2, 0) + A.call(C.BPF_FUNC_redirect) + A.exit_(),
            "GPL",
            "gen",
        )
        frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5"
        frame = frame.ljust(60, b"\0")
        md = struct.pack("=6I", 0, len(frame), 0, 1, 0, 0)  # ingress: lo, queue 0
        r = bpf.prog_test_run(
            gen, frame, repeat=1000, flags=C.BPF_F_TEST_XDP_LIVE_FRAMES, ctx=md, batch_size=64
        )
        assert r.data is None and r.ctx is None
        n = bpf.map_lookup_elem(counter, 0) or 0
        for fd in (link, gen, cfd, counter):
            os.close(fd)
        return n

    assert in_netns(body) >= 1000
