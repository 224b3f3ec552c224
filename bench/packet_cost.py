#!/usr/bin/env python3
"""What the per-packet API costs per packet, warm, on a real socket.

The per-packet l2fwd of ``xdp-socket bench`` (``--api packet``) does, for
each packet, ``rx.peek_at(i)``, ``tx.peek_at(i, len(pkt))`` and three slice
copies (MACs swapped, the rest as is). This script times those pieces apart,
in a loop over 256 packets that are really in the RX ring of a socket on a
veth pair (in a private network namespace, filled once by an AF_PACKET
peer), with nothing committed, so the same packets are looked at again and
again: everything is in the cache, which is the floor of what the loop can
cost, not what it costs after a kick (bench/README.md, "Where the time goes").

    python3 bench/packet_cost.py [-n 5] [-r 200]     # root

Rows (microseconds per packet, minimum over -n repeats of -r loops):

  loop          the bare ``for i in range(n)`` loop
  peeks         the two library calls, rx.peek_at(i) and tx.peek_at(i, 64)
  peeks+copies  the whole l2fwd body, as `xdp-socket bench` runs it
  copies-only   the three slice copies on views made once (no library call)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import timeit

N = 256


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/packet_cost.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--repeats", type=int, default=5)
    p.add_argument("-r", "--rounds", type=int, default=200)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("packet_cost.py: needs root (a network namespace, AF_XDP)", file=sys.stderr)
        return 1

    import xdp_socket as xs
    from xdp_socket import testing

    testing.enter_private_netns()
    with testing.veth_pair("pca", "pcb", queues=1) as link, \
            testing.AfPacketPeer(link.a) as peer:
        tx, rx = xs.create_bi_socket(link.b, 0)
        try:
            frame = testing.make_frame(payload=bytes(50))  # 64 bytes
            for _ in range(N + 64):
                peer.send(frame)
            end = time.monotonic() + 5
            while rx.seek_n(N) < N:
                if time.monotonic() > end:
                    print("packet_cost.py: the packets did not arrive", file=sys.stderr)
                    return 1
                rx.poll_wait(0.1)
            if tx.seek_n(N) < N:
                print("packet_cost.py: no free TX frames", file=sys.stderr)
                return 1
            r_peek, t_peek = rx.peek_at, tx.peek_at
            pkts = [r_peek(i) for i in range(N)]
            outs = [t_peek(i, 64) for i in range(N)]

            def loop() -> None:
                for _i in range(N):
                    pass

            def peeks() -> None:
                for i in range(N):
                    r_peek(i)
                    t_peek(i, 64)

            def body() -> None:
                for i in range(N):
                    pkt = r_peek(i)
                    out = t_peek(i, len(pkt))
                    out[:6] = pkt[6:12]
                    out[6:12] = pkt[:6]
                    out[12:] = pkt[12:]

            def copies() -> None:
                for i in range(N):
                    pkt = pkts[i]
                    out = outs[i]
                    out[:6] = pkt[6:12]
                    out[6:12] = pkt[:6]
                    out[12:] = pkt[12:]

            print(f"accelerator: {xs.accelerator()}; {N} packets of 64 bytes; "
                  f"us per packet, minimum of {args.repeats} x {args.rounds} loops")
            for name, fn in (("loop", loop), ("peeks", peeks), ("peeks+copies", body),
                             ("copies-only", copies)):
                best = min(timeit.repeat(fn, number=args.rounds, repeat=args.repeats))
                print(f"  {name:13s} {best / args.rounds / N * 1e6:6.3f}")
            pkts.clear()  # (views into the UMEM, given up before the close)
            outs.clear()
        finally:
            tx.close()
            rx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
