//! The event loop: one thread, one mio `Poll`, owning the UDP sockets, the
//! signaling listener and every connection, driving the engine.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use portcast_engine::{AvatarId, ConnId, Datagram, Engine, Output, SocketId, SocketSpec};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::capture::OfferCapture;
use crate::conn::{Conn, ConnEvent};
use crate::ingest::{IngestConfig, IngestCounters, IngestHub};
use crate::metrics::Metrics;
use crate::probe::FrameTiming;
use crate::source::{self, Media, SourceEvent, SourceHandle, CHANNEL_DEPTH};
use crate::udp::UdpPort;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);
const INGEST: Token = Token(3);
const ICE_TCP_LISTENER: Token = Token(4);
const UDP_BASE: usize = 16;
const CONN_BASE: usize = 1 << 20;

/// The viewer page served at `/`.
pub const VIEWER_PAGE: &str = include_str!("../viewer.html");

mod bind;
mod config;
mod conns;
mod ice_tcp;
mod reload;
pub(crate) mod routes;
mod whep;

pub use config::{
    AvatarSpec, NetError, Reloader, ServerConfig, UdpPortSpec, DEFAULT_LATENCY_SLICE,
};

/// A handle that stops a running server from another thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the loop to stop; it says goodbye to viewers and returns.
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
    }
}

/// The bound, ready-to-run daemon.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    /// The ICE-TCP-only listener, when ICE-TCP has a port of its own.
    ice_tcp_listener: Option<TcpListener>,
    udp: Vec<UdpPort>,
    engine: Engine,
    conns: HashMap<Token, Conn>,
    next_conn: usize,
    sources: HashMap<AvatarId, SourceHandle>,
    frames: Receiver<SourceEvent>,
    /// Whether the last `drain_frames` stopped at its bound with media still queued.
    frames_left: bool,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    signals: Option<Signals>,
    reloader: Option<Reloader>,
    capture: OfferCapture,
    /// WHEP sessions and offers in flight (see `whep.rs`).
    whep: whep::Whep,
    /// ICE-TCP connections by the remote address the engine knows them by.
    ice_tcp: HashMap<SocketAddr, Token>,
    ingest: Option<IngestHub>,
    config: ServerConfig,
    recv_buf: Box<[u8]>,
    signal_addr: SocketAddr,
    datagrams_sent: u64,
    /// Connections closed since memory was last handed back (see `release_memory`).
    closed_since_trim: usize,
    last_trim: Instant,
    metrics: Metrics,
}

impl Server {
    /// What SIGHUP calls for a new configuration. Limits, timeouts, origins,
    /// the token key and the fallback avatar take effect at once for new
    /// connections and offers; live sessions are never dropped by a reload.
    /// Sockets, avatars, sources, ingest, capture, renditions and bandwidth
    /// estimation need a restart: a change there is logged and ignored.
    pub fn set_reloader(&mut self, reloader: Reloader) {
        self.reloader = Some(reloader);
    }

    /// The address of the ICE-TCP-only listener, if there is one.
    pub fn ice_tcp_addr(&self) -> Option<SocketAddr> {
        self.ice_tcp_listener.as_ref()?.local_addr().ok()
    }

    /// The address the signaling listener is bound to.
    pub fn signal_addr(&self) -> SocketAddr {
        self.signal_addr
    }

    /// The UDP sockets: (local, public).
    pub fn udp_addrs(&self) -> Vec<SocketSpec> {
        self.engine.sockets().specs().to_vec()
    }

    /// Counters of every source thread.
    pub fn source_counters(&self) -> Vec<(AvatarId, source::SourceCounters)> {
        self.sources
            .iter()
            .map(|(a, h)| (a.clone(), h.counters.clone()))
            .collect()
    }

    /// Datagrams handed to the kernel (or queued) so far.
    pub fn datagrams_sent(&self) -> u64 {
        self.datagrams_sent
    }

    /// The ingest socket's path, when it is enabled.
    pub fn ingest_path(&self) -> Option<&std::path::Path> {
        self.ingest.as_ref().map(IngestHub::path)
    }

    /// Counters over all renderers, when ingest is enabled.
    pub fn ingest_counters(&self) -> Option<IngestCounters> {
        self.ingest.as_ref().map(IngestHub::counters)
    }

