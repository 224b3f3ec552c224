"""Socket configuration (pure data, validated on construction)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._check import check_int
from ._sys import pcap as _pcap
from ._sys.consts import XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, XDP_PACKET_HEADROOM

__all__ = ["Direction", "XdpConfig"]

FRAME_SIZES = (2048, 4096)

#: The one table of XDP attach modes: the name this library's API and CLI use
#: -> the if_link.h XDP_FLAGS_* bit given to the kernel. ("hw", offload, is
#: left out: no driver we can test offloads, and veth refuses it with EINVAL.)
XDP_MODE_FLAGS: dict[str, int] = {"native": XDP_FLAGS_DRV_MODE, "skb": XDP_FLAGS_SKB_MODE}

#: Every mode a caller may ask for; "auto" means native where the driver
#: supports it, else skb (generic).
XDP_MODES: tuple[str, ...] = ("auto", *XDP_MODE_FLAGS)
MAX_RING_ENTRIES = 1 << 20  # far above any driver's needs; keeps mappings sane


class Direction(enum.Enum):
    """Which halves a socket has."""

    TX = "tx"
    RX = "rx"
    BOTH = "both"


def _check_pow2(name: str, value: object) -> None:
    value = check_int(name, value, min=1, max=MAX_RING_ENTRIES)
    if value & (value - 1):
        raise ValueError(
            f"{name} must be a power of two between 1 and {MAX_RING_ENTRIES}, got {value}"
        )


@dataclass(frozen=True)
class XdpConfig:
    """How a socket and its UMEM are set up. Every field has a sensible default.

    * ``zero_copy``: ``None`` lets the kernel choose, ``True`` forces
      ``XDP_ZEROCOPY`` (fails with EOPNOTSUPP where the driver lacks it, e.g.
      veth), ``False`` forces ``XDP_COPY``.
    * ``huge_page``: ``None`` uses 2 MiB huge pages for the UMEM when enough are
      free and falls back to normal pages otherwise; ``True`` requires them;
      ``False`` never uses them.
    * ``need_wakeup``: bind with ``XDP_USE_NEED_WAKEUP`` so the kernel asks for
      kicks only when it needs them (saves syscalls).
    * ``frame_size``: 2048 or 4096 bytes per UMEM frame. TX can use the whole
      frame; in copy mode RX can use ``frame_size - 256 - headroom`` (the kernel
      reserves XDP_PACKET_HEADROOM in front of received data).
    * ``frame_count``: UMEM frames in total. A bidirectional socket gives half
      to RX (Fill ring) and half to TX.
    * ``headroom``: bytes the kernel leaves free before each received packet.
    * ``rx_size``, ``tx_size``, ``fill_size``, ``comp_size``: ring entries,
      powers of two.
    * ``xdp_mode``: how the built-in XDP program attaches: ``"auto"`` (native
      where the driver supports it, else generic/skb), ``"native"``, ``"skb"``.
    * ``xskmap_fd``: the fd of your own XSKMAP; the library then only inserts
      the socket at its queue (or at ``xskmap_key``) and loads no program.
    * ``xskmap_key``: the key of ``xskmap_fd`` this socket takes (default:
      its queue id), for programs that pick the socket by something else
      than the queue. On a shared :class:`~xdp_socket.Umem` it also lets
      several sockets bind the *same* interface queue: they then share one
      Fill and one Completion ring (see docs/shared-umem.md).
    * ``tx_budget``: frames the kernel sends per copy-mode kick
      (``XDP_MAX_TX_SKB_BUDGET``, Linux 6.15+); ``None`` keeps the kernel's 32.
    * ``busy_poll``: microseconds of preferred busy polling (``SO_BUSY_POLL``
      with ``SO_PREFER_BUSY_POLL``, budget 64); ``None`` leaves it off.
    * ``filter``: a tcpdump filter (pcap-filter(7) expression, or classic BPF
      as ``(code, jt, jf, k)`` tuples) for RX: only matching frames reach the
      socket, all others pass to the kernel stack (see ``xdp_socket.filter``;
      needs libpcap for expressions, which are compiled here, so a bad one
      raises :class:`~xdp_socket.errors.FilterError` at once). All sockets of
      a process on one interface share one program, so they must ask for the
      same filter (or all for none): otherwise :class:`~xdp_socket.XdpBusyError`.
      Not with ``xskmap_fd`` (load ``filter_program_insns`` yourself then).
    * ``multi_buffer``: bind with ``XDP_USE_SG`` (Linux 6.6+ in copy mode) so
      packets longer than a frame (jumbo frames) are received as several
      descriptors, joined again by ``recv()`` and ``RxBatch.payloads()``, and
      ``send()`` sends them as a descriptor chain.
    """

    zero_copy: bool | None = None
    huge_page: bool | None = None
    need_wakeup: bool = True
    frame_size: int = 4096
    frame_count: int = 4096
    headroom: int = 0
    rx_size: int = 2048
    tx_size: int = 2048
    fill_size: int = 2048
    comp_size: int = 2048
    xdp_mode: str = "auto"
    xskmap_fd: int | None = None
    xskmap_key: int | None = None
    tx_budget: int | None = None
    busy_poll: int | None = None
    filter: str | tuple[tuple[int, int, int, int], ...] | None = None
    multi_buffer: bool = False

    def __post_init__(self) -> None:
        if self.frame_size not in FRAME_SIZES:
            raise ValueError(f"frame_size must be 2048 or 4096, got {self.frame_size!r}")
        check_int("frame_count", self.frame_count, min=2, max=1 << 22)
        for name in ("rx_size", "tx_size", "fill_size", "comp_size"):
            _check_pow2(name, getattr(self, name))
        most = self.frame_size - XDP_PACKET_HEADROOM - 128
        check_int("headroom", self.headroom, max=most,
                  what=f"0..{most} for {self.frame_size}-byte frames")
        if self.xdp_mode not in XDP_MODES:
            raise ValueError(f"xdp_mode must be one of {XDP_MODES}, got {self.xdp_mode!r}")
        if not isinstance(self.multi_buffer, bool):
            raise TypeError("multi_buffer must be True or False")
        for name in ("zero_copy", "huge_page"):
            if getattr(self, name) not in (None, True, False):
                raise TypeError(f"{name} must be None, True or False")
        if self.xskmap_fd is not None:
            check_int("xskmap_fd", self.xskmap_fd, what="a file descriptor (>= 0)")
        if self.xskmap_key is not None:
            check_int("xskmap_key", self.xskmap_key, max=0xFFFFFFFF)
            if self.xskmap_fd is None:
                raise ValueError("xskmap_key is a key of your own XSKMAP: set xskmap_fd too")
        if self.tx_budget is not None:
            check_int("tx_budget", self.tx_budget, min=1, what="a positive number of frames")
            if self.tx_budget > self.tx_size:
                # the kernel refuses it with EACCES, which reads like a
                # missing privilege
                raise ValueError(f"tx_budget {self.tx_budget} exceeds the TX ring "
                                 f"(tx_size {self.tx_size}): at most a ring's worth per kick")
        if self.busy_poll is not None:
            check_int("busy_poll", self.busy_poll, min=1,
                      what="a positive number of microseconds")
        if self.filter is not None:
            self._check_filter(self.filter)

    def _check_filter(self, spec: str | tuple[tuple[int, int, int, int], ...]) -> None:
        if self.xskmap_fd is not None:
            raise ValueError("filter and xskmap_fd exclude each other: with your own XSKMAP, "
                             "load xdp_socket.filter.filter_program_insns(map_fd, filter)")
        if isinstance(spec, str):
            # Compile now: a bad expression fails here, before any socket exists.
            _pcap.compile_expression(spec)
            return
        try:
            insns = tuple((int(c), int(jt), int(jf), int(k)) for c, jt, jf, k in spec)
        except (TypeError, ValueError):
            raise TypeError("filter must be a pcap-filter expression (str) or classic BPF "
                            "as (code, jt, jf, k) tuples") from None
        if not insns:
            raise ValueError("a classic BPF filter needs at least one instruction")
        # Tuples keep the frozen config hashable and comparable.
        object.__setattr__(self, "filter", insns)

    @property
    def rx_room(self) -> int:
        """Largest packet a frame can receive in copy mode."""
        return self.frame_size - XDP_PACKET_HEADROOM - self.headroom
