"""Layer 2: tcpdump filters as XDP programs (classic BPF -> eBPF, in Python).

libpcap compiles a pcap-filter(7) expression (``udp port 53``) to classic
BPF, the language of socket filters; this module translates that program
to eBPF for XDP, with no compiler: matching frames are redirected to the
XSKMAP slot of the queue they arrived on (``bpf_redirect_map(&xskmap,
ctx->rx_queue_index, XDP_PASS)``, exactly as the built-in program), every
other frame returns ``XDP_PASS`` and reaches the kernel stack untouched.

Rules the translation keeps (each is what the verifier or libpcap's own
interpreter, ``bpf_filter()``, demands):

* Classic registers live in eBPF registers: A in r4, X in r5, both 32-bit
  and zero at the start; the 16 scratch words M[] are on the stack
  (r10 - 64 .. r10 - 4), zeroed at the start when the program reads them.
  r6 = ctx, r7 = data, r8 = data_end, r9 = packet length (only computed, by
  ``bpf_xdp_get_buff_len``, when the program reads ``len``).
* Every packet load is checked against data_end first, unless a check on
  every path to it already covered its bytes. A load past the end
  makes the classic program reject the packet, so it jumps to the miss path
  (XDP_PASS): exactly libpcap's semantics. Offsets beyond 0xffff
  (MAX_PACKET_OFF) can never be read by XDP and count as past the end.
* Classic loads are big-endian (network order): halfwords and words are
  converted with ``be16``/``be32``. Comparisons use the 32-bit jump class,
  so a constant >= 2**31 compares as the unsigned number it is.
* Division or modulo by X == 0 rejects the packet (classic BPF semantics).
* Only reachable classic instructions are emitted (the verifier refuses
  unreachable code), and the match/miss tails only when something jumps
  to them.
* What cannot be translated raises
  :class:`~xdp_socket.errors.UntranslatableFilterError` naming the
  instruction and why: Linux ancillary loads (``SKF_AD_*``, negative
  offsets), backward jumps (the loop libpcap emits for ``protochain``),
  shifts by a constant >= 32, division by a constant 0, scratch
  index >= 16, jumps past the end, ``ret x``, unknown opcodes.

Limits: XDP sees only the linear part of a frame (multi-buffer frames: the
first buffer), so a classic load beyond it misses where libpcap, given the
whole frame, could match.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ._sys import bpf
from ._sys import bpf_asm as asm
from ._sys import consts as C
from ._sys import pcap as _pcap
from .errors import UntranslatableFilterError, XdpError

__all__ = [
    "FILTER_PROG_NAME",
    "PASS_TAIL",
    "CbpfInsn",
    "FilterReport",
    "as_cbpf",
    "classic_listing",
    "compile_filter",
    "describe_filter",
    "filter_program_insns",
    "redirect_tail",
    "translate",
]

#: Name of loaded filter programs (<= 15 characters, BPF_OBJ_NAME_LEN - 1).
FILTER_PROG_NAME = "xsk_py_filter"
_LICENSE = "Dual MIT/GPL"
_CHECK_MAP_NAME = "xsk_py_fcheck"

# --- classic BPF opcode fields (include/uapi/linux/filter.h, pcap/bpf.h) -------------------

_LD, _LDX, _ST, _STX, _ALU, _JMP, _RET, _MISC = range(8)
_SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1}  # BPF_W, BPF_H, BPF_B
_IMM, _ABS, _IND, _MEM, _LEN, _MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
_SRC_X = 0x08
_RET_K, _RET_A = 0x00, 0x10  # (0x08, ret x, does not exist in classic BPF)
_TAX, _TXA = 0x00, 0x80
_JA, _JEQ, _JGT, _JGE, _JSET = 0x00, 0x10, 0x20, 0x30, 0x40
_JMP_NAMES = {_JEQ: "jeq", _JGT: "jgt", _JGE: "jge", _JSET: "jset"}
_JMP_INVERSE = {"jeq": "jne", "jgt": "jle", "jge": "jlt"}  # jset has none
_ALU_NAMES = {0x00: "add", 0x10: "sub", 0x20: "mul", 0x30: "div", 0x40: "or", 0x50: "and",
              0x60: "lsh", 0x70: "rsh", 0x80: "neg", 0x90: "mod", 0xA0: "xor"}
_MEMWORDS = 16  # BPF_MEMWORDS

_MAX_PACKET_OFF = 0xFFFF  # include/linux/bpf.h MAX_PACKET_OFF: the verifier's packet range

# eBPF registers of the translation (see the module docstring).
_A, _X = asm.R4, asm.R5
_CTX, _DATA, _END, _LENREG = asm.R6, asm.R7, asm.R8, asm.R9
_SCRATCH_BASE = -4 * _MEMWORDS  # M[k] at r10 + _SCRATCH_BASE + 4 * k

_MATCH, _MISS = "match", "miss"


class CbpfInsn(NamedTuple):
    """One classic BPF instruction (``struct sock_filter``)."""

    code: int
    jt: int
    jf: int
    k: int


def compile_filter(expression: str, *, snaplen: int = _pcap.MAX_SNAPLEN,
                   optimize: bool = True) -> list[CbpfInsn]:
    """Compile a pcap-filter(7) expression for Ethernet frames with libpcap
    (``pcap_compile`` on a dead ``DLT_EN10MB`` handle), as ``tcpdump -d``.

    Raises :class:`~xdp_socket.errors.FilterError` with libpcap's message,
    :class:`~xdp_socket.errors.LibpcapMissingError` without libpcap.
    """
    return [CbpfInsn(*t) for t in _pcap.compile_expression(
        expression, snaplen=snaplen, optimize=optimize)]


def classic_listing(cbpf: Sequence[tuple[int, int, int, int]]) -> list[str]:
    """The classic program as ``tcpdump -d`` prints it (libpcap's ``bpf_image``)."""
    return [_pcap.bpf_image(tuple(ins), i) for i, ins in enumerate(cbpf)]  # type: ignore[arg-type]


# --- translation -------------------------------------------------------------------------


class _Jump(NamedTuple):
    op: str  # "ja" or a conditional jump name
    wide: bool  # 64-bit compare (BPF_JMP) rather than 32-bit (BPF_JMP32)
    dst: int
    src: int | None  # register, or None for an immediate compare
    imm: int
    target: object  # a label


class _Code:
    """eBPF being assembled: raw instructions and jumps to labels, laid out
    and resolved at the end."""

    def __init__(self) -> None:
        self.items: list[bytes | _Jump] = []
        self.labels: dict[object, int] = {}
        self.slot = 0
        self.used: set[object] = set()

    def emit(self, *raw: bytes) -> None:
        for r in raw:
            self.items.append(r)
            self.slot += len(r) // asm.INSN_SIZE

    def label(self, name: object) -> None:
        self.labels[name] = self.slot

    def jump(self, target: object, op: str = "ja", dst: int = 0, src: int | None = None,
             imm: int = 0, *, wide: bool = False) -> None:
        self.items.append(_Jump(op, wide, dst, src, imm, target))
        self.used.add(target)
        self.slot += 1

    def assemble(self) -> bytes:
        out: list[bytes] = []
        pos = 0
        for it in self.items:
            if isinstance(it, bytes):
                out.append(it)
                pos += len(it) // asm.INSN_SIZE
                continue
            off = self.labels[it.target] - (pos + 1)
            if not -(1 << 15) <= off < (1 << 15):
                raise ValueError("jump too long for eBPF (more than 32767 instructions)")
            if it.op == "ja":
                out.append(asm.ja(off))
            elif it.src is not None:
                fn = asm.jmp_reg if it.wide else asm.jmp32_reg
                out.append(fn(it.op, it.dst, it.src, off))
            else:
                fn2 = asm.jmp_imm if it.wide else asm.jmp32_imm
                out.append(fn2(it.op, it.dst, it.imm, off))
            pos += 1
        return b"".join(out)


class _Untranslatable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _load_span(ins: CbpfInsn) -> int | None:
    """For an absolute packet load: the end offset it needs; None otherwise."""
    cls, mode = ins.code & 0x07, ins.code & 0xE0
    if cls == _LD and mode == _ABS:
        return ins.k + _SIZE_BYTES.get(ins.code & 0x18, 0)
    if cls == _LDX and mode == _MSH:
        return ins.k + 1
    return None


def _always_misses(ins: CbpfInsn) -> bool:
    """A packet load XDP can never satisfy (offset beyond MAX_PACKET_OFF):
    like ``ret #0`` for everything after it."""
    span = _load_span(ins)
    if span is not None and ins.k < 0x80000000:
        return span > _MAX_PACKET_OFF
    if ins.code & 0x07 == _LD and ins.code & 0xE0 == _IND and ins.k < 0x80000000:
        return ins.k + _SIZE_BYTES.get(ins.code & 0x18, 0) > _MAX_PACKET_OFF
    return False


def _successors(pc: int, ins: CbpfInsn, n: int) -> list[int]:
    cls = ins.code & 0x07
    if cls == _RET or _always_misses(ins):
        return []
    if cls == _JMP:
        op = ins.code & 0xF0
        if op == _JA:
            if ins.k >= 0x80000000:
                raise _Untranslatable(
                    "backward jump: a loop (libpcap emits one for 'protochain'); the "
                    "translation only handles forward jumps")
            targets = [pc + 1 + ins.k]
        elif op in _JMP_NAMES:
            targets = [pc + 1 + ins.jt, pc + 1 + ins.jf]
        else:
            raise _Untranslatable(f"unknown jump operation {op:#x}")
    else:
        targets = [pc + 1]
    for t in targets:
        if t >= n:
            raise _Untranslatable("jumps or falls past the end of the program "
                                  "(a classic program must end every path with ret)")
    return targets


def _reachable(cbpf: Sequence[CbpfInsn]) -> list[int]:
    seen = {0}
    order: list[int] = []
    for pc in range(len(cbpf)):  # jumps only go forward: one pass in order
        if pc not in seen:
            continue
        order.append(pc)
        try:
            seen.update(_successors(pc, cbpf[pc], len(cbpf)))
        except _Untranslatable as e:
            raise _error(cbpf, pc, e.reason) from None
    return order


def _error(cbpf: Sequence[CbpfInsn], pc: int, reason: str) -> UntranslatableFilterError:
    try:
        text = _pcap.bpf_image(tuple(cbpf[pc]), pc)  # type: ignore[arg-type]
        # bpf_image prints "(NNN) op args": the caller's message shows the index itself.
        text = text.split(")", 1)[1] if text.startswith("(") else text
        text = " ".join(text.split())
    except OSError:  # no libpcap: show the raw fields
        text = ""
    ins = cbpf[pc]
    raw = f"{{code {ins.code:#06x}, jt {ins.jt}, jf {ins.jf}, k {ins.k:#x}}}"
    return UntranslatableFilterError(pc, f"{text} {raw}".strip(), reason)


def _check_insn(ins: CbpfInsn) -> None:
    for name, value, bits in (("code", ins.code, 16), ("jt", ins.jt, 8), ("jf", ins.jf, 8),
                              ("k", ins.k, 32)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
            raise _Untranslatable(f"{name} must be an unsigned {bits}-bit integer")


def _packet_load(code: _Code, dst: int, size: int, ins: CbpfInsn, indirect: bool,
                 checked: int = 0) -> None:
    """``dst = P[k:k+size]`` (or ``P[X+k:...]``), big-endian, after the bounds
    check; an absolute load within ``checked`` bytes needs none."""
    k = ins.k
    if k >= 0x80000000:
        raise _Untranslatable(
            "negative offsets are Linux ancillary data (SKF_AD_*, SKF_NET_OFF, SKF_LL_OFF), "
            "which only kernel socket filters have; XDP has no such data")
    load = {4: asm.ldx_w, 2: asm.ldx_h, 1: asm.ldx_b}[size]
    if not indirect:
        # r2 = data + k + size; if r2 > data_end: miss; dst = *(data + k)
        if k + size > checked:
            code.emit(asm.mov64_reg(asm.R2, _DATA), asm.alu64_imm("add", asm.R2, k + size))
            code.jump(_MISS, "jgt", asm.R2, _END, wide=True)
        if k < (1 << 15):
            code.emit(load(dst, _DATA, k))
        else:  # beyond an s16 instruction offset: through a pointer
            code.emit(asm.mov64_reg(asm.R1, _DATA), asm.alu64_imm("add", asm.R1, k),
                      load(dst, asm.R1, 0))
    else:
        # r1 = X + k, bounded so the verifier accepts data + r1 as a packet pointer
        code.emit(asm.mov32_reg(asm.R1, _X))
        if k:
            code.emit(asm.alu64_imm("add", asm.R1, k))
        code.jump(_MISS, "jgt", asm.R1, imm=_MAX_PACKET_OFF - size, wide=True)
        code.emit(asm.mov64_reg(asm.R2, _DATA), asm.alu64_reg("add", asm.R2, asm.R1),
                  asm.mov64_reg(asm.R3, asm.R2), asm.alu64_imm("add", asm.R3, size))
        code.jump(_MISS, "jgt", asm.R3, _END, wide=True)
        code.emit(load(dst, asm.R2, 0))
    if size > 1:
        code.emit(asm.endian_be(dst, 8 * size))


def _scratch(k: int) -> int:
    if k >= _MEMWORDS:
        raise _Untranslatable(f"scratch memory has {_MEMWORDS} words (M[0]..M[15])")
    return _SCRATCH_BASE + 4 * k


def _checked_spans(prog: Sequence[CbpfInsn], order: Sequence[int]) -> dict[int, int]:
    """For each reachable pc: how many bytes of the frame an earlier bounds
    check has proven present on *every* path to it. The verifier follows
    each path with its own packet range, so a load inside that span needs
    no check of its own. Jumps only go forward, so one pass in order sees
    all predecessors of an instruction before the instruction."""
    into: dict[int, int] = {}
    for pc in order:
        known = into.get(pc, 0)
        span = _load_span(prog[pc])
        out = max(known, span) if span is not None and not _always_misses(prog[pc]) else known
        for t in _successors(pc, prog[pc], len(prog)):
            into[t] = min(into[t], out) if t in into else out
    return {pc: into.get(pc, 0) for pc in order}


def _translate_one(code: _Code, pc: int, ins: CbpfInsn, nxt: int | None,
                   checked: int = 0) -> None:
    """Emit one classic instruction; ``nxt`` is the next emitted classic pc
    (a jump there is a fall-through); ``checked`` bytes are known present."""
    cls, op, k = ins.code & 0x07, ins.code & 0xF0, ins.k

    def goto(target: int | str) -> None:
        if target != nxt:
            code.jump(target)

    if _always_misses(ins):
        code.jump(_MISS)
        return
    if cls in (_LD, _LDX):
        mode, sz = ins.code & 0xE0, ins.code & 0x18
        dst = _A if cls == _LD else _X
        if sz not in _SIZE_BYTES:
            raise _Untranslatable("unknown load size")
        if mode == _IMM:
            code.emit(asm.mov32_imm(dst, k))
        elif mode == _MEM:
            code.emit(asm.ldx_w(dst, asm.R10, _scratch(k)))
        elif mode == _LEN:
            code.emit(asm.mov32_reg(dst, _LENREG))
        elif cls == _LD and mode in (_ABS, _IND):
            _packet_load(code, _A, _SIZE_BYTES[sz], ins, mode == _IND, checked)
        elif cls == _LDX and mode == _MSH and sz == 0x10:
            _packet_load(code, _X, 1, ins, False, checked)
            code.emit(asm.alu32_imm("and", _X, 0xF), asm.alu32_imm("lsh", _X, 2))
        else:
            raise _Untranslatable(f"unknown load mode {mode:#x}")
        goto(pc + 1)
    elif cls in (_ST, _STX):
        code.emit(asm.stx_w(asm.R10, _scratch(k), _A if cls == _ST else _X))
        goto(pc + 1)
    elif cls == _ALU:
        name = _ALU_NAMES.get(op)
        if name is None:
            raise _Untranslatable(f"unknown ALU operation {op:#x}")
        by_x = bool(ins.code & _SRC_X)
        if name == "neg":
            code.emit(asm.alu32_imm("neg", _A, 0))
        elif by_x:
            if name in ("div", "mod"):
                code.jump(_MISS, "jeq", _X, imm=0)  # classic: A / 0 rejects the packet
            code.emit(asm.alu32_reg(name, _A, _X))
        else:
            if name in ("div", "mod") and k == 0:
                raise _Untranslatable("division by the constant 0")
            if name in ("lsh", "rsh") and k >= 32:
                raise _Untranslatable("shift by 32 or more (undefined in classic BPF)")
            code.emit(asm.alu32_imm(name, _A, k))
        goto(pc + 1)
    elif cls == _JMP:
        if op == _JA:
            goto(pc + 1 + k)
            return
        jname = _JMP_NAMES[op]
        t, f = pc + 1 + ins.jt, pc + 1 + ins.jf
        src = _X if ins.code & _SRC_X else None
        if t == f:
            goto(t)
        elif t == nxt and jname in _JMP_INVERSE:
            code.jump(f, _JMP_INVERSE[jname], _A, src, k)
        else:
            code.jump(t, jname, _A, src, k)
            goto(f)
    elif cls == _RET:
        rval = ins.code & 0x18
        if rval == _RET_K:
            code.jump(_MATCH if k else _MISS)
        elif rval == _RET_A:
            code.jump(_MATCH, "jne", _A, imm=0)
            code.jump(_MISS)
        else:
            raise _Untranslatable("ret must return a constant or A")
    elif cls == _MISC:
        mop = ins.code & 0xF8
        if mop == _TAX:
            code.emit(asm.mov32_reg(_X, _A))
        elif mop == _TXA:
            code.emit(asm.mov32_reg(_A, _X))
        else:
            raise _Untranslatable(f"unknown misc operation {mop:#x}")
        goto(pc + 1)


def redirect_tail(xskmap_fd: int) -> bytes:
    """``return bpf_redirect_map(&xskmap, ctx->rx_queue_index, XDP_PASS)``
    with the ctx in r6: the built-in program's action."""
    return b"".join([
        asm.ldx_w(asm.R2, _CTX, C.XDP_MD_RX_QUEUE_INDEX),
        asm.ld_map_fd(asm.R1, xskmap_fd),
        # flags: the action when the map has no socket for this queue
        asm.mov64_imm(asm.R3, C.XDP_PASS),
        asm.call(C.BPF_FUNC_redirect_map),
        asm.exit_(),
    ])


PASS_TAIL = asm.mov64_imm(asm.R0, C.XDP_PASS) + asm.exit_()


def translate(cbpf: Sequence[tuple[int, int, int, int]], match_tail: bytes,
              miss_tail: bytes = PASS_TAIL) -> bytes:
    """Translate classic BPF to an XDP program: frames the classic program
    accepts run ``match_tail``, the others ``miss_tail``. Both tails start
    with the ``xdp_md`` pointer in r6 and must end with ``exit``.

    Raises :class:`~xdp_socket.errors.UntranslatableFilterError`.
    """
    prog = [CbpfInsn(*ins) for ins in cbpf]
    if not prog:
        raise UntranslatableFilterError(0, "(empty)", "the classic program has no instructions")
    if len(prog) > _pcap.BPF_MAXINSNS:
        raise UntranslatableFilterError(
            _pcap.BPF_MAXINSNS, "(end)",
            f"longer than {_pcap.BPF_MAXINSNS} instructions (BPF_MAXINSNS)")
    for pc, ins in enumerate(prog):
        try:
            _check_insn(ins)
        except _Untranslatable as e:
            raise _error(prog, pc, e.reason) from None
    order = _reachable(prog)
    checked = _checked_spans(prog, order)
    uses_len = any(prog[pc].code & 0xE0 == _LEN and prog[pc].code & 0x07 in (_LD, _LDX)
                   for pc in order)
    read_slots = sorted({prog[pc].k for pc in order
                         if prog[pc].code & 0x07 in (_LD, _LDX) and prog[pc].code & 0xE0 == _MEM
                         and prog[pc].k < _MEMWORDS})

    code = _Code()
    code.emit(asm.mov64_reg(_CTX, asm.R1))
    if uses_len:
        # r1 is still the ctx: the whole frame's length, as the classic "len"
        code.emit(asm.call(C.BPF_FUNC_xdp_get_buff_len), asm.mov64_reg(_LENREG, asm.R0))
    code.emit(
        asm.ldx_w(_DATA, _CTX, C.XDP_MD_DATA),
        asm.ldx_w(_END, _CTX, C.XDP_MD_DATA_END),
        asm.mov32_imm(_A, 0),
        asm.mov32_imm(_X, 0),
    )
    # Classic scratch memory reads as 0 until written; the verifier refuses
    # reads of stack slots nothing wrote on some path.
    for slot in read_slots:
        code.emit(asm.st_w(asm.R10, _SCRATCH_BASE + 4 * slot, 0))
    for i, pc in enumerate(order):
        code.label(pc)
        nxt = order[i + 1] if i + 1 < len(order) else None
        try:
            _translate_one(code, pc, prog[pc], nxt, checked[pc])
        except _Untranslatable as e:
            raise _error(prog, pc, e.reason) from None
    if _MATCH in code.used:
        code.label(_MATCH)
        code.emit(match_tail)
    if _MISS in code.used:
        code.label(_MISS)
        code.emit(miss_tail)
    try:
        return code.assemble()
    except ValueError as e:
        raise UntranslatableFilterError(len(prog) - 1, "(whole program)", str(e)) from None


def as_cbpf(expr_or_cbpf: str | Sequence[tuple[int, int, int, int]]) -> list[CbpfInsn]:
    """The classic program for an expression (compiled with libpcap) or for
    ``(code, jt, jf, k)`` tuples."""
    if isinstance(expr_or_cbpf, str):
        return compile_filter(expr_or_cbpf)
    return [CbpfInsn(*ins) for ins in expr_or_cbpf]


def filter_program_insns(xskmap_fd: int,
                         expr_or_cbpf: str | Sequence[tuple[int, int, int, int]]) -> bytes:
    """The XDP program for a filter: frames that match go to the socket in
    the XSKMAP behind ``xskmap_fd`` at the frame's RX queue (``XDP_PASS``
    when that slot is empty), all others get ``XDP_PASS``.

    ``expr_or_cbpf`` is a pcap-filter(7) expression (compiled with libpcap)
    or a classic program as ``(code, jt, jf, k)`` tuples. Load the result as
    ``BPF_PROG_TYPE_XDP``; for users who bring their own XSKMAP
    (``XdpConfig(xskmap_fd=...)``) and attach the program themselves.
    """
    return translate(as_cbpf(expr_or_cbpf), redirect_tail(xskmap_fd))


# --- showing it ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterReport:
    """What ``xdp-socket filter`` prints: both programs and the verifier's verdict."""

    expression: str
    classic: list[str]  # as tcpdump -d prints it
    ebpf: list[str]  # one line per eBPF instruction slot
    accepted: bool | None  # None: the kernel was not asked (see ``verifier``)
    verifier: str  # "accepted", the verifier's log tail, or why it was not asked


def describe_filter(expression: str, *, verify: bool = True) -> FilterReport:
    """Compile and translate ``expression``; with ``verify``, load the
    program into the kernel (against a throwaway one-entry XSKMAP) to learn
    whether the verifier accepts it, then unload it."""
    cbpf = compile_filter(expression)
    classic = classic_listing(cbpf)
    if not verify:
        return FilterReport(expression, classic, asm.disassemble(
            translate(cbpf, redirect_tail(0))), None, "not checked")
    try:
        map_fd = bpf.map_create(C.BPF_MAP_TYPE_XSKMAP, 4, 4, 1, _CHECK_MAP_NAME)
    except XdpError as e:
        insns = translate(cbpf, redirect_tail(0))
        return FilterReport(expression, classic, asm.disassemble(insns), None,
                            f"not checked: {e}")
    try:
        insns = translate(cbpf, redirect_tail(map_fd))
        try:
            prog_fd = bpf.prog_load(C.BPF_PROG_TYPE_XDP, insns, _LICENSE, FILTER_PROG_NAME)
        except XdpError as e:
            if e.errno in (errno.EPERM,):
                return FilterReport(expression, classic, asm.disassemble(insns), None,
                                    f"not checked: {e}")
            return FilterReport(expression, classic, asm.disassemble(insns), False, str(e))
        os.close(prog_fd)
        return FilterReport(expression, classic, asm.disassemble(insns), True, "accepted")
    finally:
        os.close(map_fd)

