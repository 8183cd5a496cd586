//! How one configuration value is read from text, whichever layer it came from.
//!
//! Each reader is a clap value parser, so a flag is checked while the command line is
//! parsed, and `config::load` runs the same parser on a file value or an environment
//! variable. Its error is the problem alone ("0 is out of range (1-10000)"); the caller
//! adds where the value came from (`--max-sessions: `, `environment PORTCAST_X: `, or the
//! file and key).

use std::ffi::OsStr;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Arg, Command};
use portcast_engine::{check_ladder, AvatarId, Rung};

/// Reads one value from text; the error says what is wrong with it, in words.
pub trait Read: Clone + Send + Sync + 'static {
    /// The value read.
    type Value: Clone + Send + Sync + 'static;

    /// Reads `text`, or says why it is not a valid value.
    fn read(&self, text: &str) -> Result<Self::Value, String>;
}

/// The problem in a value parser's error, without the flag that clap prefixes when it
/// parses the command line.
pub fn problem(error: &clap::Error) -> String {
    let text = error.to_string();
    let text = text.trim_end();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    text.to_string()
}

/// Each reader below is also a clap value parser (orphan rules rule out a blanket impl).
macro_rules! value_parser {
    ($($reader:ty),* $(,)?) => {$(
        impl TypedValueParser for $reader {
            type Value = <$reader as Read>::Value;

            fn parse_ref(
                &self,
                _cmd: &Command,
                arg: Option<&Arg>,
                value: &OsStr,
            ) -> Result<Self::Value, clap::Error> {
                let result = match value.to_str() {
                    Some(text) => self.read(text),
                    None => Err(format!("'{}' is not valid UTF-8", value.to_string_lossy())),
                };
                result.map_err(|problem| {
                    // Named as the operator typed it: `--flag: problem`, like every other config error.
                    let message = match arg.and_then(Arg::get_long) {
                        Some(long) => format!("--{long}: {problem}"),
                        None => problem,
                    };
                    clap::Error::raw(ErrorKind::ValueValidation, format!("{message}\n"))
                })
            }
        }
    )*};
}

value_parser!(
    Int<u16>,
    Int<u32>,
    Int<u64>,
    Int<usize>,
    Port,
    PortRange,
    Ip,
    Dimension,
    NonEmptyPath,
    Avatar,
    LogFormatText,
    IngestSocketText,
    LadderText,
    Switch,
    OpusFrameMs,
);

/// A whole number within `min..=max`.
#[derive(Debug)]
pub struct Int<T> {
    min: i64,
    max: i64,
    /// Shown after the range: `" seconds"` gives "(1-60 seconds)".
    unit: &'static str,
    /// What a value must be: "a whole number of seconds".
    what: &'static str,
    _type: PhantomData<fn() -> T>,
}

// Derived Clone would require `T: Clone`.
impl<T> Clone for Int<T> {
    fn clone(&self) -> Self {
        Int { ..*self }
    }
}

impl<T> Int<T> {
    /// A count: "a whole number", "(1-10000)".
    pub const fn count(min: i64, max: i64) -> Self {
        Self::new(min, max, "", "a whole number")
    }

    /// A duration in seconds: "(1-60 seconds)".
    pub const fn seconds(min: i64, max: i64) -> Self {
        Self::new(min, max, " seconds", "a whole number of seconds")
    }

    /// A size or rate with a unit: `Int::of(4, 4096, "KiB")` gives "(4-4096 KiB)".
    pub const fn of(min: i64, max: i64, unit: &'static str, what: &'static str) -> Self {
        Self::new(min, max, unit, what)
    }

    const fn new(min: i64, max: i64, unit: &'static str, what: &'static str) -> Self {
        Int {
            min,
            max,
            unit,
            what,
            _type: PhantomData,
        }
    }

    /// The range as shown in messages and help: "1-10000 seconds".
    pub fn range(&self) -> String {
        format!("{}-{}{}", self.min, self.max, self.unit)
    }
}