    /// A handle to stop the loop from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: self.stop.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Runs until shutdown (signal or handle), then says goodbye and returns.
    pub fn run(mut self) -> Result<(), NetError> {
        if let Some(slice) = self.config.latency_slice {
            match crate::sched::set_thread_slice(slice) {
                Ok(()) => log::info!(
                    "loop thread: scheduler slice {} us, so it gets a core soon after it wakes",
                    slice.as_micros()
                ),
                Err(e) => log::warn!(
                    "loop thread: could not ask for a {} us scheduler slice: {e}",
                    slice.as_micros()
                ),
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut deadline = Instant::now();
        let ports: Vec<String> = self.udp.iter().map(|u| u.local.to_string()).collect();
        log::info!(
            "portcast listening: signaling http://{} (viewer page at /, WebSocket at /ws/{{session_id}}), media udp {}, public {}",
            self.signal_addr,
            ports.join(" "),
            self.engine
                .sockets()
                .specs()
                .iter()
                .map(|s| s.public.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut wait = deadline.saturating_duration_since(now);
            if self.conns.values().any(Conn::reading_head) {
                wait = wait.min(Duration::from_millis(500));
            }
            if self.frames_left {
                // Media left from the last turn (see `drain_frames`): look at the
                // sockets and go on at once.
                wait = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let now = Instant::now();
            let busy_since = now;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(now, false),
                    ICE_TCP_LISTENER => self.accept(now, true),
                    INGEST => {
                        if let Some(i) = self.ingest.as_mut() {
                            i.accept();
                        }
                    }
                    WAKER => {}
                    SIGNALS => self.on_signal(),
                    Token(t) if (UDP_BASE..UDP_BASE + self.udp.len()).contains(&t) => {
                        let i = t - UDP_BASE;
                        if ev.is_writable() {
                            self.udp[i].flush();
                        }
                        if ev.is_readable() {
                            self.read_udp(now, i);
                        }
                    }
                    token => self.on_conn_ready(now, token, ev.is_writable()),
                }
            }
            if let Some(i) = self.ingest.as_mut() {
                i.poll(now, &mut self.engine);
            }
            self.drain_frames(now);
            if now >= deadline {
                self.engine.handle_timeout(now);
            }
            self.expire_heads(now);
            deadline = self.drain_engine();
            self.reap_conns(now);
            if !events.is_empty() {
                self.metrics
                    .loop_iteration
                    .observe(busy_since.elapsed().as_secs_f64());
            }
        }
        self.shutdown();
        Ok(())
    }

    fn on_signal(&mut self) {
        if let Some(s) = self.signals.as_mut() {
            let pending: Vec<i32> = s.pending().collect();
            for sig in pending {
                if sig == SIGHUP {
                    self.reload();
                } else {
                    log::info!("signal {sig} received: shutting down");
                    self.stop.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    fn read_udp(&mut self, now: Instant, i: usize) {
        let socket = SocketId(i);
        loop {
            match self.udp[i].socket.recv_from(&mut self.recv_buf) {
                Ok((n, from)) => {
                    self.udp[i].counters.received.inc();
                    self.udp[i].counters.received_bytes.inc_by(n as u64);
                    let bytes = &self.recv_buf[..n];
                    self.engine.handle_datagram(
                        now,
                        Datagram {
                            socket,
                            from,
                            bytes,
                        },
                    );
                    // Send replies as they come so a long burst does not pile up output.
                    self.drain_engine();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP port unreachable from an earlier send shows up here.
                    log::debug!("udp {}: recv: {e}", self.udp[i].local);
                }
            }
        }
    }

    /// Fans out what the sources sent, at most [`CHANNEL_DEPTH`] items a turn:
    /// a loop that cannot keep up (hundreds of viewers on a slow core) would
    /// otherwise find the channel full again each time it empties it and
    /// never read a socket, answer an offer or see a shutdown (seen: the
    /// fanout bench at 400 viewers without estimation never stopped).
    fn drain_frames(&mut self, now: Instant) {
        self.frames_left = true;
        for _ in 0..CHANNEL_DEPTH {
            let (avatar, media) = match self.frames.try_recv() {
                Ok(event) => event,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                    self.frames_left = false;
                    return;
                }
            };
            let dequeued_at = Instant::now();
            let sent_before = self.datagrams_sent;
            let at = dequeued_at.max(now);
            // (t0, t1) of the probe: captured and encoded for a picture; for
            // audio both are when the packet could first go out.
            let (t0, t1, index, keyframe, bytes, audio) = match &media {
                Media::Video(au) => {
                    self.engine.handle_access_unit(at, &avatar, au);
                    let (t0, t1) = (au.captured_at, au.encoded_at);
                    self.metrics
                        .encode
                        .observe(t1.saturating_duration_since(t0).as_secs_f64());
                    (t0, t1, au.frame_index, au.keyframe, au.data.len(), false)
                }
                Media::Audio(frame) => {
                    self.engine.handle_audio(at, &avatar, frame);
                    let t = frame.ready_at;
                    (t, t, frame.rtp_time, false, frame.data.len(), true)
                }
            };
            self.pump_engine();
            let written_at = Instant::now();
            self.flush_udp();
            let sent_at = Instant::now();
            let datagrams = self.datagrams_sent - sent_before;
            if datagrams > 0 {
                let histogram = if audio {
                    &self.metrics.audio_to_packet
                } else {
                    &self.metrics.frame_to_packet
                };
                histogram.observe(sent_at.saturating_duration_since(t0).as_secs_f64());
            }
            if let Some(probe) = &self.config.frame_probe {
                let _ = probe.try_send(FrameTiming {
                    avatar,
                    frame_index: index,
                    keyframe,
                    bytes,
                    captured_at: t0,
                    encoded_at: t1,
                    dequeued_at,
                    written_at,
                    sent_at,
                    sent_wall: SystemTime::now(),
                    datagrams,
                    audio,
                });
            }
        }
    }

    /// Carries out the engine's output and flushes the UDP queues; returns its next deadline.
    fn drain_engine(&mut self) -> Instant {
        let at = self.pump_engine();
        self.flush_udp();
        at
    }

    /// Hands every queued datagram to the kernel, in batches per socket.
    fn flush_udp(&mut self) {
        for port in self.udp.iter_mut() {
            port.flush();
        }
    }

    /// Carries out the engine's output (datagrams are queued, see
    /// [`flush_udp`](Self::flush_udp)); returns its next deadline.
    fn pump_engine(&mut self) -> Instant {
        loop {
            match self.engine.poll_output() {
                Output::Timeout(at) => return at,
                Output::Transmit(t) => {
                    if self.ice_tcp_send(&t) {
                        continue;
                    }
                    if let Some(port) = self.udp.get_mut(t.socket.0) {
                        port.send(t.to, t.bytes);
                        self.datagrams_sent += 1;
                    }
                }
                Output::Signal { conn, text } => {
                    if self.whep_reply(conn, &text) {
                        continue;
                    }
                    if let Some(c) = self.conns.get_mut(&Token(conn.0 as usize)) {
                        c.send_text(text);
                    }
                }
                Output::KeyframeRequest {
                    avatar,
                    codec,
                    rendition,
                } => {
                    if let Some(s) = self.sources.get(&avatar) {
                        s.request_keyframe(codec, rendition);
                    } else if let Some(i) = &self.ingest {
                        i.request_keyframe(&avatar, codec, rendition);
                    }
                }
                Output::Watched {
                    avatar,
                    codec,
                    rendition,
                    watched,
                } => {
                    // Built-in sources run an encoder per watched codec and
                    // rendition; a renderer's H.264 keeps its own pace, and
                    // the rest run only while watched.
                    if let Some(s) = self.sources.get(&avatar) {
                        s.set_watched(codec, rendition, watched);
                    } else if let Some(i) = &self.ingest {
                        i.set_watched(&avatar, codec, rendition, watched);
                    }
                }
                Output::VideoBitrate {
                    avatar,
                    codec,
                    cap_bps,
                } => {
                    // An encoder the daemon runs follows its lone viewer's
                    // estimate; a renderer's own H.264 keeps its own rate.
                    if let Some(s) = self.sources.get(&avatar) {
                        s.set_bitrate_cap(codec, cap_bps);
                    } else if let Some(i) = &self.ingest {
                        i.set_bitrate_cap(&avatar, codec, cap_bps);
                    }
                }
                Output::SessionClosed { conn, reason, .. } => {
                    if self.whep_closed(Instant::now(), conn, reason.code()) {
                        continue;
                    }
                    if let Some(c) = self.conns.get_mut(&Token(conn.0 as usize)) {
                        c.close();
                    }
                }
            }
        }
    }

    fn shutdown(&mut self) {
        let now = Instant::now();
        log::info!(
            "stopping: {} sessions, {} connections",
            self.engine.session_count(),
            self.conns.len()
        );
        let _ = self.poll.registry().deregister(&mut self.listener);
        if let Some(l) = self.ice_tcp_listener.as_mut() {
            let _ = self.poll.registry().deregister(l);
        }
        self.engine.shutdown(now);
        self.drain_engine();
        let until = now + self.config.shutdown_grace;
        let mut events = Events::with_capacity(256);
        // Give goodbyes and close frames a bounded time to leave.
        while Instant::now() < until
            && (self.conns.values().any(|c| !c.is_done())
                || self.udp.iter().any(|u| u.pending() > 0))
        {
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(20)));
            for u in self.udp.iter_mut() {
                u.flush();
            }
            let tokens: Vec<Token> = self.conns.keys().copied().collect();
            for t in tokens {
                self.on_conn_ready(Instant::now(), t, true);
            }
        }
        for s in self.sources.values_mut() {
            s.stop();
        }
        if let Some(i) = self.ingest.as_mut() {
            i.stop();
        }
        log::info!("stopped");
    }
}
