"""Layer 3 (lowest rank): the one builder of test and benchmark frames.

Pure Python, no kernel: :func:`build_udp_frame` makes an Ethernet/IPv4/UDP
frame with both checksums right, and :func:`mac_bytes` parses a MAC address.
The traffic generator (:mod:`xdp_socket.gen`), the test kit
(:mod:`xdp_socket.testing`) and ``xdp-socket bench`` all build their frames
here, so there is one checksum routine to trust.
"""

from __future__ import annotations

import ipaddress

from ._check import check_int

__all__ = ["build_udp_frame", "mac_bytes"]

ETH_ZLEN = 60  # shortest Ethernet frame without FCS (if_ether.h ETH_ZLEN)
ETH_HLEN = 14  # if_ether.h ETH_HLEN: two MACs and the ethertype
_IPV4_HLEN = 20
_UDP_HLEN = 8
_ETH_P_IP = 0x0800
_IPPROTO_UDP = 17
_IP_DF = 0x4000
_PAYLOAD_TAG = b"xdp-socket-gen"

DEFAULT_DST_MAC = "02:00:00:00:00:02"
DEFAULT_SRC_MAC = "02:00:00:00:00:01"
DEFAULT_SRC_IP = "10.0.0.1"
DEFAULT_DST_IP = "10.0.0.2"
DEFAULT_SPORT = 9000
DEFAULT_DPORT = 9001

IPv4Like = str | bytes | int | ipaddress.IPv4Address


def mac_bytes(addr: bytes | bytearray | str, what: str = "MAC address") -> bytes:
    """6 bytes for a MAC address given as 6 bytes or ``"aa:bb:cc:dd:ee:ff"``
    (``-`` separators too); ValueError naming ``what`` otherwise."""
    if isinstance(addr, str):
        parts = addr.replace("-", ":").split(":")
        try:
            if len(parts) != 6 or any(not 1 <= len(p) <= 2 for p in parts):
                raise ValueError
            return bytes(int(p, 16) for p in parts)
        except ValueError:
            raise ValueError(f"{what}: not a MAC address: {addr!r}") from None
    if isinstance(addr, (bytes, bytearray)) and len(addr) == 6:
        return bytes(addr)
    raise ValueError(f"{what}: a MAC address is 6 bytes or 'aa:bb:cc:dd:ee:ff', got {addr!r}")


def _ipv4(addr: IPv4Like, what: str) -> bytes:
    if isinstance(addr, bool):  # IPv4Address(True) would be 0.0.0.1
        raise ValueError(f"{what}: not an IPv4 address: {addr!r}")
    try:
        return ipaddress.IPv4Address(addr).packed
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ValueError(f"{what}: not an IPv4 address: {addr!r}") from None


def _csum16(data: bytes) -> int:
    """RFC 1071 Internet checksum: one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_udp_frame(
    *,
    dst_mac: bytes | str = DEFAULT_DST_MAC,
    src_mac: bytes | str = DEFAULT_SRC_MAC,
    src_ip: IPv4Like = DEFAULT_SRC_IP,
    dst_ip: IPv4Like = DEFAULT_DST_IP,
    sport: int = DEFAULT_SPORT,
    dport: int = DEFAULT_DPORT,
    frame_size: int = 64,
    payload: bytes | None = None,
    ttl: int = 64,
) -> bytes:
    """An Ethernet/IPv4/UDP frame of exactly ``frame_size`` bytes (without FCS).

    The IPv4 header has no options, DF set, and a correct header checksum; the
    UDP checksum is filled in too. The UDP payload starts with ``payload``
    (default: the tag ``b"xdp-socket-gen"``, cut to fit) and is padded with the
    bytes 0, 1, 2, ... (mod 256) at their offset in the payload.
    ``frame_size`` is 60 (the Ethernet minimum) to 65549 (largest IPv4 packet
    plus the Ethernet header); what an interface can carry is smaller, see
    :class:`~xdp_socket.gen.TrafficGenerator`. A wrong type raises
    :class:`TypeError`, a value out of range :class:`ValueError`.
    """
    check_int("frame_size", frame_size, min=ETH_ZLEN, max=ETH_HLEN + 0xFFFF,
              what=f"{ETH_ZLEN}..{ETH_HLEN + 0xFFFF} bytes (without FCS)")
    check_int("ttl", ttl, max=255)
    dst, src = mac_bytes(dst_mac, "dst_mac"), mac_bytes(src_mac, "src_mac")
    sip, dip = _ipv4(src_ip, "src_ip"), _ipv4(dst_ip, "dst_ip")
    sp = check_int("sport", sport, max=0xFFFF, what="a port number 0..65535")
    dp = check_int("dport", dport, max=0xFFFF, what="a port number 0..65535")
    ip_len = frame_size - ETH_HLEN
    udp_len = ip_len - _IPV4_HLEN
    room = udp_len - _UDP_HLEN
    if payload is None:
        head = _PAYLOAD_TAG[:room]
    else:
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        head = bytes(payload)
        if len(head) > room:
            raise ValueError(
                f"payload of {len(head)} bytes does not fit a {frame_size}-byte frame "
                f"(room for {room})"
            )
    body = head + bytes(i & 0xFF for i in range(len(head), room))

    udp_nock = sp.to_bytes(2, "big") + dp.to_bytes(2, "big") + udp_len.to_bytes(2, "big")
    pseudo = sip + dip + bytes([0, _IPPROTO_UDP]) + udp_len.to_bytes(2, "big")
    ucsum = _csum16(pseudo + udp_nock + b"\0\0" + body)
    # RFC 768: a computed 0 is sent as all ones (0 means "no checksum").
    udp = udp_nock + (ucsum or 0xFFFF).to_bytes(2, "big") + body

    ip_nock = (
        bytes([0x45, 0])  # version 4, IHL 5 words; DSCP/ECN 0
        + ip_len.to_bytes(2, "big")
        + b"\0\0"  # identification (DF set: never fragmented)
        + _IP_DF.to_bytes(2, "big")
        + bytes([ttl, _IPPROTO_UDP])
    )
    ip = ip_nock + _csum16(ip_nock + b"\0\0" + sip + dip).to_bytes(2, "big") + sip + dip
    frame = dst + src + _ETH_P_IP.to_bytes(2, "big") + ip + udp
    assert len(frame) == frame_size
    return frame
