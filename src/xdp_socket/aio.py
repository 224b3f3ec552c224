"""asyncio support: await packets and frames without a busy loop or a thread.

The functions wait on the event loop's own readiness callbacks for the
socket's fd (``loop.add_reader``), so a task waiting for a packet costs
nothing while the rest of the program runs::

    from xdp_socket import create_bi_socket
    from xdp_socket.aio import AsyncRxSocket, AsyncTxSocket

    tx, rx = create_bi_socket("veth0", 0)
    arx, atx = AsyncRxSocket(rx), AsyncTxSocket(tx)
    async for batch in arx.batches():
        for frame in batch:
            await atx.send_async(frame)

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

The functions take the ordinary :class:`~xdp_socket.RxSocket` and
:class:`~xdp_socket.TxSocket`; :class:`AsyncRxSocket` and
:class:`AsyncTxSocket` are thin wrappers that carry them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from .socket import RxSocket, TxSocket

__all__ = [
    "AsyncRxSocket",
    "AsyncTxSocket",
    "batches",
    "recv_async",
    "send_async",
]

BytesLike = bytes | bytearray | memoryview

_BACKOFF_MIN_S = 0.00005
_BACKOFF_MAX_S = 0.002


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _readable(rx: RxSocket) -> None:
    """Wait until the loop sees ``rx``'s fd readable (or in error)."""
    loop = asyncio.get_running_loop()
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
            await asyncio.sleep(0)  # never monopolise the loop on a spurious wakeup


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
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
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
        await asyncio.sleep(delay)
        delay = min(delay * 2, _BACKOFF_MAX_S)


class AsyncRxSocket:
    """An :class:`~xdp_socket.RxSocket` with awaitable receive methods."""

    def __init__(self, rx: RxSocket) -> None:
        if not isinstance(rx, RxSocket):
            raise TypeError(f"expected an RxSocket, not {type(rx).__name__}")
        self.socket = rx

    async def recv_async(self) -> bytes:
        """See :func:`recv_async`."""
        return await recv_async(self.socket)

    def batches(self, max_batch: int = 64) -> AsyncIterator[list[bytes]]:
        """See :func:`batches`."""
        return batches(self.socket, max_batch)

    def close(self) -> None:
        self.socket.close()

    def __repr__(self) -> str:
        return f"<AsyncRxSocket {self.socket!r}>"


class AsyncTxSocket:
    """A :class:`~xdp_socket.TxSocket` with an awaitable send."""

    def __init__(self, tx: TxSocket) -> None:
        if not isinstance(tx, TxSocket):
            raise TypeError(f"expected a TxSocket, not {type(tx).__name__}")
        self.socket = tx

    async def send_async(self, data: BytesLike, header: BytesLike | None = None) -> None:
        """See :func:`send_async`."""
        await send_async(self.socket, data, header)

    def close(self) -> None:
        self.socket.close()

    def __repr__(self) -> str:
        return f"<AsyncTxSocket {self.socket!r}>"
