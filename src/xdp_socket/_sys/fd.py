"""One owner for one raw file descriptor.

:class:`OwnedFd` holds an int fd that nothing else closes. Its finalizer (a
``weakref.finalize`` that holds the int, never the owner) is a leaf action: it
closes that one fd and returns. It takes no lock, waits for no thread and
talks no netlink, so it is safe whenever the garbage collector or the
interpreter's exit runs it. The kernel undoes what the fd stands for when its
last reference goes (a BPF link detaches its program, a program or map is
freed once nothing else holds it).

After ``fork()`` the child has its own copy of the descriptor table: the
child closing its inherited copy closes only its copy, which is harmless.
"""

from __future__ import annotations

import contextlib
import os
import warnings
import weakref

from .._check import check_int

__all__ = ["OwnedFd"]


def _close_quietly(fd: int, leak_message: str | None) -> None:
    # Runs from the finalizer (when the owner was dropped without close()) or
    # at exit: warn like an unclosed stdlib file does, then close the fd.
    if leak_message is not None:
        # A warning filter set to "error" raises here; a finalizer must still close.
        try:
            warnings.warn(leak_message, ResourceWarning, stacklevel=2)
        finally:
            _close(fd)
    else:
        _close(fd)


def _close(fd: int) -> None:
    # EBADF: nothing to do. EINTR on close(2) still frees the fd on Linux.
    with contextlib.suppress(OSError):
        os.close(fd)


class OwnedFd:
    """The sole owner of file descriptor ``fd``.

    ``close()`` is idempotent. Dropping an open ``OwnedFd`` without
    ``close()`` closes the fd from a finalizer; with ``leak_warning`` (for
    example ``"unclosed XdpDrop on veth0"``) it also emits that
    :class:`ResourceWarning` first, like an unclosed file. Objects that own
    several fds give the warning to one of them only.
    """

    __slots__ = ("__weakref__", "_fd", "_finalizer")

    def __init__(self, fd: int, leak_warning: str | None = None) -> None:
        self._fd: int | None = check_int("fd", fd, what="a file descriptor (>= 0)")
        # The callback gets the int and the message, never self: a reference
        # to the owner would keep it alive forever.
        self._finalizer = weakref.finalize(self, _close_quietly, fd, leak_warning)
        # Not at interpreter exit: the kernel closes every fd of a process that
        # ends, and a warning per long-lived object during shutdown is noise.
        self._finalizer.atexit = False

    @property
    def closed(self) -> bool:
        return self._fd is None

    def fileno(self) -> int:
        """The fd; ``ValueError`` once closed (its number may name something else by then)."""
        fd = self._fd
        if fd is None:
            raise ValueError("file descriptor is closed")
        return fd

    def detach(self) -> int:
        """Give up ownership: return the fd, which the caller must close now."""
        fd = self.fileno()
        self._fd = None
        self._finalizer.detach()
        return fd

    def close(self) -> None:
        """Close the fd (idempotent)."""
        if self._fd is None:
            return
        self._fd = None
        fd_and_args = self._finalizer.detach()
        if fd_and_args is not None:
            _close(fd_and_args[2][0])

    def __repr__(self) -> str:
        return f"<OwnedFd {'closed' if self._fd is None else self._fd}>"
