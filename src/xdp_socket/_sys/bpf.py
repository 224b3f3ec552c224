"""Layer 0: the bpf(2) syscall through ctypes (stdlib only).

Rules this module keeps:

* ``union bpf_attr`` is never built whole: each command gets a ctypes struct
  with exactly the leading fields of its part of the union, zero-initialised,
  and the syscall is told that struct's size. The kernel zero-extends a short
  attr and refuses non-zero bytes past the fields a command knows, so passing
  only what we use is both correct and forward compatible.
* Every pointer the kernel will follow (instructions, license, log and test
  buffers) is a ctypes buffer kept alive in a local until the call returns.
* Every failure raises :func:`~xdp_socket.errors.xdp_error` with a step name
  (``"load XDP program xsk_py_redir"``) plus the interface and queue when the
  caller passed them; bad arguments raise :class:`ValueError` before the call.
* Every fd returned is owned by the caller, who closes it with :func:`os.close`.
  Kernel objects (maps, programs, links) live as long as some fd or some
  attachment references them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import sys
from dataclasses import dataclass
from typing import Any

from .._check import check_int
from ..errors import XdpError, xdp_error
from . import consts as C

__all__ = [
    "LinkInfo",
    "MapInfo",
    "ProgInfo",
    "TestRunResult",
    "link_create",
    "link_get_fd_by_id",
    "link_get_info",
    "link_get_next_id",
    "map_create",
    "map_delete_elem",
    "map_get_fd_by_id",
    "map_get_info",
    "map_lookup_elem",
    "map_update_elem",
    "prog_get_fd_by_id",
    "prog_get_info",
    "prog_get_next_id",
    "prog_load",
    "prog_test_run",
]

_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64

# --- union bpf_attr parts (include/uapi/linux/bpf.h) -------------------------
# ctypes aligns c_uint64 to 8 on the 64-bit ABIs we support, matching the
# header's __aligned_u64.


class _MapCreateAttr(ctypes.Structure):  # BPF_MAP_CREATE
    _fields_ = [
        ("map_type", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("inner_map_fd", _u32),
        ("numa_node", _u32),
        ("map_name", ctypes.c_char * C.BPF_OBJ_NAME_LEN),
        ("map_ifindex", _u32),
    ]


class _MapElemAttr(ctypes.Structure):  # BPF_MAP_*_ELEM
    _fields_ = [
        ("map_fd", _u32),
        ("key", _u64),  # pointer to the key
        ("value", _u64),  # pointer to the value (next_key for GET_NEXT_KEY)
        ("flags", _u64),
    ]


class _ProgLoadAttr(ctypes.Structure):  # BPF_PROG_LOAD
    _fields_ = [
        ("prog_type", _u32),
        ("insn_cnt", _u32),
        ("insns", _u64),
        ("license", _u64),
        ("log_level", _u32),
        ("log_size", _u32),
        ("log_buf", _u64),
        ("kern_version", _u32),
        ("prog_flags", _u32),
        ("prog_name", ctypes.c_char * C.BPF_OBJ_NAME_LEN),
        ("prog_ifindex", _u32),
        ("expected_attach_type", _u32),
    ]


class _LinkCreateAttr(ctypes.Structure):  # BPF_LINK_CREATE
    _fields_ = [
        ("prog_fd", _u32),
        ("target_ifindex", _u32),  # union with target_fd
        ("attach_type", _u32),
        ("flags", _u32),
    ]


class _IdAttr(ctypes.Structure):  # BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID
    _fields_ = [
        ("id", _u32),  # start_id / prog_id / map_id / link_id
        ("next_id", _u32),
        ("open_flags", _u32),
    ]


class _InfoAttr(ctypes.Structure):  # BPF_OBJ_GET_INFO_BY_FD
    _fields_ = [
        ("bpf_fd", _u32),
        ("info_len", _u32),
        ("info", _u64),
    ]


class _TestRunAttr(ctypes.Structure):  # BPF_PROG_TEST_RUN
    _fields_ = [
        ("prog_fd", _u32),
        ("retval", _u32),
        ("data_size_in", _u32),
        ("data_size_out", _u32),
        ("data_in", _u64),
        ("data_out", _u64),
        ("repeat", _u32),
        ("duration", _u32),
        ("ctx_size_in", _u32),
        ("ctx_size_out", _u32),
        ("ctx_in", _u64),
        ("ctx_out", _u64),
        ("flags", _u32),
        ("cpu", _u32),
        ("batch_size", _u32),
    ]


# --- info structs (leading parts; the kernel fills min(ours, its) bytes) -----


class _ProgInfoStruct(ctypes.Structure):  # struct bpf_prog_info
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", ctypes.c_char * C.BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),  # bitfield :1 plus padding
    ]


class _MapInfoStruct(ctypes.Structure):  # struct bpf_map_info
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("name", ctypes.c_char * C.BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
    ]


class _LinkInfoStruct(ctypes.Structure):  # struct bpf_link_info
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("prog_id", _u32),
        # The per-type union starts 8-aligned (it holds __aligned_u64 members);
        # for BPF_LINK_TYPE_XDP its first u32 is the ifindex.
        ("_pad", _u32),
        ("union", _u32 * 8),
    ]


# --- the syscall --------------------------------------------------------------

_syscall_fn: Any = None  # libc's syscall(2), loaded on first use
_nr_bpf: int = -1


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    """Call bpf(cmd, &attr, sizeof(attr)); return the result or raise OSError(errno)."""
    global _syscall_fn, _nr_bpf
    if _syscall_fn is None:
        machine = platform.machine()
        nr = C.NR_BPF.get(machine)
        if nr is None:
            raise OSError(errno.ENOSYS, f"bpf(2) syscall number unknown for {machine}")
        fn = ctypes.CDLL(None, use_errno=True).syscall
        fn.restype = ctypes.c_long
        _nr_bpf, _syscall_fn = nr, fn
    # syscall(2) is variadic: pass every argument with an explicit C type.
    ret = int(
        _syscall_fn(
            ctypes.c_long(_nr_bpf),
            ctypes.c_int(cmd),
            ctypes.byref(attr),
            ctypes.c_uint(ctypes.sizeof(attr)),
        )
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _call(
    cmd: int,
    attr: ctypes.Structure,
    step: str,
    ifname: str | None,
    queue_id: int | None,
    hint: str | None = None,
) -> int:
    try:
        return _bpf(cmd, attr)
    except OSError as e:
        raise xdp_error(e.errno or errno.EIO, step, ifname, queue_id, hint) from None


# --- argument checks ----------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z0-9_.]*")


def _name(name: str) -> bytes:
    # The kernel accepts only [A-Za-z0-9_.] and at most 15 characters + NUL.
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"BPF object name may only hold letters, digits, '_' and '.': {name!r}")
    if len(name) >= C.BPF_OBJ_NAME_LEN:
        raise ValueError(f"BPF object name longer than {C.BPF_OBJ_NAME_LEN - 1} chars: {name!r}")
    return name.encode("ascii")


def _uint(v: int, what: str, bits: int = 32) -> int:
    return check_int(what, v, max=(1 << bits) - 1, what=f"an unsigned {bits}-bit integer")


def _fd(fd: int, what: str = "fd") -> int:
    return check_int(what, fd, max=(1 << 31) - 1, what="a file descriptor")


def _addr(buf: ctypes.Array[ctypes.c_char] | ctypes.Array[ctypes.c_uint32] | None) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


# --- maps ---------------------------------------------------------------------


def map_create(
    map_type: int,
    key_size: int,
    value_size: int,
    max_entries: int,
    name: str = "",
    *,
    map_flags: int = 0,
    ifname: str | None = None,
    queue_id: int | None = None,
) -> int:
    """BPF_MAP_CREATE; returns the new map's fd."""
    attr = _MapCreateAttr()
    attr.map_type = _uint(map_type, "map_type")
    attr.key_size = _uint(key_size, "key_size")
    attr.value_size = _uint(value_size, "value_size")
    attr.max_entries = _uint(max_entries, "max_entries")
    attr.map_flags = _uint(map_flags, "map_flags")
    attr.map_name = _name(name)
    return _call(C.BPF_MAP_CREATE, attr, f"create BPF map {name or '(unnamed)'}", ifname, queue_id)


