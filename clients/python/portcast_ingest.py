"""Push frames from a renderer to a portcast daemon over its ingest socket.

Standard library only; numpy arrays are accepted wherever bytes are (any
object with the buffer protocol works). The wire format is documented in
docs/ingest.md.

    from portcast_ingest import IngestClient, RGB24

    with IngestClient("/run/portcast/ingest.sock", "avatar_tutor_13",
                      fmt=RGB24, width=1280, height=720, fps=30) as client:
        while True:
            frame = render()                  # numpy uint8 array (720, 1280, 3)
            client.send_frame(frame)

With `version=2`, every frame and audio chunk carries its capture time on
one clock (time.monotonic by default), and the avatar can speak:

    with IngestClient(path, "avatar_tutor_13", fmt=RGB24, width=1280,
                      height=720, version=2) as client:
        client.set_audio_format(sample_rate=24000)      # PCM s16le mono
        client.send_audio(tts_pcm_bytes)                # any length up to 1 s
        client.send_frame(frame)
        client.flush()                                  # barge-in: drop queued speech

Run as a program it pushes a file of raw frames (or Annex-B H.264 access
units, one per file) at a steady rate: `python3 portcast_ingest.py push --help`.
examples/push_wav.py pushes a WAV file in step with frames.
"""

import argparse
import socket
import struct
import sys
import time

MAGIC = b"PCIN"
VERSION = 1
VERSION_2 = 2  # capture timestamps on one clock; needed for audio

REGISTER, FRAME, FORMAT = 0x01, 0x02, 0x03
AUDIO_FORMAT, AUDIO, FLUSH = 0x04, 0x05, 0x06
ACCEPTED, KEYFRAME_REQUEST, REFUSED, WATCHED = 0x81, 0x82, 0x83, 0x84

I420, RGB24, BGRA, H264 = 1, 2, 3, 4
FORMATS = {"i420": I420, "rgb24": RGB24, "bgra": BGRA, "h264": H264}
PCM_S16LE, OPUS = 1, 2
PCM_RATES = (16000, 22050, 24000, 44100, 48000)

_HEADER = struct.Struct("<4sBBHHHI")  # magic, version, type, flags, meta_len, reserved, payload_len
_FORMAT = struct.Struct("<B3xIIII")  # format, width, height, fps, bitrate_kbps
_FRAME = struct.Struct("<QQ")  # frame index, pts in microseconds
_ACCEPTED = struct.Struct("<I")  # max frame bytes
_AUDIO_FORMAT = struct.Struct("<BB2xIII")  # codec, channels, sample_rate, bitrate_kbps, frame_ms
_AUDIO = struct.Struct("<QQ")  # pts in microseconds, reserved


class IngestError(Exception):
    """The daemon could not be reached or spoke unexpectedly."""


