//! One viewer's WebRTC session: a str0m `Rtc` plus what the engine tracks about it.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use str0m::bwe::{Bitrate, BweKind};
use str0m::config::DtlsCert;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::rtp::Extension;
use str0m::{Event, IceConnectionState, IceCreds, Input, Output as RtcOutput, Rtc, RtcConfig};

use crate::address::SocketTable;
use crate::demux::{Demux, SessionKey};
use crate::engine::BandwidthEstimation;
use crate::ids::{AvatarId, ConnId, SocketId};
use crate::media::VideoCodec;
use crate::offer::VideoChoice;
use crate::Output;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The viewer's WebSocket closed.
    WebSocketClosed,
    /// The viewer's client ended the session over HTTP (WHEP `DELETE`).
    Deleted,
    /// No valid STUN consent check from the viewer within the consent timeout.
    ConsentExpired,
    /// ICE + DTLS did not complete within the connect timeout after the answer.
    ConnectTimeout,
    /// DTLS (or another part of the WebRTC stack) failed.
    DtlsFailed(String),
    /// The viewer closed DTLS (close_notify).
    PeerClosed,
    /// The daemon is shutting down.
    Shutdown,
    /// Handling the session panicked (a bug); it was dropped to protect the others.
    InternalError,
}

impl EndReason {
    /// A stable snake_case name for logs, metrics and the `bye` message.
    pub fn code(&self) -> &'static str {
        match self {
            EndReason::WebSocketClosed => "websocket_closed",
            EndReason::Deleted => "deleted",
            EndReason::ConsentExpired => "consent_expired",
            EndReason::ConnectTimeout => "connect_timeout",
            EndReason::DtlsFailed(_) => "dtls_failed",
            EndReason::PeerClosed => "peer_closed",
            EndReason::Shutdown => "shutdown",
            EndReason::InternalError => "internal_error",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::DtlsFailed(e) => write!(f, "dtls_failed ({e})"),
            other => f.write_str(other.code()),
        }
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Answer sent; waiting for ICE and DTLS.
    Negotiated,
    /// DTLS is up; waiting for str0m to announce the video media.
    Connected,
    /// Media is ready: frames are written to it.
    Streaming,
}

/// Public facts about a live session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The session id from the URL and the offer.
    pub session_id: String,
    /// Its signaling connection.
    pub conn: ConnId,
    /// Avatar watched.
    pub avatar: AvatarId,
    /// The video codec it receives.
    pub codec: VideoCodec,
    /// Socket serving it.
    pub socket: SocketId,
    /// Remote address learned from its checks, if any yet.
    pub remote: Option<SocketAddr>,
    /// Phase.
    pub phase: Phase,
    /// Frames written to it.
    pub frames_sent: u64,
    /// The rendition of its avatar it receives (0: the source's own picture).
    pub rendition: u8,
}

/// Who a new session serves and where; everything else starts fresh.
pub(crate) struct SessionSeed {
    pub key: SessionKey,
    pub conn: ConnId,
    pub id: String,
    pub user: Option<String>,
    pub avatar: AvatarId,
    pub codec: VideoCodec,
    pub rtc: Rtc,
    pub socket: SocketId,
    pub local_ufrag: String,
}

/// Copies of a video packet sent for each NACK asking for it. Chromium, a
/// receive-only peer without RTCP XR, knows no round-trip time and asks
/// again for a packet whose resend was lost only after its 100 ms default:
/// through e2e `q`'s 5 % loss and 40 ms round trip that made the picture
/// freeze ~9 times a minute, and 0 times when no resend was lost. Copies
/// (str0m patched, vendor/str0m/PORTCAST.md) make that as rare as losing all
/// of them: 0.25 freezes a minute with three, 0.5 with two (eight minutes
/// each, alternating in one session).
const VIDEO_RESEND_COPIES: u8 = 3;

/// A str0m timeout this close ahead of now is taken as immediate by a drain:
/// the pacer asks for "last handled + 1 µs" after each packet it releases.
const IMMEDIATE_SLACK: Duration = Duration::from_micros(100);

/// Timeouts one drain runs at most (a frame within the pacer's burst budget is
/// ~10-30 packets, one timeout each).
const MAX_DUE_PASSES: u32 = 32;

