//! Command-line flags of the daemon; resolution into a [`crate::config::Config`] lives in `config.rs`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Footer of `--help`: the precedence rule is surprising (environment beats flags), so spell it out.
const AFTER_HELP: &str = "\
Precedence, lowest to highest:
  built-in defaults < config file (--config) < command-line flags < environment variables
Environment variables (an empty variable counts as unset):
  PORTCAST_PUBLIC_IP, PORTCAST_BIND_IP, PORTCAST_SIGNAL_PORT,
  PORTCAST_UDP_PORTS (A-B or a single port), PORTCAST_PORT_MAP (comma-separated LOCAL:PUBLIC),
  PORTCAST_MAX_SESSIONS, PORTCAST_CONSENT_TIMEOUT_SECS, PORTCAST_FALLBACK_AVATAR,
  PORTCAST_INGEST_SOCKET, PORTCAST_TOKEN_SECRET_FILE,
  PORTCAST_ALLOWED_ORIGINS (comma-separated), PORTCAST_MAX_SESSIONS_PER_AVATAR,
  PORTCAST_MAX_CONNECTIONS, PORTCAST_IDLE_TIMEOUT_SECS, PORTCAST_HEADER_TIMEOUT_SECS,
  PORTCAST_MAX_MESSAGE_KIB, PORTCAST_MAX_SDP_KIB, PORTCAST_MESSAGES_PER_SEC,
  PORTCAST_MESSAGE_BURST, PORTCAST_CONNECT_TIMEOUT_SECS, PORTCAST_LOG_FORMAT
A layer that sets the UDP range, the port map or the allowed origins replaces the lower
layer's value as a whole. RUST_LOG sets the log level (default info).
Config file keys:
  webrtc_public_ip, bind_ip, signal_port, webrtc_port_min, webrtc_port_max, max_sessions,
  consent_timeout_secs, fallback_avatar, capture_offers_dir, capture_offers_max,
  ingest_socket, ingest_max_frame_mb, token_secret_file, allowed_origins (array),
  max_sessions_per_avatar, max_connections, idle_timeout_secs, header_timeout_secs,
  max_message_kib, max_sdp_kib, messages_per_sec, message_burst, connect_timeout_secs,
  log_format,
  [port_map] LOCAL = PUBLIC,
  [[avatar]] name, width, height, fps, bitrate_kbps, encoder_threads (replaces the built-in list)
Signals: SIGTERM/SIGINT say bye to every viewer and exit 0. SIGHUP re-reads the file, flags
and environment and applies the limits, max_sessions, allowed_origins, the token secret and
fallback_avatar to new connections and offers (live sessions stay); ports, addresses,
avatars and sources need a restart.
Subcommands take the same flags: `portcast replay offers/ --public-ip 203.0.113.7` answers
as the daemon with that public ip would (without token checks: captured offers carry none).";

