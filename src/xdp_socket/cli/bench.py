"""``xdp-socket bench``: rxdrop / txonly / l2fwd, modelled on the kernel's
xdpsock sample, on either API tier.

* **rxdrop**: receive and drop; counts packets.
* **txonly**: send 64-byte UDP/IPv4 frames as fast as the kernel takes them;
  the frames are written into the UMEM once, each send only sets descriptor
  lengths (as xdpsock does). Counts frames the kernel completed.
* **l2fwd**: receive, swap the MAC addresses, send back out of the same
  interface and queue. The batch API forwards the received frames themselves
  (zero copy); the per-packet API copies each into a TX frame.
* **latency**: ping-pong. Send one frame, wait until it comes back, record the
  round-trip time; repeat ``-n`` times (after 100 unrecorded warm-up pings).
  The echo is an ``l2fwd`` on the other end of the link (for a veth pair: on
  the peer), e.g. ``xdp-socket bench l2fwd -i veth1`` beside
  ``xdp-socket bench latency -i veth0``. Reports min/p50/p99/p99.9/max in
  microseconds (nearest-rank percentiles); ``--json`` adds every sample.

With ``--json`` the result also says where the time went during the window:
``cpu`` (user and system seconds of this process) and ``counters`` (``looks``:
ring looks, ``batches``: looks that moved packets, so ``packets / batches`` is
the average batch actually taken).

Several queues (``-q 0-3``, ``-q 0,2`` or ``--all-queues``; rxdrop and l2fwd,
batch API) run one worker process per queue through
:mod:`xdp_socket.workers`, each pinned to a CPU of its own when there are
enough (``--no-pin`` to leave placement to the scheduler), and report each
queue's rate and the total.

``--api batch`` (default) uses :class:`~xdp_socket.RxBatch` /
:class:`~xdp_socket.TxBatch`; ``--api packet`` uses ``seek_n`` / ``peek_at`` /
``commit_n`` per packet. The loops spin on the rings (like xdpsock without
``-p``) unless ``--poll`` is given.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import resource
import select
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from ._common import (
    EXIT_USAGE,
    CliError,
    Status,
    StopFlag,
    add_interface,
    add_json,
    add_xdp_mode,
    check_frame_size,
    check_queue,
    command_parser,
    human_rate,
    positive_float,
    positive_int,
    print_json,
    resolve,
    zero_copy_hint,
)

MODES = ("rxdrop", "txonly", "l2fwd", "latency")

EPILOG = """examples:
  xdp-socket bench rxdrop -i veth1 -d 5           # feed it with `xdp-socket gen` on the peer
  xdp-socket bench txonly -i veth0 -b 64 --json
  xdp-socket bench l2fwd -i veth1 --api packet
  xdp-socket bench rxdrop -i eth0 -q 0-3          # a worker process per queue
  xdp-socket bench rxdrop -i eth0 --all-queues --json
  xdp-socket bench l2fwd -i veth1 -d 30 &     # the echo for a latency run
  xdp-socket bench latency -i veth0 -n 10000 --poll
