"""eBPF instruction encodings, checked against byte values derived by hand
from the opcode definitions in include/uapi/linux/bpf.h and bpf_common.h.

code = class | size/op | mode/source; then a byte with dst in the low nibble
and src in the high nibble (little-endian bitfields), s16 off, s32 imm.
"""

from __future__ import annotations

import sys

import pytest

from xdp_socket._sys import bpf_asm as A

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="byte values are little-endian")


def b(*xs: int) -> bytes:
    return bytes(xs)


@pytest.mark.parametrize(
    ("got", "want"),
    [
        # BPF_ALU64(0x07) | BPF_MOV(0xb0) | BPF_K(0x00) = 0xb7; dst r3; imm 2
        (A.mov64_imm(A.R3, 2), b(0xB7, 0x03, 0, 0, 2, 0, 0, 0)),
        # BPF_ALU64 | BPF_MOV | BPF_X(0x08) = 0xbf; dst r1, src r6 -> 0x61
        (A.mov64_reg(A.R1, A.R6), b(0xBF, 0x61, 0, 0, 0, 0, 0, 0)),
        # BPF_ALU(0x04) | BPF_MOV | BPF_K = 0xb4
        (A.mov32_imm(A.R0, 7), b(0xB4, 0x00, 0, 0, 7, 0, 0, 0)),
        # BPF_ALU | BPF_MOV | BPF_X = 0xbc
        (A.mov32_reg(A.R2, A.R9), b(0xBC, 0x92, 0, 0, 0, 0, 0, 0)),
        # BPF_ALU64 | BPF_ADD(0x00) | BPF_K = 0x07; imm -1
        (A.alu64_imm("add", A.R1, -1), b(0x07, 0x01, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)),
        # BPF_ALU64 | BPF_SUB(0x10) | BPF_X = 0x1f
        (A.alu64_reg("sub", A.R4, A.R5), b(0x1F, 0x54, 0, 0, 0, 0, 0, 0)),
        # BPF_ALU | BPF_AND(0x50) | BPF_K = 0x54; imm 0xffff
        (A.alu32_imm("and", A.R2, 0xFFFF), b(0x54, 0x02, 0, 0, 0xFF, 0xFF, 0, 0)),
        # BPF_ALU | BPF_LSH(0x60) | BPF_X = 0x6c
        (A.alu32_reg("lsh", A.R7, A.R8), b(0x6C, 0x87, 0, 0, 0, 0, 0, 0)),
        # BPF_ALU64 | BPF_ARSH(0xc0) | BPF_K = 0xc7
        (A.alu64_imm("arsh", A.R0, 3), b(0xC7, 0x00, 0, 0, 3, 0, 0, 0)),
        # BPF_LDX(0x01) | BPF_W(0x00) | BPF_MEM(0x60) = 0x61; r2 = *(u32 *)(r1 + 16)
        (A.ldx_w(A.R2, A.R1, 16), b(0x61, 0x12, 16, 0, 0, 0, 0, 0)),
        # BPF_LDX | BPF_DW(0x18) | BPF_MEM = 0x79
        (A.ldx_dw(A.R0, A.R1, 8), b(0x79, 0x10, 8, 0, 0, 0, 0, 0)),
        # BPF_LDX | BPF_H(0x08) | BPF_MEM = 0x69
        (A.ldx_h(A.R3, A.R2, 12), b(0x69, 0x23, 12, 0, 0, 0, 0, 0)),
        # BPF_LDX | BPF_B(0x10) | BPF_MEM = 0x71
        (A.ldx_b(A.R3, A.R2, 0), b(0x71, 0x23, 0, 0, 0, 0, 0, 0)),
        # BPF_STX(0x03) | BPF_W | BPF_MEM = 0x63; *(u32 *)(r10 - 4) = r1
        (A.stx_w(A.R10, -4, A.R1), b(0x63, 0x1A, 0xFC, 0xFF, 0, 0, 0, 0)),
        # BPF_STX | BPF_DW | BPF_MEM = 0x7b
        (A.stx_dw(A.R10, -8, A.R6), b(0x7B, 0x6A, 0xF8, 0xFF, 0, 0, 0, 0)),
        # BPF_STX | BPF_B | BPF_MEM = 0x73 ; BPF_STX | BPF_H | BPF_MEM = 0x6b
        (A.stx_b(A.R1, 1, A.R2), b(0x73, 0x21, 1, 0, 0, 0, 0, 0)),
        (A.stx_h(A.R1, 2, A.R2), b(0x6B, 0x21, 2, 0, 0, 0, 0, 0)),
        # BPF_ST(0x02) | BPF_W | BPF_MEM = 0x62; *(u32 *)(r10 - 8) = 5
        (A.st_w(A.R10, -8, 5), b(0x62, 0x0A, 0xF8, 0xFF, 5, 0, 0, 0)),
        # BPF_ST | BPF_DW | BPF_MEM = 0x7a ; BPF_ST | BPF_B | BPF_MEM = 0x72 ; H = 0x6a
        (A.st_dw(A.R10, -16, 0), b(0x7A, 0x0A, 0xF0, 0xFF, 0, 0, 0, 0)),
        (A.st_b(A.R10, -1, 0x7F), b(0x72, 0x0A, 0xFF, 0xFF, 0x7F, 0, 0, 0)),
        (A.st_h(A.R10, -2, 1), b(0x6A, 0x0A, 0xFE, 0xFF, 1, 0, 0, 0)),
        # BPF_JMP(0x05) | BPF_JEQ(0x10) | BPF_K = 0x15
        (A.jmp_imm("jeq", A.R0, 0, 2), b(0x15, 0x00, 2, 0, 0, 0, 0, 0)),
        # BPF_JMP | BPF_JGT(0x20) | BPF_X = 0x2d
        (A.jmp_reg("jgt", A.R1, A.R2, -3), b(0x2D, 0x21, 0xFD, 0xFF, 0, 0, 0, 0)),
        # BPF_JMP | BPF_JNE(0x50) | BPF_K = 0x55
        (A.jmp_imm("jne", A.R3, 0x800, 1), b(0x55, 0x03, 1, 0, 0x00, 0x08, 0, 0)),
        # BPF_JMP | BPF_JLT(0xa0) | BPF_X = 0xad ; BPF_JSLE(0xd0) | BPF_K = 0xd5
        (A.jmp_reg("jlt", A.R2, A.R3, 4), b(0xAD, 0x32, 4, 0, 0, 0, 0, 0)),
        (A.jmp_imm("jsle", A.R2, -1, 4), b(0xD5, 0x02, 4, 0, 0xFF, 0xFF, 0xFF, 0xFF)),
        # BPF_JMP32(0x06) | BPF_JEQ | BPF_K = 0x16; imm 0x80000000 kept as its u32 bits
        (A.jmp32_imm("jeq", A.R4, 0x80000000, 2), b(0x16, 0x04, 2, 0, 0, 0, 0, 0x80)),
        # BPF_JMP32 | BPF_JSET(0x40) | BPF_X = 0x4e
        (A.jmp32_reg("jset", A.R4, A.R5, 1), b(0x4E, 0x54, 1, 0, 0, 0, 0, 0)),
        # BPF_ALU(0x04) | BPF_END(0xd0) | BPF_TO_BE(0x08) = 0xdc; imm = width
        (A.endian_be(A.R4, 16), b(0xDC, 0x04, 0, 0, 16, 0, 0, 0)),
        (A.endian_be(A.R4, 32), b(0xDC, 0x04, 0, 0, 32, 0, 0, 0)),
        # BPF_JMP | BPF_JA(0x00) = 0x05
        (A.ja(1), b(0x05, 0x00, 1, 0, 0, 0, 0, 0)),
        # BPF_JMP | BPF_CALL(0x80) = 0x85; imm = helper id 51 (bpf_redirect_map)
        (A.call(51), b(0x85, 0x00, 0, 0, 51, 0, 0, 0)),
        # BPF_JMP | BPF_EXIT(0x90) = 0x95
        (A.exit_(), b(0x95, 0, 0, 0, 0, 0, 0, 0)),
    ],
)
def test_encoding(got: bytes, want: bytes) -> None:
    assert got == want


