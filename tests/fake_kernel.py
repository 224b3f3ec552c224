"""A fake kernel for the ring logic: plain bytearrays laid out like the
kernel's ring mappings, and a tiny model of what the kernel does with them.

It lets the unit tests drive TxPath/RxPath without root, a NIC or Linux, and
start the free-running indices anywhere (just below 2**32 to test the wrap).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xdp_socket import _ring
from xdp_socket.core import XskCore

PROD, CONS, FLAGS, DESC = 0, 64, 128, 192  # offsets like the kernel's (cache-line apart)
U32 = 0xFFFFFFFF
NEED_WAKEUP = _ring.RING_NEED_WAKEUP


@pytest.fixture(params=["python", "c"])
def both_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the pure-Python ring path and on the compiled accelerator
    (rings made during the test use the one chosen). The C run is skipped
    when the extension is not built or XDP_SOCKET_NO_ACCEL is set."""
    if request.param == "c":
        if _ring.C is None:
            pytest.skip("the C accelerator is not built or is switched off (XDP_SOCKET_NO_ACCEL)")
        monkeypatch.setattr(_ring, "accel", _ring.C)
    else:
        monkeypatch.setattr(_ring, "accel", None)
    return str(request.param)


class FakeRing:
    def __init__(self, entries: int, kind: str, start: int = 0) -> None:
        esize = 8 if kind == "addr" else 16
        self.buf = bytearray(DESC + entries * esize)
        self.entries = entries
        self.kind = kind
        self.word = memoryview(self.buf)[:DESC].cast("I")
        self.word[PROD // 4] = start & U32
        self.word[CONS // 4] = start & U32
        self.area = _ring.RingArea(self.buf, PROD, CONS, FLAGS, DESC, entries, kind)

    @property
    def prod(self) -> int:
        return int(self.word[PROD // 4])

    @prod.setter
    def prod(self, v: int) -> None:
        self.word[PROD // 4] = v & U32

    @property
    def cons(self) -> int:
        return int(self.word[CONS // 4])

    @cons.setter
    def cons(self, v: int) -> None:
        self.word[CONS // 4] = v & U32

    def set_flags(self, v: int) -> None:
        self.word[FLAGS // 4] = v

    def entry(self, idx: int) -> tuple[int, int, int]:
        slot = idx & (self.entries - 1)
        if self.kind == "addr":
            return int(self.area.addrs[slot]), 0, 0
        d = self.area.descs[slot]
        return int(d["addr"]), int(d["len"]), int(d["options"])

    def put(self, idx: int, addr: int, length: int = 0) -> None:
        slot = idx & (self.entries - 1)
        if self.kind == "addr":
            self.area.addrs[slot] = addr
        else:
            self.area.descs[slot] = (addr, length, 0)


class FakeKernel:
    """Models one socket: a UMEM and the four rings."""

    def __init__(self, frame_size: int = 2048, frame_count: int = 64, ring: int = 16,
                 fill: int | None = None, comp: int | None = None, start: int = 0,
                 headroom: int = 256) -> None:
        self.frame_size = frame_size
        self.frame_count = frame_count
        self.umem = bytearray(frame_size * frame_count)
        self.umem_view = memoryview(self.umem)
        self.tx = FakeRing(ring, "desc", start)
        self.rx = FakeRing(ring, "desc", start)
        self.fill = FakeRing(fill or ring, "addr", start)
        # The Fill ring asks for a wakeup (as the kernel's does in copy mode
        # whenever it has run dry): a released batch then kicks. Tests clear
        # it to check that no kick is made unasked.
        self.fill.set_flags(NEED_WAKEUP)
        self.comp = FakeRing(comp or ring, "addr", start)
        self.headroom = headroom
        self.sent: list[bytes] = []
        self.invalid = 0

    def addrs(self, first: int, count: int) -> np.ndarray:
        return np.arange(first, first + count, dtype=np.uint64) * np.uint64(self.frame_size)

    def tx_path(self, first: int = 0, count: int | None = None) -> _ring.TxPath:
        n = self.frame_count - first if count is None else count
        return _ring.TxPath(self.tx.area, self.comp.area, self.addrs(first, n), self.frame_size,
                            self.umem_view)

    def rx_path(self, first: int = 0, count: int | None = None) -> _ring.RxPath:
        n = self.frame_count - first if count is None else count
        return _ring.RxPath(self.rx.area, self.fill.area, self.addrs(first, n), self.frame_size,
                            self.umem_view)

    # --- what the kernel does ------------------------------------------------
    def transmit(self, limit: int | None = None) -> int:
        """Consume TX descriptors (as many as the completion ring has room for)."""
        n = 0
        while self.tx.cons != self.tx.prod and (limit is None or n < limit):
            if (self.comp.prod - self.comp.cons) & U32 >= self.comp.entries:
                break
            addr, length, _ = self.tx.entry(self.tx.cons)
            if length == 0 or addr + length > len(self.umem):
                self.invalid += 1
            else:
                self.sent.append(bytes(self.umem[addr : addr + length]))
            self.comp.put(self.comp.prod, addr)
            self.comp.prod += 1
            self.tx.cons += 1
            n += 1
        return n

    def receive(self, packets: list[bytes]) -> int:
        """Deliver packets into frames taken from the Fill ring; returns how many fit."""
        n = 0
        for pkt in packets:
            if self.fill.cons == self.fill.prod:
                break
            if (self.rx.prod - self.rx.cons) & U32 >= self.rx.entries:
                break
            base, _, _ = self.fill.entry(self.fill.cons)
            self.fill.cons += 1
            addr = base + self.headroom
            self.umem[addr : addr + len(pkt)] = pkt
            self.rx.put(self.rx.prod, addr, len(pkt))
            self.rx.prod += 1
            n += 1
        return n

    def fill_contents(self) -> list[int]:
        return entries_between(self.fill, self.fill.cons, self.fill.prod)


def entries_between(ring: FakeRing, start: int, stop: int, mask: int = ~0) -> list[int]:
    """Addresses in ring slots start..stop-1 (free-running, may wrap), ANDed with mask."""
    return [ring.entry(i)[0] & mask for i in range(start, start + ((stop - start) & U32))]


class FakeCore:
    """Stands in for ``XskCore`` under batches: counts kicks, forwards on the
    given TX path, and can be closed."""

    _kick_always = False  # (read by XskCore.write_submit_tx)

    def __init__(self, tx_path: _ring.TxPath | None = None) -> None:
        self.tx_path = tx_path
        self.closed = False
        self.tx_kicks = 0
        self.fill_kicks = 0

    def drive_tx(self) -> int:
        self.tx_kicks += 1
        return 0

    def submit_tx(self, path: _ring.TxPath, n: int, length: int, kick: bool) -> None:
        path.submit_len(n, length)
        if kick:
            self.drive_tx()

    def write_submit_tx(self, path: _ring.TxPath, rows: Any, n: int, lens: Any, kick: bool,
                        rest: int) -> bool:
        """XskCore's, on its C call with no socket (fd -1: the ring work
        only); its kick is counted here."""
        if not XskCore.write_submit_tx(self, path, rows, n, lens, False, rest):  # type: ignore[arg-type]
            return False
        if kick:
            self.drive_tx()
        return True

    def kick_fill(self) -> None:
        self.fill_kicks += 1

    def wake_fill(self) -> None:  # (the ring step saw the Fill ring ask)
        self.fill_kicks += 1

    def forward(self, rx: _ring.RxPath, n: int) -> int:
        assert self.tx_path is not None
        k: int = self.tx_path.forward(rx, n)
        self.drive_tx()
        return k
