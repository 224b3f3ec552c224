"""Scenarios for the lifetime tests that can deadlock a process if the
library is wrong. Each runs in a child process (``python3 lifetime_child.py
SCENARIO IFNAME SEED ROUNDS``) under a faulthandler watchdog: a hang dumps
every thread's stack and kills the child, so the parent test fails with the
stacks instead of hanging the suite (and the lowered GC thresholds stay out
of the test process).

The child inherits the test process's private network and mount namespaces,
so the veth made by the parent test is visible here.

Prints one line ``OK forgotten=N warnings=M rounds=R`` at the end.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import random
import signal
import sys
import time
import warnings
from typing import Any

import xdp_socket as xs

CFG = xs.XdpConfig(frame_count=64, rx_size=32, tx_size=32, fill_size=32, comp_size=32)
FRAME = bytes.fromhex("ffffffffffff" "02000000000a" "88b5") + bytes(46)

_resource_warnings: list[str] = []


def _count_resource_warnings() -> None:
    """Count ResourceWarnings without going through the warnings registry (a
    finalizer may warn in any thread, inside any GC pass)."""
    original = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, ResourceWarning):
            _resource_warnings.append(str(message))
            return
        original(message, category, *args, **kwargs)

    warnings.showwarning = show
    warnings.simplefilter("always", ResourceWarning)


def _batch_socket(ifname: str, queue: int, kind: str) -> tuple[Any, ...]:
    """A socket whose halves used the batch API (each keeps its last batch)."""
    if kind == "bi":
        tx, rx = xs.create_bi_socket(ifname, queue, CFG)
    elif kind == "rx":
        tx, rx = None, xs.create_rx_socket(ifname, queue, CFG)
    else:
        tx, rx = xs.create_tx_socket(ifname, queue, CFG), None
    if tx is not None:
        with tx.reserve(2) as b:
            b.fill(FRAME)
    if rx is not None:
        with rx.receive(8):
            pass
    return tuple(h for h in (tx, rx) if h is not None)


def _forget(halves: tuple[Any, ...], rng: random.Random) -> None:
    """Drop a socket without closing it: plainly (freed by reference
    counting) or inside a reference cycle of the user's own (freed by some
    later GC pass, in whatever thread and at whatever point it runs)."""
    if rng.random() < 0.5:
        cycle: list[Any] = [halves]
        cycle.append(cycle)
    del halves


def scenario_gc_forget(ifname: str, seed: int, rounds: int) -> int:
    """Forget one batch-using socket per round, then open and close another
    (RX: the program path, which talks netlink and allocates a lot)."""
    rng = random.Random(seed)
    forgotten = 0
    # Seeds 1, 4, 7 ... load and unload the program in most rounds; the
    # others keep it attached with a socket on queue 2 (rounds are cheaper,
    # and the registry lookup path runs instead).
    keeper = xs.create_rx_socket(ifname, 2, CFG) if seed % 3 != 1 else None
    for _ in range(rounds):
        q = rng.randrange(2)
        _forget(_batch_socket(ifname, q, rng.choice(("bi", "rx", "tx"))), rng)
        forgotten += 1
        kind = rng.choice(("rx", "bi", "tx"))
        halves = _batch_socket(ifname, 1 - q, kind)
        for h in halves:  # "GC during close": every close allocates
            h.close()
    if keeper is not None:
        keeper.close()
    return forgotten


def scenario_signal_close(ifname: str, seed: int, rounds: int) -> int:
    """A signal handler closes sockets while the main thread is inside
    socket creation: each round arms the timer to fire first at a random
    point of the next creation, then every 300 us; each firing closes one
    socket made in the round before."""
    rng = random.Random(seed)
    victims: list[Any] = []
    closed_by_handler = [0]

    def handler(signum: int, frame: Any) -> None:
        try:
            h = victims.pop()
        except IndexError:
            return
        h.close()
        closed_by_handler[0] += 1

    old = signal.signal(signal.SIGALRM, handler)
    try:
        for _ in range(rounds):
            q = rng.randrange(2)
            halves = _batch_socket(ifname, q, rng.choice(("bi", "rx")))
            victims.extend(halves)
            del halves
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0002, 0.06), 0.0003)
            # The next creation is where the handler usually runs.
            halves = _batch_socket(ifname, 1 - q, rng.choice(("bi", "rx", "tx")))
            for h in halves:
                h.close()
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            while victims:  # whatever the handler did not get to
                try:
                    victims.pop().close()
                except IndexError:  # pragma: no cover
                    break
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    print(f"closed_by_handler={closed_by_handler[0]}", flush=True)
    return 0


def scenario_coroutine(ifname: str, seed: int, rounds: int) -> int:
    """Sockets created inside a coroutine (the netlink calls then run in a
    helper thread that the caller joins) while GC passes finalize forgotten
    sockets held in reference cycles."""
    rng = random.Random(seed)
    forgotten = [0]

    async def main() -> None:
        for _ in range(rounds):
            q = rng.randrange(2)
            _forget(_batch_socket(ifname, q, rng.choice(("bi", "rx"))), rng)
            forgotten[0] += 1
            halves = _batch_socket(ifname, 1 - q, "rx")
            for h in halves:
                h.close()
            await asyncio.sleep(0)

    asyncio.run(main())
    return forgotten[0]


SCENARIOS = {
    "gc_forget": scenario_gc_forget,
    "signal_close": scenario_signal_close,
    "coroutine": scenario_coroutine,
}


def main() -> None:
    scenario, ifname, seed, rounds, watchdog = sys.argv[1:6]
    # A hang dumps all stacks and ends the child (exit code 1).
    faulthandler.dump_traceback_later(float(watchdog), exit=True)
    _count_resource_warnings()
    gc.set_threshold(1, 1, 1)  # a GC pass at almost every allocation
    t0 = time.monotonic()
    forgotten = SCENARIOS[scenario](ifname, int(seed), int(rounds))
    gc.set_threshold(700, 10, 10)
    gc.collect()
    faulthandler.cancel_dump_traceback_later()
    print(f"OK forgotten={forgotten} warnings={len(_resource_warnings)} rounds={rounds} "
          f"seconds={time.monotonic() - t0:.1f}", flush=True)


if __name__ == "__main__":
    main()
