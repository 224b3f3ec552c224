"""``xdp-socket capture``: write what arrives on AF_XDP queues to a pcap/pcapng file.

An AF_XDP RX socket is bound to the queue (or, with --all-queues, one socket
per RX queue, polled together) and the library's XDP program redirects that
queue's packets to it. Each packet is stamped with the wall clock at receipt
(nanoseconds) and written out. Packets of queues without a socket still go
to the kernel's network stack as usual; packets on captured queues do NOT
(this is a capture *instead of* the stack, not a copy).

Stops after -c packets, after -d seconds, or on Ctrl-C / SIGTERM; the file
is always complete (flushed and closed) and a summary is printed, including
what the kernel dropped: rx_dropped (no room: packet longer than a frame's
receive room, or the Fill ring was empty) and rx_ring_full (the RX ring was
full because we did not keep up).
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
    add_queue,
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
  xdp-socket capture -i eth0 -q 3 -d 10 --snaplen 128 -w - | tcpdump -nr -
  xdp-socket capture -i eth0 -w dns.pcap udp port 53    # only DNS; the rest reaches the stack

With -w - the capture goes to stdout and status lines only to stderr. Exit
status: 0 when -c/-d ended the capture, 130 after Ctrl-C, 143 after SIGTERM
(the file is complete in every case), 1 on errors, 2 on bad arguments.
"""

BATCH = 64
POLL_MS = 100  # short, so a stop signal is noticed promptly (poll restarts after EINTR)
MAX_SNAPLEN = 262144


def register(subparsers: Any) -> None:
    p = command_parser(subparsers, "capture", __doc__, EPILOG,
                       "capture packets from AF_XDP queues into a pcap/pcapng file")
    add_interface(p)
    g = p.add_mutually_exclusive_group()
    add_queue(g)
    g.add_argument("--all-queues", action="store_true",
                   help="one socket per RX queue of the interface")
    p.add_argument("-w", "--write", required=True, metavar="FILE",
                   help="output file, '-' for stdout")
    add_count(p)
    add_duration(p)
    p.add_argument("--snaplen", type=positive_int, default=MAX_SNAPLEN, metavar="N",
                   help=f"keep at most N bytes of each packet (default {MAX_SNAPLEN})")
    p.add_argument("--format", choices=("pcap", "pcapng"), default="pcap",
                   help="file format (default pcap, nanosecond timestamps)")
    add_xdp_mode(p)
    add_json(p)
    p.add_argument("--quiet", action="store_true", help="no live status on stderr")
    p.add_argument("expression", nargs="*", metavar="EXPR",
                   help="capture only what matches this tcpdump filter (pcap-filter(7), "
                        "needs libpcap); other packets go to the kernel stack")
    p.set_defaults(func=run)


class _Totals:
    __slots__ = ("bytes", "packets")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0


def _drain(rx: Any, writer: Any, totals: _Totals, limit: int | None) -> int:
    """Take what is on ``rx``'s RX ring (at most ``limit`` packets) and write it."""
    got = 0
    while True:
        want = BATCH if limit is None else min(BATCH, limit - got)
        if want <= 0:
            return got
        n = rx.seek_n(want)
        if n == 0:
            return got
        ts = time.time_ns()
        for i in range(n):
            view = rx.peek_at(i)
            totals.bytes += len(view)
            writer.write(view, ts)
        # Give the frames back only after they were written: the views alias them.
        rx.commit_n(n)
        rx.kick()
        got += n
        totals.packets += n


def run(args: argparse.Namespace) -> int:
    if args.snaplen > MAX_SNAPLEN:
        raise CliError(f"--snaplen must be at most {MAX_SNAPLEN}", EXIT_USAGE)
    name, index = resolve(args.interface)
    if args.all_queues:
        from ..iface import queue_counts

        queues = list(range(queue_counts(index)[0]))
    else:
        check_queue(name, index, args.queue, "rx")
        queues = [args.queue]

    from .. import XdpConfig, create_rx_socket
    from ..pcap import PcapngWriter, PcapWriter

    to_stdout = args.write == "-"
    report: IO[str] = sys.stderr if to_stdout else sys.stdout
    # Several sockets share the work (and the memory): smaller UMEMs each.
    cfg = XdpConfig(xdp_mode=args.xdp_mode,
                    frame_count=4096 if len(queues) == 1 else 2048,
                    filter=" ".join(args.expression) or None)
    sockets: list[Any] = []
    writer: Any = None
    status = Status(enabled=not args.quiet)
    stop = StopFlag()
    totals = _Totals()
    start = time.monotonic()
    try:
        for q in queues:
            sockets.append(create_rx_socket(name, q, cfg))
        out: Any = sys.stdout.buffer if to_stdout else args.write
        if args.format == "pcapng":
            writer = PcapngWriter(out, snaplen=args.snaplen, if_name=name)
        else:
            writer = PcapWriter(out, snaplen=args.snaplen)
        by_fd = {rx.fileno(): rx for rx in sockets}
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        with stop.installed():
            start = time.monotonic()
            deadline = None if args.duration is None else start + args.duration
            last_flush = start
            while not stop:
                left = None if args.count is None else args.count - totals.packets
                if left is not None and left <= 0:
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
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
                    _drain(by_fd[fd], writer, totals, left)
                now = time.monotonic()
                if not ready or now - last_flush > 0.2:
                    writer.flush()  # readers of a pipe see packets promptly
                    last_flush = now
                if status.due():
                    el = max(now - start, 1e-9)
                    status.update(f"{totals.packets} packets, {totals.bytes} bytes, "
                                  f"{human_rate(totals.packets / el)}, {el:.1f} s")
        elapsed = time.monotonic() - start
        written = writer.packets_written
        writer.close()
        writer = None
        stats = _sum_stats(sockets)
    finally:
        if writer is not None:
            writer.close()
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
        "stopped_by": _stop_reason(stop),
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