# Per-CPU maps hold value_size bytes per possible CPU: not a single integer.
# enum bpf_map_type: PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE
_PERCPU_MAP_TYPES = frozenset({5, 6, 10, 21})


def _int_buf(v: int, size: int, what: str) -> ctypes.Array[ctypes.c_char]:
    if size not in (1, 2, 4, 8):
        raise ValueError(f"map {what} size is {size} bytes; only 1/2/4/8-byte integers supported")
    _uint(v, f"map {what}", 8 * size)
    return ctypes.create_string_buffer(v.to_bytes(size, sys.byteorder), size)


def _elem_attr(
    fd: int, key: int, need_value: bool
) -> tuple[_MapElemAttr, ctypes.Array[ctypes.c_char], MapInfo]:
    # The kernel reads key_size bytes from the key pointer and reads/writes
    # value_size bytes at the value pointer, so both buffers are sized from
    # the map itself: a buffer sized from our guess would let the kernel
    # write past it.
    info = map_get_info(_fd(fd, "map fd"))
    if need_value and info.type in _PERCPU_MAP_TYPES:
        raise ValueError("per-CPU maps are not supported by these integer helpers")
    k = _int_buf(key, info.key_size, "key")
    attr = _MapElemAttr()
    attr.map_fd = fd
    attr.key = ctypes.addressof(k)
    return attr, k, info


