"""A GStreamer webrtcbin viewer of a portcast avatar: offers recvonly H.264
video (and Opus audio with --audio) over the signaling WebSocket, decodes
what arrives and prints one JSON line: frames and buffers decoded, the picture
size, the final ICE, DTLS and connection states, and the first error.

    /usr/bin/python3 gst_viewer.py ws://127.0.0.1:9000 --seconds 5 --check

Runs for --seconds after the first decoded frame, or until --timeout, and
ends early once the connection has failed. Needs Debian's GStreamer and
GObject-introspection packages (MODULES, ELEMENTS), not pip: run it with the
system Python, which has `gi`. Exit: 0, or 1 with --check when fewer than
--min-frames frames were decoded, or 2 when a package is missing.
"""

import argparse
import json
import os
import sys
import threading
import uuid

# Debian's package for each module and element used, so that a missing one is named with it;
# INSTALL is the least set that brings them all (-bad pulls in -base and -good).
INSTALL = "python3-gi gir1.2-gst-plugins-bad-1.0 gir1.2-soup-3.0 gstreamer1.0-plugins-bad gstreamer1.0-nice"
MODULES = {"gi": "python3-gi", "Gst": "gir1.2-gstreamer-1.0", "GstSdp": "gir1.2-gst-plugins-base-1.0",
           "GstWebRTC": "gir1.2-gst-plugins-bad-1.0", "Soup": "gir1.2-soup-3.0"}
ELEMENTS = {
    "webrtcbin": "gstreamer1.0-plugins-bad", "dtlssrtpdec": "gstreamer1.0-plugins-bad",
    "srtpdec": "gstreamer1.0-plugins-bad", "h264parse": "gstreamer1.0-plugins-bad",
    "nicesrc": "gstreamer1.0-nice", "rtpbin": "gstreamer1.0-plugins-good",
    "rtph264depay": "gstreamer1.0-plugins-good", "rtpopusdepay": "gstreamer1.0-plugins-good",
    "decodebin": "gstreamer1.0-plugins-base", "opusdec": "gstreamer1.0-plugins-base",
    # Either decoder does; decodebin prefers avdec_h264 when both are there.
    "openh264dec|avdec_h264": "gstreamer1.0-plugins-bad",
}
VIDEO_CAPS = ("application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000,"
              "packetization-mode=(string)1,profile-level-id=(string)42e01f,"
              "rtcp-fb-nack-pli=(boolean)true")
AUDIO_CAPS = ("application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,"
              "encoding-params=(string)2")


def missing(name, package):
    print(f"gst_viewer: {name} is missing: apt-get install {package} (all it needs: {INSTALL})",
          file=sys.stderr)
    print(json.dumps({"error": f"{name} missing (apt package {package})"}))
    sys.exit(2)


try:
    import gi
except ImportError:
    missing("gi", MODULES["gi"])
for module, version in (("Gst", "1.0"), ("GstSdp", "1.0"), ("GstWebRTC", "1.0"), ("Soup", "3.0")):
    try:
        gi.require_version(module, version)
    except ValueError:
        missing(module, MODULES[module])
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Soup  # noqa: E402

os.environ.setdefault("GST_DEBUG_NO_COLOR", "1")  # its ERROR lines land in logs, not a terminal
Gst.init(None)
for element, package in ELEMENTS.items():
    if not any(Gst.ElementFactory.find(e) for e in element.split("|")):
        missing(element, package)


def nick(value):
    """An enum's short name ('connected'), as GStreamer prints it."""
    return value.value_nick if value is not None else None


