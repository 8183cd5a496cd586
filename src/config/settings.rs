//! Every single-valued setting, declared once: its file key (the field name), flag,
//! environment variable, default, range and help line.
//!
//! To add a setting, add a field here and use it where it applies (`src/main.rs` hands
//! settings to the engine and the server). `config::load` layers it (defaults < file <
//! flags < environment), `--help` lists it, and errors name it, with no other change.
//! Settings made of several values (the UDP range, the port map, allowed origins and the
//! avatar list) are read in `config/mod.rs`, because their file form differs from their
//! flag form.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Args;
use portcast_engine::AvatarId;

use super::read::{Avatar, IngestSocket, IngestSocketText, Int, Ip, LogFormat, LogFormatText};
use super::read::{Ladder, LadderText, NonEmptyPath, OpusFrameMs, Port, Switch};

/// The daemon's default public address: viewers on this machine.
pub const DEFAULT_PUBLIC_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The default bind address: every interface.
pub const DEFAULT_BIND_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// The most viewer sessions a daemon may be configured for.
pub const MAX_SESSIONS: i64 = 10_000;

// Single-valued settings, resolved from every layer (`config::load`). The field name is
// the config-file key; `long` is the flag and `env` the variable. (`//`, not `///`: clap
// would show a doc comment here as the about text of `portcast --help`.)
#[allow(missing_docs)] // the comment above documents it
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Settings {
    /// Address announced in ICE candidates; 0.0.0.0 and :: are refused
    #[arg(long = "public-ip", env = "PORTCAST_PUBLIC_IP", value_name = "IP",
          default_value_t = DEFAULT_PUBLIC_IP, value_parser = Ip { announced: true })]
    pub webrtc_public_ip: IpAddr,

    /// Address the signaling TCP listener and the UDP sockets bind
    #[arg(long, env = "PORTCAST_BIND_IP", value_name = "IP",
          default_value_t = DEFAULT_BIND_IP, value_parser = Ip { announced: false })]
    pub bind_ip: IpAddr,

    /// TCP port for HTTP and WebSocket signaling
    #[arg(long, env = "PORTCAST_SIGNAL_PORT", value_name = "PORT",
          default_value_t = 9000, value_parser = Port)]
    pub signal_port: u16,

    /// Public TCP port of a passive ICE-TCP candidate added to every answer (RFC 6544), for viewers whose network blocks UDP: the port forwarded to the ICE-TCP listener (e.g. 10110, forwarded to --signal-port) [default: --ice-tcp-port; off when neither is set]
    #[arg(long, env = "PORTCAST_ICE_TCP_PUBLIC_PORT", value_name = "PORT", value_parser = Port)]
    pub ice_tcp_public_port: Option<u16>,

    /// Local TCP port of a listener for ICE-TCP only, for deployments with an HTTP proxy in front of signaling (turns ICE-TCP on) [default: ICE-TCP shares the --signal-port listener]
    #[arg(long, env = "PORTCAST_ICE_TCP_PORT", value_name = "PORT", value_parser = Port)]
    pub ice_tcp_port: Option<u16>,

    /// Maximum concurrent viewer sessions, 1-10000
    #[arg(long, env = "PORTCAST_MAX_SESSIONS", value_name = "N",
          default_value_t = 200, value_parser = Int::<usize>::count(1, MAX_SESSIONS))]
    pub max_sessions: usize,

    /// Seconds without STUN consent before a viewer's session ends, 1-86400
    // Bounded so the network loop can add the timeout to an `Instant` without overflowing.
    #[arg(long, env = "PORTCAST_CONSENT_TIMEOUT_SECS", value_name = "SECS",
          default_value_t = 30, value_parser = Int::<u64>::seconds(1, 86_400))]
    pub consent_timeout_secs: u64,

    /// Avatar served for an offer naming an unknown avatar_id [default: none, error "unknown_avatar"]
    #[arg(long, env = "PORTCAST_FALLBACK_AVATAR", value_name = "NAME", value_parser = Avatar)]
    pub fallback_avatar: Option<AvatarId>,

    /// Write every webrtc_offer message received to DIR, one file each, for `portcast replay` [default: off]
    #[arg(long = "capture-offers", value_name = "DIR",
          value_parser = NonEmptyPath { what: "folder name" })]
    pub capture_offers_dir: Option<PathBuf>,

    /// Most offer files kept in the --capture-offers DIR; capture stops when reached, 1-1000000
    #[arg(long = "capture-max", value_name = "N", default_value_t = 1000,
          value_parser = Int::<usize>::of(1, 1_000_000, " files", "a whole number"))]
    pub capture_offers_max: usize,

    /// Log lines as plain text or one JSON object per line; the level comes from RUST_LOG
    #[arg(long, env = "PORTCAST_LOG_FORMAT", value_name = "text|json",
          default_value_t = LogFormat::Text, value_parser = LogFormatText)]
    pub log_format: LogFormat,

    /// File holding the shared secret (at least 16 bytes) that signaling tokens are checked with [default: none, no token needed]
    #[arg(long, env = "PORTCAST_TOKEN_SECRET_FILE", value_name = "FILE",
          help_heading = "Access and limits", value_parser = NonEmptyPath { what: "file name" })]
    pub token_secret_file: Option<PathBuf>,

    /// Maximum concurrent viewers of one avatar, 1-10000 [default: --max-sessions]
    #[arg(long, env = "PORTCAST_MAX_SESSIONS_PER_AVATAR", value_name = "N",
          help_heading = "Access and limits", value_parser = Int::<usize>::count(1, MAX_SESSIONS))]
    pub max_sessions_per_avatar: Option<usize>,

    /// Maximum open TCP connections (HTTP and WebSocket), 16-100000
    #[arg(long, env = "PORTCAST_MAX_CONNECTIONS", value_name = "N",
          help_heading = "Access and limits", default_value_t = 1024,
          value_parser = Int::<usize>::count(16, 100_000))]
    pub max_connections: usize,

    /// Seconds a WebSocket may stay open without a usable offer, 1-3600
    #[arg(long, env = "PORTCAST_IDLE_TIMEOUT_SECS", value_name = "SECS",
          help_heading = "Access and limits", default_value_t = 30,
          value_parser = Int::<u64>::seconds(1, 3600))]
    pub idle_timeout_secs: u64,

    /// Seconds allowed to send a complete HTTP request head, 1-60
    #[arg(long, env = "PORTCAST_HEADER_TIMEOUT_SECS", value_name = "SECS",
          help_heading = "Access and limits", default_value_t = 5,
          value_parser = Int::<u64>::seconds(1, 60))]
    pub header_timeout_secs: u64,

    /// Largest WebSocket message in KiB, 4-4096
    #[arg(long, env = "PORTCAST_MAX_MESSAGE_KIB", value_name = "KIB",
          help_heading = "Access and limits", default_value_t = 256,
          value_parser = Int::<usize>::of(4, 4096, " KiB", "a whole number of KiB"))]
    pub max_message_kib: usize,

    /// Largest SDP offer in KiB, 4-1024 and at most --max-message-kib
    #[arg(long, env = "PORTCAST_MAX_SDP_KIB", value_name = "KIB",
          help_heading = "Access and limits", default_value_t = 64,
          value_parser = Int::<usize>::of(4, 1024, " KiB", "a whole number of KiB"))]
    pub max_sdp_kib: usize,

    /// Steady WebSocket messages per second allowed per connection, 1-1000
    #[arg(long, env = "PORTCAST_MESSAGES_PER_SEC", value_name = "N",
          help_heading = "Access and limits", default_value_t = 10,
          value_parser = Int::<u32>::count(1, 1000))]
    pub messages_per_sec: u32,

    /// WebSocket messages allowed in a burst above the steady rate, 1-10000
    #[arg(long, env = "PORTCAST_MESSAGE_BURST", value_name = "N",
          help_heading = "Access and limits", default_value_t = 20,
          value_parser = Int::<u32>::count(1, 10_000))]
    pub message_burst: u32,

    /// Longest a browser may hold a frame before showing it, in ms (playout-delay extension, min 0), 0-40950; 10 shows each frame as soon as it is decoded, and 0 makes Chromium use its low-latency renderer, measured one vsync (~16 ms) slower here
    #[arg(long, env = "PORTCAST_PLAYOUT_DELAY_MAX_MS", value_name = "MS",
          default_value_t = 10, value_parser = Int::<u64>::of(0, 40_950, " ms", "a whole number of ms"))]
    pub playout_delay_max_ms: u64,

    /// Estimate each viewer's bandwidth (transport-cc, REMB from browsers without it) and, while an avatar has exactly one viewer, keep the encoder the daemon runs for it under that estimate, on or off; off sends every viewer the configured bitrate whatever its link carries
    #[arg(long, env = "PORTCAST_BANDWIDTH_ESTIMATION", value_name = "on|off",
          default_value = "on", value_parser = Switch, action = clap::ArgAction::Set)]
    pub bandwidth_estimation: bool,

    /// Lower renditions of every avatar whose pictures the daemon encodes (test patterns, Y4M files, renderers sending raw pictures), highest first, as lines@kbit/s, or off: each is encoded once for all who receive it, only while someone does; a viewer sharing its avatar with others gets the highest its bandwidth estimate carries, a lone viewer the avatar's own picture at a bitrate its estimate sets
    #[arg(long, env = "PORTCAST_RENDITIONS", value_name = "LADDER",
          default_value = "360p@600k,180p@150k", value_parser = LadderText)]
    pub renditions: Ladder,

    /// Seconds after the answer for ICE + DTLS to complete before the session ends, 1-300
    #[arg(long, env = "PORTCAST_CONNECT_TIMEOUT_SECS", value_name = "SECS",
          help_heading = "Access and limits", default_value_t = 20,
          value_parser = Int::<u64>::seconds(1, 300))]
    pub connect_timeout_secs: u64,

    /// Unix socket GPU renderers push frames to (docs/ingest.md), or "off" [default: /run/portcast/ingest.sock, or portcast-ingest.sock beside --config when /run/portcast is not writable]
    #[arg(long, env = "PORTCAST_INGEST_SOCKET", value_name = "PATH|off",
          help_heading = "Frame sources", value_parser = IngestSocketText)]
    pub ingest_socket: Option<IngestSocket>,

    /// The built-in test-pattern avatars also paint fresh noise over a corner every frame, so their encoders spend about their whole bitrate as on real video (for load and latency measurements), on or off
    #[arg(long, env = "PORTCAST_TEST_PATTERN_BUSY", value_name = "on|off",
          help_heading = "Frame sources", default_value = "off", value_parser = Switch,
          action = clap::ArgAction::Set)]
    pub test_pattern_busy: bool,

    /// The built-in test-pattern avatar beeps with every flash of its picture (Opus audio, for measuring A/V sync), on or off
    #[arg(long, env = "PORTCAST_TEST_PATTERN_AUDIO", value_name = "on|off",
          help_heading = "Voice", default_value = "on", value_parser = Switch,
          action = clap::ArgAction::Set)]
    pub test_pattern_audio: bool,

    /// Opus bitrate of an avatar's voice in kbit/s, 6-510
    #[arg(long, env = "PORTCAST_AUDIO_BITRATE_KBPS", value_name = "KBPS",
          help_heading = "Voice", default_value_t = 32,
          value_parser = Int::<u32>::of(6, 510, " kbit/s", "a whole number of kbit/s"))]
    pub audio_bitrate_kbps: u32,

    /// Duration of one Opus frame (and RTP packet) of an avatar's voice, 10 or 20 ms
    #[arg(long, env = "PORTCAST_AUDIO_FRAME_MS", value_name = "MS",
          help_heading = "Voice", default_value_t = 20, value_parser = OpusFrameMs)]
    pub audio_frame_ms: u64,

    /// How far ahead of its picture an avatar's voice is sent, in ms, when the sound is ready that early (the test pattern's always is; a renderer's when it sends speech ahead), 0-200: browsers then delay the sound to meet the picture instead of holding the picture back for the sound (measured: video held ~30 ms per frame at 0, ~0.3 ms at 60)
    #[arg(long, env = "PORTCAST_AUDIO_LEAD_MS", value_name = "MS",
          help_heading = "Voice", default_value_t = 60, value_parser = Int::<u64>::of(0, 200, " ms", "a whole number of ms"))]
    pub audio_lead_ms: u64,

    /// Largest frame a renderer may push, in MiB, 1-256
    #[arg(long, value_name = "MIB", help_heading = "Frame sources", default_value_t = 16,
          value_parser = Int::<usize>::of(1, 256, " MiB", "a whole number"))]
    pub ingest_max_frame_mb: usize,

    /// CPU slice the loop and the renderers' reader and voice threads ask Linux 6.12+ for, in us, 0-100000; a short one gets a waking thread a core soon (audio chunk-to-packet p99 under 2 ms instead of ~2.7 ms beside a video encoder on 2 cores); 0 keeps the kernel's default, below 100 acts as 100
    #[arg(long, env = "PORTCAST_LATENCY_SLICE_US", value_name = "US",
          default_value_t = portcast_net::server::DEFAULT_LATENCY_SLICE.as_micros() as u64,
          value_parser = Int::<u64>::of(0, 100_000, " us", "a whole number of us"))]
    pub latency_slice_us: u64,
}
