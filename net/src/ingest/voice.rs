//! A renderer's voice: the chunks of its AUDIO messages turned into Opus
//! packets (PCM through rubato to 48 kHz mono, then libopus; Opus packets as
//! they came) and handed to the loop when their capture time comes. A live
//! chunk, whose time has come as it arrives, is turned into packets on the
//! reader's own thread; chunks sent ahead wait in a queue for the voice thread.
//!
//! A TTS engine produces speech faster than real time. Were its audio sent on
//! arrival, seconds of it would wait in every viewer's jitter buffer, out of
//! reach of an interruption. Here it waits in one bounded queue per renderer
//! (at most [`MAX_QUEUED`] of audio), and FLUSH (barge-in) empties that queue
//! and resets the encoder, so viewers stop hearing the old utterance within
//! the packet in flight.
//!
//! Timing: every AUDIO chunk and (in protocol version 2) every FRAME carries
//! its capture time on one renderer clock. [`Timeline`] maps that clock to
//! the daemon's, once per connection, so one renderer instant is one daemon
//! instant for both tracks; the RTP times derive from it on the daemon-wide
//! epoch. Within a continuous stretch of audio the RTP time advances by the
//! samples sent (no rounding drift); a gap of more than [`MAX_JITTER`] in the
//! timestamps (the renderer paused) starts a new stretch at the new time, so a
//! pause shifts neither track against the other.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portcast_engine::audio::{AudioSettings, OpusEncoder, SAMPLE_RATE};
use portcast_engine::{AudioFrame, AvatarId};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::source::Media;

use super::wire::{AudioCodec, AudioFormat};
use super::{IngestCounters, Shared, Stat};

/// Most audio one renderer may have queued ahead of its playout time.
pub const MAX_QUEUED: Duration = Duration::from_secs(10);
/// Timestamps may wander this far from the samples' own count before a new stretch starts.
pub const MAX_JITTER: Duration = Duration::from_millis(40);
/// 20 ms Opus frames of silence sent right after a FLUSH. Without them a
/// browser conceals the missing packets by carrying the last sound on and
/// fading it: Chromium kept a cut-off tone audible for ~320 ms after FLUSH
/// (e2e scenario i); with 60 ms of real silence it stopped within ~125 ms.
pub const FLUSH_SILENCE_FRAMES: u64 = 3;
/// Longest a packet waits for room in the loop's channel before it is dropped.
/// A renderer that catches up after a stall sends many chunks whose time has
/// passed; they go out back to back, and the channel (shared with every
/// avatar's pictures) holds only [`crate::source::CHANNEL_DEPTH`] items.
pub const MAX_LOOP_WAIT: Duration = Duration::from_millis(50);

/// Maps a renderer's clock (microseconds) to the daemon's, anchored at the
/// first timestamp the connection sends.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    anchor: Mutex<Option<(u64, Instant)>>,
}

impl Timeline {
    /// The daemon instant of renderer time `pts_us`.
    pub(crate) fn instant(&self, pts_us: u64) -> Instant {
        let (pts0, at0) = *lock(&self.anchor).get_or_insert_with(|| (pts_us, Instant::now()));
        if pts_us >= pts0 {
            at0 + Duration::from_micros(pts_us - pts0)
        } else {
            at0.checked_sub(Duration::from_micros(pts0 - pts_us))
                .unwrap_or(at0)
        }
    }
}

/// One AUDIO message's payload.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub pts_us: u64,
    pub format: AudioFormat,
    pub data: Vec<u8>,
    /// Its duration, checked by the reader.
    pub duration: Duration,
    /// When its last byte was read.
    pub arrived_at: Instant,
}

#[derive(Default)]
struct QueueState {
    chunks: VecDeque<Chunk>,
    queued: Duration,
    /// Bumped by every FLUSH: work of an older generation is dropped.
    generation: u64,
    /// Someone (the voice thread, or the reader on its fast path) holds the
    /// voice's [`Work`]; chunks wait in order until it lets go.
    busy: bool,
    closed: bool,
}

/// The chunks a renderer's reader thread hands its voice thread.
#[derive(Default)]
struct VoiceQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

impl VoiceQueue {
    /// Queues a chunk; false (and nothing queued) when [`MAX_QUEUED`] is reached.
    fn push(&self, chunk: Chunk) -> bool {
        let mut s = lock(&self.state);
        if s.queued + chunk.duration > MAX_QUEUED {
            return false;
        }
        s.queued += chunk.duration;
        s.chunks.push_back(chunk);
        drop(s);
        self.wake.notify_all();
        true
    }

