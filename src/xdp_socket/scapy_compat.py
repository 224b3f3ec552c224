"""Send and receive scapy packets through AF_XDP sockets.

Optional: needs scapy (``pip install xdp-socket[scapy]``). The core library
never imports scapy; only importing this module does::

    from scapy.layers.l2 import Ether  # type: ignore[import-not-found,unused-ignore]
    from xdp_socket.scapy_compat import recv_scapy, send_scapy

    send_scapy(tx, Ether(dst="ff:ff:ff:ff:ff:ff") / b"hello")
    pkt = recv_scapy(rx, timeout=1.0)   # an Ether, or None after the timeout
"""

from __future__ import annotations

try:
    from scapy.layers.l2 import Ether  # type: ignore[import-not-found,unused-ignore]
    from scapy.packet import Packet  # type: ignore[import-not-found,unused-ignore]
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "xdp_socket.scapy_compat needs scapy: pip install xdp-socket[scapy] "
        f"(or pip install scapy); import failed with: {e}"
    ) from e

from .socket import RxSocket, TxSocket

__all__ = ["recv_scapy", "send_scapy"]


def send_scapy(tx: TxSocket, pkt: Packet | bytes, timeout: float | None = 1.0) -> None:
    """Build ``pkt`` and send it as one frame, waiting up to ``timeout``
    seconds for a free frame (``None``: forever). Raises TimeoutError when
    none became free, ValueError when the packet does not fit a frame."""
    data = bytes(pkt)
    if tx.send(data):
        return
    if not tx.poll_wait(timeout) or not tx.send(data):
        raise TimeoutError(f"no free TX frame on {tx.ifname} queue {tx.queue_id} "
                           f"within {timeout} s")


def recv_scapy(rx: RxSocket, timeout: float | None = None) -> Ether | None:
    """Receive one frame and dissect it as an :class:`~scapy.layers.l2.Ether`;
    ``None`` after ``timeout`` seconds without a packet (``None``: wait forever,
    ``0``: do not wait)."""
    data = rx.recv(timeout)
    if data is None:
        return None
    return Ether(data)
