"""A small aiortc server speaking portcast's seed signaling protocol, for benchmarks.

`portcast-bench compare-aiortc` runs it (inside a network namespace of its own,
because aiortc never gathers 127.0.0.1) to measure the usual Python stack doing
the same job as portcast, with the same viewer process.

Protocol (the same as portcast's): a WebSocket at ``GET /ws/{session_id}``
(and, with ``--page``, portcast's viewer page at ``GET /``);
the client sends ``{"type":"webrtc_offer","session_id":..,"avatar_id":..,"sdp":..}``
and gets ``{"type":"webrtc_answer","sdp":..}`` or
``{"type":"error","code":..,"message":..}``. One ``RTCPeerConnection`` per
WebSocket, no STUN/TURN servers, H.264 only; aiortc gathers its host
candidates itself and binds one UDP port per peer connection.

Content: every ``avatar_id`` gets one source track drawing portcast's test
pattern (the same colour bars, moving box, 32-block frame-counter band and
capture-clock band, which portcast's viewer page reads for glass-to-glass;
the human-readable digits are left out) at ``--width`` x ``--height`` and
``--fps``, shared by its viewers through aiortc's ``MediaRelay`` (unbuffered:
a slow sender drops frames rather than queueing them). Like portcast's source
thread, a source that falls a frame or more behind its clock skips to the
newest frame. Every peer connection encodes with its own aiortc
``H264Encoder`` (PyAV + libx264, aiortc's own settings: Baseline, level 3.1,
``tune=zerolatency``), whose ``target_bitrate`` (aiortc's own knob, the one
REMB feedback drives) is set to ``--bitrate`` when the sender creates it.

Instrumentation (three thin wrappers around aiortc internals, no behaviour
changed), one JSON line per frame sent on each peer connection, in
``--timings``::

    {"type":"frame","session":..,"avatar":..,"n":frame number,"rtp_ts":RTP timestamp,
     "key":IDR?,"bytes":..,"packets":..,"t_render":..,"t_ready":..,"t0":..,"t1":..,
     "t2":..,"t2_wall":..}

``t_render``: the source starts drawing the frame (where portcast's t0 is
taken); ``t_ready``: the frame is drawn and leaves the track for aiortc's
pipeline (the harness's t0 for aiortc: drawing with numpy is not aiortc's
cost); ``t0``: the raw frame handed to ``H264Encoder.encode`` (in aiortc's
executor thread); ``t1``: packets out of the encoder; ``t2``: the frame's last RTP
packet (marker bit) returned from ``RTCDtlsTransport._send_rtp``, i.e. SRTP
protected and handed to the kernel by asyncio's ``sendto``. All monotonic ns,
except ``t2_wall`` (ns since the epoch, comparable with the viewer process).
A last ``{"type":"summary",..}`` line gives sources' late skips, the process
CPU time and each encoder's final target bitrate.

The server stops by itself: when its standard input closes, on SIGTERM/SIGINT,
or after ``--max-seconds``. It prints ``listening HOST:PORT`` once ready.
"""

import argparse
import asyncio
import fractions
import json
import logging
import os
import signal
import sys
import threading
import time

import av
import numpy as np
from aiohttp import WSMsgType, web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    rtcrtpsender,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import is_rtcp

VIDEO_CLOCK = 90_000
MAX_MESSAGE = 256 * 1024

# (Y, U, V) of 75% colour bars, as in portcast's engine/src/pattern.rs.
BARS = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
]
CODE_BLOCKS = 32
COUNTER_BITS = 24


def encode_counter(index):
    """The 32-bit code of portcast's band: 24-bit counter, then a check byte."""
    c = index % (1 << COUNTER_BITS)
    check = (c ^ (c >> 8) ^ (c >> 16) ^ 0xA5) & 0xFF
    return (c << 8) | check


