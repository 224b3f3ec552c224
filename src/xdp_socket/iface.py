"""Layer 2: facts about network interfaces (index, name, queues, XDP state).

Interfaces are looked up in the network namespace of the calling thread.
"""

from __future__ import annotations

import errno
import socket

from .errors import xdp_error

__all__ = ["resolve_interface"]


def resolve_interface(iface: str | int) -> tuple[str, int]:
    """Return ``(name, ifindex)`` for an interface given by name or index.

    Raises :class:`~xdp_socket.errors.XdpError` with ``ENODEV`` when there is no
    such interface, :class:`TypeError`/:class:`ValueError` for a malformed argument.
    """
    if isinstance(iface, bool) or not isinstance(iface, (str, int)):
        raise TypeError(f"interface must be a name or an index, not {type(iface).__name__}")
    if isinstance(iface, int):
        if iface <= 0:
            raise ValueError(f"interface index must be positive, got {iface}")
        try:
            return socket.if_indextoname(iface), iface
        except OSError:
            raise xdp_error(errno.ENODEV, "look up interface", f"#{iface}") from None
    if not iface or len(iface) >= 16 or "/" in iface or "\0" in iface:
        raise ValueError(f"not a valid interface name: {iface!r}")
    try:
        return iface, socket.if_nametoindex(iface)
    except OSError:
        raise xdp_error(errno.ENODEV, "look up interface", iface) from None
