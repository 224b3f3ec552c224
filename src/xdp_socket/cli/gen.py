"""``xdp-socket gen``: send one UDP frame over and over, at kernel speed.

Frames are made by the kernel's XDP "live frames" test run (Linux 5.18+): an
XDP program redirects each copy of the frame to IFACE, which transmits it
(ndo_xdp_xmit). No AF_XDP socket and no per-packet Python: millions of frames
per second from one core. The run is bounded: -c COUNT frames or -d SECONDS
(default 5 s). With --rate the frames leave in bursts of RATE/10 every 0.1 s.

IFACE must accept XDP redirects. A veth transmits them only when its *peer*
runs an XDP program (an AF_XDP socket's, or a drop program); otherwise the
frames are dropped silently. So gen first waits up to --wait seconds (default
3) for the peer to get one (a receiver started in parallel), then warns and
sends anyway. It looks again every second and at the end: when the frames
could not have arrived at any moment it checked, it says so and exits 1;
when only part of the run was affected, the summary says some were dropped.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Status,
    add_count,
    add_duration,
    add_interface,
    add_json,
    check_frame_size,
    command_parser,
    human_rate,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    print_json,
    resolve,
)

EPILOG = """examples:
  xdp-socket gen -i veth0 -d 10                 # 10 s flat out, 64-byte frames
  xdp-socket gen -i veth0 -c 1000000 -s 1514    # a million full-size frames
  xdp-socket gen -i eth0 -c 5000 --rate 1000 --dst-mac 52:54:00:12:34:56 \\
      --src-ip 192.0.2.1 --dst-ip 192.0.2.2 --dport 53
  xdp-socket gen -i veth0 -d 2 --cpu 0 --json   # pinned to CPU 0, JSON summary

frame: Ethernet / IPv4 (DF, TTL 64, header checksum) / UDP (checksum), the
payload "xdp-socket-gen" then bytes 0, 1, 2, ...; -s counts bytes without FCS
(60 .. MTU+14, at most 3520 for live frames). Defaults: src MAC = IFACE's,
dst MAC 02:00:00:00:00:02, 10.0.0.1:9000 -> 10.0.0.2:9001.

