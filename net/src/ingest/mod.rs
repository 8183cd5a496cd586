//! Frames pushed by GPU renderers over a local Unix-domain socket.
//!
//! A renderer connects to the ingest socket, registers an avatar id with its
//! format (raw I420, RGB24, BGRA, or pre-encoded H.264), and pushes frames;
//! viewers whose offer names that avatar watch it. The wire format lives in
//! [`wire`] (reference: `docs/ingest.md`), a blocking client for Rust programs
//! in [`client`].
//!
//! Threads: the mio loop accepts connections (it owns the listener) and never
//! reads them; each renderer gets a reader thread (`renderer.rs`) and an
//! encoder thread (`renderer/worker.rs`), which hand access units to the loop
//! through the same channel and `Waker` as the built-in sources. Registration reaches the
//! engine through [`IngestHub::poll`], on the loop thread.
//!
//! An avatar id, once registered, stays known to the engine until the daemon
//! exits: when its renderer disconnects, viewers keep their sessions and see
//! the last picture; new offers for it are accepted and start when a renderer
//! registers the id again, with an IDR.

pub mod client;
pub mod convert;
mod renderer;
pub mod slot;
pub mod voice;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UnixListener;
use mio::{Interest, Registry, Token, Waker};
use portcast_engine::audio::AudioSettings;
use portcast_engine::{labels, AvatarId, Engine, Labels, Ladders, VideoCodec};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::source::{EncoderDemand, SourceEvent};
use slot::Slot;
use wire::WireError;

/// Where the socket goes when the operator does not say.
pub const DEFAULT_SOCKET_PATH: &str = "/run/portcast/ingest.sock";
/// Largest frame payload accepted unless configured: a 1080p BGRA frame is 8.3 MB, 4K I420 12.4 MB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;

/// How the ingest socket is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// Path of the Unix-domain socket.
    pub path: PathBuf,
    /// Largest frame payload, in bytes.
    pub max_frame_bytes: usize,
    /// Most renderers connected at once.
    pub max_renderers: usize,
    /// Once a message has started, the rest must arrive within this time.
    pub body_timeout: Duration,
    /// openh264 threads per raw-format renderer.
    pub encoder_threads: u16,
    /// Opus settings for PCM audio whose AUDIO_FORMAT leaves them to the daemon.
    pub audio: AudioSettings,
    /// The scheduler slice each renderer's reader and voice threads ask for
    /// (see [`crate::sched`]); the server sets its own here.
    pub latency_slice: Option<std::time::Duration>,
    /// The lower renditions each avatar's raw pictures are also encoded in,
    /// while watched (the server sets the engine's here).
    pub ladders: Ladders,
}

impl IngestConfig {
    /// Defaults for a socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        IngestConfig {
            path: path.into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_renderers: 64,
            body_timeout: Duration::from_secs(3),
            encoder_threads: 1,
            audio: AudioSettings::default(),
            latency_slice: None,
            ladders: Ladders::default(),
        }
    }
}