/// The str0m configuration of one viewer's `Rtc`: ICE-lite with the shared
/// certificate, the one video format chosen from the offer (and its RTX),
/// and only the header extensions the engine uses.
pub(crate) fn rtc_config(
    cert: DtlsCert,
    creds: IceCreds,
    resend_buffer_packets: usize,
    playout_delay: bool,
    bwe: Option<BandwidthEstimation>,
    video: &VideoChoice,
    opus_pt: Option<u8>,
) -> RtcConfig {
    let mut cfg = RtcConfig::new()
        .set_ice_lite(true)
        .set_dtls_cert(cert)
        .set_local_ice_credentials(creds)
        .set_send_buffer_video(resend_buffer_packets)
        .set_video_resend_copies(VIDEO_RESEND_COPIES)
        // Every viewer of a rendition is written the same `Arc` picture in a
        // row on the loop thread: packetized once, its payloads shared
        // (vendored str0m; -15 % of the loop's time at 100 viewers).
        .set_share_h264_packets(true)
        // The pacer asks for a timeout after each packet it releases: until
        // anything but media falls due, those run only the packetizer and the
        // pacer, not ICE, reports and estimation (vendored str0m).
        .set_media_only_timeouts(true)
        // The MID header extension (BUNDLE demux in the browser), and
        // transport-cc below when estimation is on; nothing else.
        .clear_extension_map()
        .set_extension(4, Extension::RtpMid)
        .clear_codecs();
    if let Some(b) = bwe {
        // Each viewer then sends TWCC feedback (an SRTCP packet every
        // ~50-100 ms) and str0m paces at 1.1x its estimate.
        cfg = cfg
            .set_extension(3, Extension::TransportSequenceNumber)
            .enable_bwe(Some(Bitrate::bps(u64::from(b.start_bps))));
    }
    if playout_delay {
        // Answered only when the offer has it (str0m answers the
        // intersection, with the offer's id); written on every frame.
        cfg = cfg.set_extension(5, Extension::PlayoutDelay);
    }
    match video.codec {
        VideoCodec::H264 => cfg.codec_config().add_h264(
            video.pt.into(),
            video.rtx.map(Into::into),
            true,
            video.profile_level_id.unwrap_or(0x42e01f),
        ),
        VideoCodec::Vp8 => cfg.codec_config().add_config(
            video.pt.into(),
            video.rtx.map(Into::into),
            Codec::Vp8,
            Frequency::NINETY_KHZ,
            None,
            FormatParams::default(),
        ),
    }
    if let Some(pt) = opus_pt {
        // The offer's Opus payload type, stereo-signalled as RFC 7587 has
        // it (the encoder sends mono), in-band FEC on.
        cfg.codec_config().add_config(
            pt.into(),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                ..FormatParams::default()
            },
        );
        // The browser aligns the two tracks once it has a Sender Report of
        // each; str0m's 5 s default for audio would leave the first seconds
        // unsynchronised (str0m issue #1021).
        cfg = cfg.set_rtcp_report_interval_audio(AUDIO_REPORT_INTERVAL);
    }
    cfg
}

/// Between two Sender Reports on an audio track (video's default is also 1 s).
pub(crate) const AUDIO_REPORT_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Session {
    pub key: SessionKey,
    pub conn: ConnId,
    pub id: String,
    pub user: Option<String>,
    pub avatar: AvatarId,
    /// The video codec it receives.
    pub codec: VideoCodec,
    pub rtc: Rtc,
    pub socket: SocketId,
    pub local_ufrag: String,
    pub phase: Phase,
    pub mid: Option<Mid>,
    pub pt: Option<Pt>,
    /// The audio track, once str0m has added it: its mid and Opus payload type.
    pub audio: Option<(Mid, Pt)>,
    pub needs_keyframe: bool,
    pub created: Instant,
    pub last_consent: Instant,
    pub rtc_timeout: Instant,
    pub remote: Option<SocketAddr>,
    pub frames_sent: u64,
    pub frames_held: u64,
    pub client_stats: Option<Value>,
    /// The viewer's latest bandwidth estimate in bits per second (TWCC, or
    /// REMB from a peer without TWCC); `None` before the first or with
    /// estimation off.
    pub estimate_bps: Option<u32>,
    /// Whether the estimate comes from TWCC (then REMB is ignored).
    pub estimate_twcc: bool,
    /// When the estimate last went into the metrics' histogram.
    pub estimate_observed: Option<Instant>,
    /// When the engine last asked str0m to probe this viewer's link for more.
    pub probe_asked: Option<Instant>,
    /// Whether str0m's desired bitrate is lowered for that probe and must be
    /// raised again (the rise is what starts an allocation probe).
    pub probe_lowered: bool,
    /// When to look again whether to probe (or to raise the lowered desired
    /// bitrate): checked on every drain, since an estimate that stops moving
    /// brings no estimate event.
    pub probe_check_at: Option<Instant>,
    /// The rendition of its avatar it receives (0: the source's own picture).
    pub rendition: u8,
    /// The rendition it switches to at that one's next keyframe, if any.
    pub switch_to: Option<u8>,
    /// Since when its estimate has carried a higher rendition than its own
    /// (it switches up only after that lasts).
    pub up_since: Option<Instant>,
    /// When its first picture was written.
    pub first_frame_at: Option<Instant>,
    /// The RTP time of the last picture written to it: a picture of another
    /// rendition is never written at the same or an earlier time.
    pub last_rtp: Option<u64>,
    /// Test hook: the next handling panics (see `Engine::poison_session_for_tests`).
    #[cfg(feature = "test-hooks")]
    pub poisoned: bool,
}

