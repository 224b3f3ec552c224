"""``xdp-socket replay``: send the packets of a pcap/pcapng file through AF_XDP.

The file is read as a stream (it may be larger than memory, or '-' for
stdin) and every packet is sent as-is through an AF_XDP TX socket on the
given queue. Pacing:

* default: the capture's own timing (gaps between timestamps);
* --pps RATE: RATE packets per second;
* --mbps RATE: RATE megabits per second of frame bytes (Ethernet header to
  end of payload, without preamble, FCS or inter-frame gap);
* --topspeed: as fast as the socket takes them.

The file is read in large chunks and handled in batches: record headers of
many packets are decoded at once, and each batch is copied into reserved TX
frames and submitted in one step (``TxBatch.submit_array``: with the
compiled accelerator, kicked 256 frames at a time as they are copied).
Every packet has a due time on one absolute schedule counted from the
start, so errors never accumulate: everything due (or due within 50 us)
goes out in one transaction; the sender sleeps
when the next packet is more than ~1 ms ahead and busy-waits only the last
stretch; when it falls behind it sends at once until it has caught up.
Packets longer than a UMEM frame are skipped and counted (never cut); a
capture whose link type is not Ethernet is refused.
At the end the command waits until the kernel has completed every frame.
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
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
# Packets due within this much of now go out in the same transaction: at high
# rates one kick carries several packets instead of one (a kick costs more
# than the gap between packets); no packet leaves more than this early.
GATHER_AHEAD_S = 0.00005
# Packets per read batch and at most per ring transaction (and per kick, see
# _tx_socket): the Python work is per batch, and each batch runs with caches
# the kernel's sending has just emptied. 1024 cost about a third of the
# user-space instructions per frame that 256 did (callgrind, 200k frames);
# 2048, the default TX ring's size, took user time per 1M frames from 0.49 s
# to 0.40 s (+6% --topspeed); 4096 (with rings and UMEM doubled) gained
# nothing more: its frames span twice the memory.
BATCH = 2048
FLUSH_TIMEOUT_S = 5.0
ETH_OVERHEAD = 18  # Ethernet header and a VLAN tag on top of the MTU (veth drops longer)


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


def _reader(f: Any) -> Any:
    """Open the capture (its header is checked now: a bad file fails before
    any socket exists); refuses a non-Ethernet pcap at once."""
    from ..pcap import LINKTYPE_ETHERNET, open_capture

    reader = open_capture(f)
    if reader.linktype is not None and reader.linktype != LINKTYPE_ETHERNET:
        raise CliError(f"capture link type is {reader.linktype}, not Ethernet "
                       f"({LINKTYPE_ETHERNET}): AF_XDP sends Ethernet frames only")
    return reader


def _check_linktypes(reader: Any, interfaces: Any) -> None:
    import numpy as np

    from ..pcap import LINKTYPE_ETHERNET

    if reader.format == "pcap" or not len(interfaces):
        return  # one interface, checked with the header
    lo, hi = int(interfaces.min()), int(interfaces.max())
    # (a batch from a pcapng file is usually all one interface: two numpy
    # reductions, not a Python set over every packet)
    for i in (lo,) if lo == hi else np.unique(interfaces).tolist():
        lt = reader.interfaces[i].linktype
        if lt != LINKTYPE_ETHERNET:
            raise CliError(f"packet on capture interface {i} has link type "
                           f"{lt}, not Ethernet ({LINKTYPE_ETHERNET})")


class _Sender:
    """Copies rows of packets into reserved TX frames, one ring transaction
    (reserve, one copy of the batch's rows, submit and kick) per batch."""

    def __init__(self, tx: Any, stop: StopFlag, chain_above: int | None) -> None:
        self.tx = tx
        self.stop = stop
        self.chain_above = chain_above  # multi-buffer: longer packets go as chains
        self.sent = 0
        self.bytes = 0

    def send(self, data: Any, lens: Any, same: int | None = None) -> int:
        """Send rows of ``data`` (lengths ``lens``; ``same``: their one
        length, if they all have it) from the first on, as many as the TX ring
        takes now; returns how many (0 only after waiting up to 0.1 s for a
        free frame, or when stopped)."""
        tx = self.tx
        if self.chain_above is not None:
            longest = int(lens.max()) if same is None else same
            if longest > self.chain_above:
                return self._send_each(data, lens)
            data = data[:, :longest]  # (the rows are as wide as the file batch's longest)
        batch = tx.reserve(len(lens))
        k = len(batch)
        if k == 0:
            # Every frame is in flight: the kernel frees them as it sends,
            # in copy mode only while kicked or polled (poll_wait does both).
            tx.poll_wait(0.1)
            return 0
        # (one step: the copy interleaved with the kicks, see submit_array)
        if same is None:
            batch.submit_array(data[:k], lens[:k])
            self.bytes += int(lens[:k].sum())
        else:
            batch.submit_array(data[:k], same)
            self.bytes += k * same
        self.sent += k
        return k

    def _send_each(self, data: Any, lens: Any) -> int:
        """Rows sent one by one (``send`` makes a descriptor chain of a packet
        longer than a frame): the slow path, for batches with jumbo frames."""
        tx = self.tx
        k = 0
        for row, n in zip(data, lens.tolist(), strict=False):
            if not tx.send(memoryview(row[:n])):
                break
            k += 1
            self.bytes += n
        if k == 0:
            tx.poll_wait(0.1)  # every frame in flight (see send)
        self.sent += k
        return k


class _Schedule:
    """Due times (seconds after the start) on one absolute schedule, computed
    a batch at a time, so rounding never accumulates."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.pps: float | None = args.pps
        self.bits_per_s = None if args.mbps is None else args.mbps * 1e6
        self.capture_timing = not args.topspeed and args.pps is None and args.mbps is None
        self.topspeed = bool(args.topspeed)
        self.index = 0  # packets scheduled so far (--pps)
        self.bits = 0  # frame bits scheduled so far (--mbps)
        self.first_ts: int | None = None  # capture timing, per loop
        self.last_rel_ns = 0
        self.loop_offset = 0.0
        self.last_due = 0.0
        self.loop_packets = 0

    def new_loop(self) -> None:
        if self.capture_timing and self.first_ts is not None:
            # The next round follows one mean packet gap after this one's last.
            n = self.loop_packets
            gap = self.last_rel_ns / 1e9 / (n - 1) if n > 1 else 0.0
            self.loop_offset = self.last_due + gap
        self.first_ts = None
        self.last_rel_ns = 0
        self.loop_packets = 0

    def due(self, ts: Any, lens: Any) -> Any:
        import numpy as np

        n = len(lens)
        self.loop_packets += n
        if self.topspeed:
            return None
        if self.pps is not None:
            due = (self.index + np.arange(n, dtype=np.float64)) / self.pps
            self.index += n
        elif self.bits_per_s is not None:
            # each packet is due once the bits before it have had their time
            bits = lens.astype(np.int64) * 8
            due = (self.bits + np.cumsum(bits) - bits) / self.bits_per_s
            self.bits += int(bits.sum())
        else:
            if self.first_ts is None:
                self.first_ts = int(ts[0])
            # max(): out-of-order timestamps are sent at once.
            rel = np.maximum.accumulate(np.maximum(ts - self.first_ts, self.last_rel_ns))
            self.last_rel_ns = int(rel[-1])
            due = self.loop_offset + rel / 1e9
        self.last_due = float(due[-1])
        return due


def run(args: argparse.Namespace) -> int:
    if args.file == "-" and args.loop > 1:
        raise CliError("--loop needs a file: stdin can be read only once", EXIT_USAGE)
    name, index = resolve(args.interface)
    check_queue(name, index, args.queue, "tx")
    f, size = _open(args.file)
    try:
        return _replay(args, name, f, size, _reader(f))
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def _replay(args: argparse.Namespace, name: str, f: Any, size: int | None,
            reader: Any) -> int:
    import numpy as np

    from .. import XdpConfig
    from ..iface import mtu
    from ..socket import MAX_TX_CHAIN

    frame_size = args.frame_size
    # A link whose MTU admits frames longer than a UMEM frame (jumbo frames)
    # gets a multi-buffer socket (XDP_USE_SG): such packets go out as
    # descriptor chains. Decided by the MTU, as a streamed file cannot be
    # looked at in advance.
    multi_buffer = mtu(name) + ETH_OVERHEAD > frame_size
    cfg = XdpConfig(frame_size=frame_size, multi_buffer=multi_buffer)
    longest = frame_size * MAX_TX_CHAIN if multi_buffer else frame_size
    status = Status(enabled=not args.quiet)
    stop = StopFlag()
    prog = _Progress(status, size, args.loop)
    position = (lambda: prog.file_done + f.tell()) if size is not None else (lambda: 0)
    sched = _Schedule(args)
    try:
        with _tx_socket(name, args.queue, cfg) as tx, stop.installed():
            sender = _Sender(tx, stop, frame_size if multi_buffer else None)
            prog.sender = sender
            t0 = time.monotonic()
            prog.start = t0
            for loop_i in range(args.loop):
                if loop_i:
                    prog.file_done += size or 0
                    f.seek(0)
                    reader = _reader(f)
                    sched.new_loop()
                for pb in reader.batches(BATCH):
                    if stop:
                        break
                    _check_linktypes(reader, pb.interfaces)
                    data, lens, ts = pb.data, pb.lens, pb.timestamps_ns
                    prog.truncated += int(np.count_nonzero(lens < pb.orig_lens))
                    lo, hi = int(lens.min()), int(lens.max())
                    if lo <= 0 or hi > longest:
                        ok = (lens > 0) & (lens <= longest)
                        prog.skipped += len(lens) - int(np.count_nonzero(ok))
                        data, lens, ts = data[ok], lens[ok], ts[ok]
                        if not len(lens):
                            continue
                        lo, hi = int(lens.min()), int(lens.max())
                        data = data[:, :hi]
                    # A run of one length (the reader's fast path, and most of
                    # a uniform stream): the length goes down as one int, so
                    # the batch needs no per-frame length array.
                    same = hi if lo == hi else None
                    due = sched.due(ts, lens)
                    i, n = 0, len(lens)
                    while i < n and not stop:
                        m = n
                        if due is not None:
                            # Everything due by now goes in one transaction; if
                            # nothing is, wait for the next due time.
                            m = int(np.searchsorted(
                                due, time.monotonic() - t0 + GATHER_AHEAD_S, "right"))
                            if m <= i:
                                _wait_until(t0 + float(due[i]), stop)
                                continue
                        i += sender.send(data[i:m], lens[i:m], same)
                        prog.show(position)
                if stop:
                    break
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
            print(f"{prog.skipped} packets skipped: empty or longer than "
                  f"{longest} bytes (the {frame_size}-byte UMEM frame"
                  f"{', times the longest descriptor chain' if multi_buffer else ''}){hint}")
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


def _tx_socket(name: str, queue: int, cfg: Any) -> Any:
    """The TX socket, sending a whole batch per kick where the kernel lets us
    raise the copy-mode budget (``XDP_MAX_TX_SKB_BUDGET``, Linux 6.15+; 32
    frames per kick otherwise): one sendto per batch instead of one per 32
    frames, which more than doubles the --topspeed rate on veth."""
    import dataclasses
    import errno

    from .. import XdpError, create_tx_socket

    try:
        return create_tx_socket(name, queue, dataclasses.replace(cfg, tx_budget=BATCH))
    except XdpError as e:
        if not e.step.startswith("set TX budget") or e.errno not in (
                errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    return create_tx_socket(name, queue, cfg)  # an older kernel: its default budget


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
