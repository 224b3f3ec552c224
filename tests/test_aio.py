"""asyncio (the sockets' async methods): an asyncio echo server on a bidirectional AF_XDP socket,
fed by an AF_PACKET peer in a thread, while another task ticks to show the
event loop stays responsive; and an idle wait that costs no CPU."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import xdp_socket as xs
from xdp_socket import testing

pytestmark = pytest.mark.kernel

N = 500


def our_frame(i: int) -> bytes:
    return testing.make_frame(payload=b"aio" + i.to_bytes(4, "big") + bytes(i % 100))


def is_ours(f: bytes) -> bool:
    return f[12:14] == testing.TEST_ETHERTYPE.to_bytes(2, "big") and f[14:17] == b"aio"


def test_echo_server_keeps_the_loop_responsive(veth: testing.VethPair) -> None:
    cfg = xs.XdpConfig(xdp_mode="native", frame_count=256)
    tx, rx = xs.create_bi_socket(veth.b, 0, cfg)
    sent = [our_frame(i) for i in range(N)]
    echoed: list[bytes] = []
    peer = testing.AfPacketPeer(veth.a)

    def client() -> None:
        # Paced a little, so the echo server waits for packets many times.
        for i, f in enumerate(sent):
            peer.send(f)
            if i % 50 == 49:
                time.sleep(0.01)
        echoed.extend(peer.recv_matching(is_ours, N, timeout=15))

    async def main() -> tuple[int, float]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.001)
                ticks += 1

        async def echo() -> None:
            n = 0
            async for batch in rx.batches_async(32):
                for frame in batch:
                    if is_ours(frame):
                        await tx.send_async(frame)
                        n += 1
                if n >= N:
                    return

        tick_task = asyncio.create_task(ticker())
        thread = threading.Thread(target=client)
        t0 = time.monotonic()
        thread.start()
        await asyncio.wait_for(echo(), 20)
        elapsed = time.monotonic() - t0
        done.set()
        await tick_task
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 20)
        return ticks, elapsed

    try:
        ticks, elapsed = asyncio.run(main())
    finally:
        peer.close()
        tx.close()
        rx.close()
    assert echoed == sent
    # The ticker sleeps 1 ms per tick; a loop blocked by the echo task would
    # starve it. Allow generous scheduling slack on a loaded machine.
    assert elapsed > 0.05
    assert ticks >= 0.25 * elapsed / 0.001, (ticks, elapsed)


def test_idle_wait_uses_no_cpu(veth: testing.VethPair) -> None:
    rx = xs.create_rx_socket(veth.b, 0, xs.XdpConfig(xdp_mode="native", frame_count=64))

    async def idle() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(rx.recv_async(), 0.5)

    try:
        cpu0 = time.process_time()
        asyncio.run(idle())
        cpu = time.process_time() - cpu0
    finally:
        rx.close()
    assert cpu < 0.15, f"waiting 0.5 s for a packet used {cpu:.3f} s of CPU"


def test_functions_round_trip(veth: testing.VethPair) -> None:
    """send_async on one end, recv_async and batches_async on the other."""
    tx = xs.create_tx_socket(veth.a, 0, xs.XdpConfig(frame_count=16))
    rx = xs.create_rx_socket(veth.b, 0, xs.XdpConfig(xdp_mode="native", frame_count=256))
    frames = [our_frame(i) for i in range(100)]  # more than the 16 TX frames: send_async waits

    async def main() -> list[bytes]:
        got: list[bytes] = []

        async def receive() -> None:
            first = await rx.recv_async()
            if is_ours(first):
                got.append(first)
            async for batch in rx.batches_async(8):
                assert 1 <= len(batch) <= 8
                got.extend(f for f in batch if is_ours(f))
                if len(got) >= len(frames):
                    return

        task = asyncio.create_task(receive())
        await asyncio.sleep(0.05)
        for f in frames:
            await tx.send_async(f[14:], header=f[:14])
        await asyncio.wait_for(task, 10)
        return got

    try:
        got = asyncio.run(main())
    finally:
        tx.close()
        rx.close()
    assert got == frames


def test_batches_async_checks_its_argument(veth: testing.VethPair) -> None:
    with xs.create_rx_socket(veth.b, 0, xs.XdpConfig(frame_count=64)) as rx:
        for bad in (0, -1):
            with pytest.raises(ValueError, match="max_batch must be a positive int"):
                asyncio.run(rx.batches_async(bad).__anext__())
        for wrong in (True, 1.5):
            with pytest.raises(TypeError, match="max_batch must be an int"):
                asyncio.run(rx.batches_async(wrong).__anext__())  # type: ignore[arg-type]


def test_socket_methods_await_packets_and_batches(veth: testing.VethPair) -> None:
    """Interleaving the three methods on fresh sockets: rx.recv_async(),
    tx.send_async(), async for ... in rx.batches_async()."""
    cfg = xs.XdpConfig(xdp_mode="native")
    frames = [testing.make_frame(payload=i.to_bytes(2, "big") * 20) for i in range(40)]

    async def main() -> list[bytes]:
        with xs.create_rx_socket(veth.b, 0, cfg) as rx, xs.create_tx_socket(veth.a, 0) as tx:
            for f in frames[:10]:
                await tx.send_async(f)
            got = [await asyncio.wait_for(rx.recv_async(), 5) for _ in range(10)]
            for f in frames[10:]:
                await tx.send_async(f)
            it = rx.batches_async(8)
            while len(got) < len(frames):
                batch = await asyncio.wait_for(it.__anext__(), 5)
                assert 1 <= len(batch) <= 8
                got += batch
            return got

    assert asyncio.run(main()) == frames
