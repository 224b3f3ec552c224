"""Layer 0: a tiny eBPF instruction encoder (no clang needed).

Rules this module keeps:

* Every function returns the encoded ``bytes`` of one instruction (16 bytes
  for ``ld_imm64``/``ld_map_fd``, which occupy two slots; 8 bytes otherwise),
  so a program is just ``b"".join([...])``.
* Encoding follows ``struct bpf_insn`` from include/uapi/linux/bpf.h, in host
  byte order (the kernel reads it natively)::

      __u8  code;       opcode = class | size/op | mode/source
      __u8  dst_reg:4;  low nibble on little-endian hosts
      __u8  src_reg:4;
      __s16 off;
      __s32 imm;

* Bad arguments (register out of range, offset/immediate that does not fit)
  raise :class:`ValueError` here rather than an obscure verifier error later.
* Jump offsets are counted in instruction *slots* relative to the next
  instruction, exactly as the kernel counts them (``ld_imm64`` is two slots).
"""

from __future__ import annotations

import struct
import sys

from .._check import check_int

__all__ = [
    "INSN_SIZE",
    "R0",
    "R1",
    "R2",
    "R3",
    "R4",
    "R5",
    "R6",
    "R7",
    "R8",
    "R9",
    "R10",
    "alu32_imm",
    "alu32_reg",
    "alu64_imm",
    "alu64_reg",
    "call",
    "disassemble",
    "endian_be",
    "exit_",
    "ja",
    "jmp32_imm",
    "jmp32_reg",
    "jmp_imm",
    "jmp_reg",
    "ld_imm64",
    "ld_map_fd",
    "ldx_b",
    "ldx_dw",
    "ldx_h",
    "ldx_w",
    "mov32_imm",
    "mov32_reg",
    "mov64_imm",
    "mov64_reg",
    "st_b",
    "st_dw",
    "st_h",
    "st_w",
    "stx_b",
    "stx_dw",
    "stx_h",
    "stx_w",
]

INSN_SIZE = 8  # sizeof(struct bpf_insn)

# Registers (include/uapi/linux/bpf.h enum: BPF_REG_0 .. BPF_REG_10).
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
_MAX_REG = 10

# --- include/uapi/linux/bpf_common.h: instruction classes -----------------
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06  # include/uapi/linux/bpf.h
BPF_ALU64 = 0x07  # include/uapi/linux/bpf.h

# ld/ldx fields: size
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18  # include/uapi/linux/bpf.h
# ld/ldx fields: mode
BPF_IMM = 0x00
BPF_MEM = 0x60

# alu/jmp fields: source
BPF_K = 0x00
BPF_X = 0x08

# ALU operations (bpf_common.h, plus BPF_MOV/BPF_ARSH from bpf.h)
ALU_OPS: dict[str, int] = {
    "add": 0x00,
    "sub": 0x10,
    "mul": 0x20,
    "div": 0x30,
    "or": 0x40,
    "and": 0x50,
    "lsh": 0x60,
    "rsh": 0x70,
    "neg": 0x80,
    "mod": 0x90,
    "xor": 0xA0,
    "mov": 0xB0,
    "arsh": 0xC0,
}

# Jump operations (bpf_common.h, plus the extended ones from bpf.h)
JMP_OPS: dict[str, int] = {
    "ja": 0x00,
    "jeq": 0x10,
    "jgt": 0x20,
    "jge": 0x30,
    "jset": 0x40,
    "jne": 0x50,
    "jsgt": 0x60,
    "jsge": 0x70,
    "jlt": 0xA0,
    "jle": 0xB0,
    "jslt": 0xC0,
    "jsle": 0xD0,
}
BPF_CALL = 0x80
BPF_EXIT = 0x90

# Byte-order conversion (bpf.h: BPF_END in the ALU class; BPF_TO_BE is the
# source bit: convert from host order to big-endian).
BPF_END = 0xD0
BPF_TO_BE = 0x08

# src_reg value of an ld_imm64 whose imm is a map fd (bpf.h: BPF_PSEUDO_MAP_FD).
BPF_PSEUDO_MAP_FD = 1

_INSN = struct.Struct("=BBhi")
_LITTLE = sys.byteorder == "little"


def _reg(r: int, what: str) -> int:
    return check_int(what, r, max=_MAX_REG, what=f"a register 0..{_MAX_REG}")


def _s16(v: int, what: str) -> int:
    return check_int(what, v, min=-(1 << 15), max=(1 << 15) - 1,
                     what="a signed 16-bit offset")


