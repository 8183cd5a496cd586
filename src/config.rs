//! Daemon configuration: defaults, TOML file, flags and `PORTCAST_*` environment, merged and validated.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcast_engine::AvatarId;
use serde::Deserialize;

use crate::cli::Cli;

const DEFAULT_PUBLIC_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DEFAULT_BIND_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const DEFAULT_SIGNAL_PORT: u16 = 9000;
const DEFAULT_PORT_MIN: u16 = 10111;
const DEFAULT_PORT_MAX: u16 = 10115;
const DEFAULT_MAX_SESSIONS: u16 = 200;
const DEFAULT_CONSENT_TIMEOUT_SECS: u16 = 30;
const DEFAULT_AVATAR_NAME: &str = "test-pattern";
const DEFAULT_WIDTH: u32 = 1280;
const DEFAULT_HEIGHT: u32 = 720;
const DEFAULT_FPS: u32 = 30;
const DEFAULT_BITRATE_KBPS: u32 = 2000;
const DEFAULT_ENCODER_THREADS: u16 = 1;
const DEFAULT_CAPTURE_OFFERS_MAX: u32 = 1000;

const MAX_UDP_PORTS: i64 = 64;
const MAX_SESSIONS: i64 = 10_000;
// Bounded so the network loop can add the timeout to an `Instant` without overflowing.
const MAX_CONSENT_TIMEOUT_SECS: i64 = 86_400;
const MAX_CAPTURE_OFFERS: i64 = 1_000_000;

const DEFAULT_MAX_CONNECTIONS: u16 = 1024;
const DEFAULT_IDLE_TIMEOUT_SECS: u16 = 30;
const DEFAULT_HEADER_TIMEOUT_SECS: u16 = 5;
const DEFAULT_MAX_MESSAGE_KIB: u16 = 256;
const DEFAULT_MAX_SDP_KIB: u16 = 64;
const DEFAULT_MESSAGES_PER_SEC: u16 = 10;
const DEFAULT_MESSAGE_BURST: u16 = 20;
const DEFAULT_CONNECT_TIMEOUT_SECS: u16 = 20;

/// Resolved daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address announced in ICE candidates.
    pub public_ip: IpAddr,
    /// Address the signaling listener and the UDP sockets bind.
    pub bind_ip: IpAddr,
    /// TCP port for HTTP and WebSocket signaling.
    pub signal_port: u16,
    /// One entry per local UDP port, ascending by local port.
    pub udp_ports: Vec<PortPair>,
    /// Maximum number of concurrent viewer sessions.
    pub max_sessions: usize,
    /// Time without STUN consent from a viewer before its session ends.
    pub consent_timeout: Duration,
    /// Avatar served for an unknown `avatar_id`; `None` refuses such offers with `unknown_avatar`.
    pub fallback_avatar: Option<AvatarId>,
    /// Configured avatars, names unique, never empty.
    pub avatars: Vec<AvatarConfig>,
    /// Folder where every received offer message is written; `None` captures nothing.
    pub capture_offers_dir: Option<PathBuf>,
    /// Most offer files kept in `capture_offers_dir`.
    pub capture_offers_max: usize,
    /// The renderers' ingest socket and `--source` files.
    pub sources: SourceSettings,
    /// The shared secret signaling tokens are checked with; `None` needs no token.
    pub token_secret_file: Option<SecretFile>,
    /// Page origins allowed to open a WebSocket, normalised as browsers send them; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Connection and session limits.
    pub limits: Limits,
    /// How log lines are written.
    pub log_format: LogFormat,
}

/// The file holding the token secret; read when the daemon starts ([`SecretFile::read`]), not by `load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// Path as given (relative paths are relative to the working directory).
    pub path: PathBuf,
    /// Where the path was set, for errors about the file.
    pub origin: Origin,
}

impl SecretFile {
    /// The key in the file: at least 16 bytes once trailing newlines are removed.
    ///
    /// `portcast replay` never reads it (captured offers carry no token), so a production
    /// config replays on a machine without the secret.
    pub fn read(&self) -> Result<portcast_engine::auth::TokenKey, ConfigError> {
        crate::token::read_secret_file(&self.path).map_err(|m| invalid(self.origin.clone(), m))
    }
}

/// Limits on connections, messages and sessions (issue 7's defences), resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most sessions watching one avatar at once.
    pub max_sessions_per_avatar: usize,
    /// Most TCP connections (HTTP and WebSocket) at once.
    pub max_connections: usize,
    /// A WebSocket without a usable offer is closed after this long.
    pub idle_timeout: Duration,
    /// Time allowed to send a complete HTTP request head.
    pub header_timeout: Duration,
    /// Largest WebSocket message, in bytes.
    pub max_message_bytes: usize,
    /// Largest SDP offer, in bytes (never above `max_message_bytes`).
    pub max_sdp_bytes: usize,
    /// Steady WebSocket messages per second per connection.
    pub messages_per_sec: u32,
    /// Messages allowed in a burst above the steady rate.
    pub message_burst: u32,
    /// A session ends if ICE + DTLS are not up this long after the answer.
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions_per_avatar: DEFAULT_MAX_SESSIONS.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS.into(),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS.into()),
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS.into()),
            max_message_bytes: usize::from(DEFAULT_MAX_MESSAGE_KIB) << 10,
            max_sdp_bytes: usize::from(DEFAULT_MAX_SDP_KIB) << 10,
            messages_per_sec: DEFAULT_MESSAGES_PER_SEC.into(),
            message_burst: DEFAULT_MESSAGE_BURST.into(),
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS.into()),
        }
    }
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// env_logger's usual human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `ts`, `level`, `target`, `msg`.
    Json,
}

/// A local UDP port and the port announced for it in ICE candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPair {
    /// Port the UDP socket binds.
    pub local: u16,
    /// Port announced to viewers (differs from `local` behind a port-rewriting forwarder).
    pub public: u16,
}

/// Encoding parameters of one avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarConfig {
    /// Name matched against the `avatar_id` of an offer.
    pub name: AvatarId,
    /// Frame width in pixels (even).
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// H.264 target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Number of H.264 encoder threads.
    pub encoder_threads: u16,
}

impl Default for AvatarConfig {
    fn default() -> Self {
        AvatarConfig {
            name: AvatarId::parse(DEFAULT_AVATAR_NAME).expect("a valid literal name"),
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: DEFAULT_FPS,
            bitrate_bps: DEFAULT_BITRATE_KBPS * 1000,
            encoder_threads: DEFAULT_ENCODER_THREADS,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_ip: DEFAULT_PUBLIC_IP,
            bind_ip: DEFAULT_BIND_IP,
            signal_port: DEFAULT_SIGNAL_PORT,
            udp_ports: (DEFAULT_PORT_MIN..=DEFAULT_PORT_MAX)
                .map(|port| PortPair {
                    local: port,
                    public: port,
                })
                .collect(),
            max_sessions: DEFAULT_MAX_SESSIONS.into(),
            consent_timeout: Duration::from_secs(DEFAULT_CONSENT_TIMEOUT_SECS.into()),
            fallback_avatar: None,
            avatars: vec![AvatarConfig::default()],
            capture_offers_dir: None,
            capture_offers_max: DEFAULT_CAPTURE_OFFERS_MAX as usize,
            sources: SourceSettings::default(),
            token_secret_file: None,
            allowed_origins: Vec::new(),
            limits: Limits::default(),
            log_format: LogFormat::Text,
        }
    }
}

/// Where a configuration value came from, so an error points at the value to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default of the named setting.
    Default(&'static str),
    /// A key of the config file.
    File {
        /// Path of the file as given on the command line.
        path: PathBuf,
        /// Dotted key, e.g. `port_map.10111` or `avatar[0].width`.
        key: String,
    },
    /// A command-line flag such as `--udp-ports`.
    Flag(&'static str),
    /// An environment variable such as `PORTCAST_SIGNAL_PORT`.
    Env(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default(key) => write!(f, "built-in default for '{key}'"),
            Origin::File { path, key } => write!(f, "{}: key '{key}'", path.display()),
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Env(var) => write!(f, "environment {var}"),
        }
    }
}

/// Why the configuration could not be loaded; the message names the source and the key.
#[derive(Debug)]
pub enum ConfigError {
    /// The config file could not be read.
    Read {
        /// Path of the file as given on the command line.
        path: PathBuf,
        /// Underlying I/O error.
        error: io::Error,
    },
    /// The config file is not valid TOML, has an unknown key or a value of the wrong type.
    Parse {
        /// Path of the file as given on the command line.
        path: PathBuf,
        /// Parser error, carrying line and column.
        error: Box<toml::de::Error>,
    },
    /// A value is malformed, out of range or inconsistent with another value.
    Invalid {
        /// Where the offending value came from.
        origin: Origin,
        /// What is wrong with it.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                // The "(os error N)" suffix means nothing to an operator fixing a path.
                let text = error.to_string();
                let text = text.split(" (os error").next().unwrap_or(&text);
                write!(
                    f,
                    "config file {} could not be read: {text}",
                    path.display()
                )
            }
            ConfigError::Parse { path, error } => {
                write!(
                    f,
                    "config file {}: {}",
                    path.display(),
                    error.to_string().trim_end()
                )
            }
            ConfigError::Invalid { origin, message } => write!(f, "{origin}: {message}"),
        }
    }
}

// No `source()`: the cause is already part of the message, and error-chain printers would
// otherwise repeat it.
impl std::error::Error for ConfigError {}

/// Resolves the configuration: defaults < TOML file (`--config`) < command-line flags < `PORTCAST_*` environment.
///
/// A layer that sets the UDP range or the port map replaces the lower layer's value as a
/// whole; flags `--width` etc. modify the avatar named `test-pattern`. Every value given is
/// syntax-checked even if a higher layer overrides it; ranges and cross-field rules are
/// checked once, on the merged result. `env` is `|k| std::env::var(k).ok()` outside tests;
/// an empty variable counts as unset.
pub fn load(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut draft = Draft::defaults();
    if let Some(path) = &cli.config {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.clone(),
            error,
        })?;
        let file: FileConfig = toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.clone(),
            error: Box::new(error),
        })?;
        draft.apply_file(path, file)?;
    }
    draft.apply_flags(cli)?;
    draft.apply_env(env)?;
    draft.validate()
}

/// The TOML file as written; integers stay `i64` so range errors carry our message, not serde's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    webrtc_public_ip: Option<String>,
    webrtc_port_min: Option<i64>,
    webrtc_port_max: Option<i64>,
    signal_port: Option<i64>,
    bind_ip: Option<String>,
    port_map: Option<BTreeMap<String, i64>>,
    max_sessions: Option<i64>,
    consent_timeout_secs: Option<i64>,
    fallback_avatar: Option<String>,
    capture_offers_dir: Option<String>,
    capture_offers_max: Option<i64>,
    ingest_socket: Option<String>,
    ingest_max_frame_mb: Option<i64>,
    token_secret_file: Option<String>,
    allowed_origins: Option<Vec<String>>,
    max_sessions_per_avatar: Option<i64>,
    max_connections: Option<i64>,
    idle_timeout_secs: Option<i64>,
    header_timeout_secs: Option<i64>,
    max_message_kib: Option<i64>,
    max_sdp_kib: Option<i64>,
    messages_per_sec: Option<i64>,
    message_burst: Option<i64>,
    connect_timeout_secs: Option<i64>,
    log_format: Option<String>,
    avatar: Option<Vec<FileAvatar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAvatar {
    name: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    fps: Option<i64>,
    bitrate_kbps: Option<i64>,
    encoder_threads: Option<i64>,
}

