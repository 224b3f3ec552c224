"""Tests for xdp_socket.pcap: round trips, hand-built foreign files, malformed
input, streaming through pipes, and agreement with tcpdump / tshark / scapy."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path
from typing import IO

import pytest

from xdp_socket.pcap import (
    MAX_RECORD_LEN,
    CaptureFormatError,
    CaptureInterface,
    Packet,
    PcapngWriter,
    PcapWriter,
    open_capture,
    read_capture,
)

NS = 1_000_000_000
Writer = type[PcapWriter] | type[PcapngWriter]
WRITERS: list[Writer] = [PcapWriter, PcapngWriter]


def _frame(rng: random.Random, n: int) -> bytes:
    """A plausible Ethernet/IPv4/UDP frame of ``n`` bytes (n >= 42) or random bytes."""
    if n < 14:
        return rng.randbytes(n)
    if n < 42:  # local experimental ethertype: decoders print the frame length
        return rng.randbytes(12) + b"\x88\xb5" + rng.randbytes(n - 14)
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    ip_len = n - 14
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, ip_len, 1, 0, 64, 17, 0, b"\x0a\0\0\1", b"\x0a\0\0\2"
    )
    udp = struct.pack("!HHHH", 1234, 5678, ip_len - 20, 0)
    return eth + ip + udp + rng.randbytes(n - 42)


def _sample(seed: int = 1, count: int = 20) -> list[tuple[bytes, int]]:
    rng = random.Random(seed)
    sizes = [0, 1, 2, 3, 4, 5, 60, 64, 1514, 9000] + [rng.randrange(14, 1600) for _ in range(count)]
    base = 1_700_000_000 * NS
    return [(_frame(rng, n), base + rng.randrange(0, 10**12)) for n in sizes]


def _write(
    writer: Writer, dest: IO[bytes] | str | Path, pkts: list[tuple[bytes, int]], **kw: object
) -> None:
    with writer(dest, **kw) as w:  # type: ignore[arg-type]
        for data, ts in pkts:
            w.write(data, ts)


def _bytes_of(writer: Writer, pkts: list[tuple[bytes, int]], **kw: object) -> bytes:
    buf = io.BytesIO()
    _write(writer, buf, pkts, **kw)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("nanosecond", [True, False])
def test_round_trip(writer: Writer, nanosecond: bool, tmp_path: Path) -> None:
    pkts = _sample()
    path = tmp_path / "cap"
    _write(writer, path, pkts, nanosecond=nanosecond)
    with open_capture(path) as r:
        got = list(r)
        assert r.format == ("pcap" if writer is PcapWriter else "pcapng")
        assert r.linktype == 1
        assert r.snaplen == 262144
    assert len(got) == len(pkts)
    for p, (data, ts) in zip(got, pkts, strict=True):
        assert p.data == data
        assert p.orig_len == len(data)
        assert p.interface == 0
        assert p.timestamp_ns == (ts if nanosecond else ts // 1000 * 1000)


@pytest.mark.parametrize("writer", WRITERS)
def test_snaplen_cuts_and_keeps_orig_len(writer: Writer) -> None:
    buf = io.BytesIO()
    with writer(buf, snaplen=64) as w:
        w.write(b"a" * 100, 1)
        w.write(b"b" * 64, 2)
        w.write(b"c" * 10, 3, orig_len=1500)  # already cut by the caller
    got = list(read_capture(io.BytesIO(buf.getvalue())))
    assert got == [
        Packet(1, b"a" * 64, 100, 0),
        Packet(2, b"b" * 64, 64, 0),
        Packet(3, b"c" * 10, 1500, 0),
    ]


def test_empty_capture_is_valid() -> None:
    for writer in WRITERS:
        raw = _bytes_of(writer, [])
        assert list(read_capture(io.BytesIO(raw))) == []


def test_pcapng_if_name_and_buffer_types() -> None:
    np = pytest.importorskip("numpy")
    buf = io.BytesIO()
    with PcapngWriter(buf, if_name="veth0", linktype=113) as w:
        w.write(np.arange(6, dtype=np.uint8), 5)
        w.write(np.arange(2, dtype=np.uint16), 6)  # viewed as bytes
        w.write(bytearray(b"xy"), 7)
        w.write(memoryview(b"abcdef")[1:4], 8)
        assert w.packets_written == 4
    with open_capture(io.BytesIO(buf.getvalue())) as r:
        got = list(r)
        assert r.interfaces == [CaptureInterface(113, 262144, "veth0", NS, 0)]
    assert [p.data for p in got] == [bytes(range(6)), b"\0\0\1\0", b"xy", b"bcd"]


def test_default_timestamp_is_now() -> None:
    import time

    before = time.time_ns()
    for writer in WRITERS:
        buf = io.BytesIO()
        with writer(buf) as w:
            w.write(b"x")
        (p,) = read_capture(io.BytesIO(buf.getvalue()))
        assert before <= p.timestamp_ns <= time.time_ns()


# ---------------------------------------------------------------------------
# writer argument checking


@pytest.mark.parametrize("writer", WRITERS)
def test_writer_rejects_bad_arguments(writer: Writer) -> None:
    buf = io.BytesIO()
    w = writer(buf)
    with pytest.raises(ValueError):
        w.write(b"abc", 1, orig_len=2)
    with pytest.raises(ValueError):
        w.write(b"abc", -1)
    with pytest.raises(TypeError):
        w.write(b"abc", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        w.write(memoryview(bytes(8))[::2], 1)  # not contiguous
    with pytest.raises(TypeError):
        w.write("text", 1)  # type: ignore[arg-type]
    w.close()
    w.close()  # idempotent
    assert not buf.closed  # caller's file stays open
    with pytest.raises(ValueError):
        w.write(b"abc", 1)
    with pytest.raises(ValueError):
        writer(io.BytesIO(), snaplen=0)
    with pytest.raises(ValueError):
        writer(io.BytesIO(), linktype=-1)
    with pytest.raises(TypeError):
        writer(io.StringIO())  # type: ignore[arg-type]


def test_pcap_timestamp_range() -> None:
    w = PcapWriter(io.BytesIO())
    w.write(b"x", (2**32 - 1) * NS + NS - 1)
    with pytest.raises(ValueError):
        w.write(b"x", 2**32 * NS)


class _NoSeek(io.RawIOBase):
    """A write-only, non-seekable sink that accepts at most 7 bytes per call."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        chunk = bytes(memoryview(b))[:7]  # type: ignore[arg-type]
        self.data += chunk
        return len(chunk)

    def seek(self, *args: object) -> int:
        raise AssertionError("writer must not seek")

    def tell(self) -> int:
        raise AssertionError("writer must not tell")