"""


def register(subparsers: Any) -> None:
    p = command_parser(subparsers, "bench", __doc__, EPILOG,
                       "rxdrop / txonly / l2fwd / latency benchmarks (like the kernel's "
                       "xdpsock)")
    p.add_argument("mode", choices=MODES, help="what to measure")
    add_interface(p)
    p.add_argument("-q", "--queue", default="0", metavar="QUEUES",
                   help="queue id, or several: 0-3, 0,2 (rxdrop/l2fwd: a worker process per "
                        "queue; default 0)")
    p.add_argument("--all-queues", action="store_true",
                   help="every RX queue of the interface, a worker process each")
    p.add_argument("--no-pin", action="store_true",
                   help="several queues: do not pin each worker to a CPU")
    p.add_argument("-d", "--duration", type=positive_float, default=5.0, metavar="SECONDS",
                   help="seconds to run (default 5)")
    p.add_argument("-w", "--wait", type=positive_float, default=10.0, metavar="SECONDS",
                   help="rxdrop/l2fwd: the measurement starts at the first packet; wait at "
                        "most this long for it (default 10)")
    p.add_argument("-b", "--batch", type=positive_int, default=256,
                   help="descriptors per batch, at most the ring size 2048 (default 256)")
    p.add_argument("-s", "--size", type=positive_int, default=64,
                   help="txonly frame length in bytes, without FCS: 60 up to --frame-size "
                        "(default 64)")
    p.add_argument("-n", "--pings", type=positive_int, default=10000,
                   help="latency: round trips to record (default 10000); -d bounds the "
                        "run too")
    p.add_argument("--api", choices=("batch", "packet"), default="batch",
                   help="which API tier to run (default batch)")
    add_xdp_mode(p)
    p.add_argument("--copy", action="store_true", help="force copy mode (XDP_COPY)")
    p.add_argument("--zero-copy", action="store_true", help="force zero-copy mode")
    p.add_argument("--no-need-wakeup", action="store_true",
                   help="bind without XDP_USE_NEED_WAKEUP (kick on every send)")
    p.add_argument("--busy-poll", action="store_true",
                   help="preferred busy polling (SO_BUSY_POLL 20 us, budget 64)")
    p.add_argument("--poll", action="store_true",
                   help="wait in poll(2) when the ring is empty instead of spinning")
    p.add_argument("--tx-budget", type=positive_int, default=None,
                   help="frames per copy-mode kick (XDP_MAX_TX_SKB_BUDGET, Linux 6.15+)")
    p.add_argument("--frame-size", type=int, choices=(2048, 4096), default=4096)
    p.add_argument("--quiet", action="store_true", help="no per-second rates on stderr")
    add_json(p)
    p.set_defaults(func=run)


def udp_frame(size: int, src_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
              dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02") -> bytes:
    """A UDP/IPv4 frame of ``size`` bytes (no FCS, at least the Ethernet
    minimum of 60), both checksums right, from 198.18.0.1 (RFC 2544's
    benchmark range) to port 9 (discard)."""
    from ..frames import build_udp_frame

    return build_udp_frame(dst_mac=dst_mac, src_mac=src_mac, src_ip="198.18.0.1",
                           dst_ip="198.18.0.2", sport=9, dport=9, frame_size=max(size, 60))


def run(args: argparse.Namespace) -> int:
    import xdp_socket as xs

    if args.copy and args.zero_copy:
        raise CliError("--copy and --zero-copy exclude each other", 2)
    ifname, ifindex = resolve(args.interface)
    need_rx = args.mode in ("rxdrop", "l2fwd", "latency")
    need_tx = args.mode in ("txonly", "l2fwd", "latency")
    queues = _queues(args, ifname, ifindex)
    args.queue = queues[0]
    if need_rx:
        check_queue(ifname, ifindex, args.queue, "rx")
    if need_tx:
        check_queue(ifname, ifindex, args.queue, "tx")
    check_frame_size(args.size, args.frame_size, "the UMEM frame size, --frame-size")
    cfg = xs.XdpConfig(
        zero_copy=True if args.zero_copy else (False if args.copy else None),
        need_wakeup=not args.no_need_wakeup,
        frame_size=args.frame_size,
        xdp_mode=args.xdp_mode,
        tx_budget=args.tx_budget,
        busy_poll=20 if args.busy_poll else None,
    )
    # A batch larger than the rings it moves through can never fill: bound it
    # by the smallest ring the mode uses.
    rings = ([cfg.rx_size, cfg.fill_size] if need_rx else []) + (
        [cfg.tx_size, cfg.comp_size] if need_tx else [])
    if args.batch > min(rings):
        raise CliError(f"--batch must be 1..{min(rings)} (the ring size), got {args.batch}", 2)
    direction = {"rxdrop": xs.Direction.RX, "txonly": xs.Direction.TX,
                 "l2fwd": xs.Direction.BOTH, "latency": xs.Direction.BOTH}[args.mode]
    if len(queues) > 1 or args.all_queues:
        return _run_workers(args, ifname, queues, cfg, direction)
    try:
        tx, rx = xs.create_socket(ifname, args.queue, direction, cfg)
    except xs.XdpError as e:
        if args.zero_copy and e.errno == errno.EOPNOTSUPP and e.step == "bind xsk":
            raise CliError(zero_copy_hint(ifname)) from None
        raise
    status = Status(enabled=not args.quiet)
    stop = StopFlag()
    try:
        with stop.installed():
            loop = _LOOPS[(args.mode, args.api)]
            packets, seconds, extra = loop(args, tx, rx, status, stop)
    finally:
        stats = (rx or tx).statistics() if (rx or tx) is not None else None  # type: ignore[union-attr]
        for s in (tx, rx):
            if s is not None:
                s.close()
    status.finish()
    pps = packets / seconds if seconds > 0 else 0.0
    result: dict[str, Any] = {
        "mode": args.mode,
        "impl": "xdp-socket",
        "api": args.api,
        "pps": round(pps, 1),
        "packets": packets,
        "seconds": round(seconds, 4),
        "batch": args.batch,
        "interface": ifname,
        "queue": args.queue,
        # which ring path ran: the compiled accelerator or pure Python
        "accel": xs.accelerator(),
        **extra,
    }
    if stats is not None:
        result["statistics"] = stats._asdict()
    if args.json:
        print_json(result)
    elif args.mode == "latency":
        r = extra.get("rtt_us")
        print(f"latency ({args.api} API, {'poll' if args.poll else 'spin'}) on {ifname} "
              f"queue {args.queue}: {extra['pings']} round trips, {extra['lost']} lost"
              + (", RTT us " + " ".join(f"{k} {v:.1f}" for k, v in r.items()) if r else ""))
    else:
        print(f"{args.mode} ({args.api} API) on {ifname} queue {args.queue}: {packets} packets "
              f"in {seconds:.2f} s = {human_rate(pps)}")
        if stats is not None:
            print("kernel statistics: " + ", ".join(f"{k}={v}" for k, v in stats._asdict().items()))
    return stop.exit_code


def _queues(args: argparse.Namespace, ifname: str, ifindex: int) -> list[int]:
    """The queue list from -q / --all-queues (usage errors for bad ones)."""
    from ..iface import queue_counts
    from ..workers import parse_queues

    n_rx, n_tx = queue_counts(ifindex)
    spec = "all" if args.all_queues else str(args.queue)
    try:
        queues = parse_queues(spec, n_tx if args.mode == "txonly" else n_rx)
    except ValueError as e:
        raise CliError(f"-q {spec}: {e}", EXIT_USAGE) from None
    if len(queues) > 1 or args.all_queues:
        if args.mode in ("txonly", "latency"):
            raise CliError(f"several queues: rxdrop and l2fwd only ({args.mode} takes one -q)",
                           EXIT_USAGE)
        if args.api != "batch":
            raise CliError("several queues run the batch API only", EXIT_USAGE)
    return queues


def _run_workers(args: argparse.Namespace, ifname: str, queues: list[int], cfg: Any,
                 direction: Any) -> int:
    """One worker process per queue (xdp_socket.workers); each measures from
    its own first packet, as the one-queue loops do."""
    from ..workers import WorkerError, Workers

    def l2fwd(batch: Any, ctx: Any) -> None:
        batch.swap_macs()
        batch.forward(ctx.tx)

    handler = l2fwd if args.mode == "l2fwd" else None
    ncpu = len(os.sched_getaffinity(0))
    # pin only when every worker gets a CPU of its own
    cpus = None if args.no_pin or len(queues) > ncpu else "auto"
    w = Workers(ifname, handler, queues, config=cfg, direction=direction, cpus=cpus,
                batch=args.batch, poll_timeout=0.1 if args.poll else 0.01,
                window=args.duration)
    stop = StopFlag()
    try:
        with stop.installed():
            w.start()
            # each worker stops args.duration after its own first packet; a
            # queue that gets none is stopped when --wait is over too
            end = time.monotonic() + args.wait + args.duration
            while not stop and time.monotonic() < end:
                if w.wait(0.1):
                    break
            stats = w.join()
    except WorkerError as e:
        raise CliError(str(e)) from None
    rows: list[dict[str, Any]] = [
        {"queue": q.queue_id, "packets": q.packets, "seconds": round(q.seconds, 4),
         "pps": round(q.pps, 1), "cpu": q.cpu,
         "statistics": q.kernel._asdict() if q.kernel else None} for q in stats.queues]
    if stats.packets == 0 and not stop:
        raise CliError(f"no packet arrived on {ifname} queues "
                       f"{','.join(map(str, queues))} within {args.wait:g} s")
    result: dict[str, Any] = {
        "mode": args.mode, "impl": "xdp-socket", "api": args.api,
        "pps": round(stats.pps, 1), "packets": stats.packets, "batch": args.batch,
        "interface": ifname, "queues": rows,
    }
    if args.json:
        print_json(result)
    else:
        for r in rows:
            cpu = "" if r["cpu"] is None else f" (CPU {r['cpu']})"
            print(f"{args.mode} on {ifname} queue {r['queue']}{cpu}: {r['packets']} packets "
                  f"in {r['seconds']:.2f} s = {human_rate(r['pps'])}")
        print(f"{args.mode} on {ifname}, {len(rows)} queues: {stats.packets} packets, "
              f"total {human_rate(stats.pps)}")
    return stop.exit_code


# --- the loops ------------------------------------------------------------------------
# A mode is a ``step()`` that moves one batch and returns how many packets it
# moved; _measure runs it until the duration is over, checking the clock once
# per batch (cheap next to a ring access, and it bounds every run in time).

Step = Callable[[], int]
Result = tuple[int, float, dict[str, Any]]


def perf_ctl(cmd: str) -> None:
    """Tell ``perf stat --control`` to start or stop counting (``bench/run.py
    --method`` counts syscalls for the measurement window only; it names perf's
    control and ack FIFOs in these variables). Waits at most 1 s for perf's ack;
    does nothing without the variables or without perf reading the FIFO."""
    ctl, ack = os.environ.get("XDP_BENCH_PERF_CTL"), os.environ.get("XDP_BENCH_PERF_ACK")
    if not ctl:
        return
    try:
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, cmd.encode() + b"\n")
    except OSError:
        return
    finally:
        os.close(fd)
    if not ack:
        return
    try:
        fd = os.open(ack, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        while p.poll(1000) and b"\n" not in os.read(fd, 16):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def _cpu_times() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def _window_stats(cpu0: tuple[float, float], looks: int, batches: int) -> dict[str, Any]:
    """What the JSON result says about the window: its CPU time and how often
    the loop looked at the ring (see the module docstring)."""
    user, system = _cpu_times()
    return {"cpu": {"user_s": round(user - cpu0[0], 6), "sys_s": round(system - cpu0[1], 6)},
            "counters": {"looks": looks, "batches": batches}}


def _measure(args: argparse.Namespace, status: Status, stop: StopFlag, step: Step,
             done: Callable[[int], int] = lambda n: n) -> tuple[int, float, dict[str, Any]]:
    """Run ``step`` for ``args.duration`` seconds; returns (steps' total,
    seconds, window statistics). ``done`` turns the running total into what the
    live rate shows (txonly: frames completed rather than submitted)."""
    total = looks = batches = 0
    perf_ctl("enable")
    cpu0 = _cpu_times()
    t0 = time.monotonic()
    end = t0 + args.duration
    nxt = t0 + 1.0
    last_t, last_n = t0, 0
    now = t0
    while now < end and not stop:
        n = step()
        looks += 1
        if n:
            total += n
            batches += 1
        now = time.monotonic()
        if now >= nxt:
            shown = done(total)
            rate = (shown - last_n) / (now - last_t)
            status.update(f"{args.mode}: {human_rate(rate)}  total {shown}", force=True)
            last_t, last_n, nxt = now, shown, now + 1.0
    window = _window_stats(cpu0, looks, batches)
    perf_ctl("disable")
    return total, now - t0, window


def _first_packet(args: argparse.Namespace, rx: Any, stop: StopFlag) -> None:
    """Receivers start their window at the first packet (as the C reference
    does), so a source that starts a little later does not dilute the rate."""
    end = time.monotonic() + args.wait
    while not rx.seek() and not stop:
        if time.monotonic() >= end:
            raise CliError(f"no packet arrived on {rx.ifname} queue {rx.queue_id} within "
                           f"{args.wait:g} s")
        rx.poll_wait(0.01)


def _rx_idle(args: argparse.Namespace, rx: Any) -> None:
    if args.poll:
        rx.poll_wait(0.1)


def _rxdrop_batch(args: argparse.Namespace, tx: Any, rx: Any, status: Status,
                  stop: StopFlag) -> Result:
    receive, batch = rx.receive, args.batch

    def step() -> int:
        with receive(batch) as b:
            n: int = b.count
        if not n:
            _rx_idle(args, rx)
        return n

    _first_packet(args, rx, stop)
    return _measure(args, status, stop, step)


def _rxdrop_packet(args: argparse.Namespace, tx: Any, rx: Any, status: Status,
                   stop: StopFlag) -> Result:
    seek_n, peek_at, commit_n, batch = rx.seek_n, rx.peek_at, rx.commit_n, args.batch

    def step() -> int:
        n: int = seek_n(batch)
        if n:
            for i in range(n):
                peek_at(i)
            commit_n(n)
        else:
            _rx_idle(args, rx)
        return n

    _first_packet(args, rx, stop)
    return _measure(args, status, stop, step)


def _txonly_prepare(args: argparse.Namespace, tx: Any) -> int:
    import numpy as np

    frame = udp_frame(args.size)
    tx.umem[:, : len(frame)] = np.frombuffer(frame, np.uint8)  # every frame, once
    return len(frame)


def _txonly(args: argparse.Namespace, tx: Any, status: Status, stop: StopFlag,
            step: Step) -> Result:
    submitted, seconds, extra = _measure(args, status, stop, step, lambda n: n - tx.in_flight)
    tx.reclaim()
    return submitted - tx.in_flight, seconds, {"submitted": submitted, **extra}


def _txonly_batch(args: argparse.Namespace, tx: Any, rx: Any, status: Status,
                  stop: StopFlag) -> Result:
    length = _txonly_prepare(args, tx)
    reserve, batch = tx.reserve, args.batch

    def step() -> int:
        b = reserve(batch)
        n: int = b.count
        if n:
            b.set_lengths(length)
        b.submit()  # also kicks when nothing new was reserved: drives completions
        if not n and args.poll:
            tx.poll_wait(0.1)
        return n

    return _txonly(args, tx, status, stop, step)


def _txonly_packet(args: argparse.Namespace, tx: Any, rx: Any, status: Status,
                   stop: StopFlag) -> Result:
    length = _txonly_prepare(args, tx)
    seek_n, peek_at, commit_and_kick = tx.seek_n, tx.peek_at, tx.commit_and_kick
    batch = args.batch

    def step() -> int:
        n: int = seek_n(batch)
        for i in range(n):
            peek_at(i, length)  # the frame already holds the packet; this sets its length
        commit_and_kick(n)
        if not n and args.poll:
            tx.poll_wait(0.1)
        return n

    return _txonly(args, tx, status, stop, step)


def _l2fwd_batch(args: argparse.Namespace, tx: Any, rx: Any, status: Status,
                 stop: StopFlag) -> Result:
    receive, batch = rx.receive, args.batch

    def step() -> int:
        b = receive(batch)
        if b.count:
            b.swap_macs()
            n: int = b.forward(tx)
            return n
        b.release()
        tx.reclaim()  # frames in flight come back to the Fill ring
        _rx_idle(args, rx)
        return 0

    _first_packet(args, rx, stop)
    return _measure(args, status, stop, step)


def _l2fwd_packet(args: argparse.Namespace, tx: Any, rx: Any, status: Status,
                  stop: StopFlag) -> Result:
    r_seek, r_peek, r_commit = rx.seek_n, rx.peek_at, rx.commit_n
    t_seek, t_peek, t_commit = tx.seek_n, tx.peek_at, tx.commit_and_kick
    batch = args.batch

    def step() -> int:
        n: int = r_seek(batch)
        if not n:
            _rx_idle(args, rx)
            return 0
        k: int = t_seek(n)
        for i in range(k):
            pkt = r_peek(i)
            out = t_peek(i, len(pkt))
            out[:6] = pkt[6:12]
            out[6:12] = pkt[:6]
            out[12:] = pkt[12:]
        r_commit(n)  # packets beyond the free TX frames are dropped
        t_commit(k)
        return k

    _first_packet(args, rx, stop)
    return _measure(args, status, stop, step)


# --- latency --------------------------------------------------------------------------
# The same method as xsk_ref's latency mode (bench/ref/xsk_ref.c), so the two can
# be compared: the round trip runs from just before the descriptor is submitted
# (the kick that follows is part of it) to the moment the RX ring yields the
# frame; the sequence number in the payload tells the current echo from a late
# one of a lost ping.

LAT_WARMUP = 100  # pings not recorded: cold caches, first wakeups
LAT_TIMEOUT_S = 0.1  # a ping not back within this is lost; the next one goes out
# after Ethernet (14), IPv4 (20), UDP (8) and xsk_ref's 8-byte payload tag
LAT_SEQ_OFF = 50
_SEQ = struct.Struct("<Q")

Send = Callable[[bytearray], "float | None"]
Wait = Callable[[int, float], "float | None"]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (the rule xsk_ref uses too)."""
    k = math.ceil(q * len(sorted_values))
    return sorted_values[max(k, 1) - 1]


