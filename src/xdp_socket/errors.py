"""Exceptions raised by xdp_socket.

Rules this module keeps:

* Every failure of a kernel call is an :class:`XdpError`, which *is* an
  :class:`OSError`: ``errno`` and ``strerror`` are the kernel's, and the message
  names the step that failed plus the interface and queue involved, e.g.
  ``bind xsk on veth1 queue 3: [Errno 22] Invalid argument``.
* Errors are split by what the caller can do about them: missing privileges
  (:class:`XdpPermissionError`), somebody else holds the resource
  (:class:`XdpBusyError`), the link is down (:class:`InterfaceDownError`), the
  socket was closed by *this* program (:class:`SocketClosedError`).
* Bad arguments are plain :class:`ValueError` / :class:`IndexError`; they never
  reach the kernel.

This module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "FilterError",
    "InterfaceDownError",
    "LibpcapMissingError",
    "SocketClosedError",
    "UntranslatableFilterError",
    "XdpBusyError",
    "XdpError",
    "XdpPermissionError",
    "XdpProgramConflictError",
    "xdp_error",
]


class XdpError(OSError):
    """A kernel call failed.

    Attributes beyond :class:`OSError`'s: ``step`` (what we were doing),
    ``ifname`` and ``queue_id`` (``None`` where they do not apply).
    """

    step: str
    ifname: str | None
    queue_id: int | None

    def __init__(
        self,
        err: int,
        step: str,
        ifname: str | None = None,
        queue_id: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = step
        if ifname is not None:
            where += f" on {ifname}"
        if queue_id is not None:
            where += f" queue {queue_id}"
        strerror = os.strerror(err) if err else "error"
        if hint:
            strerror = f"{strerror} ({hint})"
        super().__init__(err, strerror)
        self.step = step
        self.ifname = ifname
        self.queue_id = queue_id
        self._where = where

    def __str__(self) -> str:
        return f"{self._where}: [Errno {self.errno}] {self.strerror}"

    def __reduce__(self) -> tuple[object, ...]:  # keep pickling (multiprocessing) working
        return (_rebuild, (type(self), self.errno, self.step, self.ifname, self.queue_id))


def _rebuild(
    cls: type[XdpError], err: int, step: str, ifname: str | None, queue_id: int | None
) -> XdpError:
    return cls(err, step, ifname, queue_id)


class XdpPermissionError(XdpError, PermissionError):
    """Missing privileges: AF_XDP needs CAP_NET_RAW, loading the XDP program
    CAP_BPF (or CAP_SYS_ADMIN) and attaching it CAP_NET_ADMIN. Root has all."""


class XdpBusyError(XdpError):
    """The queue (or the interface's XDP slot) is held by somebody else, or was
    released by a socket that closed a moment ago (the kernel frees queue slots
    in deferred work; retry after a few tens of milliseconds)."""


class XdpProgramConflictError(XdpBusyError):
    """An XDP program that this library did not load is attached to the
    interface. The library never replaces it."""


class InterfaceDownError(XdpError):
    """The interface is down (ENETDOWN/ENXIO from the kernel)."""


class SocketClosedError(OSError):
    """The socket was closed by this program (``close()`` or the ``with`` block
    ended); using it afterwards is a programming error."""

    def __init__(self, what: str = "socket") -> None:
        super().__init__(_errno.EBADF, f"{what} is closed")


class FilterError(ValueError):
    """A packet filter expression (pcap-filter(7) syntax) that libpcap refused;
    the message is libpcap's, e.g. ``syntax error in filter expression: ...``.
    ``expression`` is the text that was compiled."""

    def __init__(self, message: str, expression: str | None = None) -> None:
        super().__init__(message)
        self.expression = expression


class UntranslatableFilterError(FilterError):
    """A classic BPF program that the eBPF translator cannot express: ``index``
    is the instruction's position, ``instruction`` its text (as ``tcpdump -d``
    prints it) and ``reason`` why."""

    def __init__(self, index: int, instruction: str, reason: str) -> None:
        super().__init__(f"cannot translate classic BPF instruction ({index:03d}) "
                         f"{instruction}: {reason}")
        self.index = index
        self.instruction = instruction
        self.reason = reason


class LibpcapMissingError(OSError):
    """libpcap, which compiles filter expressions, could not be loaded. Only
    filters need it; the rest of the library works without it."""

    def __init__(self, detail: str) -> None:
        super().__init__(_errno.ENOENT, f"libpcap is not installed ({detail}); packet filters "
                         "need it: install the package libpcap0.8 (Debian/Ubuntu) or "
                         "libpcap (Fedora/Arch)")


_BY_ERRNO: dict[int, type[XdpError]] = {
    _errno.EPERM: XdpPermissionError,
    _errno.EACCES: XdpPermissionError,
    _errno.EBUSY: XdpBusyError,
    _errno.ENETDOWN: InterfaceDownError,
}

_HINTS: dict[int, str] = {
    _errno.EPERM: "needs root, or CAP_NET_RAW + CAP_NET_ADMIN + CAP_BPF",
    _errno.EACCES: "needs root, or CAP_NET_RAW + CAP_NET_ADMIN + CAP_BPF",
    _errno.ENETDOWN: "the interface is down",
}


def xdp_error(
    err: int,
    step: str,
    ifname: str | None = None,
    queue_id: int | None = None,
    hint: str | None = None,
) -> XdpError:
    """Build the right :class:`XdpError` subclass for ``err``."""
    cls = _BY_ERRNO.get(err, XdpError)
    return cls(err, step, ifname, queue_id, hint if hint is not None else _HINTS.get(err))
