//! The ingest wire format: how a renderer and the daemon talk over the ingest socket.
//!
//! Every message is a 16-byte header, then `meta_len` bytes of fields typed by
//! the message type, then `payload_len` bytes of payload. All integers are
//! little-endian. `docs/ingest.md` is the reference; this module is the one
//! place where bytes from a renderer become typed values ([`Header::parse`],
//! [`Message::parse`]), and where the daemon's replies are written.
//!
//! ```text
//! offset size field
//!  0     4    magic  "PCIN"
//!  4     1    version (1)
//!  5     1    type
//!  6     2    flags (none defined in version 1: senders write 0, receivers ignore)
//!  8     2    meta_len     (at most MAX_META_BYTES)
//! 10     2    reserved (0)
//! 12     4    payload_len  (at most the daemon's max frame size)
//! ```
//!
//! A newer sender may append fields to a type's meta: receivers read the
//! fields they know and skip the rest, so `meta_len` only has a minimum.

use portcast_engine::AvatarId;

mod error;
pub use error::WireError;

/// The first four bytes of every message.
pub const MAGIC: [u8; 4] = *b"PCIN";
/// The protocol version this daemon speaks.
pub const VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Largest meta section accepted.
pub const MAX_META_BYTES: usize = 256;
/// Longest avatar id, in bytes (as for configured avatars).
pub const MAX_AVATAR_ID_LEN: usize = AvatarId::MAX_LEN;
/// Largest reason text the daemon sends in a `REFUSED` message.
pub const MAX_REASON_BYTES: usize = 1024;

/// Size of a REGISTER / FORMAT meta section.
pub const FORMAT_META_LEN: usize = 20;
/// Size of a FRAME meta section.
pub const FRAME_META_LEN: usize = 16;
/// Size of an ACCEPTED meta section.
pub const ACCEPTED_META_LEN: usize = 4;
/// WATCHED's meta: `u8 watched` (1 or 0), then 3 bytes of padding.
pub const WATCHED_META_LEN: usize = 4;
/// Fields of AUDIO_FORMAT.
pub const AUDIO_FORMAT_META_LEN: usize = 16;
/// Fields of AUDIO: `u64 pts_us`, `u64` reserved.
pub const AUDIO_META_LEN: usize = 16;
/// The version whose timestamps are capture times: REGISTER sent with it puts
/// FRAME `pts_us` and AUDIO `pts_us` on one renderer clock that drives both
/// RTP clocks; audio needs it. Version 1 (FRAME timing by arrival) stays accepted.
pub const VERSION_2: u8 = 2;
/// Largest Opus packet an AUDIO message may carry (RFC 6716: 1275 bytes per frame, 120 ms).
pub const MAX_OPUS_PACKET: usize = 1500;
/// Sample rates of PCM audio a renderer may push (resampled to 48 kHz).
pub const PCM_RATES: [u32; 5] = [16_000, 22_050, 24_000, 44_100, 48_000];

/// Picture dimension bounds (as for configured avatars).
pub const MAX_WIDTH: u32 = 3840;
/// Largest picture height.
pub const MAX_HEIGHT: u32 = 2160;
/// Smallest picture side.
pub const MIN_SIDE: u32 = 16;
/// Highest frame rate a renderer may announce.
pub const MAX_FPS: u32 = 60;

/// Message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Renderer → daemon: claim an avatar id and announce the format (first message).
    Register = 0x01,
    /// Renderer → daemon: one picture.
    Frame = 0x02,
    /// Renderer → daemon: the following frames have another format, size, rate or bitrate.
    Format = 0x03,
    /// Renderer → daemon (version 2): the avatar speaks; the audio format of AUDIO messages.
    AudioFormat = 0x04,
    /// Renderer → daemon (version 2): a chunk of PCM or one Opus packet.
    Audio = 0x05,
    /// Renderer → daemon: barge-in; drop this avatar's queued audio and waiting frame now.
    Flush = 0x06,
    /// Daemon → renderer: the registration is accepted; push frames.
    Accepted = 0x81,
    /// Daemon → renderer (pass-through formats): make the next frame an IDR.
    KeyframeRequest = 0x82,
    /// Daemon → renderer: why the connection is being closed; the daemon closes it next.
    Refused = 0x83,
    /// Daemon → renderer: whether any viewer watches the avatar now (sent at
    /// registration and on every change): a renderer may pause while nobody does.
    Watched = 0x84,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0x01 => Kind::Register,
            0x02 => Kind::Frame,
            0x03 => Kind::Format,
            0x04 => Kind::AudioFormat,
            0x05 => Kind::Audio,
            0x06 => Kind::Flush,
            0x81 => Kind::Accepted,
            0x82 => Kind::KeyframeRequest,
            0x83 => Kind::Refused,
            0x84 => Kind::Watched,
            _ => return None,
        })
    }

    /// Smallest meta section this type needs.
    fn min_meta(self) -> usize {
        match self {
            Kind::Register | Kind::Format => FORMAT_META_LEN,
            Kind::Frame => FRAME_META_LEN,
            Kind::Accepted => ACCEPTED_META_LEN,
            Kind::Watched => WATCHED_META_LEN,
            Kind::AudioFormat => AUDIO_FORMAT_META_LEN,
            Kind::Audio => AUDIO_META_LEN,
            Kind::KeyframeRequest | Kind::Refused | Kind::Flush => 0,
        }
    }
}

