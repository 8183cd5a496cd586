"""Pushes a WAV file as an avatar's voice, in step with frames, to portcast.

    python3 clients/python/examples/push_wav.py speech.wav --avatar wav-demo

The WAV must be 16-bit PCM, mono or stereo, at 16000, 22050, 24000, 44100 or
48000 Hz. The picture is a gray I420 frame whose bar follows the sound's
loudness. Frames (30 fps) and 20 ms audio chunks carry capture times on one
clock (protocol version 2), so a viewer's browser plays them in step. Then
open http://localhost:9000/ and ask for the avatar. Standard library only.
"""

import argparse
import os
import sys
import time
import wave
from array import array

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from portcast_ingest import I420, VERSION_2, IngestClient  # noqa: E402


def picture(width, height, level):
    """A gray I420 frame with a white bar as wide as `level` (0..1)."""
    y = bytearray(b"\x40" * (width * height))
    bar = int(width * min(1.0, level))
    for row in range(height * 2 // 5, height * 3 // 5):
        y[row * width:row * width + bar] = b"\xeb" * bar
    return bytes(y) + b"\x80" * (width * height // 2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav")
    parser.add_argument("--socket", default="/run/portcast/ingest.sock")
    parser.add_argument("--avatar", default="wav-demo")
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--loops", type=int, default=1)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    with wave.open(args.wav, "rb") as w:
        if w.getsampwidth() != 2:
            sys.exit(f"{args.wav}: {8 * w.getsampwidth()}-bit samples; 16-bit PCM needed")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = w.readframes(w.getnframes())
    chunk_bytes = rate // 50 * 2 * channels  # 20 ms
    chunks = [pcm[i:i + chunk_bytes] for i in range(0, len(pcm), chunk_bytes)]

    with IngestClient(args.socket, args.avatar, fmt=I420, width=width, height=height,
                      fps=args.fps, version=VERSION_2) as client:
        client.set_audio_format(channels=channels, sample_rate=rate)
        print(f"registered {args.avatar}: {rate} Hz, {channels} channel(s), "
              f"{len(chunks) * 20 / 1000:.1f} s", flush=True)
        start_us = time.monotonic_ns() // 1000
        sent_audio = frames = 0
        total = len(chunks) * args.loops
        while sent_audio < total:
            frame_us = start_us + frames * 1_000_000 // args.fps
            delay = frame_us / 1e6 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # Every chunk whose first sample is due by this frame, on the same clock.
            level = 0.0
            while sent_audio < total and start_us + sent_audio * 20_000 <= frame_us:
                chunk = chunks[sent_audio % len(chunks)]
                samples = array("h", chunk)
                level = max(level, max((abs(s) for s in samples), default=0) / 32768)
                client.send_audio(chunk, pts_us=start_us + sent_audio * 20_000)
                sent_audio += 1
            client.send_frame(picture(width, height, level), pts_us=frame_us)
            frames += 1
    print(f"sent {frames} frames and {sent_audio} audio chunks", flush=True)


if __name__ == "__main__":
    main()
