//! Rate limiting of keyframe requests sent to a source.
//!
//! Every joining viewer and every PLI/FIR asks its avatar for an IDR. An IDR
//! costs ~15x a P-frame, so requests are merged: at most one per interval, and a
//! request that arrives inside the interval is remembered and sent when it ends,
//! so nobody waits longer than one interval.

use std::time::{Duration, Instant};

/// Default minimum time between two keyframe requests to one source.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// One source's keyframe request limiter.
#[derive(Debug, Clone)]
pub struct KeyframeLimiter {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeLimiter {
    /// A limiter allowing one request per `interval`.
    pub fn new(interval: Duration) -> Self {
        KeyframeLimiter {
            interval,
            last_sent: None,
            pending: false,
        }
    }

    /// Changes the minimum time between two requests (a configuration reload).
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// Asks for a keyframe; true when the request must go to the source now.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// Called on timeout; true when a remembered request must go out now.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.pending && self.deadline().is_some_and(|d| now >= d) {
            self.last_sent = Some(now);
            self.pending = false;
            return true;
        }
        false
    }

    /// When a remembered request becomes due, if one is waiting.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(t)) => Some(t + self.interval),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_inside_the_interval_merge_into_one_sent_at_its_end() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = KeyframeLimiter::new(ms(500));
        assert!(l.request(t0));
        assert!(!l.request(t0 + ms(10)));
        assert!(!l.request(t0 + ms(20)));
        assert_eq!(l.deadline(), Some(t0 + ms(500)));
        assert!(!l.poll(t0 + ms(499)));
        assert!(l.poll(t0 + ms(500)));
        assert!(!l.poll(t0 + ms(501)), "merged requests go out once");
        assert_eq!(l.deadline(), None);
        assert!(l.request(t0 + ms(1001)));
    }
}
