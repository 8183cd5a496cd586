#!/usr/bin/env python3
"""A UDP forwarder that delays every datagram and drops some, for the e2e NAT box.

Listens on LISTEN_IP at every port of --ports and forwards each client's datagrams to the
same port of --target-ip, from a socket of that client's own (so the replies find their way
back, as through a NAT). Every datagram waits --delay-ms in each direction (a round trip of
twice that); of those going back to the client, a random --loss share is dropped. The kernel
here has no netem, hence this (scenario q of e2e.js runs it in the NAT box's namespace).

Prints "ready" once bound and "done up=N down=N dropped=N" when it ends: on "quit" or end of
standard input, or by itself after --seconds. Standard library only.
"""

import argparse
import heapq
import random
import selectors
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen-ip", required=True)
    ap.add_argument("--ports", required=True, help="A-B, inclusive")
    ap.add_argument("--target-ip", required=True)
    ap.add_argument("--delay-ms", type=float, default=20.0, help="each way")
    ap.add_argument("--loss", type=float, default=0.05, help="share dropped toward the client")
    ap.add_argument("--seconds", type=float, default=120.0, help="ends by itself after this")
    ap.add_argument("--max-clients", type=int, default=64)
    a = ap.parse_args()
    try:
        lo, hi = (int(p) for p in a.ports.split("-"))
    except ValueError:
        ap.error(f"--ports {a.ports!r} is not A-B")
    if not (0 < lo <= hi < 65536 and hi - lo < 64):
        ap.error(f"--ports {a.ports!r}: 1-65535, at most 64 ports")
    if not 0.0 <= a.loss <= 1.0 or a.delay_ms < 0:
        ap.error("--loss must be 0-1 and --delay-ms at least 0")

    sel = selectors.DefaultSelector()
    fronts = {}
    for port in range(lo, hi + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a.listen_ip, port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("front", port, None))
        fronts[port] = s
    sel.register(sys.stdin, selectors.EVENT_READ, ("stdin", None, None))
    backs = {}  # (port, client address) -> the socket that speaks for that client
    queue = []  # (due, n, socket, bytes, address or None for a connected socket)
    n = 0
    delay = a.delay_ms / 1000.0
    up = down = dropped = 0
    print("ready", flush=True)

    end = time.monotonic() + a.seconds
    running = True
    while running and time.monotonic() < end:
        now = time.monotonic()
        wait = 0.05 if not queue else max(0.0, min(0.05, queue[0][0] - now))
        for key, _ in sel.select(wait):
            kind, port, client = key.data
            if kind == "stdin":
                line = sys.stdin.readline()
                if not line or line.strip() == "quit":
                    running = False
                continue
            sock = key.fileobj
            for _ in range(256):
                try:
                    data, addr = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. ECONNREFUSED on a connected socket: nothing to forward
                now = time.monotonic()
                if kind == "front":
                    back = backs.get((port, addr))
                    if back is None:
                        if len(backs) >= a.max_clients:
                            continue
                        back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        back.setblocking(False)
                        back.connect((a.target_ip, port))
                        sel.register(back, selectors.EVENT_READ, ("back", port, addr))
                        backs[(port, addr)] = back
                    heapq.heappush(queue, (now + delay, n, back, data, None))
                    up += 1
                else:
                    if random.random() < a.loss:
                        dropped += 1
                        continue
                    heapq.heappush(queue, (now + delay, n, fronts[port], data, client))
                    down += 1
                n += 1
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, sock, data, addr = heapq.heappop(queue)
            try:
                if addr is None:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except OSError:
                pass  # a full buffer or a gone peer: a lost datagram, as on a network
    print(f"done up={up} down={down} dropped={dropped}", flush=True)


if __name__ == "__main__":
    main()