@pytest.mark.parametrize("writer", WRITERS)
def test_writer_never_seeks_and_handles_short_writes(writer: Writer) -> None:
    pkts = _sample(count=3)
    sink = _NoSeek()
    _write(writer, sink, pkts)  # type: ignore[arg-type]
    assert bytes(sink.data) == _bytes_of(writer, pkts)


# ---------------------------------------------------------------------------
# streaming through pipes


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("buffered", [True, False])
def test_stream_through_pipe(writer: Writer, buffered: bool) -> None:
    rng = random.Random(7)
    # Packets larger than the 64 KiB pipe buffer force partial reads and writes.
    pkts = [(rng.randbytes(n), i) for i, n in enumerate([10, 200_000, 70_000, 0, 1514] * 4)]
    rfd, wfd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(wfd, "wb", buffering=-1 if buffered else 0) as out:
                _write(writer, out, pkts)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=produce)
    t.start()
    try:
        with os.fdopen(rfd, "rb", buffering=-1 if buffered else 0) as inp:
            got = [(p.data, p.timestamp_ns) for p in read_capture(inp)]
    finally:
        t.join(timeout=30)
    assert not t.is_alive()
    assert not errors
    assert got == pkts


def test_writer_to_stdout_pipe_of_subprocess() -> None:
    """`-w -` style: a child writes to sys.stdout.buffer, we read its stdout pipe."""
    code = textwrap.dedent(
        """
        import sys
        from xdp_socket.pcap import PcapngWriter
        with PcapngWriter(sys.stdout.buffer) as w:
            for i in range(1000):
                w.write(bytes([i % 256]) * (i % 300), i * 1000 + 7)
        """
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        got = list(read_capture(proc.stdout))
        assert proc.wait(timeout=30) == 0
    assert [(p.data, p.timestamp_ns) for p in got] == [
        (bytes([i % 256]) * (i % 300), i * 1000 + 7) for i in range(1000)
    ]


# ---------------------------------------------------------------------------
# hand-built foreign files


def _pcap_file(
    order: str,
    magic: int,
    recs: list[tuple[int, int, bytes, int]],
    snaplen: int = 65535,
    linktype: int = 1,
) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for sec, frac, data, orig in recs:
        out += struct.pack(order + "IIII", sec, frac, len(data), orig) + data
    return out


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcap_both_byte_orders_and_resolutions(order: str) -> None:
    recs = [(1_600_000_000, 999_999, b"abc", 3), (5, 1, b"", 60)]
    us = _pcap_file(order, 0xA1B2C3D4, recs, linktype=0x10000001)  # FCS bits set
    assert list(read_capture(io.BytesIO(us))) == [
        Packet(1_600_000_000 * NS + 999_999_000, b"abc", 3, 0),
        Packet(5 * NS + 1000, b"", 60, 0),
    ]
    with open_capture(io.BytesIO(us)) as r:
        assert r.linktype == 1
        assert r.snaplen == 65535
    recs = [(1_600_000_000, 999_999_999, b"abc", 3)]
    ns = _pcap_file(order, 0xA1B23C4D, recs)
    assert list(read_capture(io.BytesIO(ns))) == [
        Packet(1_600_000_000 * NS + 999_999_999, b"abc", 3, 0)
    ]


def _opt(o: str, code: int, value: bytes) -> bytes:
    return struct.pack(o + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _blk(o: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)


def _shb(o: str) -> bytes:
    return _blk(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(o: str, linktype: int, snaplen: int, *opts: bytes) -> bytes:
    body = struct.pack(o + "HHI", linktype, 0, snaplen) + b"".join(opts)
    if opts:
        body += _opt(o, 0, b"")
    return _blk(o, 1, body)


def _epb(
    o: str, iface: int, ts: int, data: bytes, orig: int | None = None, opts: bytes = b""
) -> bytes:
    orig = len(data) if orig is None else orig
    head = struct.pack(o + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), orig)
    return _blk(o, 6, head + data + b"\0" * (-len(data) % 4) + opts)


def _foreign_pcapng() -> tuple[bytes, list[Packet]]:
    """Two sections (big- then little-endian), four interfaces, all block kinds."""
    be, le = ">", "<"
    out = _shb(be)
    out += _blk(be, 0x00000004, b"name resolution, skipped" + bytes(4))  # NRB
    out += _idb(be, 1, 0)  # default resolution: microseconds
    out += _idb(be, 101, 128, _opt(be, 2, b"eth7"), _opt(be, 9, bytes([3])))  # ms
    out += _idb(be, 1, 0, _opt(be, 9, bytes([0x80 | 10])), _opt(be, 14, struct.pack(">q", 100)))
    out += _epb(be, 0, 1_600_000_000_123_456, b"first", 99)
    out += _epb(be, 1, 1_600_000_000_123, b"raw ip")
    out += _epb(be, 2, 3 * 1024 + 512, b"pow2", opts=_opt(be, 2, b"\0\0\0\1") + _opt(be, 0, b""))
    out += _blk(be, 0x40000BAD, b"custom block, skipped")
    out += _blk(be, 3, struct.pack(">I", 3) + b"spb")  # SPB on interface 0
    out += _blk(be, 2, struct.pack(">HHIIII", 1, 0, 0, 2000, 2, 2) + b"pb")  # obsolete PB
    out += _shb(le)
    out += _idb(le, 1, 4, _opt(le, 9, bytes([9])), _opt(le, 2, b"lo"))
    out += _epb(le, 0, 7, b"second section", 20)  # longer than snaplen: kept as stored
    out += _blk(le, 3, struct.pack("<I", 14) + b"second section")  # SPB cut to snaplen 4
    expected = [
        Packet(1_600_000_000_123_456_000, b"first", 99, 0),
        Packet(1_600_000_000_123_000_000, b"raw ip", 6, 1),
        Packet((3 * 1024 + 512) * NS // 1024 + 100 * NS, b"pow2", 4, 2),
        Packet(0, b"spb", 3, 0),
        Packet(2000 * NS // 1000, b"pb", 2, 1),  # interface 1 counts ms
        Packet(7, b"second section", 20, 3),
        Packet(0, b"seco", 14, 3),
    ]
    return out, expected


def test_pcapng_foreign_sections_interfaces_blocks() -> None:
    raw, expected = _foreign_pcapng()
    with open_capture(io.BytesIO(raw)) as r:
        assert list(r) == expected
        assert [
            (i.linktype, i.snaplen, i.name, i.ts_units, i.ts_offset_s) for i in r.interfaces
        ] == [
            (1, 0, None, 10**6, 0),
            (101, 128, "eth7", 10**3, 0),
            (1, 0, None, 1024, 100),
            (1, 4, "lo", 10**9, 0),
        ]


# --- pcapng in batches: the accelerated scan and the block parser agree ---------------


def _mixed_pcapng(n: int = 300) -> tuple[bytes, list[Packet]]:
    """The foreign file, then runs of EPBs (mixed lengths, some with options,
    two interfaces of the second section with different resolutions) cut by
    a skipped custom block and an SPB."""
    raw, expected = _foreign_pcapng()
    le = "<"
    raw += _idb(le, 1, 0, _opt(le, 9, bytes([6])))  # interface 4: microseconds
    tail = b""
    for i in range(n):
        data = bytes([i % 251]) * (i % 97 + 1)
        iface, ts = (3, 5_000 + i) if i % 3 else (4, 1_700_000_000_000_000 + i)
        tail += _epb(le, iface - 3, ts, data, len(data) + i % 2,
                     opts=_opt(le, 1, b"comment") if i % 7 == 0 else b"")
        expected.append(Packet(ts if iface == 3 else ts * 1000, data, len(data) + i % 2, iface))
        if i == n // 2:
            tail += _blk(le, 0x40000BAD, b"custom") + _blk(le, 3, struct.pack("<I", 2) + b"ab")
            expected.append(Packet(0, b"ab", 2, 3))
    return raw + tail, expected


def _batched(src: IO[bytes] | Path, max_packets: int) -> list[Packet]:
    got: list[Packet] = []
    with open_capture(src) as r:
        for b in r.batches(max_packets):
            assert 0 < len(b.lens) <= max_packets
            for i in range(len(b.lens)):
                got.append(Packet(int(b.timestamps_ns[i]), bytes(b.data[i, : b.lens[i]]),
                                  int(b.orig_lens[i]), int(b.interfaces[i])))
    return got


def _accel_modes() -> list[str]:
    from xdp_socket import accelerator

    return ["c", "python"] if accelerator() == "c" else ["python"]


@pytest.fixture(params=_accel_modes())
def ng_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """batches() on pcapng through the accelerated scan ("c") or the block
    parser alone ("python", as without the accelerator)."""
    from xdp_socket import _ring

    if request.param == "python":
        monkeypatch.setattr(_ring, "accel", None)
    return str(request.param)


@pytest.mark.parametrize("chunk", [61, 997, 1 << 22])
@pytest.mark.parametrize("max_packets", [1, 5, 256])
def test_pcapng_batches_match_iteration(ng_path: str, chunk: int, max_packets: int,
                                        monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    import xdp_socket.pcap as pcap_mod

    monkeypatch.setattr(pcap_mod, "_BATCH_CHUNK", chunk)
    raw, expected = _mixed_pcapng()
    assert list(read_capture(io.BytesIO(raw))) == expected
    assert _batched(io.BytesIO(raw), max_packets) == expected
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(raw)
    assert _batched(path, max_packets) == expected  # the readinto path


def test_pcapng_batches_take_runs_of_epbs_in_one_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the accelerator a run of EPBs is one pcap_scan call and one batch,
    not a packet at a time."""
    from xdp_socket import _ring

    if _ring.accel is None:
        pytest.skip("the scan is the accelerator's (the python path is tested above)")
    calls: list[int] = []
    real = _ring.accel

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def pcap_scan(self, *a: object) -> object:
            calls.append(len(a))
            return real.pcap_scan(*a)

    monkeypatch.setattr(_ring, "accel", Counting())
    buf = io.BytesIO()
    with PcapngWriter(buf) as w:
        for i in range(1000):
            w.write(bytes([i % 256]) * 60, NS + i)
    with open_capture(io.BytesIO(buf.getvalue())) as r:
        sizes = [len(b.lens) for b in r.batches(256)]
    assert sizes == [256, 256, 256, 232]
    assert calls == [8] * 4  # the pcapng form of the call, once per batch


def test_pcapng_batches_fail_like_iteration(ng_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut anywhere or corrupted at random, a pcapng file gives batches() the
    error iteration gives, at the same offset (or both read it whole): the
    scan leaves every block it does not take to the block parser."""
    import xdp_socket.pcap as pcap_mod

    monkeypatch.setattr(pcap_mod, "_BATCH_CHUNK", 997)
    raw, _ = _mixed_pcapng(40)

    def outcome(data: bytes, max_packets: int | None) -> tuple[str, object]:
        try:
            if max_packets is None:
                return "ok", list(read_capture(io.BytesIO(data)))
            return "ok", _batched(io.BytesIO(data), max_packets)
        except CaptureFormatError as e:
            return "error", str(e)

    for n in range(0, len(raw), 3):
        assert outcome(raw[:n], 64) == outcome(raw[:n], None), n
    rng = random.Random(7)
    for _ in range(800):
        buf = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            buf[rng.randrange(len(buf))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        got = outcome(bytes(buf), rng.choice([1, 7, 64]))
        if got[0] == "error" and "64-bit nanoseconds" in str(got[1]):
            continue  # a corrupted timestamp that a Python int holds and int64 does not
        assert got == outcome(bytes(buf), None)


def test_pcapng_batch_timestamp_beyond_int64(ng_path: str) -> None:
    le = "<"
    raw = _shb(le) + _idb(le, 1, 0, _opt(le, 9, bytes([9]))) + _epb(le, 0, (1 << 64) - 1, b"x")
    assert next(read_capture(io.BytesIO(raw))).timestamp_ns == (1 << 64) - 1
    with pytest.raises(CaptureFormatError, match="64-bit nanoseconds"):
        _batched(io.BytesIO(raw), 8)


# ---------------------------------------------------------------------------
# malformed input


def _boundaries(raw: bytes) -> dict[int, int]:
    """Byte offsets where a well-formed prefix ends -> packets in that prefix."""
    out: dict[int, int] = {}
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        pos, count = 0, 0
        while pos < len(raw):
            btype, n = struct.unpack("<II", raw[pos : pos + 8])
            pos += n
            count += btype in (2, 3, 6)
            out[pos] = count  # every block boundary ends a valid capture
    else:
        pos, count = 24, 0
        out[pos] = 0
        while pos < len(raw):
            (incl,) = struct.unpack("<I", raw[pos + 8 : pos + 12])
            pos += 16 + incl
            count += 1
            out[pos] = count
    return out


@pytest.mark.parametrize("writer", WRITERS)
def test_truncated_at_every_offset(writer: Writer) -> None:
    pkts = _sample(count=2)[5:9]
    raw = (
        _bytes_of(writer, pkts, if_name="x") if writer is PcapngWriter else _bytes_of(writer, pkts)
    )
    ok = _boundaries(raw)
    assert ok[len(raw)] == len(pkts)
    for n in range(len(raw) + 1):
        prefix = raw[:n]
        if n in ok:
            assert len(list(read_capture(io.BytesIO(prefix)))) == ok[n]
        else:
            with pytest.raises(CaptureFormatError) as ei:
                list(read_capture(io.BytesIO(prefix)))
            msg = str(ei.value)
            assert "\n" not in msg and "offset" in msg
            assert ei.value.offset is not None and 0 <= ei.value.offset <= n


def test_truncated_foreign_pcapng_never_crashes() -> None:
    raw, _ = _foreign_pcapng()
    for n in range(len(raw)):
        with contextlib.suppress(CaptureFormatError):
            list(read_capture(io.BytesIO(raw[:n])))


@pytest.mark.parametrize("which", ["pcap", "pcapng", "foreign"])
def test_random_corruption_gives_only_capture_format_error(which: str) -> None:
    if which == "foreign":
        raw, _ = _foreign_pcapng()
    else:
        raw = _bytes_of(PcapWriter if which == "pcap" else PcapngWriter, _sample(count=3)[:8])
    rng = random.Random(42)
    for _ in range(1500):
        buf = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(len(buf))
            buf[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        try:
            for p in read_capture(io.BytesIO(bytes(buf))):
                assert len(p.data) <= len(buf)
        except CaptureFormatError:
            pass


def _err(raw: bytes) -> str:
    with pytest.raises(CaptureFormatError) as ei:
        list(read_capture(io.BytesIO(raw)))
    assert isinstance(ei.value, ValueError)
    return str(ei.value)


def test_bad_magic_and_short_files() -> None:
    assert "empty" in _err(b"")
    assert "too short" in _err(b"\xd4\xc3")
    assert "unknown magic" in _err(b"GIF89a" + bytes(40))
    # Kuznetzov's modified pcap is not supported
    assert "unknown magic" in _err(struct.pack("<I", 0xA1B2CD34) + bytes(20))
    assert "truncated pcap file header" in _err(struct.pack("<I", 0xA1B2C3D4) + bytes(10))
    assert "version" in _err(struct.pack("<IHHiIII", 0xA1B2C3D4, 1, 0, 0, 0, 65535, 1))


def test_huge_lengths_do_not_allocate() -> None:
    hdr = _pcap_file("<", 0xA1B2C3D4, [])
    cases = [
        # pcap record longer than the sanity limit
        hdr + struct.pack("<IIII", 0, 0, 0xFFFFFFFF, 0xFFFFFFFF) + b"x" * 50,
        hdr + struct.pack("<IIII", 0, 0, MAX_RECORD_LEN + 1, 1) + b"x" * 50,
        # pcap record just under the limit, in a tiny file: truncated, not a MemoryError
        hdr + struct.pack("<IIII", 0, 0, MAX_RECORD_LEN, 1) + b"x" * 50,
        # pcapng blocks claiming gigabytes
        _shb("<") + struct.pack("<II", 6, 0xFFFFFFF0) + bytes(64),
        _shb("<") + struct.pack("<II", 0x999, MAX_RECORD_LEN) + bytes(64),
        struct.pack("<II", 0x0A0D0D0A, 0xFFFFFFFC) + struct.pack("<I", 0x1A2B3C4D) + bytes(64),
    ]
    tracemalloc.start()
    try:
        for raw in cases:
            msg = _err(raw)
            assert "limit" in msg or "truncated" in msg, msg
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_inconsistent_pcapng_blocks() -> None:
    o = "<"
    good = _shb(o) + _idb(o, 1, 0)
    epb = _epb(o, 0, 1, b"abcd")
    # trailing length differs from leading length
    bad_trailer = epb[:-4] + struct.pack("<I", len(epb) + 4)
    assert "trailing length" in _err(good + bad_trailer)
    # length not a multiple of 4 / below the minimum
    assert "multiple of 4" in _err(good + struct.pack("<II", 6, 34) + bytes(30))
    assert "minimum" in _err(good + struct.pack("<II", 6, 8) + bytes(8))
    assert "minimum" in _err(
        struct.pack("<II", 0x0A0D0D0A, 24) + struct.pack("<I", 0x1A2B3C4D) + bytes(16)
    )
    # captured length larger than the block
    head = struct.pack("<IIIII", 0, 0, 1, 400, 400)
    assert "captured length" in _err(good + _blk(o, 6, head + b"abcd"))
    # EPB shorter than its fixed fields
    assert "too short" in _err(good + _blk(o, 6, bytes(8)))
    # packet on an interface that was never described
    assert "interface 1" in _err(good + _epb(o, 1, 1, b"x"))
    assert "interface 0" in _err(_shb(o) + _epb(o, 0, 1, b"x"))
    # new section resets interface numbering
    assert "interface 0" in _err(good + _shb(o) + _epb(o, 0, 1, b"x"))
    # bad byte-order magic, unsupported version
    assert "byte-order" in _err(struct.pack("<III", 0x0A0D0D0A, 28, 0x12345678) + bytes(16))
    shb2 = _blk(o, 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1))
    assert "version 2.0" in _err(shb2)
    # an option running past the end of its block
    body = struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 2, 200) + b"abcd"
    assert "overruns" in _err(_shb(o) + _blk(o, 1, body))
    # IDB too short; if_tsoffset of the wrong size
    assert "too short" in _err(_shb(o) + _blk(o, 1, b"\1\0\0\0"))
    assert "if_tsoffset" in _err(_shb(o) + _idb(o, 1, 0, _opt(o, 14, b"1234")))


def test_reader_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        open_capture(io.StringIO("x"))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        open_capture(tmp_path / "missing.pcap")
    path = tmp_path / "a.pcap"
    _write(PcapWriter, path, _sample(count=1))
    r = open_capture(path)
    next(r)
    r.close()
    with pytest.raises(ValueError):
        next(r)


# ---------------------------------------------------------------------------
# interop with independent implementations

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
needs_tshark = pytest.mark.skipif(
    shutil.which("tshark") is None or shutil.which("editcap") is None,
    reason="tshark/editcap not installed (apt-get install tshark)",
)


def _run(*cmd: str | Path) -> str:
    res = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, f"{cmd}: {res.stderr}"
    return res.stdout


def _epoch_to_ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * NS + int((frac + "000000000")[:9])


def _tcpdump_packets(path: Path) -> list[tuple[int, int, bytes]]:
    """(timestamp_ns, wire length, captured bytes) as tcpdump -r prints them."""
    # -e puts the frame length first on the line ("..., length N: ...").
    out = _run("tcpdump", "-r", path, "-nn", "-e", "-xx", "-tt", "--time-stamp-precision=nano")
    pkts: list[tuple[int, int, bytearray]] = []
    for line in out.splitlines():
        m = re.match(r"^\s+0x[0-9a-f]+:\s+((?:[0-9a-f]{2,4}\s?)+)$", line)
        if m:
            pkts[-1][2].extend(bytes.fromhex(m.group(1).replace(" ", "")))
            continue
        m = re.match(r"^(\d+\.\d{9}) .*?length (\d+)", line)
        if m:
            pkts.append((_epoch_to_ns(m.group(1)), int(m.group(2)), bytearray()))
    return [(t, n, bytes(d)) for t, n, d in pkts]


def _tshark_packets(path: Path) -> list[tuple[int, int, bytes]]:
    """(timestamp_ns, frame.len, raw bytes) from tshark's JSON output."""
    frames = json.loads(_run("tshark", "-r", path, "-T", "json", "-x"))
    out = []
    for f in frames:
        layers = f["_source"]["layers"]
        frame = layers["frame"]
        raw = layers["frame_raw"][0] if "frame_raw" in layers else ""
        out.append(
            (_epoch_to_ns(frame["frame.time_epoch"]), int(frame["frame.len"]), bytes.fromhex(raw))
        )
    return out


def _ours(path: Path) -> list[tuple[int, int, bytes]]:
    return [(p.timestamp_ns, p.orig_len, p.data) for p in read_capture(path)]


def _interop_sample() -> list[tuple[bytes, int]]:
    # Zero-length frames are skipped: tcpdump prints no hex line for them.
    pkts = [(d, ts) for d, ts in _sample(seed=3, count=15) if len(d) >= 14]
    exp = b"\x88\xb5"  # local experimental ethertype
    edges = [
        (b"\xff" * 12 + exp + b"\xff" * 46, 1_700_000_000 * NS + 1),
        (b"\x01" * 12 + exp + b"\x01" * 56, 1_700_000_001 * NS - 1),
    ]
    return pkts + edges


@needs_tcpdump
@pytest.mark.parametrize("writer", WRITERS)
def test_tcpdump_reads_our_files(writer: Writer, tmp_path: Path) -> None:
    pkts = _interop_sample()
    path = tmp_path / "ours"
    _write(writer, path, pkts, snaplen=1000)
    theirs = _tcpdump_packets(path)
    assert theirs == _ours(path)
    assert [(t, d) for t, _, d in theirs] == [(ts, d[:1000]) for d, ts in pkts]


@needs_tshark
@pytest.mark.parametrize("writer", WRITERS)
def test_tshark_reads_our_files(writer: Writer, tmp_path: Path) -> None:
    pkts = _interop_sample()
    path = tmp_path / "ours"
    _write(writer, path, pkts, snaplen=1000)
    theirs = _tshark_packets(path)
    assert theirs == _ours(path)
    assert [(t, n, d) for t, n, d in theirs] == [(ts, len(d), d[:1000]) for d, ts in pkts]


@needs_tshark
def test_tshark_reads_if_name(tmp_path: Path) -> None:
    path = tmp_path / "n.pcapng"
    _write(PcapngWriter, path, _interop_sample()[:2], if_name="veth-xdp0")
    names = _run("tshark", "-r", path, "-T", "fields", "-e", "frame.interface_name").split()
    assert names == ["veth-xdp0", "veth-xdp0"]


@needs_tshark
@pytest.mark.parametrize(
    ("fmt", "us_only"), [("pcapng", False), ("nsecpcap", False), ("pcap", True)]
)
def test_we_read_editcap_output(fmt: str, us_only: bool, tmp_path: Path) -> None:
    pkts = _interop_sample()
    src = tmp_path / "src.pcapng"
    _write(PcapngWriter, src, pkts)
    dst = tmp_path / f"out.{fmt}"
    _run("editcap", "-F", fmt, src, dst)
    got = _ours(dst)
    want = [(ts // 1000 * 1000 if us_only else ts, len(d), d) for d, ts in pkts]
    assert got == want
    assert _tshark_packets(dst) == got


@needs_tshark
def test_we_read_mergecap_multi_interface(tmp_path: Path) -> None:
    a, b, out = tmp_path / "a.pcapng", tmp_path / "b.pcap", tmp_path / "m.pcapng"
    _write(PcapngWriter, a, [(b"A" * 60, 10 * NS), (b"A" * 61, 30 * NS)], if_name="ifa")
    _write(PcapWriter, b, [(b"B" * 20, 20 * NS)], linktype=101, nanosecond=False)
    _run("mergecap", "-F", "pcapng", "-w", out, a, b)
    with open_capture(out) as r:
        got = [(p.timestamp_ns, p.data, r.interfaces[p.interface].linktype) for p in r]
        assert len(r.interfaces) == 2
    assert got == [(10 * NS, b"A" * 60, 1), (20 * NS, b"B" * 20, 101), (30 * NS, b"A" * 61, 1)]
    assert _tshark_packets(out) == _ours(out)


def test_scapy_reads_our_files(tmp_path: Path) -> None:
    scapy_all = pytest.importorskip("scapy.all")
    pkts = _interop_sample()
    for writer in WRITERS:
        path = tmp_path / "s"
        _write(writer, path, pkts)
        got = [(int(p.time * NS), bytes(p)) for p in scapy_all.rdpcap(str(path))]
        assert got == [(ts, d) for d, ts in pkts]


_CAPTURE_SCRIPT = r"""
set -e
mount --make-rprivate / 2>/dev/null || true
ip link set lo up
timeout 20 tcpdump -i lo -nn -c {count} --time-stamp-precision=nano -w "$1" udp 2>"$1.err" &
pid=$!
for i in $(seq 1 100); do grep -q listening "$1.err" && break; sleep 0.1; done
"$2" -c 'import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in range({count}):
    s.sendto(bytes([n]) * (n * 37 + 1), ("127.0.0.1", 9))
    time.sleep(0.01)'
wait $pid
"""


@needs_tcpdump
def test_we_read_tcpdump_capture(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("capturing needs root and unshare")
    count = 6
    path = tmp_path / "lo.pcap"
    res = subprocess.run(
        [
            "unshare",
            "-n",
            "--",
            "bash",
            "-c",
            _CAPTURE_SCRIPT.format(count=count),
            "cap",
            str(path),
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"could not capture in a private namespace: {res.stderr.strip()[-200:]}")
    with open_capture(path) as r:
        got = list(r)
        assert r.format == "pcap"
        assert r.nanosecond is True
    assert len(got) == count
    for n, p in enumerate(got):
        # lo frames carry a zeroed Ethernet header, then IPv4 (20) + UDP (8).
        assert p.data[42:] == bytes([n]) * (n * 37 + 1)
        assert p.orig_len == len(p.data)
    assert _tcpdump_packets(path) == _ours(path)
    # Through a pipe, as `tcpdump -r FILE -w - | ...` would deliver it.
    with subprocess.Popen(
        ["tcpdump", "-r", str(path), "--time-stamp-precision=nano", "-w", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        piped = [(p.timestamp_ns, p.orig_len, p.data) for p in read_capture(proc.stdout)]
    assert piped == _ours(path)
    if shutil.which("editcap"):
        ng = tmp_path / "lo.pcapng"
        _run("editcap", "-F", "pcapng", path, ng)
        assert _ours(ng) == _ours(path)


@pytest.mark.parametrize("writer", WRITERS)
def test_open_on_live_pipe_returns_after_header(writer: Writer) -> None:
    """The header is parsed at open time, without waiting for a first packet."""
    rfd, wfd = os.pipe()
    with os.fdopen(rfd, "rb") as inp, os.fdopen(wfd, "wb") as out:
        w = writer(out, linktype=113, snaplen=96)
        w.flush()
        r = open_capture(inp)  # would block forever if it waited for a packet
        assert (r.linktype, r.snaplen) == (113, 96)
        w.write(b"p" * 100, 42)
        w.close()
        out.close()
        assert list(r) == [Packet(42, b"p" * 96, 100, 0)]


def test_read_capture_checks_header_immediately() -> None:
    with pytest.raises(CaptureFormatError):
        read_capture(io.BytesIO(b"not a capture file"))


@pytest.mark.parametrize("writer", [PcapWriter, PcapngWriter])
def test_batches_on_a_live_pipe_hand_on_what_has_arrived(writer: Writer, ng_path: str) -> None:
    """batches() on a pipe whose writer is still open yields the packets
    that have arrived, without waiting for a whole chunk or for the writer
    to close (``tcpdump -w - | xdp-socket replay -``; dumpcap writes pcapng)."""
    rfd, wfd = os.pipe()
    with os.fdopen(rfd, "rb") as inp, os.fdopen(wfd, "wb") as out:
        w = writer(out)
        for i in range(3):
            w.write(b"first" + bytes(60), NS + i)
        w.flush()
        got: list[list[int]] = []

        def read() -> None:
            with open_capture(inp) as r:
                for b in r.batches(64):
                    got.append([int(t) for t in b.timestamps_ns])

        t = threading.Thread(target=read, daemon=True)
        t.start()
        end = time.monotonic() + 5
        while sum(map(len, got)) < 3 and time.monotonic() < end:
            time.sleep(0.01)
        assert sum(map(len, got)) == 3, "the first packets waited for more"
        w.write(b"second" + bytes(60), NS + 3)
        w.close()
        out.close()
        t.join(5)
        assert not t.is_alive()
    assert [ts for b in got for ts in b] == [NS, NS + 1, NS + 2, NS + 3]
