"""``xdp-socket filter``: show how a tcpdump filter becomes an XDP program.

libpcap compiles EXPR (pcap-filter(7) syntax, as tcpdump takes it) to
classic BPF for Ethernet frames, printed as ``tcpdump -d`` prints it; the
library translates that to eBPF, printed one instruction slot per line in
the kernel verifier's notation. Frames that match are redirected to the
AF_XDP socket of the queue they arrive on; all others pass to the kernel's
network stack. Unless --no-verify, the program is loaded into the kernel
once (against a throwaway XSKMAP, then unloaded) to show whether the
verifier accepts it; that needs root (CAP_BPF).
"""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_ERROR, EXIT_OK, add_json, command_parser, print_json

EPILOG = """examples:
  xdp-socket filter 'udp port 53'
  xdp-socket filter 'vlan and tcp[tcpflags] & tcp-syn != 0' --json
  xdp-socket filter --no-verify ip6 and udp dst port 4789

Several words are joined with spaces, as tcpdump does. Exit status: 0 when
the verifier accepts the program (or with --no-verify), 1 when it refuses
it or the expression cannot be translated, 2 when libpcap refuses the
expression (its message is printed).
"""


def register(subparsers: Any) -> None:
    p = command_parser(subparsers, "filter", __doc__, EPILOG,
                       "show a tcpdump filter as classic BPF and as the XDP program")
    p.add_argument("expression", nargs="+", metavar="EXPR",
                   help="filter expression in pcap-filter(7) syntax")
    p.add_argument("--no-verify", action="store_true",
                   help="do not load the program to ask the kernel's verifier")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..filter import describe_filter

    expr = " ".join(args.expression)
    report = describe_filter(expr, verify=not args.no_verify)
    if args.json:
        print_json({
            "expression": report.expression,
            "classic": report.classic,
            "ebpf": report.ebpf,
            "accepted": report.accepted,
            "verifier": report.verifier,
        })
    else:
        width = len(str(len(report.ebpf) - 1))
        lines = [f"classic BPF ({len(report.classic)} instructions, as tcpdump -d):",
                 *report.classic, "",
                 f"eBPF for XDP ({len(report.ebpf)} instructions):",
                 *(f"{i:>{width}}: {text}" for i, text in enumerate(report.ebpf)), ""]
        if report.accepted is None:
            lines.append(f"verifier: {report.verifier}")
        elif report.accepted:
            lines.append("verifier: accepted")
        else:
            lines.append("verifier: REFUSED")
            lines.append(report.verifier)
        print("\n".join(lines))
    return EXIT_ERROR if report.accepted is False else EXIT_OK