#[derive(Debug, Clone)]
struct Sourced<T> {
    value: T,
    origin: Origin,
}

impl<T> Sourced<T> {
    fn new(value: T, origin: Origin) -> Self {
        Sourced { value, origin }
    }
}

/// Settings given as text (flags and environment share one parser per setting).
#[derive(Debug, Clone, Copy)]
enum Setting {
    PublicIp,
    BindIp,
    SignalPort,
    UdpPorts,
    PortMap,
    MaxSessions,
    ConsentTimeout,
    FallbackAvatar,
    CaptureDir,
    CaptureMax,
    TokenSecretFile,
    AllowedOrigins,
    MaxSessionsPerAvatar,
    MaxConnections,
    IdleTimeout,
    HeaderTimeout,
    MaxMessageKib,
    MaxSdpKib,
    MessagesPerSec,
    MessageBurst,
    ConnectTimeout,
    LogFormat,
}

/// Merged but not yet validated values, each remembering its origin.
struct Draft {
    public_ip: Sourced<IpAddr>,
    bind_ip: Sourced<IpAddr>,
    signal_port: Sourced<i64>,
    port_min: Sourced<i64>,
    port_max: Sourced<i64>,
    port_map: Vec<Sourced<(i64, i64)>>,
    max_sessions: Sourced<i64>,
    consent_timeout_secs: Sourced<i64>,
    fallback_avatar: Option<Sourced<String>>,
    avatars: Sourced<Vec<AvatarDraft>>,
    capture_dir: Option<Sourced<String>>,
    capture_max: Sourced<i64>,
    sources: SourcesDraft,
    token_secret_file: Option<Sourced<String>>,
    /// Already normalised; empty allows any origin.
    allowed_origins: Vec<String>,
    limits: LimitsDraft,
    log_format: Sourced<String>,
}

/// The limits as given; `max_sessions_per_avatar` follows `max_sessions` unless set.
struct LimitsDraft {
    max_sessions_per_avatar: Option<Sourced<i64>>,
    max_connections: Sourced<i64>,
    idle_timeout_secs: Sourced<i64>,
    header_timeout_secs: Sourced<i64>,
    max_message_kib: Sourced<i64>,
    max_sdp_kib: Sourced<i64>,
    messages_per_sec: Sourced<i64>,
    message_burst: Sourced<i64>,
    connect_timeout_secs: Sourced<i64>,
}

impl LimitsDraft {
    fn defaults() -> Self {
        let default = |value: u16, key| Sourced::new(i64::from(value), Origin::Default(key));
        LimitsDraft {
            max_sessions_per_avatar: None,
            max_connections: default(DEFAULT_MAX_CONNECTIONS, "max_connections"),
            idle_timeout_secs: default(DEFAULT_IDLE_TIMEOUT_SECS, "idle_timeout_secs"),
            header_timeout_secs: default(DEFAULT_HEADER_TIMEOUT_SECS, "header_timeout_secs"),
            max_message_kib: default(DEFAULT_MAX_MESSAGE_KIB, "max_message_kib"),
            max_sdp_kib: default(DEFAULT_MAX_SDP_KIB, "max_sdp_kib"),
            messages_per_sec: default(DEFAULT_MESSAGES_PER_SEC, "messages_per_sec"),
            message_burst: default(DEFAULT_MESSAGE_BURST, "message_burst"),
            connect_timeout_secs: default(DEFAULT_CONNECT_TIMEOUT_SECS, "connect_timeout_secs"),
        }
    }

    fn validate(self, max_sessions: &Sourced<i64>) -> Result<Limits, ConfigError> {
        let per_avatar = self
            .max_sessions_per_avatar
            .as_ref()
            .unwrap_or(max_sessions);
        let message_kib: usize = ranged(&self.max_message_kib, 4, MAX_MESSAGE_KIB, " KiB")?;
        let sdp_kib: usize = ranged(&self.max_sdp_kib, 4, MAX_SDP_KIB, " KiB")?;
        if sdp_kib > message_kib {
            let (sdp, message) = (&self.max_sdp_kib, &self.max_message_kib);
            // Blame the layer the operator actually wrote, not the default it combined with.
            let blamed = match sdp.origin {
                Origin::Default(_) => message.origin.clone(),
                _ => sdp.origin.clone(),
            };
            return Err(invalid(
                blamed,
                format!(
                    "max_sdp_kib {sdp_kib} is larger than max_message_kib {message_kib}: an offer \
                     travels inside one WebSocket message (max_sdp_kib from {}, max_message_kib \
                     from {})",
                    sdp.origin, message.origin
                ),
            ));
        }
        let seconds = |value: &Sourced<i64>, max| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(ranged(value, 1, max, " seconds")?))
        };
        Ok(Limits {
            max_sessions_per_avatar: ranged(per_avatar, 1, MAX_SESSIONS, "")?,
            max_connections: ranged(&self.max_connections, 16, MAX_CONNECTIONS, "")?,
            idle_timeout: seconds(&self.idle_timeout_secs, MAX_IDLE_TIMEOUT_SECS)?,
            header_timeout: seconds(&self.header_timeout_secs, MAX_HEADER_TIMEOUT_SECS)?,
            max_message_bytes: message_kib << 10,
            max_sdp_bytes: sdp_kib << 10,
            messages_per_sec: ranged(&self.messages_per_sec, 1, MAX_MESSAGES_PER_SEC, "")?,
            message_burst: ranged(&self.message_burst, 1, MAX_MESSAGE_BURST, "")?,
            connect_timeout: seconds(&self.connect_timeout_secs, MAX_CONNECT_TIMEOUT_SECS)?,
        })
    }
}

const MAX_CONNECTIONS: i64 = 100_000;
const MAX_IDLE_TIMEOUT_SECS: i64 = 3600;
const MAX_HEADER_TIMEOUT_SECS: i64 = 60;
const MAX_MESSAGE_KIB: i64 = 4096;
const MAX_SDP_KIB: i64 = 1024;
const MAX_MESSAGES_PER_SEC: i64 = 1000;
const MAX_MESSAGE_BURST: i64 = 10_000;
const MAX_CONNECT_TIMEOUT_SECS: i64 = 300;

struct AvatarDraft {
    name: Sourced<String>,
    width: Sourced<i64>,
    height: Sourced<i64>,
    fps: Sourced<i64>,
    bitrate_kbps: Sourced<i64>,
    encoder_threads: Sourced<i64>,
}

impl AvatarDraft {
    fn defaults() -> Self {
        AvatarDraft {
            name: Sourced::new(
                DEFAULT_AVATAR_NAME.to_string(),
                Origin::Default("avatar.name"),
            ),
            width: Sourced::new(DEFAULT_WIDTH.into(), Origin::Default("avatar.width")),
            height: Sourced::new(DEFAULT_HEIGHT.into(), Origin::Default("avatar.height")),
            fps: Sourced::new(DEFAULT_FPS.into(), Origin::Default("avatar.fps")),
            bitrate_kbps: Sourced::new(
                DEFAULT_BITRATE_KBPS.into(),
                Origin::Default("avatar.bitrate_kbps"),
            ),
            encoder_threads: Sourced::new(
                DEFAULT_ENCODER_THREADS.into(),
                Origin::Default("avatar.encoder_threads"),
            ),
        }
    }

    fn from_file(path: &Path, index: usize, file: FileAvatar) -> Self {
        let origin = |field: &str| file_origin(path, format!("avatar[{index}].{field}"));
        let mut draft = AvatarDraft::defaults();
        // A defaulted name can only clash with another entry, so blame this table, not the default.
        draft.name = match file.name {
            Some(name) => Sourced::new(name, origin("name")),
            None => Sourced::new(
                draft.name.value,
                file_origin(path, format!("avatar[{index}]")),
            ),
        };
        let numbers = [
            (file.width, &mut draft.width, "width"),
            (file.height, &mut draft.height, "height"),
            (file.fps, &mut draft.fps, "fps"),
            (file.bitrate_kbps, &mut draft.bitrate_kbps, "bitrate_kbps"),
            (
                file.encoder_threads,
                &mut draft.encoder_threads,
                "encoder_threads",
            ),
        ];
        for (value, slot, field) in numbers {
            if let Some(value) = value {
                *slot = Sourced::new(value, origin(field));
            }
        }
        draft
    }
}

fn file_origin(path: &Path, key: impl Into<String>) -> Origin {
    Origin::File {
        path: path.to_path_buf(),
        key: key.into(),
    }
}

fn invalid(origin: Origin, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin,
        message: message.into(),
    }
}

impl Draft {
    fn defaults() -> Self {
        Draft {
            public_ip: Sourced::new(DEFAULT_PUBLIC_IP, Origin::Default("webrtc_public_ip")),
            bind_ip: Sourced::new(DEFAULT_BIND_IP, Origin::Default("bind_ip")),
            signal_port: Sourced::new(DEFAULT_SIGNAL_PORT.into(), Origin::Default("signal_port")),
            port_min: Sourced::new(DEFAULT_PORT_MIN.into(), Origin::Default("webrtc_port_min")),
            port_max: Sourced::new(DEFAULT_PORT_MAX.into(), Origin::Default("webrtc_port_max")),
            port_map: Vec::new(),
            max_sessions: Sourced::new(
                DEFAULT_MAX_SESSIONS.into(),
                Origin::Default("max_sessions"),
            ),
            consent_timeout_secs: Sourced::new(
                DEFAULT_CONSENT_TIMEOUT_SECS.into(),
                Origin::Default("consent_timeout_secs"),
            ),
            fallback_avatar: None,
            avatars: Sourced::new(vec![AvatarDraft::defaults()], Origin::Default("avatar")),
            capture_dir: None,
            capture_max: Sourced::new(
                DEFAULT_CAPTURE_OFFERS_MAX.into(),
                Origin::Default("capture_offers_max"),
            ),
            sources: SourcesDraft::default(),
            token_secret_file: None,
            allowed_origins: Vec::new(),
            limits: LimitsDraft::defaults(),
            log_format: Sourced::new("text".to_string(), Origin::Default("log_format")),
        }
    }