/// Pixel formats a renderer may push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PixelFormat {
    /// Planar Y, then U, then V (4:2:0), rows tightly packed: `w*h*3/2` bytes.
    I420 = 1,
    /// Packed R, G, B bytes: `w*h*3` bytes.
    Rgb24 = 2,
    /// Packed B, G, R, A bytes (alpha ignored): `w*h*4` bytes.
    Bgra = 3,
    /// One H.264 access unit, Annex-B (start codes), sent to viewers as is.
    H264 = 4,
}

impl PixelFormat {
    /// The format numbered `b` on the wire.
    pub fn from_u8(b: u8) -> Option<PixelFormat> {
        Some(match b {
            1 => PixelFormat::I420,
            2 => PixelFormat::Rgb24,
            3 => PixelFormat::Bgra,
            4 => PixelFormat::H264,
            _ => return None,
        })
    }

    /// Whether frames of this format go through the daemon's encoder.
    pub fn is_raw(self) -> bool {
        self != PixelFormat::H264
    }

    /// Exact payload size of a raw frame, or `None` for H.264 (any size up to the limit).
    pub fn frame_bytes(self, width: u32, height: u32) -> Option<usize> {
        let px = width as usize * height as usize;
        match self {
            PixelFormat::I420 => Some(px + px / 2),
            PixelFormat::Rgb24 => Some(px * 3),
            PixelFormat::Bgra => Some(px * 4),
            PixelFormat::H264 => None,
        }
    }

    /// The name used in logs and docs.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::I420 => "i420",
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgra => "bgra",
            PixelFormat::H264 => "h264",
        }
    }
}

/// How a renderer's audio is coded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AudioCodec {
    /// Signed 16-bit little-endian PCM, channels interleaved; the daemon encodes Opus.
    PcmS16le = 1,
    /// Opus packets (RFC 6716), one per AUDIO message, forwarded byte for byte.
    Opus = 2,
}

/// The audio a renderer pushes (AUDIO_FORMAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    /// PCM or Opus.
    pub codec: AudioCodec,
    /// 1 or 2 (PCM stereo is mixed down to mono; Opus packets keep theirs).
    pub channels: u8,
    /// PCM: one of [`PCM_RATES`]; Opus: 48000.
    pub sample_rate: u32,
    /// Opus bitrate for PCM, 6-510 kbit/s, or 0 for the daemon's (32).
    pub bitrate_kbps: u32,
    /// Opus frame for PCM, 10 or 20 ms, or 0 for 20.
    pub frame_ms: u32,
}

impl AudioFormat {
    /// Largest AUDIO payload: one second of PCM, or one Opus packet.
    pub fn max_chunk_bytes(&self) -> usize {
        match self.codec {
            AudioCodec::PcmS16le => self.sample_rate as usize * usize::from(self.channels) * 2,
            AudioCodec::Opus => MAX_OPUS_PACKET,
        }
    }

    fn check(&self) -> Result<(), WireError> {
        let bad = |why: String| Err(WireError::BadAudioFormat(why));
        if !matches!(self.channels, 1 | 2) {
            return bad(format!("{} channels; 1 or 2", self.channels));
        }
        match self.codec {
            AudioCodec::PcmS16le if !PCM_RATES.contains(&self.sample_rate) => {
                return bad(format!(
                    "PCM at {} Hz; use 16000, 22050, 24000, 44100 or 48000",
                    self.sample_rate
                ))
            }
            AudioCodec::Opus if self.sample_rate != 48_000 => {
                return bad(format!("Opus at {} Hz; Opus is 48000", self.sample_rate))
            }
            _ => {}
        }
        if self.bitrate_kbps != 0 && !(6..=510).contains(&self.bitrate_kbps) {
            return bad(format!(
                "bitrate {} kbit/s; 6-510, or 0 for the daemon's",
                self.bitrate_kbps
            ));
        }
        if !matches!(self.frame_ms, 0 | 10 | 20) {
            return bad(format!("{} ms frames; 10 or 20, or 0", self.frame_ms));
        }
        Ok(())
    }