impl<T> Read for Int<T>
where
    T: TryFrom<i64> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn read(&self, text: &str) -> Result<T, String> {
        // Overflow is reported as "not a number" so the message echoes what the operator typed.
        let value = integer(text).ok_or_else(|| format!("'{text}' is not {}", self.what))?;
        if !(self.min..=self.max).contains(&value) {
            return Err(format!("{value} is out of range ({})", self.range()));
        }
        T::try_from(value).map_err(|_| format!("{value} is out of range ({})", self.range()))
    }
}

/// A UDP or TCP port, 1-65535.
#[derive(Debug, Clone, Copy)]
pub struct Port;

impl Read for Port {
    type Value = u16;

    fn read(&self, text: &str) -> Result<u16, String> {
        let value = integer(text).ok_or_else(|| format!("'{text}' is not a port number"))?;
        port(value)
    }
}

/// A port number given as an integer (a TOML integer or a parsed part of a range).
pub fn port(value: i64) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("{value} is not a valid port (1-65535)"))
}

/// An inclusive range of at most [`PortRange::MAX_PORTS`] ports, `A-B` or a single port.
#[derive(Debug, Clone, Copy)]
pub struct PortRange;

impl PortRange {
    /// Most UDP ports one daemon binds.
    pub const MAX_PORTS: usize = 64;

    /// Why `min..=max` cannot be the UDP range, if it cannot.
    pub fn problem(min: u16, max: u16) -> Option<String> {
        let count = usize::from(max).saturating_sub(usize::from(min)) + 1;
        if min > max {
            Some("has min > max".to_string())
        } else if count > Self::MAX_PORTS {
            Some(format!(
                "has {count} ports; at most {} are supported",
                Self::MAX_PORTS
            ))
        } else {
            None
        }
    }
}

impl Read for PortRange {
    type Value = RangeInclusive<u16>;

    fn read(&self, text: &str) -> Result<RangeInclusive<u16>, String> {
        let bad = || format!("'{text}' is not a port range (expected A-B or a single port)");
        let (min, max) = match text.trim().split_once('-') {
            Some((min, max)) => (integer(min).ok_or_else(bad)?, integer(max).ok_or_else(bad)?),
            None => {
                let port = integer(text).ok_or_else(bad)?;
                (port, port)
            }
        };
        let (min, max) = (port(min)?, port(max)?);
        match PortRange::problem(min, max) {
            Some(problem) => Err(format!("'{min}-{max}' {problem}")),
            None => Ok(min..=max),
        }
    }
}

/// An IP address; `announced` ones must be reachable, so 0.0.0.0 and :: are refused.
#[derive(Debug, Clone, Copy)]
pub struct Ip {
    /// The address goes into ICE candidates.
    pub announced: bool,
}

impl Read for Ip {
    type Value = IpAddr;

    fn read(&self, text: &str) -> Result<IpAddr, String> {
        let ip: IpAddr = text
            .trim()
            .parse()
            .map_err(|_| format!("'{text}' is not an IP address"))?;
        if self.announced && ip.is_unspecified() {
            return Err(format!(
                "{ip} is unspecified; ICE candidates need an address viewers can reach"
            ));
        }
        Ok(ip)
    }
}

/// A frame width or height: even (4:2:0 chroma halves both), 16 up to `max` pixels.
#[derive(Debug, Clone, Copy)]
pub struct Dimension {
    /// Largest value accepted.
    pub max: i64,
}

impl Read for Dimension {
    type Value = u32;

    fn read(&self, text: &str) -> Result<u32, String> {
        let pixels: u32 = Int::of(16, self.max, " pixels", "a whole number").read(text)?;
        if pixels % 2 != 0 {
            return Err(format!("{pixels} must be even"));
        }
        Ok(pixels)
    }
}

/// A file or folder name that must not be blank; `what` names it in the error.
#[derive(Debug, Clone, Copy)]
pub struct NonEmptyPath {
    /// "file name" or "folder name".
    pub what: &'static str,
}

impl Read for NonEmptyPath {
    type Value = PathBuf;

