//! The engine: sessions, signaling, demux and fan-out, driven by its caller.

use crate::stats::EngineStats;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::media::{Frequency, MediaTime};
use str0m::net::{Receive, TcpType};
use str0m::{Candidate, IceCreds, Input, Rtc};

use crate::address::{AddressError, SocketSpec, SocketTable};
use crate::answer::AnswerPlan;
use crate::auth::{TokenError, TokenKey};
use crate::demux::{Demux, Route, SessionKey};
use crate::gop::JoinGop;
use crate::ids::{AvatarId, ConnId, SessionId, SocketId};
use crate::keyframe::{KeyframeLimiter, DEFAULT_KEYFRAME_INTERVAL};
use crate::media::{
    rendition_name, AccessUnit, AudioFrame, Ladders, Rung, VideoCodec, MAX_RENDITIONS,
};
use crate::offer::OfferSummary;
use crate::playout_delay::PlayoutDelay;
use crate::sctp_guard::{self, Guarded};
use crate::session::{self, DrainCtx, EndReason, Phase, Session, SessionInfo, SessionSeed};
use crate::signaling::{self, ClientMessage, Offer, SignalError};
use crate::stats::labels;

mod accept;
mod avatars;
mod bitrate;
mod config;
mod fanout;
mod ladder;

use avatars::Avatar;
pub use config::{check_ladder, BandwidthEstimation, EngineConfig, EngineError};
pub use ladder::RenditionInfo;

/// A datagram that arrived on one of the daemon's sockets.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// Socket it arrived on.
    pub socket: SocketId,
    /// Sender address as the socket saw it (behind FRP: the forwarder).
    pub from: SocketAddr,
    /// Payload.
    pub bytes: &'a [u8],
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Socket to send it from.
    pub socket: SocketId,
    /// Destination.
    pub to: SocketAddr,
    /// Payload.
    pub bytes: Vec<u8>,
}

/// Something the driver must do, from [`Engine::poll_output`].
///
/// Deliberately exhaustive: a driver matches every variant, so a new kind of
/// output is a compile error there instead of something silently dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Send a text frame on a WebSocket.
    Signal {
        /// The connection.
        conn: ConnId,
        /// JSON text.
        text: String,
    },
    /// Ask an avatar's encoder of `codec` and `rendition` for an IDR.
    KeyframeRequest {
        /// The avatar.
        avatar: AvatarId,
        /// Which of its encoders.
        codec: VideoCodec,
        /// Its rendition: 0 the source's own picture, `i + 1` rung `i` of the ladder.
        rendition: u8,
    },
    /// An avatar's rendition gained its first viewer in `codec` (`watched`)
    /// or lost its last one: a source runs that encoder only while watched,
    /// and starts it with an IDR.
    Watched {
        /// The avatar.
        avatar: AvatarId,
        /// The codec those viewers receive.
        codec: VideoCodec,
        /// The rendition they receive (0: the source's own picture).
        rendition: u8,
        /// Whether at least one session now watches it in `codec`.
        watched: bool,
    },
    /// The most an avatar's rendition-0 encoder of `codec` should send: its one viewer's
    /// bandwidth estimate less headroom (`Some`), or no limit beyond its
    /// configured bitrate (`None`: several viewers, none, or no estimate yet).
    /// Emitted when the cap moves by 5 % or more.
    VideoBitrate {
        /// The avatar.
        avatar: AvatarId,
        /// Which of its encoders.
        codec: VideoCodec,
        /// Bits per second, or `None` for the configured bitrate.
        cap_bps: Option<u32>,
    },
    /// A session ended; unless the WebSocket is what closed, the driver closes it.
    SessionClosed {
        /// Its connection.
        conn: ConnId,
        /// Its session id.
        session_id: String,
        /// Why it ended.
        reason: EndReason,
    },
    /// Nothing more to do until this instant (or new input).
    Timeout(Instant),
}

/// What the driver knows of a connection when it opens.
#[derive(Debug, Clone, Default)]
pub struct ConnectInfo {
    /// `?token=` from the WebSocket URL.
    pub token: Option<String>,
    /// Wall-clock time at the upgrade, seconds since the Unix epoch (token expiry).
    pub unix_time: u64,
}

struct Conn {
    url_session_id: SessionId,
    session: Option<SessionKey>,
    info: ConnectInfo,
}

