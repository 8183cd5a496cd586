//! Daemon configuration: defaults, TOML file, flags and `PORTCAST_*` environment, merged and validated.
//!
//! Single-valued settings are declared once, in [`settings::Settings`]; [`load`] layers
//! them generically. What is written by hand is what takes or relates several values: the
//! UDP range and its port map, the avatar list (and the flags that change the test-pattern
//! avatar), each avatar's ladder and the allowed origins (in `lists.rs`); a `--source` file
//! and the rules between settings (here).

mod lists;
pub mod read;
pub mod settings;

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use clap::{Arg, Args, FromArgMatches};
use portcast_engine::{AvatarId, Rung};

use crate::cli::Cli;
use read::{Avatar, Dimension, Int, LadderText, Port, PortRange, Read};

pub use read::{IngestSocket, LogFormat};
pub use settings::Settings;

/// `--width` and `[[avatar]] width`.
pub const WIDTH: Dimension = Dimension { max: 3840 };
/// `--height` and `[[avatar]] height`.
pub const HEIGHT: Dimension = Dimension { max: 2160 };
/// `--fps` and `[[avatar]] fps`.
pub const FPS: Int<u32> = Int::count(1, 60);
/// `--bitrate-kbps` and `[[avatar]] bitrate_kbps`.
pub const BITRATE_KBPS: Int<u32> = Int::of(100, 50_000, " kbps", "a whole number");
/// `--encoder-threads` and `[[avatar]] encoder_threads`.
pub const ENCODER_THREADS: Int<u16> = Int::count(1, 8);
/// An avatar's Opus bitrate in its `[[avatar]]` table.
pub const AUDIO_BITRATE_KBPS: Int<u32> = Int::of(6, 510, " kbit/s", "a whole number of kbit/s");

/// The built-in avatar; `--width` and friends change it.
const DEFAULT_AVATAR_NAME: &str = "test-pattern";
const DEFAULT_UDP_PORTS: RangeInclusive<u16> = 10111..=10115;

/// Resolved daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Every single-valued setting.
    pub settings: Settings,
    /// One entry per local UDP port, ascending by local port.
    pub udp_ports: Vec<PortPair>,
    /// Configured avatars, names unique, never empty.
    pub avatars: Vec<AvatarConfig>,
    /// An avatar played from a file (`--source y4m:FILE --avatar NAME`).
    pub file_source: Option<FileSource>,
    /// The shared secret signaling tokens are checked with; `None` needs no token.
    pub token_secret_file: Option<SecretFile>,
    /// Page origins allowed to open a WebSocket, normalised as browsers send them; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Avatars whose encoding ladder is their own instead of `renditions`, by avatar id
    /// (configured, played from a file or registered later by a renderer).
    pub avatar_renditions: BTreeMap<AvatarId, Vec<Rung>>,
}

impl Config {
    /// Most sessions watching one avatar at once (`max_sessions` unless set).
    pub fn max_sessions_per_avatar(&self) -> usize {
        let s = &self.settings;
        s.max_sessions_per_avatar.unwrap_or(s.max_sessions)
    }
}

impl Default for Config {
    fn default() -> Self {
        load(&Cli::default(), &|_| None).expect("the built-in defaults are valid")
    }
}

impl Default for Settings {
    fn default() -> Self {
        let command =
            Settings::augment_args(clap::Command::new("portcast")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["portcast"])
            .expect("every setting has a default or is optional");
        Settings::from_arg_matches(&matches).expect("defaults parse")
    }
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
    /// Opus bitrate of its voice in kbit/s; `None`: the daemon's `audio_bitrate_kbps`.
    pub audio_bitrate_kbps: Option<u32>,
}

impl Default for AvatarConfig {
    fn default() -> Self {
        AvatarConfig {
            name: AvatarId::parse(DEFAULT_AVATAR_NAME).expect("a valid literal name"),
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_bps: 2_000_000,
            encoder_threads: 1,
            audio_bitrate_kbps: None,
        }
    }
}

/// An avatar played from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    /// Avatar id viewers ask for.
    pub avatar: AvatarId,
    /// The Y4M file.
    pub path: PathBuf,
}

/// Where a configuration value came from, so an error points at the value to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default of the named setting.
    Default(String),
    /// A key of the config file.
    File {
        /// Path of the file as given on the command line.
        path: PathBuf,
        /// Dotted key, e.g. `port_map.10111` or `avatar[0].width`.
        key: String,
    },
    /// A command-line flag such as `--udp-ports`.
    Flag(String),
    /// An environment variable such as `PORTCAST_SIGNAL_PORT`.
    Env(String),
}

impl Origin {
    fn is_default(&self) -> bool {
        matches!(self, Origin::Default(_))
    }
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
    /// The config file is not valid TOML.
    Parse {
        /// Path of the file as given on the command line.
        path: PathBuf,
        /// Parser error, carrying line and column.
        error: Box<toml::de::Error>,
    },
    /// A value is malformed, out of range, unknown or inconsistent with another value.
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

fn invalid(origin: Origin, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin,
        message: message.into(),
    }
}

