"""Streaming pcap and pcapng capture files.

Writing: :class:`PcapWriter` (classic libpcap format) and :class:`PcapngWriter`
(one section, one interface) append one packet per :meth:`~PcapWriter.write`
call, or a whole batch per :meth:`~PcapWriter.write_batch` call (record headers
built with numpy, one write), with nanosecond timestamps by default.  They
never seek, so the output may be a pipe (``sys.stdout.buffer`` for ``-w -``).
A path is opened without following a symbolic link and only if it is (or
becomes) a regular file: writing a capture as root must not clobber whatever
a planted link or a device node points at.

Reading: :func:`open_capture` / :func:`read_capture` detect the format from the
first four bytes and yield :class:`Packet` tuples one at a time, so a capture
larger than memory (or an endless stream on stdin) is fine.  Supported:

* pcap, both byte orders, microsecond (``0xa1b2c3d4``) and nanosecond
  (``0xa1b23c4d``) magic;
* pcapng, any number of sections (each with its own byte order) and up to
  :data:`MAX_INTERFACES` interfaces in all (each with its own ``if_tsresol``,
  decimal or power-of-two, and ``if_tsoffset``), Enhanced, Simple and obsolete
  Packet Blocks; other block types are skipped.

Anything malformed raises :class:`CaptureFormatError` (a :class:`ValueError`)
whose one-line message says what is wrong and at which byte offset.  Lengths
read from the file are checked against :data:`MAX_RECORD_LEN` before anything
is allocated, and long records are read in bounded chunks, so a hostile length
field in a short file costs nothing.

Pure Python (the stdlib, and numpy for batches), no kernel access.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
import stat
import struct
import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import IO, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _ring
from ._check import check_int

__all__ = [
    "LINKTYPE_ETHERNET",
    "MAX_INTERFACES",
    "MAX_RECORD_LEN",
    "CaptureFormatError",
    "CaptureInterface",
    "CaptureReader",
    "Packet",
    "PacketBatch",
    "PcapWriter",
    "PcapngWriter",
    "open_capture",
    "read_capture",
]

#: Link-layer header type for Ethernet (``LINKTYPE_ETHERNET`` / ``DLT_EN10MB``).
LINKTYPE_ETHERNET = 1

#: Largest captured length (pcap record or pcapng packet data) accepted when
#: reading.  Real link layers stay far below this (libpcap caps at 256 KiB);
#: the limit only exists so that a corrupt length cannot make us allocate
#: gigabytes.
MAX_RECORD_LEN = 256 * 1024 * 1024

#: Most pcapng interfaces (Interface Description Blocks, across all sections)
#: a reader keeps.  Real captures have a handful; without a bound, a file made
#: of nothing but IDBs would grow the reader's memory without limit while
#: "streaming".  More raise :class:`CaptureFormatError`.
MAX_INTERFACES = 4096

# An interface name longer than this is cut when kept (Linux names are at most
# 15 bytes, Windows device names ~50): with MAX_INTERFACES, this bounds what
# the interface list can hold at about a megabyte.
_MAX_IF_NAME = 256

# pcapng blocks carry a packet plus options; allow generous room for options
# on top of the largest packet before calling a block length absurd.
_MAX_BLOCK_LEN = MAX_RECORD_LEN + 1024 * 1024

# Reads of untrusted lengths happen in pieces of this size, so memory grows
# only as fast as data actually arrives.
_READ_CHUNK = 1024 * 1024
# What the batch reader reads at a time (a chunk holds thousands of records).
_BATCH_CHUNK = 4 * 1024 * 1024
_NO_BYTES = np.empty(0, np.uint8)
_END = object()  # next()'s default: the block parser has finished
# Shorter runs of equal-length records are batched with their neighbours.
_MIN_RUN = 8

# --- classic pcap (see the libpcap savefile format / draft-ietf-opsawg-pcap) ---
_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAP_VERSION = (2, 4)
_PCAP_HDR_LEN = 24
_PCAP_REC_LEN = 16

# --- pcapng (draft-ietf-opsawg-pcapng) ---
_BT_SHB = 0x0A0D0D0A  # palindromic on purpose: readable before the byte order is known
_BT_IDB = 0x00000001
_BT_PB = 0x00000002  # obsolete Packet Block
_BT_SPB = 0x00000003
_BT_EPB = 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_ENDOFOPT = 0
_OPT_COMMENT = 1
_OPT_SHB_USERAPPL = 4
_OPT_IF_NAME = 2
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14
_TSRESOL_POW2 = 0x80  # high bit of if_tsresol: 2**-n instead of 10**-n
_DEFAULT_TSRESOL = 6  # microseconds when an IDB has no if_tsresol option
_BLOCK_NAMES = {
    _BT_SHB: "section header block",
    _BT_IDB: "interface description block",
    _BT_PB: "packet block",
    _BT_SPB: "simple packet block",
    _BT_EPB: "enhanced packet block",
}

_NS_PER_S = 1_000_000_000

#: Anything holding packet bytes (numpy arrays work too, via the buffer protocol).
Buffer = bytes | bytearray | memoryview
#: A path to open, or an already open binary file object (may be a pipe).
FileOrPath = str | os.PathLike[str] | IO[bytes]


class CaptureFormatError(ValueError):
    """A capture file is malformed, truncated or in an unsupported format.

    ``offset`` is the byte offset in the stream where the problem was found
    (``None`` if unknown); it is also part of the message.
    """

    offset: int | None

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        if offset is not None:
            message = f"{message} (at byte offset {offset})"
        super().__init__(message)


class Packet(NamedTuple):
    """One captured packet.

    ``data`` holds the captured bytes, possibly cut to the snapshot length;
    ``orig_len`` is the packet's length on the wire.  ``interface`` is the
    index into :attr:`CaptureReader.interfaces` (always 0 for pcap).
    ``timestamp_ns`` is nanoseconds since the Unix epoch, UTC; it is 0 for a
    pcapng Simple Packet Block, which carries no timestamp.
    """

    timestamp_ns: int
    data: bytes
    orig_len: int
    interface: int


class PacketBatch(NamedTuple):
    """Consecutive packets of a capture, as arrays (see :meth:`CaptureReader.batches`).

    ``data`` is a ``(n, W)`` uint8 array, packet ``i`` in ``data[i, :lens[i]]``
    (bytes past that are not part of the packet); ``lens`` the captured
    lengths, ``orig_lens`` the lengths on the wire, ``timestamps_ns`` as in
    :class:`Packet`, ``interfaces`` the index of each packet's interface.
    ``data`` may be a read-only view into the reader's buffer.
    """

    timestamps_ns: npt.NDArray[np.int64]
    data: npt.NDArray[np.uint8]
    lens: npt.NDArray[np.uint32]
    orig_lens: npt.NDArray[np.uint32]
    interfaces: npt.NDArray[np.intp]


class CaptureInterface(NamedTuple):
    """An interface described by a capture file.

    pcap files have exactly one; pcapng has one per Interface Description
    Block, numbered in file order across all sections.  ``ts_units`` is the
    number of timestamp units per second (10**6 for microseconds).
    """

    linktype: int
    snaplen: int
    name: str | None
    ts_units: int
    ts_offset_s: int


# ---------------------------------------------------------------------------
# helpers


def _as_byte_view(data: Buffer) -> memoryview:
    """Return a flat unsigned-byte view of ``data`` or raise ValueError/TypeError."""
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise ValueError("packet data must be a contiguous buffer")
    if mv.ndim != 1 or mv.format not in ("B", "b", "c"):
        mv = mv.cast("B")
    return mv


def _write_all(f: IO[bytes], data: bytes | memoryview) -> None:
    # Raw (unbuffered) files and pipes may accept only part of a write; keep
    # going until everything is out.  Buffered files write everything at once.
    view = memoryview(data)
    while view:
        n = f.write(view)
        if n is None:  # non-blocking raw stream with a full pipe
            raise BlockingIOError("capture output would block")
        if n >= len(view):
            return
        view = view[n:]


# Buffer of a writer that opens its own file: a batch of records goes out in
# one system call now and then instead of one per packet.
_WRITE_BUFFER = 1 << 20


def open_output(path: str | os.PathLike[str], buffering: int = _WRITE_BUFFER) -> IO[bytes]:
    """Open ``path`` for writing a capture, safely for a privileged process.

    The last path component is never followed if it is a symbolic link
    (``O_NOFOLLOW``: ELOOP), and only a regular file with a single link is
    truncated and written; a FIFO, device, socket, directory or hard-linked
    file is refused with an :class:`OSError` before anything is written (the
    open itself is non-blocking, so a FIFO without a reader cannot hang it).
    A missing file is created with mode 0644 (less the umask).
    """
    fspath = os.fspath(path)
    try:
        st = os.lstat(fspath)
    except FileNotFoundError:
        pass
    else:
        # Checked before opening: opening a device can itself have effects.
        _refuse_unless_plain_file(st, fspath)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(fspath, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "refusing to write a capture through a symbolic "
                          "link", fspath) from None
        raise
    try:
        # The file may have been swapped between lstat and open: check what
        # was actually opened.
        _refuse_unless_plain_file(os.fstat(fd), fspath)
        os.set_blocking(fd, True)
        os.ftruncate(fd, 0)
        f = open(fd, "wb", buffering=buffering, closefd=True)  # noqa: SIM115
    except BaseException:
        os.close(fd)
        raise
    return f


def _refuse_unless_plain_file(st: os.stat_result, path: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, "refusing to write a capture through a symbolic link",
                      path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "refusing to write a capture over something that is "
                      "not a regular file", path)
    if st.st_nlink > 1:
        raise OSError(errno.EMLINK, "refusing to overwrite a file with other hard links",
                      path)


class _OutputMixin:
    """File handling shared by the two writers."""

    _file: IO[bytes] | None
    _owns_file: bool
    packets_written: int

    def _open_output(self, file_or_path: FileOrPath) -> None:
        if isinstance(file_or_path, (str, os.PathLike)):
            self._file = open_output(file_or_path)
            self._owns_file = True
        else:
            if not hasattr(file_or_path, "write"):
                raise TypeError("expected a path or a binary file object with write()")
            if isinstance(file_or_path, io.TextIOBase):
                raise TypeError("capture output must be a binary file (use sys.stdout.buffer)")
            self._file = file_or_path
            self._owns_file = False
        self.packets_written = 0

    def _out(self) -> IO[bytes]:
        if self._file is None:
            raise ValueError("write to a closed capture writer")
        return self._file

    def flush(self) -> None:
        """Push buffered data to the file (or pipe)."""
        self._out().flush()

    def close(self) -> None:
        """Flush, and close the file if the writer opened it from a path.

        A file object passed in by the caller is flushed but left open.
        Closing twice is harmless.
        """
        f = self._file
        if f is None:
            return
        self._file = None
        try:
            f.flush()
        finally:
            if self._owns_file:
                f.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._file is None


def _packet_fields(
    data: Buffer, timestamp_ns: int | None, orig_len: int | None, snaplen: int
) -> tuple[memoryview, int, int]:
    """Validate one packet for writing; return (captured view, orig_len, timestamp_ns)."""
    mv = _as_byte_view(data)
    if timestamp_ns is None:
        timestamp_ns = time.time_ns()
    check_int("timestamp_ns", timestamp_ns, min=0, max=(1 << 64) - 1)
    if orig_len is None:
        orig_len = len(mv)
    check_int("orig_len", orig_len, min=0, max=0xFFFFFFFF)
    if orig_len < len(mv):
        raise ValueError(f"orig_len {orig_len} is smaller than the data length {len(mv)}")
    return mv[:snaplen], orig_len, timestamp_ns


U8Array = npt.NDArray[np.uint8]


def _batch_fields(
    data: Any, lens: Any, timestamps_ns: Any, orig_lens: Any, snaplen: int
) -> tuple[U8Array, npt.NDArray[np.uint32], npt.NDArray[np.uint32], Any]:
    """Validate a batch for writing: ``(rows cut to snaplen, captured lengths,
    original lengths, timestamps)``; the timestamps are one uint64 or ``n``.
    (Checks are a few reductions per batch: this runs once per ring batch.)"""
    arr = np.asarray(data)
    if arr.dtype != np.uint8 or arr.ndim != 2:
        raise ValueError(f"batch data must be a 2-D uint8 array, got {arr.dtype} {arr.shape}")
    n, width = arr.shape
    wire = _lengths("lens", lens, n)
    if n and int(wire.max()) > width:
        raise ValueError(f"every length must be in [0, {width}] (the row width)")
    if orig_lens is None:
        orig = wire
    else:
        orig = _lengths("orig_lens", orig_lens, n)
        if n and bool((orig < wire).any()):
            raise ValueError("an orig_len is smaller than its data length")
    ts: Any
    if isinstance(timestamps_ns, (int, np.integer)) and not isinstance(timestamps_ns, bool):
        check_int("timestamps_ns", int(timestamps_ns), min=0, max=(1 << 64) - 1)
        ts = int(timestamps_ns)  # one value: plain int arithmetic is cheapest
    else:
        t = np.asarray(timestamps_ns)
        if t.dtype.kind not in "ui" or t.shape != (n,):
            raise ValueError(f"timestamps_ns must be one integer or {n} integers")
        if n and t.dtype.kind == "i" and int(t.min()) < 0:
            raise ValueError("timestamps_ns must be >= 0")
        ts = t.astype(np.uint64, copy=False)
    cap = np.minimum(wire, np.uint32(snaplen)) if width > snaplen else wire
    return arr[:, :snaplen], cap, orig, ts


def _lengths(name: str, values: Any, n: int) -> npt.NDArray[np.uint32]:
    a = np.asarray(values)
    if a.shape != (n,) or a.dtype.kind not in "ui":
        raise ValueError(f"{name} must be {n} integers, got {a.dtype} {a.shape}")
    if a.dtype == np.uint32:
        return a
    if n and (int(a.min()) < 0 or int(a.max()) > 0xFFFFFFFF):
        raise ValueError(f"{name} must be in [0, 2**32)")
    return a.astype(np.uint32)


def _compact(rows: U8Array, keep_upto: npt.NDArray[Any] | None, tail: int = 0) -> U8Array:
    """The bytes of ``rows`` in order, keeping in each row only the columns
    before ``keep_upto[i]`` (and the last ``tail`` columns): one boolean mask
    turns padded rows into back-to-back variable-length records."""
    if keep_upto is None:
        return rows.reshape(-1)
    cols = np.arange(rows.shape[1])
    keep = cols < keep_upto[:, None]
    if tail:
        keep |= cols >= rows.shape[1] - tail
    out: U8Array = rows[keep]
    return out


# ---------------------------------------------------------------------------
# writers


class PcapWriter(_OutputMixin):
    """Write a classic pcap file, one packet per :meth:`write`.

    ``file_or_path`` is a path (opened, and closed by :meth:`close`) or a
    binary file object (left open; may be a non-seekable pipe).  The global
    header is written immediately, so even an empty capture is a valid file.
    Timestamps have nanosecond resolution unless ``nanosecond=False``.
    Packets longer than ``snaplen`` are cut; their ``orig_len`` is kept.
    Output is little-endian, which every reader accepts.
    """

    def __init__(
        self,
        file_or_path: FileOrPath,
        *,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = 262144,
        nanosecond: bool = True,
    ) -> None:
        self._file = None
        check_int("linktype", linktype, min=0, max=0xFFFF)
        check_int("snaplen", snaplen, min=1, max=0x7FFFFFFF)
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = bool(nanosecond)
        self._open_output(file_or_path)
        magic = _PCAP_MAGIC_NS if self.nanosecond else _PCAP_MAGIC_US
        header = struct.pack("<IHHiIII", magic, *_PCAP_VERSION, 0, 0, snaplen, linktype)
        _write_all(self._out(), header)

    def write(
        self, data: Buffer, timestamp_ns: int | None = None, orig_len: int | None = None
    ) -> None:
        """Append one packet.

        ``timestamp_ns`` defaults to now (``time.time_ns()``) and must fit the
        pcap 32-bit seconds field (before year 2106).  ``orig_len`` defaults to
        ``len(data)`` and may not be smaller than it.
        """
        f = self._out()
        cap, orig_len, ts = _packet_fields(data, timestamp_ns, orig_len, self.snaplen)
        sec, frac = divmod(ts, _NS_PER_S)
        if sec > 0xFFFFFFFF:
            raise ValueError(f"timestamp_ns {ts} is past the pcap 32-bit seconds range")
        if not self.nanosecond:
            frac //= 1000
        # One write per packet: header and data together keep pipe readers from
        # ever seeing a header without its data longer than necessary.
        _write_all(f, struct.pack("<IIII", sec, frac, len(cap), orig_len) + cap)
        self.packets_written += 1

    def write_batch(
        self,
        data: U8Array,
        lens: npt.ArrayLike,
        timestamps_ns: int | npt.ArrayLike,
        orig_lens: npt.ArrayLike | None = None,
    ) -> int:
        """Append ``len(data)`` packets in one write.

        ``data`` is a ``(n, W)`` uint8 array, one packet per row (bytes past
        ``lens[i]`` are ignored); ``lens`` their lengths; ``timestamps_ns`` one
        value for all or one per packet; ``orig_lens`` defaults to ``lens``.
        Packets are cut to ``snaplen``. The record headers are built with
        numpy for the whole batch. Returns ``n``.
        """
        f = self._out()
        rows_in, cap, orig, ts = _batch_fields(data, lens, timestamps_ns, orig_lens,
                                               self.snaplen)
        n, width = rows_in.shape
        if not n:
            return 0
        if isinstance(ts, int):
            sec, frac = divmod(ts, _NS_PER_S)
            last = sec
        else:
            sec = ts // np.uint64(_NS_PER_S)
            frac = ts % np.uint64(_NS_PER_S)
            last = int(sec.max())
        if last > 0xFFFFFFFF:
            raise ValueError("a timestamp is past the pcap 32-bit seconds range")
        if not self.nanosecond:
            frac //= 1000
        rows = np.empty((n, _PCAP_REC_LEN + width), np.uint8)
        hdr = rows[:, :_PCAP_REC_LEN].view("<u4")  # rows are 16-byte aligned at the start
        hdr[:, 0] = sec
        hdr[:, 1] = frac
        hdr[:, 2] = cap
        hdr[:, 3] = orig
        rows[:, _PCAP_REC_LEN:] = rows_in
        uniform = int(cap.min()) == width
        out = _compact(rows, None if uniform else cap + _PCAP_REC_LEN)
        _write_all(f, out.data)
        self.packets_written += n
        return int(n)

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _option(order: str, code: int, value: bytes) -> bytes:
    pad = -len(value) % 4
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * pad


def _block(order: str, block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


class PcapngWriter(_OutputMixin):
    """Write a pcapng file: one section, one interface, one EPB per packet.

    Same interface as :class:`PcapWriter`.  The Interface Description Block
    carries ``if_tsresol`` = 9 (nanoseconds; omitted, i.e. microseconds, when
    ``nanosecond=False``), ``if_name`` when ``if_name`` is given and a comment
    (``opt_comment``) when ``if_comment`` is given (e.g. what the timestamps
    mean).  The
    section length is written as "unknown" (-1), so no seek is ever needed.
    """

    def __init__(
        self,
        file_or_path: FileOrPath,
        *,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = 262144,
        nanosecond: bool = True,
        if_name: str | None = None,
        application: str | None = "xdp-socket",
        if_comment: str | None = None,
    ) -> None:
        self._file = None
        check_int("linktype", linktype, min=0, max=0xFFFF)
        check_int("snaplen", snaplen, min=1, max=0x7FFFFFFF)
        name_bytes = None
        if if_name is not None:
            name_bytes = if_name.encode("utf-8")
            if len(name_bytes) > 0xFFFF:
                raise ValueError("if_name is too long for a pcapng option")
        app_bytes = None
        if application is not None:
            app_bytes = application.encode("utf-8")
            if len(app_bytes) > 0xFFFF:
                raise ValueError("application is too long for a pcapng option")
        comment_bytes = None
        if if_comment is not None:
            comment_bytes = if_comment.encode("utf-8")
            if len(comment_bytes) > 0xFFFF:
                raise ValueError("if_comment is too long for a pcapng option")
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = bool(nanosecond)
        self.if_name = if_name
        self._open_output(file_or_path)

        o = "<"
        shb_opts = b""
        if app_bytes is not None:
            shb_opts = _option(o, _OPT_SHB_USERAPPL, app_bytes) + _option(o, _OPT_ENDOFOPT, b"")
        shb = _block(o, _BT_SHB, struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + shb_opts)
        idb_opts = b""
        if comment_bytes is not None:
            idb_opts += _option(o, _OPT_COMMENT, comment_bytes)
        if name_bytes is not None:
            idb_opts += _option(o, _OPT_IF_NAME, name_bytes)
        if self.nanosecond:
            idb_opts += _option(o, _OPT_IF_TSRESOL, bytes([9]))
        if idb_opts:
            idb_opts += _option(o, _OPT_ENDOFOPT, b"")
        idb = _block(o, _BT_IDB, struct.pack("<HHI", linktype, 0, snaplen) + idb_opts)
        _write_all(self._out(), shb + idb)

    def write(
        self, data: Buffer, timestamp_ns: int | None = None, orig_len: int | None = None
    ) -> None:
        """Append one packet as an Enhanced Packet Block on interface 0.

        ``timestamp_ns`` defaults to now and must be non-negative; ``orig_len``
        defaults to ``len(data)`` and may not be smaller than it.
        """
        f = self._out()
        cap, orig_len, ts = _packet_fields(data, timestamp_ns, orig_len, self.snaplen)
        if not self.nanosecond:
            ts //= 1000
        caplen = len(cap)
        pad = -caplen % 4
        total = 32 + caplen + pad
        head = struct.pack(
            "<IIIIIII", _BT_EPB, total, 0, ts >> 32, ts & 0xFFFFFFFF, caplen, orig_len
        )
        _write_all(f, head + cap + b"\0" * pad + struct.pack("<I", total))
        self.packets_written += 1

    def write_batch(
        self,
        data: U8Array,
        lens: npt.ArrayLike,
        timestamps_ns: int | npt.ArrayLike,
        orig_lens: npt.ArrayLike | None = None,
    ) -> int:
        """Append ``len(data)`` packets as Enhanced Packet Blocks in one write;
        the same arguments as :meth:`PcapWriter.write_batch`."""
        f = self._out()
        rows_in, cap, orig, ts = _batch_fields(data, lens, timestamps_ns, orig_lens,
                                               self.snaplen)
        n, width = rows_in.shape
        if not n:
            return 0
        if not self.nanosecond:
            ts = ts // 1000 if isinstance(ts, int) else ts // np.uint64(1000)
        wide = (width + 3) & ~3
        padded = (cap + np.uint32(3)) & np.uint32(~3 & 0xFFFFFFFF)
        total = padded + np.uint32(32)
        # One row per block: 28 header bytes, the data padded to 4, the trailer.
        rows = np.empty((n, 28 + wide + 4), np.uint8)
        hdr = rows[:, :28].view("<u4")
        hdr[:, 0] = _BT_EPB
        hdr[:, 1] = total
        hdr[:, 2] = 0
        if isinstance(ts, int):
            hdr[:, 3] = ts >> 32
            hdr[:, 4] = ts & 0xFFFFFFFF
        else:
            hdr[:, 3] = ts >> np.uint64(32)
            hdr[:, 4] = ts & np.uint64(0xFFFFFFFF)
        hdr[:, 5] = cap
        hdr[:, 6] = orig
        body = rows[:, 28 : 28 + wide]
        body[:, :width] = rows_in
        body[:, width:] = 0
        rows[:, 28 + wide :].view("<u4")[:, 0] = total
        uniform = int(padded.min()) == wide
        if int(cap.min()) != wide:
            # The padding after each packet must be zeros, not frame leftovers.
            body[np.arange(wide) >= cap[:, None]] = 0
        out = _compact(rows, None if uniform else padded + np.uint32(28), tail=4)
        _write_all(f, out.data)
        self.packets_written += n
        return int(n)

    def __enter__(self) -> PcapngWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------
# reader


class _Stream:
    """Exact-length reads from a possibly non-seekable binary stream, with an offset."""

    def __init__(self, f: IO[bytes], fmt: str) -> None:
        self._f = f
        self.offset = 0  # of the next byte a read returns
        self.fmt = fmt
        # bytes given back (unread), read again before the file's
        self._back: memoryview = memoryview(b"")
        self.regular = False  # a regular file with readinto (see read_more)
        # (io.UnsupportedOperation, from a file object without an fd, is both)
        with contextlib.suppress(AttributeError, OSError, ValueError):
            self.regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode) and hasattr(f, "readinto")

    def error(self, message: str, offset: int | None = None) -> CaptureFormatError:
        return CaptureFormatError(
            f"{self.fmt}: {message}", self.offset if offset is None else offset
        )

    def read_upto(self, n: int) -> bytes:
        """Read up to ``n`` bytes, fewer only at end of stream.

        Pipes and raw files return short reads; loop.  Large ``n`` is read in
        bounded chunks so a lying length field cannot force a huge allocation.
        """
        if n <= 0:
            return b""
        back = self._back
        if back:
            take = min(n, len(back))
            self._back = back[take:]
            self.offset += take
            head = bytes(back[:take])
            return head if take == n else head + self.read_upto(n - take)
        parts: list[bytes] = []
        got = 0
        while got < n:
            chunk = self._f.read(min(n - got, _READ_CHUNK))
            if chunk is None:
                raise BlockingIOError("capture input would block")
            if len(chunk) == n:  # the common case: one complete read
                self.offset += n
                return chunk
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        self.offset += got
        return b"".join(parts)

    def read_more(self, buf: np.ndarray[Any, Any], pos: int, n: int) -> np.ndarray[Any, Any] | None:
        """A new read-only buffer: ``buf[pos:]`` followed by up to ``n`` more
        bytes, at least one unless at end of stream (``None`` then), without
        waiting for more than one read: on a live pipe the batch reader must
        hand on what has arrived, not wait until a whole chunk has.

        The bytes are read straight into a fresh numpy array (``readinto``):
        one copy from the page cache, into memory numpy asks the kernel to
        back with huge pages, where reading into a ``bytes`` and joining it
        to the rest took two copies and a page fault every 4 KiB (80 MB of
        pcap: 30 ms instead of 50-120). A new array each time, never one
        reused: the batches already handed out are views into the old ones.
        """
        left = len(buf) - pos
        back = self._back
        if back:
            # what was given back first (one copy, no read)
            self._back = memoryview(b"")
            out = np.empty(left + len(back), np.uint8)
            out[:left] = buf[pos:]
            out[left:] = np.frombuffer(back, np.uint8)
            self.offset += len(back)
            out.flags.writeable = False
            return out
        out = np.empty(left + n, np.uint8)
        out[:left] = buf[pos:]
        if self.regular:
            # (a regular file never blocks: a full chunk unless at its end)
            got = self._f.readinto(out.data[left:])  # type: ignore[attr-defined]
        else:
            # A pipe: read1 returns what is buffered, or one read's worth
            # (BufferedReader.readinto1 would block for more once it has
            # copied out what it buffered).
            read1 = getattr(self._f, "read1", None)
            chunk = read1(n) if read1 is not None else self._f.read(n)
            got = None if chunk is None else len(chunk)
            if got:
                out[left : left + got] = np.frombuffer(chunk, np.uint8)
        if got is None:
            raise BlockingIOError("capture input would block")
        if not got:
            return None
        self.offset += got
        out = out[: left + got]
        out.flags.writeable = False  # batches' data: views, read-only as bytes were
        return out

    def unread(self, data: np.ndarray[Any, Any], offset: int) -> None:
        """Give back bytes of a read_more buffer that start at stream offset
        ``offset``, so that the next reads return them first (and the
        offsets in errors are theirs)."""
        assert not self._back, "unread twice without reading"
        self._back = data.data.cast("B")
        self.offset = offset

    def read_exact(self, n: int, what: str) -> bytes:
        start = self.offset
        data = self.read_upto(n)
        if len(data) != n:
            raise self.error(f"truncated {what}: got {len(data)} of {n} bytes", start)
        return data

    def skip(self, n: int, what: str) -> None:
        start = self.offset
        left = n
        while left > 0:
            got = len(self.read_upto(min(left, _READ_CHUNK)))
            if got == 0:
                raise self.error(f"truncated {what}: got {n - left} of {n} bytes", start)
            left -= got


def _ts_units(tsresol: int) -> int:
    """Timestamp units per second for an ``if_tsresol`` byte."""
    if tsresol & _TSRESOL_POW2:
        return 1 << (tsresol & 0x7F)
    return int(10**tsresol)  # int(): mypy types int ** int as Any


def _scan_epbs(buf: np.ndarray[Any, Any], pos: int, max_packets: int, swap: bool,
               max_caplen: int, hdr: np.ndarray[Any, Any], offs: np.ndarray[Any, Any],
               ifaces: int) -> tuple[int, int, int, int]:
    """The accelerator's pcapng pcap_scan (_accel.c) in Python, for the
    pure-Python install: the same rows, the same stops (every block the block
    parser might refuse, and every other block type, is left to it)."""
    order = ">" if swap == (sys.byteorder == "little") else "<"
    head = struct.Struct(order + "7I")
    word = struct.Struct(order + "I")
    view = buf.data
    end = len(buf)
    max_block = max_caplen + 1024 * 1024
    k = 0
    lo, hi = 0xFFFFFFFF, 0
    while k < max_packets and pos <= end - 32:
        btype, total, if_id, ts_hi, ts_lo, caplen, orig = head.unpack_from(view, pos)
        if (btype != _BT_EPB or total < 32 or total % 4 or total > max_block
                or total > end - pos or word.unpack_from(view, pos + total - 4)[0] != total
                or caplen > total - 32 or if_id >= ifaces):
            break
        hdr[k] = (if_id, ts_hi, ts_lo, caplen, orig)
        offs[k] = pos + 28
        lo, hi = min(lo, caplen), max(hi, caplen)
        pos += total
        k += 1
    return k, pos, lo if k else 0, hi


def _ng_timestamps(raw: npt.NDArray[np.uint64], iface: CaptureInterface) -> npt.NDArray[np.int64]:
    """_to_ns over an array: numpy where the result fits in int64 exactly, the
    per-packet Python integers otherwise (exotic resolutions, timestamps far
    from now), which give the same values, or the same OverflowError."""
    units, off = iface.ts_units, iface.ts_offset_s
    top = int(raw.max()) if len(raw) else 0
    if units <= _NS_PER_S and _NS_PER_S % units == 0:
        mult = _NS_PER_S // units
        if top * mult + abs(off) * _NS_PER_S < 1 << 62:
            return raw.astype(np.int64) * mult + off * _NS_PER_S
    return np.fromiter((_to_ns(int(r), units, off) for r in raw.tolist()), np.int64, len(raw))


def _to_ns(ts: int, units: int, offset_s: int) -> int:
    # Exact integer arithmetic: floats would lose nanoseconds at epoch scale.
    if units == _NS_PER_S:
        ns = ts
    elif units < _NS_PER_S and _NS_PER_S % units == 0:
        ns = ts * (_NS_PER_S // units)
    else:
        ns = ts * _NS_PER_S // units
    return ns + offset_s * _NS_PER_S


class CaptureReader:
    """An open capture file; iterate it to get :class:`Packet` objects.

    Created by :func:`open_capture`.  Attributes:

    * ``format``: ``"pcap"`` or ``"pcapng"``;
    * ``interfaces``: list of :class:`CaptureInterface` seen so far (for
      pcapng it grows while reading, as IDBs appear);
    * ``linktype`` / ``snaplen``: those of the first interface (for pcapng,
      ``None`` until the first IDB has been read).

    Iteration is single-pass and streaming.  Use as a context manager, or call
    :meth:`close`, to close a file opened from a path.
    """

    format: str
    interfaces: list[CaptureInterface]
    #: pcap only: True for the nanosecond magic, False for microseconds;
    #: ``None`` for pcapng, where each interface has its own resolution.
    nanosecond: bool | None

    def __init__(self, file_or_path: FileOrPath) -> None:
        self._owns_file = False
        if isinstance(file_or_path, (str, os.PathLike)):
            f: IO[bytes] = open(file_or_path, "rb")  # noqa: SIM115 - closed in close()
            self._owns_file = True
        else:
            if not hasattr(file_or_path, "read"):
                raise TypeError("expected a path or a binary file object with read()")
            if isinstance(file_or_path, io.TextIOBase):
                raise TypeError("capture input must be a binary file (use sys.stdin.buffer)")
            f = file_or_path
        self._file: IO[bytes] | None = f
        self.interfaces = []
        self.nanosecond = None
        try:
            self._start(f)
        except BaseException:
            self.close()
            raise

    # --- setup --------------------------------------------------------------

    def _start(self, f: IO[bytes]) -> None:
        s = _Stream(f, "capture")
        head = s.read_upto(4)
        if len(head) < 4:
            what = "empty file" if not head else f"file of {len(head)} bytes"
            raise s.error(f"{what}: too short for a capture header", 0)
        (le,) = struct.unpack("<I", head)
        (be,) = struct.unpack(">I", head)
        self._stream = s
        if le == _BT_SHB:
            s.fmt = "pcapng"
            self.format = "pcapng"
            self._ng_order = "<"  # the current section's (the block parser keeps them)
            self._ng_base = 0
            blocks = self._pcapng_packets(head)
            # Read up to the first Interface Description Block now, so that
            # header errors surface here and linktype/snaplen are known before
            # the first packet (which, on a live pipe, may be a while away).
            lookahead: list[Packet] = []
            for item in blocks:  # breaking out of a for loop leaves the generator open
                if item is not None:
                    lookahead.append(item)
                    break
                if self.interfaces:
                    break
            self._ng_blocks = blocks
            self._ng_lookahead = lookahead
            rest = (p for p in blocks if p is not None)
            self._packets: Iterator[Packet] = itertools.chain(lookahead, rest)
            return
        for order, magic in (("<", le), (">", be)):
            if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
                s.fmt = "pcap"
                self.format = "pcap"
                self._order = order
                self._pcap_header(order, magic == _PCAP_MAGIC_NS)
                self._packets = self._pcap_packets(order)
                return
        raise s.error(f"unknown magic number 0x{le:08x}: not a pcap or pcapng file", 0)

    def _pcap_header(self, order: str, nanosecond: bool) -> None:
        s = self._stream
        rest = s.read_exact(_PCAP_HDR_LEN - 4, "pcap file header")
        major, minor, _tz, _sigfigs, snaplen, network = struct.unpack(order + "HHiIII", rest)
        if major != 2:
            raise s.error(f"unsupported pcap version {major}.{minor}", 4)
        self.nanosecond = nanosecond
        # The top bits of the link-type field carry FCS information; the link
        # type proper is the low 16 bits.
        units = _NS_PER_S if nanosecond else 1_000_000
        # thiszone is ignored, as libpcap and Wireshark do: timestamps are UTC.
        self.interfaces.append(CaptureInterface(network & 0xFFFF, snaplen, None, units, 0))

    # --- public -------------------------------------------------------------

    @property
    def linktype(self) -> int | None:
        """Link type of the first interface (``None`` before a pcapng IDB)."""
        return self.interfaces[0].linktype if self.interfaces else None

    @property
    def snaplen(self) -> int | None:
        """Snapshot length of the first interface (``None`` before a pcapng IDB)."""
        return self.interfaces[0].snaplen if self.interfaces else None

    def __iter__(self) -> Iterator[Packet]:
        return self

    def __next__(self) -> Packet:
        if self._file is None:
            raise ValueError("read from a closed capture reader")
        return next(self._packets)

    def batches(self, max_packets: int = 256) -> Iterator[PacketBatch]:
        """Yield the remaining packets as :class:`PacketBatch` es of at most
        ``max_packets`` (streaming, like iteration).

        For pcap the file is read in large chunks and the record headers of a
        whole batch are decoded by one call of the compiled accelerator
        (without it: one numpy operation per run of equal-length records), so
        the cost is per batch, not per packet; ``data`` is a read-only view
        into the chunk when the batch has one length, a zero-padded copy
        otherwise. pcapng is read the same way (runs of Enhanced Packet Blocks
        in one accelerator call, or one Python loop without it; every other
        block through the block parser), into padded copies. On a pipe, a
        batch holds what has arrived: it does not wait for a whole chunk or
        for ``max_packets``. Do not mix with plain iteration on the same
        reader.
        """
        check_int("max_packets", max_packets, min=1, max=1 << 20)
        if self._file is None:
            raise ValueError("read from a closed capture reader")
        if self.format == "pcap":
            return self._pcap_batches(max_packets)
        return self._ts_checked(self._pcapng_batches(max_packets))

    def _ts_checked(self, batches: Iterator[PacketBatch]) -> Iterator[PacketBatch]:
        """A pcapng timestamp (64 bits in any unit, plus an offset in
        seconds) can exceed what a batch's int64 nanoseconds hold: a format
        error, not numpy's OverflowError."""
        try:
            yield from batches
        except OverflowError:
            raise self._stream.error(
                "a packet timestamp does not fit in 64-bit nanoseconds (batches() holds "
                "them in an int64 array; iterating the reader gives Python integers)") from None

    def close(self) -> None:
        """Close the file if it was opened from a path; stop iteration either way."""
        f = self._file
        self._file = None
        if f is not None and self._owns_file:
            f.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- pcap ---------------------------------------------------------------

    def _pcap_packets(self, order: str) -> Iterator[Packet]:
        s = self._stream
        iface = self.interfaces[0]
        rec = struct.Struct(order + "IIII")
        while True:
            start = s.offset
            hdr = s.read_upto(_PCAP_REC_LEN)
            if not hdr:
                return
            if len(hdr) < _PCAP_REC_LEN:
                raise s.error(
                    f"truncated record header: got {len(hdr)} of {_PCAP_REC_LEN} bytes", start
                )
            sec, frac, incl_len, orig_len = rec.unpack(hdr)
            if incl_len > MAX_RECORD_LEN:
                raise s.error(
                    f"record captured length {incl_len} exceeds the limit {MAX_RECORD_LEN}", start
                )
            data = s.read_exact(incl_len, "record data")
            ts = sec * _NS_PER_S + frac * (_NS_PER_S // iface.ts_units)
            yield Packet(ts, data, orig_len, 0)

    def _pcap_batches(self, max_packets: int) -> Iterator[PacketBatch]:
        s = self._stream
        order = self._order
        iface = self.interfaces[0]
        frac_ns = np.int64(_NS_PER_S // iface.ts_units)
        u4 = np.dtype(order + "u4")
        buf: np.ndarray[Any, Any] = _NO_BYTES
        pos = 0
        acc = _ring.accel
        swap = (order == ">") == (sys.byteorder == "little")
        scan_hdr = np.empty((max_packets if acc is not None else 0, 4), np.uint32)
        scan_offs = np.empty(scan_hdr.shape[0], np.int64)
        while True:
            if self._file is None:
                return
            if len(buf) - pos < _PCAP_REC_LEN:
                more = s.read_more(buf, pos, _BATCH_CHUNK)
                if more is None:
                    if len(buf) > pos:
                        raise s.error(f"truncated record header: got {len(buf) - pos} of "
                                      f"{_PCAP_REC_LEN} bytes", s.offset - (len(buf) - pos))
                    return
                buf = more
                pos = 0
                continue
            caplen = int(np.ndarray((), u4, buf, pos + 8))
            base = s.offset - len(buf)  # stream offset of buf[0]
            if caplen > MAX_RECORD_LEN:
                raise s.error(f"record captured length {caplen} exceeds the limit "
                              f"{MAX_RECORD_LEN}", base + pos)
            stride = _PCAP_REC_LEN + caplen
            if len(buf) - pos < stride:
                more = s.read_more(buf, pos, max(_BATCH_CHUNK, stride - (len(buf) - pos)))
                if more is None:
                    got = len(buf) - pos - _PCAP_REC_LEN
                    raise s.error(f"truncated record data: got {got} of {caplen} bytes",
                                  base + pos + _PCAP_REC_LEN)
                buf = more
                pos = 0
                continue
            if acc is not None:
                # The accelerator walks the headers of up to max_packets whole
                # records, of any lengths, in one call (the first is whole).
                k, end, lo, hi = acc.pcap_scan(buf, pos, max_packets, swap, MAX_RECORD_LEN,
                                               scan_hdr, scan_offs)
                hdr = scan_hdr[:k]
                ts = hdr[:, 0].astype(np.int64) * _NS_PER_S + hdr[:, 1].astype(np.int64) * frac_ns
                lens = hdr[:, 2].copy()
                if lo == hi:  # one length: a strided view, as below
                    data = np.ndarray((k, lo), np.uint8, buf, pos + _PCAP_REC_LEN,
                                      (_PCAP_REC_LEN + lo, 1))
                else:
                    data = np.zeros((k, hi), np.uint8)
                    acc.gather_rows(buf, scan_offs, lens, k, data)
                pos = end
                yield PacketBatch(ts, data, lens, hdr[:, 3].copy(), np.zeros(k, np.intp))
                continue
            # A run of records of this same length: one strided view decodes all
            # their headers at once; the first of another length ends the run.
            k = min((len(buf) - pos) // stride, max_packets)
            if k > 1:
                caps = np.ndarray((k,), u4, buf, pos + 8, (stride,))
                other = np.flatnonzero(caps != caplen)
                if other.shape[0]:
                    k = int(other[0])
            if k < _MIN_RUN and k < max_packets:
                # Mixed lengths: walk the headers one by one (the offsets depend
                # on each other) and copy the packets into one padded batch.
                pos, batch = self._pcap_mixed(buf, pos, max_packets, frac_ns)
                yield batch
                continue
            hdr = np.ndarray((k, 4), u4, buf, pos, (stride, 4))
            ts = hdr[:, 0].astype(np.int64) * _NS_PER_S + hdr[:, 1].astype(np.int64) * frac_ns
            data = np.ndarray((k, caplen), np.uint8, buf, pos + _PCAP_REC_LEN, (stride, 1))
            pos += k * stride
            yield PacketBatch(ts, data, hdr[:, 2].astype(np.uint32),
                              hdr[:, 3].astype(np.uint32), np.zeros(k, np.intp))

    def _pcap_mixed(self, buf: np.ndarray[Any, Any], pos: int, max_packets: int,
                    frac_ns: np.int64) -> tuple[int, PacketBatch]:
        """Up to ``max_packets`` complete records from ``buf[pos:]`` (the first
        is known to be complete); returns the position after them."""
        rec = struct.Struct(self._order + "IIII")
        view = buf.data  # (the buffer protocol, as struct wants it)
        end = len(buf)
        heads: list[tuple[int, int, int, int]] = []
        starts: list[int] = []
        while len(heads) < max_packets and pos + _PCAP_REC_LEN <= end:
            h = rec.unpack_from(view, pos)
            if h[2] > MAX_RECORD_LEN or pos + _PCAP_REC_LEN + h[2] > end:
                break  # the caller reads on, or reports the bad length
            heads.append(h)
            starts.append(pos + _PCAP_REC_LEN)
            pos += _PCAP_REC_LEN + h[2]
        hdr = np.array(heads, np.int64).reshape(-1, 4)
        lens = hdr[:, 2].astype(np.uint32)
        data = np.zeros((len(heads), int(lens.max())), np.uint8)
        for i, (start, h) in enumerate(zip(starts, heads, strict=True)):
            data[i, : h[2]] = np.frombuffer(view[start : start + h[2]], np.uint8)
        ts = hdr[:, 0] * _NS_PER_S + hdr[:, 1] * frac_ns
        return pos, PacketBatch(ts, data, lens, hdr[:, 3].astype(np.uint32),
                                np.zeros(len(heads), np.intp))

    def _pcapng_batches(self, max_packets: int) -> Iterator[PacketBatch]:
        """pcapng in batches: the file read in large chunks, each run of
        Enhanced Packet Blocks decoded by one accelerator call (without it,
        one Python loop with the same checks), and every
        other block (section and interface headers, statistics, an EPB the
        scan will not take because something is wrong with it) given to the
        block parser, one block at a time, so both paths agree on every
        value and every error."""
        s = self._stream
        acc = _ring.accel
        scan = acc.pcap_scan if acc is not None else _scan_epbs
        blocks = self._ng_blocks
        if self._ng_lookahead:  # the packet the header read looked ahead at
            yield from _group(iter(self._ng_lookahead), max_packets)
            self._ng_lookahead = []
        hdr = np.empty((max_packets, 5), np.uint32)
        offs = np.empty(max_packets, np.int64)
        buf: np.ndarray[Any, Any] = _NO_BYTES
        pos = 0
        while True:
            if self._file is None:
                return
            left = len(buf) - pos
            if left < 8:
                more = s.read_more(buf, pos, _BATCH_CHUNK)
                if more is not None:
                    buf, pos = more, 0
                    continue
                if not left:
                    return  # end of file between blocks
                one = False  # a truncated block header: the parser says so
            else:
                order = self._ng_order
                btype, total = struct.unpack_from(order + "II", buf.data, pos)
                if btype == _BT_EPB and 32 <= total <= _MAX_BLOCK_LEN and not total % 4:
                    if total > left:
                        more = s.read_more(buf, pos, max(_BATCH_CHUNK, total - left))
                        if more is not None:
                            buf, pos = more, 0
                            continue
                    else:
                        k, end, _, hi = scan(
                            buf, pos, max_packets, (order == ">") == (sys.byteorder == "little"),
                            MAX_RECORD_LEN, hdr, offs, len(self.interfaces) - self._ng_base)
                        if k:
                            yield self._ng_batch(buf, k, hi, hdr, offs)
                            pos = end
                            continue
                # One block through the parser: exactly its bytes when its
                # length can be trusted and it is all here (the parser reads
                # no further), else all that is left (a section header,
                # whose length depends on the byte order it sets; a block
                # longer than the buffer; a length the parser will refuse).
                one = btype != _BT_SHB and 12 <= total <= left and not total % 4
            at = s.offset - left  # stream offset of buf[pos]
            if one:
                end_offset = s.offset
                s.unread(buf[pos : pos + total], at)
                pos += total
            else:
                s.unread(buf[pos:], at)
                buf, pos = _NO_BYTES, 0
            item = next(blocks, _END)
            if one:  # the parser took exactly that block; the rest is still in buf
                s.offset = end_offset
            if item is _END:
                return
            if item is not None:
                yield from _group(iter([item]), 1)  # type: ignore[list-item]

    def _ng_batch(self, buf: np.ndarray[Any, Any], k: int, longest: int,
                  hdr: np.ndarray[Any, Any], offs: np.ndarray[Any, Any]) -> PacketBatch:
        """The PacketBatch of k EPBs that pcap_scan decoded into hdr/offs."""
        h = hdr[:k]
        lens = h[:, 3].copy()
        data = np.zeros((k, longest), np.uint8)
        acc = _ring.accel
        if acc is not None:
            acc.gather_rows(buf, offs, lens, k, data)
        else:
            for i, (o, n) in enumerate(zip(offs[:k].tolist(), lens.tolist(), strict=True)):
                data[i, :n] = buf[o : o + n]
        ifs = h[:, 0].astype(np.intp)
        raw = (h[:, 1].astype(np.uint64) << np.uint64(32)) | h[:, 2]
        ifaces, base = self.interfaces, self._ng_base
        if (ifs == ifs[0]).all():  # the usual case: one interface
            ts = _ng_timestamps(raw, ifaces[base + int(ifs[0])])
        else:
            ts = np.empty(k, np.int64)
            for i in np.unique(ifs).tolist():
                sel = ifs == i
                ts[sel] = _ng_timestamps(raw[sel], ifaces[base + i])
        return PacketBatch(ts, data, lens, h[:, 4].copy(), ifs + self._ng_base)

    # --- pcapng -------------------------------------------------------------

    def _pcapng_packets(self, first4: bytes) -> Iterator[Packet | None]:
        """Yield each packet, and ``None`` after every other block: one block
        per step, which _pcapng_batches relies on (it hands this parser one
        block at a time). The current section's byte order and first
        interface go to ``_ng_order``/``_ng_base`` as well."""
        s = self._stream
        order = "<"
        section_base = 0  # index in self.interfaces of this section's interface 0
        pending = first4  # the magic already consumed by format detection
        while True:
            start = s.offset - len(pending)
            head = pending + s.read_upto(8 - len(pending))
            pending = b""
            if not head:
                return  # clean end of file, between blocks
            if len(head) < 8:
                raise s.error(f"truncated block header: got {len(head)} of 8 bytes", start)
            (btype,) = struct.unpack(order + "I", head[:4])
            what = _BLOCK_NAMES.get(btype) or f"block of type 0x{btype:08x}"
            if btype == _BT_SHB:
                # A new section may switch byte order; its length field can only
                # be decoded once the byte-order magic that follows it is known.
                bom = s.read_exact(4, what)
                if struct.unpack("<I", bom)[0] == _BYTE_ORDER_MAGIC:
                    order = "<"
                elif struct.unpack(">I", bom)[0] == _BYTE_ORDER_MAGIC:
                    order = ">"
                else:
                    raise s.error(f"bad byte-order magic 0x{bom.hex()} in {what}", start + 8)
            (total,) = struct.unpack(order + "I", head[4:])
            min_len = 28 if btype == _BT_SHB else 12
            if total < min_len:
                raise s.error(f"{what} length {total} is below the minimum {min_len}", start)
            if total % 4:
                raise s.error(f"{what} length {total} is not a multiple of 4", start)
            if total > _MAX_BLOCK_LEN:
                raise s.error(f"{what} length {total} exceeds the limit {_MAX_BLOCK_LEN}", start)
            body_len = total - (s.offset - start) - 4
            if btype in _BLOCK_NAMES:
                # Body and trailing length in one read; slices of the view are free.
                block = s.read_exact(body_len + 4, what)
                (trailer,) = struct.unpack_from(order + "I", block, body_len)
                body = memoryview(block)[:body_len]
            else:
                # Unknown block types (name resolution, statistics, custom...)
                # are skipped without being held in memory.
                s.skip(body_len, what)
                (trailer,) = struct.unpack(order + "I", s.read_exact(4, f"{what} trailer"))
                body = memoryview(b"")
            if trailer != total:
                raise s.error(
                    f"{what} trailing length {trailer} differs from leading length {total}",
                    start,
                )
            if btype == _BT_SHB:
                section_base = len(self.interfaces)
                major, minor = struct.unpack_from(order + "HH", body)
                if major != 1:
                    raise s.error(f"unsupported pcapng version {major}.{minor}", start + 12)
                self._ng_order, self._ng_base = order, section_base
                yield None
            elif btype == _BT_IDB:
                if len(self.interfaces) >= MAX_INTERFACES:
                    raise s.error(f"more than {MAX_INTERFACES} interface description blocks "
                                  "(the reader's limit)", start)
                self.interfaces.append(self._parse_idb(order, body, start))
                yield None
            elif btype in (_BT_EPB, _BT_PB):
                yield self._parse_epb(order, btype, body, start, section_base)
            elif btype == _BT_SPB:
                yield self._parse_spb(order, body, start, section_base)
            else:
                yield None  # one block per step (see _pcapng_batches)

    def _parse_idb(self, order: str, body: memoryview, start: int) -> CaptureInterface:
        s = self._stream
        if len(body) < 8:
            raise s.error(f"interface description block body too short ({len(body)} bytes)", start)
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", body)
        name: str | None = None
        tsresol = _DEFAULT_TSRESOL
        tsoffset = 0
        pos = 8
        # Options: (code u16, length u16, value padded to 4 bytes), ended by
        # opt_endofopt or by the end of the block body.
        while pos + 4 <= len(body):
            code, olen = struct.unpack_from(order + "HH", body, pos)
            if code == _OPT_ENDOFOPT:
                break
            vstart = pos + 4
            vend = vstart + olen
            if vend > len(body):
                raise s.error(
                    f"interface option {code} length {olen} overruns its block",
                    start + 8 + pos,
                )
            value = bytes(body[vstart : min(vend, vstart + _MAX_IF_NAME)])
            if code == _OPT_IF_NAME:
                name = value.rstrip(b"\0").decode("utf-8", "replace")
            elif code == _OPT_IF_TSRESOL:
                if olen < 1:
                    raise s.error("empty if_tsresol option", start + 8 + pos)
                tsresol = value[0]
            elif code == _OPT_IF_TSOFFSET:
                if olen != 8:
                    raise s.error(f"if_tsoffset option has length {olen}, not 8", start + 8 + pos)
                (tsoffset,) = struct.unpack(order + "q", value)
            pos = vend + (-olen % 4)
        return CaptureInterface(linktype, snaplen, name, _ts_units(tsresol), tsoffset)

    def _interface(self, section_base: int, if_id: int, start: int) -> tuple[int, CaptureInterface]:
        index = section_base + if_id
        if index >= len(self.interfaces):
            defined = len(self.interfaces) - section_base
            raise self._stream.error(
                f"packet references interface {if_id} but its section defines {defined}", start
            )
        return index, self.interfaces[index]

    def _parse_epb(
        self, order: str, btype: int, body: memoryview, start: int, section_base: int
    ) -> Packet:
        s = self._stream
        if len(body) < 20:
            raise s.error(f"packet block body too short ({len(body)} bytes)", start)
        if btype == _BT_EPB:
            if_id, ts_hi, ts_lo, caplen, orig_len = struct.unpack_from(order + "IIIII", body)
        else:  # obsolete Packet Block: 16-bit interface id, then drop count
            if_id, _drops, ts_hi, ts_lo, caplen, orig_len = struct.unpack_from(
                order + "HHIIII", body
            )
        if caplen > len(body) - 20:
            raise s.error(
                f"captured length {caplen} exceeds the packet block's {len(body) - 20} data bytes",
                start,
            )
        index, iface = self._interface(section_base, if_id, start)
        ts = _to_ns((ts_hi << 32) | ts_lo, iface.ts_units, iface.ts_offset_s)
        return Packet(ts, bytes(body[20 : 20 + caplen]), orig_len, index)

    def _parse_spb(self, order: str, body: memoryview, start: int, section_base: int) -> Packet:
        s = self._stream
        if len(body) < 4:
            raise s.error(f"simple packet block body too short ({len(body)} bytes)", start)
        (orig_len,) = struct.unpack_from(order + "I", body)
        index, iface = self._interface(section_base, 0, start)
        # An SPB does not store its captured length: it is the original length
        # cut by the interface snaplen (0 = unlimited) and by the block itself.
        caplen = min(orig_len, len(body) - 4)
        if iface.snaplen:
            caplen = min(caplen, iface.snaplen)
        # No timestamp in an SPB.
        return Packet(0, bytes(body[4 : 4 + caplen]), orig_len, index)


def _group(packets: Iterator[Packet], max_packets: int) -> Iterator[PacketBatch]:
    """Packets parsed one at a time, handed on as padded batches."""
    while True:
        chunk = list(itertools.islice(packets, max_packets))
        if not chunk:
            return
        n = len(chunk)
        lens = np.fromiter((len(p.data) for p in chunk), np.uint32, n)
        data = np.zeros((n, int(lens.max())), np.uint8)
        for i, p in enumerate(chunk):
            data[i, : len(p.data)] = np.frombuffer(p.data, np.uint8)
        yield PacketBatch(
            np.fromiter((p.timestamp_ns for p in chunk), np.int64, n),
            data,
            lens,
            np.fromiter((p.orig_len for p in chunk), np.uint32, n),
            np.fromiter((p.interface for p in chunk), np.intp, n),
        )


def open_capture(file_or_path: FileOrPath) -> CaptureReader:
    """Open a pcap or pcapng capture for streaming reading.

    ``file_or_path`` is a path or a binary file object (which may be a pipe
    such as ``sys.stdin.buffer``; it is not closed by the reader).  The format
    is detected from the first bytes; a bad header raises
    :class:`CaptureFormatError` right away, a bad record while iterating.
    """
    return CaptureReader(file_or_path)


def read_capture(file_or_path: FileOrPath) -> Iterator[Packet]:
    """Yield every :class:`Packet` of a pcap or pcapng capture, streaming.

    Convenience wrapper around :func:`open_capture` that closes a file it
    opened from a path when iteration ends.  The capture header is checked
    right away, so a bad file raises :class:`CaptureFormatError` from this
    call; a bad record raises while iterating.
    """
    reader = open_capture(file_or_path)
    return _drain(reader)


def _drain(reader: CaptureReader) -> Iterator[Packet]:
    with reader:
        yield from reader