/// The sans-IO core: feed it input with `handle_*`, take output with `poll_output`.
pub struct Engine {
    config: EngineConfig,
    sockets: SocketTable,
    cert: DtlsCert,
    conns: HashMap<ConnId, Conn>,
    /// Boxed: a `Session` (with its `Rtc`) is several KiB, and a map of
    /// inline values keeps peak-concurrency x that size as capacity.
    sessions: HashMap<SessionKey, Box<Session>>,
    avatars: HashMap<AvatarId, Avatar>,
    demux: Demux,
    out: VecDeque<Output>,
    next_key: u64,
    socket_load: Vec<usize>,
    stats: EngineStats,
    last_now: Instant,
}

impl Engine {
    /// Validates the config and generates the DTLS certificate shared by all
    /// sessions; `now` is the engine's first notion of time (it reads no clock).
    pub fn new(config: EngineConfig, now: Instant) -> Result<Self, EngineError> {
        let mut sockets = SocketTable::new(config.sockets.clone()).map_err(EngineError::Address)?;
        if let Some(public) = config.ice_tcp {
            sockets = sockets.with_ice_tcp(public).map_err(EngineError::Address)?;
        }
        config.check(|a| config.avatars.contains(a))?;
        // One certificate for every session: generating one costs ~0.7 ms,
        // which would dominate offer-to-answer time.
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or(EngineError::Certificate)?;
        let avatars = config
            .avatars
            .iter()
            .map(|a| {
                let audio = config.audio_avatars.contains(a);
                let vp8 = config.vp8_avatars.contains(a);
                (
                    a.clone(),
                    Avatar::new(config.keyframe_interval, audio, vp8, config.ladders.of(a)),
                )
            })
            .collect();
        Ok(Engine {
            socket_load: vec![0; sockets.len()],
            sockets,
            cert,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            avatars,
            demux: Demux::new(),
            out: VecDeque::new(),
            next_key: 1,
            stats: EngineStats::default(),
            last_now: now,
            config,
        })
    }

