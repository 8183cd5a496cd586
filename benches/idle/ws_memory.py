"""Idle-connection memory of a running portcast daemon: opens N WebSockets that
never offer, reads the daemon's RSS (/proc/PID/status VmRSS) before, with them
open and after they close, and prints one JSON line.

    python3 ws_memory.py --pid PID --port 9000 --count 500

Loopback only (127.0.0.1). The daemon's idle timeout must exceed --hold (it
closes WebSockets that never offer); the connections close by themselves at
the end. Standard library only.
"""

import argparse
import base64
import json
import os
import socket
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_ws(port, i):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws/idle-{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"connection {i} closed during the upgrade")
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        raise RuntimeError(f"connection {i}: {status!r}")
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--hold", type=float, default=2.0, help="seconds the connections stay open")
    a = ap.parse_args()
    time.sleep(0.5)
    before = rss_kib(a.pid)
    socks = [open_ws(a.port, i) for i in range(a.count)]
    time.sleep(a.hold)
    during = rss_kib(a.pid)
    for s in socks:
        s.close()
    time.sleep(2.0)
    after = rss_kib(a.pid)
    print(json.dumps({"count": a.count, "rss_before_kib": before, "rss_open_kib": during,
                      "rss_after_kib": after,
                      "kib_per_connection": round((during - before) / a.count, 2),
                      "after_over_before": round(after / before, 3)}))


if __name__ == "__main__":
    main()
