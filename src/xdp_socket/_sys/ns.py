"""Layer 0: namespace syscalls (``unshare``, ``mount``) for the test kit.

The standard library has ``os.unshare`` only from Python 3.12 and no ``mount``
at all, so both are called through libc here. Nothing else in the package needs
them; :mod:`xdp_socket.testing` uses them to put a process into a private
network (and mount) namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

from .._check import check_int
from ..errors import xdp_error

__all__ = ["mount", "unshare"]

_libc: ctypes.CDLL | None = None

# Not the AF_XDP capabilities of the generic EPERM hint: namespaces and mounts
# are CAP_SYS_ADMIN's (unshare(2), mount(2)).
_SYS_ADMIN_HINT = "needs root, or CAP_SYS_ADMIN"


def _lib() -> ctypes.CDLL:
    # Loaded lazily so that importing the module never fails on a system
    # where it is not used; use_errno so ctypes.get_errno() sees the call's errno.
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.unshare.argtypes = [ctypes.c_int]
        lib.unshare.restype = ctypes.c_int
        lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_void_p,
        ]
        lib.mount.restype = ctypes.c_int
        _libc = lib
    return _libc


def unshare(flags: int) -> None:
    """unshare(2): move the calling thread into new namespaces given by ``CLONE_*`` flags."""
    check_int("unshare flags", flags, max=(1 << 32) - 1, what="a 32-bit unsigned integer")
    # c_int is signed; CLONE_NEWNET uses bit 30 only, but keep bit 31 representable.
    arg = flags - (1 << 32) if flags >= 1 << 31 else flags
    if _lib().unshare(arg) != 0:
        err = ctypes.get_errno()
        raise xdp_error(err, f"unshare(0x{flags:x})", hint=_SYS_ADMIN_HINT if err == errno.EPERM
                        else None)


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    """mount(2) without filesystem data, e.g. ``mount("sysfs", "/sys", "sysfs", 0)``
    or ``mount(None, "/", None, MS_REC | MS_PRIVATE)`` to stop propagation."""
    check_int("mount flags", flags, max=(1 << 64) - 1, what="a 64-bit unsigned integer")
    if not isinstance(target, str) or not target:
        raise ValueError(f"mount target must be a non-empty path, got {target!r}")

    def enc(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    if _lib().mount(enc(source), enc(target), enc(fstype), flags, None) != 0:
        err = ctypes.get_errno()
        raise xdp_error(err, f"mount {fstype or source or ''} on {target}".replace("  ", " "),
                        hint=_SYS_ADMIN_HINT if err == errno.EPERM else None)
