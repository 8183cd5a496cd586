"""A renderer that talks on command, for the e2e barge-in scenario (e2e.js, scenario i).

    python3 tests/e2e/talker.py SOCKET [--avatar talker] [--busy --bitrate-kbps N]

Registers the avatar with protocol version 2 (I420 320x180 at 30 fps, PCM s16le mono at
48 kHz) on the daemon's ingest socket and pushes frames in real time until told to stop.
With --busy the picture is 640x360 and a sixteenth of it is fresh low-amplitude noise every
frame (as the daemon's busy test pattern), so the daemon's encoder spends its whole bitrate
(--bitrate-kbps, asked of the daemon at registration) as on real video (scenario p).
Commands, one a line on stdin:

    speak   a 5 s 440 Hz tone at -12 dBFS, sent at once (its timeline starts now; the
            daemon holds it and plays it at its own pace)
    flush   FLUSH (barge-in), then prints "flushed <wall ms>": time.time() in ms right
            after the FLUSH bytes were written to the socket
    quit    exits (so does the end of stdin: a parent that dies takes this process along)

Prints "ready" once registered and the audio format is set. Standard library only.
"""

import argparse
import math
import os
import sys
import threading
import time
from array import array

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))
from portcast_ingest import I420, VERSION_2, IngestClient, IngestError  # noqa: E402

WIDTH, HEIGHT, FPS = 320, 180, 30
BUSY_WIDTH, BUSY_HEIGHT = 640, 360
# Noise bytes 112..143: a byte's low five bits over a mid-gray base.
NOISE = bytes(112 + (b % 32) for b in range(256))
RATE = 48000
TONE_HZ, TONE_S, TONE_DBFS = 440, 5.0, -12.0
CHUNK_MS = 100  # audio chunk size; all chunks of an utterance go out at once


def say(*args):
    print(*args, flush=True)


def picture(index, width=WIDTH, height=HEIGHT):
    """A gray I420 frame with a white bar sweeping across it (the picture keeps changing)."""
    y = bytearray(b"\x50" * (width * height))
    x0 = (index * 4) % (width - 16)
    for row in range(height // 3, height * 2 // 3):
        y[row * width + x0:row * width + x0 + 16] = b"\xeb" * 16
    return bytes(y) + b"\x80" * (width * height // 2)


def busy(frame, width=BUSY_WIDTH, height=BUSY_HEIGHT):
    """`frame` with fresh noise over its bottom-left quarter-width, quarter-height corner."""
    y = bytearray(frame)
    w = width // 4
    for row in range(height * 3 // 4, height):
        y[row * width:row * width + w] = os.urandom(w).translate(NOISE)
    return bytes(y)


def tone():
    """TONE_S seconds of a TONE_HZ sine, peak TONE_DBFS, as 16-bit little-endian mono."""
    amp = 32767 * 10 ** (TONE_DBFS / 20)
    n = int(RATE * TONE_S)
    samples = array("h", (int(round(amp * math.sin(2 * math.pi * TONE_HZ * i / RATE)))
                          for i in range(n)))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def connect(path, avatar, width, height, bitrate_kbps, timeout_s=10.0):
    """Registers, retrying while the socket is not there yet (the daemon is starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return IngestClient(path, avatar, fmt=I420, width=width, height=height, fps=FPS,
                                bitrate_kbps=bitrate_kbps, version=VERSION_2)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket")
    parser.add_argument("--avatar", default="talker")
    parser.add_argument("--busy", action="store_true",
                        help="640x360 with a noisy corner that spends the bitrate")
    parser.add_argument("--bitrate-kbps", type=int, default=0,
                        help="the daemon's encoder bitrate for this renderer (0: its default)")
    args = parser.parse_args(argv)

    width, height = (BUSY_WIDTH, BUSY_HEIGHT) if args.busy else (WIDTH, HEIGHT)
    client = connect(args.socket, args.avatar, width, height, args.bitrate_kbps)
    lock = threading.Lock()  # one message at a time on the socket: frames come from a thread
    stop = threading.Event()
    with lock:
        client.set_audio_format(sample_rate=RATE)
    frames = [picture(i, width, height) for i in range((width - 16) // 4)]
    pcm = tone()
    chunk_bytes = RATE * CHUNK_MS // 1000 * 2

    def push_frames():
        start = time.monotonic()
        sent = 0
        try:
            while not stop.is_set():
                delay = start + sent / FPS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -1.0:  # far behind (a stalled machine): carry on from now
                    start, sent = time.monotonic(), 0
                frame = frames[sent % len(frames)]
                if args.busy:
                    frame = busy(frame)
                with lock:
                    client.send_frame(frame)
                sent += 1
        except (IngestError, OSError) as e:
            if not stop.is_set():
                print(f"talker: frames stopped: {e}", file=sys.stderr, flush=True)
                os._exit(1)  # the scenario notices the exit; nothing useful is left to do

    pusher = threading.Thread(target=push_frames, name="frames", daemon=True)
    pusher.start()
    say("ready")

    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "speak":
                with lock:
                    for i in range(0, len(pcm), chunk_bytes):
                        client.send_audio(pcm[i:i + chunk_bytes])
                say(f"spoke {TONE_S:g} s")
            elif command == "flush":
                with lock:
                    client.flush()
                    wall_ms = time.time() * 1000
                say(f"flushed {wall_ms:.3f}")
            elif command == "quit":
                break
            elif command:
                say(f"unknown command {command!r}")
    finally:
        stop.set()
        with lock:
            client.close()
        pusher.join(timeout=1.0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (IngestError, OSError) as e:
        print(f"talker: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