    fn apply_file(&mut self, path: &Path, file: FileConfig) -> Result<(), ConfigError> {
        let origin = |key: &str| file_origin(path, key);
        if let Some(text) = file.webrtc_public_ip {
            let origin = origin("webrtc_public_ip");
            self.public_ip = Sourced::new(
                parse_ip(&text).map_err(|m| invalid(origin.clone(), m))?,
                origin,
            );
        }
        if let Some(text) = file.bind_ip {
            let origin = origin("bind_ip");
            self.bind_ip = Sourced::new(
                parse_ip(&text).map_err(|m| invalid(origin.clone(), m))?,
                origin,
            );
        }
        let numbers = [
            (file.signal_port, &mut self.signal_port, "signal_port"),
            (file.webrtc_port_min, &mut self.port_min, "webrtc_port_min"),
            (file.webrtc_port_max, &mut self.port_max, "webrtc_port_max"),
            (file.max_sessions, &mut self.max_sessions, "max_sessions"),
            (
                file.capture_offers_max,
                &mut self.capture_max,
                "capture_offers_max",
            ),
            (
                file.consent_timeout_secs,
                &mut self.consent_timeout_secs,
                "consent_timeout_secs",
            ),
            (
                file.max_connections,
                &mut self.limits.max_connections,
                "max_connections",
            ),
            (
                file.idle_timeout_secs,
                &mut self.limits.idle_timeout_secs,
                "idle_timeout_secs",
            ),
            (
                file.header_timeout_secs,
                &mut self.limits.header_timeout_secs,
                "header_timeout_secs",
            ),
            (
                file.max_message_kib,
                &mut self.limits.max_message_kib,
                "max_message_kib",
            ),
            (
                file.max_sdp_kib,
                &mut self.limits.max_sdp_kib,
                "max_sdp_kib",
            ),
            (
                file.messages_per_sec,
                &mut self.limits.messages_per_sec,
                "messages_per_sec",
            ),
            (
                file.message_burst,
                &mut self.limits.message_burst,
                "message_burst",
            ),
            (
                file.connect_timeout_secs,
                &mut self.limits.connect_timeout_secs,
                "connect_timeout_secs",
            ),
        ];
        for (value, slot, key) in numbers {
            if let Some(value) = value {
                *slot = Sourced::new(value, origin(key));
            }
        }
        if let Some(value) = file.max_sessions_per_avatar {
            self.limits.max_sessions_per_avatar =
                Some(Sourced::new(value, origin("max_sessions_per_avatar")));
        }
        if let Some(secret) = file.token_secret_file {
            self.token_secret_file = Some(Sourced::new(secret, origin("token_secret_file")));
        }
        if let Some(list) = file.allowed_origins {
            let items: Vec<(String, Origin)> = list
                .into_iter()
                .enumerate()
                .map(|(index, item)| (item, origin(&format!("allowed_origins[{index}]"))))
                .collect();
            self.allowed_origins = parse_origins(items, origin("allowed_origins"))?;
        }
        if let Some(format) = file.log_format {
            self.log_format = Sourced::new(format, origin("log_format"));
        }
        if let Some(map) = file.port_map {
            let mut entries = Vec::with_capacity(map.len());
            for (local, public) in map {
                let origin = origin(&format!("port_map.{local}"));
                let local = parse_integer(&local).ok_or_else(|| {
                    invalid(origin.clone(), format!("'{local}' is not a port number"))
                })?;
                entries.push(Sourced::new((local, public), origin));
            }
            self.port_map = entries;
        }
        if let Some(name) = file.fallback_avatar {
            self.fallback_avatar = Some(Sourced::new(name, origin("fallback_avatar")));
        }
        if let Some(dir) = file.capture_offers_dir {
            self.capture_dir = Some(Sourced::new(dir, origin("capture_offers_dir")));
        }
        self.sources
            .apply_file(path, file.ingest_socket, file.ingest_max_frame_mb);
        if let Some(avatars) = file.avatar {
            let avatars = avatars
                .into_iter()
                .enumerate()
                .map(|(index, avatar)| AvatarDraft::from_file(path, index, avatar))
                .collect();
            self.avatars = Sourced::new(avatars, origin("avatar"));
        }
        Ok(())
    }

    fn apply_flags(&mut self, cli: &Cli) -> Result<(), ConfigError> {
        let texts = [
            (Setting::PublicIp, cli.public_ip.as_deref(), "--public-ip"),
            (Setting::BindIp, cli.bind_ip.as_deref(), "--bind-ip"),
            (
                Setting::SignalPort,
                cli.signal_port.as_deref(),
                "--signal-port",
            ),
            (Setting::UdpPorts, cli.udp_ports.as_deref(), "--udp-ports"),
            (
                Setting::MaxSessions,
                cli.max_sessions.as_deref(),
                "--max-sessions",
            ),
            (
                Setting::ConsentTimeout,
                cli.consent_timeout_secs.as_deref(),
                "--consent-timeout-secs",
            ),
            (
                Setting::FallbackAvatar,
                cli.fallback_avatar.as_deref(),
                "--fallback-avatar",
            ),
            (
                Setting::CaptureDir,
                cli.capture_offers.as_deref(),
                "--capture-offers",
            ),
            (
                Setting::CaptureMax,
                cli.capture_max.as_deref(),
                "--capture-max",
            ),
            (
                Setting::TokenSecretFile,
                cli.token_secret_file.as_deref(),
                "--token-secret-file",
            ),
            (
                Setting::MaxSessionsPerAvatar,
                cli.max_sessions_per_avatar.as_deref(),
                "--max-sessions-per-avatar",
            ),
            (
                Setting::MaxConnections,
                cli.max_connections.as_deref(),
                "--max-connections",
            ),
            (
                Setting::IdleTimeout,
                cli.idle_timeout_secs.as_deref(),
                "--idle-timeout-secs",
            ),
            (
                Setting::HeaderTimeout,
                cli.header_timeout_secs.as_deref(),
                "--header-timeout-secs",
            ),
            (
                Setting::MaxMessageKib,
                cli.max_message_kib.as_deref(),
                "--max-message-kib",
            ),
            (
                Setting::MaxSdpKib,
                cli.max_sdp_kib.as_deref(),
                "--max-sdp-kib",
            ),
            (
                Setting::MessagesPerSec,
                cli.messages_per_sec.as_deref(),
                "--messages-per-sec",
            ),
            (
                Setting::MessageBurst,
                cli.message_burst.as_deref(),
                "--message-burst",
            ),
            (
                Setting::ConnectTimeout,
                cli.connect_timeout_secs.as_deref(),
                "--connect-timeout-secs",
            ),
            (
                Setting::LogFormat,
                cli.log_format.as_deref(),
                "--log-format",
            ),
        ];
        for (setting, text, flag) in texts {
            if let Some(text) = text {
                self.apply_text(setting, text, Origin::Flag(flag))?;
            }
        }
        if !cli.port_map.is_empty() {
            // Each occurrence may itself be a comma list, like the environment variable.
            self.apply_text(
                Setting::PortMap,
                &cli.port_map.join(","),
                Origin::Flag("--port-map"),
            )?;
        }
        if !cli.allowed_origin.is_empty() {
            // Each occurrence may itself be a comma list, like the environment variable.
            self.apply_text(
                Setting::AllowedOrigins,
                &cli.allowed_origin.join(","),
                Origin::Flag("--allowed-origin"),
            )?;
        }
        self.sources.apply_flags(cli)?;
        self.apply_avatar_flags(cli)
    }