def map_update_elem(
    fd: int,
    key: int,
    value: int,
    flags: int = C.BPF_ANY,
    *,
    ifname: str | None = None,
    queue_id: int | None = None,
) -> None:
    """BPF_MAP_UPDATE_ELEM for a map with integer keys and values (u32 for an XSKMAP).

    For an XSKMAP the value is an AF_XDP socket fd; the kernel takes its own
    reference on the socket, and drops the entry when the socket is closed.
    """
    attr, k, info = _elem_attr(fd, key, True)
    v = _int_buf(value, info.value_size, "value")
    attr.value = ctypes.addressof(v)
    attr.flags = _uint(flags, "flags", 64)
    _call(C.BPF_MAP_UPDATE_ELEM, attr, f"update map entry {key}", ifname, queue_id)
    del k, v  # kept alive until here on purpose


def map_delete_elem(
    fd: int, key: int, *, ifname: str | None = None, queue_id: int | None = None
) -> None:
    """BPF_MAP_DELETE_ELEM for an integer key (ENOENT if the key is absent;
    an XSKMAP accepts deleting an empty slot)."""
    attr, k, _ = _elem_attr(fd, key, False)
    _call(C.BPF_MAP_DELETE_ELEM, attr, f"delete map entry {key}", ifname, queue_id)
    del k


def map_lookup_elem(
    fd: int, key: int, *, ifname: str | None = None, queue_id: int | None = None
) -> int | None:
    """BPF_MAP_LOOKUP_ELEM for integer key/value; ``None`` when the key is absent.

    Note: an XSKMAP refuses lookups from user space (EOPNOTSUPP).
    """
    attr, k, info = _elem_attr(fd, key, True)
    v = _int_buf(0, info.value_size, "value")
    attr.value = ctypes.addressof(v)
    try:
        _bpf(C.BPF_MAP_LOOKUP_ELEM, attr)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        step = f"look up map entry {key}"
        raise xdp_error(e.errno or errno.EIO, step, ifname, queue_id) from None
    del k
    return int.from_bytes(v.raw, sys.byteorder)


# --- programs -----------------------------------------------------------------

_LOG_SIZE = 1 << 20  # verifier log buffer for the retry after a failed load
_LOG_TAIL = 4000  # characters of the log to keep in the error message
_PROG_LOAD_ATTEMPTS = 5  # libbpf's count for EAGAIN (a signal arrived during verification)


