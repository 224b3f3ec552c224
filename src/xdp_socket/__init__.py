"""xdp-socket: Linux AF_XDP sockets for Python.

Send and receive raw Ethernet frames through AF_XDP, bypassing the kernel's
network stack. See the README for the two API tiers and the examples.
"""

from __future__ import annotations

from ._ring import accelerator
from .batch import RxBatch, TxBatch
from .config import Direction, XdpConfig
from .core import RingViews, Statistics
from .errors import (
    FilterError,
    InterfaceDownError,
    LibpcapMissingError,
    SocketClosedError,
    UntranslatableFilterError,
    XdpBusyError,
    XdpError,
    XdpPermissionError,
    XdpProgramConflictError,
)
from .socket import (
    RxSocket,
    TxSocket,
    create_bi_socket,
    create_rx_socket,
    create_socket,
    create_tx_socket,
)
from .umem import Umem

__version__ = "0.1.0"

__all__ = [
    "Direction",
    "FilterError",
    "InterfaceDownError",
    "LibpcapMissingError",
    "RingViews",
    "RxBatch",
    "RxSocket",
    "SocketClosedError",
    "Statistics",
    "TxBatch",
    "TxSocket",
    "Umem",
    "UntranslatableFilterError",
    "XdpBusyError",
    "XdpConfig",
    "XdpError",
    "XdpPermissionError",
    "XdpProgramConflictError",
    "accelerator",
    "create_bi_socket",
    "create_rx_socket",
    "create_socket",
    "create_tx_socket",
]