    fn apply_avatar_flags(&mut self, cli: &Cli) -> Result<(), ConfigError> {
        let flags = [
            (cli.width.as_deref(), "--width"),
            (cli.height.as_deref(), "--height"),
            (cli.fps.as_deref(), "--fps"),
            (cli.bitrate_kbps.as_deref(), "--bitrate-kbps"),
            (cli.encoder_threads.as_deref(), "--encoder-threads"),
        ];
        let Some(first_flag) = flags.iter().find(|(text, _)| text.is_some()).map(|f| f.1) else {
            return Ok(());
        };
        let Some(avatar) = self
            .avatars
            .value
            .iter_mut()
            .find(|avatar| avatar.name.value == DEFAULT_AVATAR_NAME)
        else {
            // Silently adding the avatar back would change which avatars are served.
            return Err(invalid(
                Origin::Flag(first_flag),
                format!(
                    "no avatar named '{DEFAULT_AVATAR_NAME}' is configured to apply it to \
                     (the [[avatar]] list of the config file replaces the built-in one)"
                ),
            ));
        };
        let slots = [
            &mut avatar.width,
            &mut avatar.height,
            &mut avatar.fps,
            &mut avatar.bitrate_kbps,
            &mut avatar.encoder_threads,
        ];
        for ((text, flag), slot) in flags.into_iter().zip(slots) {
            if let Some(text) = text {
                let origin = Origin::Flag(flag);
                let value = parse_integer(text).ok_or_else(|| {
                    invalid(origin.clone(), format!("'{text}' is not a whole number"))
                })?;
                *slot = Sourced::new(value, origin);
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let vars = [
            (Setting::PublicIp, "PORTCAST_PUBLIC_IP"),
            (Setting::BindIp, "PORTCAST_BIND_IP"),
            (Setting::SignalPort, "PORTCAST_SIGNAL_PORT"),
            (Setting::UdpPorts, "PORTCAST_UDP_PORTS"),
            (Setting::PortMap, "PORTCAST_PORT_MAP"),
            (Setting::MaxSessions, "PORTCAST_MAX_SESSIONS"),
            (Setting::ConsentTimeout, "PORTCAST_CONSENT_TIMEOUT_SECS"),
            (Setting::FallbackAvatar, "PORTCAST_FALLBACK_AVATAR"),
            (Setting::TokenSecretFile, "PORTCAST_TOKEN_SECRET_FILE"),
            (Setting::AllowedOrigins, "PORTCAST_ALLOWED_ORIGINS"),
            (
                Setting::MaxSessionsPerAvatar,
                "PORTCAST_MAX_SESSIONS_PER_AVATAR",
            ),
            (Setting::MaxConnections, "PORTCAST_MAX_CONNECTIONS"),
            (Setting::IdleTimeout, "PORTCAST_IDLE_TIMEOUT_SECS"),
            (Setting::HeaderTimeout, "PORTCAST_HEADER_TIMEOUT_SECS"),
            (Setting::MaxMessageKib, "PORTCAST_MAX_MESSAGE_KIB"),
            (Setting::MaxSdpKib, "PORTCAST_MAX_SDP_KIB"),
            (Setting::MessagesPerSec, "PORTCAST_MESSAGES_PER_SEC"),
            (Setting::MessageBurst, "PORTCAST_MESSAGE_BURST"),
            (Setting::ConnectTimeout, "PORTCAST_CONNECT_TIMEOUT_SECS"),
            (Setting::LogFormat, "PORTCAST_LOG_FORMAT"),
        ];
        for (setting, var) in vars {
            // Container templates often define variables as empty rather than leaving them out.
            if let Some(text) = env(var).filter(|text| !text.trim().is_empty()) {
                self.apply_text(setting, &text, Origin::Env(var))?;
            }
        }
        self.sources.apply_env(env);
        Ok(())
    }

    fn apply_text(
        &mut self,
        setting: Setting,
        text: &str,
        origin: Origin,
    ) -> Result<(), ConfigError> {
        let fail = |message: String| invalid(origin.clone(), message);
        let number =
            |what: &str| parse_integer(text).ok_or_else(|| fail(format!("'{text}' is not {what}")));
        match setting {
            Setting::PublicIp => {
                self.public_ip = Sourced::new(parse_ip(text).map_err(fail)?, origin)
            }
            Setting::BindIp => self.bind_ip = Sourced::new(parse_ip(text).map_err(fail)?, origin),
            Setting::SignalPort => {
                self.signal_port = Sourced::new(number("a port number")?, origin)
            }
            Setting::MaxSessions => {
                self.max_sessions = Sourced::new(number("a whole number")?, origin)
            }
            Setting::ConsentTimeout => {
                self.consent_timeout_secs =
                    Sourced::new(number("a whole number of seconds")?, origin)
            }
            Setting::UdpPorts => {
                let (min, max) = parse_port_range(text).map_err(fail)?;
                self.port_min = Sourced::new(min, origin.clone());
                self.port_max = Sourced::new(max, origin);
            }
            Setting::PortMap => {
                self.port_map = parse_port_map(text)
                    .map_err(fail)?
                    .into_iter()
                    .map(|pair| Sourced::new(pair, origin.clone()))
                    .collect();
            }
            Setting::FallbackAvatar => {
                self.fallback_avatar = Some(Sourced::new(text.trim().to_string(), origin))
            }
            Setting::CaptureDir => self.capture_dir = Some(Sourced::new(text.to_string(), origin)),
            Setting::CaptureMax => {
                self.capture_max = Sourced::new(number("a whole number")?, origin)
            }
            Setting::TokenSecretFile => {
                self.token_secret_file = Some(Sourced::new(text.to_string(), origin))
            }
            Setting::AllowedOrigins => {
                let items = text
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| (item.to_string(), origin.clone()))
                    .collect();
                self.allowed_origins = parse_origins(items, origin)?;
            }
            Setting::MaxSessionsPerAvatar => {
                self.limits.max_sessions_per_avatar =
                    Some(Sourced::new(number("a whole number")?, origin))
            }
            Setting::MaxConnections => {
                self.limits.max_connections = Sourced::new(number("a whole number")?, origin)
            }
            Setting::IdleTimeout => {
                self.limits.idle_timeout_secs =
                    Sourced::new(number("a whole number of seconds")?, origin)
            }
            Setting::HeaderTimeout => {
                self.limits.header_timeout_secs =
                    Sourced::new(number("a whole number of seconds")?, origin)
            }
            Setting::MaxMessageKib => {
                self.limits.max_message_kib = Sourced::new(number("a whole number of KiB")?, origin)
            }
            Setting::MaxSdpKib => {
                self.limits.max_sdp_kib = Sourced::new(number("a whole number of KiB")?, origin)
            }
            Setting::MessagesPerSec => {
                self.limits.messages_per_sec = Sourced::new(number("a whole number")?, origin)
            }
            Setting::MessageBurst => {
                self.limits.message_burst = Sourced::new(number("a whole number")?, origin)
            }
            Setting::ConnectTimeout => {
                self.limits.connect_timeout_secs =
                    Sourced::new(number("a whole number of seconds")?, origin)
            }
            Setting::LogFormat => self.log_format = Sourced::new(text.to_string(), origin),
        }
        Ok(())
    }

    fn validate(self) -> Result<Config, ConfigError> {
        let public_ip = self.public_ip.value;
        if public_ip.is_unspecified() {
            return Err(invalid(
                self.public_ip.origin,
                format!(
                    "{public_ip} is unspecified; ICE candidates need an address viewers can reach"
                ),
            ));
        }
        let signal_port = port(&self.signal_port)?;
        let udp_ports = self.udp_ports()?;

        let avatars = self.avatars()?;
        let sources = self.sources.validate(&avatars)?;
        // The fallback may be any avatar that has a picture: a built-in one or
        // the avatar a `--source` file plays.
        let known: Vec<&str> = avatars
            .iter()
            .map(|a| a.name.as_str())
            .chain(sources.file.as_ref().map(|f| f.avatar.as_str()))
            .collect();
        let fallback_avatar = match self.fallback_avatar {
            None => None,
            Some(name) if !known.contains(&name.value.as_str()) => {
                return Err(invalid(
                    name.origin,
                    format!(
                        "no avatar named '{}' is configured (configured: {})",
                        name.value,
                        known.join(", ")
                    ),
                ));
            }
            Some(name) => Some(
                AvatarId::parse(&name.value).map_err(|e| invalid(name.origin, e.to_string()))?,
            ),
        };

        let token_secret_file = match self.token_secret_file {
            Some(file) if file.value.trim().is_empty() => {
                return Err(invalid(file.origin, "the file name is empty"))
            }
            other => other.map(|file| SecretFile {
                path: PathBuf::from(file.value),
                origin: file.origin,
            }),
        };
        let log_format = match self.log_format.value.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(invalid(
                    self.log_format.origin,
                    format!(
                        "'{}' is not a log format (text or json)",
                        self.log_format.value
                    ),
                ))
            }
        };

        Ok(Config {
            public_ip,
            bind_ip: self.bind_ip.value,
            signal_port,
            udp_ports,
            max_sessions: ranged(&self.max_sessions, 1, MAX_SESSIONS, "")?,
            consent_timeout: Duration::from_secs(ranged(
                &self.consent_timeout_secs,
                1,
                MAX_CONSENT_TIMEOUT_SECS,
                " seconds",
            )?),
            fallback_avatar,
            avatars,
            capture_offers_dir: match self.capture_dir {
                Some(dir) if dir.value.trim().is_empty() => {
                    return Err(invalid(dir.origin, "the folder name is empty"))
                }
                other => other.map(|dir| PathBuf::from(dir.value)),
            },
            capture_offers_max: ranged(&self.capture_max, 1, MAX_CAPTURE_OFFERS, " files")?,
            sources,
            token_secret_file,
            allowed_origins: self.allowed_origins,
            limits: self.limits.validate(&self.max_sessions)?,
            log_format,
        })
    }

    fn udp_ports(&self) -> Result<Vec<PortPair>, ConfigError> {
        let (min_v, max_v) = (&self.port_min, &self.port_max);
        let min = port(min_v)?;
        let max = port(max_v)?;
        let count = i64::from(max) - i64::from(min) + 1;
        let problem = if min > max {
            Some("has min > max".to_string())
        } else if count > MAX_UDP_PORTS {
            Some(format!(
                "has {count} ports; at most {MAX_UDP_PORTS} are supported"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            if min_v.origin == max_v.origin {
                return Err(invalid(
                    min_v.origin.clone(),
                    format!("'{min}-{max}' {problem}"),
                ));
            }
            // Blame the layer the operator actually wrote, not the default it combined with.
            let blamed = match min_v.origin {
                Origin::Default(_) => max_v.origin.clone(),
                _ => min_v.origin.clone(),
            };
            return Err(invalid(
                blamed,
                format!(
                    "port range {min}-{max} {problem} (min from {}, max from {})",
                    min_v.origin, max_v.origin
                ),
            ));
        }

        let mut mapped: BTreeMap<u16, Sourced<u16>> = BTreeMap::new();
        for entry in &self.port_map {
            let (local, public) = entry.value;
            let origin = &entry.origin;
            let local = u16::try_from(local)
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| {
                    invalid(
                        origin.clone(),
                        format!("local port {local} is not a valid port (1-65535)"),
                    )
                })?;
            let public = u16::try_from(public)
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| {
                    invalid(
                        origin.clone(),
                        format!("public port {public} is not a valid port (1-65535)"),
                    )
                })?;
            if !(min..=max).contains(&local) {
                return Err(invalid(
                    origin.clone(),
                    format!("local port {local} is outside the UDP port range {min}-{max}"),
                ));
            }
            if mapped
                .insert(local, Sourced::new(public, origin.clone()))
                .is_some()
            {
                return Err(invalid(
                    origin.clone(),
                    format!("local port {local} is mapped more than once"),
                ));
            }
        }

        let mut pairs = Vec::with_capacity(usize::from(max - min) + 1);
        let mut owner_of_public: HashMap<u16, u16> = HashMap::new();
        for local in min..=max {
            let public = mapped.get(&local).map_or(local, |entry| entry.value);
            if let Some(previous) = owner_of_public.insert(public, local) {
                // Identity entries are distinct, so at least one side of a clash is a map entry.
                let origin = mapped
                    .get(&local)
                    .or_else(|| mapped.get(&previous))
                    .map_or(Origin::Default("port_map"), |entry| entry.origin.clone());
                return Err(invalid(
                    origin,
                    format!("public port {public} would be announced for both local ports {previous} and {local}"),
                ));
            }
            pairs.push(PortPair { local, public });
        }
        Ok(pairs)
    }

    fn avatars(&self) -> Result<Vec<AvatarConfig>, ConfigError> {
        if self.avatars.value.is_empty() {
            return Err(invalid(
                self.avatars.origin.clone(),
                "at least one avatar must be configured",
            ));
        }
        let mut avatars: Vec<AvatarConfig> = Vec::with_capacity(self.avatars.value.len());
        for draft in &self.avatars.value {
            let name = AvatarId::parse(&draft.name.value)
                .map_err(|e| invalid(draft.name.origin.clone(), e.to_string()))?;
            if avatars.iter().any(|other| other.name == name) {
                return Err(invalid(
                    draft.name.origin.clone(),
                    format!("avatar name '{name}' is used more than once"),
                ));
            }
            let kbps: u32 = ranged(&draft.bitrate_kbps, 100, 50_000, " kbps")?;
            avatars.push(AvatarConfig {
                name,
                width: dimension(&draft.width, 3840)?,
                height: dimension(&draft.height, 2160)?,
                fps: ranged(&draft.fps, 1, 60, "")?,
                bitrate_bps: kbps * 1000,
                encoder_threads: ranged(&draft.encoder_threads, 1, 8, "")?,
            });
        }
        Ok(avatars)
    }
}

/// Where frames come from besides the configured test-pattern avatars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSettings {
    /// The socket renderers push frames to (`docs/ingest.md`).
    pub ingest_socket: IngestSocket,
    /// Largest frame a renderer may push, in bytes.
    pub ingest_max_frame_bytes: usize,
    /// An avatar played from a file (`--source y4m:FILE --avatar NAME`).
    pub file: Option<FileSource>,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            ingest_socket: IngestSocket::Default,
            ingest_max_frame_bytes: DEFAULT_INGEST_MAX_FRAME_MB << 20,
            file: None,
        }
    }
}

/// The ingest socket setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestSocket {
    /// Not set: `/run/portcast/ingest.sock`, or beside the config file when `/run/portcast` is not writable (resolved at start).
    Default,
    /// This path.
    At(PathBuf),
    /// `off`: no ingest socket.
    Off,
}

/// An avatar played from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    /// Avatar id viewers ask for.
    pub avatar: AvatarId,
    /// The Y4M file.
    pub path: PathBuf,
}

const DEFAULT_INGEST_MAX_FRAME_MB: usize = 16;
const MAX_INGEST_FRAME_MB: i64 = 256;

/// The source settings as given, each remembering its origin.
#[derive(Default)]
struct SourcesDraft {
    socket: Option<Sourced<String>>,
    max_frame_mb: Option<Sourced<i64>>,
    source: Option<Sourced<String>>,
    avatar: Option<Sourced<String>>,
}