def _s32(v: int, what: str) -> int:
    """Accept -2**31 .. 2**32-1; values >= 2**31 are reinterpreted as their u32 bit pattern."""
    check_int(what, v, min=-(1 << 31), max=(1 << 32) - 1, what="a 32-bit value")
    return v - (1 << 32) if v >= (1 << 31) else v


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """Encode one raw ``struct bpf_insn``."""
    if not 0 <= code <= 0xFF:
        raise ValueError(f"opcode must be a byte, got {code!r}")
    d = _reg(dst, "dst")
    s = _reg(src, "src")
    # The bitfields dst_reg:4 / src_reg:4 are allocated from the least
    # significant bit on little-endian ABIs and from the most significant on
    # big-endian ones.
    regs = (s << 4) | d if _LITTLE else (d << 4) | s
    return _INSN.pack(code, regs, _s16(off, "off"), _s32(imm, "imm"))


# --- ALU ----------------------------------------------------------------------


def _alu_op(op: str) -> int:
    try:
        return ALU_OPS[op]
    except KeyError:
        raise ValueError(f"unknown ALU operation {op!r}") from None


def alu64_imm(op: str, dst: int, imm: int) -> bytes:
    """``dst = dst <op> imm`` on 64 bits (imm is sign-extended)."""
    return insn(BPF_ALU64 | _alu_op(op) | BPF_K, dst, 0, 0, imm)


def alu64_reg(op: str, dst: int, src: int) -> bytes:
    """``dst = dst <op> src`` on 64 bits."""
    return insn(BPF_ALU64 | _alu_op(op) | BPF_X, dst, src)


def alu32_imm(op: str, dst: int, imm: int) -> bytes:
    """``dst = (u32)(dst <op> imm)``; the upper half of dst is zeroed."""
    return insn(BPF_ALU | _alu_op(op) | BPF_K, dst, 0, 0, imm)


def alu32_reg(op: str, dst: int, src: int) -> bytes:
    """``dst = (u32)(dst <op> src)``; the upper half of dst is zeroed."""
    return insn(BPF_ALU | _alu_op(op) | BPF_X, dst, src)


def mov64_imm(dst: int, imm: int) -> bytes:
    return alu64_imm("mov", dst, imm)


def mov64_reg(dst: int, src: int) -> bytes:
    return alu64_reg("mov", dst, src)


def mov32_imm(dst: int, imm: int) -> bytes:
    return alu32_imm("mov", dst, imm)


def mov32_reg(dst: int, src: int) -> bytes:
    return alu32_reg("mov", dst, src)


def endian_be(dst: int, bits: int) -> bytes:
    """``dst = htobe<bits>(dst)``: the low ``bits`` (16, 32 or 64) of dst in
    big-endian order, zero-extended (a byte swap on little-endian hosts)."""
    if bits not in (16, 32, 64):
        raise ValueError(f"endian conversion width must be 16, 32 or 64, got {bits!r}")
    return insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, bits)


# --- memory -------------------------------------------------------------------


def _ldx(size: int, dst: int, src: int, off: int) -> bytes:
    return insn(BPF_LDX | size | BPF_MEM, dst, src, off)


def ldx_b(dst: int, src: int, off: int) -> bytes:
    """``dst = *(u8 *)(src + off)``"""
    return _ldx(BPF_B, dst, src, off)


def ldx_h(dst: int, src: int, off: int) -> bytes:
    """``dst = *(u16 *)(src + off)``"""
    return _ldx(BPF_H, dst, src, off)


def ldx_w(dst: int, src: int, off: int) -> bytes:
    """``dst = *(u32 *)(src + off)``"""
    return _ldx(BPF_W, dst, src, off)


def ldx_dw(dst: int, src: int, off: int) -> bytes:
    """``dst = *(u64 *)(src + off)``"""
    return _ldx(BPF_DW, dst, src, off)


def stx_b(dst: int, off: int, src: int) -> bytes:
    """``*(u8 *)(dst + off) = src``"""
    return insn(BPF_STX | BPF_B | BPF_MEM, dst, src, off)


def stx_h(dst: int, off: int, src: int) -> bytes:
    """``*(u16 *)(dst + off) = src``"""
    return insn(BPF_STX | BPF_H | BPF_MEM, dst, src, off)


def stx_w(dst: int, off: int, src: int) -> bytes:
    """``*(u32 *)(dst + off) = src``"""
    return insn(BPF_STX | BPF_W | BPF_MEM, dst, src, off)


