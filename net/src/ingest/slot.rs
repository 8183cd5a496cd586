//! The hand-off between a renderer's reader thread and its encoder thread:
//! one slot holding the newest raw frame, plus a keyframe flag.
//!
//! Newest frame wins: when the encoder is behind, a frame waiting in the slot
//! is replaced by the next one (and counted as dropped) instead of queueing,
//! so a slow encode never turns into delay. Frame buffers circulate between
//! the two threads and are reused, so a steady stream allocates nothing.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::wire::StreamFormat;

/// Buffers kept for reuse: one being read, one waiting, one being encoded.
const SPARE_BUFFERS: usize = 3;

/// A raw picture as it arrived.
#[derive(Debug)]
pub struct RawFrame {
    /// Its format (the one in force when it arrived).
    pub format: StreamFormat,
    /// The renderer's frame number.
    pub index: u64,
    /// When its last byte was read from the socket.
    pub arrived_at: Instant,
    /// The pixels.
    pub data: Vec<u8>,
}

/// What the encoder thread is woken for.
#[derive(Debug, Default)]
pub struct Work {
    /// The newest frame, if one came since the last take.
    pub frame: Option<RawFrame>,
    /// A viewer asked for an IDR.
    pub keyframe: bool,
    /// The renderer is gone: finish.
    pub closed: bool,
    /// Whether anyone watches may have changed: tell the renderer.
    pub watched_changed: bool,
}

#[derive(Debug, Default)]
struct State {
    pending: Option<RawFrame>,
    keyframe: bool,
    closed: bool,
    watched_changed: bool,
    spare: Vec<Vec<u8>>,
}

/// The slot shared by one renderer's threads (and the loop, for keyframe requests).
#[derive(Debug, Default)]
pub struct Slot {
    state: Mutex<State>,
    wake: Condvar,
}

impl Slot {
    /// A buffer to read the next frame into (reused when one is spare).
    pub fn buffer(&self) -> Vec<u8> {
        self.lock().spare.pop().unwrap_or_default()
    }

    /// Offers a frame; returns true when it replaced one the encoder had not taken (a drop).
    pub fn put(&self, frame: RawFrame) -> bool {
        let mut s = self.lock();
        let replaced = s.pending.replace(frame);
        let dropped = replaced.is_some();
        if let Some(old) = replaced {
            recycle(&mut s, old.data);
        }
        drop(s);
        self.wake.notify_one();
        dropped
    }

    /// Drops the frame waiting for the encoder (barge-in); true if there was one.
    pub fn discard(&self) -> bool {
        let mut s = self.lock();
        match s.pending.take() {
            Some(old) => {
                recycle(&mut s, old.data);
                true
            }
            None => false,
        }
    }

    /// Gives a buffer back for reuse.
    pub fn recycle(&self, data: Vec<u8>) {
        recycle(&mut self.lock(), data);
    }

    /// Asks for the next encoded picture to be an IDR (or, for pass-through, tells the renderer).
    pub fn request_keyframe(&self) {
        self.lock().keyframe = true;
        self.wake.notify_one();
    }

    /// Whether anyone watches changed; wakes the encoder thread to tell the renderer.
    pub fn watched_changed(&self) {
        self.lock().watched_changed = true;
        self.wake.notify_one();
    }

    /// The renderer is gone; wakes the encoder thread so it ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// Waits (at most `limit`) for a frame, a keyframe request or the close, and takes them.
    pub fn wait(&self, limit: Duration) -> Work {
        let mut s = self.lock();
        if s.pending.is_none() && !s.keyframe && !s.closed && !s.watched_changed {
            s = match self.wake.wait_timeout(s, limit) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        Work {
            frame: s.pending.take(),
            keyframe: std::mem::take(&mut s.keyframe),
            closed: s.closed,
            watched_changed: std::mem::take(&mut s.watched_changed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop frames: the state stays consistent
        // because every critical section is a few field moves.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn recycle(s: &mut State, data: Vec<u8>) {
    if s.spare.len() < SPARE_BUFFERS {
        s.spare.push(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::wire::PixelFormat;

    fn frame(index: u64) -> RawFrame {
        RawFrame {
            format: StreamFormat {
                format: PixelFormat::I420,
                width: 16,
                height: 16,
                fps: 30,
                bitrate_kbps: 0,
            },
            index,
            arrived_at: Instant::now(),
            data: vec![0; 384],
        }
    }

    #[test]
    fn the_newest_frame_replaces_a_waiting_one_and_counts_a_drop() {
        let slot = Slot::default();
        assert!(!slot.put(frame(1)));
        assert!(slot.put(frame(2)), "frame 1 was never taken: dropped");
        let w = slot.wait(Duration::from_millis(1));
        assert_eq!(w.frame.map(|f| f.index), Some(2));
        assert!(slot.wait(Duration::from_millis(1)).frame.is_none());
        // The dropped frame's buffer is reused.
        assert_eq!(slot.buffer().capacity(), 384);
    }

    #[test]
    fn keyframe_requests_and_close_wake_the_encoder() {
        let slot = Slot::default();
        slot.request_keyframe();
        let w = slot.wait(Duration::from_secs(5));
        assert!(w.keyframe && !w.closed && w.frame.is_none());
        slot.close();
        assert!(slot.wait(Duration::from_secs(5)).closed);
    }
}
