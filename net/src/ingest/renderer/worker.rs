//! The encoder thread of one renderer: takes the newest raw frame from the
//! slot, converts it to I420 and encodes it (rendition 0 in H.264 always, the
//! other renditions and VP8 while someone receives them), hands the pictures
//! to the loop, tells the renderer whether its avatar is watched, and passes
//! keyframe requests on to a renderer that sends H.264 itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcast_engine::encoder::{Encoded, EncoderSettings};
use portcast_engine::{AccessUnit, AvatarId, VideoCodec};

use super::{count_both, forward, send, Writer};
use crate::encoders::Encoders;
use crate::ingest::convert::{i420_view, packed_to_i420, I420Buffer};
use crate::ingest::slot::{RawFrame, Slot};
use crate::ingest::wire::{self, PixelFormat, WireError};
use crate::ingest::{IngestCounters, Shared, Stat};
use crate::source::EncoderDemand;

/// The encoder thread of one renderer.
pub(super) struct Worker {
    pub(super) avatar: AvatarId,
    pub(super) shared: Arc<Shared>,
    pub(super) own: Option<IngestCounters>,
    pub(super) slot: Arc<Slot>,
    pub(super) watched: Arc<EncoderDemand>,
    pub(super) passthrough: Arc<AtomicBool>,
    pub(super) writer: Writer,
    /// Its H.264 encoder (raw formats), and its VP8 one while a viewer watches in VP8.
    pub(super) encoders: Encoders,
    pub(super) i420: I420Buffer,
    pub(super) out: Vec<u8>,
    pub(super) last_rtp: Option<u64>,
}

impl Worker {
    fn count(&self, stat: Stat) {
        count_both(&self.shared, self.own.as_ref(), stat, 1);
    }

    pub(super) fn run(mut self) {
        // Registered: say whether anyone watches now, then on every change.
        let mut told = None;
        loop {
            let work = self.slot.wait(Duration::from_millis(500));
            let watched = self.watched.any();
            if told != Some(watched) {
                if send(&self.writer, &wire::watched(watched)) {
                    log::debug!("ingest avatar {}: told watched={watched}", self.avatar);
                }
                told = Some(watched);
            }
            // Pass-through: the renderer makes the keyframe. Raw pictures: the
            // encoders take the requests the demand holds per codec and
            // rendition at the next picture.
            if work.keyframe
                && self.passthrough.load(Ordering::Relaxed)
                && send(&self.writer, &wire::keyframe_request())
            {
                self.count(Stat::KeyframeRequestsSent);
            }
            if let Some(frame) = work.frame {
                let result = self.encode(&frame);
                self.slot.recycle(frame.data);
                if let Err(e) = result {
                    log::error!("ingest avatar {}: {e}", self.avatar);
                    send(&self.writer, &wire::refused(e.code(), &e.to_string()));
                    // The reader sees the socket close and cleans up.
                    if let Ok(w) = self.writer.lock() {
                        let _ = w.shutdown(std::net::Shutdown::Both);
                    }
                    return;
                }
            }
            if work.closed {
                return;
            }
        }
    }

    fn encode(&mut self, frame: &RawFrame) -> Result<(), WireError> {
        let f = frame.format;
        let settings = EncoderSettings {
            width: f.width,
            height: f.height,
            fps: f.fps,
            bitrate_bps: f.bitrate_bps(),
            threads: self.shared.config.encoder_threads,
        };
        let (w, h) = (f.width as usize, f.height as usize);
        let pic = match f.format {
            PixelFormat::I420 => i420_view(&frame.data, w, h),
            PixelFormat::Rgb24 | PixelFormat::Bgra => {
                let t = Instant::now();
                packed_to_i420(f.format, &frame.data, w, h, &mut self.i420)
                    .map_err(WireError::Encoder)?;
                let micros = t.elapsed().as_micros() as u64;
                count_both(&self.shared, self.own.as_ref(), Stat::ConvertMicros, micros);
                self.i420.view()
            }
            PixelFormat::H264 => return Ok(()),
        };
        // Rendition 0 in H.264 always (a new size or rate makes a new encoder, whose
        // first picture is an IDR with in-band SPS); the rest only while a viewer
        // receives them.
        let always = |codec, r| codec == VideoCodec::H264 && r == 0;
        let watched = &self.watched;
        let switched = self
            .encoders
            .sync(settings, |codec, r| {
                always(codec, r) || watched.get_at(codec, r)
            })
            .map_err(WireError::Encoder)?;
        for s in switched.iter().filter(|s| !always(s.codec, s.rendition)) {
            match s.started {
                true => log::info!("ingest avatar {}: {} encoder started", self.avatar, s.label),
                false => log::info!(
                    "ingest avatar {}: {} encoder stopped, no viewer receives it",
                    self.avatar,
                    s.label
                ),
            }
        }
        // Every codec's picture goes out with the same RTP time.
        let mut rtp_time = self.shared.rtp_time(frame.arrived_at);
        if let Some(last) = self.last_rtp {
            rtp_time = rtp_time.max(last + 1);
        }
        self.last_rtp = Some(rtp_time);
        let (shared, own, avatar) = (&self.shared, self.own.as_ref(), &self.avatar);
        // The hub's frame counters count rendition-0 H.264 pictures, as
        // before VP8 and the ladder existed.
        let count = |codec: VideoCodec, rendition: u8, stat| {
            if codec == VideoCodec::H264 && rendition == 0 {
                count_both(shared, own, stat, 1);
            }
        };
        self.encoders
            .encode_each(&pic, &self.watched, &mut self.out, |p| {
                if p.kind == Encoded::Skipped {
                    count(p.codec, p.rendition, Stat::EncoderSkips);
                    return true;
                }
                count(p.codec, p.rendition, Stat::FramesEncoded);
                let au = AccessUnit {
                    codec: p.codec,
                    data: Arc::from(p.data),
                    rtp_time,
                    keyframe: p.kind == Encoded::Keyframe,
                    captured_at: frame.arrived_at,
                    encoded_at: p.encoded_at,
                    frame_index: frame.index,
                    rendition: p.rendition,
                    bitrate_bps: p.bitrate_bps,
                };
                let sent = forward(shared, own, avatar, au);
                if sent {
                    count(p.codec, p.rendition, Stat::FramesForwarded);
                }
                sent
            })
            .map_err(|(_, e)| WireError::Encoder(e.to_string()))
    }
}
