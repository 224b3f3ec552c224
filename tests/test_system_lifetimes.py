"""System tests of the lifetime rules (issue 7's defects 1-3, 5, 10 and
issue 8's forgotten sockets), through the public API on real sockets.

Runs in the private network namespace conftest.py entered. The scenarios that
can deadlock a process run in a child process under a faulthandler watchdog
(``lifetime_child.py``): a hang fails the test with every thread's stack.
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    attach_xdp_netlink,
    detach_xdp_netlink,
    load_foreign_xdp_prog,
    make_test_frame,
    mapping_count,
    open_fds,
    parse_test_frame,
    start_in_thread,
    xdp_prog_id,
)

import xdp_socket as xs
from xdp_socket import _ring, testing

pytestmark = pytest.mark.kernel

HERE = Path(__file__).parent
SMALL = xs.XdpConfig(frame_count=64, rx_size=32, tx_size=32, fill_size=32, comp_size=32)
# Rounds of the deadlock scenarios scale with XDP_LIFETIME_SCALE (CI: 1).
SCALE = float(os.environ.get("XDP_LIFETIME_SCALE", "1"))
TSCALE = max(1.0, SCALE)  # timeouts never shrink below the CI values


def _rounds(n: int) -> int:
    return max(1, int(n * SCALE))


def _run_child(scenario: str, ifname: str, seed: int, rounds: int, watchdog: float) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), *sys.path) if p)
    # -X dev would turn warnings into noise; the child counts ResourceWarnings itself
    r = subprocess.run(
        [sys.executable, str(HERE / "lifetime_child.py"), scenario, ifname, str(seed),
         str(rounds), str(watchdog)],
        capture_output=True, text=True, env=env, timeout=watchdog + 30,
    )
    assert r.returncode == 0, (
        f"{scenario} seed {seed}: exit {r.returncode} (a hang shows every thread's stack "
        f"below)\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-12000:]}"
    )
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("OK "), r.stdout
    return r.stdout


def _field(out: str, name: str) -> int:
    for line in out.splitlines():
        for word in line.split():
            if word.startswith(name + "="):
                return int(float(word.split("=", 1)[1]))
    raise AssertionError(f"{name} not in {out!r}")


# --- defect 1: the garbage collector, signals and coroutines never deadlock ---

@pytest.mark.timeout(int(200 * TSCALE))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_forgotten_batch_sockets_never_deadlock_the_gc(veth_factory: Any, seed: int) -> None:
    """Hundreds of rounds of "forget a batch-using socket (sometimes inside a
    reference cycle, so a GC pass finalizes it at an arbitrary point), open
    and close another" with a GC pass at nearly every allocation: 3 seeds x
    70 rounds in CI, more with XDP_LIFETIME_SCALE. The old code hung within
    2-13 rounds with stock GC settings."""
    link = veth_factory(queues=3)
    rounds = _rounds(70)
    out = _run_child("gc_forget", link.b, seed, rounds, watchdog=150 * TSCALE)
    # one ResourceWarning per forgotten socket, none for the closed ones
    assert _field(out, "warnings") == _field(out, "forgotten") == rounds


@pytest.mark.timeout(int(120 * TSCALE))
def test_signal_handler_closes_sockets_during_creation(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    out = _run_child("signal_close", link.b, 7, _rounds(30), watchdog=90 * TSCALE)
    assert _field(out, "closed_by_handler") > 0, "the timer never closed a socket: no test"
    assert _field(out, "warnings") == 0


@pytest.mark.timeout(int(120 * TSCALE))
def test_sockets_created_in_a_coroutine_while_gc_finalizes(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    rounds = _rounds(25)
    out = _run_child("coroutine", link.b, 11, rounds, watchdog=90 * TSCALE)
    assert _field(out, "warnings") == _field(out, "forgotten") == rounds


# --- shared helpers -------------------------------------------------------------

def _fd_table() -> dict[str, str]:
    """fd -> what it is: a diff names a leaked fd."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


def _within(fn: Callable[[], Any], seconds: float) -> BaseException | None:
    """Run fn in a thread; return what it raised (None if it returned). Fails
    the test if it is still running after ``seconds`` (a spin or a hang)."""
    t0 = time.monotonic()
    t, box = start_in_thread(fn)
    t.join(seconds)
    assert not t.is_alive(), f"{fn} still running after {seconds} s (spinning or blocked)"
    assert time.monotonic() - t0 < seconds
    return box[0]


