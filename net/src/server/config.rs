//! What the loop is built from: its configuration and the errors of starting it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use portcast_engine::audio::AudioSettings;
use portcast_engine::encoder::EncoderSettings;
use portcast_engine::{AvatarId, EngineConfig};

use crate::capture::CaptureConfig;
use crate::conn::ConnLimits;
use crate::ingest::{IngestConfig, ListenError};
use crate::probe::FrameTiming;
use crate::y4m::{FileSourceSpec, Y4mError};

/// One UDP port: the local port bound, the public address announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPortSpec {
    /// Local port (bound on the bind ip).
    pub local_port: u16,
    /// Public address announced in candidates.
    pub public: SocketAddr,
}

/// An avatar and how its built-in test pattern is encoded.
#[derive(Debug, Clone)]
pub struct AvatarSpec {
    /// Its name.
    pub name: AvatarId,
    /// Encoder settings.
    pub encoder: EncoderSettings,
    /// Fill part of the test pattern with noise so the encoder uses its full bitrate (benchmarks).
    pub busy: bool,
    /// Its voice: the test pattern beeps with every flash, encoded with these settings.
    pub audio: Option<AudioSettings>,
}

/// Builds a fresh configuration when the daemon gets SIGHUP (the daemon
/// re-reads its file, flags and environment); an error keeps the old one.
pub type Reloader = Box<dyn FnMut() -> Result<ServerConfig, String> + Send>;

/// Everything the loop needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address every socket binds to.
    pub bind_ip: IpAddr,
    /// TCP port for HTTP + WebSocket signaling (0 picks a free one).
    pub signal_port: u16,
    /// A listener of its own for ICE-TCP (`engine.ice_tcp` on), when signaling
    /// sits behind an HTTP proxy; `None` (or the signaling port) shares that listener.
    pub ice_tcp_port: Option<u16>,
    /// UDP sockets.
    pub udp_ports: Vec<UdpPortSpec>,
    /// Avatars with built-in sources.
    pub avatars: Vec<AvatarSpec>,
    /// Engine settings (its `sockets` and `avatars` are filled from the above).
    pub engine: EngineConfig,
    /// Most TCP connections at once.
    pub max_connections: usize,
    /// Time allowed to send a complete HTTP request head.
    pub head_timeout: Duration,
    /// Per-connection limits.
    pub limits: ConnLimits,
    /// How long shutdown waits for goodbyes to flush.
    pub shutdown_grace: Duration,
    /// Per-frame timing reports (benchmarks); `None` in the daemon.
    pub frame_probe: Option<SyncSender<FrameTiming>>,
    /// Page origins allowed to open a WebSocket (`Origin` header); empty allows any.
    pub allowed_origins: Vec<String>,
    /// A WebSocket that has not sent a usable offer this long after opening is closed.
    pub idle_timeout: Duration,
    /// Where received offers are written (`--capture-offers`); `None` writes nothing.
    pub capture_offers: Option<CaptureConfig>,
    /// The renderers' ingest socket (`docs/ingest.md`); `None` disables it.
    pub ingest: Option<IngestConfig>,
    /// Avatars played from files (`--source y4m:FILE`).
    pub file_sources: Vec<FileSourceSpec>,
    /// Stop on SIGINT and SIGTERM and reload on SIGHUP (see
    /// [`Server::set_reloader`]): the daemon wants this, in-process tests do
    /// not. The handlers are in place before the signaling port listens, so a
    /// signal sent once the port accepts is never lost (nor fatal).
    pub handle_signals: bool,
    /// The CPU slice the loop thread, and each renderer's reader and voice
    /// threads, ask the scheduler for (see [`crate::sched`]); `None` leaves
    /// the kernel's default.
    pub latency_slice: Option<Duration>,
}

/// The latency-critical threads' scheduler slice unless configured: the kernel's least.
pub const DEFAULT_LATENCY_SLICE: Duration = Duration::from_micros(100);

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            signal_port: 9000,
            ice_tcp_port: None,
            udp_ports: Vec::new(),
            avatars: Vec::new(),
            engine: EngineConfig::default(),
            max_connections: 1024,
            head_timeout: Duration::from_secs(5),
            limits: ConnLimits::default(),
            shutdown_grace: Duration::from_secs(2),
            frame_probe: None,
            allowed_origins: Vec::new(),
            idle_timeout: Duration::from_secs(30),
            capture_offers: None,
            ingest: None,
            file_sources: Vec::new(),
            handle_signals: false,
            latency_slice: Some(DEFAULT_LATENCY_SLICE),
        }
    }
}

/// Errors starting the server.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetError {
    /// A socket could not be bound.
    Bind(SocketAddr, io::Error),
    /// The engine refused the configuration.
    Engine(portcast_engine::EngineError),
    /// A source could not start.
    Source(String, io::Error),
    /// Poll, waker or signal registration failed.
    Io(io::Error),
    /// The offer capture folder is unusable.
    Capture(io::Error),
    /// The ingest socket could not be opened.
    Ingest(ListenError),
    /// A `--source` file cannot be played.
    File(Y4mError),
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Bind(a, e) => write!(f, "cannot bind {a}: {e}"),
            NetError::Engine(e) => write!(f, "{e}"),
            NetError::Source(a, e) => write!(f, "avatar {a}: {e}"),
            NetError::Io(e) => write!(f, "event loop: {e}"),
            NetError::Capture(e) => write!(f, "offer capture: {e}"),
            NetError::Ingest(e) => write!(f, "ingest socket: {e}"),
            NetError::File(e) => write!(f, "source file {e}"),
        }
    }
}

impl std::error::Error for NetError {}

impl From<io::Error> for NetError {
    fn from(e: io::Error) -> Self {
        NetError::Io(e)
    }
}