impl SourcesDraft {
    fn apply_file(&mut self, path: &Path, socket: Option<String>, max_mb: Option<i64>) {
        if let Some(socket) = socket {
            self.socket = Some(Sourced::new(socket, file_origin(path, "ingest_socket")));
        }
        if let Some(mb) = max_mb {
            self.max_frame_mb = Some(Sourced::new(mb, file_origin(path, "ingest_max_frame_mb")));
        }
    }

    fn apply_flags(&mut self, cli: &Cli) -> Result<(), ConfigError> {
        if let Some(s) = &cli.ingest_socket {
            self.socket = Some(Sourced::new(s.clone(), Origin::Flag("--ingest-socket")));
        }
        if let Some(mb) = &cli.ingest_max_frame_mb {
            let origin = Origin::Flag("--ingest-max-frame-mb");
            let value = parse_integer(mb)
                .ok_or_else(|| invalid(origin.clone(), format!("'{mb}' is not a whole number")))?;
            self.max_frame_mb = Some(Sourced::new(value, origin));
        }
        if let Some(s) = &cli.source {
            self.source = Some(Sourced::new(s.clone(), Origin::Flag("--source")));
        }
        if let Some(a) = &cli.avatar {
            self.avatar = Some(Sourced::new(a.clone(), Origin::Flag("--avatar")));
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        if let Some(s) = env("PORTCAST_INGEST_SOCKET").filter(|t| !t.trim().is_empty()) {
            self.socket = Some(Sourced::new(s, Origin::Env("PORTCAST_INGEST_SOCKET")));
        }
    }

    fn validate(self, avatars: &[AvatarConfig]) -> Result<SourceSettings, ConfigError> {
        let ingest_socket = match self.socket {
            None => IngestSocket::Default,
            Some(s) if s.value.trim() == "off" => IngestSocket::Off,
            Some(s) if s.value.trim().is_empty() => {
                return Err(invalid(
                    s.origin,
                    "the socket path is empty (use 'off' to disable)",
                ))
            }
            Some(s) => IngestSocket::At(PathBuf::from(s.value)),
        };
        let ingest_max_frame_bytes = match self.max_frame_mb {
            None => DEFAULT_INGEST_MAX_FRAME_MB << 20,
            Some(mb) => ranged::<usize>(&mb, 1, MAX_INGEST_FRAME_MB, " MiB")? << 20,
        };
        let file = match (self.source, self.avatar) {
            (None, None) => None,
            (None, Some(a)) => {
                return Err(invalid(
                    a.origin,
                    "--avatar names the avatar of a --source; add --source y4m:FILE",
                ))
            }
            (Some(src), avatar) => {
                let Some(path) = src.value.strip_prefix("y4m:").filter(|p| !p.is_empty()) else {
                    return Err(invalid(
                        src.origin,
                        format!("'{}' is not a supported source; use y4m:FILE", src.value),
                    ));
                };
                let path = PathBuf::from(path);
                let (name, origin) = match avatar {
                    Some(a) => (a.value, a.origin),
                    None => (
                        path.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        src.origin,
                    ),
                };
                let name =
                    AvatarId::parse(&name).map_err(|e| invalid(origin.clone(), e.to_string()))?;
                if avatars.iter().any(|a| a.name == name) {
                    return Err(invalid(
                        origin,
                        format!("avatar '{name}' is already configured; give the --source another --avatar"),
                    ));
                }
                Some(FileSource { avatar: name, path })
            }
        };
        Ok(SourceSettings {
            ingest_socket,
            ingest_max_frame_bytes,
            file,
        })
    }
}

fn port(value: &Sourced<i64>) -> Result<u16, ConfigError> {
    u16::try_from(value.value)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| {
            invalid(
                value.origin.clone(),
                format!("{} is not a valid port (1-65535)", value.value),
            )
        })
}

fn ranged<T: TryFrom<i64>>(
    value: &Sourced<i64>,
    min: i64,
    max: i64,
    unit: &str,
) -> Result<T, ConfigError> {
    let error = || {
        invalid(
            value.origin.clone(),
            format!("{} is out of range ({min}-{max}{unit})", value.value),
        )
    };
    if !(min..=max).contains(&value.value) {
        return Err(error());
    }
    T::try_from(value.value).map_err(|_| error())
}

fn dimension(value: &Sourced<i64>, max: i64) -> Result<u32, ConfigError> {
    let pixels = ranged(value, 16, max, " pixels")?;
    // 4:2:0 chroma subsampling halves both dimensions, so the encoder needs even ones.
    if pixels % 2 != 0 {
        return Err(invalid(
            value.origin.clone(),
            format!("{pixels} must be even"),
        ));
    }
    Ok(pixels)
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not an IP address"))
}

/// Overflow is reported as "not a number" so the message echoes what the operator typed.
fn parse_integer(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

fn parse_port_range(text: &str) -> Result<(i64, i64), String> {
    let bad = || format!("'{text}' is not a port range (expected A-B or a single port)");
    match text.trim().split_once('-') {
        Some((min, max)) => Ok((
            parse_integer(min).ok_or_else(bad)?,
            parse_integer(max).ok_or_else(bad)?,
        )),
        None => {
            let port = parse_integer(text).ok_or_else(bad)?;
            Ok((port, port))
        }
    }
}

/// Checks and normalises origins, each `(text, where it was set)`; `*` alone allows any origin.
///
/// Browsers send `Origin` as `scheme://host[:port]`, lower-case, without a default port or a
/// trailing slash; entries are brought to that form so the server's exact comparison matches.
fn parse_origins(items: Vec<(String, Origin)>, list: Origin) -> Result<Vec<String>, ConfigError> {
    if items.iter().any(|(item, _)| item.trim() == "*") {
        if items.len() == 1 {
            return Ok(Vec::new());
        }
        return Err(invalid(
            list,
            "'*' allows any origin and cannot be combined with other origins",
        ));
    }
    let mut origins: Vec<String> = Vec::with_capacity(items.len());
    for (item, origin) in items {
        let normalised = normalise_origin(&item).map_err(|m| invalid(origin, m))?;
        if !origins.contains(&normalised) {
            origins.push(normalised);
        }
    }
    Ok(origins)
}

fn normalise_origin(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("'{text}' is not an origin ({why}; expected scheme://host[:port], e.g. https://app.example.com)")
    };
    let trimmed = text.trim();
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| bad("no scheme://"))?;
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(bad("bad scheme"));
    }
    if rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace) {
        return Err(bad(
            "only scheme, host and port are compared: no path, query or user",
        ));
    }
    // A bracketed IPv6 host has colons of its own.
    let (host, port) = match rest.strip_prefix('[') {
        Some(inner) => {
            let (address, after) = inner.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("bad IPv6 address"));
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (format!("[{}]", address.to_ascii_lowercase()), port)
        }
        None => {
            let (host, port) = match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !host_ok {
                return Err(bad("bad host"));
            }
            (host.to_ascii_lowercase(), port)
        }
    };
    let port = match port {
        None => None,
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
        ),
    };
    Ok(match (scheme.as_str(), port) {
        // Browsers leave the scheme's default port out of Origin.
        ("http" | "ws", Some(80)) | ("https" | "wss", Some(443)) | (_, None) => {
            format!("{scheme}://{host}")
        }
        (_, Some(port)) => format!("{scheme}://{host}:{port}"),
    })
}