    fn parse(meta: &[u8]) -> Result<AudioFormat, WireError> {
        let codec = match meta.first().copied().unwrap_or(0) {
            1 => AudioCodec::PcmS16le,
            2 => AudioCodec::Opus,
            c => {
                return Err(WireError::BadAudioFormat(format!(
                    "codec {c}; use 1 (pcm_s16le) or 2 (opus)"
                )))
            }
        };
        Ok(AudioFormat {
            codec,
            channels: meta.get(1).copied().unwrap_or(0),
            sample_rate: le_u32(meta, 4),
            bitrate_kbps: le_u32(meta, 8),
            frame_ms: le_u32(meta, 12),
        })
    }

    fn write_meta(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.codec as u8, self.channels, 0, 0]);
        for v in [self.sample_rate, self.bitrate_kbps, self.frame_ms] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// What a renderer pushes: format, size, rate and bitrate (REGISTER and FORMAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    /// Pixel format.
    pub format: PixelFormat,
    /// Picture width (even; 0 allowed for H.264 when unknown).
    pub width: u32,
    /// Picture height (even; 0 allowed for H.264 when unknown).
    pub height: u32,
    /// Frames per second the renderer aims for.
    pub fps: u32,
    /// H.264 target bitrate in kbit/s for raw formats; 0 picks one from size and rate.
    pub bitrate_kbps: u32,
}

impl StreamFormat {
    /// Exact payload size of one frame, `None` for H.264.
    pub fn frame_bytes(&self) -> Option<usize> {
        self.format.frame_bytes(self.width, self.height)
    }

    /// The encoder bitrate in bit/s: the announced one, or ~0.07 bit per pixel per frame.
    pub fn bitrate_bps(&self) -> u32 {
        if self.bitrate_kbps > 0 {
            return self.bitrate_kbps.saturating_mul(1000);
        }
        let auto = u64::from(self.width) * u64::from(self.height) * u64::from(self.fps) * 7 / 100;
        auto.clamp(300_000, 8_000_000) as u32
    }

    fn check(&self, max_frame_bytes: usize) -> Result<(), WireError> {
        if !(1..=MAX_FPS).contains(&self.fps) {
            return Err(WireError::BadFps(self.fps));
        }
        if self.bitrate_kbps != 0 && !(100..=50_000).contains(&self.bitrate_kbps) {
            return Err(WireError::BadBitrate(self.bitrate_kbps));
        }
        let unknown_size = self.format == PixelFormat::H264 && self.width == 0 && self.height == 0;
        if !unknown_size {
            let ok = |v: u32, max: u32| (MIN_SIDE..=max).contains(&v) && v % 2 == 0;
            if !ok(self.width, MAX_WIDTH) || !ok(self.height, MAX_HEIGHT) {
                return Err(WireError::BadDimensions {
                    width: self.width,
                    height: self.height,
                });
            }
        }
        if let Some(bytes) = self.frame_bytes() {
            if bytes > max_frame_bytes {
                return Err(WireError::FrameTooLarge {
                    size: bytes,
                    max: max_frame_bytes,
                });
            }
        }
        Ok(())
    }

    fn parse(meta: &[u8]) -> Result<StreamFormat, WireError> {
        let code = meta.first().copied().unwrap_or(0);
        let format = PixelFormat::from_u8(code).ok_or(WireError::UnknownFormat(code))?;
        Ok(StreamFormat {
            format,
            width: le_u32(meta, 4),
            height: le_u32(meta, 8),
            fps: le_u32(meta, 12),
            bitrate_kbps: le_u32(meta, 16),
        })
    }

    fn write_meta(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.format as u8, 0, 0, 0]);
        for v in [self.width, self.height, self.fps, self.bitrate_kbps] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// A validated message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version of the message (1 or 2).
    pub version: u8,
    /// Message type.
    pub kind: Kind,
    /// Flags (none defined in version 1).
    pub flags: u16,
    /// Bytes of meta that follow the header.
    pub meta_len: usize,
    /// Bytes of payload that follow the meta.
    pub payload_len: usize,
}

