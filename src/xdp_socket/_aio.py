"""asyncio support behind the sockets' async methods (``await rx.recv_async()``,
``await tx.send_async(data)``, ``async for packets in rx.batches_async()``):
await packets and frames without a busy loop or a thread.

The functions wait on the event loop's own readiness callbacks for the
socket's fd (``loop.add_reader``), so a task waiting for a packet costs
nothing while the rest of the program runs.

This module ranks below :mod:`xdp_socket.socket` and does not import it: it
works on anything with the halves' per-packet methods (the protocols below).

How AF_XDP readiness works, and what that means here:

* The fd is readable (POLLIN) when the RX ring holds packets; the kernel
  wakes the fd's waiters when it adds some. asyncio's selector is
  level-triggered, so a packet that arrived just before we registered is not
  missed.
* Sending is different: in copy mode the kernel transmits, and so completes
  frames and makes them free again, only inside a kick (``sendto``) or a
  ``poll``. Writability (POLLOUT) means "the TX ring has room", which stays
  true while every UMEM frame is in flight, so waiting on it would spin.
  :func:`send_async` therefore kicks and then sleeps on the loop with a short
  exponential backoff (50 µs to 2 ms) until a frame is free.
* One waiter per direction per socket at a time: the loop keeps one reader
  callback per fd, so two tasks awaiting the same RX socket at once would
  steal each other's wakeups. A bidirectional socket may have one receiving
  and one sending task.

"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

from ._check import check_int

__all__ = ["batches", "recv_async", "send_async"]


class RxSocket(Protocol):
    """What the functions need of an RX half."""

    def seek_n(self, n: int) -> int: ...
    def kick(self) -> None: ...
    def fileno(self) -> int: ...
    def poll_wait(self, timeout: float | None = None) -> bool: ...
    def recv(self, timeout: float | None = None) -> bytes | None: ...
    def peek_at(self, i: int) -> memoryview: ...
    def commit_n(self, n: int) -> None: ...


class TxSocket(Protocol):
    """What the functions need of a TX half."""

    def send(self, data: bytes | bytearray | memoryview,
             header: bytes | bytearray | memoryview | None = None) -> bool: ...
    def kick(self) -> None: ...

BytesLike = bytes | bytearray | memoryview

_BACKOFF_MIN_S = 0.00005
_BACKOFF_MAX_S = 0.002


def _asyncio() -> Any:
    # A coroutine only runs under an event loop, so asyncio is imported by
    # then: looked up, not imported here, because importing it costs ~30 ms
    # of every program's start-up (the CLI tools never use it).
    return sys.modules["asyncio"]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _readable(rx: RxSocket) -> None:
    """Wait until the loop sees ``rx``'s fd readable (or in error)."""
    loop = _asyncio().get_running_loop()
    fd = rx.fileno()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def _wait_packet(rx: RxSocket) -> None:
    """Return once ``rx.seek_n`` will find at least one packet."""
    while not rx.seek_n(1):
        # Frames we returned to the Fill ring may need a wakeup before the
        # kernel receives into them (drivers that set need_wakeup on it).
        rx.kick()
        await _readable(rx)
        if not rx.seek_n(1):
            # Woken without a packet: an error condition (POLLERR) reads as
            # readable too. poll_wait(0) raises the socket's XdpError then.
            rx.poll_wait(0)
            await _asyncio().sleep(0)  # never monopolise the loop on a spurious wakeup


async def recv_async(rx: RxSocket) -> bytes:
    """Receive one packet (copied out), waiting on the event loop."""
    while True:
        data = rx.recv(0)
        if data is not None:
            return data
        await _wait_packet(rx)


async def batches(rx: RxSocket, max_batch: int = 64) -> AsyncIterator[list[bytes]]:
    """Yield lists of 1..``max_batch`` received packets (copied out), forever.

    The frames go back to the Fill ring before each list is yielded, so the
    consumer may keep the bytes as long as it likes.
    """
    check_int("max_batch", max_batch, min=1, what="a positive int")
    while True:
        await _wait_packet(rx)
        n = rx.seek_n(max_batch)
        out = [bytes(rx.peek_at(i)) for i in range(n)]
        rx.commit_n(n)
        rx.kick()
        yield out


async def send_async(tx: TxSocket, data: BytesLike, header: BytesLike | None = None) -> None:
    """Send one packet (``header`` then ``data`` in one frame), waiting on the
    event loop while every frame is in flight. Raises ValueError for a packet
    that does not fit a frame."""
    delay = _BACKOFF_MIN_S
    while not tx.send(data, header):
        # send() has already kicked; completions come from the kernel's TX
        # work, which in copy mode runs only inside a kick or a poll.
        tx.kick()
        await _asyncio().sleep(delay)
        delay = min(delay * 2, _BACKOFF_MAX_S)