    fn read(&self, text: &str) -> Result<PathBuf, String> {
        if text.trim().is_empty() {
            return Err(format!("the {} is empty", self.what));
        }
        Ok(PathBuf::from(text))
    }
}

/// An avatar id ([`AvatarId::parse`]); surrounding blanks are ignored.
#[derive(Debug, Clone, Copy)]
pub struct Avatar;

impl Read for Avatar {
    type Value = AvatarId;

    fn read(&self, text: &str) -> Result<AvatarId, String> {
        AvatarId::parse(text.trim()).map_err(|e| e.to_string())
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

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// A switch: `on` / `off` (or `true` / `false`, as a TOML boolean reads).
#[derive(Debug, Clone, Copy)]
pub struct Switch;

impl Read for Switch {
    type Value = bool;

    fn read(&self, text: &str) -> Result<bool, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "on" | "true" => Ok(true),
            "off" | "false" => Ok(false),
            _ => Err(format!("'{text}' is not on or off")),
        }
    }
}

/// The duration of one Opus frame: 10 or 20 ms.
#[derive(Debug, Clone, Copy)]
pub struct OpusFrameMs;

impl Read for OpusFrameMs {
    type Value = u64;

    fn read(&self, text: &str) -> Result<u64, String> {
        match text.trim() {
            "10" => Ok(10),
            "20" => Ok(20),
            _ => Err(format!(
                "'{text}' is not an Opus frame length (10 or 20 ms)"
            )),
        }
    }
}

/// The lower renditions of an avatar's encoding ladder, highest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder(pub Vec<Rung>);

/// Reads a [`Ladder`]: `360p@600k,180p@150k` (lines, then kbit/s; the `k`
/// may be left out), or `off` for none.
#[derive(Debug, Clone, Copy)]
pub struct LadderText;

impl Read for LadderText {
    type Value = Ladder;

    fn read(&self, text: &str) -> Result<Ladder, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text.is_empty() {
            return Ok(Ladder(Vec::new()));
        }
        let rung = |part: &str| -> Result<Rung, String> {
            let bad = || format!("'{part}' is not a rendition like 360p@600k (lines, then kbit/s)");
            let (lines, kbps) = part.trim().split_once('@').ok_or_else(bad)?;
            let lines = lines.trim().strip_suffix(['p', 'P']).ok_or_else(bad)?;
            let kbps = kbps.trim();
            let kbps = kbps.strip_suffix(['k', 'K']).unwrap_or(kbps);
            let height: u32 = lines.parse().map_err(|_| bad())?;
            let kbps: u32 = kbps.parse().map_err(|_| bad())?;
            Ok(Rung {
                height,
                bitrate_bps: kbps.saturating_mul(1000),
            })
        };
        let rungs = text.split(',').map(rung).collect::<Result<Vec<_>, _>>()?;
        check_ladder(&rungs).map_err(|e| e.trim_start_matches("renditions: ").to_string())?;
        Ok(Ladder(rungs))
    }
}

/// Reads a [`LogFormat`], in any case.
#[derive(Debug, Clone, Copy)]
pub struct LogFormatText;

impl Read for LogFormatText {
    type Value = LogFormat;

    fn read(&self, text: &str) -> Result<LogFormat, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("'{text}' is not a log format (text or json)")),
        }
    }
}

/// The ingest socket when set: a path, or `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestSocket {
    /// This path.
    At(PathBuf),
    /// `off`: no ingest socket.
    Off,
}

/// Reads an [`IngestSocket`].
#[derive(Debug, Clone, Copy)]
pub struct IngestSocketText;

impl Read for IngestSocketText {
    type Value = IngestSocket;

    fn read(&self, text: &str) -> Result<IngestSocket, String> {
        match text.trim() {
            "off" => Ok(IngestSocket::Off),
            "" => Err("the socket path is empty (use 'off' to disable)".to_string()),
            _ => Ok(IngestSocket::At(PathBuf::from(text))),
        }
    }
}

/// An integer with blanks around it allowed.
pub fn integer(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}