/// Why the ingest socket could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenError {
    /// The folder for the socket could not be created.
    CreateDir(PathBuf, io::Error),
    /// Something that is not a socket is at the path; it is left alone.
    NotASocket(PathBuf),
    /// Another process (another portcast?) is accepting on that socket.
    InUse(PathBuf),
    /// Binding or registering the socket failed.
    Bind(PathBuf, io::Error),
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::CreateDir(p, e) => {
                write!(f, "cannot create the folder of {}: {e}", p.display())
            }
            ListenError::NotASocket(p) => write!(
                f,
                "{} exists and is not a socket; remove it or choose another --ingest-socket",
                p.display()
            ),
            ListenError::InUse(p) => write!(
                f,
                "{} is in use by another running process; stop it or choose another --ingest-socket",
                p.display()
            ),
            ListenError::Bind(p, e) => write!(f, "cannot listen on {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ListenError {}

/// Counters over all renderers, or over one avatar's renderers; readable
/// from any thread (clones share the values). [`crate::metrics::Metrics::ingest`]
/// makes the hub's part of `/metrics`, and each avatar's through [`IngestMetrics`].
#[derive(Debug, Clone, Default)]
pub struct IngestCounters {
    /// Renderers whose registration was accepted.
    pub registered: Counter,
    /// Connections closed for breaking the protocol or being refused.
    pub protocol_errors: Counter,
    /// Frames read completely from renderers.
    pub frames_received: Counter,
    /// Raw frames replaced in the slot by a newer one before the encoder took them.
    pub dropped_newest_wins: Counter,
    /// Access units dropped because the loop's channel was full.
    pub dropped_loop_behind: Counter,
    /// Pass-through frames dropped while waiting for an IDR after a drop.
    pub dropped_waiting_idr: Counter,
    /// Raw frames encoded into a picture.
    pub frames_encoded: Counter,
    /// Raw frames the encoder's rate control skipped.
    pub encoder_skips: Counter,
    /// Access units handed to the loop.
    pub frames_forwarded: Counter,
    /// KEYFRAME_REQUEST messages sent to pass-through renderers.
    pub keyframe_requests_sent: Counter,
    /// Time spent converting RGB24/BGRA to I420, seconds.
    pub convert_seconds: Counter<f64, AtomicU64>,
    /// AUDIO messages read.
    pub audio_chunks_received: Counter,
    /// Opus packets handed to the loop.
    pub audio_frames_forwarded: Counter,
    /// Audio chunks dropped: over the queue's bound.
    pub audio_dropped_queue_full: Counter,
    /// Timestamps that went back in time (the audio chunk is dropped, the
    /// video frame timed by its arrival).
    pub timestamps_back: Counter,
    /// Audio chunks dropped: an Opus packet that does not parse.
    pub audio_dropped_bad_opus: Counter,
    /// Opus packets dropped because the loop's channel was full.
    pub audio_dropped_loop_behind: Counter,
    /// FLUSH messages (barge-in).
    pub flushes: Counter,
    /// Audio chunks and raw frames a FLUSH dropped.
    pub flushed: Counter,
}

impl IngestCounters {
    pub(crate) fn add(&self, stat: Stat, n: u64) {
        let counter = match stat {
            Stat::ProtocolErrors => &self.protocol_errors,
            Stat::FramesReceived => &self.frames_received,
            Stat::DroppedNewestWins => &self.dropped_newest_wins,
            Stat::DroppedLoopBehind => &self.dropped_loop_behind,
            Stat::DroppedWaitingIdr => &self.dropped_waiting_idr,
            Stat::FramesEncoded => &self.frames_encoded,
            Stat::EncoderSkips => &self.encoder_skips,
            Stat::FramesForwarded => &self.frames_forwarded,
            Stat::KeyframeRequestsSent => &self.keyframe_requests_sent,
            Stat::AudioChunksReceived => &self.audio_chunks_received,
            Stat::AudioFramesForwarded => &self.audio_frames_forwarded,
            Stat::AudioDroppedQueueFull => &self.audio_dropped_queue_full,
            Stat::TimestampBack => &self.timestamps_back,
            Stat::AudioDroppedBadOpus => &self.audio_dropped_bad_opus,
            Stat::AudioDroppedLoopBehind => &self.audio_dropped_loop_behind,
            Stat::Flushes => &self.flushes,
            Stat::Flushed => &self.flushed,
            Stat::ConvertMicros => {
                self.convert_seconds.inc_by(n as f64 / 1e6);
                return;
            }
        };
        counter.inc_by(n);
    }

    /// Frames lost on the way, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_newest_wins.get()
            + self.dropped_loop_behind.get()
            + self.dropped_waiting_idr.get()
    }
}

/// The hub's counters and how it makes each avatar's: `/metrics` families
/// labelled by avatar, or unregistered counters (tests, benches).
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// Over all renderers.
    pub hub: IngestCounters,
    /// `ingest_avatar_frames{avatar, stage}`.
    pub avatar_frames: Family<Labels, Counter>,
    /// `ingest_avatar_drops{avatar, reason}`.
    pub avatar_drops: Family<Labels, Counter>,
}

impl IngestMetrics {
    /// The counters of one avatar id, children of the two families (counters
    /// `/metrics` does not show per avatar are its own).
    pub(crate) fn for_avatar(&self, avatar: &AvatarId) -> IngestCounters {
        let a = avatar.as_str();
        let frames = |stage| {
            self.avatar_frames
                .get_or_create_owned(&labels(&[("avatar", a), ("stage", stage)]))
        };
        let drops = |reason| {
            self.avatar_drops
                .get_or_create_owned(&labels(&[("avatar", a), ("reason", reason)]))
        };
        IngestCounters {
            frames_received: frames("received"),
            frames_encoded: frames("encoded"),
            frames_forwarded: frames("forwarded"),
            dropped_newest_wins: drops("newest_wins"),
            dropped_loop_behind: drops("loop_behind"),
            dropped_waiting_idr: drops("waiting_idr"),
            encoder_skips: drops("encoder_skip"),
            ..IngestCounters::default()
        }
    }
}