impl Header {
    /// Parses and bounds a header; `max_payload` is the largest payload accepted.
    pub fn parse(bytes: &[u8; HEADER_LEN], max_payload: usize) -> Result<Header, WireError> {
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        if !matches!(bytes[4], VERSION | VERSION_2) {
            return Err(WireError::UnsupportedVersion(bytes[4]));
        }
        let kind = Kind::from_u8(bytes[5]).ok_or(WireError::UnknownType(bytes[5]))?;
        let meta_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        let payload_len = le_u32(bytes, 12) as usize;
        if meta_len > MAX_META_BYTES {
            return Err(WireError::MetaTooLong {
                size: meta_len,
                max: MAX_META_BYTES,
            });
        }
        if meta_len < kind.min_meta() {
            return Err(WireError::MetaTooShort {
                kind,
                size: meta_len,
                min: kind.min_meta(),
            });
        }
        if payload_len > max_payload {
            return Err(WireError::FrameTooLarge {
                size: payload_len,
                max: max_payload,
            });
        }
        Ok(Header {
            version: bytes[4],
            kind,
            flags: u16::from_le_bytes([bytes[6], bytes[7]]),
            meta_len,
            payload_len,
        })
    }

    /// Writes a version-1 header for a message of `kind` with the given section sizes.
    pub fn write(kind: Kind, meta_len: usize, payload_len: usize, out: &mut Vec<u8>) {
        Self::write_version(VERSION, kind, meta_len, payload_len, out);
    }

    /// Writes a header of protocol `version`.
    pub fn write_version(
        version: u8,
        kind: Kind,
        meta_len: usize,
        payload_len: usize,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[version, kind as u8, 0, 0]);
        out.extend_from_slice(&(meta_len.min(usize::from(u16::MAX)) as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(payload_len.min(u32::MAX as usize) as u32).to_le_bytes());
    }
}

/// The typed meta of a renderer's message (the payload is read separately, into a reused buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// REGISTER: the payload is the avatar id.
    Register(StreamFormat),
    /// FRAME: the payload is the picture.
    Frame {
        /// The renderer's frame number.
        index: u64,
        /// The renderer's timestamp in microseconds (informational).
        pts_us: u64,
    },
    /// FORMAT: the following frames have this format.
    Format(StreamFormat),
    /// AUDIO_FORMAT: the avatar speaks, in this format.
    AudioFormat(AudioFormat),
    /// AUDIO: the payload is PCM or one Opus packet, its first sample captured at `pts_us`.
    Audio {
        /// Capture time of the first sample on the renderer's clock, microseconds.
        pts_us: u64,
    },
    /// FLUSH: barge-in.
    Flush,
    /// ACCEPTED (daemon → renderer).
    Accepted {
        /// Largest payload the daemon accepts.
        max_frame_bytes: u32,
    },
    /// KEYFRAME_REQUEST (daemon → renderer).
    KeyframeRequest,
    /// REFUSED (daemon → renderer): the payload is `code: message`.
    Refused,
    /// WATCHED (daemon → renderer): whether any viewer watches the avatar.
    Watched(bool),
}

impl Message {
    /// Reads the typed fields of `header`'s meta; `max_frame_bytes` bounds announced formats.
    pub fn parse(
        header: &Header,
        meta: &[u8],
        max_frame_bytes: usize,
    ) -> Result<Message, WireError> {
        Ok(match header.kind {
            Kind::Register | Kind::Format => {
                let f = StreamFormat::parse(meta)?;
                f.check(max_frame_bytes)?;
                if header.kind == Kind::Register {
                    Message::Register(f)
                } else {
                    Message::Format(f)
                }
            }
            Kind::Frame => Message::Frame {
                index: le_u64(meta, 0),
                pts_us: le_u64(meta, 8),
            },
            Kind::Accepted => Message::Accepted {
                max_frame_bytes: le_u32(meta, 0),
            },
            Kind::KeyframeRequest => Message::KeyframeRequest,
            Kind::Refused => Message::Refused,
            Kind::Watched => Message::Watched(meta.first().is_some_and(|b| *b != 0)),
            Kind::AudioFormat => {
                let f = AudioFormat::parse(meta)?;
                f.check()?;
                Message::AudioFormat(f)
            }
            Kind::Audio => Message::Audio {
                pts_us: le_u64(meta, 0),
            },
            Kind::Flush => Message::Flush,
        })
    }
}