class Viewer:
    """One webrtcbin peer connection, driven by the GLib main loop; `report` is the result."""

    def __init__(self, args):
        self.args = args
        self.loop = GLib.MainLoop()
        self.report = {"video_frames": 0, "video_size": None, "audio_buffers": 0,
                       "ice_state": None, "dtls_state": None, "connection_state": None,
                       "error": None}
        self.stage = "gathering ICE candidates"  # what a timeout interrupted
        self.dtls_errors = []  # why DTLS failed: only in GStreamer's log, not in the bus error
        self.session = self.ws = self.dtls = None
        self.ending = False
        self.pipe = Gst.Pipeline.new("viewer")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        # max-bundle offers the audio m-line bundle-only, with port 0 (RFC 8843), which
        # a daemon that reads port 0 as "rejected" answers without audio; max-compat does not.
        self.webrtc.set_property("bundle-policy", getattr(
            GstWebRTC.WebRTCBundlePolicy, args.bundle.upper().replace("-", "_")))
        # GStreamer 1.22's webrtcbin keeps its ICE agent floating, so the Python wrapper takes
        # the only reference: it must live as long as webrtcbin, and the process ends by
        # os._exit (see main) so that no finalizer frees it under webrtcbin.
        self.ice = self.webrtc.get_property("ice-agent")
        self.ice.set_property("ice-tcp", False)  # the daemon answers UDP candidates only
        if args.loopback_only:
            # libnice never gathers loopback on its own; once an address is added it gathers
            # that address alone (so in a namespace holding only `lo` this is needed, not just safe).
            self.ice.emit("add-local-ip-address", "127.0.0.1")
        self.pipe.add(self.webrtc)
        recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
        self.webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(VIDEO_CAPS))
        if args.audio:
            self.webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(AUDIO_CAPS))
        self.webrtc.connect("pad-added", self.on_rtp_pad)
        for prop in ("ice-gathering-state", "ice-connection-state", "connection-state"):
            self.webrtc.connect(f"notify::{prop}", self.on_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_bus_error)
        Gst.debug_set_threshold_for_name("dtls*", Gst.DebugLevel.ERROR)
        Gst.debug_add_log_function(self.on_gst_log, None)

    def run(self):
        GLib.timeout_add(int(self.args.timeout * 1000), self.on_deadline)
        self.pipe.set_state(Gst.State.PLAYING)
        self.webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(self.on_offer))
        self.loop.run()
        r = self.report
        r["connection_state"] = nick(self.webrtc.get_property("connection-state"))
        r["ice_state"] = nick(self.webrtc.get_property("ice-connection-state"))
        if self.dtls is not None:
            r["dtls_state"] = nick(self.dtls.get_property("state"))
        if r["dtls_state"] == "failed":  # clearer than dtlsdec's bus error, which says less
            r["error"] = f"DTLS handshake failed after ICE {r['ice_state']}: " \
                + ("; ".join(self.dtls_errors) or "no reason logged")
        elif r["error"] is None and "failed" in (r["ice_state"], r["connection_state"]):
            r["error"] = f"ICE {r['ice_state']}, connection {r['connection_state']}"
        if self.ws is not None and self.ws.get_state() == Soup.WebsocketState.OPEN:
            self.ws.close(Soup.WebsocketCloseCode.NORMAL, None)

    def fail(self, error=None, delay_ms=0):
        """From any thread: keeps the first error and ends the run after `delay_ms` (a failed
        state waits a little for the log or bus message that explains it)."""
        if error and not self.report["error"]:
            self.report["error"] = error
        if not self.ending:
            self.ending = True
            GLib.timeout_add(delay_ms, lambda: self.loop.quit())

    def on_deadline(self):
        if not self.report["video_frames"]:
            self.fail(f"timed out after {self.args.timeout:g} s while {self.stage}")
        self.loop.quit()

    # --- offer and answer -------------------------------------------------------------------
    def on_offer(self, promise):
        reply = promise.get_reply()
        if reply is None or not reply.has_field("offer"):
            return self.fail(f"create-offer failed: {reply.to_string() if reply else 'no reply'}")
        self.webrtc.emit("set-local-description", reply.get_value("offer"), None)
        return None

    def on_state(self, webrtc, pspec):
        value = webrtc.get_property(pspec.name)
        if pspec.name == "ice-gathering-state":
            # Send the offer once every host candidate is in it (the daemon does no trickle).
            if value == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
                GLib.idle_add(self.connect_ws)
        elif nick(value) == "failed":
            self.fail(None, 500)  # run() names what failed from the states
        elif pspec.name == "connection-state" and nick(value) == "connected":
            self.stage = "waiting for the first decoded frame"

    def connect_ws(self):
        if self.session is not None or self.ending:
            return GLib.SOURCE_REMOVE
        self.stage = "connecting to the signaling WebSocket"
        url = f"{self.args.url.rstrip('/')}/ws/{self.args.session}"
        self.session = Soup.Session.new()  # kept: the connection lives only as long as it
        self.session.websocket_connect_async(Soup.Message.new("GET", url), None, None,
                                             GLib.PRIORITY_DEFAULT, None, self.on_ws_open, url)
        return GLib.SOURCE_REMOVE

    def on_ws_open(self, session, result, url):
        try:
            self.ws = session.websocket_connect_finish(result)
        except GLib.Error as e:
            return self.fail(f"WebSocket {url}: {e.message}")
        self.ws.set_max_incoming_payload_size(0)  # no limit: an answer's size is not bounded
        self.ws.connect("message", self.on_ws_message)
        self.ws.connect("closed", self.on_ws_closed)
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        self.ws.send_text(json.dumps({
            "type": "webrtc_offer", "session_id": self.args.session, "user_id": 5,
            "avatar_id": self.args.avatar, "sdp": sdp}))
        self.stage = "waiting for the answer"
        return None

    def on_ws_closed(self, ws):
        if self.webrtc.get_property("remote-description") is None:
            self.fail(f"the daemon closed the WebSocket (code {ws.get_close_code()}) before answering")

    def on_ws_message(self, _ws, _kind, data):
        try:
            msg = json.loads(data.get_data().decode())
        except (ValueError, UnicodeDecodeError) as e:
            return self.fail(f"the daemon sent what is not JSON: {e}")
        if msg.get("type") == "error":
            return self.fail(f"the daemon refused the offer: {msg.get('code')}: {msg.get('message')}")
        if msg.get("type") != "webrtc_answer":
            return None  # other kinds are not this client's business
        res, sdp = GstSdp.SDPMessage.new_from_text(msg.get("sdp") or "")
        if res != GstSdp.SDPResult.OK:
            return self.fail(f"the daemon's answer SDP does not parse ({res.value_nick})")
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.stage = "connecting (ICE, DTLS)"
        self.webrtc.emit("set-remote-description", answer,
                         Gst.Promise.new_with_change_func(self.on_answer_set))
        return None

    def on_answer_set(self, promise):
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            return self.fail(f"webrtcbin rejected the answer: {reply.to_string()}")
        # The video transceiver's DTLS transport, which every m-line shares once bundled.
        self.dtls = self.webrtc.emit("get-transceiver", 0).get_property("receiver") \
            .get_property("transport")
        return None

    def on_gst_log(self, category, level, _file, _func, _line, _obj, message, *_user):
        if level == Gst.DebugLevel.ERROR and category.get_name().startswith("dtls") \
                and len(self.dtls_errors) < 2:
            self.dtls_errors.append(message.get().strip())

    # --- media ------------------------------------------------------------------------------
    def on_rtp_pad(self, _webrtc, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        # decodebin picks the depayloader, parser and decoder from the pad's RTP caps.
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded_pad)
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded_pad(self, _decode, pad):
        kind = pad.get_current_caps().get_structure(0).get_name()  # video/x-raw, audio/x-raw
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        pad.add_probe(Gst.PadProbeType.BUFFER,
                      self.on_video if kind.startswith("video/") else self.on_audio)

    def on_video(self, pad, _info):
        self.report["video_frames"] += 1
        if self.report["video_frames"] == 1:
            s = pad.get_current_caps().get_structure(0)
            self.report["video_size"] = f"{s.get_value('width')}x{s.get_value('height')}"
            self.stage = "decoding"
            GLib.timeout_add(int(self.args.seconds * 1000), lambda: self.loop.quit())
        return Gst.PadProbeReturn.OK

    def on_audio(self, _pad, _info):
        self.report["audio_buffers"] += 1
        return Gst.PadProbeReturn.OK

    def on_bus_error(self, _bus, message):
        err, debug = message.parse_error()
        self.fail(f"{message.src.get_name()}: {err.message} ({debug})")


