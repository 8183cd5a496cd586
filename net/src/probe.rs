//! Optional per-frame timing, for the benchmark harness.
//!
//! With a probe set in `ServerConfig`, the loop reports, for every access unit
//! it fans out, when it was captured (t0), encoded (t1) and when its last
//! datagram was handed to the kernel (t2). A full probe channel drops reports:
//! measuring must never slow the loop down.

use std::time::{Instant, SystemTime};

use portcast_engine::AvatarId;

/// Timing of one access unit through the loop.
#[derive(Debug, Clone)]
pub struct FrameTiming {
    /// Avatar it belongs to.
    pub avatar: AvatarId,
    /// Source frame number.
    pub frame_index: u64,
    /// IDR or not.
    pub keyframe: bool,
    /// Encoded size in bytes.
    pub bytes: usize,
    /// t0: raw frame handed to the encoder.
    pub captured_at: Instant,
    /// t1: access unit out of the encoder.
    pub encoded_at: Instant,
    /// When the loop took it from the channel.
    pub dequeued_at: Instant,
    /// When the engine had packetized and encrypted the frame for every viewer,
    /// before the datagrams went to the kernel.
    pub written_at: Instant,
    /// t2: the last datagram of this frame (to every viewer) was handed to the kernel.
    pub sent_at: Instant,
    /// t2 as wall-clock time, to compare with another process's receive time.
    pub sent_wall: SystemTime,
    /// Datagrams sent for this frame, all viewers together.
    pub datagrams: u64,
    /// An Opus packet rather than a picture: `frame_index` is its RTP time,
    /// and t0 = t1 is when it could first go out (its last sample in hand, its time come).
    pub audio: bool,
}
