//! An in-memory world: one `Engine`, str0m client viewers, a fake clock and a
//! test-pattern encoder, wired together without sockets (like quinn's `Pair`).

#![allow(dead_code)] // each test file uses a different part of the harness

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use portcast_engine::audio::{self, AudioSettings, OpusEncoder};
use portcast_engine::encoder::{Encoded, EncoderSettings, H264Encoder};
use portcast_engine::pattern::{
    read_capture_clock, read_frame_counter, shows_flash, TestPattern, I420,
};
use portcast_engine::vp8::Vp8Encoder;
use portcast_engine::{
    AccessUnit, AudioFrame, AvatarId, ConnId, Datagram, EndReason, Engine, EngineConfig, Output,
    Rung, SessionId, SocketId, SocketSpec, VideoCodec,
};
use serde_json::Value;
use str0m::change::{SdpAnswer, SdpApi, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::SenderInfo;
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc, RtcConfig};

pub const FRAME: Duration = Duration::from_micros(33_333);
pub const TICK: Duration = Duration::from_millis(5);

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Five sockets bound on 127.0.0.1:10111.. announced as `public_ip:public_base+i`.
pub fn sockets(public_ip: &str, public_base: u16) -> Vec<SocketSpec> {
    (0..5)
        .map(|i| SocketSpec {
            local: SocketAddr::from(([127, 0, 0, 1], 10111 + i)),
            public: SocketAddr::new(public_ip.parse().unwrap(), public_base + i),
        })
        .collect()
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/../fixtures/offers/{name}", env!("CARGO_MANIFEST_DIR"));
    String::from_utf8(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

pub fn offer_message(session: &str, avatar: &str, sdp: &str) -> String {
    serde_json::json!({
        "type": "webrtc_offer", "session_id": session, "user_id": 5,
        "avatar_id": avatar, "sdp": sdp,
    })
    .to_string()
}

/// One video frame a viewer received: its first and last RTP sequence
/// numbers, its RTP time, and its picture's size if it decoded to one.
pub type Frame = (u64, u64, MediaTime, Option<(usize, usize)>);

/// A browser-like viewer: a str0m `Rtc` offering recvonly H.264, plus a decoder.
pub struct Viewer {
    pub conn: ConnId,
    pub session_id: String,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    pub answer_sdp: Option<String>,
    pub errors: Vec<Value>,
    pub byes: Vec<Value>,
    pub connected: bool,
    decoder: Decoder,
    pub counters: Vec<u64>,
    /// The capture clock read from each decoded picture (same order as `counters`).
    pub clocks: Vec<Option<u64>>,
    pub decode_errors: usize,
    /// Public addresses this viewer's datagrams came from.
    pub heard_from: Vec<SocketAddr>,
    /// When false, the viewer's outgoing datagrams are lost (it "went away").
    pub online: bool,
    /// The mid of the video transceiver.
    pub mid: Option<str0m::media::Mid>,
    /// Data channels that opened (a rejected m=application must keep this 0).
    pub channels_opened: usize,
    /// The playout-delay extension's `(min, max)` of each frame received, if any.
    pub playout_delays: Vec<Option<(MediaTime, MediaTime)>>,
    /// Every decoded picture: its RTP time, the video track's latest Sender
    /// Report then, and whether it shows the test pattern's flash.
    pub pictures: Vec<(MediaTime, Option<SenderInfo>, bool)>,
    /// Every audio packet: its RTP time, the audio track's latest Sender Report, the payload.
    pub audio: Vec<(MediaTime, Option<SenderInfo>, Vec<u8>)>,
    /// Set for a viewer that offers VP8 only: its frames are kept here, not decoded.
    pub vp8: Option<Vec<Vec<u8>>>,
    /// Drops every n-th RTP/RTCP datagram the engine sends it (a lossy link).
    pub drop_every: Option<u64>,
    /// How many datagrams in a row each drop of `drop_every` takes (1 unless set).
    pub drop_run: u64,
    media_datagrams: u64,
    /// RTP datagrams from the engine per payload type: (delivered, dropped).
    pub rtp_by_pt: std::collections::BTreeMap<u8, (u64, u64)>,
    /// With raw packets enabled in its `RtcConfig`: each RTP packet received, in order, as its
    /// payload type and the first two bytes of its payload (an RTX packet's original sequence
    /// number).
    pub raw_rtp: Vec<(u8, Option<u16>)>,
    /// The size of every decoded picture, in order.
    pub sizes: Vec<(usize, usize)>,
    /// Every video frame received.
    pub frames: Vec<Frame>,
    /// Each rendition the server said it switched this viewer to.
    pub renditions: Vec<String>,
    /// Video frames str0m said did not follow the previous one without a gap.
    pub gaps: usize,
}

impl Viewer {
    pub fn new(conn: u64, session_id: &str, addr: SocketAddr, now: Instant) -> Self {
        Self::with_config(conn, session_id, addr, now, Rtc::builder())
    }

    /// A viewer whose `Rtc` is built from `config` (e.g. with more header extensions).
    pub fn with_config(
        conn: u64,
        session_id: &str,
        addr: SocketAddr,
        now: Instant,
        config: RtcConfig,
    ) -> Self {
        let mut rtc = config.build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        Viewer {
            conn: ConnId(conn),
            session_id: session_id.to_string(),
            addr,
            rtc,
            pending: None,
            answer_sdp: None,
            errors: Vec::new(),
            byes: Vec::new(),
            connected: false,
            decoder: Decoder::new().unwrap(),
            counters: Vec::new(),
            clocks: Vec::new(),
            decode_errors: 0,
            heard_from: Vec::new(),
            online: true,
            mid: None,
            channels_opened: 0,
            playout_delays: Vec::new(),
            pictures: Vec::new(),
            audio: Vec::new(),
            vp8: None,
            drop_every: None,
            drop_run: 1,
            media_datagrams: 0,
            rtp_by_pt: Default::default(),
            raw_rtp: Vec::new(),
            sizes: Vec::new(),
            frames: Vec::new(),
            renditions: Vec::new(),
            gaps: 0,
        }
    }

    /// A viewer whose browser has VP8 and no H.264 (Firefox without OpenH264).
    pub fn vp8_only(conn: u64, session_id: &str, addr: SocketAddr, now: Instant) -> Self {
        let mut config = Rtc::builder().clear_codecs();
        config.codec_config().enable_vp8(true);
        let mut v = Self::with_config(conn, session_id, addr, now, config);
        v.vp8 = Some(Vec::new());
        v
    }

    /// Creates the recvonly video offer, as a browser's `addTransceiver('video', recvonly)`.
    pub fn make_offer(&mut self) -> String {
        self.make_offer_with(|_| {})
    }

    /// Like `make_offer`, plus whatever `extra` adds after the video (audio, a data channel).
    pub fn make_offer_with(&mut self, extra: impl FnOnce(&mut SdpApi<'_>)) -> String {
        let mut api = self.rtc.sdp_api();
        self.mid = Some(api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
        extra(&mut api);
        let (offer, pending) = api.apply().unwrap();
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    fn on_signal(&mut self, text: &str) {
        let v: Value = serde_json::from_str(text).expect("server sent JSON");
        match v["type"].as_str() {
            Some("webrtc_answer") => {
                let sdp = v["sdp"].as_str().unwrap().to_string();
                let answer = SdpAnswer::from_sdp_string(&sdp).expect("answer parses");
                let pending = self.pending.take().expect("an offer was pending");
                self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
                self.answer_sdp = Some(sdp);
            }
            Some("error") => self.errors.push(v),
            Some("bye") => self.byes.push(v),
            Some("rendition") => self
                .renditions
                .push(v["rendition"].as_str().unwrap_or_default().to_string()),
            other => panic!("unexpected server message {other:?}"),
        }
    }

    fn drain(&mut self, now: Instant, to_engine: &mut VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>) {
        loop {
            match self.rtc.poll_output() {
                Ok(RtcOutput::Timeout(_)) => break,
                Ok(RtcOutput::Transmit(t)) => {
                    if self.online {
                        to_engine.push_back((t.source, t.destination, t.contents.into()));
                    }
                }
                Ok(RtcOutput::Event(e)) => match e {
                    Event::Connected => self.connected = true,
                    Event::ChannelOpen(..) => self.channels_opened += 1,
                    Event::RawPacket(raw) => {
                        if let str0m::rtp::RawPacket::RtpRx(header, payload) = *raw {
                            let first = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                            self.raw_rtp.push((*header.payload_type, first));
                        }
                    }
                    Event::MediaData(m) if Some(m.mid) != self.mid => {
                        self.audio
                            .push((m.time, m.last_sender_info, m.data.to_vec()));
                    }
                    Event::MediaData(m) if self.vp8.is_some() => {
                        if let Some(frames) = &mut self.vp8 {
                            frames.push(m.data.to_vec());
                        }
                    }
                    Event::MediaData(m) => {
                        let seqs = (**m.seq_range.start(), **m.seq_range.end());
                        self.frames.push((seqs.0, seqs.1, m.time, None));
                        self.gaps += usize::from(!m.contiguous);
                        let ext = &m.ext_vals;
                        self.playout_delays
                            .push(ext.play_delay_min.zip(ext.play_delay_max));
                        self.decode(&m.data, m.time, m.last_sender_info)
                    }
                    _ => {}
                },
                Err(e) => panic!("viewer rtc error: {e}"),
            }
        }
        let _ = now;
    }

    fn decode(&mut self, data: &[u8], time: MediaTime, report: Option<SenderInfo>) {
        match self.decoder.decode(data) {
            Ok(Some(pic)) => {
                let (w, h) = pic.dimensions();
                self.sizes.push((w, h));
                if let Some(f) = self.frames.last_mut() {
                    f.3 = Some((w, h));
                }
                let strides = pic.strides();
                let view = I420 {
                    y: pic.y(),
                    u: pic.u(),
                    v: pic.v(),
                    width: w,
                    height: h,
                    strides,
                };
                self.pictures.push((time, report, shows_flash(&view)));
                if let Some(c) = read_frame_counter(&view) {
                    self.counters.push(c);
                    self.clocks.push(read_capture_clock(&view));
                }
            }
            Ok(None) => {}
            Err(_) => self.decode_errors += 1,
        }
    }

    /// Sends a PLI on its video, as a browser does when it lost a picture.
    pub fn send_pli(&mut self) {
        let mid = self.mid.expect("an offer was made");
        self.rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .expect("receive stream")
            .request_keyframe(str0m::media::KeyframeRequestKind::Pli);
    }

    /// Counters decoded so far are strictly increasing (frames arrive in order, none repeated).
    pub fn counters_advance(&self) -> bool {
        self.counters.windows(2).all(|w| w[1] > w[0])
    }
}

/// The capture clock the test source stamps on frame `index` (a made-up epoch, 30 fps).
pub fn capture_clock_of(index: u64) -> u64 {
    1_764_806_400_000 + index * 1000 / 30
}

/// The test-pattern source, encoding in the test thread.
pub struct Source {
    pub avatar: AvatarId,
    pattern: TestPattern,
    encoder: H264Encoder,
    /// Its VP8 encoder, while the engine says a viewer watches in VP8.
    pub vp8: Option<Vp8Encoder>,
    pub force_vp8_key: bool,
    settings: EncoderSettings,
    pub index: u64,
    fps: u64,
    pub force_idr: bool,
    pub keyframes: u64,
    pub encodes: u64,
    buf: Vec<u8>,
    /// The ladder's rungs (rendition `i + 1` is rung `i`).
    pub ladder: Vec<Rung>,
    /// Per rung, its pattern and H.264 encoder while the engine says a viewer
    /// watches it, and whether its next picture must be a keyframe.
    pub rungs: Vec<Option<(TestPattern, H264Encoder, bool)>>,
}

impl Source {
    pub fn new(avatar: &str, width: u32, height: u32) -> Self {
        let settings = EncoderSettings {
            width,
            height,
            fps: 30,
            // Under what a new viewer's first estimate (1 Mbit/s) carries, so
            // viewers of a clean link stay on rendition 0.
            bitrate_bps: 500_000,
            threads: 1,
        };
        Source {
            avatar: AvatarId::parse(avatar).unwrap(),
            pattern: TestPattern::new(width as usize, height as usize).unwrap(),
            encoder: H264Encoder::new(settings).unwrap(),
            vp8: None,
            force_vp8_key: false,
            settings,
            index: 0,
            fps: 30,
            force_idr: false,
            keyframes: 0,
            encodes: 0,
            buf: Vec::new(),
            ladder: Vec::new(),
            rungs: Vec::new(),
        }
    }

    /// Starts or stops the H.264 encoder of rendition `rendition` (> 0), as a
    /// daemon's source does on `Output::Watched`: the test pattern drawn at
    /// the rung's size (the engine cannot tell it from a scaled picture).
    pub fn set_rung(&mut self, rendition: u8, on: bool) {
        let i = usize::from(rendition) - 1;
        let rung = self.ladder[i];
        if self.rungs.len() < self.ladder.len() {
            self.rungs.resize_with(self.ladder.len(), || None);
        }
        self.rungs[i] = on.then(|| {
            let (w, h) = rung.size_for(self.settings.width as usize, self.settings.height as usize);
            let settings = EncoderSettings {
                width: w as u32,
                height: h as u32,
                bitrate_bps: rung.bitrate_bps,
                ..self.settings
            };
            (
                TestPattern::new(w.max(128), h.max(64)).unwrap(),
                H264Encoder::new(settings).unwrap(),
                true,
            )
        });
    }

    /// The next picture of each running rung, at `index`.
    fn next_rungs(&mut self, index: u64, now: Instant) -> Vec<AccessUnit> {
        let mut out = Vec::new();
        for (i, rung) in self.rungs.iter_mut().enumerate() {
            let Some((pattern, encoder, key)) = rung else {
                continue;
            };
            let pic = pattern.render(index, capture_clock_of(index));
            let mut buf = Vec::new();
            let kind = encoder.encode(&pic, std::mem::take(key), &mut buf).unwrap();
            if kind == Encoded::Skipped {
                continue;
            }
            out.push(AccessUnit {
                codec: VideoCodec::H264,
                data: Arc::from(&buf[..]),
                rtp_time: index * 90_000 / self.fps,
                keyframe: kind == Encoded::Keyframe,
                captured_at: now,
                encoded_at: now,
                frame_index: index,
                rendition: i as u8 + 1,
                bitrate_bps: self.ladder[i].bitrate_bps,
            });
        }
        out
    }

    /// Starts or stops its VP8 encoder, as a daemon's source does on `Output::Watched`.
    pub fn set_vp8(&mut self, on: bool) {
        self.vp8 = on.then(|| Vp8Encoder::new(self.settings).unwrap());
    }

    /// The next picture: its H.264 access unit and, while VP8 runs, its VP8 one.
    pub fn next_both(&mut self, now: Instant) -> (Option<AccessUnit>, Option<AccessUnit>) {
        let index = self.index;
        let vp8 = self.vp8.as_mut().and_then(|enc| {
            let at = Duration::from_nanos(index * 1_000_000_000 / self.fps);
            self.pattern.set_flash(audio::flashing(at));
            let pic = self.pattern.render(index, capture_clock_of(index));
            let mut buf = Vec::new();
            let key = std::mem::take(&mut self.force_vp8_key);
            let kind = enc.encode(&pic, key, &mut buf).unwrap();
            (kind != Encoded::Skipped).then(|| AccessUnit {
                codec: VideoCodec::Vp8,
                data: Arc::from(&buf[..]),
                rtp_time: index * 90_000 / self.fps,
                keyframe: kind == Encoded::Keyframe,
                captured_at: now,
                encoded_at: now,
                frame_index: index,
                rendition: 0,
                bitrate_bps: self.settings.bitrate_bps,
            })
        });
        (self.next(now), vp8)
    }

    /// The next picture in every codec and rendition that runs, rendition 0 first.
    pub fn next_all(&mut self, now: Instant) -> Vec<AccessUnit> {
        let index = self.index;
        let (h264, vp8) = self.next_both(now);
        let mut out: Vec<AccessUnit> = h264.into_iter().collect();
        out.extend(self.next_rungs(index, now));
        out.extend(vp8);
        out
    }

    pub fn next(&mut self, now: Instant) -> Option<AccessUnit> {
        let at = Duration::from_nanos(self.index * 1_000_000_000 / self.fps);
        self.pattern.set_flash(audio::flashing(at));
        let pic = self
            .pattern
            .render(self.index, capture_clock_of(self.index));
        self.buf.clear();
        let kind = self
            .encoder
            .encode(&pic, std::mem::take(&mut self.force_idr), &mut self.buf)
            .unwrap();
        let index = self.index;
        self.index += 1;
        self.encodes += 1;
        let keyframe = match kind {
            Encoded::Skipped => return None,
            Encoded::Keyframe => true,
            Encoded::Delta => false,
        };
        self.keyframes += u64::from(keyframe);
        Some(AccessUnit {
            codec: VideoCodec::H264,
            data: Arc::from(&self.buf[..]),
            rtp_time: index * 90_000 / self.fps,
            keyframe,
            captured_at: now,
            encoded_at: now,
            frame_index: index,
            rendition: 0,
            bitrate_bps: self.settings.bitrate_bps,
        })
    }
}

/// The test pattern's voice, encoding in the test thread on the video's clock.
pub struct Voice {
    encoder: OpusEncoder,
    epoch: Instant,
    next: u64,
    pcm: Vec<i16>,
}

impl Voice {
    pub fn new(epoch: Instant) -> Self {
        let encoder = OpusEncoder::new(AudioSettings::default()).unwrap();
        let pcm = vec![0; encoder.settings().frame_samples()];
        Voice {
            encoder,
            epoch,
            next: 0,
            pcm,
        }
    }

    /// The next packet once its last sample is due at `now`.
    pub fn next(&mut self, now: Instant) -> Option<AudioFrame> {
        let samples = self.pcm.len() as u64;
        let nanos = |n: u64| Duration::from_nanos(n * 1_000_000_000 / 48_000);
        if now < self.epoch + nanos(self.next + samples) {
            return None;
        }
        let first = self.next;
        self.next += samples;
        audio::beep(first, &mut self.pcm);
        let data = Arc::from(self.encoder.encode(&self.pcm).unwrap());
        Some(AudioFrame {
            data,
            rtp_time: first,
            captured_at: self.epoch + nanos(first),
            ready_at: now,
        })
    }
}

/// Engine + viewers + one source, advanced by a fake clock.
pub struct World {
    pub engine: Engine,
    pub now: Instant,
    pub viewers: Vec<Viewer>,
    pub source: Source,
    /// When the source's clock started (its frame 0 and sample 0).
    pub epoch: Instant,
    /// The source's voice, when the test gives it one.
    pub voice: Option<Voice>,
    next_frame: Instant,
    public_to_socket: HashMap<SocketAddr, SocketId>,
    pub keyframe_requests: u64,
    /// Each `Output::Watched` for the source's avatar in H.264, in order.
    pub watched: Vec<bool>,
    /// The same in VP8.
    pub watched_vp8: Vec<bool>,
    /// Each `Output::Watched` of a lower rendition: (codec, rendition, watched).
    pub watched_rungs: Vec<(VideoCodec, u8, bool)>,
    /// Each `Output::VideoBitrate` for the source's avatar, in order, with when it was sent.
    pub bitrate_caps: Vec<(VideoCodec, Option<u32>, Instant)>,
    pub closed: Vec<(ConnId, String, EndReason)>,
    pub signals: Vec<(ConnId, String)>,
    /// Datagrams the engine sent that are DTLS application data (SCTP would be; SRTP is not).
    pub dtls_app_data_from_engine: u64,
}

impl World {
    pub fn new(config: EngineConfig, width: u32, height: u32) -> Self {
        let public_to_socket = config
            .sockets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.public, SocketId(i)))
            .collect();
        let now = Instant::now();
        let mut source = Source::new("test-pattern", width, height);
        source.ladder = config.ladders.of(&source.avatar).to_vec();
        World {
            engine: Engine::new(config, now).unwrap(),
            now,
            viewers: Vec::new(),
            source,
            epoch: now,
            voice: None,
            next_frame: now,
            public_to_socket,
            keyframe_requests: 0,
            watched: Vec::new(),
            watched_vp8: Vec::new(),
            watched_rungs: Vec::new(),
            bitrate_caps: Vec::new(),
            closed: Vec::new(),
            signals: Vec::new(),
            dtls_app_data_from_engine: 0,
        }
    }

    /// Adds a viewer at `addr` and sends its offer; returns its index.
    pub fn add_viewer(&mut self, session_id: &str, addr: SocketAddr) -> usize {
        self.add_viewer_with(session_id, addr, |_| {})
    }

    /// Adds a viewer whose offer also carries what `extra` adds; returns its index.
    pub fn add_viewer_with(
        &mut self,
        session_id: &str,
        addr: SocketAddr,
        extra: impl FnOnce(&mut SdpApi<'_>),
    ) -> usize {
        self.add_viewer_from(session_id, addr, Rtc::builder(), extra)
    }

    /// Adds a viewer whose `Rtc` is built from `config`; returns its index.
    pub fn add_viewer_from(
        &mut self,
        session_id: &str,
        addr: SocketAddr,
        config: RtcConfig,
        extra: impl FnOnce(&mut SdpApi<'_>),
    ) -> usize {
        let conn = self.viewers.len() as u64 + 1000;
        let v = Viewer::with_config(conn, session_id, addr, self.now, config);
        self.add(v, extra)
    }

    /// Adds a viewer with VP8 and no H.264; returns its index.
    pub fn add_vp8_viewer(&mut self, session_id: &str, addr: SocketAddr) -> usize {
        let conn = self.viewers.len() as u64 + 1000;
        let v = Viewer::vp8_only(conn, session_id, addr, self.now);
        self.add(v, |_| {})
    }

    fn add(&mut self, mut v: Viewer, extra: impl FnOnce(&mut SdpApi<'_>)) -> usize {
        let session_id = v.session_id.clone();
        let sdp = v.make_offer_with(extra);
        self.engine
            .open_connection(v.conn, SessionId::parse(&session_id).unwrap());
        let msg = offer_message(&session_id, "test-pattern", &sdp);
        self.engine.handle_signal(self.now, v.conn, &msg);
        self.viewers.push(v);
        self.pump();
        self.viewers.len() - 1
    }

    /// Sends `text` on an open connection and returns the server's first reply to it.
    pub fn reply_on(&mut self, conn: ConnId, text: &str) -> Value {
        self.signals.clear();
        self.engine.handle_signal(self.now, conn, text);
        self.pump();
        let (_, reply) = self
            .signals
            .iter()
            .find(|(c, _)| *c == conn)
            .expect("a reply")
            .clone();
        serde_json::from_str(&reply).unwrap()
    }

    /// Moves packets and signals around until nobody has anything more to say.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut to_engine = VecDeque::new();
            let mut moved = false;
            loop {
                match self.engine.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => {
                        moved = true;
                        // RFC 7983: first byte 20..=63 is DTLS; content type 23 is application data.
                        if t.bytes.first() == Some(&23) {
                            self.dtls_app_data_from_engine += 1;
                        }
                        let public = self.engine.sockets().get(t.socket).unwrap().public;
                        if let Some(v) = self.viewers.iter_mut().find(|v| v.addr == t.to) {
                            // RFC 7983: 128..=191 is RTP or RTCP (SRTP by now).
                            if (128..=191).contains(&t.bytes[0]) {
                                v.media_datagrams += 1;
                                let dropped = v
                                    .drop_every
                                    .is_some_and(|n| v.media_datagrams % n < v.drop_run);
                                // RTCP's packet types 200-207 read as 72-79 here (RFC 5761).
                                let pt = t.bytes[1] & 0x7f;
                                if !(72..=79).contains(&pt) {
                                    let c = v.rtp_by_pt.entry(pt).or_default();
                                    if dropped {
                                        c.1 += 1;
                                    } else {
                                        c.0 += 1;
                                    }
                                }
                                if dropped {
                                    continue;
                                }
                            }
                            v.heard_from.push(public);
                            let recv =
                                Receive::new(Protocol::Udp, public, v.addr, &t.bytes).unwrap();
                            v.rtc.handle_input(Input::Receive(self.now, recv)).unwrap();
                            v.drain(self.now, &mut to_engine);
                        }
                    }
                    Output::Signal { conn, text } => {
                        moved = true;
                        self.signals.push((conn, text.clone()));
                        if let Some(v) = self.viewers.iter_mut().find(|v| v.conn == conn) {
                            v.on_signal(&text);
                            v.drain(self.now, &mut to_engine);
                        }
                    }
                    Output::KeyframeRequest {
                        avatar,
                        codec,
                        rendition,
                    } => {
                        assert_eq!(avatar, self.source.avatar);
                        self.keyframe_requests += 1;
                        match (codec, rendition) {
                            (VideoCodec::H264, 0) => self.source.force_idr = true,
                            (VideoCodec::H264, r) => {
                                if let Some(Some(rung)) =
                                    self.source.rungs.get_mut(usize::from(r) - 1)
                                {
                                    rung.2 = true;
                                }
                            }
                            (VideoCodec::Vp8, _) => self.source.force_vp8_key = true,
                        }
                    }
                    Output::Watched {
                        avatar,
                        codec,
                        rendition,
                        watched,
                    } => {
                        assert_eq!(avatar, self.source.avatar);
                        match (codec, rendition) {
                            (VideoCodec::H264, 0) => self.watched.push(watched),
                            (VideoCodec::Vp8, 0) => {
                                self.watched_vp8.push(watched);
                                self.source.set_vp8(watched);
                            }
                            (VideoCodec::H264, r) => {
                                self.watched_rungs.push((codec, r, watched));
                                self.source.set_rung(r, watched);
                            }
                            (VideoCodec::Vp8, r) => {
                                // The test source has no VP8 rungs.
                                self.watched_rungs.push((codec, r, watched));
                            }
                        }
                    }
                    Output::VideoBitrate {
                        avatar,
                        codec,
                        cap_bps,
                    } => {
                        assert_eq!(avatar, self.source.avatar);
                        self.bitrate_caps.push((codec, cap_bps, self.now));
                    }
                    Output::SessionClosed {
                        conn,
                        session_id,
                        reason,
                    } => {
                        self.closed.push((conn, session_id, reason));
                    }
                }
            }
            for v in self.viewers.iter_mut() {
                v.drain(self.now, &mut to_engine);
            }
            while let Some((from, dst, bytes)) = to_engine.pop_front() {
                moved = true;
                let Some(socket) = self.public_to_socket.get(&dst).copied() else {
                    continue;
                };
                self.engine.handle_datagram(
                    self.now,
                    Datagram {
                        socket,
                        from,
                        bytes: &bytes,
                    },
                );
            }
            if !moved {
                return;
            }
        }
        panic!("pump did not settle");
    }

    /// Runs the world for `d` of fake time: timers, frames, packets.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += TICK;
            self.engine.handle_timeout(self.now);
            for v in self.viewers.iter_mut() {
                v.rtc.handle_input(Input::Timeout(self.now)).unwrap();
            }
            if self.now >= self.next_frame {
                // Captured on the source's clock, not the tick that carries it.
                let captured = self.next_frame;
                self.next_frame += FRAME;
                let avatar = self.source.avatar.clone();
                for au in &self.source.next_all(captured) {
                    self.engine.handle_access_unit(self.now, &avatar, au);
                }
            }
            while let Some(frame) = self.voice.as_mut().and_then(|v| v.next(self.now)) {
                let avatar = self.source.avatar.clone();
                self.engine.handle_audio(self.now, &avatar, &frame);
            }
            self.pump();
        }
    }
}
