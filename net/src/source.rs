//! Video sources: each runs on its own thread with its own encoder and hands
//! encoded access units to the loop through a bounded channel and a `Waker`.
//! The loop thread never encodes.
//!
//! A source runs one encoder per codec its viewers receive (H.264 for most,
//! VP8 for browsers without H.264), each fed the same rendered picture, and
//! each only while some viewer watches in that codec ([`SourceHandle::set_watched`],
//! driven by the engine's `Output::Watched`). With no viewer at all its thread
//! waits on its control channel and its voice sleeps, so an idle daemon costs
//! next to nothing; an encoder's first picture after a pause is an IDR on the
//! source's unbroken clock.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::Waker;
use portcast_engine::audio::{self, OpusEncoder};
use portcast_engine::encoder::{new_encoder, Encoded, EncoderSettings};
use portcast_engine::pattern::{TestPattern, I420};
use portcast_engine::{AccessUnit, AudioFrame, AvatarId, Rung, VideoCodec, MAX_RENDITIONS};
use prometheus_client::metrics::counter::Counter;

use crate::encoders::Encoders;
use crate::server::AvatarSpec;
use prometheus_client::metrics::gauge::Gauge;

/// Access units waiting for the loop, from every source; when full, a source
/// drops and asks itself for an IDR. One picture of an avatar can be up to
/// [`MAX_RENDITIONS`] access units per codec (its renditions), so the channel
/// holds a few pictures of several avatars.
pub const CHANNEL_DEPTH: usize = 32;

/// What a source sends to the loop.
pub type SourceEvent = (AvatarId, Media);

/// What a source hands the loop.
#[derive(Debug, Clone)]
pub enum Media {
    /// One encoded picture.
    Video(AccessUnit),
    /// One Opus packet.
    Audio(AudioFrame),
}

/// Control messages from the loop to a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The avatar's watched state changed (read it from the shared flags): wakes a paused source.
    Watched,
}

/// What the loop wants of a source's encoders, per codec and rendition:
/// whether some viewer watches it, whether its next picture must be a
/// keyframe, and (rendition 0) the bitrate cap its lone viewer's bandwidth
/// estimate sets. Shared by the loop, which sets them, and the encoding
/// threads, which read them before each picture.
#[derive(Debug, Default)]
pub struct EncoderDemand {
    watched: [AtomicBool; SLOTS],
    keyframe: [AtomicBool; SLOTS],
    /// Bits per second; 0 = no cap (the configured bitrate).
    cap_bps: [AtomicU32; VideoCodec::ALL.len()],
}

/// One flag per codec and rendition.
const SLOTS: usize = VideoCodec::ALL.len() * MAX_RENDITIONS;

/// The flag of `codec`'s rendition `rendition` (rendition 0 for one out of range).
pub(crate) fn slot(codec: VideoCodec, rendition: u8) -> usize {
    let r = usize::from(rendition);
    codec.index() * MAX_RENDITIONS + if r < MAX_RENDITIONS { r } else { 0 }
}

impl EncoderDemand {
    /// Whether a viewer watches `codec`'s rendition 0.
    pub fn get(&self, codec: VideoCodec) -> bool {
        self.get_at(codec, 0)
    }

    /// Whether a viewer watches `codec`'s rendition `rendition`.
    pub fn get_at(&self, codec: VideoCodec, rendition: u8) -> bool {
        self.watched[slot(codec, rendition)].load(Ordering::Relaxed)
    }

    /// Whether a viewer watches anything.
    pub fn any(&self) -> bool {
        self.watched.iter().any(|w| w.load(Ordering::Relaxed))
    }

    /// Sets `codec`'s rendition-0 flag; true when that changed it.
    pub fn set(&self, codec: VideoCodec, watched: bool) -> bool {
        self.set_at(codec, 0, watched)
    }

    /// Sets the flag of `codec`'s rendition `rendition`; true when that changed it.
    pub fn set_at(&self, codec: VideoCodec, rendition: u8, watched: bool) -> bool {
        self.watched[slot(codec, rendition)].swap(watched, Ordering::Relaxed) != watched
    }