def stx_dw(dst: int, off: int, src: int) -> bytes:
    """``*(u64 *)(dst + off) = src``"""
    return insn(BPF_STX | BPF_DW | BPF_MEM, dst, src, off)


def st_b(dst: int, off: int, imm: int) -> bytes:
    """``*(u8 *)(dst + off) = imm``"""
    return insn(BPF_ST | BPF_B | BPF_MEM, dst, 0, off, imm)


def st_h(dst: int, off: int, imm: int) -> bytes:
    """``*(u16 *)(dst + off) = imm``"""
    return insn(BPF_ST | BPF_H | BPF_MEM, dst, 0, off, imm)


def st_w(dst: int, off: int, imm: int) -> bytes:
    """``*(u32 *)(dst + off) = imm``"""
    return insn(BPF_ST | BPF_W | BPF_MEM, dst, 0, off, imm)


def st_dw(dst: int, off: int, imm: int) -> bytes:
    """``*(u64 *)(dst + off) = imm`` (imm sign-extended)."""
    return insn(BPF_ST | BPF_DW | BPF_MEM, dst, 0, off, imm)


def ld_imm64(dst: int, imm: int, src: int = 0) -> bytes:
    """``dst = imm`` (full 64 bits): two slots, the second carrying the upper half.

    ``src`` selects a pseudo source (e.g. :data:`BPF_PSEUDO_MAP_FD`).
    """
    check_int("imm", imm, min=-(1 << 63), max=(1 << 64) - 1, what="a 64-bit value")
    u = imm & ((1 << 64) - 1)
    lo, hi = u & 0xFFFFFFFF, u >> 32
    return insn(BPF_LD | BPF_DW | BPF_IMM, dst, src, 0, lo) + insn(0, 0, 0, 0, hi)


def ld_map_fd(dst: int, map_fd: int) -> bytes:
    """``dst = &map`` for the map behind ``map_fd`` (the verifier swaps the fd for a pointer)."""
    check_int("map_fd", map_fd, max=(1 << 31) - 1, what="a file descriptor")
    return ld_imm64(dst, map_fd, BPF_PSEUDO_MAP_FD)


# --- jumps --------------------------------------------------------------------


def _jmp_op(op: str) -> int:
    try:
        return JMP_OPS[op]
    except KeyError:
        raise ValueError(f"unknown jump operation {op!r}") from None


def jmp_imm(op: str, dst: int, imm: int, off: int) -> bytes:
    """``if dst <op> imm: pc += off`` (64-bit compare)."""
    return insn(BPF_JMP | _jmp_op(op) | BPF_K, dst, 0, off, imm)


def jmp_reg(op: str, dst: int, src: int, off: int) -> bytes:
    """``if dst <op> src: pc += off`` (64-bit compare)."""
    return insn(BPF_JMP | _jmp_op(op) | BPF_X, dst, src, off)


def jmp32_imm(op: str, dst: int, imm: int, off: int) -> bytes:
    """``if (u32)dst <op> (u32)imm: pc += off`` (compares the low 32 bits only)."""
    return insn(BPF_JMP32 | _jmp_op(op) | BPF_K, dst, 0, off, imm)


def jmp32_reg(op: str, dst: int, src: int, off: int) -> bytes:
    """``if (u32)dst <op> (u32)src: pc += off`` (compares the low 32 bits only)."""
    return insn(BPF_JMP32 | _jmp_op(op) | BPF_X, dst, src, off)


def ja(off: int) -> bytes:
    """``pc += off`` unconditionally."""
    return insn(BPF_JMP | JMP_OPS["ja"], 0, 0, off)


def call(helper_id: int) -> bytes:
    """Call BPF helper ``helper_id`` (arguments in R1..R5, result in R0)."""
    check_int("helper id", helper_id)
    return insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper_id)


def exit_() -> bytes:
    """Return R0."""
    return insn(BPF_JMP | BPF_EXIT)


# --- disassembly ----------------------------------------------------------------

_ALU_NAMES = {v: k for k, v in ALU_OPS.items()}
_JMP_NAMES = {v: k for k, v in JMP_OPS.items()}
_SIZE_NAMES = {BPF_W: ("w", "u32"), BPF_H: ("h", "u16"), BPF_B: ("b", "u8"), BPF_DW: ("dw", "u64")}
_ALU_SYMBOLS = {
    "add": "+=", "sub": "-=", "mul": "*=", "div": "/=", "or": "|=", "and": "&=",
    "lsh": "<<=", "rsh": ">>=", "mod": "%=", "xor": "^=", "mov": "=", "arsh": "s>>=",
}
_JMP_SYMBOLS = {
    "jeq": "==", "jgt": ">", "jge": ">=", "jset": "&", "jne": "!=", "jsgt": "s>",
    "jsge": "s>=", "jlt": "<", "jle": "<=", "jslt": "s<", "jsle": "s<=",
}