def main(args):
    args.session = args.session or f"gst-{uuid.uuid4().hex[:8]}"
    viewer = Viewer(args)
    viewer.run()
    report = viewer.report
    print(json.dumps(report), flush=True)
    code = 0
    if args.check and report["video_frames"] < args.min_frames:
        print(f"gst viewer: {report['video_frames']} video frames decoded, {args.min_frames} needed"
              f" (ice {report['ice_state']}, dtls {report['dtls_state']},"
              f" connection {report['connection_state']}): {report['error']}", file=sys.stderr)
        code = 1
    # Tearing webrtcbin down has been known to block (libnice, DTLS threads): bound it.
    watchdog = threading.Timer(5, lambda: os._exit(code))
    watchdog.daemon = True
    watchdog.start()
    viewer.pipe.set_state(Gst.State.NULL)
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: no finalizer may run (see Viewer.ice)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="ws://HOST:PORT of the daemon's signaling")
    p.add_argument("--avatar", default="test-pattern")
    p.add_argument("--session")
    p.add_argument("--audio", action="store_true", help="also offer recvonly Opus audio")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to decode after the first frame")
    p.add_argument("--timeout", type=float, default=20.0, help="hard deadline for the whole run")
    p.add_argument("--bundle", choices=("max-bundle", "max-compat", "balanced"), default="max-bundle",
                   help="webrtcbin's bundle-policy")
    p.add_argument("--loopback-only", action="store_true", help="gather 127.0.0.1 alone")
    p.add_argument("--check", action="store_true", help="exit 1 unless --min-frames were decoded")
    p.add_argument("--min-frames", type=int, default=60)
    main(p.parse_args())