class IngestRefused(IngestError):
    """The daemon refused this renderer (and closed the connection)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def frame_bytes(fmt, width, height):
    """Exact payload size of one raw frame, or None for H.264."""
    px = width * height
    return {I420: px * 3 // 2, RGB24: px * 3, BGRA: px * 4}.get(fmt)


def _header(kind, meta_len, payload_len, version=VERSION):
    return _HEADER.pack(MAGIC, version, kind, 0, meta_len, 0, payload_len)


def _now_us():
    """The default capture clock of version 2: monotonic microseconds."""
    return time.monotonic_ns() // 1000


def opus_duration_us(packet):
    """Duration of an Opus packet from its TOC byte (RFC 6716 section 3.1)."""
    if len(packet) < 1:
        raise ValueError("an empty Opus packet")
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        frame = (10_000, 20_000, 40_000, 60_000)[config % 4]
    elif config < 16:
        frame = (10_000, 20_000)[config % 2]
    else:
        frame = (2_500, 5_000, 10_000, 20_000)[config % 4]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(packet) < 2:
        raise ValueError("an Opus packet of code 3 without its frame count")
    else:
        frames = packet[1] & 0x3F
    return frame * frames


def _pcm_bytes(samples):
    """Little-endian int16 bytes of bytes-like PCM or a numpy array of samples."""
    if hasattr(samples, "__array_interface__"):
        import numpy  # only when the caller already uses numpy

        return memoryview(numpy.ascontiguousarray(samples, dtype="<i2")).cast("B")
    view = memoryview(samples)
    return view.cast("B") if view.ndim != 1 or view.format != "B" else view


def _as_bytes(frame):
    """A flat byte view of bytes, bytearray, memoryview or a numpy array (no copy when contiguous)."""
    if hasattr(frame, "__array_interface__"):
        import numpy  # only when the caller already uses numpy

        frame = numpy.ascontiguousarray(frame, dtype=numpy.uint8)
    view = memoryview(frame)
    return view.cast("B") if view.ndim != 1 or view.format != "B" else view


class IngestClient:
    """One renderer connection: registers `avatar` on connect, then sends frames."""

    def __init__(self, path, avatar, fmt=I420, width=0, height=0, fps=30,
                 bitrate_kbps=0, timeout=5.0, version=VERSION):
        if version not in (VERSION, VERSION_2):
            raise ValueError(f"protocol version {version}: 1 or 2")
        self.fmt, self.width, self.height, self.fps = fmt, width, height, fps
        self.bitrate_kbps = bitrate_kbps
        self.version = version
        self.audio = None  # (codec, channels, sample_rate) once set_audio_format ran
        # Whether any viewer watches (WATCHED, read by poll_keyframe_request); None until said.
        self.watched = None
        self._audio_next_us = None  # where the next chunk continues the timeline
        self.next_index = 0
        self._inbox = b""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(path)
            name = avatar.encode()
            self._send(_header(REGISTER, _FORMAT.size, len(name), version)
                       + self._format_meta() + name)
            kind, meta, payload = self._read_message()
            if kind == REFUSED:
                raise _refusal(payload)
            if kind != ACCEPTED:
                raise IngestError(f"expected ACCEPTED, got message type 0x{kind:02x}")
            (self.max_frame_bytes,) = _ACCEPTED.unpack_from(meta)
            self._sock.settimeout(None)
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Closes the connection; viewers keep the last picture until a renderer registers again."""
        self._sock.close()

    def set_format(self, fmt=None, width=None, height=None, fps=None, bitrate_kbps=None):
        """Changes format, size, rate or bitrate for the frames that follow (the daemon sends an IDR)."""
        self.fmt = self.fmt if fmt is None else fmt
        self.width = self.width if width is None else width
        self.height = self.height if height is None else height
        self.fps = self.fps if fps is None else fps
        self.bitrate_kbps = self.bitrate_kbps if bitrate_kbps is None else bitrate_kbps
        self._send(_header(FORMAT, _FORMAT.size, 0) + self._format_meta())

    def send_frame(self, frame, index=None, pts_us=None):
        """Sends one frame (bytes-like or numpy uint8); returns its index."""
        data = _as_bytes(frame)
        expected = frame_bytes(self.fmt, self.width, self.height)
        if expected is not None and data.nbytes != expected:
            raise ValueError(f"frame is {data.nbytes} bytes; {self.width}x{self.height} needs {expected}")
        index = self.next_index if index is None else index
        if pts_us is None:
            pts_us = _now_us() if self.version == VERSION_2 else time.time_ns() // 1000
        self._send(_header(FRAME, _FRAME.size, data.nbytes) + _FRAME.pack(index, pts_us))
        self._send(data)
        self.next_index = index + 1
        return index

    def set_audio_format(self, codec=PCM_S16LE, channels=1, sample_rate=24000,
                         bitrate_kbps=0, frame_ms=0):
        """Announces the avatar's voice (version 2 only): PCM s16le at one of
        PCM_RATES, mono or stereo (the daemon encodes Opus at bitrate_kbps,
        0 = its default, in frame_ms frames, 10 or 20, 0 = 20), or OPUS
        packets at 48000 Hz, forwarded as they are."""
        if self.version != VERSION_2:
            raise IngestError("audio needs version=2 (capture timestamps on one clock)")
        if codec == PCM_S16LE and sample_rate not in PCM_RATES:
            raise ValueError(f"PCM at {sample_rate} Hz: use one of {PCM_RATES}")
        if codec == OPUS and sample_rate != 48000:
            raise ValueError("Opus is 48000 Hz")
        if channels not in (1, 2):
            raise ValueError("1 or 2 channels")
        meta = _AUDIO_FORMAT.pack(codec, channels, sample_rate, bitrate_kbps, frame_ms)
        self._send(_header(AUDIO_FORMAT, _AUDIO_FORMAT.size, 0, VERSION_2) + meta)
        self.audio = (codec, channels, sample_rate)

    def send_audio(self, chunk, pts_us=None):
        """Sends PCM (bytes-like s16le, or a numpy int16 array; up to one second)
        or one Opus packet. pts_us is the capture time of its first sample on
        the frames' clock; by default a chunk continues the previous one (or
        starts now), so speech a TTS engine produced ahead of time plays in
        order, at its pace: the daemon holds it until it is due."""
        if self.audio is None:
            raise IngestError("send_audio before set_audio_format")
        codec, channels, rate = self.audio
        data = _pcm_bytes(chunk) if codec == PCM_S16LE else memoryview(chunk).cast("B")
        if codec == PCM_S16LE:
            if data.nbytes % (2 * channels):
                raise ValueError(f"PCM of {data.nbytes} bytes is not whole {channels}-channel samples")
            duration_us = data.nbytes // (2 * channels) * 1_000_000 // rate
        else:
            duration_us = opus_duration_us(data)
        if pts_us is None:
            now = _now_us()
            running = self._audio_next_us
            # A speaker silent for a while starts again now, not in the past.
            pts_us = running if running is not None and running >= now - 100_000 else now
        self._audio_next_us = pts_us + duration_us
        self._send(_header(AUDIO, _AUDIO.size, data.nbytes, VERSION_2) + _AUDIO.pack(pts_us, 0))
        self._send(data)
        return pts_us

    def flush(self):
        """Barge-in: the daemon drops this avatar's queued audio (and a frame
        waiting for its encoder) at once; the next chunk starts a new utterance now."""
        self._send(_header(FLUSH, 0, 0, VERSION_2))
        self._audio_next_us = None

    def poll_keyframe_request(self):
        """True if the daemon asked for an IDR since the last call (H.264 pass-through only); never blocks.

        Also reads WATCHED messages into self.watched (True/False: whether any viewer watches)."""
        self._sock.setblocking(False)
        try:
            while True:
                chunk = self._sock.recv(4096)
                if not chunk:
                    raise IngestError("the daemon closed the connection")
                self._inbox += chunk
        except BlockingIOError:
            pass
        finally:
            self._sock.setblocking(True)
        wanted = False
        while len(self._inbox) >= _HEADER.size:
            magic, _, kind, _, meta_len, _, payload_len = _HEADER.unpack_from(self._inbox)
            total = _HEADER.size + meta_len + payload_len
            if magic != MAGIC or total > 65536:
                raise IngestError("the daemon sent an unreadable message")
            if len(self._inbox) < total:
                break
            meta = self._inbox[_HEADER.size:_HEADER.size + meta_len]
            payload = self._inbox[_HEADER.size + meta_len:total]
            self._inbox = self._inbox[total:]
            if kind == KEYFRAME_REQUEST:
                wanted = True
            elif kind == REFUSED:
                raise _refusal(payload)
            elif kind == WATCHED and meta:
                # Whether any viewer watches the avatar: a renderer may pause while none does.
                self.watched = meta[0] != 0
        return wanted

    def _format_meta(self):
        return _FORMAT.pack(self.fmt, self.width, self.height, self.fps, self.bitrate_kbps)

    def _send(self, data):
        try:
            self._sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            # The daemon closed on us: it says why in a REFUSED message first.
            try:
                self._sock.settimeout(0.5)
                kind, _, payload = self._read_message()
            except (OSError, IngestError):
                raise IngestError(f"the daemon closed the connection: {e}") from e
            if kind == REFUSED:
                raise _refusal(payload) from e
            raise IngestError(f"the daemon closed the connection: {e}") from e

    def _read_message(self):
        head = self._read_exact(_HEADER.size)
        magic, version, kind, _, meta_len, _, payload_len = _HEADER.unpack(head)
        if magic != MAGIC or version != VERSION:
            raise IngestError("not a portcast ingest socket (bad magic or version)")
        if meta_len + payload_len > 65536:
            raise IngestError("the daemon sent an oversized message")
        meta = self._read_exact(meta_len)
        return kind, meta, self._read_exact(payload_len)

    def _read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise IngestError("the daemon closed the connection")
            buf += chunk
        return buf