def _decode(raw: bytes) -> tuple[int, int, int, int, int]:
    code, regs, off, imm = _INSN.unpack(raw)
    dst, src = (regs & 0xF, regs >> 4) if _LITTLE else (regs >> 4, regs & 0xF)
    return code, dst, src, off, imm


def _fmt_off(off: int) -> str:
    return f"+ {off}" if off >= 0 else f"- {-off}"


def disassemble(code: bytes) -> list[str]:
    """One line per instruction slot, in the C-like notation of the kernel's
    verifier log (``r2 = *(u32 *)(r1 + 16)``, ``if w4 != 0x800 goto +3``).
    Jump targets are shown as absolute slot numbers after ``->``. The second
    slot of a 64-bit immediate load prints as ``(ld_imm64 continued)``.
    Instructions this module does not emit print as their raw fields."""
    if len(code) % INSN_SIZE:
        raise ValueError(f"code must be a multiple of {INSN_SIZE} bytes, got {len(code)}")
    out: list[str] = []
    slots = [code[i : i + INSN_SIZE] for i in range(0, len(code), INSN_SIZE)]
    i = 0
    while i < len(slots):
        op, dst, src, off, imm = _decode(slots[i])
        cls = op & 0x07
        text: str | None = None
        if op == BPF_LD | BPF_DW | BPF_IMM and i + 1 < len(slots):
            hi = _decode(slots[i + 1])[4] & 0xFFFFFFFF
            value = (hi << 32) | (imm & 0xFFFFFFFF)
            text = (f"r{dst} = map_fd {value}" if src == BPF_PSEUDO_MAP_FD
                    else f"r{dst} = {value:#x} ll")
            out.append(text)
            out.append("(ld_imm64 continued)")
            i += 2
            continue
        if cls in (BPF_ALU, BPF_ALU64):
            name = _ALU_NAMES.get(op & 0xF0)
            r = "w" if cls == BPF_ALU else "r"
            if (op & 0xF0) == BPF_END and cls == BPF_ALU:
                text = f"r{dst} = {'be' if op & BPF_TO_BE else 'le'}{imm} r{dst}"
            elif name == "neg":
                text = f"{r}{dst} = -{r}{dst}"
            elif name is not None:
                if op & BPF_X:
                    rhs = f"{r}{src}"
                elif cls == BPF_ALU:
                    rhs = f"{imm & 0xFFFFFFFF:#x}"
                else:
                    rhs = f"{imm:#x}" if imm >= 0 else str(imm)
                text = f"{r}{dst} {_ALU_SYMBOLS[name]} {rhs}"
        elif cls == BPF_LDX and (op & 0xE0) == BPF_MEM:
            _, ctype = _SIZE_NAMES[op & 0x18]
            text = f"r{dst} = *({ctype} *)(r{src} {_fmt_off(off)})"
        elif cls in (BPF_ST, BPF_STX) and (op & 0xE0) == BPF_MEM:
            _, ctype = _SIZE_NAMES[op & 0x18]
            rhs = f"r{src}" if cls == BPF_STX else str(imm)
            text = f"*({ctype} *)(r{dst} {_fmt_off(off)}) = {rhs}"
        elif cls in (BPF_JMP, BPF_JMP32):
            jop = op & 0xF0
            target = i + 1 + off
            if cls == BPF_JMP and jop == BPF_CALL:
                text = f"call {imm}"
            elif cls == BPF_JMP and jop == BPF_EXIT:
                text = "exit"
            elif cls == BPF_JMP and jop == JMP_OPS["ja"]:
                text = f"goto pc{off:+d} -> {target}"
            elif jop in _JMP_NAMES:
                r = "w" if cls == BPF_JMP32 else "r"
                rhs = f"{r}{src}" if op & BPF_X else f"{imm & 0xFFFFFFFF:#x}"
                sym = _JMP_SYMBOLS[_JMP_NAMES[jop]]
                text = f"if {r}{dst} {sym} {rhs} goto pc{off:+d} -> {target}"
        if text is None:
            text = f"(code {op:#04x} dst r{dst} src r{src} off {off} imm {imm})"
        out.append(text)
        i += 1
    return out
