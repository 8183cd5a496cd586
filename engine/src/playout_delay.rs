//! The playout-delay RTP header extension
//! (<http://www.webrtc.org/experiments/rtp-hdrext/playout-delay>): the sender
//! tells the receiver how long it may hold frames in its jitter buffer.
//!
//! Browsers otherwise pick their own target (~7-9 ms per frame measured here
//! for Chromium on a clean link). `min = 0` with a small max asks Chromium to
//! render each frame as soon as it is decoded, which is what a talking avatar
//! wants: its jitter buffer held 0.2-0.4 ms per frame instead of 7.7-8.8 ms
//! (busy 720p through the e2e NAT). The default max is 10 ms, not 0: with
//! `max = 0` Chromium 156 switches to its low-latency renderer, which showed
//! each frame about one vsync later (capture -> display p50 26-29 ms against
//! 10-11 ms with max 10-200, `portcast-bench glass`, 2026-12-05). It is only
//! sent to viewers whose offer carries the extension (Chromium does; aiortc and
//! Firefox do not).

use std::time::Duration;

use str0m::media::MediaTime;

/// Largest delay the extension can carry: 12 bits of 10 ms.
pub const MAX_PLAYOUT_DELAY: Duration = Duration::from_millis(4095 * 10);

/// The least max a viewer who also hears the avatar is sent: room for the
/// browser to hold video back until its audio (20 ms packets, its jitter
/// buffer, the sound card) catches up. With max = 0 Chromium cannot delay the
/// picture and the sound came 65-95 ms late (e2e, headless Chromium 156);
/// with 200 ms its own estimate was 17-32 ms late.
pub const LIP_SYNC_MAX_DELAY: Duration = Duration::from_millis(200);

/// The `(min, max)` playout delay sent to viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayoutDelay {
    /// Shortest time the receiver should hold a frame before rendering it.
    pub min: Duration,
    /// Longest time the receiver may hold a frame before rendering it.
    pub max: Duration,
}

impl PlayoutDelay {
    /// `min = max = 0`: Chromium's low-latency renderer (a vsync slower here, see above).
    pub const IMMEDIATE: PlayoutDelay = PlayoutDelay {
        min: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// The default: render each frame as soon as it is decoded, holding none
    /// longer than 10 ms (the extension's unit), through Chromium's usual renderer.
    pub const DEFAULT: PlayoutDelay = PlayoutDelay {
        min: Duration::ZERO,
        max: Duration::from_millis(10),
    };

    /// Checks `min <= max <= 40.95 s`; the error says which rule was broken.
    pub fn new(min: Duration, max: Duration) -> Result<PlayoutDelay, String> {
        if max > MAX_PLAYOUT_DELAY {
            return Err(format!(
                "playout delay max {} ms is over the extension's {} ms",
                max.as_millis(),
                MAX_PLAYOUT_DELAY.as_millis()
            ));
        }
        if min > max {
            return Err(format!(
                "playout delay min {} ms is over its max {} ms",
                min.as_millis(),
                max.as_millis()
            ));
        }
        Ok(PlayoutDelay { min, max })
    }

    /// The delay for a viewer who hears the avatar too: max at least [`LIP_SYNC_MAX_DELAY`].
    pub fn with_lip_sync(self) -> PlayoutDelay {
        PlayoutDelay {
            min: self.min,
            max: self.max.max(LIP_SYNC_MAX_DELAY),
        }
    }

    /// The pair as str0m's writer takes it (10 ms units on the wire; rounded down).
    pub(crate) fn media_times(self) -> (MediaTime, MediaTime) {
        let hundredths = |d: Duration| MediaTime::from_hundredths((d.as_millis() / 10) as u64);
        (hundredths(self.min), hundredths(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_must_be_ordered_and_fit_the_extension() {
        let ms = Duration::from_millis;
        assert!(PlayoutDelay::new(ms(0), ms(0)).is_ok());
        assert!(PlayoutDelay::new(ms(100), ms(40_950)).is_ok());
        assert!(PlayoutDelay::new(ms(0), ms(40_960))
            .unwrap_err()
            .contains("over the extension"));
        assert!(PlayoutDelay::new(ms(200), ms(100))
            .unwrap_err()
            .contains("over its max"));
    }

    #[test]
    fn delays_go_on_the_wire_in_hundredths() {
        let d = PlayoutDelay::new(Duration::from_millis(129), Duration::from_millis(250)).unwrap();
        let (min, max) = d.media_times();
        assert_eq!(min, MediaTime::from_hundredths(12));
        assert_eq!(max, MediaTime::from_hundredths(25));
    }
}