def _fill_rx(rx: Any, peer: testing.AfPacketPeer, n: int, tag: int) -> list[bytes]:
    """Send n test frames from the peer and wait until rx has them all."""
    sent = [make_test_frame(tag, i, 60 + i) for i in range(n)]
    for f in sent:
        peer.send(f)
    deadline = time.monotonic() + 5
    while rx.seek_n(n) < n:
        assert time.monotonic() < deadline, f"only {rx.available} of {n} frames arrived"
        rx.poll_wait(0.05)
    return sent


@contextlib.contextmanager
def _no_resource_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield caught
    leaked = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked, [str(w.message) for w in leaked]


# --- defect 2: a batch of a closed socket raises SocketClosedError promptly -------

def _rx_cfg(fill: int) -> xs.XdpConfig:
    # 64 frames; an RX-only socket keeps 64 RX frames, a bidirectional one 32.
    # fill=32: the Fill ring starts full, so its cached state shows no free
    # slot; fill=128: the cache shows free slots from the start.
    return xs.XdpConfig(frame_count=64, rx_size=32, tx_size=32, fill_size=fill, comp_size=32,
                        xdp_mode="native")


RX_BATCH_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "release": lambda b, tx: b.release(),
    "forward": lambda b, tx: b.forward(tx),
    "gather": lambda b, tx: b.gather(14),
    "swap_macs": lambda b, tx: b.swap_macs(),
    "payloads": lambda b, tx: b.payloads(),
    "packet": lambda b, tx: b.packet(0),
}


@pytest.mark.parametrize("fill", [32, 128])
@pytest.mark.parametrize("how", ["rx_only", "both_closed", "rx_half_closed"])
@pytest.mark.parametrize("op", sorted(RX_BATCH_OPS))
def test_rx_batch_after_close_raises_socket_closed(veth: Any, fill: int, how: str,
                                                   op: str) -> None:
    # (rx_only + forward: there is no TX half; the closed check comes first)
    with _no_resource_warnings():
        if how == "rx_only":
            tx, rx = None, xs.create_rx_socket(veth.b, 0, _rx_cfg(fill))
        else:
            tx, rx = xs.create_bi_socket(veth.b, 0, _rx_cfg(fill))
        with testing.AfPacketPeer(veth.a) as peer:
            _fill_rx(rx, peer, 8, tag=2)
        batch = rx.receive(64)
        assert len(batch) == 8
        rx.close()
        if how == "both_closed":
            tx.close()
        err = _within(lambda: RX_BATCH_OPS[op](batch, tx), 2.0)
        assert isinstance(err, xs.SocketClosedError), repr(err)
        # the context manager's exit after an exception lets that exception
        # through (in a thread too: the old code spun here)
        def block_fails() -> None:
            with batch:
                raise KeyError("the block's own error")

        assert isinstance(_within(block_fails, 2.0), KeyError)
        if tx is not None:
            tx.close()


@pytest.mark.parametrize("how", ["tx_only", "both_closed", "tx_half_closed"])
@pytest.mark.parametrize("free_in_cache", [False, True])
def test_tx_batch_submit_after_close_raises_socket_closed(veth: Any, how: str,
                                                          free_in_cache: bool) -> None:
    cfg = xs.XdpConfig(frame_count=64, rx_size=32, tx_size=64 if free_in_cache else 32,
                       fill_size=32, comp_size=32)
    with _no_resource_warnings():
        if how == "tx_only":
            tx, rx = xs.create_tx_socket(veth.a, 0, cfg), None
        else:
            tx, rx = xs.create_bi_socket(veth.a, 0, cfg)
        batch = tx.reserve(32 if free_in_cache else 16)
        assert len(batch) in (16, 32)
        batch.fill(make_test_frame(3, 0, 60))
        tx.close()
        if how == "both_closed":
            rx.close()
        for call in (lambda: batch.submit(), lambda: batch.write(0, b"x" * 60),
                     lambda: batch.fill(b"y" * 60), lambda: batch.frame(0),
                     lambda: batch.set_lengths(60),
                     lambda: batch.write_array(np.zeros((4, 60), np.uint8)),
                     lambda: batch.submit_array(np.zeros((4, 60), np.uint8))):
            err = _within(call, 2.0)
            assert isinstance(err, xs.SocketClosedError), repr(err)
        assert _within(batch.cancel, 2.0) is None  # nothing to give back: quiet
        if rx is not None:
            rx.close()