/// Avatar ids whose renderers get counters of their own in `/metrics`.
pub const MAX_TRACKED_AVATARS: usize = 256;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Stat {
    ProtocolErrors,
    FramesReceived,
    DroppedNewestWins,
    DroppedLoopBehind,
    DroppedWaitingIdr,
    FramesEncoded,
    EncoderSkips,
    FramesForwarded,
    KeyframeRequestsSent,
    ConvertMicros,
    AudioChunksReceived,
    AudioFramesForwarded,
    AudioDroppedQueueFull,
    TimestampBack,
    AudioDroppedBadOpus,
    AudioDroppedLoopBehind,
    Flushes,
    Flushed,
}

enum HubEvent {
    Registered(AvatarId),
    Left(AvatarId),
    /// The avatar's renderer announced audio: offers from now on get it.
    Speaks(AvatarId),
    /// The avatar's renderer sends raw pictures (`true`, so the daemon can also
    /// encode VP8 from them) or its own H.264 (`false`).
    Raw(AvatarId, bool),
}

struct Live {
    conn: u64,
    slot: Arc<Slot>,
    /// Per codec, whether a viewer watches: the renderer's encoder thread runs VP8 only then.
    watched: Arc<EncoderDemand>,
}

/// State shared by the hub (loop thread) and every renderer thread.
pub(crate) struct Shared {
    pub(crate) config: IngestConfig,
    pub(crate) frames: SyncSender<SourceEvent>,
    pub(crate) waker: Arc<Waker>,
    live: Mutex<HashMap<AvatarId, Live>>,
    reserved: HashSet<AvatarId>,
    events: Mutex<Vec<HubEvent>>,
    metrics: IngestMetrics,
    per_avatar: Mutex<HashMap<AvatarId, IngestCounters>>,
    epoch: Instant,
    stop: AtomicBool,
}

impl Shared {
    /// Claims `avatar` for connection `conn`, or says why not.
    pub(crate) fn claim(
        &self,
        avatar: &AvatarId,
        conn: u64,
        slot: Arc<Slot>,
        watched: Arc<EncoderDemand>,
    ) -> Result<(), WireError> {
        if self.reserved.contains(avatar) {
            return Err(WireError::AvatarReserved(avatar.to_string()));
        }
        {
            let mut live = lock(&self.live);
            if live.contains_key(avatar) {
                return Err(WireError::AvatarLive(avatar.to_string()));
            }
            live.insert(
                avatar.clone(),
                Live {
                    conn,
                    slot,
                    watched,
                },
            );
        }
        self.metrics.hub.registered.inc();
        self.event(HubEvent::Registered(avatar.clone()));
        Ok(())
    }

    /// Connection `conn` is gone: `avatar` may be registered again.
    pub(crate) fn release(&self, avatar: &AvatarId, conn: u64) {
        let mut live = lock(&self.live);
        if live.get(avatar).is_some_and(|l| l.conn == conn) {
            live.remove(avatar);
        }
        drop(live);
        self.event(HubEvent::Left(avatar.clone()));
    }

    /// RTP time of a frame that arrived at `at`, on one clock for the whole daemon
    /// so a renderer that reconnects continues the timeline instead of restarting it.
    pub(crate) fn rtp_time(&self, at: Instant) -> u64 {
        self.rtp_time_at(at, 90_000)
    }

    /// RTP time of instant `at` in a `clock` Hz clock, on the daemon's one epoch.
    pub(crate) fn rtp_time_at(&self, at: Instant, clock: u32) -> u64 {
        (at.saturating_duration_since(self.epoch).as_nanos() * u128::from(clock) / 1_000_000_000)
            as u64
    }

    /// `avatar` speaks (its renderer sent AUDIO_FORMAT).
    pub(crate) fn speaks(&self, avatar: &AvatarId) {
        self.event(HubEvent::Speaks(avatar.clone()));
    }

    /// `avatar`'s renderer now sends raw pictures (`raw`) or its own H.264.
    pub(crate) fn raw(&self, avatar: &AvatarId, raw: bool) {
        self.event(HubEvent::Raw(avatar.clone(), raw));
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self, stat: Stat) {
        self.add(stat, 1);
    }

    pub(crate) fn add(&self, stat: Stat, n: u64) {
        self.metrics.hub.add(stat, n);
    }

    /// The counters of one avatar's renderers (kept across reconnects), or
    /// `None` once [`MAX_TRACKED_AVATARS`] ids have been seen: renderers pick
    /// their ids, so the table is bounded; the hub-wide counters still count.
    pub(crate) fn avatar_counters(&self, avatar: &AvatarId) -> Option<IngestCounters> {
        let mut map = lock(&self.per_avatar);
        if let Some(c) = map.get(avatar) {
            return Some(c.clone());
        }
        if map.len() >= MAX_TRACKED_AVATARS {
            return None;
        }
        let c = self.metrics.for_avatar(avatar);
        map.insert(avatar.clone(), c.clone());
        Some(c)
    }