fn parse_port_map(text: &str) -> Result<Vec<(i64, i64)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let bad = || format!("'{item}' is not a LOCAL:PUBLIC port pair");
            let (local, public) = item.split_once(':').ok_or_else(bad)?;
            Ok((
                parse_integer(local).ok_or_else(bad)?,
                parse_integer(public).ok_or_else(bad)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use std::net::Ipv6Addr;

    /// A TOML file in the temp dir, removed when dropped.
    struct TempToml(PathBuf);

    impl TempToml {
        fn new(name: &str, text: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("portcast-{}-{name}.toml", std::process::id()));
            std::fs::write(&path, text).expect("write temp config");
            TempToml(path)
        }

        fn arg(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempToml {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("portcast").chain(args.iter().copied()))
            .expect("valid test args")
    }

    fn id(name: &str) -> AvatarId {
        AvatarId::parse(name).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn env_of(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    fn pairs(list: &[(u16, u16)]) -> Vec<PortPair> {
        list.iter()
            .map(|&(local, public)| PortPair { local, public })
            .collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test IP")
    }

    #[test]
    fn defaults_are_the_documented_values() {
        let config = Config::default();
        assert_eq!(config.public_ip, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(config.bind_ip, IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)));
        assert_eq!(config.signal_port, 9000);
        assert_eq!(
            config.udp_ports,
            pairs(&[
                (10111, 10111),
                (10112, 10112),
                (10113, 10113),
                (10114, 10114),
                (10115, 10115)
            ])
        );
        assert_eq!(config.max_sessions, 200);
        assert_eq!(config.consent_timeout, Duration::from_secs(30));
        assert_eq!(config.fallback_avatar, None);
        assert_eq!(
            config.avatars,
            vec![AvatarConfig {
                name: id("test-pattern"),
                width: 1280,
                height: 720,
                fps: 30,
                bitrate_bps: 2_000_000,
                encoder_threads: 1,
            }]
        );
        assert_eq!(load(&cli(&[]), &no_env).expect("defaults load"), config);
    }

    #[test]
    fn help_states_every_default_and_the_precedence() {
        let help = Cli::command().render_help().to_string();
        for needle in [
            "[default: 127.0.0.1]",
            "[default: 0.0.0.0]",
            "[default: 9000]",
            "[default: 10111-10115]",
            "[default: the local port]",
            "[default: 200]",
            "[default: 30]",
            "[default: none, error \"unknown_avatar\"]",
            "[default: 1280]",
            "[default: 720]",
            "[default: 2000]",
            "[default: 1]",
            "[default: none, no token needed]",
            "[default: any]",
            "[default: --max-sessions]",
            "[default: 1024]",
            "[default: 5]",
            "[default: 256]",
            "[default: 64]",
            "[default: 10]",
            "[default: 20]",
            "[default: text]",
            "built-in defaults < config file (--config) < command-line flags < environment variables",
            "PORTCAST_CONSENT_TIMEOUT_SECS",
            "PORTCAST_TOKEN_SECRET_FILE",
            "PORTCAST_ALLOWED_ORIGINS",
            "PORTCAST_MAX_SESSIONS_PER_AVATAR",
            "PORTCAST_MAX_CONNECTIONS",
            "PORTCAST_IDLE_TIMEOUT_SECS",
            "PORTCAST_HEADER_TIMEOUT_SECS",
            "PORTCAST_MAX_MESSAGE_KIB",
            "PORTCAST_MAX_SDP_KIB",
            "PORTCAST_MESSAGES_PER_SEC",
            "PORTCAST_MESSAGE_BURST",
            "PORTCAST_CONNECT_TIMEOUT_SECS",
            "PORTCAST_LOG_FORMAT",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }

    #[test]
    fn seed_toml_keys_parse_into_config() {
        let file = TempToml::new(
            "seed",
            r#"
webrtc_public_ip = "203.0.113.7"
webrtc_port_min = 20000
webrtc_port_max = 20002
signal_port = 8443
bind_ip = "10.0.0.5"
max_sessions = 50
consent_timeout_secs = 12
fallback_avatar = "test-pattern"

[port_map]
20001 = 30001
"#,
        );
        let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("seed config loads");
        assert_eq!(
            config,
            Config {
                public_ip: ip("203.0.113.7"),
                bind_ip: ip("10.0.0.5"),
                signal_port: 8443,
                udp_ports: pairs(&[(20000, 20000), (20001, 30001), (20002, 20002)]),
                max_sessions: 50,
                consent_timeout: Duration::from_secs(12),
                fallback_avatar: Some(id("test-pattern")),
                avatars: vec![AvatarConfig::default()],
                capture_offers_dir: None,
                capture_offers_max: 1000,
                sources: SourceSettings::default(),
                token_secret_file: None,
                allowed_origins: Vec::new(),
                // Unless set, the per-avatar cap follows max_sessions.
                limits: Limits {
                    max_sessions_per_avatar: 50,
                    ..Limits::default()
                },
                log_format: LogFormat::Text,
            }
        );
    }

    #[test]
    fn avatar_tables_replace_the_default_list_and_fill_missing_keys() {
        let file = TempToml::new(
            "avatars",
            r#"
fallback_avatar = "lobby"
[[avatar]]
name = "lobby"
width = 640
height = 360
[[avatar]]
name = "hd.main_1"
fps = 60
bitrate_kbps = 6000
encoder_threads = 4
"#,
        );
        let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("avatars load");
        assert_eq!(
            config.avatars,
            vec![
                AvatarConfig {
                    name: id("lobby"),
                    width: 640,
                    height: 360,
                    ..AvatarConfig::default()
                },
                AvatarConfig {
                    name: id("hd.main_1"),
                    fps: 60,
                    bitrate_bps: 6_000_000,
                    encoder_threads: 4,
                    ..AvatarConfig::default()
                },
            ]
        );
        assert_eq!(config.fallback_avatar.as_deref(), Some("lobby"));
    }

    #[test]
    fn avatar_flags_modify_the_test_pattern_avatar() {
        let args = [
            "--width",
            "1920",
            "--height",
            "1080",
            "--fps",
            "25",
            "--bitrate-kbps",
            "4500",
            "--encoder-threads",
            "2",
        ];
        let config = load(&cli(&args), &no_env).expect("avatar flags load");
        assert_eq!(
            config.avatars,
            vec![AvatarConfig {
                name: id("test-pattern"),
                width: 1920,
                height: 1080,
                fps: 25,
                bitrate_bps: 4_500_000,
                encoder_threads: 2,
            }]
        );
    }

    #[test]
    fn flags_override_file() {
        let file = TempToml::new(
            "flags-over-file",
            r#"
webrtc_public_ip = "203.0.113.7"
bind_ip = "10.0.0.5"
signal_port = 8443
webrtc_port_min = 20000
webrtc_port_max = 20001
max_sessions = 50
consent_timeout_secs = 12
[port_map]
20000 = 30000
20001 = 30001
[[avatar]]
name = "test-pattern"
width = 640
fps = 10
[[avatar]]
name = "other"
"#,
        );
        let args = [
            "--config",
            &file.arg(),
            "--public-ip",
            "198.51.100.1",
            "--bind-ip",
            "::",
            "--signal-port",
            "9443",
            "--udp-ports",
            "40000-40002",
            "--port-map",
            "40000:50000",
            "--port-map",
            "40001:50001",
            "--max-sessions",
            "7",
            "--consent-timeout-secs",
            "5",
            "--fallback-avatar",
            "other",
            "--width",
            "800",
        ];
        let config = load(&cli(&args), &no_env).expect("flags over file load");
        assert_eq!(config.public_ip, ip("198.51.100.1"));
        assert_eq!(config.bind_ip, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(config.signal_port, 9443);
        // The flag's port map replaces the file's map as a whole.
        assert_eq!(
            config.udp_ports,
            pairs(&[(40000, 50000), (40001, 50001), (40002, 40002)])
        );
        assert_eq!(config.max_sessions, 7);
        assert_eq!(config.consent_timeout, Duration::from_secs(5));
        assert_eq!(config.fallback_avatar.as_deref(), Some("other"));
        // Only the flagged field changes; the file's other avatar fields survive.
        assert_eq!((config.avatars[0].width, config.avatars[0].fps), (800, 10));
        assert_eq!(config.avatars[1].name, "other");
    }

    #[test]
    fn fallback_avatar_may_be_the_avatar_of_a_source_file() {
        let args = [
            "--source",
            "y4m:/clips/lecture.y4m",
            "--avatar",
            "clip",
            "--fallback-avatar",
            "clip",
        ];
        let config = load(&cli(&args), &no_env).expect("a --source avatar is a fallback");
        assert_eq!(config.fallback_avatar.as_deref(), Some("clip"));
        assert_eq!(
            config.sources.file.map(|f| f.avatar).as_deref(),
            Some("clip")
        );
    }

    #[test]
    fn env_overrides_flags() {
        let args = [
            "--public-ip",
            "198.51.100.1",
            "--bind-ip",
            "10.0.0.5",
            "--signal-port",
            "9443",
            "--udp-ports",
            "40000-40002",
            "--port-map",
            "40000:50000",
            "--max-sessions",
            "7",
            "--consent-timeout-secs",
            "5",
            "--fallback-avatar",
            "nope",
        ];
        let env = env_of(&[
            ("PORTCAST_PUBLIC_IP", "2001:db8::1"),
            ("PORTCAST_BIND_IP", "192.0.2.9"),
            ("PORTCAST_SIGNAL_PORT", "7000"),
            ("PORTCAST_UDP_PORTS", "10111"),
            ("PORTCAST_PORT_MAP", "10111:20111, "),
            ("PORTCAST_MAX_SESSIONS", "3"),
            ("PORTCAST_CONSENT_TIMEOUT_SECS", "60"),
            ("PORTCAST_FALLBACK_AVATAR", "test-pattern"),
        ]);
        let config = load(&cli(&args), &env).expect("env over flags load");
        assert_eq!(
            config,
            Config {
                public_ip: ip("2001:db8::1"),
                bind_ip: ip("192.0.2.9"),
                signal_port: 7000,
                udp_ports: pairs(&[(10111, 20111)]),
                max_sessions: 3,
                consent_timeout: Duration::from_secs(60),
                fallback_avatar: Some(id("test-pattern")),
                avatars: vec![AvatarConfig::default()],
                capture_offers_dir: None,
                capture_offers_max: 1000,
                sources: SourceSettings::default(),
                token_secret_file: None,
                allowed_origins: Vec::new(),
                limits: Limits {
                    max_sessions_per_avatar: 3,
                    ..Limits::default()
                },
                log_format: LogFormat::Text,
            }
        );
    }

    #[test]
    fn env_overrides_file_and_empty_env_is_unset() {
        let file = TempToml::new("env-over-file", "signal_port = 8443\nmax_sessions = 50\n");
        let env = env_of(&[
            ("PORTCAST_SIGNAL_PORT", "7000"),
            ("PORTCAST_MAX_SESSIONS", "  "),
        ]);
        let config = load(&cli(&["--config", &file.arg()]), &env).expect("env over file load");
        assert_eq!((config.signal_port, config.max_sessions), (7000, 50));
    }

    #[test]
    fn offer_capture_is_off_by_default_and_set_by_file_or_flags() {
        let config = load(&cli(&[]), &no_env).expect("defaults load");
        assert_eq!(
            (config.capture_offers_dir, config.capture_offers_max),
            (None, 1000)
        );
        let file = TempToml::new(
            "capture",
            "capture_offers_dir = \"/var/tmp/offers\"\ncapture_offers_max = 20\n",
        );
        let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
        assert_eq!(
            (config.capture_offers_dir, config.capture_offers_max),
            (Some(PathBuf::from("/var/tmp/offers")), 20)
        );
        let args = [
            "--config",
            &file.arg(),
            "--capture-offers",
            "here",
            "--capture-max",
            "5",
        ];
        let config = load(&cli(&args), &no_env).expect("flags load");
        assert_eq!(
            (config.capture_offers_dir, config.capture_offers_max),
            (Some(PathBuf::from("here")), 5)
        );
    }

    #[test]
    fn port_map_flag_accepts_comma_lists() {
        let config = load(
            &cli(&[
                "--port-map",
                "10111:20111,10112:20112",
                "--port-map",
                "10115:20115",
            ]),
            &no_env,
        )
        .expect("port map loads");
        assert_eq!(
            config.udp_ports,
            pairs(&[
                (10111, 20111),
                (10112, 20112),
                (10113, 10113),
                (10114, 10114),
                (10115, 20115)
            ])
        );
    }

    #[test]
    fn file_errors_name_the_file_and_the_problem() {
        let missing = Path::new("/nonexistent-portcast/y.toml");
        let err = load(&cli(&["--config", "/nonexistent-portcast/y.toml"]), &no_env)
            .expect_err("missing file");
        assert_eq!(
            err.to_string(),
            format!(
                "config file {} could not be read: No such file or directory",
                missing.display()
            )
        );

        let file = TempToml::new("unknown-key", "signal_port = 1\nwebrtc_port_mn = 5\n");
        let err = load(&cli(&["--config", &file.arg()]), &no_env)
            .expect_err("unknown key")
            .to_string();
        assert!(
            err.starts_with(&format!("config file {}: ", file.arg())),
            "{err}"
        );
        assert!(err.contains("unknown field `webrtc_port_mn`"), "{err}");
        assert!(err.contains("line 2"), "{err}");

        let file = TempToml::new(
            "unknown-avatar-key",
            "[[avatar]]\nname = \"a\"\ncolour = \"red\"\n",
        );
        let err = load(&cli(&["--config", &file.arg()]), &no_env)
            .expect_err("unknown avatar key")
            .to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");

        let file = TempToml::new("syntax", "signal_port = \n");
        let err = load(&cli(&["--config", &file.arg()]), &no_env)
            .expect_err("syntax")
            .to_string();
        assert!(
            err.starts_with(&format!("config file {}: ", file.arg())),
            "{err}"
        );
        assert!(err.contains("line 1, column"), "{err}");

        let file = TempToml::new("wrong-type", "max_sessions = \"many\"\n");
        let err = load(&cli(&["--config", &file.arg()]), &no_env)
            .expect_err("wrong type")
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("max_sessions"),
            "{err}"
        );
    }

    /// (TOML file or "" for none, flags, environment, expected message prefix; `{file}` is the path)
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        &'static str,
    );

    // One case per line reads better than rustfmt's vertical layout.
    #[rustfmt::skip]
    const INVALID_CASES: &[Case] = &[
        ("webrtc_port_min = 70000", &[], &[], "{file}: key 'webrtc_port_min': 70000 is not a valid port (1-65535)"),
        ("webrtc_port_max = 0", &[], &[], "{file}: key 'webrtc_port_max': 0 is not a valid port (1-65535)"),
        ("webrtc_port_min = -3", &[], &[], "{file}: key 'webrtc_port_min': -3 is not a valid port (1-65535)"),
        ("", &["--udp-ports", "10115-10111"], &[], "--udp-ports: '10115-10111' has min > max"),
        ("", &["--udp-ports", "0-5"], &[], "--udp-ports: 0 is not a valid port (1-65535)"),
        ("", &["--udp-ports", "ten"], &[], "--udp-ports: 'ten' is not a port range (expected A-B or a single port)"),
        ("", &[], &[("PORTCAST_UDP_PORTS", "10000-10064")], "environment PORTCAST_UDP_PORTS: '10000-10064' has 65 ports; at most 64 are supported"),
        ("webrtc_port_min = 20000", &[], &[], "{file}: key 'webrtc_port_min': port range 20000-10115 has min > max (min from {file}: key 'webrtc_port_min', max from built-in default for 'webrtc_port_max')"),
        ("webrtc_port_min = 10116\nwebrtc_port_max = 10111", &[], &[], "{file}: key 'webrtc_port_min': port range 10116-10111 has min > max"),
        ("", &["--signal-port", "0"], &[], "--signal-port: 0 is not a valid port (1-65535)"),
        ("", &[], &[("PORTCAST_SIGNAL_PORT", "abc")], "environment PORTCAST_SIGNAL_PORT: 'abc' is not a port number"),
        ("signal_port = 65536", &[], &[], "{file}: key 'signal_port': 65536 is not a valid port (1-65535)"),
        ("[port_map]\n10200 = 20200", &[], &[], "{file}: key 'port_map.10200': local port 10200 is outside the UDP port range 10111-10115"),
        ("[port_map]\nabc = 20200", &[], &[], "{file}: key 'port_map.abc': 'abc' is not a port number"),
        ("[port_map]\n10111 = 70000", &[], &[], "{file}: key 'port_map.10111': public port 70000 is not a valid port (1-65535)"),
        ("", &["--port-map", "10111:10112"], &[], "--port-map: public port 10112 would be announced for both local ports 10111 and 10112"),
        ("", &["--port-map", "10111:1", "--port-map", "10111:2"], &[], "--port-map: local port 10111 is mapped more than once"),
        ("", &[], &[("PORTCAST_PORT_MAP", "10111=20111")], "environment PORTCAST_PORT_MAP: '10111=20111' is not a LOCAL:PUBLIC port pair"),
        ("", &["--public-ip", "0.0.0.0"], &[], "--public-ip: 0.0.0.0 is unspecified; ICE candidates need an address viewers can reach"),
        ("webrtc_public_ip = \"::\"", &[], &[], "{file}: key 'webrtc_public_ip': :: is unspecified"),
        ("", &[], &[("PORTCAST_PUBLIC_IP", "example.com")], "environment PORTCAST_PUBLIC_IP: 'example.com' is not an IP address"),
        ("bind_ip = \"10.0.0\"", &[], &[], "{file}: key 'bind_ip': '10.0.0' is not an IP address"),
        ("max_sessions = 0", &[], &[], "{file}: key 'max_sessions': 0 is out of range (1-10000)"),
        ("", &["--max-sessions", "10001"], &[], "--max-sessions: 10001 is out of range (1-10000)"),
        ("", &[], &[("PORTCAST_MAX_SESSIONS", "-1")], "environment PORTCAST_MAX_SESSIONS: -1 is out of range (1-10000)"),
        ("", &["--consent-timeout-secs", "0"], &[], "--consent-timeout-secs: 0 is out of range (1-86400 seconds)"),
        ("", &[], &[("PORTCAST_CONSENT_TIMEOUT_SECS", "1.5")], "environment PORTCAST_CONSENT_TIMEOUT_SECS: '1.5' is not a whole number of seconds"),
        ("", &["--fallback-avatar", "ghost"], &[], "--fallback-avatar: no avatar named 'ghost' is configured (configured: test-pattern)"),
        ("fallback_avatar = \"ghost\"", &[], &[], "{file}: key 'fallback_avatar': no avatar named 'ghost' is configured"),
        ("capture_offers_max = 0", &[], &[], "{file}: key 'capture_offers_max': 0 is out of range (1-1000000 files)"),
        ("", &["--capture-max", "lots"], &[], "--capture-max: 'lots' is not a whole number"),
        ("", &["--capture-offers", " "], &[], "--capture-offers: the folder name is empty"),
        ("avatar = []", &[], &[], "{file}: key 'avatar': at least one avatar must be configured"),
        ("[[avatar]]\nname = \"a b\"", &[], &[], "{file}: key 'avatar[0].name': 'a b' is not a valid avatar name (1-64 characters from A-Z a-z 0-9 _ . -)"),
        ("[[avatar]]\nname = \"\"", &[], &[], "{file}: key 'avatar[0].name': '' is not a valid avatar name"),
        ("[[avatar]]\nname = \"a\"\n[[avatar]]\nname = \"a\"", &[], &[], "{file}: key 'avatar[1].name': avatar name 'a' is used more than once"),
        ("[[avatar]]\n[[avatar]]", &[], &[], "{file}: key 'avatar[1]': avatar name 'test-pattern' is used more than once"),
        ("[[avatar]]\nwidth = 1281", &[], &[], "{file}: key 'avatar[0].width': 1281 must be even"),
        ("[[avatar]]\nwidth = 3842", &[], &[], "{file}: key 'avatar[0].width': 3842 is out of range (16-3840 pixels)"),
        ("", &["--height", "2162"], &[], "--height: 2162 is out of range (16-2160 pixels)"),
        ("", &["--height", "8"], &[], "--height: 8 is out of range (16-2160 pixels)"),
        ("", &["--fps", "61"], &[], "--fps: 61 is out of range (1-60)"),
        ("[[avatar]]\nfps = 0", &[], &[], "{file}: key 'avatar[0].fps': 0 is out of range (1-60)"),
        ("", &["--bitrate-kbps", "99"], &[], "--bitrate-kbps: 99 is out of range (100-50000 kbps)"),
        ("[[avatar]]\nbitrate_kbps = 50001", &[], &[], "{file}: key 'avatar[0].bitrate_kbps': 50001 is out of range (100-50000 kbps)"),
        ("", &["--encoder-threads", "9"], &[], "--encoder-threads: 9 is out of range (1-8)"),
        ("", &["--encoder-threads", "x"], &[], "--encoder-threads: 'x' is not a whole number"),
        ("token_secret_file = \" \"", &[], &[], "{file}: key 'token_secret_file': the file name is empty"),
        ("", &["--token-secret-file", ""], &[], "--token-secret-file: the file name is empty"),
        ("allowed_origins = [\"https://a.example\", \"a.example\"]", &[], &[], "{file}: key 'allowed_origins[1]': 'a.example' is not an origin (no scheme://;"),
        ("allowed_origins = [\"*\", \"https://a.example\"]", &[], &[], "{file}: key 'allowed_origins': '*' allows any origin and cannot be combined"),
        ("", &["--allowed-origin", "https://a.example/app"], &[], "--allowed-origin: 'https://a.example/app' is not an origin (only scheme, host and port"),
        ("", &[], &[("PORTCAST_ALLOWED_ORIGINS", "https://a.example,https://b.example:99999")], "environment PORTCAST_ALLOWED_ORIGINS: 'https://b.example:99999' is not an origin (bad port;"),
        ("max_sessions_per_avatar = 0", &[], &[], "{file}: key 'max_sessions_per_avatar': 0 is out of range (1-10000)"),
        ("", &["--max-sessions-per-avatar", "10001"], &[], "--max-sessions-per-avatar: 10001 is out of range (1-10000)"),
        ("", &[], &[("PORTCAST_MAX_SESSIONS_PER_AVATAR", "x")], "environment PORTCAST_MAX_SESSIONS_PER_AVATAR: 'x' is not a whole number"),
        ("max_connections = 15", &[], &[], "{file}: key 'max_connections': 15 is out of range (16-100000)"),
        ("", &[], &[("PORTCAST_MAX_CONNECTIONS", "100001")], "environment PORTCAST_MAX_CONNECTIONS: 100001 is out of range (16-100000)"),
        ("idle_timeout_secs = 0", &[], &[], "{file}: key 'idle_timeout_secs': 0 is out of range (1-3600 seconds)"),
        ("", &["--idle-timeout-secs", "3601"], &[], "--idle-timeout-secs: 3601 is out of range (1-3600 seconds)"),
        ("header_timeout_secs = 61", &[], &[], "{file}: key 'header_timeout_secs': 61 is out of range (1-60 seconds)"),
        ("", &[], &[("PORTCAST_HEADER_TIMEOUT_SECS", "0.5")], "environment PORTCAST_HEADER_TIMEOUT_SECS: '0.5' is not a whole number of seconds"),
        ("max_message_kib = 3", &[], &[], "{file}: key 'max_message_kib': 3 is out of range (4-4096 KiB)"),
        ("", &["--max-message-kib", "4097"], &[], "--max-message-kib: 4097 is out of range (4-4096 KiB)"),
        ("max_sdp_kib = 1025", &[], &[], "{file}: key 'max_sdp_kib': 1025 is out of range (4-1024 KiB)"),
        ("", &["--max-sdp-kib", "300"], &[], "--max-sdp-kib: max_sdp_kib 300 is larger than max_message_kib 256"),
        ("max_message_kib = 32", &[], &[], "{file}: key 'max_message_kib': max_sdp_kib 64 is larger than max_message_kib 32"),
        ("", &[], &[("PORTCAST_MAX_SDP_KIB", "3")], "environment PORTCAST_MAX_SDP_KIB: 3 is out of range (4-1024 KiB)"),
        ("messages_per_sec = 0", &[], &[], "{file}: key 'messages_per_sec': 0 is out of range (1-1000)"),
        ("", &["--messages-per-sec", "1001"], &[], "--messages-per-sec: 1001 is out of range (1-1000)"),
        ("message_burst = 10001", &[], &[], "{file}: key 'message_burst': 10001 is out of range (1-10000)"),
        ("", &[], &[("PORTCAST_MESSAGE_BURST", "0")], "environment PORTCAST_MESSAGE_BURST: 0 is out of range (1-10000)"),
        ("connect_timeout_secs = 301", &[], &[], "{file}: key 'connect_timeout_secs': 301 is out of range (1-300 seconds)"),
        ("", &["--connect-timeout-secs", "0"], &[], "--connect-timeout-secs: 0 is out of range (1-300 seconds)"),
        ("log_format = \"xml\"", &[], &[], "{file}: key 'log_format': 'xml' is not a log format (text or json)"),
        ("", &["--log-format", "yaml"], &[], "--log-format: 'yaml' is not a log format (text or json)"),
        ("", &[], &[("PORTCAST_LOG_FORMAT", "JSONL")], "environment PORTCAST_LOG_FORMAT: 'JSONL' is not a log format"),
        ("[[avatar]]\nname = \"lobby\"", &["--fps", "20"], &[], "--fps: no avatar named 'test-pattern' is configured"),
    ];

    #[test]
    fn validation_errors_name_source_and_key() {
        for (index, &(toml_text, args, env, expected)) in INVALID_CASES.iter().enumerate() {
            let file = TempToml::new(&format!("case{index}"), toml_text);
            let mut full: Vec<&str> = Vec::new();
            let path = file.arg();
            if !toml_text.is_empty() {
                full.extend(["--config", &path]);
            }
            full.extend(args);
            let lookup = env_of(env);
            let expected = expected.replace("{file}", &path);
            match load(&cli(&full), &lookup) {
                Ok(config) => panic!("case {index}: expected error {expected:?}, got {config:?}"),
                Err(err) => {
                    let message = err.to_string();
                    assert!(
                        message.starts_with(&expected),
                        "case {index}: {message:?} does not start with {expected:?}"
                    );
                    assert!(
                        matches!(err, ConfigError::Invalid { .. }),
                        "case {index}: {err:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn ingest_socket_and_file_source_resolve_from_every_layer() {
        let config = load(&cli(&[]), &no_env).expect("defaults load");
        assert_eq!(config.sources, SourceSettings::default());
        assert_eq!(config.sources.ingest_max_frame_bytes, 16 << 20);
        let file = TempToml::new(
            "ingest",
            "ingest_socket = \"/tmp/r.sock\"\ningest_max_frame_mb = 4\n",
        );
        let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
        assert_eq!(
            config.sources.ingest_socket,
            IngestSocket::At("/tmp/r.sock".into())
        );
        assert_eq!(config.sources.ingest_max_frame_bytes, 4 << 20);
        let env = env_of(&[("PORTCAST_INGEST_SOCKET", "off")]);
        let config = load(&cli(&["--ingest-socket", "/tmp/x.sock"]), &env).expect("env loads");
        assert_eq!(config.sources.ingest_socket, IngestSocket::Off);
        let config =
            load(&cli(&["--source", "y4m:/data/talk.y4m"]), &no_env).expect("source loads");
        assert_eq!(
            config.sources.file,
            Some(FileSource {
                avatar: id("talk"),
                path: "/data/talk.y4m".into()
            })
        );
        let error = |args: &[&str]| load(&cli(args), &no_env).unwrap_err().to_string();
        assert_eq!(
            error(&["--source", "mp4:/x.mp4"]),
            "--source: 'mp4:/x.mp4' is not a supported source; use y4m:FILE"
        );
        assert!(error(&["--avatar", "a"]).starts_with("--avatar: --avatar names the avatar"));
        assert!(
            error(&["--source", "y4m:/x.y4m", "--avatar", "test-pattern"])
                .contains("already configured")
        );
        assert_eq!(
            error(&["--ingest-max-frame-mb", "0"]),
            "--ingest-max-frame-mb: 0 is out of range (1-256 MiB)"
        );
    }

    /// A file in the temp dir with the given bytes, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!("portcast-{}-{name}", std::process::id()));
            std::fs::write(&path, bytes).expect("write temp file");
            TempFile(path)
        }

        fn arg(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        // The token subcommand's --avatar shadows the global one; clap must accept that.
        Cli::command().debug_assert();
        let parsed = cli(&[
            "token",
            "--secret-file",
            "/s",
            "--session",
            "abc",
            "--avatar",
            "tutor",
        ]);
        assert_eq!(
            parsed.command,
            Some(crate::cli::Command::Token {
                secret_file: "/s".into(),
                session: "abc".into(),
                avatar: "tutor".into(),
                ttl_secs: "3600".into(),
            })
        );
    }

    #[test]
    fn limits_resolve_from_every_layer() {
        let config = load(&cli(&[]), &no_env).expect("defaults load");
        assert_eq!(config.limits, Limits::default());
        assert_eq!(
            config.limits,
            Limits {
                max_sessions_per_avatar: 200,
                max_connections: 1024,
                idle_timeout: Duration::from_secs(30),
                header_timeout: Duration::from_secs(5),
                max_message_bytes: 256 * 1024,
                max_sdp_bytes: 64 * 1024,
                messages_per_sec: 10,
                message_burst: 20,
                connect_timeout: Duration::from_secs(20),
            }
        );
        // The per-avatar cap follows max_sessions from whichever layer sets it.
        let config = load(&cli(&["--max-sessions", "40"]), &no_env).expect("flag loads");
        assert_eq!(config.limits.max_sessions_per_avatar, 40);

        let file = TempToml::new(
            "limits",
            r#"
max_sessions_per_avatar = 11
max_connections = 100
idle_timeout_secs = 12
header_timeout_secs = 3
max_message_kib = 128
max_sdp_kib = 32
messages_per_sec = 4
message_burst = 8
connect_timeout_secs = 15
"#,
        );
        let from_file = Limits {
            max_sessions_per_avatar: 11,
            max_connections: 100,
            idle_timeout: Duration::from_secs(12),
            header_timeout: Duration::from_secs(3),
            max_message_bytes: 128 * 1024,
            max_sdp_bytes: 32 * 1024,
            messages_per_sec: 4,
            message_burst: 8,
            connect_timeout: Duration::from_secs(15),
        };
        let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
        assert_eq!(config.limits, from_file);

        let flags = [
            "--config",
            &file.arg(),
            "--max-sessions-per-avatar",
            "12",
            "--max-connections",
            "200",
            "--idle-timeout-secs",
            "60",
            "--header-timeout-secs",
            "7",
            "--max-message-kib",
            "512",
            "--max-sdp-kib",
            "100",
            "--messages-per-sec",
            "5",
            "--message-burst",
            "9",
            "--connect-timeout-secs",
            "25",
        ];
        let from_flags = Limits {
            max_sessions_per_avatar: 12,
            max_connections: 200,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(7),
            max_message_bytes: 512 * 1024,
            max_sdp_bytes: 100 * 1024,
            messages_per_sec: 5,
            message_burst: 9,
            connect_timeout: Duration::from_secs(25),
        };
        let config = load(&cli(&flags), &no_env).expect("flags load");
        assert_eq!(config.limits, from_flags);

        let env = env_of(&[
            ("PORTCAST_MAX_SESSIONS_PER_AVATAR", "13"),
            ("PORTCAST_MAX_CONNECTIONS", "300"),
            ("PORTCAST_IDLE_TIMEOUT_SECS", "90"),
            ("PORTCAST_HEADER_TIMEOUT_SECS", "2"),
            ("PORTCAST_MAX_MESSAGE_KIB", "64"),
            ("PORTCAST_MAX_SDP_KIB", "64"),
            ("PORTCAST_MESSAGES_PER_SEC", "6"),
            ("PORTCAST_MESSAGE_BURST", "30"),
            // Empty counts as unset: the flag's value stays.
            ("PORTCAST_CONNECT_TIMEOUT_SECS", ""),
        ]);
        let config = load(&cli(&flags), &env).expect("env loads");
        assert_eq!(
            config.limits,
            Limits {
                max_sessions_per_avatar: 13,
                max_connections: 300,
                idle_timeout: Duration::from_secs(90),
                header_timeout: Duration::from_secs(2),
                max_message_bytes: 64 * 1024,
                max_sdp_bytes: 64 * 1024,
                messages_per_sec: 6,
                message_burst: 30,
                connect_timeout: Duration::from_secs(25),
            }
        );
    }

    #[test]
    fn token_secret_file_resolves_from_every_layer_and_is_read_at_start() {
        let config = load(&cli(&[]), &no_env).expect("defaults load");
        assert_eq!(config.token_secret_file, None);

        let secret = TempFile::new("secret", b"0123456789abcdef-secret\n");
        let file = TempToml::new(
            "secret",
            &format!("token_secret_file = \"{}\"\n", secret.arg()),
        );
        let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
        let from_file = config.token_secret_file.expect("secret file set");
        assert_eq!(from_file.path, secret.0);
        assert_eq!(from_file.origin, file_origin(&file.0, "token_secret_file"));
        let key = from_file.read().expect("secret reads");
        let token = key.mint("s", "a", 10);
        let reference = portcast_engine::auth::TokenKey::new(b"0123456789abcdef-secret")
            .expect("reference key");
        assert_eq!(reference.verify(&token, "s", "a", 9), Ok(()));

        let args = [
            "--config",
            &file.arg(),
            "--token-secret-file",
            "/flag/secret",
        ];
        let config = load(&cli(&args), &no_env).expect("flag loads");
        let from_flag = config.token_secret_file.expect("secret file set");
        assert_eq!(from_flag.path, PathBuf::from("/flag/secret"));
        assert_eq!(
            from_flag.read().expect_err("missing").to_string(),
            "--token-secret-file: cannot read the secret file /flag/secret: No such file or directory"
        );

        let short = TempFile::new("short-secret", b"fifteen-bytes!!\n");
        let short_path = short.arg();
        let env =
            move |key: &str| (key == "PORTCAST_TOKEN_SECRET_FILE").then(|| short_path.clone());
        let config = load(&cli(&args), &env).expect("env loads");
        let from_env = config.token_secret_file.expect("secret file set");
        assert_eq!(from_env.path, short.0);
        let message = from_env.read().expect_err("short secret").to_string();
        assert_eq!(
            message,
            format!(
                "environment PORTCAST_TOKEN_SECRET_FILE: the secret in {} is 15 bytes; at least 16 \
                 are required (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
                short.arg()
            )
        );
        assert!(!message.contains("fifteen"), "the secret leaked: {message}");
    }

    #[test]
    fn allowed_origins_resolve_from_every_layer_and_are_normalised() {
        let config = load(&cli(&[]), &no_env).expect("defaults load");
        assert!(config.allowed_origins.is_empty());

        let file = TempToml::new(
            "origins",
            "allowed_origins = [\"https://App.Example.com/\", \"http://localhost:9000\"]\n",
        );
        let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
        assert_eq!(
            config.allowed_origins,
            ["https://app.example.com", "http://localhost:9000"]
        );

        // The flag's list replaces the file's as a whole; occurrences may be comma lists.
        let args = [
            "--config",
            &file.arg(),
            "--allowed-origin",
            "https://a.example:443,http://[::1]:8080",
            "--allowed-origin",
            "https://b.example:8443",
        ];
        let config = load(&cli(&args), &no_env).expect("flags load");
        assert_eq!(
            config.allowed_origins,
            [
                "https://a.example",
                "http://[::1]:8080",
                "https://b.example:8443"
            ]
        );

        let env = env_of(&[("PORTCAST_ALLOWED_ORIGINS", " https://c.example , ")]);
        let config = load(&cli(&args), &env).expect("env loads");
        assert_eq!(config.allowed_origins, ["https://c.example"]);

        // `*` alone puts back the default (any origin) over a lower layer's list.
        let env = env_of(&[("PORTCAST_ALLOWED_ORIGINS", "*")]);
        let config = load(&cli(&args), &env).expect("env loads");
        assert!(config.allowed_origins.is_empty());
    }

    #[test]
    fn log_format_resolves_from_every_layer() {
        let config = load(&cli(&[]), &no_env).expect("defaults load");
        assert_eq!(config.log_format, LogFormat::Text);
        let file = TempToml::new("log-format", "log_format = \"json\"\n");
        let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
        assert_eq!(config.log_format, LogFormat::Json);
        let args = ["--config", &file.arg(), "--log-format", "text"];
        let config = load(&cli(&args), &no_env).expect("flag loads");
        assert_eq!(config.log_format, LogFormat::Text);
        let env = env_of(&[("PORTCAST_LOG_FORMAT", "JSON")]);
        let config = load(&cli(&args), &env).expect("env loads");
        assert_eq!(config.log_format, LogFormat::Json);
    }
}