# --- close from another thread wakes a blocked caller ------------------------------

def _blocked_then_closed(call: Callable[[], Any], close: Callable[[], None]) -> None:
    """Start ``call`` in a thread; once it has blocked for a while, ``close``
    from this thread: the call must end with SocketClosedError soon after."""
    t, box = start_in_thread(call)
    t.join(0.3)
    assert t.is_alive(), f"the call did not block: {box}"
    t0 = time.monotonic()
    close()
    t.join(2.0)
    assert not t.is_alive(), "still blocked 2 s after close() from another thread"
    assert time.monotonic() - t0 < 2.0
    assert isinstance(box[0], xs.SocketClosedError), repr(box[0])


RX_WAITS: dict[str, Callable[[Any], Any]] = {
    "poll_wait": lambda rx: rx.poll_wait(None),
    "recv": lambda rx: rx.recv(None),
    "receive": lambda rx: rx.receive(64, timeout=None),
    # a finite timeout: the accelerator's one-call wait (poll(2) without the GIL)
    "poll_wait_10s": lambda rx: rx.poll_wait(10.0),
    "receive_10s": lambda rx: rx.receive(64, timeout=10.0),
}


@pytest.mark.parametrize("kind", ["rx", "bi_close_rx", "bi_close_both"])
@pytest.mark.parametrize("wait", sorted(RX_WAITS))
def test_close_from_another_thread_wakes_rx_waiter(veth: Any, kind: str, wait: str) -> None:
    with _no_resource_warnings():
        if kind == "rx":
            tx, rx = None, xs.create_rx_socket(veth.b, 0, SMALL)
        else:
            tx, rx = xs.create_bi_socket(veth.b, 0, SMALL)

        def close() -> None:
            rx.close()
            if kind == "bi_close_both":
                tx.close()

        _blocked_then_closed(lambda: RX_WAITS[wait](rx), close)
        if tx is not None:
            tx.close()