    /// Takes new limits from a reloaded configuration, without touching live
    /// sessions: session caps, SDP size, consent/connect timeouts, keyframe
    /// interval, resend buffer (new sessions), token key, fallback avatar, and the
    /// playout delay (which every viewer's next frame carries).
    /// Sockets and avatars are fixed at start; `config.sockets` and
    /// `config.avatars` are ignored here. On error nothing changes.
    /// Returns the names of the settings that changed.
    pub fn reload_limits(
        &mut self,
        config: &EngineConfig,
    ) -> Result<Vec<&'static str>, EngineError> {
        // Avatars a renderer added at runtime count as configured.
        config.check(|a| self.avatars.contains_key(a))?;
        let old = &self.config;
        let mut changed = Vec::new();
        macro_rules! diff {
            ($($field:ident),*) => {
                $(if old.$field != config.$field {
                    changed.push(stringify!($field));
                })*
            };
        }
        diff!(
            max_sessions,
            max_sessions_per_avatar,
            max_sdp_bytes,
            consent_timeout,
            connect_timeout,
            keyframe_interval,
            resend_buffer_packets,
            fallback_avatar,
            playout_delay
        );
        if old.token_key.is_some() != config.token_key.is_some()
            || matches!((&old.token_key, &config.token_key), (Some(a), Some(b)) if !a.same_key(b))
        {
            changed.push("token_key");
        }
        let c = &mut self.config;
        c.max_sessions = config.max_sessions;
        c.max_sessions_per_avatar = config.max_sessions_per_avatar;
        c.max_sdp_bytes = config.max_sdp_bytes;
        c.consent_timeout = config.consent_timeout;
        c.connect_timeout = config.connect_timeout;
        c.keyframe_interval = config.keyframe_interval;
        c.resend_buffer_packets = config.resend_buffer_packets;
        c.fallback_avatar = config.fallback_avatar.clone();
        c.playout_delay = config.playout_delay;
        c.token_key = config.token_key.clone();
        for t in self
            .avatars
            .values_mut()
            .flat_map(|a| a.video.iter_mut().flatten())
        {
            t.limiter.set_interval(config.keyframe_interval);
        }
        Ok(changed)
    }

    /// Registers a new WebSocket opened at `/ws/{url_session_id}`.
    pub fn open_connection(&mut self, conn: ConnId, url_session_id: SessionId) {
        self.open_connection_with(conn, url_session_id, ConnectInfo::default());
    }

    /// Registers a new WebSocket with its token and the wall-clock time it opened.
    pub fn open_connection_with(
        &mut self,
        conn: ConnId,
        url_session_id: SessionId,
        info: ConnectInfo,
    ) {
        self.conns.insert(
            conn,
            Conn {
                url_session_id,
                session: None,
                info,
            },
        );
    }

    /// Whether a connection has a live session (drivers close idle ones).
    pub fn has_session(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.session.is_some())
    }

    /// Makes the next handling of a session panic, to test that a bug in one session is contained.
    /// Only with the `test-hooks` feature, which this crate's own tests turn on.
    #[cfg(feature = "test-hooks")]
    pub fn poison_session_for_tests(&mut self, session_id: &str) {
        if let Some(s) = self.sessions.values_mut().find(|s| s.id == session_id) {
            s.poisoned = true;
        }
    }

    /// A WebSocket closed: its session (if any) ends and everything it held is freed.
    pub fn close_connection(&mut self, now: Instant, conn: ConnId) {
        self.end_connection(now, conn, EndReason::WebSocketClosed);
    }

    /// Forgets a connection, ending its session (if any) for `reason`: what a
    /// driver calls when a client ends its session another way (WHEP's `DELETE`).
    pub fn end_connection(&mut self, now: Instant, conn: ConnId, reason: EndReason) {
        self.touch(now);
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(key) = c.session {
                self.end_session(now, key, reason);
            }
        }
    }

    /// Ends every session (daemon shutdown); each viewer gets a `bye`.
    pub fn shutdown(&mut self, now: Instant) {
        let keys: Vec<SessionKey> = self.sessions.keys().copied().collect();
        for key in keys {
            self.end_session(now, key, EndReason::Shutdown);
        }
    }

    /// Handles one text frame from a viewer's WebSocket.
    pub fn handle_signal(&mut self, now: Instant, conn: ConnId, text: &str) {
        self.touch(now);
        let result = match signaling::parse_client_message(text) {
            Ok(ClientMessage::Offer(offer)) => {
                self.stats.offers.inc();
                self.accept_offer(now, conn, offer)
            }
            Ok(ClientMessage::ClientStats(v)) => {
                self.store_client_stats(conn, v);
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log::info!("{conn}: refused message: {} ({e})", e.code());
            self.stats.count_error(e.code());
            self.out.push_back(Output::Signal {
                conn,
                text: e.to_json(),
            });
        }
    }

    /// Handles one datagram from a socket.
    pub fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) {
        self.touch(now);
        let key = match self.demux.route(d.socket, d.from, d.bytes) {
            Route::Session(k) => k,
            Route::UnknownUfrag => {
                self.stats.drop_unknown_ufrag.inc();
                return;
            }
            Route::UnknownSource => {
                self.stats.drop_unknown_source.inc();
                return;
            }
            Route::NotWebRtc => {
                self.stats.drop_malformed.inc();
                return;
            }
        };
        let Some(destination) = self.sockets.receive_destination(d.socket) else {
            self.stats.drop_malformed.inc();
            return;
        };
        if !self.sessions.contains_key(&key) {
            return;
        }
        let stripped;
        let bytes = match sctp_guard::strip_application_data(d.bytes) {
            Guarded::Keep(b) => b,
            Guarded::Stripped(rest) => {
                self.stats.drop_dtls_application_data.inc();
                stripped = rest;
                &stripped[..]
            }
            Guarded::Drop => {
                self.stats.drop_dtls_application_data.inc();
                return;
            }
        };
        let proto = self.sockets.protocol(d.socket);
        let Ok(recv) = Receive::new(proto, d.from, destination, bytes) else {
            self.stats.drop_malformed.inc();
            return;
        };
        let is_stun = d.bytes.first().is_some_and(|b| *b < 2);
        self.guarded(now, key, |e| {
            let Some(session) = e.sessions.get_mut(&key) else {
                return;
            };
            session.check_poison();
            if let Err(err) = session.rtc.handle_input(Input::Receive(now, recv)) {
                log::debug!(
                    "session {}: datagram from {} refused: {err}",
                    session.id,
                    d.from
                );
            }
            e.drain_session(now, key, is_stun.then_some(d.from));
        });
    }

    /// Advances time: str0m timers, consent and connect deadlines, delayed keyframe requests.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        let (consent, connect) = (self.config.consent_timeout, self.config.connect_timeout);
        let due: Vec<SessionKey> = self
            .sessions
            .values()
            .filter(|s| s.deadline(consent, connect) <= now)
            .map(|s| s.key)
            .collect();
        for key in due {
            let Some(s) = self.sessions.get_mut(&key) else {
                continue;
            };
            if s.phase == Phase::Negotiated && now >= s.created + connect {
                self.end_session(now, key, EndReason::ConnectTimeout);
                continue;
            }
            if s.phase != Phase::Negotiated && now >= s.last_consent + consent {
                self.end_session(now, key, EndReason::ConsentExpired);
                continue;
            }
            self.guarded(now, key, |e| {
                let Some(s) = e.sessions.get_mut(&key) else {
                    return;
                };
                s.check_poison();
                if let Err(err) = s.rtc.handle_input(Input::Timeout(now)) {
                    log::debug!("session {}: timeout handling failed: {err}", s.id);
                }
                e.drain_session(now, key, None);
            });
        }
        let mut due = Vec::new();
        for (id, a) in self.avatars.iter_mut() {
            for codec in VideoCodec::ALL {
                for (r, t) in a.video[codec.index()].iter_mut().enumerate() {
                    if t.limiter.poll(now) {
                        due.push((id.clone(), codec, r as u8));
                    }
                }
            }
        }
        for (avatar, codec, rendition) in due {
            self.stats.keyframe_requests.inc();
            self.out.push_back(Output::KeyframeRequest {
                avatar,
                codec,
                rendition,
            });
        }
    }

    /// Next thing to do; `Output::Timeout` means drained until that instant.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        Output::Timeout(self.next_deadline())
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Facts about every live session.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions.values().map(|s| s.info()).collect()
    }

    /// Sizes of the demux tables (ufrags, pairs): zero when no session lives.
    pub fn demux_table_sizes(&self) -> (usize, usize) {
        self.demux.table_sizes()
    }

    /// Number of signaling connections the engine knows.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The socket table.
    pub fn sockets(&self) -> &SocketTable {
        &self.sockets
    }

    /// Checks a signaling token for `session_id` and `avatar` at `unix_time`, as an
    /// offer's is checked (any token passes when none is required): what a
    /// driver uses for other requests on a session, such as WHEP's `DELETE`.
    pub fn check_token(
        &self,
        token: Option<&str>,
        session_id: &str,
        avatar: &str,
        unix_time: u64,
    ) -> Result<(), SignalError> {
        let Some(key) = &self.config.token_key else {
            return Ok(());
        };
        let token = token.ok_or(SignalError::Token(TokenError::Missing))?;
        key.verify(token, session_id, avatar, unix_time)
            .map_err(SignalError::Token)
    }

    /// The last `client_stats` message a session's page reported.
    pub fn client_stats(&self, session_id: &str) -> Option<&Value> {
        self.sessions
            .values()
            .find(|s| s.id == session_id)
            .and_then(|s| s.client_stats.as_ref())
    }

    fn touch(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    fn next_deadline(&self) -> Instant {
        let (consent, connect) = (self.config.consent_timeout, self.config.connect_timeout);
        // With nothing scheduled, still wake once a second: cheap, and it
        // bounds the damage of any missed deadline.
        let idle = self.last_now + Duration::from_secs(1);
        let sessions = self.sessions.values().map(|s| s.deadline(consent, connect));
        let avatars = self
            .avatars
            .values()
            .flat_map(|a| a.video.iter().flatten())
            .filter_map(|t| t.limiter.deadline());
        sessions.chain(avatars).fold(idle, Instant::min)
    }

    fn store_client_stats(&mut self, conn: ConnId, v: Value) {
        let key = self.conns.get(&conn).and_then(|c| c.session);
        match key.and_then(|k| self.sessions.get_mut(&k)) {
            Some(s) => {
                log::debug!("session {} client_stats: {v}", s.id);
                s.client_stats = Some(v);
            }
            None => log::debug!("{conn}: client_stats before any session, ignored"),
        }
    }

    /// Runs `f` on one session's behalf; a panic inside ends only that session.
    ///
    /// Nothing a peer sends should panic (that is tested), but if a bug in the
    /// WebRTC stack does, one viewer losing its session beats every viewer
    /// losing the daemon.
    fn guarded(&mut self, now: Instant, key: SessionKey, f: impl FnOnce(&mut Self)) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if result.is_err() {
            self.stats.session_panics.inc();
            let id = self
                .sessions
                .get(&key)
                .map(|s| s.id.clone())
                .unwrap_or_default();
            log::error!(
                "session {id}: handling panicked; the session is dropped, the daemon goes on"
            );
            self.end_session(now, key, EndReason::InternalError);
        }
    }

    fn drain_session(&mut self, now: Instant, key: SessionKey, stun_from: Option<SocketAddr>) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let mut ctx = DrainCtx {
            sockets: &self.sockets,
            demux: &mut self.demux,
            out: &mut self.out,
            stun_from,
            now,
        };
        let fx = s.drain(&mut ctx);
        // str0m hands on REMB even when estimation is off: then nothing listens.
        if self.config.bandwidth_estimation.is_some() {
            if fx.estimate_changed {
                self.estimate_changed(now, key);
            } else if s.probe_check_at.is_some_and(|t| now >= t) {
                let (avatar, codec) = (s.avatar.clone(), s.codec);
                self.probe_for_more(now, key);
                self.update_video_cap(now, &avatar, codec);
            }
        }
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        // Rare (a join or a PLI): the avatar's name is cloned only then.
        if fx.keyframe_wanted || fx.media_started {
            let (avatar, codec, rendition) = (s.avatar.clone(), s.codec, s.rendition);
            let replayed = fx.media_started
                && fx.end.is_none()
                && self.replay_gop(now, key, &avatar, codec, rendition);
            if fx.keyframe_wanted && !replayed {
                self.request_keyframe(now, &avatar, codec, rendition);
            }
        }
        if let Some(reason) = fx.end {
            self.end_session(now, key, reason);
        }
    }

    fn request_keyframe(
        &mut self,
        now: Instant,
        avatar: &AvatarId,
        codec: VideoCodec,
        rendition: u8,
    ) {
        if let Some(a) = self.avatars.get_mut(avatar) {
            if a.track_at(codec, rendition).limiter.request(now) {
                self.stats.keyframe_requests.inc();
                self.out.push_back(Output::KeyframeRequest {
                    avatar: avatar.clone(),
                    codec,
                    rendition,
                });
            }
        }
    }

    fn end_session(&mut self, now: Instant, key: SessionKey, reason: EndReason) {
        let Some(mut s) = self.sessions.remove(&key) else {
            return;
        };
        // Tell the browser at once (RTCP BYE + DTLS close_notify) instead of
        // letting it find out from silence.
        // A session whose handling panicked is not touched again.
        if s.rtc.is_connected() && reason != EndReason::InternalError {
            let _ = s.rtc.close();
            let mut ctx = DrainCtx {
                sockets: &self.sockets,
                demux: &mut self.demux,
                out: &mut self.out,
                stun_from: None,
                now,
            };
            let _ = s.drain(&mut ctx);
        }
        self.demux.remove_session(key, &s.local_ufrag);
        if let Some(load) = self.socket_load.get_mut(s.socket.0) {
            *load = load.saturating_sub(1);
        }
        self.leave_track(&s.avatar, s.codec, s.rendition, key);
        if let Some(r) = s.switch_to {
            self.leave_track(&s.avatar, s.codec, r, key);
        }
        // A survivor left alone goes back to rendition 0 (its estimate caps it there).
        self.rechoose_renditions(now, &s.avatar, s.codec);
        self.update_video_cap(now, &s.avatar, s.codec);
        if let Some(c) = self.conns.get_mut(&s.conn) {
            if c.session == Some(key) {
                c.session = None;
            }
        }
        self.stats.count_ended(reason.code());
        log::info!(
            "session {} ended: reason={} user={} remote={} port={} duration={:.1}s frames_sent={}",
            s.id,
            reason,
            s.user.as_deref().unwrap_or("-"),
            s.remote
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            s.socket,
            now.saturating_duration_since(s.created).as_secs_f64(),
            s.frames_sent
        );
        if reason != EndReason::WebSocketClosed {
            self.out.push_back(Output::Signal {
                conn: s.conn,
                text: signaling::server_bye(reason.code()),
            });
        }
        self.out.push_back(Output::SessionClosed {
            conn: s.conn,
            session_id: s.id,
            reason,
        });
    }
}