/// What a drain asks the engine to do besides transmitting.
#[derive(Debug, Default)]
pub(crate) struct DrainEffects {
    pub keyframe_wanted: bool,
    /// The viewer's video just started: it may take the avatar's current GOP.
    pub media_started: bool,
    /// The viewer's bandwidth estimate changed.
    pub estimate_changed: bool,
    pub end: Option<EndReason>,
}

pub(crate) struct DrainCtx<'a> {
    pub sockets: &'a SocketTable,
    pub demux: &'a mut Demux,
    pub out: &'a mut VecDeque<Output>,
    /// Remote of the STUN binding request being handled, if any: a reply to it proves consent.
    pub stun_from: Option<SocketAddr>,
    pub now: Instant,
}

impl Session {
    /// A session whose answer is being sent at `now`: negotiated, waiting for its first keyframe.
    pub fn new(seed: SessionSeed, now: Instant) -> Session {
        let SessionSeed {
            key,
            conn,
            id,
            user,
            avatar,
            codec,
            rtc,
            socket,
            local_ufrag,
        } = seed;
        Session {
            key,
            conn,
            id,
            user,
            avatar,
            codec,
            rtc,
            socket,
            local_ufrag,
            phase: Phase::Negotiated,
            mid: None,
            pt: None,
            audio: None,
            needs_keyframe: true,
            created: now,
            last_consent: now,
            rtc_timeout: now,
            remote: None,
            frames_sent: 0,
            frames_held: 0,
            client_stats: None,
            estimate_bps: None,
            estimate_twcc: false,
            estimate_observed: None,
            probe_asked: None,
            probe_lowered: false,
            probe_check_at: None,
            rendition: 0,
            switch_to: None,
            up_since: None,
            last_rtp: None,
            first_frame_at: None,
            #[cfg(feature = "test-hooks")]
            poisoned: false,
        }
    }