class TestPattern:
    """portcast's test pattern (without the digits) drawn with numpy into a reused I420 buffer."""

    def __init__(self, width, height, busy=False):
        if width % 2 or height % 2 or width < 128 or height < 64:
            raise ValueError(f"unsupported size {width}x{height}")
        self.w, self.h = width, height
        self.band = max((height // 22) & ~1, 8)
        self.background = np.empty((height * 3 // 2, width), np.uint8)
        y, u, v = self._planes(self.background)
        bars = np.array(BARS, np.uint8)
        y[:] = bars[np.arange(width) * 7 // width, 0]
        u[:] = bars[np.arange(width // 2) * 2 * 7 // width, 1]
        v[:] = bars[np.arange(width // 2) * 2 * 7 // width, 2]
        self.buf = self.background.copy()
        self.busy = busy
        self.rng = np.random.default_rng(1)

    def _planes(self, buf):
        w, h = self.w, self.h
        flat = buf.reshape(-1)
        y = flat[: w * h].reshape(h, w)
        u = flat[w * h : w * h * 5 // 4].reshape(h // 2, w // 2)
        v = flat[w * h * 5 // 4 :].reshape(h // 2, w // 2)
        return y, u, v

    def render(self, index, clock_ms):
        """Frame `index`, made at Unix time `clock_ms`, as an av.VideoFrame (yuv420p)."""
        w, h, band = self.w, self.h, self.band
        np.copyto(self.buf, self.background)
        y, u, v = self._planes(self.buf)
        # The moving box: crosses the picture in about four seconds at 30 fps.
        size = max(h // 4, 8) & ~1
        span = w - size
        step = max(span // 120, 1)
        pos = (index * step) % (2 * span)
        bx = (pos if pos < span else 2 * span - pos) & ~1
        by = min(h * 5 // 8, h - size) & ~1
        y[by : by + size, bx : bx + size] = 235
        q = size // 4
        y[by + q : by + q + size // 2, bx + q : bx + q + size // 2] = 16
        u[by // 2 : by // 2 + size // 2, bx // 2 : bx // 2 + size // 2] = 128
        v[by // 2 : by // 2 + size // 2, bx // 2 : bx // 2 + size // 2] = 128
        if self.busy:
            # portcast's TestPattern::set_busy: fresh low-amplitude noise (luma
            # 112..143, uniform) over the bottom-left sixteenth of the picture
            # every frame, so the encoder spends its bitrate as on real video.
            y[h * 3 // 4 :, : w // 4] = self.rng.integers(
                112, 144, size=(h - h * 3 // 4, w // 4), dtype=np.uint8
            )
        # The code bands: frame counter on top, capture clock (Unix ms) at the bottom,
        # as portcast's pattern draws them, so its viewer page reads both.
        bw = w // CODE_BLOCKS
        for top, value in ((0, index), (h - band, clock_ms)):
            code = encode_counter(value)
            rows = slice(top, top + band)
            for bit in range(CODE_BLOCKS):
                on = (code >> (CODE_BLOCKS - 1 - bit)) & 1
                y[rows, bit * bw : (bit + 1) * bw] = 235 if on else 16
            y[rows, CODE_BLOCKS * bw :] = 16
            u[top // 2 : (top + band) // 2] = 128
            v[top // 2 : (top + band) // 2] = 128
        # The dark strip portcast writes its digits on.
        scale = max(h // 120, 1)
        strip_y, strip_h = band + 2 * scale, 20 * scale
        if strip_y + strip_h < h:
            y[strip_y : strip_y + strip_h] = 16
            u[strip_y // 2 : (strip_y + strip_h + 1) // 2] = 128
            v[strip_y // 2 : (strip_y + strip_h + 1) // 2] = 128
        return av.VideoFrame.from_ndarray(self.buf, format="yuv420p")


class PatternTrack(MediaStreamTrack):
    """A live source: frame n is due at start + n / fps; late by a frame or more skips ahead."""

    kind = "video"

    def __init__(self, name, width, height, fps, busy=False):
        super().__init__()
        self.name = name
        self.fps = fps
        self.pattern = TestPattern(width, height, busy)
        self.start = None
        self.index = -1
        self.late_skips = 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self.start is None:
            self.start = now
            index = 0
        else:
            index = self.index + 1
            due = self.start + index / self.fps
            if due > now:
                await asyncio.sleep(due - now)
            else:
                behind = int((now - due) * self.fps)
                index += behind
                self.late_skips += behind
        self.index = index
        t_render = time.monotonic_ns()
        frame = self.pattern.render(index, time.time_ns() // 1_000_000)
        t_ready = time.monotonic_ns()
        frame.pts = index * (VIDEO_CLOCK // self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        frame.opaque = (self.name, index, t_render, t_ready)
        return frame


def is_idr(payloads):
    """Whether an H.264 frame's RTP payloads (single NAL, STAP-A, FU-A) hold an IDR slice."""
    for p in payloads:
        if not p:
            continue
        nal = p[0] & 0x1F
        if nal == 5:
            return True
        if nal == 28 and len(p) > 1 and (p[1] & 0x1F) == 5:
            return True
        if nal == 24:
            i = 1
            while i + 2 < len(p):
                size = (p[i] << 8) | p[i + 1]
                if p[i + 2] & 0x1F == 5:
                    return True
                i += 2 + size
    return False


class InFlight:
    """The frame a peer connection is sending: its encoder timings and the packets seen so far."""

    __slots__ = ("sender", "ssrc", "opaque", "t0", "t1", "payloads", "rtp_ts", "packets")

    def __init__(self, sender, opaque, t0, t1, payloads):
        self.sender, self.ssrc = sender, sender._ssrc
        self.opaque, self.t0, self.t1, self.payloads = opaque, t0, t1, payloads
        self.rtp_ts = None
        self.packets = 0


class Probe:
    """Per-frame timings, written as JSON lines. Wraps three aiortc internals."""

    def __init__(self, path, bitrate):
        self.out = open(path, "w", encoding="utf-8")
        self.bitrate = bitrate
        self.sessions = {}  # RTCRtpSender -> (session id, avatar)
        self.in_flight = {}  # RTCDtlsTransport -> InFlight
        self.encoders = []  # every encoder made, for the summary

    def install(self):
        """Wraps get_encoder (bitrate, t0, t1), the next encoded frame, and SRTP send (t2)."""
        probe = self
        original_get_encoder = rtcrtpsender.get_encoder
        original_next = RTCRtpSender._next_encoded_frame
        original_send_rtp = RTCDtlsTransport._send_rtp

        def get_encoder(codec):
            encoder = original_get_encoder(codec)
            if hasattr(encoder, "target_bitrate"):
                encoder.target_bitrate = probe.bitrate
            probe.encoders.append(encoder)
            encode = encoder.encode

            def timed_encode(frame, force_keyframe=False):
                opaque = getattr(frame, "opaque", None)
                t0 = time.monotonic_ns()
                payloads, timestamp = encode(frame, force_keyframe)
                t1 = time.monotonic_ns()
                encoder.bench_last = (opaque, t0, t1, payloads)
                return payloads, timestamp

            encoder.encode = timed_encode
            return encoder

        async def next_encoded_frame(sender, codec):
            enc_frame = await original_next(sender, codec)
            encoder = getattr(sender, "_RTCRtpSender__encoder", None)
            last = getattr(encoder, "bench_last", None)
            if enc_frame is not None and last is not None and sender.transport is not None:
                encoder.bench_last = None
                probe.in_flight[sender.transport] = InFlight(sender, *last)
            return enc_frame

        async def send_rtp(transport, data):
            await original_send_rtp(transport, data)
            frame = probe.in_flight.get(transport)
            if frame is None or is_rtcp(data) or len(data) < 12:
                return
            if int.from_bytes(data[8:12], "big") != frame.ssrc:
                return  # RTX or another stream
            rtp_ts = int.from_bytes(data[4:8], "big")
            if frame.rtp_ts is None:
                frame.rtp_ts = rtp_ts
            elif frame.rtp_ts != rtp_ts:
                return  # a retransmission of an older frame
            frame.packets += 1
            if data[1] & 0x80:  # marker: the frame's last packet
                t2 = time.monotonic_ns()
                t2_wall = time.time_ns()
                del probe.in_flight[transport]
                probe.record(frame, t2, t2_wall)

        rtcrtpsender.get_encoder = get_encoder
        RTCRtpSender._next_encoded_frame = next_encoded_frame
        RTCDtlsTransport._send_rtp = send_rtp

    def record(self, frame, t2, t2_wall):
        session, avatar = self.sessions.get(frame.sender, ("?", "?"))
        if not (isinstance(frame.opaque, tuple) and len(frame.opaque) == 4):
            return
        line = {
            "type": "frame",
            "session": session,
            "avatar": avatar,
            "n": frame.opaque[1],
            "rtp_ts": frame.rtp_ts,
            "key": is_idr(frame.payloads),
            "bytes": sum(len(p) for p in frame.payloads),
            "packets": frame.packets,
            "t_render": frame.opaque[2],
            "t_ready": frame.opaque[3],
            "t0": frame.t0,
            "t1": frame.t1,
            "t2": t2,
            "t2_wall": t2_wall,
        }
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self, sources):
        summary = {
            "type": "summary",
            "late_skips": {name: s.late_skips for name, s in sources.items()},
            "cpu_seconds": time.process_time(),
            "target_bitrates": [getattr(e, "target_bitrate", None) for e in self.encoders],
        }
        self.out.write(json.dumps(summary) + "\n")
        self.out.close()


class Server:
    """Signaling, peer connections and sources."""

    def __init__(self, args, probe):
        self.args = args
        self.probe = probe
        self.relay = MediaRelay()
        self.sources = {}
        self.pcs = set()

    def source(self, avatar):
        if avatar not in self.sources:
            a = self.args
            self.sources[avatar] = PatternTrack(avatar, a.width, a.height, a.fps, a.busy)
        return self.sources[avatar]

    async def answer(self, session, avatar, sdp):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)
        # The transceiver and its codec preferences must exist before the offer is
        # applied: aiortc negotiates codecs in setRemoteDescription.
        track = self.relay.subscribe(self.source(avatar), buffered=False)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in ("video/h264", "video/rtx")
            ]
        )
        self.probe.sessions[transceiver.sender] = (session, avatar)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc

    async def websocket(self, request):
        session = request.match_info["session_id"]
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        pc = None

        async def error(code, message):
            await ws.send_json({"type": "error", "code": code, "message": message})

        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    await error("binary_not_supported", "send JSON text frames")
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError as e:
                    await error("malformed_json", str(e))
                    continue
                if not isinstance(data, dict) or data.get("type") != "webrtc_offer":
                    if isinstance(data, dict) and data.get("type") == "client_stats":
                        continue
                    await error("unknown_type", "expected webrtc_offer")
                    continue
                sdp, avatar = data.get("sdp"), data.get("avatar_id")
                if not isinstance(sdp, str) or not isinstance(avatar, str):
                    await error("missing_field", "sdp and avatar_id are required")
                    continue
                if pc is not None:
                    await error("already_negotiated", "open a new WebSocket")
                    continue
                try:
                    pc = await self.answer(session, avatar, sdp)
                except Exception as e:  # aiortc raises several kinds on a bad offer
                    await error("offer_rejected", f"{type(e).__name__}: {e}")
                    continue
                await ws.send_json({"type": "webrtc_answer", "sdp": pc.localDescription.sdp})
        finally:
            if pc is not None:
                self.pcs.discard(pc)
                await pc.close()
        return ws

    async def close(self):
        pcs, self.pcs = list(self.pcs), set()
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)


async def main(args):
    if args.debug:
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("aiortc.rtcrtpsender").setLevel(logging.DEBUG)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin():
        sys.stdin.buffer.read()  # returns at EOF: the harness went away
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()

    probe = Probe(args.timings, args.bitrate)
    probe.install()
    server = Server(args, probe)
    app = web.Application()
    app.router.add_get("/ws/{session_id}", server.websocket)
    if args.page:
        # portcast's viewer page, so a browser measures both servers with the same page.
        with open(args.page, "rb") as f:
            page = f.read()

        async def index(_request):
            return web.Response(body=page, content_type="text/html", charset="utf-8")

        app.router.add_get("/", index)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"listening {host}:{port}", flush=True)

    async def flush():
        while True:
            await asyncio.sleep(0.5)
            probe.out.flush()

    flusher = asyncio.ensure_future(flush())
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        print("max-seconds reached, stopping", file=sys.stderr)
    flusher.cancel()
    try:
        await asyncio.wait_for(server.close(), timeout=5)
    except asyncio.TimeoutError:
        print("peer connections did not close in 5 s", file=sys.stderr)
    await runner.cleanup()
    probe.close(server.sources)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=2_500_000, help="bit/s for every encoder")
    p.add_argument(
        "--busy",
        action="store_true",
        help="noise in a corner of the pattern, as portcast's TestPattern::set_busy",
    )
    p.add_argument("--timings", required=True, help="JSON-lines file of per-frame timings")
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--page", help="HTML file served at GET / (portcast's net/src/viewer.html)")
    p.add_argument("--debug", action="store_true", help="aiortc's RTP sender debug log on stderr")
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
    # The stdin watcher thread may still be blocked in read() (stopped by a signal while
    # stdin stays open): leave without the interpreter's shutdown, which aborts on it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