def rtt_summary(rtts_s: list[float]) -> dict[str, float]:
    """min/p50/p99/p99.9/max/mean of round-trip times, in microseconds."""
    v = sorted(rtts_s)
    return {"min": v[0] * 1e6, "p50": percentile(v, 0.5) * 1e6,
            "p99": percentile(v, 0.99) * 1e6, "p99.9": percentile(v, 0.999) * 1e6,
            "max": v[-1] * 1e6, "mean": sum(v) / len(v) * 1e6}


def _latency_ops(args: argparse.Namespace, tx: Any, rx: Any) -> tuple[Send, Wait]:
    """``send(frame)``: submit one frame, return the time just before the
    submit (None when no TX frame is free). ``wait(seq, deadline)``: the time
    the RX ring yielded the frame carrying ``seq``, or None at the deadline.
    One pair per API tier; both spin, or wait in poll(2) with ``--poll``."""
    clock, poll = time.perf_counter, args.poll

    def idle(deadline: float) -> bool:
        now = clock()
        if now >= deadline:
            return False
        if poll:
            rx.poll_wait(deadline - now)
        else:
            rx.kick()  # a Fill ring that asks for a wakeup gets one (veth never asks)
        return True

    def ours(pkt: Any, seq: int) -> bool:
        return len(pkt) >= LAT_SEQ_OFF + 8 and _SEQ.unpack_from(pkt, LAT_SEQ_OFF)[0] == seq

    if args.api == "batch":
        reserve, receive = tx.reserve, rx.receive

        def send(frame: bytearray) -> float | None:
            b = reserve(1)
            if not b.count:
                b.cancel()
                return None
            b.write(0, frame)
            t0 = clock()
            b.submit()
            return t0

        def wait(seq: int, deadline: float) -> float | None:
            while True:
                with receive(1) as b:
                    if b.count:
                        t1 = clock()
                        if ours(b.packet(0), seq):
                            return t1
                        continue  # a late echo of a lost ping
                if not idle(deadline):
                    return None

        return send, wait

    t_seek, t_peek, t_commit = tx.seek_n, tx.peek_at, tx.commit_and_kick
    r_seek, r_peek, r_commit = rx.seek_n, rx.peek_at, rx.commit_n

    def send_packet(frame: bytearray) -> float | None:
        if not t_seek(1):
            return None
        t_peek(0, len(frame))[:] = frame
        t0 = clock()
        t_commit(1)
        return t0

    def wait_packet(seq: int, deadline: float) -> float | None:
        while True:
            if r_seek(1):
                t1 = clock()
                mine = ours(r_peek(0), seq)
                r_commit(1)
                if mine:
                    return t1
                continue
            if not idle(deadline):
                return None

    return send_packet, wait_packet