@pytest.mark.parametrize("kind", ["tx", "bi_close_tx", "bi_close_both"])
def test_close_from_another_thread_wakes_tx_flush(veth: Any, kind: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing drains: in copy mode the kernel sends (and completes) only
    # inside a kick, and the kick is swallowed.
    import xdp_socket.core as xs_core

    monkeypatch.setattr(xs_core._xsk, "wakeup_tx", lambda sock: 0)
    # (the C accelerator kicks from its own loop: use the Python kicks patched here)
    monkeypatch.setattr(_ring, "accel", None)
    with _no_resource_warnings():
        if kind == "tx":
            tx, rx = xs.create_tx_socket(veth.a, 0, SMALL), None
        else:
            tx, rx = xs.create_bi_socket(veth.a, 0, SMALL)
        assert tx.send(make_test_frame(5, 0, 60))

        def close() -> None:
            tx.close()
            if kind == "bi_close_both":
                rx.close()

        _blocked_then_closed(lambda: tx.flush(None), close)
        if rx is not None:
            rx.close()


# --- defect 3: close() unmaps the UMEM; a held batch keeps its bytes valid ---------

MiB64 = 64 << 20


def _mapped_bytes(lo: int, size: int) -> int:
    """How many bytes of [lo, lo+size) are mapped in this process. (The UMEM
    is an anonymous private mapping: /proc/self/maps may merge it with its
    neighbours, so it is found by address, not by size.)"""
    hi, n = lo + size, 0
    with open("/proc/self/maps") as f:
        for line in f:
            a, b = (int(x, 16) for x in line.split()[0].split("-"))
            n += max(0, min(b, hi) - max(a, lo))
    return n


def _umem_address(half: Any) -> int:
    addr: int = half.umem.ctypes.data
    return addr


def test_closed_sockets_unmap_their_umem_after_batch_use(veth: Any) -> None:
    cfg = xs.XdpConfig(frame_count=MiB64 // 2048, huge_page=False, xdp_mode="native")
    frame = make_test_frame(4, 0, 100)
    umems: list[int] = []
    with _no_resource_warnings(), testing.AfPacketPeer(veth.a) as peer:
        socks = []
        for q_round in range(4):
            tx, rx = xs.create_bi_socket(veth.b, 0, cfg)
            umems.append(_umem_address(rx))
            with tx.reserve(8) as out:
                out.fill(frame)
            tx.flush(2.0)
            _fill_rx(rx, peer, 4, tag=q_round)
            with rx.receive(64) as got:
                assert len(got) == 4
                got.swap_macs()
                first = got.packet(0)
                assert first.shape[0] == 60
                del first
            del out, got  # the user lets go of the batches; the halves keep theirs
            socks.append((tx, rx))  # and the user keeps the closed halves
            tx.close()
            rx.close()
            # the halves kept their last batches; the UMEM is gone all the same
            assert _mapped_bytes(umems[-1], MiB64) == 0, f"UMEM {q_round} mapped after close"
    assert sum(_mapped_bytes(a, MiB64) for a in umems) == 0  # not 4 x 64 MiB


def test_a_held_batch_keeps_its_bytes_readable_until_dropped(veth: Any) -> None:
    cfg = xs.XdpConfig(frame_count=MiB64 // 2048, huge_page=False, xdp_mode="native")
    with _no_resource_warnings(), testing.AfPacketPeer(veth.a) as peer:
        rx = xs.create_rx_socket(veth.b, 0, cfg)
        addr = _umem_address(rx)
        sent = _fill_rx(rx, peer, 3, tag=9)
        batch = rx.receive(64)
        pkt = batch.packet(1)
        rx.close()
        # the bytes stay valid memory (and, nothing having reused the
        # frame, the packet) while the user holds the batch and its view
        assert _mapped_bytes(addr, MiB64) == MiB64
        assert bytes(pkt) == sent[1]
        assert int(batch.umem[: MiB64].sum(dtype=np.uint64)) > 0  # all readable, no crash
        with pytest.raises(xs.SocketClosedError):
            batch.payloads()
        del pkt
        assert _mapped_bytes(addr, MiB64) == MiB64  # the batch still holds it
        del batch
        assert _mapped_bytes(addr, MiB64) == 0, "UMEM still mapped after the batch was dropped"


# --- defect 10: TxBatch.frames() read-only, edit() writes back, frame(i) a view ----

def test_tx_batch_frames_edit_and_frame_reach_the_peer(veth: Any) -> None:
    with _no_resource_warnings(), xs.create_tx_socket(veth.a, 0, SMALL) as tx, \
            testing.AfPacketPeer(veth.b) as peer:
        batch = tx.reserve(4)
        assert len(batch) == 4
        want = [make_test_frame(10, i, 60 + 10 * i) for i in range(4)]
        copy = batch.frames()
        with pytest.raises(ValueError):
            copy[0, 0] = 1  # a write into the copy would be lost: refused
        with batch.edit(2) as frames:
            for i in range(2):
                frames[i, : len(want[i])] = np.frombuffer(want[i], np.uint8)
        for i in (2, 3):
            view = batch.frame(i)
            view[: len(want[i])] = np.frombuffer(want[i], np.uint8)  # in place
        batch.lens[:] = [len(w) for w in want]
        # the frames() copy taken before the writes did not change
        assert not copy[:, 12:14].any() or bytes(copy[0, :14]) != want[0][:14]
        assert batch.submit() == 4
        got = peer.recv_matching(lambda f: parse_test_frame(f) is not None
                                 and parse_test_frame(f)[0] == 10, 4, timeout=3)
        assert got == want
        assert tx.statistics().tx_invalid_descs == 0


def test_tx_batch_edit_discards_writes_on_exception(veth: Any) -> None:
    with _no_resource_warnings(), xs.create_tx_socket(veth.a, 0, SMALL) as tx, \
            testing.AfPacketPeer(veth.b) as peer:
        good = make_test_frame(11, 0, 80)
        batch = tx.reserve(1)
        batch.write(0, good)
        with pytest.raises(KeyError), batch.edit() as frames:
            frames[0, :] = 0xEE
            raise KeyError("abandon the edit")
        batch.submit()
        got = peer.recv_matching(lambda f: parse_test_frame(f) is not None, 1, timeout=3)
        assert got == [good]


# --- issue 8 item 2: a dropped socket frees its queue at once, no GC needed ---------

@pytest.mark.timeout(120)
def test_dropped_sockets_free_their_queue_without_gc(veth: Any) -> None:
    frame = make_test_frame(12, 0, 60)
    gc.collect()
    fds = open_fds()
    gc.disable()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            t_end = time.monotonic() + 90
            for i in range(100):
                assert time.monotonic() < t_end, f"only {i} rounds in time"
                kind = ("rx", "bi", "tx")[i % 3]
                # never XdpBusyError: the previous round's socket is gone
                if kind == "tx":
                    tx = xs.create_tx_socket(veth.b, 0, SMALL)
                    with tx.reserve(2) as b:
                        b.fill(frame)
                    del tx, b
                elif kind == "rx":
                    rx = xs.create_rx_socket(veth.b, 0, SMALL)
                    with rx.receive(8):
                        pass
                    del rx
                else:
                    tx, rx = xs.create_bi_socket(veth.b, 0, SMALL)
                    with tx.reserve(2) as b:
                        b.fill(frame)
                    with rx.receive(8):
                        pass
                    del tx, rx, b  # (the batch refers to the socket too)
            assert gc.isenabled() is False
            assert open_fds() == fds  # every fd of 100 sockets closed without a GC pass
            assert xdp_prog_id(veth.b_index) == 0
        unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert len(unclosed) == 100, [str(w.message) for w in caught[:5]]
        assert all(veth.b in str(w.message) for w in unclosed)
    finally:
        gc.enable()


def test_failed_creation_does_not_keep_the_queue(veth: Any) -> None:
    """Creation fails at the program step (a foreign program is attached);
    the caller keeps the exception (and so its traceback) alive: the queue,
    fds and mappings are free all the same."""
    gc.collect()
    gc.disable()
    prog_fd = load_foreign_xdp_prog()
    try:
        attach_xdp_netlink(veth.b_index, prog_fd, native=True)
        # one failed creation first: first-use caches (a netlink socket ...)
        with pytest.raises(xs.XdpProgramConflictError):
            xs.create_rx_socket(veth.b, 0, SMALL)
        fds, maps = _fd_table(), mapping_count()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            kept: list[BaseException] = []
            for _ in range(5):
                try:
                    xs.create_bi_socket(veth.b, 0, SMALL)
                except xs.XdpProgramConflictError as e:
                    kept.append(e)  # keeps the traceback and its frames
                else:
                    raise AssertionError("creation should fail next to a foreign program")
                assert _fd_table() == fds
                t0 = time.monotonic()
                with xs.create_tx_socket(veth.b, 0, SMALL) as tx:
                    assert tx.send(make_test_frame(13, 0, 60))
                del tx  # (a closed socket's wake-up eventfd goes with the object)
                assert time.monotonic() - t0 < 0.5
            assert _fd_table() == fds
            assert mapping_count() <= maps + 2
            assert len(kept) == 5 and all(e.__traceback__ is not None for e in kept)
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
        detach_xdp_netlink(veth.b_index, native=True)
    finally:
        gc.enable()
        os.close(prog_fd)


def test_frames_forwarded_before_the_tx_half_closes_come_back_to_rx(veth: Any) -> None:
    """RX frames forwarded and not yet reclaimed when the TX half closes are
    handed back: the RX side then holds its whole Fill ring again, so a burst
    of as many frames as it has arrives without a drop."""
    with _no_resource_warnings():
        tx, rx = xs.create_bi_socket(veth.b, 0, _rx_cfg(32))  # 32 RX frames
        with testing.AfPacketPeer(veth.a) as peer:
            _fill_rx(rx, peer, 20, tag=21)
            batch = rx.receive(64)
            assert batch.count == 20 and batch.forward(tx) == 20
            tx.close()
            rx.receive(64).release()  # the RX loop's next (empty) look
            sent = _fill_rx(rx, peer, 32, tag=22)
        got = rx.receive(64)
        assert got.payloads() == sent
        got.release()
        st = rx.statistics()
        assert st.rx_fill_ring_empty_descs == 0 and st.rx_dropped == 0, st
        rx.close()


def test_forward_into_a_closed_tx_half_raises(veth: Any) -> None:
    with _no_resource_warnings():
        tx, rx = xs.create_bi_socket(veth.b, 0, _rx_cfg(32))
        with testing.AfPacketPeer(veth.a) as peer:
            _fill_rx(rx, peer, 4, tag=14)
        batch = rx.receive(64)
        tx.close()
        err = _within(lambda: batch.forward(tx), 2.0)
        assert isinstance(err, xs.SocketClosedError), repr(err)
        batch.release()  # the RX half is open: its frames go back to the Fill ring
        assert rx.statistics().rx_dropped == 0
        rx.close()