def test_ld_imm64_takes_two_slots() -> None:
    # BPF_LD(0x00) | BPF_DW(0x18) | BPF_IMM(0x00) = 0x18; the second slot is all
    # zero except imm, which carries the upper 32 bits.
    got = A.ld_imm64(A.R1, 0x1122334455667788)
    first = b(0x18, 0x01, 0, 0, 0x88, 0x77, 0x66, 0x55)
    assert got == first + b(0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11)


def test_ld_imm64_negative() -> None:
    assert A.ld_imm64(A.R0, -1) == b(0x18, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF) + b(
        0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF
    )


def test_ld_map_fd_sets_pseudo_src() -> None:
    # src_reg = BPF_PSEUDO_MAP_FD (1): high nibble of the register byte.
    got = A.ld_map_fd(A.R1, 5)
    assert got == b(0x18, 0x11, 0, 0, 5, 0, 0, 0) + bytes(8)
    assert len(got) == 2 * A.INSN_SIZE


def test_imm_u32_bit_pattern() -> None:
    # An unsigned 32-bit immediate is stored as the same bits.
    assert A.mov32_imm(A.R0, 0xFFFFFFFF) == A.mov32_imm(A.R0, -1)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: A.mov64_imm(11, 0),
        lambda: A.mov64_imm(-1, 0),
        lambda: A.mov64_reg(A.R0, 12),
        lambda: A.mov64_imm(A.R0, 1 << 32),
        lambda: A.mov64_imm(A.R0, -(1 << 31) - 1),
        lambda: A.ldx_w(A.R0, A.R1, 1 << 15),
        lambda: A.jmp_imm("jeq", A.R0, 0, -(1 << 15) - 1),
        lambda: A.jmp_imm("jfoo", A.R0, 0, 0),
        lambda: A.alu64_imm("pow", A.R0, 0),
        lambda: A.ld_imm64(A.R0, 1 << 64),
        lambda: A.ld_map_fd(A.R0, -1),
        lambda: A.call(-1),
        lambda: A.endian_be(A.R0, 8),
        lambda: A.jmp32_imm("jfoo", A.R0, 0, 0),
    ],
)
def test_bad_arguments_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        bad()  # type: ignore[operator]


