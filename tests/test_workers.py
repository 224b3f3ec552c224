"""xdp_socket.workers against the real kernel: one process per queue of a
multi-queue veth, exact per-queue counts with every frame checked in the
worker, errors and signals, CPU pinning, the shared program's lifetime."""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import threading
import time
import weakref
from typing import Any

import helpers
import pytest
from helpers import make_test_frame, parse_test_frame

import xdp_socket as xs
from xdp_socket import program, workers

pytestmark = pytest.mark.kernel

CFG = xs.XdpConfig(frame_size=2048, frame_count=512, rx_size=256, fill_size=256,
                   tx_size=256, comp_size=256, xdp_mode="native")
N = 3000  # per queue: the 256-entry rings wrap about a dozen times


# Frames each worker has checked, in memory shared with the forked workers:
# the sender keeps at most WINDOW frames ahead of its receiver, because veth
# drops silently (before XDP, uncounted by the socket) when the peer's queue
# overflows, and a worker on a loaded 2-core machine may lag far behind.
PROGRESS = multiprocessing.RawArray(ctypes.c_long, 2)
WINDOW = 128


def send(ifname: str, queue: int, n: int, max_len: int = 1500,
         progress: Any = None) -> None:
    with xs.create_tx_socket(ifname, queue, CFG) as tx:
        seq = 0
        deadline = time.monotonic() + 30
        while seq < n:
            assert time.monotonic() < deadline, f"sender stalled at {seq}"
            room = min(32, n - seq)
            if progress is not None:
                room = min(room, progress[queue] + WINDOW - seq)
            if room <= 0:
                time.sleep(0.0002)
                continue
            with tx.reserve(room) as out:
                for i in range(len(out)):
                    out.write(i, make_test_frame(queue, seq + i, max_len))
                seq += len(out)
            tx._drive()
        assert tx.flush(timeout=5.0)


def checker(batch: xs.RxBatch, ctx: workers.WorkerContext) -> None:
    """In the worker: every frame must be ours, for this queue, in order and
    byte-exact (the sender's bytes are a function of tag and seq)."""
    state = checker.__dict__.setdefault("next", {})
    for data in batch.payloads():
        parsed = parse_test_frame(data)
        if parsed is None:
            continue  # e.g. IPv6 neighbour discovery
        tag, seq = parsed
        want = state.get(ctx.queue_id, 0)
        if tag != ctx.queue_id or seq != want:
            raise AssertionError(f"queue {ctx.queue_id}: got tag {tag} seq {seq}, want {want}")
        if data != make_test_frame(tag, seq, 1500):
            raise AssertionError(f"queue {ctx.queue_id}: frame {seq} differs")
        state[ctx.queue_id] = want + 1
        PROGRESS[ctx.queue_id] = want + 1
    if ctx.cpu is not None and os.sched_getaffinity(0) != {ctx.cpu}:
        raise AssertionError(f"not pinned to CPU {ctx.cpu}")