def prog_load(
    prog_type: int,
    insns: bytes,
    license: str,
    name: str = "",
    expected_attach_type: int = 0,
    *,
    ifname: str | None = None,
    queue_id: int | None = None,
    prog_flags: int = 0,
) -> int:
    """BPF_PROG_LOAD; returns the program fd. ``prog_flags``: ``BPF_F_*``
    load flags (e.g. ``BPF_F_XDP_HAS_FRAGS``).

    A load is first tried without a verifier log (cheaper); when it fails it is
    retried once with a log, whose tail goes into the error message.
    """
    if not isinstance(insns, (bytes, bytearray, memoryview)):
        raise ValueError("insns must be bytes")
    code = bytes(insns)
    if not code or len(code) % 8:
        raise ValueError(f"insns must be a non-empty multiple of 8 bytes, got {len(code)}")
    if not isinstance(license, str) or "\0" in license:
        raise ValueError(f"license must be a string without NUL, got {license!r}")
    insn_buf = ctypes.create_string_buffer(code, len(code))
    lic_buf = ctypes.create_string_buffer(license.encode("ascii"))

    def attempt(log: ctypes.Array[ctypes.c_char] | None) -> int:
        attr = _ProgLoadAttr()
        attr.prog_type = _uint(prog_type, "prog_type")
        attr.insn_cnt = len(code) // 8
        attr.insns = ctypes.addressof(insn_buf)
        attr.license = ctypes.addressof(lic_buf)
        attr.prog_name = _name(name)
        attr.expected_attach_type = _uint(expected_attach_type, "expected_attach_type")
        attr.prog_flags = _uint(prog_flags, "prog_flags")
        if log is not None:
            attr.log_level = 1
            attr.log_size = len(log)
            attr.log_buf = ctypes.addressof(log)
        # The verifier gives up with EAGAIN when a signal is pending (a
        # profiler's or the application's interval timer, say): try again,
        # a bounded number of times, as libbpf does.
        for _ in range(_PROG_LOAD_ATTEMPTS - 1):
            try:
                return _bpf(C.BPF_PROG_LOAD, attr)
            except OSError as e:
                if e.errno != errno.EAGAIN:
                    raise
        return _bpf(C.BPF_PROG_LOAD, attr)

    step = f"load BPF program {name or '(unnamed)'}"
    try:
        return attempt(None)
    except OSError as first:
        first_errno = first.errno or errno.EIO
    log = ctypes.create_string_buffer(_LOG_SIZE)
    try:
        fd = attempt(log)
    except OSError:
        # Report the first errno: with a log the kernel may return ENOSPC for a
        # truncated log instead of the verifier's verdict.
        text = log.value.decode("utf-8", "replace").strip()
        if len(text) > _LOG_TAIL:
            text = "..." + text[-_LOG_TAIL:]
        if text:
            # A verifier verdict (EACCES/EINVAL with a log) is about the
            # program, not about privileges: plain XdpError, log as the hint.
            raise XdpError(first_errno, step, ifname, queue_id, f"verifier log:\n{text}") from None
        raise xdp_error(first_errno, step, ifname, queue_id) from None
    # Loading with a log succeeded where the plain load failed (a transient
    # failure): keep the program.
    return fd


@dataclass(frozen=True)
class TestRunResult:
    """Outcome of BPF_PROG_TEST_RUN."""

    __test__ = False  # not a pytest test class

    retval: int  # the program's return value (an XDP action for XDP programs)
    duration_ns: int  # average run time per repetition
    data: bytes | None  # the packet after the program ran (None when not asked for)
    ctx: bytes | None  # the ctx after the program ran (None when not asked for)


