"""What the subcommands share: option names, error reporting, status lines.

Output style:

* results go to stdout (a table, a summary, or JSON with ``--json``);
* live status goes to stderr: rewritten in place with a carriage return when
  stderr is a terminal, otherwise one plain line per second (so logs stay
  readable);
* an error is one line on stderr, ``xdp-socket CMD: MESSAGE``, never a
  traceback; :class:`CliError` carries the exit code.

Exit codes: 0 ok, 1 runtime error, 2 usage error (argparse's own), 130 after
Ctrl-C (and 128 + signal number for other stop signals).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any

from ..config import XDP_MODES

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130



class CliError(Exception):
    """A problem to report as one line, with the exit code to return."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def plain_text(doc: str) -> str:
    """A docstring as a terminal shows it: the reST markup the API docs need
    (``literal``, :class:`~pkg.Name`, **strong**) reduced to its text."""
    doc = re.sub(r":[a-z]+:`~[\w.]*?\.?(\w+)`", r"\1", doc)  # :class:`~a.b.C` -> C
    doc = re.sub(r":[a-z]+:`([^`]+)`", r"\1", doc)
    doc = re.sub(r"``([^`]+)``", r"\1", doc)
    return re.sub(r"\*\*([^*]+)\*\*", r"\1", doc)


def command_parser(subparsers: Any, name: str, doc: str | None, epilog: str,
                   help: str) -> argparse.ArgumentParser:
    """The parser of one subcommand: its module docstring (as plain text) as
    the description, examples in the epilog, both laid out as written."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=None if doc is None else plain_text(doc),
        epilog=plain_text(epilog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


# --- shared options -----------------------------------------------------------------------


def add_interface(p: Any, *, required: bool = True) -> None:
    p.add_argument("-i", "--interface", required=required, metavar="IFACE",
                   help="network interface (name or index)")


def add_queue(p: Any, *, default: int | None = 0) -> None:
    p.add_argument("-q", "--queue", type=non_negative_int, default=default, metavar="QUEUE",
                   help=f"queue id (default {default})")


def add_duration(p: Any) -> None:
    p.add_argument("-d", "--duration", type=positive_float, default=None, metavar="SECONDS",
                   help="stop after this many seconds")


def add_count(p: Any) -> None:
    p.add_argument("-c", "--count", type=positive_int, default=None, metavar="COUNT",
                   help="stop after this many packets")


def add_xdp_mode(p: Any) -> None:
    p.add_argument("--xdp-mode", choices=XDP_MODES, default="auto",
                   help="how the XDP program attaches: native (driver), skb (generic) "
                        "or auto (native where supported; default)")


def add_json(p: Any) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def _number(kind: type, text: str, lo: float | None, lo_open: bool) -> Any:
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if kind is float and v != v:  # NaN compares false with everything
        raise argparse.ArgumentTypeError("not a number: nan")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}: {text}")
    if kind is float and v == float("inf"):
        raise argparse.ArgumentTypeError("must be finite")
    return v


def positive_int(text: str) -> int:
    """argparse type: an int > 0."""
    return int(_number(int, text, 0, True))


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return int(_number(int, text, 0, False))


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    return float(_number(float, text, 0, False))


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    return float(_number(float, text, 0, True))


# --- checks before touching the kernel -------------------------------------------------------

#: Shortest Ethernet frame without FCS (include/uapi/linux/if_ether.h ETH_ZLEN);
#: a NIC pads shorter ones, so a shorter --size would not be what goes out.
MIN_FRAME_SIZE = 60


def check_frame_size(size: int, largest: int, why: str) -> None:
    """Usage error unless ``MIN_FRAME_SIZE <= size <= largest`` (``why``
    names the upper bound)."""
    if not MIN_FRAME_SIZE <= size <= largest:
        raise CliError(f"--size must be {MIN_FRAME_SIZE}..{largest} bytes ({why}), got {size}",
                       EXIT_USAGE)


def zero_copy_hint(ifname: str) -> str:
    """The command-line wording of 'this driver has no zero-copy AF_XDP'."""
    return (f"{ifname} has no zero-copy AF_XDP support (copy mode only; `xdp-socket info` "
            "lists xsk-zerocopy for drivers that have it): leave out --zero-copy")


def resolve(iface: str) -> tuple[str, int]:
    """``(name, ifindex)`` for a name or a decimal index, or a usage error."""
    from ..iface import resolve_interface

    # ASCII digits only: str.isdigit() is also true for "²" (which int()
    # refuses) and for other scripts' digits (which int() reads as a number).
    key: str | int = int(iface) if iface.isascii() and iface.isdigit() else iface
    try:
        return resolve_interface(key)
    except (ValueError, TypeError) as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except OSError:
        raise CliError(f"no such interface: {iface}", EXIT_USAGE) from None


def check_queue(ifname: str, ifindex: int, queue: int, direction: str) -> None:
    """Raise a usage error unless ``queue`` exists in ``direction`` ("rx"/"tx")."""
    from ..iface import has_queue, queue_counts

    if has_queue(ifname, ifindex, queue, rx=direction == "rx", tx=direction == "tx"):
        return  # (the quick check: no netlink, no pyroute2 import)
    rx, tx = queue_counts(ifindex)
    n = rx if direction == "rx" else tx
    if queue >= n:
        plural = "queue" if n == 1 else "queues"
        raise CliError(
            f"{ifname} has {n} {direction.upper()} {plural} (0..{n - 1}); "
            f"queue {queue} does not exist", EXIT_USAGE)


# --- output -------------------------------------------------------------------------------


def print_json(obj: Any, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    json.dump(obj, out, indent=2, sort_keys=False)
    out.write("\n")
    out.flush()


def human_rate(n: float, unit: str = "pps") -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {prefix}{unit}"
    return f"{n:.0f} {unit}"


class Status:
    """A live status line on stderr.

    On a terminal the line is redrawn in place (carriage return) at most
    ``tty_interval`` apart; otherwise a new line is printed at most once per
    second, so a log file gets one line per second and not thousands.
    """

    def __init__(self, stream: IO[str] | None = None, *, tty_interval: float = 0.2,
                 enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.interval = tty_interval if self.tty else 1.0
        self.enabled = enabled
        # The first line after one interval: a command that ends (or fails)
        # at once prints no status at all.
        self._next = time.monotonic() + self.interval
        self._width = 0

    def due(self) -> bool:
        """True when an update would be shown now (lets callers skip
        formatting the line on every packet)."""
        return self.enabled and time.monotonic() >= self._next

    def update(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the in-place line so what follows starts on a fresh line."""
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


class StopFlag:
    """Turns SIGINT and SIGTERM into a flag the main loop polls, so a long
    running command can stop between packets and still finish its output
    (flush and close files, print the summary). Restores the previous
    handlers on exit. Loops must wait with short timeouts (Python restarts
    an interrupted poll(2) after the handler runs, PEP 475)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            # A second Ctrl-C: the user insists; leave through KeyboardInterrupt.
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def exit_code(self) -> int:
        if self.signum is None:
            return EXIT_OK
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)
