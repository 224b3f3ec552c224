"""``xdp-socket capture``: write what arrives on AF_XDP queues to a pcap/pcapng file.

An AF_XDP RX socket is bound to the queue (or, with several queues, -q 0-3
or --all-queues, one socket per RX queue, polled together by one process)
and the library's XDP program redirects that queue's packets to it.

With --workers each queue gets a process of its own (xdp_socket.workers,
pinned to a CPU each when there are enough): every worker writes its queue's
packets to a pcap file of its own, in a private directory next to the output
file, and at the end those files are merged into one pcap/pcapng file in
timestamp order and removed. The output therefore appears only when the
capture ends (also with -w -), and the disk must hold the capture twice for a
moment. -c counts packets over all queues; the file keeps the first COUNT by
timestamp.

Packets of queues without a socket still go to the kernel's network stack as
usual; packets on captured queues do NOT (this is a
capture *instead of* the stack, not a copy): a warning says so when the
interface has IP addresses or a default route (--no-stack-warning silences it).

Packets are taken from the RX ring in batches; each batch is copied out in
one step, its frames go straight back to the Fill ring, and its records are
written with one buffered write. Timestamps: AF_XDP in copy mode hands over
no receive time, so every packet is stamped with the wall clock (ns) at the
moment its batch was taken from the RX ring; packets taken together share
that timestamp, which is at or after their arrival (the pcapng interface
block says so in a comment).

Stops after -c packets, after -d seconds, or on Ctrl-C / SIGTERM; the file
is always complete (flushed and closed) and a summary is printed, including
what the kernel dropped: rx_dropped (no room: packet longer than a frame's
receive room, or the Fill ring was empty) and rx_ring_full (the RX ring was
full because we did not keep up). -w never writes through a symbolic link
and never over anything but a regular file ('-' is stdout).
"""

from __future__ import annotations

import argparse
import select
import sys
import time
from typing import IO, Any

from ._common import (
    EXIT_USAGE,
    CliError,
    Status,
    StopFlag,
    add_count,
    add_duration,
    add_interface,
    add_json,
    add_xdp_mode,
    check_queue,
    command_parser,
    human_rate,
    positive_int,
    print_json,
    resolve,
)

EPILOG = """examples:
  xdp-socket capture -i eth0 -w out.pcap                # queue 0 until Ctrl-C
  xdp-socket capture -i eth0 --all-queues -c 1000 -w out.pcapng --format pcapng
  xdp-socket capture -i eth0 -q 0-3 --workers -d 10 -w out.pcap  # a process per queue
  xdp-socket capture -i eth0 -q 3 -d 10 --snaplen 128 -w - | tcpdump -nr -
  xdp-socket capture -i eth0 -w dns.pcap udp port 53    # only DNS; the rest reaches the stack

With -w - the capture goes to stdout and status lines only to stderr. Exit
status: 0 when -c/-d ended the capture, 130 after Ctrl-C, 143 after SIGTERM
(the file is complete in every case), 1 on errors, 2 on bad arguments.
"""

# Packets per ring transaction, at most: the Python cost is per batch, and a
# batch takes what is there, never waiting for more. 1024 against 256: 2.10
# against 1.64 Mpps written from the live-frames generator (2026-12-02, medians
# of 3 runs each, interleaved; no kernel drops either way). The frames of a
# batch go back to the Fill ring before the file write.
BATCH = 1024
POLL_MS = 100  # short, so a stop signal is noticed promptly (poll restarts after EINTR)
MAX_SNAPLEN = 262144
DEFAULT_BUFFER_MIB = 64
MAX_BUFFER_MIB = 4096
ETH_OVERHEAD = 18  # Ethernet header and a VLAN tag on top of the MTU (veth drops longer)
OUT_BUFFER = 1 << 20  # records leave in large writes, not one per batch
FLUSH_EVERY_S = 0.2  # readers of a pipe still see packets promptly
TIMESTAMP_NOTE = ("timestamps: wall clock when the packet's batch was taken from the "
                  "AF_XDP RX ring (packets taken together share one; at or after arrival)")