/// Resolves the configuration: defaults < TOML file (`--config`) < command-line flags < `PORTCAST_*` environment.
///
/// The highest layer that sets a setting wins; a layer that sets the UDP range, the port
/// map or the allowed origins replaces the lower layer's value as a whole, and flags
/// `--width` etc. modify the avatar named `test-pattern`. Every value given is checked by
/// the setting's reader (flags already while the command line was parsed), even if a
/// higher layer overrides it; rules between settings are checked on the merged result.
/// `env` is `|k| std::env::var(k).ok()` outside tests; an empty variable counts as unset.
pub fn load(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut file = match &cli.config {
        Some(path) => FileLayer::read(path)?,
        None => FileLayer::default(),
    };
    let layers = Layers { cli, env };
    let (settings, origins) = layers.settings(&mut file)?;
    let udp_ports = layers.udp_ports(&mut file)?;
    let allowed_origins = layers.allowed_origins(&mut file)?;
    let avatar_renditions = layers.avatar_renditions(&mut file)?;
    let avatars = layers.avatars(&mut file)?;
    file.no_unknown_keys()?;
    let file_source = file_source(cli, &avatars)?;

    // The fallback may be any avatar that has a picture: a built-in one or the avatar a
    // `--source` file plays.
    if let Some(fallback) = &settings.fallback_avatar {
        let known: Vec<&str> = avatars
            .iter()
            .map(|a| a.name.as_str())
            .chain(file_source.as_ref().map(|f| f.avatar.as_str()))
            .collect();
        if !known.contains(&fallback.as_str()) {
            return Err(invalid(
                origins.of("fallback_avatar"),
                format!(
                    "no avatar named '{fallback}' is configured (configured: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    // An offer travels inside one WebSocket message.
    let (sdp_kib, message_kib) = (settings.max_sdp_kib, settings.max_message_kib);
    if sdp_kib > message_kib {
        let (sdp, message) = (origins.of("max_sdp_kib"), origins.of("max_message_kib"));
        // Blame the layer the operator actually wrote, not the default it combined with.
        let blamed = if sdp.is_default() { &message } else { &sdp };
        return Err(invalid(
            blamed.clone(),
            format!(
                "max_sdp_kib {sdp_kib} is larger than max_message_kib {message_kib}: an offer \
                 travels inside one WebSocket message (max_sdp_kib from {sdp}, max_message_kib \
                 from {message})"
            ),
        ));
    }
    let token_secret_file = settings.token_secret_file.clone().map(|path| SecretFile {
        path,
        origin: origins.of("token_secret_file"),
    });
    Ok(Config {
        settings,
        udp_ports,
        avatars,
        file_source,
        token_secret_file,
        allowed_origins,
        avatar_renditions,
    })
}

/// A value as given, with where it was given.
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

/// Where each setting that some layer set came from; unset ones are defaults.
#[derive(Default)]
struct Origins(HashMap<String, Origin>);

impl Origins {
    fn of(&self, key: &str) -> Origin {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| Origin::Default(key.to_string()))
    }
}

/// The command line and the environment, looked up by a setting's clap id.
struct Layers<'a> {
    cli: &'a Cli,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Layers<'_> {
    /// The environment's value for the flag `id` declares a variable for, if set and not blank.
    fn env(&self, arg: &Arg) -> Option<(String, Origin)> {
        let var = arg.get_env()?.to_str()?;
        // Container templates often define variables as empty rather than leaving them out.
        let text = (self.env)(var).filter(|text| !text.trim().is_empty())?;
        Some((text, Origin::Env(var.to_string())))
    }

    /// The values of flag `arg` if it was on the command line.
    fn flag(&self, arg: &Arg) -> Option<(Vec<OsString>, Origin)> {
        let values = self.cli.given(arg.get_id().as_str())?;
        let long = arg.get_long().unwrap_or_default();
        Some((values.to_vec(), Origin::Flag(format!("--{long}"))))
    }

    /// The highest layer's value of each single-valued setting, read by its own parser.
    fn settings(&self, file: &mut FileLayer) -> Result<(Settings, Origins), ConfigError> {
        let declared = Settings::augment_args(clap::Command::new("portcast"));
        let mut argv: Vec<OsString> = vec!["portcast".into()];
        let mut origins = Origins::default();
        for arg in declared.get_arguments() {
            let id = arg.get_id().as_str();
            // Lowest layer first: each value given is checked, even one a higher layer overrides.
            let mut given = None;
            if let Some(value) = file.take(id) {
                let origin = file.origin(id);
                let text = toml_text(&value).map_err(|m| invalid(origin.clone(), m))?;
                check(arg, OsStr::new(&text)).map_err(|m| invalid(origin.clone(), m))?;
                given = Some((vec![OsString::from(text)], origin));
            }
            given = self.flag(arg).or(given);
            if let Some((text, origin)) = self.env(arg) {
                given = Some((vec![OsString::from(text)], origin));
            }
            let Some((values, origin)) = given else {
                continue;
            };
            let long = arg.get_long().expect("every setting is a --flag");
            for value in values {
                check(arg, &value).map_err(|m| invalid(origin.clone(), m))?;
                argv.push(format!("--{long}").into());
                argv.push(value);
            }
            origins.0.insert(id.to_string(), origin);
        }
        // Every value was checked above, so only a bug in this function fails here.
        let matches = declared
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(argv)
            .map_err(|e| invalid(Origin::Default("settings".into()), read::problem(&e)))?;
        let settings = Settings::from_arg_matches(&matches)
            .map_err(|e| invalid(Origin::Default("settings".into()), read::problem(&e)))?;
        Ok((settings, origins))
    }

    /// The declared flag `id` of the whole command line (for its variable and its name).
    fn arg(id: &str) -> Arg {
        crate::cli::command()
            .get_arguments()
            .find(|arg| arg.get_id() == id)
            .cloned()
            .unwrap_or_else(|| panic!("no flag {id} is declared"))
    }

    /// A multi-valued flag's text from the environment or the command line (occurrences
    /// joined by commas, as the variable writes them).
    fn list(&self, id: &str) -> Option<(String, Origin)> {
        self.list_joined(id, ",")
    }

    /// [`Layers::list`] with the occurrences joined by `separator` (one that cannot
    /// appear inside an item).
    fn list_joined(&self, id: &str, separator: &str) -> Option<(String, Origin)> {
        let arg = Self::arg(id);
        self.env(&arg).or_else(|| {
            self.flag(&arg).map(|(values, origin)| {
                let texts: Vec<_> = values.iter().map(|v| v.to_string_lossy()).collect();
                (texts.join(separator), origin)
            })
        })
    }
}

/// Runs `arg`'s own value parser on one value; the error is the problem alone.
fn check(arg: &Arg, value: &OsStr) -> Result<(), String> {
    // The same argument as a positional (no flag name), so the parser reports the bare problem.
    let probe = arg
        .clone()
        .long(None)
        .env(None)
        .default_value(None)
        .required(false)
        .index(1);
    clap::Command::new("check")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from([OsStr::new("--"), value])
        .map(drop)
        .map_err(|e| read::problem(&e))
}

/// One value of the file as the text a flag would carry.
fn toml_text(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        toml::Value::Datetime(time) => Ok(time.to_string()),
        toml::Value::Array(_) => Err("expected a single value, found an array".into()),
        toml::Value::Table(_) => Err("expected a single value, found a table".into()),
    }
}

/// The config file's keys not yet taken by a setting.
#[derive(Default)]
struct FileLayer {
    path: PathBuf,
    table: toml::Table,
}

impl FileLayer {
    fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let table = text
            .parse::<toml::Table>()
            .map_err(|error| ConfigError::Parse {
                path: path.to_path_buf(),
                error: Box::new(error),
            })?;
        Ok(FileLayer {
            path: path.to_path_buf(),
            table,
        })
    }

    fn take(&mut self, key: &str) -> Option<toml::Value> {
        self.table.remove(key)
    }

    fn origin(&self, key: &str) -> Origin {
        Origin::File {
            path: self.path.clone(),
            key: key.to_string(),
        }
    }

    fn value<R: Read>(
        &self,
        key: &str,
        value: &toml::Value,
        reader: &R,
    ) -> Result<R::Value, ConfigError> {
        let origin = || self.origin(key);
        let text = toml_text(value).map_err(|m| invalid(origin(), m))?;
        reader.read(&text).map_err(|m| invalid(origin(), m))
    }

    /// Every key left was taken by no setting: a typo, or a key of another version.
    fn no_unknown_keys(&self) -> Result<(), ConfigError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(key) => Err(invalid(
                self.origin(key),
                "unknown key (`portcast --help` lists the keys)",
            )),
        }
    }
}

