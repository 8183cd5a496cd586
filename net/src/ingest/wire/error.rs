//! What a renderer did wrong on the ingest socket, or what went wrong with its
//! connection: one variant each, with the stable code sent back in `REFUSED`.

use std::fmt;
use std::io;

use super::{
    Kind, MAX_AVATAR_ID_LEN, MAX_FPS, MAX_HEIGHT, MAX_WIDTH, MIN_SIDE, VERSION, VERSION_2,
};

/// What a renderer did wrong, or what went wrong with its connection.
///
/// Each error closes that renderer's connection (after a `REFUSED` message
/// carrying [`WireError::code`] and the text) and touches nothing else.
#[derive(Debug)]
#[non_exhaustive]
pub enum WireError {
    /// The stream does not start with `PCIN`: not an ingest client.
    BadMagic([u8; 4]),
    /// A protocol version this daemon does not speak.
    UnsupportedVersion(u8),
    /// A message type this daemon does not know.
    UnknownType(u8),
    /// A meta section shorter than its type needs.
    MetaTooShort {
        /// The message type.
        kind: Kind,
        /// Bytes announced.
        size: usize,
        /// Bytes needed.
        min: usize,
    },
    /// A meta section over [`MAX_META_BYTES`].
    MetaTooLong {
        /// Bytes announced.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A payload (or an announced raw frame size) over the daemon's max frame size.
    FrameTooLarge {
        /// Bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A pixel format number this daemon does not know.
    UnknownFormat(u8),
    /// Width or height odd, zero or out of range.
    BadDimensions {
        /// Width announced.
        width: u32,
        /// Height announced.
        height: u32,
    },
    /// Frame rate out of range.
    BadFps(u32),
    /// Bitrate out of range.
    BadBitrate(u32),
    /// Avatar id empty, too long or with characters outside `A-Za-z0-9_.-`.
    BadAvatarId(String),
    /// A raw frame whose payload size does not match its announced format.
    FrameSizeMismatch {
        /// Bytes the format needs.
        expected: usize,
        /// Bytes sent.
        got: usize,
    },
    /// An H.264 frame that does not start with an Annex-B start code.
    NotAnnexB,
    /// The first message was not REGISTER.
    NotRegistered(Kind),
    /// A second REGISTER on the same connection.
    AlreadyRegistered,
    /// A message type only the daemon sends.
    WrongDirection(Kind),
    /// Another live renderer holds this avatar id.
    AvatarLive(String),
    /// The avatar id belongs to a built-in source of the daemon.
    AvatarReserved(String),
    /// Too many renderers connected.
    TooManyRenderers(usize),
    /// The connection closed in the middle of a message.
    Truncated {
        /// What was being read.
        part: &'static str,
    },
    /// A message started but its rest did not arrive in time (a length that promises more than is sent).
    Stalled {
        /// What was being read.
        part: &'static str,
        /// Seconds waited.
        secs: u64,
    },
    /// AUDIO_FORMAT fields out of range.
    BadAudioFormat(String),
    /// AUDIO before AUDIO_FORMAT.
    NoAudioFormat,
    /// AUDIO_FORMAT or AUDIO on a connection registered with version 1.
    AudioNeedsVersion2,
    /// An AUDIO payload over one second of PCM or one Opus packet.
    AudioChunkTooLarge {
        /// Bytes sent.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// A PCM payload that is not whole samples for every channel.
    BadPcmLength {
        /// Bytes sent.
        size: usize,
        /// Bytes per sample frame.
        frame: usize,
    },
    /// The encoder refused the frames.
    Encoder(String),
    /// The socket failed.
    Io(io::Error),
}

impl WireError {
    /// A stable snake_case name, sent to the renderer and logged.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::BadMagic(_) => "bad_magic",
            WireError::UnsupportedVersion(_) => "unsupported_version",
            WireError::UnknownType(_) => "unknown_type",
            WireError::MetaTooShort { .. } => "meta_too_short",
            WireError::MetaTooLong { .. } => "meta_too_long",
            WireError::FrameTooLarge { .. } => "frame_too_large",
            WireError::UnknownFormat(_) => "unknown_format",
            WireError::BadDimensions { .. } => "bad_dimensions",
            WireError::BadFps(_) => "bad_fps",
            WireError::BadBitrate(_) => "bad_bitrate",
            WireError::BadAvatarId(_) => "bad_avatar_id",
            WireError::FrameSizeMismatch { .. } => "frame_size_mismatch",
            WireError::NotAnnexB => "not_annexb",
            WireError::NotRegistered(_) => "not_registered",
            WireError::AlreadyRegistered => "already_registered",
            WireError::WrongDirection(_) => "wrong_direction",
            WireError::AvatarLive(_) => "avatar_live",
            WireError::AvatarReserved(_) => "avatar_reserved",
            WireError::TooManyRenderers(_) => "too_many_renderers",
            WireError::Truncated { .. } => "truncated",
            WireError::Stalled { .. } => "stalled",
            WireError::Encoder(_) => "encoder_failed",
            WireError::BadAudioFormat(_) => "bad_audio_format",
            WireError::NoAudioFormat => "no_audio_format",
            WireError::AudioNeedsVersion2 => "audio_needs_version_2",
            WireError::AudioChunkTooLarge { .. } => "audio_chunk_too_large",
            WireError::BadPcmLength { .. } => "bad_pcm_length",
            WireError::Io(_) => "io",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadMagic(m) => write!(
                f,
                "stream starts with {m:02x?}, not \"PCIN\": not a portcast ingest client"
            ),
            WireError::UnsupportedVersion(v) => write!(
                f,
                "protocol version {v} is not supported; this daemon speaks versions {VERSION} and {VERSION_2}"
            ),
            WireError::BadAudioFormat(why) => write!(f, "unusable AUDIO_FORMAT: {why}"),
            WireError::NoAudioFormat => {
                write!(f, "AUDIO before AUDIO_FORMAT: announce the audio format first")
            }
            WireError::AudioNeedsVersion2 => write!(
                f,
                "audio needs capture timestamps on one clock: REGISTER with protocol version 2"
            ),
            WireError::AudioChunkTooLarge { size, max } => write!(
                f,
                "an AUDIO payload of {size} bytes exceeds {max} (one second of PCM, or one Opus packet)"
            ),
            WireError::BadPcmLength { size, frame } => write!(
                f,
                "a PCM payload of {size} bytes is not whole {frame}-byte sample frames"
            ),
            WireError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            WireError::MetaTooShort { kind, size, min } => write!(
                f,
                "{kind:?} message has {size} bytes of fields; it needs at least {min}"
            ),
            WireError::MetaTooLong { size, max } => {
                write!(f, "message fields of {size} bytes exceed the limit of {max}")
            }
            WireError::FrameTooLarge { size, max } => write!(
                f,
                "a frame of {size} bytes exceeds the limit of {max} bytes (daemon flag --ingest-max-frame-mb)"
            ),
            WireError::UnknownFormat(c) => write!(
                f,
                "unknown pixel format {c}; use 1 (i420), 2 (rgb24), 3 (bgra) or 4 (h264)"
            ),
            WireError::BadDimensions { width, height } => write!(
                f,
                "{width}x{height} is not a usable size: width and height must be even, \
                 {MIN_SIDE}-{MAX_WIDTH} by {MIN_SIDE}-{MAX_HEIGHT}"
            ),
            WireError::BadFps(v) => write!(f, "fps {v} is out of range (1-{MAX_FPS})"),
            WireError::BadBitrate(v) => write!(
                f,
                "bitrate {v} kbit/s is out of range (100-50000, or 0 for automatic)"
            ),
            WireError::BadAvatarId(s) => write!(
                f,
                "avatar id '{s}' is not valid (1-{MAX_AVATAR_ID_LEN} characters from A-Z a-z 0-9 _ . -)"
            ),
            WireError::FrameSizeMismatch { expected, got } => write!(
                f,
                "frame payload is {got} bytes; the announced format and size need exactly {expected}"
            ),
            WireError::NotAnnexB => write!(
                f,
                "h264 frame does not start with an Annex-B start code (00 00 01 or 00 00 00 01)"
            ),
            WireError::NotRegistered(k) => {
                write!(f, "first message must be REGISTER, got {k:?}")
            }
            WireError::AlreadyRegistered => {
                write!(f, "REGISTER sent twice on one connection; use FORMAT to change the format")
            }
            WireError::WrongDirection(k) => {
                write!(f, "{k:?} is sent by the daemon, not by a renderer")
            }
            WireError::AvatarLive(a) => write!(
                f,
                "avatar '{a}' is already fed by another connected renderer; \
                 it can register again once that one disconnects"
            ),
            WireError::AvatarReserved(a) => write!(
                f,
                "avatar '{a}' is served by one of the daemon's built-in sources; pick another id"
            ),
            WireError::TooManyRenderers(n) => {
                write!(f, "{n} renderers are connected already, the daemon's limit")
            }
            WireError::Truncated { part } => {
                write!(f, "connection closed in the middle of a message ({part})")
            }
            WireError::Stalled { part, secs } => write!(
                f,
                "message {part} did not arrive within {secs} s: its announced length is larger than what was sent"
            ),
            WireError::Encoder(e) => write!(f, "encoder: {e}"),
            WireError::Io(e) => write!(f, "socket: {e}"),
        }
    }
}

impl std::error::Error for WireError {}
