"""``xdp-socket demo``: frames through AF_XDP one way and back, checked byte
for byte, with no NIC needed.

The command makes a private network namespace (it vanishes with the process,
so nothing is left behind even on Ctrl-C or a crash) and a veth pair ``A <-> B``
inside it, opens a bidirectional AF_XDP socket on each end, and runs a stream
of numbered frames of varied length (60..1514 bytes):

* A writes batches of frames into its UMEM and sends them (numpy batch API);
* B swaps the MAC addresses and sends every frame back out *from the frame it
  arrived in* (zero-copy forwarding);
* A checks that every frame came back complete, in order and unchanged apart
  from the swapped addresses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from ._common import (
    CliError,
    Status,
    StopFlag,
    command_parser,
    human_rate,
    positive_float,
    positive_int,
)

EPILOG = """examples:
  xdp-socket demo                 # 3 seconds, then a summary
  xdp-socket demo -d 10 --json    # longer, machine-readable summary on stdout

Needs root, or CAP_SYS_ADMIN (its private namespace) + CAP_NET_RAW +
CAP_NET_ADMIN + CAP_BPF + CAP_IPC_LOCK (the sockets and their program). The
demo never touches your real interfaces; to use a real NIC see `xdp-socket
info` and `xdp-socket capture --help`.
"""

ETHERTYPE = 0x88B5  # IEEE local experimental: nothing else in the namespace sends it
MIN_LEN, MAX_LEN = 60, 1514
MAC_A = b"\x02\x00\x00\x00\x00\x0a"
MAC_B = b"\x02\x00\x00\x00\x00\x0b"
WINDOW = 1024  # frames in flight A -> B -> A: far below every ring and Fill size


def register(subparsers: Any) -> None:
    p = command_parser(subparsers, "demo", __doc__, EPILOG,
                       "send frames through AF_XDP one way and back on a private veth pair")
    p.add_argument("-d", "--duration", type=positive_float, default=3.0, metavar="SECONDS",
                   help="seconds to run (default 3)")
    p.add_argument("-c", "--count", type=positive_int, default=None, metavar="COUNT",
                   help="stop after this many frames came back")
    p.add_argument("-b", "--batch", type=positive_int, default=64,
                   help="frames per batch (default 64)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=run)


def frame_lengths(seqs: np.ndarray) -> np.ndarray:
    """Length of frame ``seq``: 60..1514, varying with ``seq``."""
    return (MIN_LEN + (seqs * 37) % (MAX_LEN - MIN_LEN + 1)).astype(np.uint32)


_PATTERNS = ((np.arange(256)[:, None] + np.arange(MAX_LEN)) & 0xFF).astype(np.uint8)
_COLUMNS = np.arange(MAX_LEN)


def build_frames(seq0: int, n: int, dst: bytes, src: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``seq0 .. seq0+n-1`` as a ``(n, 1514)`` array and their lengths:
    Ethernet header, the 8-byte sequence number, then bytes ``seq+22, seq+23,
    ...`` (mod 256) up to the frame's length. Bytes past a frame's length are
    not part of the frame."""
    seqs = np.arange(seq0, seq0 + n, dtype=np.int64)
    out = _PATTERNS[seqs & 0xFF]
    out[:, 0:6] = np.frombuffer(dst, np.uint8)
    out[:, 6:12] = np.frombuffer(src, np.uint8)
    out[:, 12:14] = np.frombuffer(ETHERTYPE.to_bytes(2, "big"), np.uint8)
    out[:, 14:22] = seqs.astype(">u8").view(np.uint8).reshape(n, 8)
    return out, frame_lengths(seqs)


def run(args: argparse.Namespace) -> int:
    if args.duration > 3600:
        raise CliError("--duration must be at most 3600 seconds", 2)
    if args.batch > 1024:
        raise CliError("--batch must be at most 1024", 2)
    import xdp_socket as xs
    from xdp_socket import testing

    try:
        testing.enter_private_netns()
    except PermissionError as e:
        raise CliError(f"cannot make the demo's private network namespace: {e}; run it as "
                       "root, or with CAP_SYS_ADMIN besides CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF "
                       "and CAP_IPC_LOCK") from None
    cfg = xs.XdpConfig(xdp_mode="native", frame_size=2048, frame_count=4096)
    with testing.veth_pair(queues=1) as link:
        a_tx, a_rx = xs.create_bi_socket(link.a, 0, cfg)
        b_tx, b_rx = xs.create_bi_socket(link.b, 0, cfg)
        with a_tx, a_rx, b_tx, b_rx:
            return _loop(args, link, a_tx, a_rx, b_tx, b_rx)


class _Counts:
    def __init__(self) -> None:
        self.sent = self.echoed = self.verified = self.bad = 0