/// The avatar a `--source` file plays, named by `--avatar` or after the file.
fn file_source(cli: &Cli, avatars: &[AvatarConfig]) -> Result<Option<FileSource>, ConfigError> {
    let flag = |name: &str| Origin::Flag(name.to_string());
    let (source, avatar) = match (&cli.source, &cli.avatar) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(invalid(
                flag("--avatar"),
                "--avatar names the avatar of a --source; add --source y4m:FILE",
            ))
        }
        (Some(source), avatar) => (source, avatar),
    };
    let Some(path) = source.strip_prefix("y4m:").filter(|p| !p.is_empty()) else {
        return Err(invalid(
            flag("--source"),
            format!("'{source}' is not a supported source; use y4m:FILE"),
        ));
    };
    let path = PathBuf::from(path);
    let (name, origin) = match avatar {
        Some(name) => (name.clone(), flag("--avatar")),
        None => (
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            flag("--source"),
        ),
    };
    let name = Avatar.read(&name).map_err(|m| invalid(origin.clone(), m))?;
    if avatars.iter().any(|a| a.name == name) {
        return Err(invalid(
            origin,
            format!("avatar '{name}' is already configured; give the --source another --avatar"),
        ));
    }
    Ok(Some(FileSource { avatar: name, path }))
}

#[cfg(test)]
mod tests;
