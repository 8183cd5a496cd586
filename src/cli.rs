//! Command-line flags of the daemon; resolution into a [`crate::config::Config`] lives in `config.rs`.

use std::path::PathBuf;

use clap::Parser;

/// Footer of `--help`: the precedence rule is surprising (environment beats flags), so spell it out.
const AFTER_HELP: &str = "\
Precedence, lowest to highest:
  built-in defaults < config file (--config) < command-line flags < environment variables
Environment variables (an empty variable counts as unset):
  PORTCAST_PUBLIC_IP, PORTCAST_BIND_IP, PORTCAST_SIGNAL_PORT,
  PORTCAST_UDP_PORTS (A-B or a single port), PORTCAST_PORT_MAP (comma-separated LOCAL:PUBLIC),
  PORTCAST_MAX_SESSIONS, PORTCAST_CONSENT_TIMEOUT_SECS, PORTCAST_FALLBACK_AVATAR
A layer that sets the UDP range or the port map replaces the lower layer's value as a whole.
Config file keys:
  webrtc_public_ip, bind_ip, signal_port, webrtc_port_min, webrtc_port_max, max_sessions,
  consent_timeout_secs, fallback_avatar, [port_map] LOCAL = PUBLIC,
  [[avatar]] name, width, height, fps, bitrate_kbps, encoder_threads (replaces the built-in list)";

/// Daemon flags; values stay text so `config::load` reports every bad value as `source: key: problem`.
//
// Subcommands (`replay`, `token`, ...) will be added as
// `#[command(subcommand)] pub command: Option<Command>`; `None` keeps meaning "run the
// daemon", so the flags below stay top-level and existing invocations keep working.
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(name = "portcast", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// TOML config file, keys listed below [default: none]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address announced in ICE candidates; 0.0.0.0 and :: are refused [default: 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub public_ip: Option<String>,

    /// Address the signaling TCP listener and the UDP sockets bind [default: 0.0.0.0]
    #[arg(long, value_name = "IP")]
    pub bind_ip: Option<String>,

    /// TCP port for HTTP and WebSocket signaling [default: 9000]
    #[arg(long, value_name = "PORT")]
    pub signal_port: Option<String>,

    /// Inclusive local UDP port range (at most 64 ports) or a single port [default: 10111-10115]
    #[arg(long, value_name = "A-B")]
    pub udp_ports: Option<String>,

    /// Public port to announce for a local UDP port the forwarder renumbers; repeatable [default: the local port]
    #[arg(long, value_name = "LOCAL:PUBLIC")]
    pub port_map: Vec<String>,

    /// Maximum concurrent viewer sessions, 1-10000 [default: 200]
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<String>,

    /// Seconds without STUN consent before a viewer's session ends, 1-86400 [default: 30]
    #[arg(long, value_name = "SECS")]
    pub consent_timeout_secs: Option<String>,

    /// Avatar served for an offer naming an unknown avatar_id [default: none, error "unknown_avatar"]
    #[arg(long, value_name = "NAME")]
    pub fallback_avatar: Option<String>,

    /// Frame width in pixels, even, 16-3840 [default: 1280]
    #[arg(long, value_name = "PX", help_heading = "Built-in test-pattern avatar")]
    pub width: Option<String>,

    /// Frame height in pixels, even, 16-2160 [default: 720]
    #[arg(long, value_name = "PX", help_heading = "Built-in test-pattern avatar")]
    pub height: Option<String>,

    /// Frames per second, 1-60 [default: 30]
    #[arg(long, value_name = "N", help_heading = "Built-in test-pattern avatar")]
    pub fps: Option<String>,

    /// H.264 target bitrate in kbit/s, 100-50000 [default: 2000]
    #[arg(
        long,
        value_name = "KBPS",
        help_heading = "Built-in test-pattern avatar"
    )]
    pub bitrate_kbps: Option<String>,

    /// H.264 encoder threads, 1-8 [default: 1]
    #[arg(long, value_name = "N", help_heading = "Built-in test-pattern avatar")]
    pub encoder_threads: Option<String>,
}