    fn event(&self, e: HubEvent) {
        lock(&self.events).push(e);
        let _ = self.waker.wake();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a few map operations: a panic inside one
    // leaves the data usable, so keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Connection {
    stream: std::os::unix::net::UnixStream,
    thread: JoinHandle<()>,
}

/// The ingest socket and its renderers, driven from the loop thread.
pub struct IngestHub {
    listener: UnixListener,
    shared: Arc<Shared>,
    conns: Vec<Connection>,
    next_conn: u64,
}

impl IngestHub {
    /// Opens the socket (replacing a stale one left by a crash) and registers it with the loop.
    ///
    /// `reserved` are avatar ids of built-in sources, which renderers may not take.
    pub fn bind(
        config: IngestConfig,
        reserved: impl IntoIterator<Item = AvatarId>,
        frames: SyncSender<SourceEvent>,
        waker: Arc<Waker>,
        metrics: IngestMetrics,
        registry: &Registry,
        token: Token,
    ) -> Result<IngestHub, ListenError> {
        let path = config.path.clone();
        prepare_path(&path)?;
        let mut listener =
            UnixListener::bind(&path).map_err(|e| ListenError::Bind(path.clone(), e))?;
        registry
            .register(&mut listener, token, Interest::READABLE)
            .map_err(|e| ListenError::Bind(path.clone(), e))?;
        log::info!(
            "ingest socket {} (frames up to {} bytes)",
            path.display(),
            config.max_frame_bytes
        );
        Ok(IngestHub {
            listener,
            shared: Arc::new(Shared {
                config,
                frames,
                waker,
                live: Mutex::new(HashMap::new()),
                reserved: reserved.into_iter().collect(),
                events: Mutex::new(Vec::new()),
                metrics,
                per_avatar: Mutex::new(HashMap::new()),
                epoch: Instant::now(),
                stop: AtomicBool::new(false),
            }),
            conns: Vec::new(),
            next_conn: 1,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.shared.config.path
    }

    /// The counters of all renderers.
    pub fn counters(&self) -> IngestCounters {
        self.shared.metrics.hub.clone()
    }

    /// Accepts every pending connection and starts its threads (the listener was readable).
    pub fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.start(stream.into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("ingest accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn start(&mut self, stream: std::os::unix::net::UnixStream) {
        self.reap();
        let conn = self.next_conn;
        self.next_conn += 1;
        if stream.set_nonblocking(false).is_err() {
            return;
        }
        if self.conns.len() >= self.shared.config.max_renderers {
            let e = WireError::TooManyRenderers(self.conns.len());
            log::warn!("ingest renderer #{conn} refused: {e}");
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = (&stream).write_all(&wire::refused(e.code(), &e.to_string()));
            return;
        }
        let Ok(handle) = stream.try_clone() else {
            return;
        };
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ingest-read-{conn}"))
            .spawn(move || renderer::serve(stream, shared, conn));
        match spawned {
            Ok(thread) => self.conns.push(Connection {
                stream: handle,
                thread,
            }),
            Err(e) => log::warn!("ingest renderer #{conn}: cannot start its thread: {e}"),
        }
    }

    /// Applies registrations to the engine (on the loop thread) and reaps finished connections.
    pub fn poll(&mut self, now: Instant, engine: &mut Engine) {
        let events = std::mem::take(&mut *lock(&self.shared.events));
        for e in events {
            match e {
                HubEvent::Registered(avatar) => {
                    if !engine.add_avatar(avatar.clone()) {
                        // Back under the same id: its viewers wait for the new stream's IDR.
                        engine.restart_avatar(now, &avatar);
                    }
                }
                HubEvent::Left(avatar) => {
                    log::info!("avatar {avatar}: renderer gone, viewers keep the last picture");
                }
                HubEvent::Speaks(avatar) => engine.set_avatar_audio(&avatar, true),
                // Raw pictures can be encoded as VP8 too; a renderer's own H.264 cannot.
                HubEvent::Raw(avatar, raw) => engine.set_avatar_vp8(&avatar, raw),
            }
        }
        self.reap();
    }

    /// Starts (`true`) or stops the `codec` encoding of `avatar`'s renderer, if one feeds it now.
    /// The renderer's own H.264 (or the daemon's H.264 of its raw pictures) runs regardless;
    /// the renderer is told (WATCHED) when the avatar gains its first viewer or loses its last.
    pub fn set_watched(&self, avatar: &AvatarId, codec: VideoCodec, rendition: u8, watched: bool) {
        if let Some(l) = lock(&self.shared.live).get(avatar) {
            let before = l.watched.any();
            l.watched.set_at(codec, rendition, watched);
            if l.watched.any() != before {
                l.slot.watched_changed();
            }
        }
    }

    /// Caps the `codec` encoder the daemon runs for `avatar`'s renderer (raw
    /// pictures only; a renderer's own H.264 is not retuned), if one feeds it now.
    pub fn set_bitrate_cap(&self, avatar: &AvatarId, codec: VideoCodec, cap_bps: Option<u32>) {
        if let Some(l) = lock(&self.shared.live).get(avatar) {
            l.watched.set_cap(codec, cap_bps);
        }
    }

    /// Forwards a viewer's keyframe request: to the encoder of `codec` and
    /// `rendition` the daemon runs for raw pictures, or to the renderer for
    /// its own H.264; false if no renderer feeds `avatar` now.
    pub fn request_keyframe(&self, avatar: &AvatarId, codec: VideoCodec, rendition: u8) -> bool {
        match lock(&self.shared.live).get(avatar) {
            Some(l) => {
                l.watched.request_keyframe(codec, rendition);
                l.slot.request_keyframe();
                true
            }
            None => false,
        }
    }

    /// Renderers currently feeding an avatar.
    pub fn live_renderers(&self) -> usize {
        lock(&self.shared.live).len()
    }

    /// Whether a renderer currently feeds `avatar`.
    pub fn is_live(&self, avatar: &AvatarId) -> bool {
        lock(&self.shared.live).contains_key(avatar)
    }

    /// Closes every renderer connection, waits for their threads and removes the socket.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for c in &self.conns {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        for c in self.conns.drain(..) {
            let _ = c.thread.join();
        }
        let _ = std::fs::remove_file(&self.shared.config.path);
    }

    fn reap(&mut self) {
        let (done, running): (Vec<_>, Vec<_>) =
            self.conns.drain(..).partition(|c| c.thread.is_finished());
        self.conns = running;
        for c in done {
            let _ = c.thread.join();
        }
    }
}

impl Drop for IngestHub {
    fn drop(&mut self) {
        if !self.shared.stopping() {
            self.stop();
        }
    }
}

/// The socket path used when the operator names none: [`DEFAULT_SOCKET_PATH`] when its
/// folder is writable, else `portcast-ingest.sock` beside the config file.
pub fn default_socket_path(config_file: Option<&Path>) -> Result<PathBuf, String> {
    let default = PathBuf::from(DEFAULT_SOCKET_PATH);
    let dir_error = match default.parent().map(writable_dir) {
        Some(Ok(())) | None => return Ok(default),
        Some(Err(e)) => e,
    };
    if let Some(dir) = config_file.and_then(Path::parent) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        return Ok(dir.join("portcast-ingest.sock"));
    }
    Err(format!(
        "--ingest-socket: the default {DEFAULT_SOCKET_PATH} cannot be used ({dir_error}) and there is \
         no --config to put it beside; pass --ingest-socket PATH, or --ingest-socket off"
    ))
}

/// Creates `dir` if needed and proves a file can be made in it.
fn writable_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let probe = dir.join(format!(".portcast-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Makes `path` bindable: creates its folder, removes a stale socket, refuses anything else.
fn prepare_path(path: &Path) -> Result<(), ListenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ListenError::CreateDir(path.to_path_buf(), e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ListenError::InUse(path.to_path_buf()));
            }
            // Nobody accepts on it: left behind by a daemon that did not exit cleanly.
            std::fs::remove_file(path).map_err(|e| ListenError::Bind(path.to_path_buf(), e))
        }
        Ok(_) => Err(ListenError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ListenError::Bind(path.to_path_buf(), e)),
    }
}

#[cfg(test)]
impl Shared {
    /// A hub that hands its media to `frames`, with a waker on the returned poll.
    pub(crate) fn for_test(frames: SyncSender<SourceEvent>) -> (Shared, mio::Poll) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let shared = Shared {
            config: IngestConfig::new("/nonexistent/portcast-test.sock"),
            frames,
            waker,
            live: Mutex::new(HashMap::new()),
            reserved: HashSet::new(),
            events: Mutex::new(Vec::new()),
            metrics: IngestMetrics::default(),
            per_avatar: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
        };
        (shared, poll)
    }
}

#[cfg(test)]
mod tests;