def register(subparsers: Any) -> None:
    p = command_parser(subparsers, "capture", __doc__, EPILOG,
                       "capture packets from AF_XDP queues into a pcap/pcapng file")
    add_interface(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--queue", default="0", metavar="QUEUES",
                   help="queue id, or several: 0-3, 0,2 (default 0)")
    g.add_argument("--all-queues", action="store_true",
                   help="one socket per RX queue of the interface")
    p.add_argument("--workers", action="store_true",
                   help="several queues: a process per queue, each writing its own file, "
                        "merged by timestamp into -w at the end (see above)")
    p.add_argument("-w", "--write", required=True, metavar="FILE",
                   help="output file (a new or regular file; never through a symlink), "
                        "'-' for stdout")
    add_count(p)
    add_duration(p)
    p.add_argument("--snaplen", type=positive_int, default=MAX_SNAPLEN, metavar="N",
                   help=f"keep at most N bytes of each packet (default {MAX_SNAPLEN})")
    p.add_argument("--format", choices=("pcap", "pcapng"), default="pcap",
                   help="file format (default pcap, nanosecond timestamps taken per "
                        "batch, see above)")
    p.add_argument("-B", "--buffer", type=positive_int, default=DEFAULT_BUFFER_MIB,
                   metavar="MIB",
                   help=f"UMEM for received packets in MiB, shared by the queues' sockets "
                        f"(default {DEFAULT_BUFFER_MIB}, as tcpdump -B 65536): room for "
                        "bursts while the writer is busy")
    add_xdp_mode(p)
    add_json(p)
    p.add_argument("--quiet", action="store_true", help="no live status on stderr")
    p.add_argument("--no-stack-warning", action="store_true",
                   help="do not warn when the interface carries IP addresses or a default "
                        "route (whose traffic on the captured queues the capture takes)")
    p.add_argument("expression", nargs="*", metavar="EXPR",
                   help="capture only what matches this tcpdump filter (pcap-filter(7), "
                        "needs libpcap); other packets go to the kernel stack")
    p.set_defaults(func=run)


class _Totals:
    __slots__ = ("bytes", "packets")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0


def _rows(batch: Any, width: int) -> Any:
    """Bytes 0..width of every packet as one ``(n, width)`` copy."""
    try:
        return batch.gather(width)  # one numpy copy for the whole batch
    except ValueError:
        # Packets at different offsets in their frames, one near the end:
        # rare enough for a per-packet copy.
        import numpy as np

        rows = np.zeros((len(batch), width), np.uint8)
        for i, data in enumerate(batch.payloads()):
            rows[i, : min(len(data), width)] = np.frombuffer(data[:width], np.uint8)
        return rows


def _drain(rx: Any, writer: Any, totals: _Totals, limit: int | None, snaplen: int,
           multi_buffer: bool) -> int:
    """Take what is on ``rx``'s RX ring (at most ``limit`` packets) and write it,
    a batch at a time."""
    got = 0
    while True:
        want = BATCH if limit is None else min(BATCH, limit - got)
        if want <= 0:
            return got
        batch = rx.receive(want)
        if len(batch) == 0:
            return got
        n, nbytes = _write_batch(batch, writer, snaplen, multi_buffer,
                                 None if limit is None else limit - got)
        got += n
        totals.packets += n
        totals.bytes += nbytes


def _write_batch(batch: Any, writer: Any, snaplen: int, multi_buffer: bool = False,
                 max_packets: int | None = None) -> tuple[int, int]:
    """Write the non-empty ``batch`` (stamped now), releasing its frames to
    the Fill ring before the file write; returns its packets and their bytes
    on the wire. With multi-buffer a batch of descriptors may hold fewer
    packets; those beyond ``max_packets`` are dropped (-c stays exact)."""
    import numpy as np

    if multi_buffer and not bool(batch.ends.all()):
        # Some packet spans several descriptors (a jumbo frame): joined per
        # packet, which is slow but only for captures that carry them.
        ts = time.time_ns()
        packets = batch.payloads()
        batch.release()
        if max_packets is not None:
            packets = packets[:max_packets]
        for p in packets:
            writer.write(p, ts)  # (cut to the snaplen there, orig_len kept)
        return len(packets), sum(len(p) for p in packets)
    ts = time.time_ns()
    wire = np.array(batch.lens, dtype=np.uint32)  # a copy: the ring slots get reused
    longest = int(wire.max())
    width = min(longest, snaplen)
    rows = _rows(batch, width)
    # Frames back to the Fill ring before the (slower) file write.
    batch.release()
    writer.write_batch(rows, wire if width == longest else np.minimum(wire, width), ts,
                       wire)
    return len(wire), int(wire.sum())