    /// Asks for a keyframe from `codec`'s rendition `rendition` at its next picture.
    pub fn request_keyframe(&self, codec: VideoCodec, rendition: u8) {
        self.keyframe[slot(codec, rendition)].store(true, Ordering::Relaxed);
    }

    /// Takes a pending keyframe request of `codec`'s rendition `rendition`.
    pub fn take_keyframe(&self, codec: VideoCodec, rendition: u8) -> bool {
        self.keyframe[slot(codec, rendition)].swap(false, Ordering::Relaxed)
    }

    /// The most `codec`'s rendition-0 encoder should send now (`None`: its configured bitrate).
    pub fn cap(&self, codec: VideoCodec) -> Option<u32> {
        match self.cap_bps[codec.index()].load(Ordering::Relaxed) {
            0 => None,
            bps => Some(bps),
        }
    }

    /// Caps `codec`'s rendition-0 encoder at `cap_bps` (the engine's `Output::VideoBitrate`).
    pub fn set_cap(&self, codec: VideoCodec, cap_bps: Option<u32>) {
        let bps = cap_bps.map_or(0, |b| b.max(1));
        self.cap_bps[codec.index()].store(bps, Ordering::Relaxed);
    }
}

/// Counters a source thread keeps, readable from any thread (clones share
/// the values; [`crate::metrics::Metrics::source`] makes them part of `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct SourceCounters {
    /// Pictures encoded.
    pub frames: Counter,
    /// IDR pictures encoded.
    pub keyframes: Counter,
    /// Frames not rendered because the thread fell behind its clock.
    pub late_skips: Counter,
    /// Access units and audio packets dropped because the loop's channel was full.
    pub channel_drops: Counter,
    /// Pictures the encoder's rate control skipped (content too costly for the bitrate).
    pub encoder_skips: Counter,
    /// Total encode time in microseconds.
    pub encode_us: Counter,
    /// Per codec ([`VideoCodec::index`]): 1 while that encoder runs (a viewer
    /// watches in it), 0 while it is stopped.
    pub encoding: [Gauge; VideoCodec::ALL.len()],
    /// Per codec: the bitrate its encoder aims at now, bits per second (0 while stopped).
    pub bitrate_bps: [Gauge; VideoCodec::ALL.len()],
}

/// The loop's handle on a running source thread.
#[derive(Debug)]
pub struct SourceHandle {
    /// The avatar it feeds.
    pub avatar: AvatarId,
    control: Sender<Control>,
    stop: Arc<AtomicBool>,
    /// Whether anyone watches the avatar, per codec: the source encodes only then.
    watched: Arc<EncoderDemand>,
    thread: Option<JoinHandle<()>>,
    /// Its counters.
    pub counters: SourceCounters,
    /// The thread encoding its voice, if it speaks (stopped with the picture's).
    voice: Option<JoinHandle<()>>,
}

impl SourceHandle {
    /// Asks the source's encoder of `codec` and `rendition` for an IDR.
    pub fn request_keyframe(&self, codec: VideoCodec, rendition: u8) {
        self.watched.request_keyframe(codec, rendition);
    }

    /// Caps the source's `codec` encoder at `cap_bps` from its next picture on
    /// (`None`: its configured bitrate).
    pub fn set_bitrate_cap(&self, codec: VideoCodec, cap_bps: Option<u32>) {
        self.watched.set_cap(codec, cap_bps);
    }

    /// Starts (`true`) or stops (`false`) the source's encoder of `codec`
    /// and `rendition`; a start begins with an IDR.
    pub fn set_watched(&self, codec: VideoCodec, rendition: u8, watched: bool) {
        if self.watched.set_at(codec, rendition, watched) {
            let _ = self.control.send(Control::Watched);
        }
    }

    /// Whether its threads are still running.
    pub fn is_alive(&self) -> bool {
        let running = |t: &JoinHandle<()>| !t.is_finished();
        self.thread.as_ref().is_some_and(running) && self.voice.as_ref().is_none_or(running)
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in [self.thread.take(), self.voice.take()]
            .into_iter()
            .flatten()
        {
            if t.join().is_err() {
                log::error!("source {}: thread panicked", self.avatar);
            }
        }
    }
}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pictures a source thread encodes, one per tick of its clock.
pub trait Frames: Send {
    /// What the pictures are, for the start log line (e.g. `test pattern 1280x720`).
    fn describe(&self) -> String;
    /// The picture of frame `index`, `at` on the source's clock (from its
    /// start), stamped with `clock_ms` if it shows a clock.
    fn frame(&mut self, index: u64, at: Duration, clock_ms: u64) -> Result<I420<'_>, String>;
}