/// Checks an avatar id carried by REGISTER: 1-64 bytes of `A-Za-z0-9_.-`.
pub fn parse_avatar_id(payload: &[u8]) -> Result<AvatarId, WireError> {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|s| AvatarId::parse(s).ok())
        .ok_or_else(|| {
            WireError::BadAvatarId(
                String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned(),
            )
        })
}

/// Whether `data` starts with an Annex-B start code (`00 00 01` or `00 00 00 01`).
pub fn is_annexb(data: &[u8]) -> bool {
    data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1])
}

/// Encodes a REGISTER message for `avatar`.
pub fn register(avatar: &str, format: &StreamFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + FORMAT_META_LEN + avatar.len());
    Header::write(Kind::Register, FORMAT_META_LEN, avatar.len(), &mut out);
    format.write_meta(&mut out);
    out.extend_from_slice(avatar.as_bytes());
    out
}

/// Encodes a version-2 REGISTER: FRAME and AUDIO timestamps are capture times on one clock.
pub fn register_v2(avatar: &str, format: &StreamFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + FORMAT_META_LEN + avatar.len());
    Header::write_version(
        VERSION_2,
        Kind::Register,
        FORMAT_META_LEN,
        avatar.len(),
        &mut out,
    );
    format.write_meta(&mut out);
    out.extend_from_slice(avatar.as_bytes());
    out
}

/// Encodes an AUDIO_FORMAT message.
pub fn audio_format(format: &AudioFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + AUDIO_FORMAT_META_LEN);
    Header::write_version(
        VERSION_2,
        Kind::AudioFormat,
        AUDIO_FORMAT_META_LEN,
        0,
        &mut out,
    );
    format.write_meta(&mut out);
    out
}

/// Encodes the header and fields of an AUDIO message whose payload (`payload_len` bytes) follows.
pub fn audio_head(pts_us: u64, payload_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + AUDIO_META_LEN);
    Header::write_version(
        VERSION_2,
        Kind::Audio,
        AUDIO_META_LEN,
        payload_len,
        &mut out,
    );
    out.extend_from_slice(&pts_us.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out
}

/// Encodes a FLUSH message (barge-in).
pub fn flush() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    Header::write_version(VERSION_2, Kind::Flush, 0, 0, &mut out);
    out
}

/// Encodes a FORMAT message.
pub fn format(format: &StreamFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + FORMAT_META_LEN);
    Header::write(Kind::Format, FORMAT_META_LEN, 0, &mut out);
    format.write_meta(&mut out);
    out
}

/// Encodes the header and meta of a FRAME whose payload is `payload_len` bytes (sent after it).
pub fn frame_head(
    index: u64,
    pts_us: u64,
    payload_len: usize,
) -> [u8; HEADER_LEN + FRAME_META_LEN] {
    let mut out = Vec::with_capacity(HEADER_LEN + FRAME_META_LEN);
    Header::write(Kind::Frame, FRAME_META_LEN, payload_len, &mut out);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&pts_us.to_le_bytes());
    let mut head = [0u8; HEADER_LEN + FRAME_META_LEN];
    head.copy_from_slice(&out);
    head
}

/// Encodes an ACCEPTED message.
pub fn accepted(max_frame_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + ACCEPTED_META_LEN);
    Header::write(Kind::Accepted, ACCEPTED_META_LEN, 0, &mut out);
    out.extend_from_slice(&(max_frame_bytes.min(u32::MAX as usize) as u32).to_le_bytes());
    out
}

/// Encodes a WATCHED message.
pub fn watched(watched: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + WATCHED_META_LEN);
    Header::write(Kind::Watched, WATCHED_META_LEN, 0, &mut out);
    out.extend_from_slice(&[u8::from(watched), 0, 0, 0]);
    out
}

/// Encodes a KEYFRAME_REQUEST message.
pub fn keyframe_request() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    Header::write(Kind::KeyframeRequest, 0, 0, &mut out);
    out
}

/// Encodes a REFUSED message carrying `code: reason` (cut to [`MAX_REASON_BYTES`]).
pub fn refused(code: &str, reason: &str) -> Vec<u8> {
    let mut text = format!("{code}: {reason}");
    if text.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + text.len());
    Header::write(Kind::Refused, 0, text.len(), &mut out);
    out.extend_from_slice(text.as_bytes());
    out
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

#[cfg(test)]
mod tests;
