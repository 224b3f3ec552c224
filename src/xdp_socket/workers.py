"""Layer 3: one worker process per queue.

A NIC spreads traffic over its RX queues and an AF_XDP socket serves one
queue; one Python process holds one core (the GIL), so threads do not scale
here. :func:`run` (or :class:`Workers` for more control) starts one process
per queue, each with its own socket, and calls your handler with every batch
it receives::

    def handler(batch, ctx):          # in the worker for queue ctx.queue_id
        ...                           # the batch is released afterwards

    stats = xdp_socket.workers.run("eth0", handler, queues="all", duration=10)

Rules it keeps:

* **Processes are forked** (``multiprocessing`` with the ``fork`` start
  method): the handler may be any callable (a closure, a lambda), nothing is
  pickled or re-imported, and each worker starts in the parent's network
  namespace. The parent should not be running other threads when it starts
  workers (the usual caveat of fork). Workers leave with ``os._exit``, so
  nothing the parent owns (its sockets, files) is finalized twice.
* **One program for all.** Every worker's RX socket goes into the map of the
  library's built-in XDP program on the interface: the first one attaches it,
  the others adopt it (as any two processes do); it goes when the last worker
  closes its socket.
* **Start and stop together.** :meth:`Workers.start` returns once every worker
  has bound its socket (or raises the first worker's set-up error, having
  stopped the others); the workers then start their loops at one signal. Stop
  is a flag in shared memory every worker reads once per loop (a plain load,
  no lock), and each worker waits at most ``poll_timeout`` seconds in poll(2).
* **Errors propagate.** An exception in any worker (set-up or handler) stops
  all of them; :meth:`Workers.join` then raises :class:`WorkerError` naming
  the queue, with the worker's traceback. A worker that dies without a word
  (killed) is a :class:`WorkerError` too.
* **Signals.** Workers ignore SIGINT (Ctrl-C reaches the whole process
  group; the parent decides) and treat SIGTERM as "stop now, report". In the
  parent, :func:`run` turns SIGTERM into a clean stop and lets Ctrl-C stop
  the workers cleanly before it re-raises ``KeyboardInterrupt``.
* **Statistics** per queue (packets, batches, bytes when asked, seconds from
  the worker's first packet to its stop, the kernel's XDP_STATISTICS, the
  CPU it was pinned to) and in total (:class:`WorkerStats`).
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from .batch import RxBatch
from .config import Direction, XdpConfig
from .core import Statistics
from .iface import queue_counts, resolve_interface
from .socket import RxSocket, TxSocket, create_socket

__all__ = [
    "QueueStats",
    "WorkerContext",
    "WorkerError",
    "WorkerStats",
    "Workers",
    "parse_queues",
    "run",
]

Handler = Callable[[RxBatch, "WorkerContext"], object]

_START_TIMEOUT_S = 10.0  # creating a socket takes ~30 ms; a program attach somewhat more


class WorkerError(RuntimeError):
    """A worker failed; ``queue_id`` names it and ``details`` holds its
    traceback (or exit status). ``stats`` are the other workers' figures."""

    def __init__(self, queue_id: int, details: str, stats: WorkerStats | None = None) -> None:
        last = details.strip().splitlines()[-1] if details.strip() else "failed"
        super().__init__(f"worker for queue {queue_id}: {last}")
        self.queue_id = queue_id
        self.details = details
        self.stats = stats


@dataclass(frozen=True)
class QueueStats:
    """One worker's figures."""

    queue_id: int
    packets: int
    batches: int
    bytes: int | None  # None unless count_bytes was asked for
    seconds: float  # from the worker's first packet to its stop (0: none arrived)
    cpu: int | None
    kernel: Statistics | None

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class WorkerStats:
    """Every worker's :class:`QueueStats` and the totals."""

    queues: tuple[QueueStats, ...]
    stopped_by: str | None = None  # "SIGTERM" when a signal stopped the run

    @property
    def packets(self) -> int:
        return sum(q.packets for q in self.queues)

    @property
    def pps(self) -> float:
        """Aggregate rate: the sum of the workers' rates (they run at once)."""
        return sum(q.pps for q in self.queues)

    @property
    def bytes(self) -> int | None:
        counts = [q.bytes for q in self.queues]
        return None if any(b is None for b in counts) else sum(b for b in counts if b)