impl Frames for TestPattern {
    fn describe(&self) -> String {
        format!("test pattern {}x{}", self.width(), self.height())
    }

    fn frame(&mut self, index: u64, at: Duration, clock_ms: u64) -> Result<I420<'_>, String> {
        self.set_flash(audio::flashing(at));
        Ok(self.render(index, clock_ms))
    }
}

/// Starts the built-in test pattern of `spec` on a new thread, with the
/// lower renditions of `ladder`, and its beep on another when it has a voice
/// (both on one clock: the beep sounds exactly while the picture flashes).
pub fn spawn_test_pattern(
    spec: &AvatarSpec,
    ladder: &[Rung],
    counters: SourceCounters,
    tx: SyncSender<SourceEvent>,
    waker: Arc<Waker>,
) -> std::io::Result<SourceHandle> {
    let (avatar, settings) = (spec.name.clone(), spec.encoder);
    let mut pattern = TestPattern::new(settings.width as usize, settings.height as usize)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "test pattern cannot be {}x{}",
                    settings.width, settings.height
                ),
            )
        })?;
    pattern.set_busy(spec.busy);
    let encoder = spec
        .audio
        .map(OpusEncoder::new)
        .transpose()
        .map_err(|e| std::io::Error::other(format!("voice of {avatar}: {e}")))?;
    let epoch = Instant::now();
    let mut handle = spawn_frames_at(
        epoch,
        avatar.clone(),
        Encoders::with_ladder(ladder.to_vec()),
        settings,
        Box::new(pattern),
        counters.clone(),
        (tx.clone(), waker.clone()),
    )?;
    if let Some(encoder) = encoder {
        let voice = Voice {
            avatar: avatar.clone(),
            encoder,
            counters,
            epoch,
            tx,
            waker,
            stop: handle.stop.clone(),
            watched: handle.watched.clone(),
        };
        handle.voice = Some(
            std::thread::Builder::new()
                .name(format!("voice-{avatar}"))
                .spawn(move || voice.run())?,
        );
    }
    Ok(handle)
}

/// Starts a source thread encoding `pattern`'s pictures at `settings.fps`
/// for `avatar`, with the lower renditions of `ladder`.
pub fn spawn_frames(
    avatar: AvatarId,
    settings: EncoderSettings,
    ladder: &[Rung],
    pattern: Box<dyn Frames>,
    counters: SourceCounters,
    tx: SyncSender<SourceEvent>,
    waker: Arc<Waker>,
) -> std::io::Result<SourceHandle> {
    spawn_frames_at(
        Instant::now(),
        avatar,
        Encoders::with_ladder(ladder.to_vec()),
        settings,
        pattern,
        counters,
        (tx, waker),
    )
}

