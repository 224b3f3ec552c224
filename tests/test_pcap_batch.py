"""xdp_socket.pcap, the batch side: write_batch writes the same bytes as
per-packet writes, batches() reads the same packets as iteration, the
pcapng interface list is bounded, and a path is never written through a
symlink or over anything but a regular file."""

from __future__ import annotations

import errno
import io
import os
import random
import stat
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from xdp_socket.pcap import (
    MAX_INTERFACES,
    CaptureFormatError,
    Packet,
    PcapngWriter,
    PcapWriter,
    open_capture,
    read_capture,
)

Writer = type[PcapWriter] | type[PcapngWriter]
WRITERS: list[Writer] = [PcapWriter, PcapngWriter]
BASE = 1_700_000_000_000_000_000


def _packets(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        # runs of equal lengths (the reader's fast path) and lone odd lengths
        size = 60 if (i // 37) % 2 == 0 else rng.randrange(0, 1600)
        out.append(rng.randbytes(size))
    return out


def _rows(pkts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, max(len(p) for p in pkts))
    rows = np.full((len(pkts), width), 0xEE, np.uint8)  # junk past each packet's end
    for i, p in enumerate(pkts):
        rows[i, : len(p)] = np.frombuffer(p, np.uint8)
    return rows, np.array([len(p) for p in pkts], np.uint32)


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("nanosecond", [True, False])
@pytest.mark.parametrize("snaplen", [262144, 100, 1])
def test_write_batch_matches_per_packet_writes(writer: Writer, nanosecond: bool,
                                               snaplen: int) -> None:
    pkts = _packets(1, 300)
    ts = BASE + np.arange(len(pkts), dtype=np.int64) * 1_234_567
    one, many = io.BytesIO(), io.BytesIO()
    with writer(one, snaplen=snaplen, nanosecond=nanosecond) as w:
        for p, t in zip(pkts, ts.tolist(), strict=True):
            w.write(p, t)
    rows, lens = _rows(pkts)
    with writer(many, snaplen=snaplen, nanosecond=nanosecond) as w:
        assert w.write_batch(rows[:100], lens[:100], ts[:100]) == 100
        w.write_batch(rows[100:], lens[100:], ts[100:], orig_lens=lens[100:])
        assert w.packets_written == len(pkts)
    assert many.getvalue() == one.getvalue()


@pytest.mark.parametrize("writer", WRITERS)
def test_write_batch_one_timestamp_and_orig_len(writer: Writer) -> None:
    rows = np.arange(5 * 64, dtype=np.uint8).reshape(5, 64)
    buf = io.BytesIO()
    with writer(buf) as w:
        w.write_batch(rows, np.full(5, 64), BASE + 7, orig_lens=np.full(5, 1500))
        w.write_batch(rows[:0], np.zeros(0, np.uint32), BASE)  # empty: nothing written
    got = list(read_capture(io.BytesIO(buf.getvalue())))
    assert got == [Packet(BASE + 7, bytes(r), 1500, 0) for r in rows]


@pytest.mark.parametrize("writer", WRITERS)
def test_write_batch_rejects_bad_input(writer: Writer) -> None:
    rows = np.zeros((3, 10), np.uint8)
    with writer(io.BytesIO()) as w:
        for args, kw, what in [
            ((rows.astype(np.int16), [1, 2, 3], 0), {}, "uint8"),
            ((rows, [1, 2], 0), {}, "3 integers"),
            ((rows, [1, 2, 11], 0), {}, "row width"),
            ((rows, [1, 2, 3], 0), {"orig_lens": [1, 1, 3]}, "smaller"),
            ((rows, [1, 2, 3], -1), {}, "timestamp"),
            ((rows, [1, 2, 3], [1, 2]), {}, "timestamps_ns"),
            ((rows, [1.0, 2.0, 3.0], 0), {}, "integers"),
        ]:
            with pytest.raises(ValueError, match=what):
                w.write_batch(*args, **kw)
        assert w.packets_written == 0


def _pcap_be(recs: list[tuple[int, int, bytes]]) -> bytes:
    out = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for sec, usec, data in recs:
        out += struct.pack(">IIII", sec, usec, len(data), len(data) + 4) + data
    return out


@pytest.mark.parametrize("writer", [*WRITERS, "big-endian"])
@pytest.mark.parametrize("max_packets", [1, 7, 256])
def test_batches_match_iteration(writer: Writer | str, max_packets: int) -> None:
    pkts = _packets(2, 2000)
    if writer == "big-endian":
        raw = _pcap_be([(1_600_000_000 + i, i, p) for i, p in enumerate(pkts)])
    else:
        buf = io.BytesIO()
        with writer(buf, snaplen=1000) as w:  # type: ignore[operator]
            for i, p in enumerate(pkts):
                w.write(p, BASE + i * 999)
        raw = buf.getvalue()
    want = list(read_capture(io.BytesIO(raw)))
    got: list[Packet] = []
    with open_capture(io.BytesIO(raw)) as r:
        for b in r.batches(max_packets):
            assert 0 < len(b.lens) <= max_packets
            assert b.data.shape[0] == len(b.lens) == len(b.orig_lens) == len(b.timestamps_ns)
            for i in range(len(b.lens)):
                got.append(Packet(int(b.timestamps_ns[i]), bytes(b.data[i, : b.lens[i]]),
                                  int(b.orig_lens[i]), int(b.interfaces[i])))
    assert got == want


@pytest.mark.parametrize("chunk", [997, 1 << 20])
def test_batches_from_a_file_stay_intact_and_read_only(tmp_path: Path, chunk: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A regular file is read straight into a new buffer per chunk (chunks
    that end inside records, too): every batch kept until the end still holds
    its own packets, and views into the buffer cannot be written through."""
    import xdp_socket.pcap as pcap_mod

    monkeypatch.setattr(pcap_mod, "_BATCH_CHUNK", chunk)
    pkts = _packets(5, 1500)
    path = tmp_path / "in.pcap"
    with PcapWriter(path) as w:
        for i, p in enumerate(pkts):
            w.write(p, BASE + i)
    with open_capture(path) as r:
        assert r._stream.regular  # the readinto path is the one under test
        kept = list(r.batches(8))
    got = [bytes(b.data[i, : b.lens[i]]) for b in kept for i in range(len(b.lens))]
    assert got == pkts
    assert [int(t) for b in kept for t in b.timestamps_ns] == [BASE + i for i in range(1500)]
    views = [b.data for b in kept if not b.data.flags.owndata]
    assert len(views) >= 50  # (20 runs of 37 equal lengths: 4 batches of 8 in each are views)
    for v in views:
        with pytest.raises(ValueError, match="read-only"):
            v[0, 0] = 1


def test_batches_report_truncation_like_iteration() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        for p in _packets(3, 100):
            w.write(p, BASE)
    raw = buf.getvalue()
    for cut in (len(raw) - 1, len(raw) - 70, 24 + 5):
        with pytest.raises(CaptureFormatError, match="truncated record"), \
                open_capture(io.BytesIO(raw[:cut])) as r:
            for _ in r.batches(64):
                pass
    with pytest.raises(ValueError, match="max_packets"), open_capture(io.BytesIO(raw)) as r:
        r.batches(0)


# --- pcapng interface blocks are bounded ------------------------------------------------


def _idb(if_name: bytes = b"") -> bytes:
    body = struct.pack("<HHI", 1, 0, 0)
    if if_name:
        body += struct.pack("<HH", 2, len(if_name)) + if_name + b"\0" * (-len(if_name) % 4)
        body += struct.pack("<HH", 0, 0)
    n = len(body) + 12
    return struct.pack("<II", 1, n) + body + struct.pack("<I", n)


def _shb() -> bytes:
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    return struct.pack("<II", 0x0A0D0D0A, 28) + body + struct.pack("<I", 28)


@pytest.mark.parametrize("name_len", [0, 60000])
def test_pcapng_interfaces_are_bounded(name_len: int) -> None:
    """20 MiB of interface blocks: a one-line error at the limit, and memory
    stays far below what keeping every block would take (160+ MiB before)."""
    idb = _idb(b"x" * name_len)
    count = max(MAX_INTERFACES + 10, (20 << 20) // len(idb))
    raw = _shb() + idb * count + _shb()
    tracemalloc.start()
    try:
        with pytest.raises(CaptureFormatError) as e, open_capture(io.BytesIO(raw)) as r:
            for _ in r:
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    assert "\n" not in msg
    assert f"more than {MAX_INTERFACES} interface description blocks" in msg
    assert f"at byte offset {28 + MAX_INTERFACES * len(idb)}" in msg
    assert peak < 8 << 20, peak


def test_pcapng_at_the_interface_limit_reads() -> None:
    raw = _shb() + _idb(b"eth0") * MAX_INTERFACES
    with open_capture(io.BytesIO(raw)) as r:
        assert list(r) == []
        assert len(r.interfaces) == MAX_INTERFACES
        assert r.interfaces[-1].name == "eth0"


def test_long_interface_name_is_cut_when_kept() -> None:
    with open_capture(io.BytesIO(_shb() + _idb(b"n" * 5000))) as r:
        list(r)
        assert r.interfaces[0].name == "n" * 256


def test_pcapng_writer_if_comment() -> None:
    buf = io.BytesIO()
    with PcapngWriter(buf, if_name="eth9", if_comment="stamped per batch") as w:
        w.write(b"abc", BASE)
    raw = buf.getvalue()
    assert b"stamped per batch" in raw
    with open_capture(io.BytesIO(raw)) as r:
        assert list(r) == [Packet(BASE, b"abc", 3, 0)]
        assert r.interfaces[0].name == "eth9"
        assert r.interfaces[0].ts_units == 10**9


# --- the output path is opened safely ---------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_refuses_symlink_and_leaves_target_alone(writer: Writer, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    link = tmp_path / "out.pcap"
    link.symlink_to(target)
    with pytest.raises(OSError) as e:
        writer(str(link))
    assert e.value.errno == errno.ELOOP
    assert "symbolic link" in str(e.value)
    assert target.read_bytes() == b"keep me"
    dangling = tmp_path / "dangling.pcap"
    dangling.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(OSError, match="symbolic link"):
        writer(dangling)
    assert not (tmp_path / "would-be-created").exists()


def test_refuses_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # No reader: a plain open for writing would block forever.
    code = ("import sys\nfrom xdp_socket.pcap import PcapWriter\n"
            "try:\n    PcapWriter(sys.argv[1])\nexcept OSError as e:\n"
            "    print(e.errno, e.strerror)\n")
    r = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{errno.EINVAL} ") and "not a regular file" in r.stdout
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_refuses_device_directory_and_hard_link(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not a regular file"):
        PcapWriter("/dev/null")
    with pytest.raises(OSError, match="not a regular file"):
        PcapWriter(tmp_path)
    first = tmp_path / "a.pcap"
    first.write_bytes(b"other data")
    os.link(first, tmp_path / "b.pcap")
    with pytest.raises(OSError, match="hard links"):
        PcapWriter(tmp_path / "b.pcap")
    assert first.read_bytes() == b"other data"


def test_overwrites_a_plain_file_and_creates_new_ones(tmp_path: Path) -> None:
    old = tmp_path / "old.pcap"
    old.write_bytes(b"x" * 10000)
    with PcapWriter(old) as w:
        w.write(b"abc", BASE)
    assert [p.data for p in read_capture(old)] == [b"abc"]
    assert old.stat().st_size == 24 + 16 + 3
    new = tmp_path / "new.pcapng"
    with PcapngWriter(new) as w:
        w.write(b"abc", BASE)
    assert new.stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_batches_hand_on_what_a_live_pipe_delivered() -> None:
    """A pipe that stays open after three packets: batches() yields them at
    once instead of waiting for a whole chunk (or the end of the stream)."""
    import threading

    r_fd, w_fd = os.pipe()
    wf = os.fdopen(w_fd, "wb", buffering=0)
    w = PcapWriter(wf)
    for i in range(3):
        w.write(bytes([i]) * 60, BASE + i)
    got: list[int] = []
    done = threading.Event()

    def read() -> None:
        with open(r_fd, "rb") as rf, open_capture(rf) as reader:
            for b in reader.batches(64):
                got.extend(int(x) for x in b.data[:, 0])
                if len(got) >= 3:
                    done.set()
        done.set()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        assert done.wait(10), "batches() waited for more than the pipe had"
        assert got == [0, 1, 2]
    finally:
        wf.close()  # end of stream: the reader finishes
        t.join(10)