def _pump(args: argparse.Namespace, c: _Counts, a_tx: Any, a_rx: Any, b_tx: Any, b_rx: Any,
          send: bool) -> bool:
    """One round: A sends a batch (if ``send``), B echoes, A checks. Returns
    True if anything moved."""
    moved = False
    budget = min(args.batch, WINDOW - (c.sent - c.verified - c.bad)) if send else 0
    if args.count is not None:
        budget = min(budget, args.count - c.sent)
    if budget > 0:
        with a_tx.reserve(budget) as out:
            n = len(out)
            if n:
                data, lens = build_frames(c.sent, n, MAC_B, MAC_A)
                out.write_array(data, lens)
        c.sent += n
        moved = moved or n > 0
    with b_rx.receive(args.batch) as echo:
        if len(echo):
            echo.swap_macs()
            c.echoed += echo.forward(b_tx)
            moved = True
    with a_rx.receive(args.batch) as back:
        n = len(back)
        if n:
            want, want_lens = build_frames(c.verified + c.bad, n, MAC_A, MAC_B)
            lens = back.lens
            # compare each frame's bytes up to its length (beyond it, the
            # frame holds whatever an earlier packet left there)
            same = (back.gather(MAX_LEN) == want) | (lens[:, None] <= _COLUMNS)
            ok = (lens == want_lens) & same.all(axis=1)
            good = int(ok.sum())
            c.verified += good
            c.bad += n - good
            moved = True
    return moved


def _loop(args: argparse.Namespace, link: Any, a_tx: Any, a_rx: Any, b_tx: Any,
          b_rx: Any) -> int:
    c = _Counts()
    status = Status(tty_interval=0.5)
    print(f"demo: {link.a} <-> {link.b} in a private network namespace, AF_XDP on both ends "
          f"({'zero-copy' if a_tx.zero_copy else 'copy'} mode); B echoes every frame back "
          f"zero-copy, A checks every byte", file=sys.stderr)
    header = (f"{'time':>6} {'sent':>10} {'echoed':>10} {'verified':>10} {'rate':>12} "
              f"{'bad':>5} {'rx_dropped':>10} {'rx_ring_full':>12}")
    print(header, file=sys.stderr)
    t0 = time.monotonic()
    end = t0 + args.duration
    last_t, last_v = t0, 0
    stop = StopFlag()
    with stop.installed():
        while not stop:
            now = time.monotonic()
            if now >= end or (args.count is not None and c.verified + c.bad >= args.count):
                break
            if not _pump(args, c, a_tx, a_rx, b_tx, b_rx, send=True):
                a_rx.poll_wait(0.001)
            if status.due():
                rate = (c.verified - last_v) / (now - last_t) if now > last_t else 0.0
                sa, sb = a_rx.statistics(), b_rx.statistics()
                status.update(
                    f"{now - t0:6.1f} {c.sent:10d} {c.echoed:10d} {c.verified:10d} "
                    f"{human_rate(rate):>12} {c.bad:5d} {sa.rx_dropped + sb.rx_dropped:10d} "
                    f"{sa.rx_ring_full + sb.rx_ring_full:12d}")
                last_t, last_v = now, c.verified
        # let the frames in flight come home (bounded)
        drain_end = time.monotonic() + 1.0
        while c.verified + c.bad < c.sent and time.monotonic() < drain_end:
            if not _pump(args, c, a_tx, a_rx, b_tx, b_rx, send=False):
                a_rx.poll_wait(0.001)
    status.finish()
    elapsed = time.monotonic() - t0
    sa, sb = a_rx.statistics(), b_rx.statistics()
    lost = c.sent - c.verified - c.bad
    summary = {
        "interfaces": [link.a, link.b],
        "seconds": round(elapsed, 3),
        "sent": c.sent,
        "echoed": c.echoed,
        "verified": c.verified,
        "corrupt": c.bad,
        "lost": lost,
        "round_trips_per_second": round(c.verified / elapsed, 1) if elapsed else 0.0,
        "stats_a": sa._asdict(),
        "stats_b": sb._asdict(),
        "ok": c.bad == 0 and lost == 0 and c.verified > 0,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        rate_text = human_rate(c.verified / elapsed if elapsed else 0.0, "frames/s")
        print(f"{c.verified} of {c.sent} frames went {link.a} -> {link.b} -> {link.a} through "
              f"AF_XDP in {elapsed:.2f} s ({rate_text} round trips).")
        print(f"Every byte checked: {c.bad} corrupt, {lost} lost.")
        for name, st in ((link.a, sa), (link.b, sb)):
            print(f"kernel statistics {name}: "
                  + ", ".join(f"{k}={v}" for k, v in st._asdict().items()))
        print("\nOn a real interface: `xdp-socket info` shows its queues and XDP support,")
        print("`xdp-socket capture -i IFACE -q QUEUE -w out.pcap` records a queue through AF_XDP,")
        print("and the README shows the same flows in ten lines of Python.")
    if stop:
        return stop.exit_code
    return 0 if summary["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    from .main import main

    sys.exit(main(["demo", *sys.argv[1:]]))