    /// Barge-in: drops every queued chunk and what the voice thread is
    /// working on; returns how many chunks were dropped.
    fn flush(&self) -> usize {
        let mut s = lock(&self.state);
        let dropped = s.chunks.len();
        s.chunks.clear();
        s.queued = Duration::ZERO;
        s.generation += 1;
        drop(s);
        self.wake.notify_all();
        dropped
    }

    /// Stops the voice thread.
    fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_all();
    }

    /// The voice thread's next chunk and its generation, claiming the
    /// voice's [`Work`]; `None` once closed.
    fn next(&self) -> Option<(Chunk, u64)> {
        let mut s = lock(&self.state);
        loop {
            if s.closed {
                return None;
            }
            if !s.busy {
                if let Some(c) = s.chunks.pop_front() {
                    s.queued = s.queued.saturating_sub(c.duration);
                    s.busy = true;
                    return Some((c, s.generation));
                }
            }
            s = self
                .wake
                .wait_timeout(s, Duration::from_millis(500))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Claims the voice's [`Work`] when nobody holds it and no chunk waits
    /// before a new one; returns the generation to work in.
    fn claim_if_idle(&self) -> Option<u64> {
        let mut s = lock(&self.state);
        if s.busy || s.closed || !s.chunks.is_empty() {
            return None;
        }
        s.busy = true;
        Some(s.generation)
    }

    /// Lets go of the [`Work`] done in generation `done`, or, when a FLUSH
    /// came meanwhile, keeps the claim and returns the generation to catch up with.
    fn release(&self, done: u64) -> Result<(), u64> {
        let mut s = lock(&self.state);
        if s.generation != done && !s.closed {
            return Err(s.generation);
        }
        s.busy = false;
        drop(s);
        self.wake.notify_all();
        Ok(())
    }

    /// Waits until `due`; false if a FLUSH (or close) came first.
    fn wait_until(&self, due: Instant, generation: u64) -> bool {
        let mut s = lock(&self.state);
        loop {
            if s.closed || s.generation != generation {
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            s = self
                .wake
                .wait_timeout(s, due - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    #[cfg(test)]
    fn generation(&self) -> u64 {
        lock(&self.state).generation
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A continuous stretch of audio: its start and the 48 kHz samples sent since.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    start: Instant,
    rtp_start: u64,
    sent: u64,
    /// The renderer time the next chunk should carry.
    next_pts_us: u64,
}

/// PCM in, 48 kHz mono Opus frames out.
struct PcmPath {
    format: AudioFormat,
    resampler: Option<Fft<f32>>,
    input: Vec<f32>,
    scratch: Vec<f32>,
    output: Vec<i16>,
    /// Resampler delay still to cut from the output's start.
    skip: usize,
    encoder: OpusEncoder,
}

/// What turns chunks into packets: the PCM path (resampler and encoder), the
/// stretch of the timeline being filled, and the last packet sent. Only the
/// holder of the queue's claim touches it (see [`Voice::hold`]).
#[derive(Default)]
struct Work {
    pcm: Option<PcmPath>,
    stretch: Option<Stretch>,
    /// The FLUSH generation this work is in.
    generation: u64,
    /// The last packet handed to the loop: (RTP time, capture instant, samples).
    last: Option<(u64, Instant, u64)>,
    /// A 20 ms Opus packet of silence, once one was needed.
    silence: Option<Arc<[u8]>>,
    /// Set when the encoder or resampler failed (logged once): later chunks are dropped.
    failed: bool,
}

/// One renderer's voice: its queue and its [`Work`], shared by the voice
/// thread (which paces chunks sent ahead of their time) and the renderer's
/// reader (which turns a chunk that is already due into packets at once, on
/// its own thread: one thread hop less between the socket and the loop).
pub(crate) struct Voice {
    avatar: AvatarId,
    shared: Arc<Shared>,
    own: Option<IngestCounters>,
    queue: VoiceQueue,
    timeline: Arc<Timeline>,
    /// The daemon's Opus settings, for a format that leaves them to it.
    defaults: AudioSettings,
    work: Mutex<Work>,
}

impl Voice {
    pub(crate) fn new(
        avatar: AvatarId,
        shared: Arc<Shared>,
        own: Option<IngestCounters>,
        timeline: Arc<Timeline>,
    ) -> Voice {
        let defaults = shared.config.audio;
        Voice {
            avatar,
            shared,
            own,
            queue: VoiceQueue::default(),
            timeline,
            defaults,
            work: Mutex::new(Work::default()),
        }
    }

    fn count(&self, stat: Stat, n: u64) {
        self.shared.add(stat, n);
        if let Some(c) = &self.own {
            c.add(stat, n);
        }
    }

    /// The voice thread: each queued chunk at its capture time, until closed.
    pub(crate) fn run(&self) {
        while let Some((chunk, generation)) = self.queue.next() {
            self.hold(generation, Some(chunk), true);
        }
    }

    /// A chunk from the reader: turned into packets at once when its capture
    /// time has come (a live renderer's chunk: the first one anchors the
    /// timeline at its arrival) and nothing is queued or being worked on, else
    /// queued for the voice thread (speech sent ahead of its time). False (and
    /// nothing queued) when the queue is full. On this path a packet the
    /// stretch places up to [`MAX_JITTER`] after its chunk's time goes out at
    /// once, where the voice thread would have held it.
    pub(crate) fn offer(&self, chunk: Chunk) -> bool {
        if self.timeline.instant(chunk.pts_us) <= Instant::now() + self.defaults.lead {
            if let Some(generation) = self.queue.claim_if_idle() {
                self.hold(generation, Some(chunk), false);
                return true;
            }
        }
        self.queue.push(chunk)
    }

    /// Barge-in: drops every queued chunk and what is half-made, and sends
    /// the silence at once (or, when the voice thread is busy, as soon as it
    /// lets go); returns how many chunks were dropped.
    pub(crate) fn flush(&self) -> usize {
        let dropped = self.queue.flush();
        if let Some(generation) = self.queue.claim_if_idle() {
            self.hold(generation, None, false);
        }
        dropped
    }

    /// Stops the voice thread.
    pub(crate) fn close(&self) {
        self.queue.close();
    }

    /// With the claim in `generation`: catches up with any FLUSH, makes and
    /// sends `chunk`'s packets (`pace`: each at its capture time, for the
    /// voice thread; the reader's chunks are already due), and lets go.
    fn hold(&self, mut generation: u64, mut chunk: Option<Chunk>, pace: bool) {
        // `chunk` belongs to `generation` (it was queued or offered after any
        // FLUSH before it); a FLUSH during its work is caught up on release.
        let mut work = lock(&self.work);
        loop {
            if work.generation != generation {
                // Barge-in: nothing half-made of the old utterance survives,
                // and real silence follows it at once (see FLUSH_SILENCE_FRAMES).
                work.generation = generation;
                work.pcm = None;
                work.stretch = None;
                if let Some(last) = work.last.take() {
                    self.send_silence(&mut work, last, generation);
                }
            }
            if let Some(c) = chunk.take() {
                self.work_on(&mut work, &c, generation, pace);
            }
            match self.queue.release(generation) {
                Ok(()) => return,
                Err(newer) => generation = newer,
            }
        }
    }

    /// Turns one chunk into packets and hands them to the loop.
    fn work_on(&self, work: &mut Work, chunk: &Chunk, generation: u64, pace: bool) {
        if work.failed {
            return;
        }
        let frames = match chunk.format.codec {
            AudioCodec::PcmS16le => self.pcm(chunk, &mut work.pcm, &mut work.stretch),
            AudioCodec::Opus => self.opus(chunk, &mut work.stretch),
        };
        let frames = match frames {
            Ok(f) => f,
            Err(e) => {
                log::warn!("ingest avatar {}: audio stopped: {e}", self.avatar);
                work.failed = true;
                return;
            }
        };
        let samples = if chunk.format.codec == AudioCodec::Opus {
            (chunk.duration.as_micros() * 48 / 1000) as u64
        } else {
            self.defaults_or(&chunk.format)
        };
        for frame in frames {
            let send_at = frame.captured_at.checked_sub(self.defaults.lead);
            if pace
                && !self
                    .queue
                    .wait_until(send_at.unwrap_or(frame.captured_at), generation)
            {
                return;
            }
            let sent = (frame.rtp_time, frame.captured_at, samples);
            if !self.forward(frame, generation) {
                return;
            }
            work.last = Some(sent);
        }
    }

    /// Samples in one Opus frame the daemon encodes for `format`.
    fn defaults_or(&self, format: &AudioFormat) -> u64 {
        let ms = match format.frame_ms {
            0 => self.defaults.frame.as_millis() as u64,
            ms => u64::from(ms),
        };
        ms * u64::from(SAMPLE_RATE) / 1000
    }

    /// Hands a packet to the loop; false once the loop is gone. When the
    /// loop's channel is full (a burst of late chunks beside the pictures of
    /// every avatar) it waits for room, up to [`MAX_LOOP_WAIT`], and gives up
    /// at once on a FLUSH: the packet is dropped and counted only then.
    fn forward(&self, frame: AudioFrame, generation: u64) -> bool {
        let give_up = Instant::now() + MAX_LOOP_WAIT;
        let mut item = (self.avatar.clone(), Media::Audio(frame));
        loop {
            match self.shared.frames.try_send(item) {
                Ok(()) => {
                    let _ = self.shared.waker.wake();
                    self.count(Stat::AudioFramesForwarded, 1);
                    return true;
                }
                Err(std::sync::mpsc::TrySendError::Full(back)) => {
                    let now = Instant::now();
                    if now >= give_up
                        || !self
                            .queue
                            .wait_until(now + Duration::from_millis(1), generation)
                    {
                        self.count(Stat::AudioDroppedLoopBehind, 1);
                        return true;
                    }
                    item = back;
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
            }
        }
    }

    /// [`FLUSH_SILENCE_FRAMES`] of silence right after the last packet sent,
    /// all at once; false once the loop is gone.
    fn send_silence(
        &self,
        work: &mut Work,
        (rtp, at, samples): (u64, Instant, u64),
        generation: u64,
    ) -> bool {
        let packet = match self.silence_packet(work) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("ingest avatar {}: no silence after flush: {e}", self.avatar);
                return true;
            }
        };
        let step = u64::from(SAMPLE_RATE) / 50;
        let now = Instant::now();
        for k in 0..FLUSH_SILENCE_FRAMES {
            let offset = samples + k * step;
            let frame = AudioFrame {
                data: packet.clone(),
                rtp_time: rtp + offset,
                captured_at: at
                    + Duration::from_nanos(offset * 1_000_000_000 / u64::from(SAMPLE_RATE)),
                ready_at: now,
            };
            if !self.forward(frame, generation) {
                return false;
            }
        }
        true
    }

    /// One 20 ms Opus packet of digital silence, made once.
    fn silence_packet(&self, work: &mut Work) -> Result<Arc<[u8]>, String> {
        if let Some(p) = &work.silence {
            return Ok(p.clone());
        }
        let mut encoder = OpusEncoder::new(AudioSettings {
            frame: Duration::from_millis(20),
            ..self.defaults
        })?;
        let zeros = vec![0i16; encoder.settings().frame_samples()];
        let packet: Arc<[u8]> = Arc::from(encoder.encode(&zeros)?);
        work.silence = Some(packet.clone());
        Ok(packet)
    }

    /// Where `chunk` goes on the timeline: the current stretch, or a new one
    /// when its timestamp left the samples' count by more than [`MAX_JITTER`];
    /// `None` for a chunk that goes back in time (dropped and counted).
    fn place(&self, chunk: &Chunk, stretch: &mut Option<Stretch>) -> Option<Stretch> {
        let jitter = MAX_JITTER.as_micros() as i64;
        if let Some(s) = stretch {
            let off = chunk.pts_us as i64 - s.next_pts_us as i64;
            if off < -jitter {
                self.count(Stat::TimestampBack, 1);
                return None;
            }
            if off <= jitter {
                return Some(*s);
            }
        }
        let start = self.timeline.instant(chunk.pts_us);
        Some(Stretch {
            start,
            rtp_start: self.shared.rtp_time_at(start, SAMPLE_RATE),
            sent: 0,
            next_pts_us: chunk.pts_us,
        })
    }

    /// The packet made of `data`, at the stretch's current position; `arrived`
    /// is when the chunk that completed it was read.
    fn frame_at(s: &Stretch, data: &[u8], arrived: Instant) -> AudioFrame {
        let offset = Duration::from_nanos(s.sent * 1_000_000_000 / u64::from(SAMPLE_RATE));
        let captured_at = s.start + offset;
        AudioFrame {
            data: Arc::from(data),
            rtp_time: s.rtp_start + s.sent,
            captured_at,
            ready_at: arrived.max(captured_at),
        }
    }

    fn opus(
        &self,
        chunk: &Chunk,
        stretch: &mut Option<Stretch>,
    ) -> Result<Vec<AudioFrame>, String> {
        let Some(mut s) = self.place(chunk, stretch) else {
            return Ok(Vec::new());
        };
        let samples = (chunk.duration.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64;
        let frame = Self::frame_at(&s, &chunk.data, chunk.arrived_at);
        s.sent += samples;
        s.next_pts_us = chunk.pts_us + chunk.duration.as_micros() as u64;
        *stretch = Some(s);
        Ok(vec![frame])
    }

    fn pcm(
        &self,
        chunk: &Chunk,
        path: &mut Option<PcmPath>,
        stretch: &mut Option<Stretch>,
    ) -> Result<Vec<AudioFrame>, String> {
        let Some(placed) = self.place(chunk, stretch) else {
            return Ok(Vec::new());
        };
        let continues =
            stretch.is_some_and(|s| s.rtp_start == placed.rtp_start && s.start == placed.start);
        if !continues || path.as_ref().is_none_or(|p| p.format != chunk.format) {
            // A new stretch (or format): what was half-made belongs to the old one.
            *path = Some(PcmPath::new(chunk.format, self.defaults)?);
        }
        let Some(p) = path.as_mut() else {
            return Ok(Vec::new());
        };
        let mut s = placed;
        let channels = usize::from(chunk.format.channels);
        let frames_in = chunk.data.len() / (2 * channels);
        let sample = |i: usize| i16::from_le_bytes([chunk.data[2 * i], chunk.data[2 * i + 1]]);
        let mono = (0..frames_in).map(|f| {
            let sum: i32 = (0..channels)
                .map(|c| i32::from(sample(f * channels + c)))
                .sum();
            (sum / channels as i32) as i16
        });
        p.push(mono)?;
        let mut out = Vec::new();
        let n = p.encoder.settings().frame_samples();
        while p.output.len() >= n {
            let packet = p.encoder.encode(&p.output[..n])?;
            out.push(Self::frame_at(&s, packet, chunk.arrived_at));
            p.output.drain(..n);
            s.sent += n as u64;
        }
        s.next_pts_us =
            chunk.pts_us + frames_in as u64 * 1_000_000 / u64::from(chunk.format.sample_rate);
        *stretch = Some(s);
        Ok(out)
    }
}

impl PcmPath {
    fn new(format: AudioFormat, defaults: AudioSettings) -> Result<Self, String> {
        let settings = AudioSettings {
            bitrate_bps: match format.bitrate_kbps {
                0 => defaults.bitrate_bps,
                k => k * 1000,
            },
            frame: match format.frame_ms {
                0 => defaults.frame,
                ms => Duration::from_millis(u64::from(ms)),
            },
            lead: defaults.lead,
        };
        let encoder = OpusEncoder::new(settings)?;
        let rate = format.sample_rate as usize;
        let resampler = if format.sample_rate == SAMPLE_RATE {
            None
        } else {
            // 20 ms of input per call: a whole number of samples at every accepted rate.
            let r = Fft::<f32>::new(rate, SAMPLE_RATE as usize, rate / 50, 1, FixedSync::Input)
                .map_err(|e| format!("resampler {rate} -> 48000 Hz: {e}"))?;
            Some(r)
        };
        let skip = resampler.as_ref().map_or(0, |r| r.output_delay());
        let scratch = vec![0.0; resampler.as_ref().map_or(0, |r| r.output_frames_max())];
        Ok(PcmPath {
            format,
            resampler,
            input: Vec::new(),
            scratch,
            output: Vec::new(),
            skip,
            encoder,
        })
    }

    /// Takes mono samples at the input rate; leaves 48 kHz samples in `output`.
    fn push(&mut self, mono: impl Iterator<Item = i16>) -> Result<(), String> {
        let Some(r) = self.resampler.as_mut() else {
            self.output.extend(mono);
            return Ok(());
        };
        self.input.extend(mono.map(|s| f32::from(s) / 32768.0));
        loop {
            let need = r.input_frames_next();
            if self.input.len() < need {
                return Ok(());
            }
            let input = InterleavedSlice::new(&self.input[..need], 1, need)
                .map_err(|e| format!("resampler input: {e}"))?;
            let capacity = self.scratch.len();
            let mut output = InterleavedSlice::new_mut(&mut self.scratch, 1, capacity)
                .map_err(|e| format!("resampler output: {e}"))?;
            let (_, written) = r
                .process_into_buffer(&input, &mut output, None)
                .map_err(|e| format!("resampler: {e}"))?;
            self.input.drain(..need);
            let cut = self.skip.min(written);
            self.skip -= cut;
            self.output.extend(
                self.scratch[cut..written]
                    .iter()
                    .map(|x| (x.clamp(-1.0, 1.0) * 32767.0) as i16),
            );
        }
    }
}

#[cfg(test)]
mod tests;
