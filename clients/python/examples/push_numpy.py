"""Pushes numpy frames (a moving colour gradient) to portcast as avatar `numpy-demo`.

    python3 clients/python/examples/push_numpy.py --socket /run/portcast/ingest.sock

Then open http://localhost:9000/ and ask for avatar `numpy-demo`. Needs numpy.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from portcast_ingest import RGB24, IngestClient  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", default="/run/portcast/ingest.sock")
    parser.add_argument("--avatar", default="numpy-demo")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    w, h = args.width, args.height
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    with IngestClient(args.socket, args.avatar, fmt=RGB24, width=w, height=h, fps=args.fps) as client:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < args.seconds:
            shift = (n * 4) % 256
            frame = np.empty((h, w, 3), dtype=np.uint8)
            frame[..., 0] = (x + shift) % 256
            frame[..., 1] = (y + shift) % 256
            frame[..., 2] = 255 - frame[..., 0]
            client.send_frame(frame)
            n += 1
            time.sleep(max(0.0, start + n / args.fps - time.monotonic()))
    print(f"sent {n} frames")


if __name__ == "__main__":
    main()
