"""``xdp-socket replay``: send the packets of a pcap/pcapng file through AF_XDP.

The file is read as a stream (it may be larger than memory, or '-' for
stdin) and every packet is sent as-is through an AF_XDP TX socket on the
given queue. Pacing:

* default: the capture's own timing (gaps between timestamps);
* --pps RATE: RATE packets per second;
* --mbps RATE: RATE megabits per second of frame bytes (Ethernet header to
  end of payload, without preamble, FCS or inter-frame gap);
* --topspeed: as fast as the socket takes them.

Every packet has a due time on one absolute schedule counted from the start,
so errors never accumulate: the sender sleeps when it is more than ~1 ms
ahead and busy-waits only the last stretch; when it falls behind it sends at
once until it has caught up. Packets longer than a UMEM frame are skipped
and counted (never cut); a capture whose link type is not Ethernet is refused.
At the end the command waits until the kernel has completed every frame.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._common import (
    EXIT_USAGE,
    CliError,
    Status,
    StopFlag,
    add_interface,
    add_json,
    add_queue,
    check_queue,
    command_parser,
    human_rate,
    positive_float,
    positive_int,
    print_json,
    resolve,
)

EPILOG = """examples:
  xdp-socket replay capture.pcap -i eth0                # with the capture's timing
  xdp-socket replay capture.pcapng -i eth0 --pps 2000 --loop 5
  xdp-socket replay big.pcap -i eth0 -q 2 --topspeed
  tcpdump -w - -c 100 | xdp-socket replay - -i veth0 --mbps 10