@pytest.mark.parametrize(
    "bad",
    [
        lambda: A.mov64_imm(True, 0),  # a bool is not a register
        lambda: A.mov64_imm(A.R0, 1.5),  # type: ignore[arg-type]
        lambda: A.ld_map_fd(A.R0, "3"),  # type: ignore[arg-type]
    ],
)
def test_bad_argument_types_raise_type_error(bad: object) -> None:
    # the shared check_int: TypeError for the wrong type, ValueError for the range
    with pytest.raises(TypeError):
        bad()  # type: ignore[operator]


def test_program_concatenates() -> None:
    prog = A.mov64_imm(A.R0, 2) + A.exit_()
    assert len(prog) == 2 * A.INSN_SIZE


def test_disassemble_in_verifier_notation() -> None:
    prog = b"".join([
        A.ldx_h(A.R4, A.R7, 12),
        A.endian_be(A.R4, 16),
        A.jmp32_imm("jne", A.R4, 0x800, 3),
        A.ld_map_fd(A.R1, 5),
        A.alu32_imm("and", A.R5, 0xF),
        A.stx_w(A.R10, -64, A.R4),
        A.call(51),
        A.exit_(),
    ])
    assert A.disassemble(prog) == [
        "r4 = *(u16 *)(r7 + 12)",
        "r4 = be16 r4",
        "if w4 != 0x800 goto pc+3 -> 6",
        "r1 = map_fd 5",
        "(ld_imm64 continued)",
        "w5 &= 0xf",
        "*(u32 *)(r10 - 64) = r4",
        "call 51",
        "exit",
    ]
    with pytest.raises(ValueError):
        A.disassemble(bytes(7))
