//! Command-line flags of the daemon; resolution into a [`crate::config::Config`] lives in `config/`.

use std::ffi::{OsStr, OsString};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::read::PortRange;
use crate::config::settings::Settings;
use crate::config::{BITRATE_KBPS, ENCODER_THREADS, FPS, HEIGHT, WIDTH};

/// Footer of `--help`: the precedence rule is surprising (environment beats flags), so spell it out.
const AFTER_HELP: &str = "\
Precedence, lowest to highest:
  built-in defaults < config file (--config) < command-line flags < environment variables
An environment variable that is empty counts as unset. A layer that sets the UDP range, the
port map, the allowed origins or the avatar renditions replaces the lower layer's value as a
whole. RUST_LOG sets
the log level (default info).
Config file keys: each flag above whose value is a single setting, spelled with underscores
(max_sessions = 200), except --public-ip (webrtc_public_ip), --capture-offers
(capture_offers_dir) and --capture-max (capture_offers_max); and
  webrtc_port_min, webrtc_port_max (for --udp-ports), allowed_origins = [..],
  [port_map] LOCAL = PUBLIC,
  [avatar_renditions] AVATAR = \"RENDITIONS\" (for --avatar-renditions),
  [[avatar]] name, width, height, fps, bitrate_kbps, encoder_threads, audio_bitrate_kbps
    (replaces the built-in list)
Signals: SIGTERM/SIGINT say bye to every viewer and exit 0. SIGHUP re-reads the file, flags
and environment and applies the limits, max_sessions, allowed_origins, the token secret and
fallback_avatar to new connections and offers (live sessions stay), and
playout_delay_max_ms to every viewer's next frame; ports, addresses, avatars, sources,
renditions and bandwidth estimation need a restart.
Subcommands take the same flags: `portcast replay offers/ --public-ip 203.0.113.7` answers
as the daemon with that public ip would (without token checks: captured offers carry none).";

// The command line: single-valued settings ([`Settings`]), the settings made of several
// values, and the subcommand. (A `//` comment: clap would show a doc comment as the about.)
//
// Parse it with [`parse_from`]: `config::load` layers the flags over the file and under the
// environment, so it needs to know which flags were given, not only their values.
//
// `command: None` means "run the daemon", so the flags stay top-level and existing
// invocations keep working; [`command`] makes them global so a subcommand reads the same config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(name = "portcast", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do instead of running the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML config file, keys listed below [default: none]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Single-valued settings; their values here are the flag's or the default.
    #[command(flatten)]
    pub settings: Settings,

    /// Inclusive local UDP port range (at most 64 ports) or a single port [default: 10111-10115]
    #[arg(long, env = "PORTCAST_UDP_PORTS", value_name = "A-B", value_parser = PortRange)]
    pub udp_ports: Option<RangeInclusive<u16>>,

    /// Public port to announce for a local UDP port the forwarder renumbers; repeatable, or comma-separated [default: the local port]
    #[arg(long, env = "PORTCAST_PORT_MAP", value_name = "LOCAL:PUBLIC")]
    pub port_map: Vec<String>,

    /// An avatar's own lower renditions instead of --renditions' (lines@kbit/s, comma-separated, or off), for an avatar of any source; repeatable, or ';'-separated [default: none]
    #[arg(
        long,
        env = "PORTCAST_AVATAR_RENDITIONS",
        value_name = "AVATAR=RENDITIONS"
    )]
    pub avatar_renditions: Vec<String>,

    /// Page origin (scheme://host[:port]) allowed to open a WebSocket; repeatable or comma-separated [default: any]
    #[arg(
        long,
        env = "PORTCAST_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        help_heading = "Access and limits"
    )]
    pub allowed_origin: Vec<String>,

    /// Frame width in pixels, even, 16-3840 [default: 1280]
    #[arg(long, value_name = "PX", help_heading = AVATAR_HEADING, value_parser = WIDTH)]
    pub width: Option<u32>,

    /// Frame height in pixels, even, 16-2160 [default: 720]
    #[arg(long, value_name = "PX", help_heading = AVATAR_HEADING, value_parser = HEIGHT)]
    pub height: Option<u32>,

    /// Frames per second, 1-60 [default: 30]
    #[arg(long, value_name = "N", help_heading = AVATAR_HEADING, value_parser = FPS)]
    pub fps: Option<u32>,

    /// H.264 target bitrate in kbit/s, 100-50000 [default: 2000]
    #[arg(long, value_name = "KBPS", help_heading = AVATAR_HEADING, value_parser = BITRATE_KBPS)]
    pub bitrate_kbps: Option<u32>,

    /// H.264 encoder threads, 1-8 [default: 1]
    #[arg(long, value_name = "N", help_heading = AVATAR_HEADING, value_parser = ENCODER_THREADS)]
    pub encoder_threads: Option<u16>,

    /// Also serve an avatar played in a loop from a file: y4m:FILE (8-bit 4:2:0) [default: none]
    #[arg(long, value_name = "y4m:FILE", help_heading = "Frame sources")]
    pub source: Option<String>,

    /// Avatar id of the --source [default: the file name without its extension]
    // Text, not AvatarId: `token --avatar` shares the id, and clap hands values between them.
    #[arg(long, value_name = "NAME", help_heading = "Frame sources")]
    pub avatar: Option<String>,

    /// Which of the flags above were on the command line, as typed (argument id, values).
    #[arg(skip)]
    pub given: Vec<(String, Vec<OsString>)>,
}

const AVATAR_HEADING: &str = "Built-in test-pattern avatar";

/// The clap command: [`Cli`] with every daemon flag global, so `portcast replay DIR
/// --public-ip X` reads the same configuration as the daemon.
pub fn command() -> clap::Command {
    // Values are not shown: a variable may hold something an operator would not paste.
    Cli::command().mut_args(|arg| arg.global(true).hide_env_values(true))
}

/// Parses a command line; `--help` and `--version` come back as the error clap prints.
///
/// The environment is not read here: `config::load` reads `PORTCAST_*` itself, after the
/// flags (the environment wins), and names the variable when its value is bad.
pub fn parse_from<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let parsed = command()
        .mut_args(|arg| arg.env(None))
        .try_get_matches_from(&argv);
    let matches = match parsed {
        Ok(matches) => matches,
        // Help is rendered again from the full command so it lists the variables.
        Err(e) if e.kind() == ErrorKind::DisplayHelp => {
            return Err(command().try_get_matches_from(&argv).err().unwrap_or(e))
        }
        Err(e) => return Err(e),
    };
    let mut cli = Cli::from_arg_matches(&matches)?;
    // Global flags given after a subcommand are recorded in its matches.
    let mut levels = vec![&matches];
    let mut current = &matches;
    while let Some((_, sub)) = current.subcommand() {
        levels.push(sub);
        current = sub;
    }
    for arg in command().get_arguments() {
        let id = arg.get_id().as_str();
        for level in &levels {
            if level.try_contains_id(id).unwrap_or(false)
                && level.value_source(id) == Some(ValueSource::CommandLine)
            {
                if let Ok(Some(raw)) = level.try_get_raw(id) {
                    cli.given.retain(|(given, _)| given != id);
                    cli.given
                        .push((id.to_string(), raw.map(OsStr::to_os_string).collect()));
                }
            }
        }
    }
    Ok(cli)
}

impl Cli {
    /// The values of a flag given on the command line, as typed.
    pub fn given(&self, id: &str) -> Option<&[OsString]> {
        self.given
            .iter()
            .find(|(given, _)| given == id)
            .map(|(_, values)| values.as_slice())
    }
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