/// Daemon flags; values stay text so `config::load` reports every bad value as `source: key: problem`.
//
// `command: None` means "run the daemon", so the flags stay top-level and existing
// invocations keep working; they are `global` so a subcommand reads the same config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(name = "portcast", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do instead of running the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML config file, keys listed below [default: none]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address announced in ICE candidates; 0.0.0.0 and :: are refused [default: 127.0.0.1]
    #[arg(long, global = true, value_name = "IP")]
    pub public_ip: Option<String>,

    /// Address the signaling TCP listener and the UDP sockets bind [default: 0.0.0.0]
    #[arg(long, global = true, value_name = "IP")]
    pub bind_ip: Option<String>,

    /// TCP port for HTTP and WebSocket signaling [default: 9000]
    #[arg(long, global = true, value_name = "PORT")]
    pub signal_port: Option<String>,

    /// Inclusive local UDP port range (at most 64 ports) or a single port [default: 10111-10115]
    #[arg(long, global = true, value_name = "A-B")]
    pub udp_ports: Option<String>,

    /// Public port to announce for a local UDP port the forwarder renumbers; repeatable [default: the local port]
    #[arg(long, global = true, value_name = "LOCAL:PUBLIC")]
    pub port_map: Vec<String>,

    /// Maximum concurrent viewer sessions, 1-10000 [default: 200]
    #[arg(long, global = true, value_name = "N")]
    pub max_sessions: Option<String>,

    /// Seconds without STUN consent before a viewer's session ends, 1-86400 [default: 30]
    #[arg(long, global = true, value_name = "SECS")]
    pub consent_timeout_secs: Option<String>,

    /// Avatar served for an offer naming an unknown avatar_id [default: none, error "unknown_avatar"]
    #[arg(long, global = true, value_name = "NAME")]
    pub fallback_avatar: Option<String>,

    /// Write every webrtc_offer message received to DIR, one file each, for `portcast replay` [default: off]
    #[arg(long, global = true, value_name = "DIR")]
    pub capture_offers: Option<String>,

    /// Most offer files kept in the --capture-offers DIR; capture stops when reached, 1-1000000 [default: 1000]
    #[arg(long, global = true, value_name = "N")]
    pub capture_max: Option<String>,

    /// File holding the shared secret (at least 16 bytes) that signaling tokens are checked with [default: none, no token needed]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Access and limits"
    )]
    pub token_secret_file: Option<String>,

    /// Page origin (scheme://host[:port]) allowed to open a WebSocket; repeatable or comma-separated [default: any]
    #[arg(
        long,
        global = true,
        value_name = "ORIGIN",
        help_heading = "Access and limits"
    )]
    pub allowed_origin: Vec<String>,

    /// Maximum concurrent viewers of one avatar, 1-10000 [default: --max-sessions]
    #[arg(
        long,
        global = true,
        value_name = "N",
        help_heading = "Access and limits"
    )]
    pub max_sessions_per_avatar: Option<String>,

    /// Maximum open TCP connections (HTTP and WebSocket), 16-100000 [default: 1024]
    #[arg(
        long,
        global = true,
        value_name = "N",
        help_heading = "Access and limits"
    )]
    pub max_connections: Option<String>,

    /// Seconds a WebSocket may stay open without a usable offer, 1-3600 [default: 30]
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        help_heading = "Access and limits"
    )]
    pub idle_timeout_secs: Option<String>,

    /// Seconds allowed to send a complete HTTP request head, 1-60 [default: 5]
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        help_heading = "Access and limits"
    )]
    pub header_timeout_secs: Option<String>,

    /// Largest WebSocket message in KiB, 4-4096 [default: 256]
    #[arg(
        long,
        global = true,
        value_name = "KIB",
        help_heading = "Access and limits"
    )]
    pub max_message_kib: Option<String>,

    /// Largest SDP offer in KiB, 4-1024 and at most --max-message-kib [default: 64]
    #[arg(
        long,
        global = true,
        value_name = "KIB",
        help_heading = "Access and limits"
    )]
    pub max_sdp_kib: Option<String>,

    /// Steady WebSocket messages per second allowed per connection, 1-1000 [default: 10]
    #[arg(
        long,
        global = true,
        value_name = "N",
        help_heading = "Access and limits"
    )]
    pub messages_per_sec: Option<String>,

    /// WebSocket messages allowed in a burst above the steady rate, 1-10000 [default: 20]
    #[arg(
        long,
        global = true,
        value_name = "N",
        help_heading = "Access and limits"
    )]
    pub message_burst: Option<String>,

    /// Seconds after the answer for ICE + DTLS to complete before the session ends, 1-300 [default: 20]
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        help_heading = "Access and limits"
    )]
    pub connect_timeout_secs: Option<String>,

    /// Log lines as plain text or one JSON object per line; the level comes from RUST_LOG [default: text]
    #[arg(long, global = true, value_name = "text|json")]
    pub log_format: Option<String>,

    /// Frame width in pixels, even, 16-3840 [default: 1280]
    #[arg(
        long,
        global = true,
        value_name = "PX",
        help_heading = "Built-in test-pattern avatar"
    )]
    pub width: Option<String>,

    /// Frame height in pixels, even, 16-2160 [default: 720]
    #[arg(
        long,
        global = true,
        value_name = "PX",
        help_heading = "Built-in test-pattern avatar"
    )]
    pub height: Option<String>,

    /// Frames per second, 1-60 [default: 30]
    #[arg(
        long,
        global = true,
        value_name = "N",
        help_heading = "Built-in test-pattern avatar"
    )]
    pub fps: Option<String>,

    /// H.264 target bitrate in kbit/s, 100-50000 [default: 2000]
    #[arg(
        long,
        global = true,
        value_name = "KBPS",
        help_heading = "Built-in test-pattern avatar"
    )]
    pub bitrate_kbps: Option<String>,

    /// H.264 encoder threads, 1-8 [default: 1]
    #[arg(
        long,
        global = true,
        value_name = "N",
        help_heading = "Built-in test-pattern avatar"
    )]
    pub encoder_threads: Option<String>,

    /// Unix socket GPU renderers push frames to (docs/ingest.md), or "off" [default: /run/portcast/ingest.sock, or portcast-ingest.sock beside --config when /run/portcast is not writable]
    #[arg(
        long,
        global = true,
        value_name = "PATH|off",
        help_heading = "Frame sources"
    )]
    pub ingest_socket: Option<String>,

    /// Largest frame a renderer may push, in MiB, 1-256 [default: 16]
    #[arg(
        long,
        global = true,
        value_name = "MIB",
        help_heading = "Frame sources"
    )]
    pub ingest_max_frame_mb: Option<String>,

    /// Also serve an avatar played in a loop from a file: y4m:FILE (8-bit 4:2:0) [default: none]
    #[arg(
        long,
        global = true,
        value_name = "y4m:FILE",
        help_heading = "Frame sources"
    )]
    pub source: Option<String>,

    /// Avatar id of the --source [default: the file name without its extension]
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        help_heading = "Frame sources"
    )]
    pub avatar: Option<String>,
}