def _latency(args: argparse.Namespace, tx: Any, rx: Any, status: Status,
             stop: StopFlag) -> Result:
    if args.size < LAT_SEQ_OFF + 8:
        raise CliError(f"latency: -s must be at least {LAT_SEQ_OFF + 8} (the frame carries "
                       "a sequence number)", 2)
    send, wait = _latency_ops(args, tx, rx)
    frame = bytearray(udp_frame(args.size))
    clock = time.perf_counter
    total, seq, lost = args.pings + LAT_WARMUP, 0, 0
    rtts: list[float] = []
    first_deadline = clock() + args.wait
    t_start: float | None = None
    cpu0 = _cpu_times()
    now = clock()
    while seq < total and not stop:
        _SEQ.pack_into(frame, LAT_SEQ_OFF, seq)
        t0 = send(frame)
        if t0 is None:
            tx.reclaim()  # every TX frame in flight: take the completed ones back
            continue
        t1 = wait(seq, t0 + LAT_TIMEOUT_S)
        now = clock()
        if t1 is None:
            if t_start is not None:
                lost += 1
            elif now >= first_deadline:
                raise CliError(f"no echo came back on {rx.ifname} queue {rx.queue_id} within "
                               f"{args.wait:g} s (run `xdp-socket bench l2fwd` on the peer)")
            continue
        if t_start is None:
            t_start, cpu0 = now, _cpu_times()
        if seq >= LAT_WARMUP:
            rtts.append(t1 - t0)
        seq += 1
        if now - t_start >= args.duration:
            break
    seconds = now - t_start if t_start is not None else 0.0
    extra = {"cpu": _window_stats(cpu0, 0, 0)["cpu"]}
    extra.update({"poll": args.poll, "pings": len(rtts), "lost": lost, "warmup": LAT_WARMUP})
    if rtts:
        extra["rtt_us"] = {k: round(v, 3) for k, v in rtt_summary(rtts).items()}
        if args.json:
            extra["samples_us"] = [round(x * 1e6, 3) for x in rtts]
    return seq, seconds, extra


_LOOPS = {
    ("rxdrop", "batch"): _rxdrop_batch,
    ("rxdrop", "packet"): _rxdrop_packet,
    ("txonly", "batch"): _txonly_batch,
    ("txonly", "packet"): _txonly_packet,
    ("l2fwd", "batch"): _l2fwd_batch,
    ("l2fwd", "packet"): _l2fwd_packet,
    ("latency", "batch"): _latency,
    ("latency", "packet"): _latency,
}


if __name__ == "__main__":  # pragma: no cover
    from .main import main

    sys.exit(main(["bench", *sys.argv[1:]]))