def prog_test_run(
    prog_fd: int,
    data: bytes,
    *,
    repeat: int = 1,
    flags: int = 0,
    ctx: bytes | None = None,
    data_out_size: int | None = None,
    ctx_out_size: int | None = None,
    cpu: int = 0,
    batch_size: int = 0,
) -> TestRunResult:
    """BPF_PROG_TEST_RUN: run the program on ``data`` (and optional ``ctx``) in the kernel.

    ``data_out_size`` defaults to ``len(data) + 256`` (room for a program that
    grows the packet), or to 0 (no output) with ``BPF_F_TEST_XDP_LIVE_FRAMES``,
    where the kernel forbids output buffers: there the frames really go where
    the program sends them (XDP_TX/XDP_REDIRECT), ``repeat`` times, in batches
    of ``batch_size`` (0 = kernel default). With live frames, ``ctx`` is an
    ``xdp_md`` whose ingress_ifindex/rx_queue_index name a real device queue.
    The GIL is released during the call.
    """
    live = bool(flags & C.BPF_F_TEST_XDP_LIVE_FRAMES)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError("data must be bytes")
    raw = bytes(data)
    if data_out_size is None:
        data_out_size = 0 if live else len(raw) + 256
    if ctx_out_size is None:
        ctx_out_size = len(ctx) if (ctx is not None and not live) else 0
    _uint(data_out_size, "data_out_size")
    _uint(ctx_out_size, "ctx_out_size")

    data_in = ctypes.create_string_buffer(raw, max(len(raw), 1))
    data_out = ctypes.create_string_buffer(data_out_size) if data_out_size else None
    ctx_in = ctypes.create_string_buffer(bytes(ctx), max(len(ctx), 1)) if ctx else None
    ctx_out = ctypes.create_string_buffer(ctx_out_size) if ctx_out_size else None

    attr = _TestRunAttr()
    attr.prog_fd = _fd(prog_fd, "prog fd")
    attr.data_size_in = len(raw)
    attr.data_in = _addr(data_in)
    attr.data_size_out = data_out_size
    attr.data_out = _addr(data_out)
    attr.repeat = _uint(repeat, "repeat")
    attr.ctx_size_in = len(ctx) if ctx else 0
    attr.ctx_in = _addr(ctx_in)
    attr.ctx_size_out = ctx_out_size
    attr.ctx_out = _addr(ctx_out)
    attr.flags = _uint(flags, "flags")
    attr.cpu = _uint(cpu, "cpu")
    attr.batch_size = _uint(batch_size, "batch_size")
    _call(C.BPF_PROG_TEST_RUN, attr, "test-run BPF program", None, None)
    out = bytes(data_out.raw[: attr.data_size_out]) if data_out is not None else None
    cout = bytes(ctx_out.raw[: attr.ctx_size_out]) if ctx_out is not None else None
    return TestRunResult(int(attr.retval), int(attr.duration), out, cout)


# --- links --------------------------------------------------------------------


def link_create(
    prog_fd: int,
    target_ifindex: int,
    attach_type: int = C.BPF_XDP,
    flags: int = 0,
    *,
    ifname: str | None = None,
    queue_id: int | None = None,
) -> int:
    """BPF_LINK_CREATE; returns the link fd.

    For XDP (``attach_type=BPF_XDP``) ``flags`` is one of XDP_FLAGS_DRV_MODE /
    XDP_FLAGS_SKB_MODE (0 lets the kernel pick). The program stays attached as
    long as the link fd (or a duplicate of it, or a pin) exists.
    """
    attr = _LinkCreateAttr()
    attr.prog_fd = _fd(prog_fd, "prog fd")
    attr.target_ifindex = _uint(target_ifindex, "target_ifindex")
    attr.attach_type = _uint(attach_type, "attach_type")
    attr.flags = _uint(flags, "flags")
    return _call(C.BPF_LINK_CREATE, attr, "attach XDP program (BPF link)", ifname, queue_id)


# --- ids and fds ----------------------------------------------------------------


def _get_fd_by_id(cmd: int, obj_id: int, what: str) -> int:
    attr = _IdAttr()
    attr.id = _uint(obj_id, f"{what} id")
    return _call(cmd, attr, f"open BPF {what} id {obj_id}", None, None)