def _warn_stack(name: str, index: int) -> None:
    from ..iface import stack_use

    use = stack_use(index)
    if not use:
        return
    what = []
    if use.addresses:
        what.append("addresses " + ", ".join(use.addresses))
    if use.default_route:
        what.append("a default route")
    print(f"xdp-socket capture: warning: {name} carries {' and '.join(what)}; packets on "
          "the captured queue(s) go to the capture instead of the kernel stack, so "
          "connections over it may stall (--no-stack-warning to silence)",
          file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.snaplen > MAX_SNAPLEN:
        raise CliError(f"--snaplen must be at most {MAX_SNAPLEN}", EXIT_USAGE)
    if args.buffer > MAX_BUFFER_MIB:
        raise CliError(f"--buffer must be at most {MAX_BUFFER_MIB} MiB", EXIT_USAGE)
    name, index = resolve(args.interface)
    queues = _queues(args, name, index)
    if not args.no_stack_warning:
        _warn_stack(name, index)


    to_stdout = args.write == "-"
    report: IO[str] = sys.stderr if to_stdout else sys.stdout
    # The buffer is split between the queues' sockets; each gets a power of two
    # of frames, all of them on its Fill ring, and an RX ring as large (bursts
    # arrive while the writer is busy: tcpdump's -B for the same reason).
    # Half-size frames hold twice the packets when the MTU lets them (copy mode
    # leaves frame_size - 256 bytes of receive room).
    from .. import XdpConfig, create_rx_socket
    from ..iface import link_facts

    mtu = link_facts(index).mtu
    frame_size = 2048 if mtu + ETH_OVERHEAD <= XdpConfig(frame_size=2048).rx_room else 4096
    # Packets longer than a frame's receive room (a jumbo MTU) arrive as
    # descriptor chains on a multi-buffer socket (XDP_USE_SG), else the kernel
    # drops them: turned on by the MTU, as nothing else tells in advance.
    multi_buffer = mtu + ETH_OVERHEAD > XdpConfig(frame_size=frame_size).rx_room
    per_queue = args.buffer * (1 << 20) // frame_size // len(queues)
    frames = 1 << max(6, per_queue.bit_length() - 1)
    cfg = XdpConfig(xdp_mode=args.xdp_mode, frame_size=frame_size, frame_count=frames,
                    rx_size=frames, fill_size=frames, multi_buffer=multi_buffer,
                    filter=" ".join(args.expression) or None)
    if args.workers:
        return _capture_workers(args, name, queues, cfg, report)
    sockets: list[Any] = []
    writer: Any = None
    out_file: IO[bytes] | None = None
    status = Status(enabled=not args.quiet)
    stop = StopFlag()
    stopped_by: str | None = None
    totals = _Totals()
    start = time.monotonic()
    try:
        for q in queues:
            sockets.append(create_rx_socket(name, q, cfg))
        out: Any = args.write
        if to_stdout:
            # Our own large buffer on fd 1 (left open): stdout's is 8 KiB.
            out = out_file = open(sys.stdout.fileno(), "wb",  # noqa: SIM115
                                  buffering=OUT_BUFFER, closefd=False)
        writer = _open_writer(args, name, out)
        by_fd = {rx.fileno(): rx for rx in sockets}
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        with stop.installed():
            start = time.monotonic()
            deadline = None if args.duration is None else start + args.duration
            last_flush = start
            shown_at, shown_packets = start, 0
            while not stop:
                left = None if args.count is None else args.count - totals.packets
                if left is not None and left <= 0:
                    stopped_by = "count"
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    stopped_by = "duration"
                    break
                timeout = POLL_MS if deadline is None else min(
                    POLL_MS, max(0, int((deadline - now) * 1000) + 1))
                for rx in sockets:
                    rx.kick()  # the Fill ring may ask for a wakeup (drivers that set it)
                ready = poller.poll(timeout)
                for fd, ev in ready:
                    if ev & (select.POLLERR | select.POLLNVAL | select.POLLHUP):
                        # Let the socket raise its XdpError with step and queue.
                        by_fd[fd].poll_wait(0)
                    left = None if args.count is None else args.count - totals.packets
                    _drain(by_fd[fd], writer, totals, left, args.snaplen, cfg.multi_buffer)
                now = time.monotonic()
                if not ready or now - last_flush > FLUSH_EVERY_S:
                    writer.flush()
                    last_flush = now
                if status.due():
                    # The rate since the last line, not the average since the start
                    # (which keeps falling after traffic stops).
                    rate = (totals.packets - shown_packets) / max(now - shown_at, 1e-9)
                    shown_at, shown_packets = now, totals.packets
                    status.update(f"{totals.packets} packets, {totals.bytes} bytes, now "
                                  f"{human_rate(rate)}, {now - start:.1f} s")
        elapsed = time.monotonic() - start
        written = writer.packets_written
        writer.close()
        writer = None
        if out_file is not None:
            out_file.close()
            out_file = None
        stats = _sum_stats(sockets)
    finally:
        if writer is not None:
            writer.close()
        if out_file is not None:
            out_file.close()
        for rx in sockets:
            rx.close()
        status.finish()

    summary = {
        "interface": name,
        "queues": queues,
        "file": args.write,
        "format": args.format,
        "received": totals.packets,
        "written": written,
        "bytes": totals.bytes,
        "seconds": round(elapsed, 6),
        "kernel": stats,
        "stopped_by": _stop_reason(stop) or stopped_by,
    }
    if args.json:
        print_json(summary, report)
    else:
        report.write(
            f"{totals.packets} packets received, {written} written to {args.write} "
            f"in {elapsed:.2f} s ({human_rate(totals.packets / max(elapsed, 1e-9))})\n"
            f"kernel: rx_dropped {stats['rx_dropped']}, rx_ring_full {stats['rx_ring_full']}, "
            f"rx_fill_ring_empty_descs {stats['rx_fill_ring_empty_descs']}, "
            f"rx_invalid_descs {stats['rx_invalid_descs']}\n")
        report.flush()
    return stop.exit_code


def _queues(args: argparse.Namespace, name: str, index: int) -> list[int]:
    """The queues to capture, from -q (one id or a list) or --all-queues."""
    from ..iface import queue_counts
    from ..workers import parse_queues

    spec = str(args.queue)
    if args.all_queues:
        return list(range(queue_counts(index)[0]))
    if spec.isascii() and spec.isdigit():
        check_queue(name, index, int(spec), "rx")  # (its message names the counts)
        return [int(spec)]
    try:
        return parse_queues(spec, queue_counts(index)[0])
    except ValueError as e:
        raise CliError(f"-q {spec}: {e}", EXIT_USAGE) from None


def _open_writer(args: argparse.Namespace, name: str, out: Any) -> Any:
    from ..pcap import PcapngWriter, PcapWriter

    if args.format == "pcapng":
        return PcapngWriter(out, snaplen=args.snaplen, if_name=name,
                            if_comment=TIMESTAMP_NOTE)
    return PcapWriter(out, snaplen=args.snaplen)


def _capture_workers(args: argparse.Namespace, name: str, queues: list[int], cfg: Any,
                     report: IO[str]) -> int:
    """--workers: one process per queue (xdp_socket.workers), each writing its
    packets to a pcap of its own in a private directory next to -w; at the
    end the files are merged into -w in timestamp order (a stable merge: equal
    stamps keep queue order) and removed. -c counts packets over every
    queue (each worker publishes its count in shared memory; the workers stop
    once the sum reaches it) and the file gets the first COUNT by timestamp."""
    import heapq
    import mmap
    import os
    import shutil
    import tempfile

    from ..pcap import PcapWriter, read_capture
    from ..workers import WorkerError, Workers

    to_stdout = args.write == "-"
    if not to_stdout:
        # Fail before any worker starts when -w cannot be written (a symlink,
        # a directory ...): the same checks as the file itself gets below.
        _open_writer(args, name, args.write).close()
    where = None if to_stdout else os.path.dirname(os.path.abspath(args.write))
    tmp = tempfile.mkdtemp(prefix=".xdp-socket-capture-", dir=where)
    # One 8-byte slot per worker (each writes only its own: aligned stores,
    # no lock); the parent and every worker read the sum.
    shared = mmap.mmap(-1, 8 * len(queues))
    counts = memoryview(shared).cast("q")
    slot = {q: i for i, q in enumerate(queues)}
    mine: list[Any] = []  # in a worker: its writer
    limit = args.count
    snaplen = args.snaplen
    multi_buffer = cfg.multi_buffer

    def handler(batch: Any, ctx: Any) -> None:
        if not mine:
            mine.append(PcapWriter(os.path.join(tmp, f"q{ctx.queue_id}.pcap"),
                                   snaplen=snaplen))
        n, _ = _write_batch(batch, mine[0], snaplen, multi_buffer)
        counts[slot[ctx.queue_id]] += n
        if limit is not None and sum(counts) >= limit:
            ctx.stop()

    def on_stop(ctx: Any) -> None:
        if mine:
            mine.pop().close()

    status = Status(enabled=not args.quiet)
    stop = StopFlag()
    stopped_by: str | None = None
    # Pin only when every worker gets a CPU of its own (as bench does).
    cpus = "auto" if len(queues) <= len(os.sched_getaffinity(0)) else None
    w = Workers(name, handler, queues, config=cfg, batch=BATCH, cpus=cpus, on_stop=on_stop,
                count_bytes=True)
    try:
        with stop.installed():
            w.start()
            start = time.monotonic()
            deadline = None if args.duration is None else start + args.duration
            while not stop:
                if limit is not None and sum(counts) >= limit:
                    stopped_by = "count"
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    stopped_by = "duration"
                    break
                if w.wait(0.1):  # every worker done, or one failed
                    break
                if status.due():
                    status.update(f"{sum(counts)} packets, {now - start:.1f} s")
            elapsed = time.monotonic() - start
            if stopped_by is None and limit is not None and sum(counts) >= limit:
                stopped_by = "count"  # the workers stopped themselves there
            try:
                stats = w.join()
            except WorkerError as e:
                raise CliError(str(e)) from None
        status.finish()
        # Merge (each queue's file is in time order: its batches were stamped
        # as they were taken).
        paths = [os.path.join(tmp, f"q{q}.pcap") for q in queues]
        sources = [read_capture(p) for p in paths if os.path.exists(p)]
        out_file: IO[bytes] | None = None
        out: Any = args.write
        if to_stdout:
            out = out_file = open(sys.stdout.fileno(), "wb",  # noqa: SIM115
                                  buffering=OUT_BUFFER, closefd=False)
        try:
            with _open_writer(args, name, out) as writer:
                merged = heapq.merge(*sources, key=lambda p: p.timestamp_ns)
                for pkt in merged:
                    if limit is not None and writer.packets_written >= limit:
                        break
                    writer.write(pkt.data, pkt.timestamp_ns, pkt.orig_len)
                written = writer.packets_written
        finally:
            if out_file is not None:
                out_file.close()
    finally:
        status.finish()
        shutil.rmtree(tmp, ignore_errors=True)
        counts.release()
        shared.close()

    fields = ("rx_dropped", "rx_ring_full", "rx_fill_ring_empty_descs", "rx_invalid_descs")
    kernel = {f: sum(getattr(q.kernel, f) for q in stats.queues if q.kernel) for f in fields}
    received = stats.packets
    summary = {
        "interface": name,
        "queues": queues,
        "file": args.write,
        "format": args.format,
        "received": received,
        "written": written,
        "bytes": stats.bytes,
        "seconds": round(elapsed, 6),
        "kernel": kernel,
        "stopped_by": _stop_reason(stop) or stopped_by,
        "workers": [{"queue": q.queue_id, "packets": q.packets, "cpu": q.cpu,
                     "kernel": q.kernel._asdict() if q.kernel else None}
                    for q in stats.queues],
    }
    if args.json:
        print_json(summary, report)
    else:
        per = ", ".join(f"queue {q.queue_id}: {q.packets}" for q in stats.queues)
        report.write(
            f"{received} packets received ({per}), {written} written to {args.write} "
            f"in {elapsed:.2f} s ({human_rate(received / max(elapsed, 1e-9))})\n"
            f"kernel: rx_dropped {kernel['rx_dropped']}, rx_ring_full {kernel['rx_ring_full']}, "
            f"rx_fill_ring_empty_descs {kernel['rx_fill_ring_empty_descs']}, "
            f"rx_invalid_descs {kernel['rx_invalid_descs']}\n")
        report.flush()
    return stop.exit_code


def _stop_reason(stop: StopFlag) -> str | None:
    import signal

    if stop.signum is None:
        return None
    return signal.Signals(stop.signum).name


def _sum_stats(sockets: list[Any]) -> dict[str, int]:
    fields = ("rx_dropped", "rx_ring_full", "rx_fill_ring_empty_descs", "rx_invalid_descs")
    total = dict.fromkeys(fields, 0)
    for rx in sockets:
        st = rx.statistics()
        for f in fields:
            total[f] += getattr(st, f)
    return total
