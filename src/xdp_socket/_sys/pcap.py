"""Layer 0: libpcap through ctypes, for its filter compiler and its matcher.

Rules this module keeps:

* libpcap is loaded lazily, on the first call that needs it, so importing
  xdp_socket never requires it. When it cannot be found the call raises
  :class:`~xdp_socket.errors.LibpcapMissingError`, naming the package.
* Only the libpcap calls that need no device: ``pcap_open_dead`` (a handle
  that knows a link type and a snapshot length, nothing else),
  ``pcap_compile``, ``pcap_freecode``, ``pcap_geterr``, ``pcap_close``,
  ``pcap_offline_filter`` (libpcap's own classic BPF interpreter) and
  ``bpf_image`` (one instruction as ``tcpdump -d`` prints it).
* Classic BPF crosses this boundary as plain ``(code, jt, jf, k)`` tuples;
  every libpcap-owned buffer is copied out and freed before returning.
* A refused expression raises :class:`~xdp_socket.errors.FilterError` with
  libpcap's own message (``pcap_geterr``), one line.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

from .._check import check_int
from ..errors import FilterError, LibpcapMissingError

__all__ = [
    "DLT_EN10MB",
    "MAX_SNAPLEN",
    "bpf_image",
    "compile_expression",
    "offline_filter",
]

DLT_EN10MB = 1  # pcap/dlt.h: Ethernet (10Mb, 100Mb, 1000Mb and up)
MAX_SNAPLEN = 262144  # pcap-int.h MAXIMUM_SNAPLEN: what tcpdump passes by default
_PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF  # pcap/pcap.h: "ip broadcast" cannot be used then
BPF_MAXINSNS = 4096  # pcap/bpf.h: longest classic program the kernel accepts

# Names tried in order: the SONAME Debian ships (libpcap.so.0.8 is libpcap 1.x
# under its historical SONAME), upstream's SONAME, the dev symlink.
_LIBRARY_NAMES = ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so")


class _BpfInsn(ctypes.Structure):  # pcap/bpf.h struct bpf_insn
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _BpfProgram(ctypes.Structure):  # pcap/bpf.h struct bpf_program
    _fields_ = [
        ("bf_len", ctypes.c_uint),
        ("bf_insns", ctypes.POINTER(_BpfInsn)),
    ]


class _Timeval(ctypes.Structure):  # struct timeval (Linux: two longs)
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PcapPkthdr(ctypes.Structure):  # pcap/pcap.h struct pcap_pkthdr
    _fields_ = [
        ("ts", _Timeval),
        ("caplen", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
    ]


_lib: Any = None
_load_lock = threading.Lock()  # only around dlopen and the signature table


def _library() -> Any:
    global _lib
    if _lib is not None:
        return _lib
    with _load_lock:
        if _lib is not None:
            return _lib
        # (imported here: ctypes.util brings subprocess and more, ~6 ms of
        # every command's start-up, for a lookup that only this needs)
        import ctypes.util

        names = list(_LIBRARY_NAMES)
        found = ctypes.util.find_library("pcap")
        if found and found not in names:
            names.append(found)
        errors = []
        lib = None
        for name in names:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError as e:
                errors.append(str(e))
        if lib is None:
            raise LibpcapMissingError(f"tried {', '.join(names)}")
        p = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_open_dead.restype = p
        lib.pcap_close.argtypes = [p]
        lib.pcap_close.restype = None
        lib.pcap_compile.argtypes = [p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_freecode.restype = None
        lib.pcap_geterr.argtypes = [p]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_BpfProgram),
                                            ctypes.POINTER(_PcapPkthdr), ctypes.c_char_p]
        lib.pcap_offline_filter.restype = ctypes.c_int
        lib.bpf_image.argtypes = [ctypes.POINTER(_BpfInsn), ctypes.c_int]
        lib.bpf_image.restype = ctypes.c_char_p
        _lib = lib
        return lib


def compile_expression(
    expression: str,
    *,
    linktype: int = DLT_EN10MB,
    snaplen: int = MAX_SNAPLEN,
    optimize: bool = True,
) -> list[tuple[int, int, int, int]]:
    """Compile a pcap-filter(7) expression to classic BPF with libpcap.

    Returns the instructions as ``(code, jt, jf, k)`` tuples. Raises
    :class:`FilterError` with libpcap's message when the expression is
    refused, :class:`LibpcapMissingError` without libpcap.
    """
    if not isinstance(expression, str):
        raise TypeError(f"a filter expression is a str, not {type(expression).__name__}")
    if "\0" in expression:
        raise FilterError("filter expression contains a NUL character", expression)
    check_int("snaplen", snaplen, min=1, max=MAX_SNAPLEN)
    check_int("linktype", linktype)
    lib = _library()
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        raise MemoryError("pcap_open_dead failed")
    try:
        prog = _BpfProgram()
        rc = lib.pcap_compile(handle, ctypes.byref(prog), expression.encode("utf-8"),
                              1 if optimize else 0, _PCAP_NETMASK_UNKNOWN)
        if rc != 0:
            msg = (lib.pcap_geterr(handle) or b"pcap_compile failed").decode("utf-8", "replace")
            # libpcap's messages are one line already; keep them that way.
            raise FilterError(" ".join(msg.split()), expression)
        try:
            return [(int(prog.bf_insns[i].code), int(prog.bf_insns[i].jt),
                     int(prog.bf_insns[i].jf), int(prog.bf_insns[i].k))
                    for i in range(prog.bf_len)]
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)


def _program(insns: Sequence[tuple[int, int, int, int]]) -> tuple[_BpfProgram, Any]:
    n = len(insns)
    arr = (_BpfInsn * max(n, 1))()
    for i, (code, jt, jf, k) in enumerate(insns):
        arr[i].code, arr[i].jt, arr[i].jf, arr[i].k = code, jt, jf, k
    prog = _BpfProgram(n, ctypes.cast(arr, ctypes.POINTER(_BpfInsn)))
    return prog, arr  # the caller keeps arr alive as long as prog is used


def offline_filter(insns: Sequence[tuple[int, int, int, int]], frame: bytes,
                   wire_len: int | None = None) -> int:
    """Run classic BPF on one frame with libpcap's interpreter
    (``pcap_offline_filter``); returns its result (0: no match, otherwise
    the snapshot length the program asks for)."""
    lib = _library()
    prog, arr = _program(insns)
    data = bytes(frame)
    hdr = _PcapPkthdr(_Timeval(0, 0), len(data), len(data) if wire_len is None else wire_len)
    rc = int(lib.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(hdr), data))
    del arr
    return rc


def bpf_image(insn: tuple[int, int, int, int], index: int) -> str:
    """One classic instruction as ``tcpdump -d`` prints it (``(000) ldh [12]``)."""
    lib = _library()
    one = _BpfInsn(*insn)
    # bpf_image formats into a static buffer (libpcap 1.10): ctypes copies it
    # into a bytes object at once; two threads listing at the same moment
    # could still swap texts. Display only, so no lock around libpcap.
    text: bytes = lib.bpf_image(ctypes.byref(one), index)
    return text.decode("ascii", "replace")