def _refusal(payload):
    text = payload.decode("utf-8", "replace")
    code, _, message = text.partition(": ")
    return IngestRefused(code, message)


def _push(args):
    """Pushes the frames of a raw file (or .h264 files, one access unit each) at --fps."""
    fmt = FORMATS[args.format]
    width, height = (int(v) for v in args.size.split("x")) if args.size else (0, 0)
    timing = open(args.timing_out, "w") if args.timing_out else None
    with IngestClient(args.socket, args.avatar, fmt=fmt, width=width, height=height,
                      fps=args.fps, bitrate_kbps=args.bitrate_kbps) as client:
        print(f"registered {args.avatar}", flush=True)
        if fmt == H264:
            frames = [open(p, "rb").read() for p in args.files]
        else:
            size = frame_bytes(fmt, width, height)
            data = open(args.files[0], "rb").read()
            frames = [data[i:i + size] for i in range(0, len(data) - size + 1, size)]
        period = 1.0 / args.fps
        start = time.monotonic()
        sent = 0
        for _ in range(args.loops):
            for frame in frames:
                due = start + sent * period
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                index = client.send_frame(frame)
                if timing:
                    timing.write(f"{index} {time.time_ns()}\n")
                client.poll_keyframe_request()
                sent += 1
    if timing:
        timing.close()
    print(f"sent {sent} frames", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description="portcast ingest client")
    sub = parser.add_subparsers(dest="command", required=True)
    push = sub.add_parser("push", help="push frames from files at a steady rate")
    push.add_argument("--socket", default="/run/portcast/ingest.sock")
    push.add_argument("--avatar", required=True)
    push.add_argument("--format", choices=sorted(FORMATS), default="i420")
    push.add_argument("--size", help="WxH of raw frames, e.g. 1280x720")
    push.add_argument("--fps", type=int, default=30)
    push.add_argument("--bitrate-kbps", type=int, default=0)
    push.add_argument("--loops", type=int, default=1, help="times to play the frames")
    push.add_argument("--timing-out", help="write 'index unix_ns' per frame sent to this file")
    push.add_argument("files", nargs="+", help="raw frames file, or .h264 access units in order")
    args = parser.parse_args(argv)
    try:
        _push(args)
    except IngestRefused as e:
        print(f"refused by portcast: {e}", file=sys.stderr)
        return 1
    except (IngestError, OSError) as e:
        print(f"portcast ingest: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