/// [`spawn_frames`] with the source clock starting at `epoch`.
fn spawn_frames_at(
    epoch: Instant,
    avatar: AvatarId,
    encoders: Encoders,
    settings: EncoderSettings,
    pattern: Box<dyn Frames>,
    counters: SourceCounters,
    (tx, waker): (SyncSender<SourceEvent>, Arc<Waker>),
) -> std::io::Result<SourceHandle> {
    // Every encoder is made once here, so bad settings stop the daemon at
    // start, not at a viewer's join; each is then made anew when its first
    // viewer comes and dropped with its last.
    for codec in VideoCodec::ALL {
        for r in 0..encoders.renditions() {
            new_encoder(codec, encoders.settings_for(settings, r)).map_err(|e| {
                std::io::Error::other(format!(
                    "{codec} encoder of rendition {r} for {avatar}: {e}"
                ))
            })?;
        }
    }
    let (control, control_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    // Unwatched until the engine says otherwise: no viewer, no encoding.
    let watched = Arc::new(EncoderDemand::default());
    let worker = Worker {
        avatar: avatar.clone(),
        fps: settings.fps.max(1),
        settings,
        pattern,
        encoders,
        tx,
        waker,
        control: control_rx,
        stop: stop.clone(),
        watched: watched.clone(),
        counters: counters.clone(),
        epoch,
    };
    let thread = std::thread::Builder::new()
        .name(format!("src-{avatar}"))
        .spawn(move || worker.run())?;
    Ok(SourceHandle {
        avatar,
        control,
        stop,
        watched,
        thread: Some(thread),
        counters,
        voice: None,
    })
}

struct Worker {
    avatar: AvatarId,
    fps: u32,
    settings: EncoderSettings,
    pattern: Box<dyn Frames>,
    /// Per codec, its encoder while a viewer watches in it.
    encoders: Encoders,
    tx: SyncSender<SourceEvent>,
    waker: Arc<Waker>,
    control: Receiver<Control>,
    stop: Arc<AtomicBool>,
    watched: Arc<EncoderDemand>,
    counters: SourceCounters,
    epoch: Instant,
}

impl Worker {
    fn run(mut self) {
        let frame = Duration::from_secs(1) / self.fps;
        let start = self.epoch;
        let mut index: u64 = 0;
        let mut buf = Vec::with_capacity(256 * 1024);
        log::info!(
            "source {}: {} @ {} fps, {} kbit/s, encoding while someone watches",
            self.avatar,
            self.pattern.describe(),
            self.fps,
            self.settings.bitrate_bps / 1000
        );
        // Paused from the start: the engine says when the first viewer comes.
        let mut paused = true;
        while !self.stop.load(Ordering::Relaxed) {
            if !self.watched.any() {
                if !paused {
                    paused = true;
                    log::info!("source {}: paused, no viewer watches", self.avatar);
                }
                // Nobody watches in any codec: this only stops encoders, which cannot fail.
                let _ = self.start_and_stop_encoders();
                // A control message (Watched) wakes it at once; the timeout keeps shutdown prompt.
                let _ = self.control.recv_timeout(Duration::from_millis(100));
                continue;
            }
            if paused {
                // Back on the clock at the current frame time (not counted as late).
                let elapsed = Instant::now().saturating_duration_since(start);
                index = (elapsed.as_nanos() / frame.as_nanos().max(1)) as u64;
                log::info!("source {}: encoding for its viewers", self.avatar);
                paused = false;
            }
            let due = start + frame * index as u32;
            let now = Instant::now();
            if due > now {
                // Short sleeps keep shutdown prompt.
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                continue;
            }
            // Behind by more than a frame: skip to the newest frame rather than queue delay.
            let behind = (now - due).as_nanos() / frame.as_nanos().max(1);
            if behind >= 1 {
                index += behind as u64;
                self.counters.late_skips.inc_by(behind as u64);
            }
            // Keyframe requests wait in the shared demand; a control message only wakes.
            while self.control.try_recv().is_ok() {}
            if let Err(e) = self.start_and_stop_encoders() {
                log::error!("source {}: stopping: {e}", self.avatar);
                return;
            }
            let clock_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let captured_at = Instant::now();
            let at = Duration::from_nanos(
                (u128::from(index) * 1_000_000_000 / u128::from(self.fps)) as u64,
            );
            let frame_index = index;
            index += 1;
            let pic = match self.pattern.frame(frame_index, at, clock_ms) {
                Ok(p) => p,
                Err(e) => {
                    log::error!("source {}: stopping: {e}", self.avatar);
                    return;
                }
            };
            // One picture, every running encoder: viewers of each codec see the same frame.
            let (counters, tx, waker, avatar) =
                (&self.counters, &self.tx, &self.waker, &self.avatar);
            let mut gone = false;
            let encoded = self
                .encoders
                .encode_each(&pic, &self.watched, &mut buf, |p| {
                    let micros = p.encoded_at.duration_since(p.began).as_micros() as u64;
                    counters.encode_us.inc_by(micros);
                    if p.rendition == 0 {
                        counters.bitrate_bps[p.codec.index()].set(i64::from(p.bitrate_bps));
                    }
                    if p.kind == Encoded::Skipped {
                        counters.encoder_skips.inc();
                        return true;
                    }
                    let keyframe = p.kind == Encoded::Keyframe;
                    counters.frames.inc();
                    if keyframe {
                        counters.keyframes.inc();
                    }
                    let au = AccessUnit {
                        codec: p.codec,
                        data: Arc::from(p.data),
                        rtp_time: frame_index * 90_000 / u64::from(self.fps),
                        keyframe,
                        captured_at,
                        encoded_at: p.encoded_at,
                        frame_index,
                        rendition: p.rendition,
                        bitrate_bps: p.bitrate_bps,
                    };
                    match tx.try_send((avatar.clone(), Media::Video(au))) {
                        Ok(()) => {
                            let _ = waker.wake();
                            true
                        }
                        Err(TrySendError::Full(_)) => {
                            // The loop is behind: the picture is lost, the next is a keyframe.
                            counters.channel_drops.inc();
                            false
                        }
                        Err(TrySendError::Disconnected(_)) => {
                            gone = true;
                            true
                        }
                    }
                });
            if let Err((codec, e)) = encoded {
                log::error!(
                    "source {}: {codec} encoding failed, stopping: {e}",
                    self.avatar
                );
                return;
            }
            if gone {
                return;
            }
        }
    }

    /// Makes the encoder of each codec and rendition a viewer now watches
    /// (its first picture is an IDR) and drops those nobody watches any more.
    fn start_and_stop_encoders(&mut self) -> Result<(), String> {
        let watched = &self.watched;
        let switched = self
            .encoders
            .sync(self.settings, |codec, r| watched.get_at(codec, r))?;
        for s in switched {
            if s.started {
                log::info!("source {}: {} encoder started", self.avatar, s.label);
            } else {
                log::info!(
                    "source {}: {} encoder stopped, no viewer receives it",
                    self.avatar,
                    s.label
                );
            }
            if s.rendition == 0 {
                let i = s.codec.index();
                self.counters.encoding[i].set(i64::from(s.started));
                if !s.started {
                    self.counters.bitrate_bps[i].set(0);
                }
            }
        }
        Ok(())
    }
}

/// The test pattern's voice: one Opus packet per frame of its clock, the
/// beep while the picture flashes and silence between.
struct Voice {
    avatar: AvatarId,
    encoder: OpusEncoder,
    counters: SourceCounters,
    epoch: Instant,
    tx: SyncSender<SourceEvent>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    watched: Arc<EncoderDemand>,
}

impl Voice {
    fn run(mut self) {
        let settings = self.encoder.settings();
        let samples = settings.frame_samples();
        let mut pcm = vec![0i16; samples];
        let mut index: u64 = 0;
        log::info!(
            "source {}: beep with every flash, Opus {} kbit/s in {} ms frames",
            self.avatar,
            settings.bitrate_bps / 1000,
            settings.frame.as_millis()
        );
        while !self.stop.load(Ordering::Relaxed) {
            if !self.watched.any() {
                // Silent while nobody watches; on return the clock skips ahead (below).
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            // A frame goes out once its last sample is due.
            let start = settings.frame * index as u32;
            // ... or `lead` before that (AudioSettings::lead): the sound is known ahead.
            let due = (self.epoch + start + settings.frame)
                .checked_sub(settings.lead)
                .unwrap_or(self.epoch);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                continue;
            }
            let behind = ((now - due).as_nanos() / settings.frame.as_nanos().max(1)) as u64;
            if behind >= 1 {
                // Never queue sound: a late frame is skipped, the clock holds.
                index += behind;
                continue;
            }
            let first = index * samples as u64;
            audio::beep(first, &mut pcm);
            let data = match self.encoder.encode(&pcm) {
                Ok(d) => Arc::from(d),
                Err(e) => {
                    log::error!(
                        "source {}: audio encoding failed, stopping: {e}",
                        self.avatar
                    );
                    return;
                }
            };
            let frame = AudioFrame {
                data,
                rtp_time: first,
                captured_at: self.epoch + start,
                ready_at: due,
            };
            index += 1;
            match self.tx.try_send((self.avatar.clone(), Media::Audio(frame))) {
                Ok(()) => {
                    let _ = self.waker.wake();
                }
                Err(TrySendError::Full(_)) => {
                    self.counters.channel_drops.inc();
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}
