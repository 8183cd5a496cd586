"""An aiortc viewer of a portcast avatar: offers recvonly video and audio over
the signaling WebSocket, decodes both for a while and prints a JSON summary
(video frames decoded and their size, audio frames decoded, their rate, and
how many carried the test pattern's beep).

    python aiortc_viewer.py ws://198.18.1.1:10110 --avatar test-pattern --seconds 5

Needs aiortc and aiohttp (the venv `portcast-bench compare-aiortc` installs
into target/aiortc-venv). With --loopback-only, ICE gathers 127.0.0.1 alone
(aiortc otherwise offers every local address).
"""

import argparse
import asyncio
import json
import sys
import time
import uuid

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription


async def consume(track, counts, until):
    """Decodes frames of `track` until `until` (monotonic seconds)."""
    while time.monotonic() < until:
        try:
            frame = await asyncio.wait_for(track.recv(), timeout=max(0.1, until - time.monotonic()))
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - end of track or of time
            return
        if track.kind == "video":
            counts["video_frames"] += 1
            counts["video_size"] = f"{frame.width}x{frame.height}"
        else:
            counts["audio_frames"] += 1
            counts["audio_rate"] = frame.sample_rate
            samples = frame.to_ndarray()
            peak = int(abs(samples).max()) if samples.size else 0
            counts["audio_peak"] = max(counts["audio_peak"], peak)
            if peak > 3000:  # the beep peaks at ~8200; Opus silence decodes to ~0
                counts["loud_audio_frames"] += 1


async def main(args):
    if args.loopback_only:
        import aioice.ice

        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    counts = {"video_frames": 0, "video_size": None, "audio_frames": 0, "audio_rate": None,
              "audio_peak": 0, "loud_audio_frames": 0, "answer_audio_port": None}
    tasks = []
    until = [0.0]

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(consume(track, counts, until[0])))

    await pc.setLocalDescription(await pc.createOffer())
    session = args.session or f"aiortc-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{args.url}/ws/{session}") as ws:
            await ws.send_str(json.dumps({
                "type": "webrtc_offer", "session_id": session, "user_id": 5,
                "avatar_id": args.avatar, "sdp": pc.localDescription.sdp}))
            reply = json.loads((await ws.receive(timeout=10)).data)
            if reply.get("type") != "webrtc_answer":
                print(json.dumps({"error": reply}))
                return 1
            for line in reply["sdp"].splitlines():
                if line.startswith("m=audio "):
                    counts["answer_audio_port"] = int(line.split()[1])
            until[0] = time.monotonic() + args.seconds
            await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
            await asyncio.sleep(args.seconds)
            await asyncio.gather(*tasks, return_exceptions=True)
    await pc.close()
    print(json.dumps(counts))
    if args.check:
        # Over `seconds`: most frames of 30 fps video and 50 packets/s audio,
        # and at least one beep (the test pattern beeps once a second).
        problems = []
        if counts["answer_audio_port"] in (None, 0):
            problems.append("the answer did not accept the audio m-line")
        if counts["video_frames"] < 20 * args.seconds:
            problems.append(f"{counts['video_frames']} video frames decoded")
        if counts["audio_frames"] < 35 * args.seconds or counts["audio_rate"] != 48000:
            problems.append(f"{counts['audio_frames']} audio frames at {counts['audio_rate']} Hz decoded")
        if counts["loud_audio_frames"] < 1:
            problems.append(f"no beep heard (peak {counts['audio_peak']})")
        if problems:
            print("aiortc viewer: " + "; ".join(problems), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="ws://HOST:PORT of the daemon's signaling")
    p.add_argument("--avatar", default="test-pattern")
    p.add_argument("--session")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--loopback-only", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless video, audio and a beep were decoded")
    sys.exit(asyncio.run(main(p.parse_args())))
