"""``xdp-socket``: argument parsing and dispatch to the subcommand modules."""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import io
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, CliError

#: Subcommand modules (in ``xdp_socket.cli``), in the order ``--help`` lists them.
SUBCOMMANDS = ("info", "capture", "replay", "demo", "bench", "gen", "filter")

PROG = "xdp-socket"

EPILOG = """examples:
  xdp-socket info                          # interfaces, queues, XDP programs and features
  xdp-socket capture -i eth0 -w out.pcap   # capture queue 0 through AF_XDP
  xdp-socket replay out.pcap -i eth0 --pps 1000
  xdp-socket demo                          # a self-contained round trip on a private veth
  xdp-socket filter 'udp port 53'          # a tcpdump filter as classic BPF and as XDP

Run `xdp-socket COMMAND --help` for each command's options.
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with ``only`` that one (``main``
    passes the one its command line names): importing and registering all of
    them cost ~20 ms of every command's start-up, which a short ``replay``
    pays against tcpreplay's whole run."""
    names = (only,) if only in SUBCOMMANDS else SUBCOMMANDS
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Linux AF_XDP sockets from Python: tools.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in names:
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


class _ClosedBinary(io.BufferedIOBase):
    """The ``.buffer`` of a :class:`_ClosedStream`: every read or write fails
    with ``OSError(EBADF)``, which :func:`main` reports as one line."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def fail(self, *args: object) -> Any:
        raise OSError(errno.EBADF, f"standard {self.what} is closed")

    read = read1 = readinto = readline = write = fileno = fail

    def readable(self) -> bool:
        return self.what == "input"

    def writable(self) -> bool:
        return self.what == "output"

    def flush(self) -> None:
        pass  # Python flushes stdout at exit: nothing was written, nothing to say


class _ClosedStream(io.TextIOBase):
    """Stands in for ``sys.stdin``/``sys.stdout`` when the process started with
    that descriptor closed (``xdp-socket info >&-``): Python leaves the name
    ``None`` then, and the first use would be an AttributeError traceback."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self._raw = _ClosedBinary(what)

    @property
    def buffer(self) -> _ClosedBinary:  # what replay/capture use for "-"
        return self._raw

    def read(self, *args: object) -> Any:
        return self._raw.fail()

    readline = write = fileno = read

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        pass


def _guard_standard_streams() -> None:
    """Make a closed stdin/stdout/stderr harmless before anything opens a file.

    A closed descriptor 0, 1 or 2 is held open on /dev/null, so that no file,
    socket or BPF object opened later gets that number (a capture file opened
    as fd 1 would receive every line printed). The Python-level stream then
    reports itself closed; a closed stderr just swallows what is written."""
    for fd, name, flags in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY),
                            (2, "stderr", os.O_WRONLY)):
        try:
            os.fstat(fd)
            closed = False
        except OSError:
            closed = True
        if closed:
            devnull = os.open(os.devnull, flags)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
        # Python left the name None if the fd was closed when it started (an
        # import may have reused the number since: checked apart from the fd).
        if getattr(sys, name) is None or (closed and name == "stderr"):
            if name == "stderr":
                sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
            else:
                setattr(sys, name, _ClosedStream("input" if fd == 0 else "output"))


def _report(line: str) -> None:
    """The one line an error prints. Failing to print it (stderr closed or
    unwritable) must not turn the error into a traceback: the exit code
    still tells."""
    try:
        print(line, file=sys.stderr)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    # After EPIPE on stdout, Python would complain again while flushing at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def entry() -> int:
    """The ``xdp-socket`` command (console script and ``python -m
    xdp_socket``): :func:`main` in a process of its own."""
    code = main()
    # At exit the interpreter runs a last full collection over every object
    # still alive, the ~100k that importing numpy and this package made
    # included: about 90 ms here, a fifth of a short command's run (a replay
    # is compared with tcpreplay by its whole run). Nothing left needs it (the
    # process's end closes its fds), so take them out of the collector's
    # sight. Only here: in a longer-lived caller of main() (the tests) a
    # freeze would keep forgotten objects from ever being collected.
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    _guard_standard_streams()
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words[0] if words else None)
    args = parser.parse_args(words)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    name = f"{PROG} {args.command}"
    from ..errors import FilterError, UntranslatableFilterError, XdpError, XdpPermissionError
    from ..pcap import CaptureFormatError

    try:
        return int(func(args))
    except KeyboardInterrupt:
        _report(f"\n{name}: interrupted")
        return EXIT_INTERRUPTED
    except CliError as e:
        _report(f"{name}: {e}")
        return e.code
    except UntranslatableFilterError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return EXIT_ERROR
    except FilterError as e:
        # libpcap refused the expression: a usage error, in libpcap's words
        print(f"{name}: bad filter expression: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CaptureFormatError as e:
        _report(f"{name}: malformed capture file: {e}")
        return EXIT_ERROR
    except XdpPermissionError as e:
        _report(f"{name}: permission denied: {e}")
        return EXIT_ERROR
    except XdpError as e:
        _report(f"{name}: {e}")
        return EXIT_ERROR
    except BrokenPipeError:
        _silence_stdout()
        _report(f"{name}: output closed")
        return EXIT_ERROR
    except OSError as e:
        # e.g. a capture file that cannot be opened: "[Errno 2] ...: 'x.pcap'"
        _report(f"{name}: {e.strerror or e}"
                + (f": {e.filename}" if getattr(e, "filename", None) else ""))
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