/// Subcommands; without one, portcast runs the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Answer offer files as the daemon would (same config, no sockets) and report each outcome
    ///
    /// PATH is an .sdp file (a raw offer), a .json file holding one webrtc_offer message (what
    /// --capture-offers writes), or a folder, walked in name order. Other .json files (such as
    /// fixture metadata) are skipped with a note. Exit status: 0 when every answer holds the
    /// answer invariants and matches --expect, 1 otherwise, 2 on a usage or config error.
    Replay {
        /// Offer files or folders
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,

        /// JSON file of expected outcomes by file name; every difference is shown and fails the run
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,

        /// One JSON object per offer instead of one line of text
        #[arg(long)]
        json: bool,
    },

    /// Mint a signaling token for one session and avatar, printed on stdout
    ///
    /// The page connects to /ws/{SESSION}?token=TOKEN and offers AVATAR; a daemon started
    /// with the same --token-secret-file accepts it until the TTL runs out. A backend may
    /// instead compute the same HMAC itself (README, "Signaling auth"). Exit status: 0 with
    /// the token, 2 on a bad argument or an unusable secret file.
    Token {
        /// File holding the shared secret (at least 16 bytes; trailing newlines are ignored)
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,

        /// Session id the token is for (1-128 characters of A-Za-z0-9._~-)
        #[arg(long, value_name = "ID")]
        session: String,

        /// Avatar id the token is for
        #[arg(long, value_name = "NAME")]
        avatar: String,

        /// Seconds the token stays valid, 1-2678400 (31 days)
        #[arg(long, value_name = "SECS", default_value = "3600")]
        ttl_secs: String,
    },
}
