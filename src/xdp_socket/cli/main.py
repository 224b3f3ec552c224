"""``xdp-socket``: argument parsing and dispatch to the subcommand modules."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, CliError

#: Subcommand modules (in ``xdp_socket.cli``), in the order ``--help`` lists them.
SUBCOMMANDS = ("info", "capture", "replay", "demo", "bench", "gen")

PROG = "xdp-socket"

EPILOG = """examples:
  xdp-socket info                          # interfaces, queues, XDP programs and features
  xdp-socket capture -i eth0 -w out.pcap   # capture queue 0 through AF_XDP
  xdp-socket replay out.pcap -i eth0 --pps 1000
  xdp-socket demo                          # a self-contained round trip on a private veth

Run `xdp-socket COMMAND --help` for each command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Linux AF_XDP sockets from Python: tools.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        modname = f"{__package__}.{name}"
        try:
            mod = importlib.import_module(modname)
        except ImportError as e:
            # Only "this module is not there yet" is skipped; a module that
            # exists but fails to import is a bug to show.
            if e.name == modname:
                continue
            raise
        mod.register(sub)
    return parser


def _silence_stdout() -> None:
    # After EPIPE on stdout, Python would complain again while flushing at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    name = f"{PROG} {args.command}"
    from ..errors import XdpError, XdpPermissionError
    from ..pcap import CaptureFormatError

    try:
        return int(func(args))
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CliError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return e.code
    except CaptureFormatError as e:
        print(f"{name}: malformed capture file: {e}", file=sys.stderr)
        return EXIT_ERROR
    except XdpPermissionError as e:
        print(f"{name}: permission denied: {e}", file=sys.stderr)
        return EXIT_ERROR
    except XdpError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        _silence_stdout()
        print(f"{name}: output closed", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        # e.g. a capture file that cannot be opened: "[Errno 2] ...: 'x.pcap'"
        print(f"{name}: {e.strerror or e}"
              + (f": {e.filename}" if getattr(e, "filename", None) else ""), file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        # Ctrl-C inside a library's own event loop (pyroute2's netlink calls)
        # can surface as another error raised while handling it.
        if _interrupted(e):
            print(f"\n{name}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        raise


def _interrupted(e: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
