"""``xdp-socket info``: interfaces as AF_XDP sees them.

For each interface (or the one named): index, name, MTU, state, RX/TX queue
counts, the attached XDP program(s) and their mode (rtnetlink IFLA_XDP),
whether it is this library's redirect program, and the XDP features the
driver declares (generic-netlink ``netdev`` family, Linux 6.3+).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_json, command_parser, print_json, resolve

EPILOG = """examples:
  xdp-socket info                 # every interface in this network namespace
  xdp-socket info eth0            # one interface
  xdp-socket info --json | jq '.[] | {name, xdp_features}'

columns: MTU; STATE (operational state); RXQ/TXQ (queues the device uses, the
valid range for -q is 0..RXQ-1; a device may have allocated more, see --json);
XDP (mode:program-id, "ours" when it is
xdp-socket's redirect program); FEATURES (xdp-features: basic, redirect,
ndo-xmit, xsk-zerocopy, hw-offload, rx-sg, ndo-xmit-sg; "?" when the kernel
has no netdev netlink family). --json adds the allocated queue counts and
where the counts in use came from (netdev: the netlink queue list, Linux 6.8+,
links that are up; ethtool: the driver's channels; allocated: neither answered),
xdp-zc-max-segs, the RX metadata the driver exposes and the AF_XDP TX metadata
flags (xsk-features), and in every row "accel": the ring path this process's
sockets use ("c": the compiled accelerator, "python": pure Python, also with
XDP_SOCKET_NO_ACCEL=1). The table ends with the same fact.
"""


def register(subparsers: Any) -> None:
    p = command_parser(subparsers, "info", __doc__, EPILOG,
                       "interfaces, queues, attached XDP programs and XDP features")
    p.add_argument("iface", nargs="?", metavar="IFACE", help="only this interface")
    add_json(p)
    p.set_defaults(func=run)


def collect(iface: str | None) -> list[dict[str, Any]]:
    """What ``info`` reports, as JSON-ready dicts (one per interface)."""
    from .. import accelerator
    from ..errors import XdpError
    from ..iface import link_basics, netdev_features, queue_info, xdp_state
    from ..program import builtin_program_attached

    index = resolve(iface)[1] if iface is not None else None
    links = link_basics(index)
    features = netdev_features(index)
    out: list[dict[str, Any]] = []
    for link in links:
        try:
            state = xdp_state(link.ifindex)
            queues = queue_info(link.ifindex)
        except XdpError:
            continue  # the link went away while we looked
        ours = bool(state.prog_ids) and builtin_program_attached(link.ifindex)
        feat = None if features is None else features.get(link.ifindex)
        out.append({
            "ifindex": link.ifindex,
            "name": link.name,
            "kind": link.kind,
            "mac": link.mac,
            "mtu": link.mtu,
            "state": link.operstate,
            "admin_up": link.admin_up,
            "rx_queues": queues.rx,
            "tx_queues": queues.tx,
            "allocated_rx_queues": queues.allocated_rx,
            "allocated_tx_queues": queues.allocated_tx,
            "queues_from": queues.source,
            "xdp": {
                "mode": state.mode,
                "prog_id": state.prog_id,
                "prog_ids": list(state.prog_ids),
                "builtin": ours,
            },
            "xdp_features": None if feat is None else feat.xdp_feature_names(),
            "xdp_features_raw": None if feat is None else feat.xdp_features,
            "xdp_zc_max_segs": None if feat is None else feat.xdp_zc_max_segs,
            "xdp_rx_metadata": None if feat is None or feat.xdp_rx_metadata is None
            else feat.xdp_rx_metadata_names(),
            "xsk_features": None if feat is None or feat.xsk_features is None
            else feat.xsk_feature_names(),
            "accel": accelerator(),
        })
    return out


def _xdp_cell(x: dict[str, Any]) -> str:
    if not x["mode"]:
        return "-"
    ids = ",".join(str(i) for i in x["prog_ids"]) or "?"
    return f"{x['mode']}:{ids}" + (" ours" if x["builtin"] else "")


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ("IDX", "NAME", "MTU", "STATE", "RXQ", "TXQ", "XDP", "FEATURES")
    table = [head]
    for r in rows:
        feats = r["xdp_features"]
        table.append((
            str(r["ifindex"]), r["name"], str(r["mtu"]), r["state"],
            str(r["rx_queues"]), str(r["tx_queues"]), _xdp_cell(r["xdp"]),
            "?" if feats is None else (",".join(feats) or "none"),
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    lines = []
    for row in table:
        cells = [c.ljust(w) if i != 0 else c.rjust(w) for i, (c, w) in
                 enumerate(zip(row[:-1], widths, strict=True))]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = collect(args.iface)
    if args.json:
        print_json(rows)
    else:
        from .. import accelerator

        path = accelerator()
        what = ("compiled accelerator" if path == "c" else
                "pure Python: the accelerator is not built or XDP_SOCKET_NO_ACCEL is set")
        sys.stdout.write(format_table(rows) + f"\nring path: {path} ({what})\n")
    return 0
