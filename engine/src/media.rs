//! Encoded video as it travels from a source to the engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::ids::AvatarId;

/// A video codec the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VideoCodec {
    /// H.264 constrained baseline (openh264, or a renderer's own stream).
    H264,
    /// VP8 (libvpx), for viewers without H.264.
    Vp8,
}

impl VideoCodec {
    /// Every codec, in the order the server prefers them.
    pub const ALL: [VideoCodec; 2] = [VideoCodec::H264, VideoCodec::Vp8];

    /// Its name as SDP and `/metrics` labels spell it (`H264`, `VP8`).
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H264",
            VideoCodec::Vp8 => "VP8",
        }
    }

    /// Its position in [`VideoCodec::ALL`] (for per-codec arrays).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The most renditions an avatar has: its source's own picture plus up to
/// three lower rungs of its ladder.
pub const MAX_RENDITIONS: usize = 4;

/// A lower rung of an avatar's encoding ladder: the source's picture scaled
/// to `height` lines (the width keeps its aspect), encoded at `bitrate_bps`.
/// Rendition 0 is always the source's own picture at its own bitrate; rung
/// `i` of the ladder is rendition `i + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// Lines of the scaled picture (a source that is already this small or
    /// smaller is encoded at its own size, at this bitrate).
    pub height: u32,
    /// Bitrate its encoder aims at, bits per second.
    pub bitrate_bps: u32,
}

impl Rung {
    /// The default ladder under a source's own picture: 360p at 600 kbit/s and
    /// 180p at 150 kbit/s.
    pub const DEFAULT_LADDER: [Rung; 2] = [
        Rung {
            height: 360,
            bitrate_bps: 600_000,
        },
        Rung {
            height: 180,
            bitrate_bps: 150_000,
        },
    ];

    /// The size of a `width` x `height` picture scaled to this rung: the
    /// aspect kept, both sides even and at least 16, never larger than the source.
    pub fn size_for(self, width: usize, height: usize) -> (usize, usize) {
        let h = (self.height as usize).min(height);
        let w = (width * h).checked_div(height).unwrap_or(0);
        let even = |v: usize| (v & !1).max(16);
        (even(w).min(width), even(h).min(height))
    }

    /// Its name in logs and `/metrics`: `360p`.
    pub fn name(self) -> String {
        format!("{}p", self.height)
    }
}

/// Every avatar's encoding ladder: the daemon's, and the avatars given their own.
///
/// An avatar's ladder is looked up by its id, so it applies whatever feeds
/// it: a built-in test pattern, a file, or a renderer that registers it later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ladders {
    /// The ladder of every avatar not in `per_avatar`.
    pub default: Vec<Rung>,
    /// Avatars with a ladder of their own (possibly empty: one rendition).
    pub per_avatar: BTreeMap<AvatarId, Vec<Rung>>,
}

impl Ladders {
    /// `ladder` for every avatar.
    pub fn same_for_all(ladder: Vec<Rung>) -> Self {
        Ladders {
            default: ladder,
            per_avatar: BTreeMap::new(),
        }
    }

    /// The lower rungs of `avatar`, highest first.
    pub fn of(&self, avatar: &AvatarId) -> &[Rung] {
        self.per_avatar.get(avatar).unwrap_or(&self.default)
    }
}

/// The name of rendition `rendition` of an avatar with `ladder`: `top` for
/// the source's own picture, else its rung's (`360p`).
pub fn rendition_name(ladder: &[Rung], rendition: u8) -> String {
    match rendition {
        0 => "top".to_string(),
        r => ladder
            .get(usize::from(r) - 1)
            .map_or_else(|| format!("r{r}"), |g| g.name()),
    }
}

/// One encoded picture, shared by every viewer of its codec.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// Its codec.
    pub codec: VideoCodec,
    /// H.264: Annex-B NAL units (start codes included) of one picture; VP8: one frame.
    pub data: Arc<[u8]>,
    /// RTP timestamp in the 90 kHz clock.
    pub rtp_time: u64,
    /// True for a keyframe (H.264: an IDR with SPS/PPS): a viewer can start decoding here.
    pub keyframe: bool,
    /// When the raw frame was handed to the encoder (t0 of latency accounting).
    pub captured_at: Instant,
    /// When the encoder returned this access unit (t1).
    pub encoded_at: Instant,
    /// The source's frame number.
    pub frame_index: u64,
    /// Which rendition of the avatar it is: 0 for the source's own picture,
    /// `i + 1` for rung `i` of its ladder (see [`Rung`]).
    pub rendition: u8,
    /// The bitrate its encoder aimed at, bits per second (0: unknown, e.g.
    /// a renderer's own H.264).
    pub bitrate_bps: u32,
}

/// Whether an Annex-B access unit holds an IDR slice (NAL type 5).
pub fn annexb_has_idr(data: &[u8]) -> bool {
    let mut i = 0;
    while i + 3 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if data[i + 3] & 0x1f == 5 {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// One encoded Opus packet of an avatar's voice, shared by every viewer.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    /// The Opus packet (RFC 6716), one frame of 10 or 20 ms.
    pub data: Arc<[u8]>,
    /// RTP timestamp of its first sample in the 48 kHz clock, on the same
    /// timeline as the avatar's video (both count from one source clock).
    pub rtp_time: u64,
    /// When its first sample was captured, on the clock video's
    /// `captured_at` uses: the Sender Reports map both tracks to one NTP
    /// timeline through it, which is what lip sync rests on.
    pub captured_at: Instant,
    /// When the packet could first go out: its last sample was in hand and
    /// its time had come (t0 of the audio frame-to-packet latency).
    pub ready_at: Instant,
}