class WorkerContext:
    """What a handler gets besides the batch: the worker's queue, sockets and
    a way to stop every worker."""

    def __init__(self, ifname: str, queue_id: int, rx: RxSocket, tx: TxSocket | None,
                 cpu: int | None, stop_flag: Any) -> None:
        self.ifname = ifname
        self.queue_id = queue_id
        self.rx = rx
        self.tx = tx  # with direction="both": forward with batch.forward(ctx.tx)
        self.cpu = cpu
        self._stop = stop_flag

    def stop(self) -> None:
        """Ask every worker (this one included) to stop after its current batch."""
        self._stop.value = 1


def parse_queues(spec: str | int | Iterable[int], n_rx: int) -> list[int]:
    """``"all"``, ``"0-3"``, ``"0,2,5-6"``, an int or ints -> sorted queue ids,
    each checked against the ``n_rx`` RX queues the interface has."""
    out: set[int] = set()
    if isinstance(spec, bool):
        raise TypeError("queues must be 'all', an int, a range string or ints")
    if isinstance(spec, int):
        out.add(spec)
    elif isinstance(spec, str):
        if spec.strip() == "all":
            out.update(range(n_rx))
        else:
            for part in spec.split(","):
                part = part.strip()
                lo, dash, hi = part.partition("-")
                try:
                    a = int(lo)
                    b = int(hi) if dash else a
                except ValueError:
                    raise ValueError(f"not a queue list: {spec!r} (e.g. 0-3 or 0,2 or all)") \
                        from None
                if a < 0 or b < a:
                    raise ValueError(f"not a queue range: {part!r}")
                out.update(range(a, b + 1))
    else:
        for q in spec:
            if isinstance(q, bool) or not isinstance(q, int) or q < 0:
                raise ValueError(f"queue ids are ints >= 0, got {q!r}")
            out.add(q)
    if not out:
        raise ValueError("no queue given")
    bad = [q for q in sorted(out) if q >= n_rx]
    if bad:
        raise ValueError(f"queue {bad[0]} does not exist: the interface has {n_rx} RX "
                         f"queue(s), 0..{n_rx - 1}")
    return sorted(out)