def test_a_worker_per_queue_counts_every_frame(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    PROGRESS[0] = PROGRESS[1] = 0
    w = workers.Workers(link.b, checker, "all", config=CFG, packets=N, cpus="auto",
                        count_bytes=True)
    w.start()
    try:
        assert program.builtin_program_attached(w.ifindex)  # one program, both workers
        senders = [threading.Thread(target=send, args=(link.a, q, N, 1500, PROGRESS))
                   for q in (0, 1)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(60)
        assert w.wait(timeout=30), "workers did not receive everything"
    finally:
        stats = w.join()
    assert [q.queue_id for q in stats.queues] == [0, 1]
    for q in stats.queues:
        assert q.packets == N, q
        assert q.kernel is not None and q.kernel.rx_dropped == 0 and q.kernel.rx_ring_full == 0
        assert q.cpu in os.sched_getaffinity(0)
        assert q.seconds > 0 and q.pps > 0
    assert stats.packets == 2 * N
    assert stats.bytes == sum(len(make_test_frame(q, s, 1500)) for q in (0, 1) for s in range(N))
    # the last worker's exit took the program with it (the parent never attached)
    deadline = time.monotonic() + 2
    while program.builtin_program_attached(w.ifindex):
        assert time.monotonic() < deadline, "program left behind"
        time.sleep(0.01)


def test_an_exception_in_one_worker_stops_all(veth_factory: Any) -> None:
    link = veth_factory(queues=2)

    def handler(batch: xs.RxBatch, ctx: workers.WorkerContext) -> None:
        if ctx.queue_id == 1:
            raise KeyError("boom on queue 1")

    w = workers.Workers(link.b, handler, [0, 1], config=CFG)
    w.start()
    send(link.a, 1, 10)
    t0 = time.monotonic()
    assert w.wait(timeout=10)
    with pytest.raises(workers.WorkerError, match="queue 1") as ei:
        w.join()
    assert time.monotonic() - t0 < 5
    assert "KeyError: 'boom on queue 1'" in ei.value.details
    assert ei.value.queue_id == 1
    assert ei.value.stats is not None and [q.queue_id for q in ei.value.stats.queues] == [0]


def test_setup_error_and_killed_worker(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    # queue 1 is taken by a socket of ours: its worker cannot bind
    with xs.create_rx_socket(link.b, 1, CFG):
        with pytest.raises(workers.WorkerError, match="queue 1") as ei:
            workers.Workers(link.b, None, "all", config=CFG).start()
        assert "XdpBusyError" in ei.value.details
    w = workers.Workers(link.b, None, "0-1", config=CFG)
    w.start()
    os.kill(w._procs[0].pid, signal.SIGKILL)
    assert w.wait(timeout=5)
    with pytest.raises(workers.WorkerError, match=r"queue 0: .*code -9"):
        w.join()


def test_run_stops_on_sigterm_and_ignores_ctrl_c_in_workers(veth_factory: Any) -> None:
    link = veth_factory(queues=2)
    started = time.monotonic()

    def signals() -> None:
        time.sleep(0.5)
        # Ctrl-C reaches the whole process group; workers must ignore it
        for p in w_procs:
            os.kill(p, signal.SIGINT)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)

    w_procs: list[int] = []
    real_start = workers.Workers.start

    def start(self: workers.Workers, timeout: float = 10.0) -> None:
        real_start(self, timeout)
        w_procs.extend(p.pid for p in self._procs)
        threading.Thread(target=signals, daemon=True).start()

    workers.Workers.start = start  # type: ignore[method-assign]
    try:
        stats = workers.run(link.b, None, "all", config=CFG, duration=30)
    finally:
        workers.Workers.start = real_start  # type: ignore[method-assign]
    assert stats.stopped_by == "SIGTERM"
    assert len(stats.queues) == 2  # both reported: Ctrl-C did not kill them
    assert time.monotonic() - started < 10


def test_bad_arguments() -> None:
    assert workers.parse_queues("0-2,5", 8) == [0, 1, 2, 5]
    assert workers.parse_queues("all", 3) == [0, 1, 2]
    assert workers.parse_queues(2, 3) == [2]
    for bad, msg in (("4", "queue 4 does not exist"), ("x", "not a queue list"),
                     ("3-1", "not a queue range"), ([], "no queue")):
        with pytest.raises(ValueError, match=msg):
            workers.parse_queues(bad, 4)


def test_no_fd_left_and_no_cycle(veth_factory: Any) -> None:
    """Pipes and process sentinels are closed by join(); a dropped Workers
    object is freed by reference counting alone (no cycle through the
    processes' target)."""
    link = veth_factory(queues=2)
    workers.Workers(link.b, None, "all", config=CFG)  # the shared-memory arena, once
    before = helpers.open_fds()
    gc.disable()
    try:
        w = workers.Workers(link.b, None, "all", config=CFG)
        w.start()
        w.join()
        ref = weakref.ref(w)
        del w
        assert ref() is None
    finally:
        gc.enable()
    assert helpers.open_fds() == before