Exit status: 0 when everything was sent, 130 after Ctrl-C, 143 after
SIGTERM, 1 on errors (unreadable or malformed file, kernel errors), 2 on bad
arguments.
"""

SLEEP_AHEAD_S = 0.001  # sleep when the next packet is due more than this far ahead
SLEEP_MARGIN_S = 0.0002  # wake this early and busy-wait the rest (sleep overshoots)
BATCH = 64  # frames per ring transaction at top speed or when catching up
FLUSH_TIMEOUT_S = 5.0


def register(subparsers: Any) -> None:
    p = command_parser(subparsers, "replay", __doc__, EPILOG,
                       "send the packets of a pcap/pcapng file through AF_XDP, paced")
    p.add_argument("file", metavar="FILE", help="pcap or pcapng file, '-' for stdin")
    add_interface(p)
    add_queue(p)
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--pps", type=positive_float, metavar="RATE",
                      help="packets per second")
    rate.add_argument("--mbps", type=positive_float, metavar="RATE",
                      help="megabits per second of frame bytes")
    rate.add_argument("--topspeed", action="store_true", help="no pacing")
    p.add_argument("--loop", type=positive_int, default=1, metavar="N",
                   help="send the file N times (default 1)")
    p.add_argument("--frame-size", type=int, choices=(2048, 4096), default=4096,
                   help="UMEM frame size: the longest packet that can be sent (default 4096)")
    add_json(p)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


class _Progress:
    """Counts and the progress line (packets, rate, ETA when the size is known)."""

    def __init__(self, status: Status, total_bytes: int | None, loops: int) -> None:
        self.status = status
        self.total = None if total_bytes is None else total_bytes * loops
        self.sender: _Sender | None = None
        self.skipped = 0
        self.truncated = 0
        self.start = time.monotonic()
        self.file_done = 0  # file bytes of loops already finished

    def show(self, position: Callable[[], int], force: bool = False) -> None:
        if not (force or self.status.due()):
            return
        el = max(time.monotonic() - self.start, 1e-9)
        sent = self.sender.sent if self.sender is not None else 0
        text = f"{sent} sent, {self.skipped} skipped, {human_rate(sent / el)}"
        done = position()
        if self.total and done > 0:
            pct = min(100.0, 100.0 * done / self.total)
            eta = el * (self.total - done) / done
            text += f", {pct:5.1f}%, ETA {eta:.0f} s"
        self.status.update(text, force=force)


def _open(path: str) -> tuple[Any, int | None]:
    """The binary input and its size (``None`` when not a regular file)."""
    if path == "-":
        return sys.stdin.buffer, None
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    st = os.fstat(f.fileno())
    return f, (st.st_size if stat.S_ISREG(st.st_mode) else None)


def _packets(f: Any) -> Iterator[tuple[int, bytes, int]]:
    """``(timestamp_ns, data, orig_len)`` of every packet; refuses non-Ethernet."""
    from ..pcap import LINKTYPE_ETHERNET, open_capture

    reader = open_capture(f)
    if reader.linktype is not None and reader.linktype != LINKTYPE_ETHERNET:
        raise CliError(f"capture link type is {reader.linktype}, not Ethernet "
                       f"({LINKTYPE_ETHERNET}): AF_XDP sends Ethernet frames only")
    for pkt in reader:
        lt = reader.interfaces[pkt.interface].linktype
        if lt != LINKTYPE_ETHERNET:
            raise CliError(f"packet on capture interface {pkt.interface} has link type "
                           f"{lt}, not Ethernet ({LINKTYPE_ETHERNET})")
        yield pkt.timestamp_ns, pkt.data, pkt.orig_len


class _Sender:
    """Puts frames on the TX ring, several per ring transaction when it can."""

    def __init__(self, tx: Any, stop: StopFlag) -> None:
        self.tx = tx
        self.stop = stop
        self.sent = 0
        self.bytes = 0

    def send(self, frames: list[bytes]) -> None:
        tx = self.tx
        i = 0
        while i < len(frames):
            n = tx.seek_n(len(frames) - i)
            if n == 0:
                # Every frame is in flight: the kernel frees them as it sends,
                # in copy mode only while kicked or polled (poll_wait does both).
                while not tx.poll_wait(0.1):
                    if self.stop:
                        return
                continue
            for k in range(n):
                data = frames[i + k]
                tx.peek_at(k, len(data))[:] = data
                self.bytes += len(data)
            tx.commit_and_kick(n)
            i += n
            self.sent += n
        frames.clear()


def run(args: argparse.Namespace) -> int:
    if args.file == "-" and args.loop > 1:
        raise CliError("--loop needs a file: stdin can be read only once", EXIT_USAGE)
    name, index = resolve(args.interface)
    check_queue(name, index, args.queue, "tx")
    f, size = _open(args.file)
    try:
        # Read the header before creating the socket: a bad file fails fast.
        first = _packets(f)
        head = next(first, None)
        return _replay(args, name, f, size, head, first)
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def _replay(args: argparse.Namespace, name: str, f: Any, size: int | None,
            head: tuple[int, bytes, int] | None,
            first: Iterator[tuple[int, bytes, int]]) -> int:
    from .. import XdpConfig, create_tx_socket

    cfg = XdpConfig(frame_size=args.frame_size)
    frame_size = cfg.frame_size
    paced = not args.topspeed
    capture_timing = paced and args.pps is None and args.mbps is None
    status = Status(enabled=not args.quiet)
    stop = StopFlag()
    prog = _Progress(status, size, args.loop)
    position = (lambda: prog.file_done + f.tell()) if size is not None else (lambda: 0)
    try:
        with create_tx_socket(name, args.queue, cfg) as tx, stop.installed():
            sender = _Sender(tx, stop)
            prog.sender = sender
            t0 = time.monotonic()
            prog.start = t0
            due = 0.0  # seconds after t0 at which the next packet is due
            loop_offset = 0.0  # capture timing: when this loop's first packet is due
            pending: list[bytes] = []
            for loop_i in range(args.loop):
                if loop_i == 0:
                    stream: Iterator[tuple[int, bytes, int]] = itertools.chain(
                        [head] if head is not None else [], first)
                else:
                    prog.file_done += size or 0
                    f.seek(0)
                    stream = _packets(f)
                first_ts: int | None = None
                last_rel = 0.0
                n_loop = 0
                for ts, data, orig_len in stream:
                    if stop:
                        break
                    if not 0 < len(data) <= frame_size:
                        prog.skipped += 1
                        continue
                    if len(data) < orig_len:
                        prog.truncated += 1
                    behind = True
                    if paced:
                        if capture_timing:
                            if first_ts is None:
                                first_ts = ts
                            # max(): out-of-order timestamps are sent at once.
                            last_rel = max(last_rel, (ts - first_ts) / 1e9)
                            due = loop_offset + last_rel
                        target = t0 + due
                        if target > time.monotonic():
                            behind = False
                            if pending:
                                sender.send(pending)
                            _wait_until(target, stop)
                        if args.pps is not None:
                            due += 1.0 / args.pps
                        elif args.mbps is not None:
                            due += len(data) * 8 / (args.mbps * 1e6)
                    pending.append(data)
                    n_loop += 1
                    # On schedule: send now. Behind schedule (or at top speed):
                    # collect up to a batch, one kick for many frames.
                    if not behind or len(pending) >= BATCH:
                        sender.send(pending)
                    prog.show(position)
                if pending and not stop:
                    sender.send(pending)
                if stop:
                    break
                if capture_timing:
                    # The next round follows one mean packet gap after this one's last.
                    gap = last_rel / (n_loop - 1) if n_loop > 1 else 0.0
                    loop_offset = due + gap
            prog.show(position, force=True)
            flushed = tx.flush(FLUSH_TIMEOUT_S)
            stats = tx.statistics()
            elapsed = time.monotonic() - t0
    finally:
        status.finish()
    summary = {
        "interface": name,
        "queue": args.queue,
        "file": args.file,
        "sent": sender.sent,
        "bytes": sender.bytes,
        "skipped_too_long": prog.skipped,
        "truncated_in_capture": prog.truncated,
        "seconds": round(elapsed, 6),
        "flushed": flushed,
        "tx_invalid_descs": stats.tx_invalid_descs,
        "stopped_by": None if stop.signum is None else signal.Signals(stop.signum).name,
    }
    if args.json:
        print_json(summary)
    else:
        print(f"{sender.sent} packets ({sender.bytes} bytes) sent on {name} queue "
              f"{args.queue} in {elapsed:.2f} s ({human_rate(sender.sent / max(elapsed, 1e-9))})")
        if prog.skipped:
            hint = " (try --frame-size 4096)" if frame_size < 4096 else ""
            print(f"{prog.skipped} packets skipped: empty or longer than the "
                  f"{frame_size}-byte UMEM frame{hint}")
        if prog.truncated:
            print(f"{prog.truncated} packets were cut by the capture's snaplen; "
                  "sent as captured")
        sys.stdout.flush()
    if not flushed:
        print(f"xdp-socket replay: the kernel had not completed every frame after "
              f"{FLUSH_TIMEOUT_S:g} s", file=sys.stderr)
    if stop:
        return stop.exit_code
    return 0 if flushed else 1


def _wait_until(target: float, stop: StopFlag) -> None:
    """Sleep while ``target`` is more than SLEEP_AHEAD_S away (in slices, so a
    stop signal is noticed), then busy-wait the rest: sleep overshoots by tens
    of microseconds or more, spinning does not."""
    while True:
        wait = target - time.monotonic()
        if wait <= SLEEP_AHEAD_S or stop:
            break
        time.sleep(min(wait - SLEEP_MARGIN_S, 0.1))
    while time.monotonic() < target and not stop:
        pass