class Workers:
    """One process per queue running ``handler`` on every received batch.

    ``handler(batch, ctx)`` (or ``None``: drop, only count) is called in the
    worker with each non-empty :class:`~xdp_socket.RxBatch`; the worker
    releases the batch after it unless the handler released or forwarded it.
    ``direction="both"`` gives each worker a bidirectional socket
    (``ctx.tx``). ``cpus``: CPUs to pin the workers to, one per queue in
    order (round robin when fewer), ``"auto"`` for the CPUs this process may
    use, ``None`` for no pinning. ``packets``: each worker stops after that
    many; ``window``: each worker stops that many seconds after its own
    first packet (how a benchmark measures). ``count_bytes`` adds byte counts
    (reads every batch's lengths). ``on_stop(ctx)`` runs in each worker once
    its loop has ended (normally: not after a handler's exception), before
    its sockets close: where a worker flushes and closes what its handler
    wrote (an exception there is the worker's failure, as in a handler).
    """

    def __init__(
        self,
        iface: str | int,
        handler: Handler | None,
        queues: str | int | Iterable[int] = "all",
        *,
        config: XdpConfig | None = None,
        direction: Direction | str = Direction.RX,
        cpus: Sequence[int] | str | None = None,
        batch: int = 64,
        packets: int | None = None,
        count_bytes: bool = False,
        poll_timeout: float = 0.05,
        window: float | None = None,
        on_stop: Callable[[WorkerContext], object] | None = None,
    ) -> None:
        self.ifname, self.ifindex = resolve_interface(iface)
        self.queues = parse_queues(queues, queue_counts(self.ifindex)[0])
        if handler is not None and not callable(handler):
            raise TypeError("handler must be callable or None")
        if on_stop is not None and not callable(on_stop):
            raise TypeError("on_stop must be callable or None")
        d = direction if isinstance(direction, Direction) else Direction(str(direction).lower())
        if d is Direction.TX:
            raise ValueError("workers receive: direction must be 'rx' or 'both'")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        if packets is not None and (isinstance(packets, bool) or not isinstance(packets, int)
                                    or packets <= 0):
            raise ValueError(f"packets must be a positive int, got {packets!r}")
        self.handler = handler
        self.config = config if config is not None else XdpConfig()
        self.direction = d
        self.batch = batch
        self.packets = packets
        self.count_bytes = count_bytes
        self.poll_timeout = poll_timeout
        self.window = window
        self.on_stop = on_stop
        self.cpus = self._plan_cpus(cpus)
        self._ctx = multiprocessing.get_context("fork")
        self._stop = _SharedFlag()  # read without a lock, once per loop
        self._go = _SharedFlag()
        self._procs: list[Any] = []
        self._conns: list[multiprocessing.connection.Connection] = []
        self._reports: dict[int, tuple[str, Any]] = {}
        self._released: set[int] = set()  # processes joined and closed
        self._joined: WorkerStats | None = None

    def _plan_cpus(self, cpus: Sequence[int] | str | None) -> list[int | None]:
        if cpus is None:
            return [None] * len(self.queues)
        if cpus == "auto":
            avail = sorted(os.sched_getaffinity(0))
        elif isinstance(cpus, str):
            raise ValueError(f"cpus must be a list of CPU numbers, 'auto' or None, got {cpus!r}")
        else:
            avail = list(cpus)
            allowed = os.sched_getaffinity(0)
            for c in avail:
                if c not in allowed:
                    raise ValueError(f"CPU {c} is not available to this process "
                                     f"(allowed: {sorted(allowed)})")
        if not avail:
            raise ValueError("no CPU to pin to")
        return [avail[i % len(avail)] for i in range(len(self.queues))]

    # --- parent side ----------------------------------------------------------
    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Fork the workers; return when every one has its socket bound, then
        let them all start. A set-up error in any worker stops the others and
        raises :class:`WorkerError`."""
        if self._procs:
            raise RuntimeError("workers already started")
        spec = _WorkerSpec(self)
        for q, cpu in zip(self.queues, self.cpus, strict=True):
            parent_end, child_end = self._ctx.Pipe(duplex=False)
            p = self._ctx.Process(target=spec.worker, args=(q, cpu, child_end),
                                  name=f"xdp-worker-q{q}", daemon=True)
            p.start()
            child_end.close()
            self._procs.append(p)
            self._conns.append(parent_end)
        del spec
        deadline = time.monotonic() + timeout
        ready: set[int] = set()
        try:
            while len(ready) < len(self.queues):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkerError(self.queues[len(ready)], "did not start in time")
                for i, msg in self._receive(left):
                    if msg[0] == "ready":
                        ready.add(i)
                    else:
                        raise self._failure(i, msg)
        except BaseException:
            self.stop()
            with contextlib.suppress(BaseException):
                self._collect(5.0)
            self._close_conns()
            raise
        self._go.value = 1

    def stop(self) -> None:
        """Ask every worker to stop (they finish their current batch)."""
        self._stop.value = 1

    @property
    def running(self) -> int:
        """Workers that have not reported back yet."""
        return len(self.queues) - len(self._reports)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every worker has finished (e.g. reached ``packets``) or a
        worker failed; True then, False after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._receive(left)
            if any(m[0] != "done" for m in self._reports.values()):
                return True
        return True

    def join(self, timeout: float = 10.0) -> WorkerStats:
        """Stop the workers, collect every report and return the statistics;
        raises :class:`WorkerError` when a worker failed."""
        if self._joined is not None:
            return self._joined
        self.stop()
        try:
            self._collect(timeout)
        finally:
            self._close_conns()
        done = [self._reports[i][1] for i in range(len(self.queues))
                if self._reports.get(i, ("",))[0] == "done"]
        stats = WorkerStats(tuple(done))
        for i in range(len(self.queues)):
            msg = self._reports.get(i)
            if msg is None or msg[0] != "done":
                err = self._failure(i, msg or ("lost", "no report"))
                err.stats = stats
                raise err
        self._joined = stats
        return stats

    def __enter__(self) -> Workers:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.join()
        else:
            self.stop()
            with contextlib.suppress(Exception):
                self.join()

    def _receive(self, timeout: float | None) -> list[tuple[int, Any]]:
        """Messages from workers within ``timeout``; a worker whose process
        ended without a final report is recorded as lost."""
        conns = {c: i for i, c in enumerate(self._conns) if i not in self._reports}
        sentinels = {self._procs[i].sentinel: i for i in conns.values()}
        if not conns:
            return []
        out: list[tuple[int, Any]] = []
        ready = multiprocessing.connection.wait([*conns, *sentinels], timeout)
        for r in ready:
            if r in conns:
                i = conns[r]
                try:
                    msg = r.recv()
                except (EOFError, OSError):
                    self._lost(i)
                    continue
                out.append((i, msg))
                if msg[0] != "ready":
                    self._reports[i] = msg
            elif r in sentinels:
                i = sentinels[r]
                conn = self._conns[i]
                # a report may still be in the pipe
                while i not in self._reports and conn.poll(0):
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        break
                    if msg[0] != "ready":
                        self._reports[i] = msg
                if i not in self._reports:
                    self._lost(i)
        return out

    def _lost(self, i: int) -> None:
        p = self._procs[i]
        p.join(1.0)
        self._reports[i] = ("lost", f"worker process exited with code {p.exitcode} "
                                    "without a report")

    def _failure(self, i: int, msg: tuple[str, Any]) -> WorkerError:
        self.stop()
        return WorkerError(self.queues[i], str(msg[1]))

    def _collect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.running:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._receive(left)
        for i, p in enumerate(self._procs):
            if i in self._released:
                continue
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():  # stuck (e.g. in a handler that never returns)
                p.kill()
                p.join(1.0)
                self._reports.setdefault(i, ("lost", "worker did not stop in time; killed"))
            if not p.is_alive():
                p.close()  # its sentinel fd
                self._released.add(i)

    def _close_conns(self) -> None:
        for c in self._conns:
            c.close()


class _SharedFlag:
    """An int in an anonymous shared mapping: forked workers see the parent's
    writes and the parent theirs. (Not multiprocessing.RawValue: its heap
    keeps a file descriptor that it closes at an unpredictable later time.)"""

    def __init__(self) -> None:
        self._mm = mmap.mmap(-1, 8)  # MAP_SHARED | MAP_ANONYMOUS: no fd
        self._v = memoryview(self._mm).cast("i")

    @property
    def value(self) -> int:
        v: int = self._v[0]
        return v

    @value.setter
    def value(self, v: int) -> None:
        self._v[0] = v


class _WorkerSpec:
    """What a worker process needs, and its code. Kept apart from
    :class:`Workers` so that the processes' target refers to this and not
    to the Workers object that holds the processes (no reference cycle: a
    dropped Workers object is freed, with its pipes, by reference counting)."""

    def __init__(self, w: Workers) -> None:
        self.ifname = w.ifname
        self.handler = w.handler
        self.config = w.config
        self.direction = w.direction
        self.batch = w.batch
        self.packets = w.packets
        self.count_bytes = w.count_bytes
        self.poll_timeout = w.poll_timeout
        self.window = w.window
        self.on_stop = w.on_stop
        self._stop = w._stop
        self._go = w._go

    def worker(self, queue_id: int, cpu: int | None, conn: Any) -> None:
        code = 1
        try:
            code = self._worker_main(queue_id, cpu, conn)
        except BaseException:
            with contextlib.suppress(BaseException):
                conn.send(("error", traceback.format_exc()))
        finally:
            with contextlib.suppress(BaseException):
                conn.close()
            os._exit(code)

    def _worker_main(self, queue_id: int, cpu: int | None, conn: Any) -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop = self._stop

        def on_term(signum: int, frame: FrameType | None) -> None:
            stop.value = 1

        signal.signal(signal.SIGTERM, on_term)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        tx, rx = create_socket(self.ifname, queue_id, self.direction, self.config)
        assert rx is not None
        try:
            conn.send(("ready", queue_id))
            while not self._go.value:
                if stop.value:
                    break
                time.sleep(0.001)
            ctx = WorkerContext(self.ifname, queue_id, rx, tx, cpu, stop)
            stats = self._loop(rx, ctx)
            if self.on_stop is not None:
                self.on_stop(ctx)
            kernel = rx.statistics()
        finally:
            for s in (rx, tx):
                if s is not None:
                    s.close()
        conn.send(("done", QueueStats(queue_id, stats[0], stats[1], stats[2], stats[3], cpu,
                                      kernel)))
        return 0

    def _loop(self, rx: RxSocket, ctx: WorkerContext) -> tuple[int, int, int | None, float]:
        stop, handler, n, limit = self._stop, self.handler, self.batch, self.packets
        receive, wait = rx.receive, self.poll_timeout
        count_bytes, window = self.count_bytes, self.window
        packets = batches = nbytes = 0
        t0: float | None = None
        end = float("inf")
        while not stop.value:
            b = receive(n, wait)
            k = b.count
            if not k:
                if time.monotonic() >= end:
                    break
                continue
            if t0 is None:
                t0 = time.monotonic()
                if window is not None:
                    end = t0 + window
            elif window is not None and time.monotonic() >= end:
                b.release()
                break
            if count_bytes:
                nbytes += int(b.lens.sum())
            if handler is not None:
                handler(b, ctx)
            if not b.released:
                b.release()
            packets += k
            batches += 1
            if limit is not None and packets >= limit:
                break
        seconds = 0.0 if t0 is None else time.monotonic() - t0
        return packets, batches, nbytes if count_bytes else None, seconds


def run(
    iface: str | int,
    handler: Handler | None,
    queues: str | int | Iterable[int] = "all",
    *,
    duration: float | None = None,
    packets: int | None = None,
    config: XdpConfig | None = None,
    direction: Direction | str = Direction.RX,
    cpus: Sequence[int] | str | None = None,
    batch: int = 64,
    count_bytes: bool = False,
) -> WorkerStats:
    """Run ``handler`` on every queue in ``queues`` of ``iface``, one process
    per queue (see :class:`Workers`), until ``duration`` seconds passed, every
    worker received ``packets`` packets, a handler called ``ctx.stop()``, a
    worker failed (:class:`WorkerError`) or SIGTERM arrived; returns the
    statistics. Ctrl-C stops the workers cleanly, then raises
    ``KeyboardInterrupt``. Give ``duration`` or ``packets`` (or stop from a
    handler), or it runs until a signal."""
    w = Workers(iface, handler, queues, config=config, direction=direction, cpus=cpus,
                batch=batch, packets=packets, count_bytes=count_bytes)
    stopped_by: list[str] = []
    old = None
    in_main = multiprocessing.current_process().name == "MainProcess" and \
        _is_main_thread()
    if in_main:
        def on_term(signum: int, frame: FrameType | None) -> None:
            stopped_by.append("SIGTERM")
            w.stop()

        old = signal.signal(signal.SIGTERM, on_term)
    try:
        w.start()
        end = None if duration is None else time.monotonic() + duration
        while not stopped_by:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                break
            # short waits: a signal handler runs between them
            if w.wait(0.2 if left is None else min(left, 0.2)) or w._stop.value:
                break
        stats = w.join()
    except BaseException:
        w.stop()
        with contextlib.suppress(Exception):
            w.join()
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old)
    if stopped_by:
        return WorkerStats(stats.queues, stopped_by[0])
    return stats


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