def prog_get_fd_by_id(prog_id: int) -> int:
    """BPF_PROG_GET_FD_BY_ID (ENOENT when the program is gone)."""
    return _get_fd_by_id(C.BPF_PROG_GET_FD_BY_ID, prog_id, "program")


def map_get_fd_by_id(map_id: int) -> int:
    """BPF_MAP_GET_FD_BY_ID (ENOENT when the map is gone)."""
    return _get_fd_by_id(C.BPF_MAP_GET_FD_BY_ID, map_id, "map")


def link_get_fd_by_id(link_id: int) -> int:
    """BPF_LINK_GET_FD_BY_ID (ENOENT when the link is gone)."""
    return _get_fd_by_id(C.BPF_LINK_GET_FD_BY_ID, link_id, "link")


def _get_next_id(cmd: int, start_id: int, what: str) -> int | None:
    attr = _IdAttr()
    attr.id = _uint(start_id, "start id")
    try:
        _bpf(cmd, attr)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise xdp_error(e.errno or errno.EIO, f"list BPF {what}s") from None
    return int(attr.next_id)


def link_get_next_id(start_id: int = 0) -> int | None:
    """BPF_LINK_GET_NEXT_ID: the smallest link id above ``start_id``, or None."""
    return _get_next_id(C.BPF_LINK_GET_NEXT_ID, start_id, "link")


def prog_get_next_id(start_id: int = 0) -> int | None:
    """BPF_PROG_GET_NEXT_ID: the smallest program id above ``start_id``, or None."""
    return _get_next_id(C.BPF_PROG_GET_NEXT_ID, start_id, "program")


# --- object info ----------------------------------------------------------------


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    name: str
    map_ids: tuple[int, ...]
    tag: bytes


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    name: str


@dataclass(frozen=True)
class LinkInfo:
    id: int
    type: int
    prog_id: int
    ifindex: int | None  # the interface of an XDP link, None for other link types


def _get_info(fd: int, info: ctypes.Structure, what: str) -> None:
    attr = _InfoAttr()
    attr.bpf_fd = _fd(fd, f"{what} fd")
    attr.info_len = ctypes.sizeof(info)
    attr.info = ctypes.addressof(info)
    _call(C.BPF_OBJ_GET_INFO_BY_FD, attr, f"get BPF {what} info", None, None)


def prog_get_info(fd: int) -> ProgInfo:
    """BPF_OBJ_GET_INFO_BY_FD for a program: id, type, name and the ids of its maps."""
    cap = 16
    while True:
        ids = (_u32 * cap)()
        info = _ProgInfoStruct()
        info.nr_map_ids = cap
        info.map_ids = ctypes.addressof(ids)
        _get_info(fd, info, "program")
        n = int(info.nr_map_ids)  # the kernel reports the real count
        if n <= cap:
            break
        cap = n
    return ProgInfo(
        id=int(info.id),
        type=int(info.type),
        name=info.name.decode("ascii", "replace"),
        map_ids=tuple(int(i) for i in ids[:n]),
        tag=bytes(info.tag),
    )


def map_get_info(fd: int) -> MapInfo:
    """BPF_OBJ_GET_INFO_BY_FD for a map."""
    info = _MapInfoStruct()
    _get_info(fd, info, "map")
    return MapInfo(
        id=int(info.id),
        type=int(info.type),
        key_size=int(info.key_size),
        value_size=int(info.value_size),
        max_entries=int(info.max_entries),
        name=info.name.decode("ascii", "replace"),
    )


def link_get_info(fd: int) -> LinkInfo:
    """BPF_OBJ_GET_INFO_BY_FD for a link (ifindex filled in for XDP links)."""
    info = _LinkInfoStruct()
    _get_info(fd, info, "link")
    t = int(info.type)
    return LinkInfo(
        id=int(info.id),
        type=t,
        prog_id=int(info.prog_id),
        ifindex=int(info.union[0]) if t == C.BPF_LINK_TYPE_XDP else None,
    )