Live status (frames per second) goes to stderr once a second; the summary to
stdout (--json: {"mode": "gen", "pps", "packets", "seconds", "dropped", ...};
"dropped" is "all", "some" or null when gen saw no reason for drops). Ctrl-C
stops after the running chunk (<= ~0.2 s) with an exact count and exit 130.
Needs root (CAP_BPF + CAP_NET_ADMIN).
"""

DEFAULT_DURATION = 5.0
DEFAULT_WAIT = 3.0  # a Python receiver started alongside needs ~1 s to attach


def _port(text: str) -> int:
    v = non_negative_int(text)
    if v > 0xFFFF:
        raise argparse.ArgumentTypeError(f"not a port number (0..65535): {text}")
    return v


def register(subparsers: Any) -> None:
    p = command_parser(subparsers, "gen", __doc__, EPILOG,
                       "send UDP frames at kernel speed (XDP live-frames test run)")
    add_interface(p)
    p.add_argument("--dst-mac", metavar="MAC", help="destination MAC (default 02:00:00:00:00:02)")
    p.add_argument("--src-mac", metavar="MAC", help="source MAC (default: the interface's)")
    p.add_argument("--src-ip", metavar="IPV4", default="10.0.0.1",
                   help="source IPv4 address (default 10.0.0.1)")
    p.add_argument("--dst-ip", metavar="IPV4", default="10.0.0.2",
                   help="destination IPv4 address (default 10.0.0.2)")
    p.add_argument("--sport", type=_port, default=9000, metavar="PORT",
                   help="UDP source port (default 9000)")
    p.add_argument("--dport", type=_port, default=9001, metavar="PORT",
                   help="UDP destination port (default 9001)")
    p.add_argument("-s", "--size", type=positive_int, default=64, metavar="BYTES",
                   help="frame length without FCS (default 64)")
    bound = p.add_mutually_exclusive_group()
    add_count(bound)  # a mutually exclusive group takes add_argument like a parser
    add_duration(bound)
    p.add_argument("--rate", type=positive_float, default=None, metavar="PPS",
                   help="at most this many frames per second (bursts every 0.1 s)")
    p.add_argument("--cpu", type=non_negative_int, default=None, metavar="N",
                   help="send from CPU N (default: the CPU gen starts on)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="frames per kernel batch, 1..256 (default: the kernel's 64; "
                        "above 64 a veth may drop some)")
    p.add_argument("--wait", type=non_negative_float, default=DEFAULT_WAIT, metavar="SECONDS",
                   help="wait this long for IFACE to accept the frames before sending "
                        f"(a veth whose peer gets its XDP program later; default {DEFAULT_WAIT:g})")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..gen import MAX_LIVE_FRAME, GenerationInterrupted, GenResult, TrafficGenerator

    check_frame_size(args.size, MAX_LIVE_FRAME, "the longest live frame")
    if args.batch_size is not None and args.batch_size > 256:
        raise CliError(f"--batch-size must be 1..256, got {args.batch_size}", EXIT_USAGE)
    if args.count is None and args.duration is None:
        args.duration = DEFAULT_DURATION
    ifname, ifindex = resolve(args.interface)
    try:
        gen = TrafficGenerator(
            ifindex,
            dst_mac=args.dst_mac,
            src_mac=args.src_mac,
            src_ip=args.src_ip,
            dst_ip=args.dst_ip,
            sport=args.sport,
            dport=args.dport,
            frame_size=args.size,
            cpu=args.cpu,
            batch_size=args.batch_size,
        )
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from None

    status = Status(enabled=not args.json)
    name = "xdp-socket gen"
    # Was IFACE able to take the frames, at each moment we looked? The
    # warnings of the first bad look are the reason we give.
    looks: list[bool] = []
    reasons: list[str] = []

    def look(ok: bool) -> None:
        looks.append(ok)
        for w in gen.warnings:
            if w not in reasons:
                reasons.append(w)

    try:
        look(gen.wait_ready(args.wait))
    except BaseException:
        gen.close()
        raise
    for w in gen.warnings:
        print(f"{name}: warning: {w}", file=sys.stderr)
    bound = f"{args.count} frames" if args.count is not None else f"{args.duration:g} s"
    rate = f", at most {human_rate(args.rate)}" if args.rate else ""
    if not args.json:
        print(f"{name}: {gen.frame_size}-byte frames out of {ifname}, {bound}{rate}",
              file=sys.stderr)
    last = [0, 0.0]

    def progress(p: GenResult) -> None:
        dp, dt = p.packets - last[0], p.seconds - last[1]
        last[0], last[1] = p.packets, p.seconds
        cur = dp / dt if dt > 0 else 0.0
        status.update(f"{p.seconds:6.1f} s {p.packets:14,d} frames {human_rate(cur):>14}",
                      force=True)
        look(not gen.check_egress())

    code = EXIT_OK
    with gen:
        try:
            result = gen.run(count=args.count, duration=args.duration, rate=args.rate,
                             on_progress=progress)
        except GenerationInterrupted as e:
            result, code = e.result, EXIT_INTERRUPTED
        look(not gen.check_egress())
    status.finish()
    dropped = None if all(looks) else "some" if any(looks) else "all"
    if dropped == "all" and result.packets and code == EXIT_OK:
        code = EXIT_ERROR
    if args.json:
        print_json({
            "mode": "gen",
            "pps": round(result.pps, 1),
            "packets": result.packets,
            "seconds": round(result.seconds, 6),
            "interface": ifname,
            "frame_size": gen.frame_size,
            "rate_limit": args.rate,
            "interrupted": code == EXIT_INTERRUPTED,
            "dropped": dropped,
            "warnings": reasons,
        })
        return code
    note = " (interrupted)" if code == EXIT_INTERRUPTED else ""
    what = (f"{result.packets:,} frames of {gen.frame_size} bytes out of {ifname} in "
            f"{result.seconds:.3f} s: {human_rate(result.pps)}{note}")
    if dropped is None:
        print(f"sent {what}")
    elif dropped == "some":
        print(f"handed {what}; some were dropped: for part of the run, {reasons[0]}")
    else:
        # Not a success: nothing can have arrived. One line on stderr, exit 1.
        print(f"{name}: handed {what}, but none can have arrived: {reasons[0]}",
              file=sys.stderr)
    return code


def main() -> int:  # pragma: no cover - direct use
    from .main import main as _main

    return _main(["gen", *sys.argv[1:]])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
