//! The current group of pictures of an avatar, kept so that a viewer who
//! joins mid-stream starts decoding the moment its SRTP is up.
//!
//! Without it, a joining viewer's first picture waits for a keyframe that is
//! only asked for once DTLS completes: the encoder's next frame tick plus an
//! IDR encode later. The engine instead asks for the keyframe when it sends
//! the answer, keeps the IDR and the pictures after it here, and writes them
//! to the viewer at once when its media starts; it then continues with the
//! live pictures, so the decoder sees one unbroken GOP. A GOP older than
//! [`MAX_JOIN_GOP_FRAMES`] pictures is dropped instead of being replayed in a
//! burst: a viewer joining then waits for a fresh keyframe, as before.

use crate::media::AccessUnit;

/// Most pictures replayed to a joining viewer (~0.5 s at 30 fps; the keyframe
/// limiter's default interval, so a viewer whose keyframe request is merged
/// into a recent one still finds that one here).
pub const MAX_JOIN_GOP_FRAMES: usize = 16;

/// The keyframe of an avatar and the pictures since, while they are few.
#[derive(Debug, Default)]
pub struct JoinGop {
    frames: Vec<AccessUnit>,
}

impl JoinGop {
    /// Records a picture the avatar's source produced.
    pub fn push(&mut self, au: &AccessUnit) {
        if au.keyframe {
            self.frames.clear();
            self.frames.push(au.clone());
        } else if !self.frames.is_empty() {
            if self.frames.len() < MAX_JOIN_GOP_FRAMES {
                self.frames.push(au.clone());
            } else {
                self.frames.clear();
            }
        }
    }

    /// Forgets everything (a new source took over the avatar).
    pub fn clear(&mut self) {
        self.frames.clear();
    }

    /// The keyframe and the pictures after it, in order; empty when there is no usable GOP.
    pub fn frames(&self) -> &[AccessUnit] {
        &self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::VideoCodec;
    use std::sync::Arc;
    use std::time::Instant;

    fn au(index: u64, keyframe: bool) -> AccessUnit {
        let now = Instant::now();
        AccessUnit {
            codec: VideoCodec::H264,
            data: Arc::from(&[0u8, 0, 0, 1][..]),
            rtp_time: index * 3000,
            keyframe,
            captured_at: now,
            encoded_at: now,
            frame_index: index,
            rendition: 0,
            bitrate_bps: 0,
        }
    }

    fn indices(g: &JoinGop) -> Vec<u64> {
        g.frames().iter().map(|a| a.frame_index).collect()
    }

    #[test]
    fn a_gop_starts_at_a_keyframe_and_ends_when_it_grows_long() {
        let mut g = JoinGop::default();
        g.push(&au(0, false));
        assert!(
            g.frames().is_empty(),
            "P-frames without their keyframe are useless"
        );
        g.push(&au(1, true));
        g.push(&au(2, false));
        assert_eq!(indices(&g), [1, 2]);
        for i in 3..=MAX_JOIN_GOP_FRAMES as u64 {
            g.push(&au(i, false));
        }
        assert_eq!(g.frames().len(), MAX_JOIN_GOP_FRAMES);
        g.push(&au(100, false));
        assert!(g.frames().is_empty(), "too long to replay");
        g.push(&au(101, false));
        assert!(g.frames().is_empty());
        g.push(&au(102, true));
        assert_eq!(indices(&g), [102]);
        g.clear();
        assert!(g.frames().is_empty());
    }
}