    /// Panics if a test poisoned this session (a no-op without the `test-hooks` feature).
    #[inline]
    pub fn check_poison(&mut self) {
        #[cfg(feature = "test-hooks")]
        if std::mem::take(&mut self.poisoned) {
            panic!("session {} poisoned by a test", self.id);
        }
    }

    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            session_id: self.id.clone(),
            conn: self.conn,
            avatar: self.avatar.clone(),
            codec: self.codec,
            socket: self.socket,
            remote: self.remote,
            phase: self.phase,
            frames_sent: self.frames_sent,
            rendition: self.rendition,
        }
    }

    /// The earliest instant this session needs `handle_timeout`.
    pub fn deadline(&self, consent_timeout: Duration, connect_timeout: Duration) -> Instant {
        let own = if self.phase == Phase::Negotiated {
            self.created + connect_timeout
        } else {
            self.last_consent + consent_timeout
        };
        own.min(self.rtc_timeout)
    }

    /// Polls str0m until it is drained, turning its output into engine output.
    pub fn drain(&mut self, ctx: &mut DrainCtx<'_>) -> DrainEffects {
        let mut fx = DrainEffects::default();
        // str0m packetizes written media on its next timeout, which is "now",
        // and its pacer, having released a packet, asks for a timeout one
        // microsecond later before it releases the next: run those timeouts
        // here (at the instant asked for, when that is not yet now) so a
        // frame's packets leave in this drain, not one loop turn each.
        // Bounded: each pass makes progress.
        let mut due_passes = 0;
        loop {
            match self.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t))
                    if t <= ctx.now + IMMEDIATE_SLACK && due_passes < MAX_DUE_PASSES =>
                {
                    due_passes += 1;
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(t.max(ctx.now))) {
                        fx.end = Some(EndReason::DtlsFailed(e.to_string()));
                        break;
                    }
                }
                Ok(RtcOutput::Timeout(t)) => {
                    self.rtc_timeout = t;
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => {
                    let Some(socket) = ctx.sockets.socket_for_transmit(t.source, t.proto) else {
                        log::warn!(
                            "session {}: str0m sent from {} which is no configured public address; dropped",
                            self.id,
                            t.source
                        );
                        continue;
                    };
                    ctx.demux.learn_pair(self.key, socket, t.destination);
                    if ctx.stun_from == Some(t.destination) {
                        // str0m answers a binding request only when its
                        // MESSAGE-INTEGRITY checks out: that is consent.
                        self.last_consent = ctx.now;
                        if self.remote != Some(t.destination) {
                            self.remote = Some(t.destination);
                        }
                    }
                    ctx.out.push_back(Output::Transmit(crate::Transmit {
                        socket,
                        to: t.destination,
                        bytes: t.contents.into(),
                    }));
                }
                Ok(RtcOutput::Event(e)) => self.on_event(e, &mut fx),
                Err(e) => {
                    fx.end = Some(EndReason::DtlsFailed(e.to_string()));
                    break;
                }
            }
        }
        if fx.end.is_none() && !self.rtc.is_alive() {
            fx.end = Some(match self.phase {
                Phase::Negotiated => {
                    EndReason::DtlsFailed("WebRTC stack closed before connecting".into())
                }
                _ => EndReason::PeerClosed,
            });
        }
        fx
    }

    fn on_event(&mut self, e: Event, fx: &mut DrainEffects) {
        match e {
            Event::Connected if self.phase == Phase::Negotiated => {
                self.phase = Phase::Connected;
                log::info!(
                    "session {} connected: remote={} port={}",
                    self.id,
                    self.remote
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into()),
                    self.socket
                );
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Video && self.mid.is_none() => {
                let pt = self.rtc.writer(m.mid).and_then(|w| {
                    w.payload_params()
                        .find(|p| p.spec().codec == str0m_codec(self.codec))
                        .map(|p| p.pt())
                });
                self.mid = Some(m.mid);
                self.pt = pt;
                if pt.is_some() {
                    self.phase = Phase::Streaming;
                    self.needs_keyframe = true;
                    fx.keyframe_wanted = true;
                    fx.media_started = true;
                } else {
                    fx.end = Some(EndReason::DtlsFailed(format!(
                        "negotiated video has no {} payload type",
                        self.codec
                    )));
                }
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Audio && self.audio.is_none() => {
                let pt = self.rtc.writer(m.mid).and_then(|w| {
                    w.payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .map(|p| p.pt())
                });
                self.audio = pt.map(|pt| (m.mid, pt));
            }
            Event::KeyframeRequest(_) => {
                self.needs_keyframe = self.needs_keyframe || self.phase != Phase::Streaming;
                fx.keyframe_wanted = true;
            }
            Event::IceConnectionStateChange(s) => {
                log::debug!("session {}: ICE {:?}", self.id, s);
                if s == IceConnectionState::Disconnected && self.phase != Phase::Negotiated {
                    // str0m gave up on every pair; the consent timer decides the end.
                    log::debug!("session {}: no live ICE pair", self.id);
                }
            }
            Event::EgressBitrateEstimate(kind) => {
                let (bps, twcc) = match kind {
                    BweKind::Twcc { estimate, .. } => (estimate.as_u64(), true),
                    // A peer without TWCC may still say what it receives.
                    BweKind::Remb { estimate, .. } if !self.estimate_twcc => {
                        (estimate.as_u64(), false)
                    }
                    _ => return,
                };
                let bps = u32::try_from(bps).unwrap_or(u32::MAX);
                self.estimate_twcc |= twcc;
                if self.estimate_bps != Some(bps) {
                    self.estimate_bps = Some(bps);
                    fx.estimate_changed = true;
                }
            }
            Event::Closed => fx.end = Some(EndReason::PeerClosed),
            _ => {}
        }
    }
}

/// str0m's name for a codec the server sends.
fn str0m_codec(codec: VideoCodec) -> Codec {
    match codec {
        VideoCodec::H264 => Codec::H264,
        VideoCodec::Vp8 => Codec::Vp8,
    }
}
