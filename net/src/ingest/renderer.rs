//! One connected renderer: a reader thread that drains its socket and an
//! encoder thread that turns the newest raw frame into H.264 (and into VP8
//! too while a viewer without H.264 watches).
//!
//! The reader always reads, so frames wait in the daemon's one-frame slot
//! (where a newer frame replaces an older one) rather than in the socket
//! buffer, where they would add delay. Pre-encoded H.264 skips the slot: the
//! reader hands each access unit straight to the loop, since dropping one
//! would break the chain of P-frames; if the loop's channel is full, frames are
//! dropped until the renderer sends the IDR it is asked for.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcast_engine::media::annexb_has_idr;
use portcast_engine::{AccessUnit, AvatarId, VideoCodec};

use crate::encoders::Encoders;
use crate::source::{EncoderDemand, Media};

use super::convert::I420Buffer;
use super::slot::{RawFrame, Slot};
use super::voice::{Chunk, Timeline, Voice};
use super::wire::{
    self, AudioCodec, AudioFormat, Header, Kind, Message, PixelFormat, StreamFormat, WireError,
    HEADER_LEN, MAX_AVATAR_ID_LEN, MAX_META_BYTES, VERSION_2,
};
use super::{IngestCounters, Shared, Stat};

mod worker;
use worker::Worker;

/// How often a blocked read wakes to check for shutdown.
const READ_TICK: Duration = Duration::from_millis(250);
/// A renderer whose socket does not take a 16-byte message in this time is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// While pass-through frames are dropped for want of an IDR, ask again this often.
const KEYFRAME_RETRY: Duration = Duration::from_millis(500);

type Writer = Arc<Mutex<UnixStream>>;

/// Serves one renderer connection until it closes or breaks the protocol.
pub(crate) fn serve(stream: UnixStream, shared: Arc<Shared>, conn: u64) {
    crate::sched::apply_quietly(shared.config.latency_slice, "ingest reader");
    let writer = match stream.try_clone() {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(e) => {
            log::warn!("ingest renderer #{conn}: cannot use its socket: {e}");
            return;
        }
    };
    let _ = stream.set_read_timeout(Some(READ_TICK));
    if let Ok(w) = writer.lock() {
        let _ = w.set_write_timeout(Some(WRITE_TIMEOUT));
    }
    let mut reader = Reader {
        stream,
        writer: writer.clone(),
        shared: shared.clone(),
        conn,
        avatar: None,
        own: None,
        slot: Arc::new(Slot::default()),
        watched: Arc::new(EncoderDemand::default()),
        passthrough: Arc::new(AtomicBool::new(false)),
        format: None,
        h264: Vec::new(),
        waiting_idr: false,
        last_keyframe_ask: None,
        version: wire::VERSION,
        timeline: Arc::new(Timeline::default()),
        last_video_at: None,
        audio: None,
        voice: None,
    };
    let mut encoder_thread = None;
    let result = reader.register().and_then(|avatar| {
        let worker = Worker {
            avatar: avatar.clone(),
            shared: shared.clone(),
            own: reader.own.clone(),
            slot: reader.slot.clone(),
            watched: reader.watched.clone(),
            passthrough: reader.passthrough.clone(),
            writer: writer.clone(),
            encoders: Encoders::with_ladder(shared.config.ladders.of(&avatar).to_vec()),
            i420: I420Buffer::default(),
            out: Vec::with_capacity(256 * 1024),
            last_rtp: None,
        };
        let handle = std::thread::Builder::new()
            .name(format!("ingest-enc-{conn}"))
            .spawn(move || worker.run())
            .map_err(WireError::Io)?;
        encoder_thread = Some(handle);
        reader.stream_frames()
    });
    let who = reader
        .avatar
        .as_ref()
        .map_or_else(|| format!("#{conn}"), |a| format!("#{conn} ({a})"));
    match &result {
        Ok(()) => log::info!("ingest renderer {who} disconnected"),
        Err(WireError::Io(e)) => log::info!("ingest renderer {who} dropped: {e}"),
        Err(e) => {
            log::warn!("ingest renderer {who} closed: {}: {e}", e.code());
            shared.count(Stat::ProtocolErrors);
            send(&writer, &wire::refused(e.code(), &e.to_string()));
        }
    }
    if let Ok(w) = writer.lock() {
        let _ = w.shutdown(std::net::Shutdown::Both);
    }
    reader.slot.close();
    if let Some((voice, thread)) = reader.voice.take() {
        voice.close();
        if thread.join().is_err() {
            log::error!("ingest renderer {who}: voice thread panicked");
        }
    }
    if let Some(t) = encoder_thread {
        if t.join().is_err() {
            log::error!("ingest renderer {who}: encoder thread panicked");
        }
    }
    if let Some(avatar) = reader.avatar.take() {
        shared.release(&avatar, conn);
    }
}

struct Reader {
    stream: UnixStream,
    writer: Writer,
    shared: Arc<Shared>,
    conn: u64,
    avatar: Option<AvatarId>,
    /// This avatar's own counters, beside the hub's.
    own: Option<IngestCounters>,
    slot: Arc<Slot>,
    /// Per codec, whether a viewer watches (the hub sets it from the engine's `Watched`).
    watched: Arc<EncoderDemand>,
    passthrough: Arc<AtomicBool>,
    format: Option<StreamFormat>,
    h264: Vec<u8>,
    waiting_idr: bool,
    last_keyframe_ask: Option<Instant>,
    /// Protocol version of the REGISTER: 2 puts FRAME and AUDIO timestamps on one clock.
    version: u8,
    timeline: Arc<Timeline>,
    /// When the last video frame was captured (version 2), to refuse time going back.
    last_video_at: Option<Instant>,
    audio: Option<AudioFormat>,
    voice: Option<(Arc<Voice>, std::thread::JoinHandle<()>)>,
}

impl Reader {
    fn count(&self, stat: Stat) {
        count_both(&self.shared, self.own.as_ref(), stat, 1);
    }

    /// Reads the REGISTER message, claims the avatar id and answers ACCEPTED.
    fn register(&mut self) -> Result<AvatarId, WireError> {
        let Some(header) = self.read_header(false)? else {
            return Err(WireError::Truncated { part: "header" });
        };
        if header.kind != Kind::Register {
            return Err(WireError::NotRegistered(header.kind));
        }
        if header.payload_len > MAX_AVATAR_ID_LEN {
            return Err(WireError::BadAvatarId(format!(
                "<{} bytes>",
                header.payload_len
            )));
        }
        let format = match self.read_message(&header)? {
            Message::Register(f) => f,
            _ => return Err(WireError::NotRegistered(header.kind)),
        };
        self.version = header.version;
        let mut name = vec![0u8; header.payload_len];
        self.read_full(&mut name, "avatar id", false)?;
        let avatar = wire::parse_avatar_id(&name)?;
        self.shared
            .claim(&avatar, self.conn, self.slot.clone(), self.watched.clone())?;
        self.own = self.shared.avatar_counters(&avatar);
        self.avatar = Some(avatar.clone());
        self.set_format(format);
        log::info!(
            "ingest renderer #{} registered avatar {avatar}: {} {}x{} @ {} fps{}",
            self.conn,
            format.format.name(),
            format.width,
            format.height,
            format.fps,
            if format.format.is_raw() {
                format!(", {} kbit/s", format.bitrate_bps() / 1000)
            } else {
                String::new()
            }
        );
        if !send(
            &self.writer,
            &wire::accepted(self.shared.config.max_frame_bytes),
        ) {
            return Err(WireError::Io(io::Error::other("could not send ACCEPTED")));
        }
        Ok(avatar)
    }

    /// Reads messages until the renderer closes at a message boundary.
    fn stream_frames(&mut self) -> Result<(), WireError> {
        while let Some(header) = self.read_header(true)? {
            match header.kind {
                Kind::Frame => {
                    let Message::Frame { index, pts_us } = self.read_message(&header)? else {
                        continue;
                    };
                    let at = self.capture_instant(pts_us);
                    self.frame(header.payload_len, index, at)?;
                }
                Kind::AudioFormat => {
                    if let Message::AudioFormat(f) = self.read_message(&header)? {
                        self.skip(header.payload_len)?;
                        self.audio_format(f)?;
                    }
                }
                Kind::Audio => {
                    if let Message::Audio { pts_us } = self.read_message(&header)? {
                        self.audio_chunk(header.payload_len, pts_us)?;
                    }
                }
                Kind::Flush => {
                    self.read_message(&header)?;
                    self.skip(header.payload_len)?;
                    self.flush();
                }
                Kind::Format => {
                    if let Message::Format(f) = self.read_message(&header)? {
                        self.skip(header.payload_len)?;
                        log::info!(
                            "ingest renderer #{}: format now {} {}x{} @ {} fps",
                            self.conn,
                            f.format.name(),
                            f.width,
                            f.height,
                            f.fps
                        );
                        self.set_format(f);
                    }
                }
                Kind::Register => return Err(WireError::AlreadyRegistered),
                k @ (Kind::Accepted | Kind::KeyframeRequest | Kind::Refused | Kind::Watched) => {
                    return Err(WireError::WrongDirection(k))
                }
            }
        }
        Ok(())
    }

    /// When a frame stamped `pts_us` was captured: on the renderer's clock in
    /// protocol version 2 (never before the previous frame), else its arrival.
    fn capture_instant(&mut self, pts_us: u64) -> Instant {
        let now = Instant::now();
        if self.version != VERSION_2 {
            return now;
        }
        let at = self.timeline.instant(pts_us);
        match self.last_video_at {
            Some(last) if at <= last => {
                // Time went back: time this frame by its arrival, keep order.
                log::debug!(
                    "ingest renderer #{}: FRAME pts_us {pts_us} goes back",
                    self.conn
                );
                self.count(Stat::TimestampBack);
                let at = now.max(last + Duration::from_millis(1));
                self.last_video_at = Some(at);
                at
            }
            _ => {
                self.last_video_at = Some(at);
                at
            }
        }
    }

    /// AUDIO_FORMAT: the avatar speaks; its voice thread starts with the first one.
    fn audio_format(&mut self, f: AudioFormat) -> Result<(), WireError> {
        if self.version != VERSION_2 {
            return Err(WireError::AudioNeedsVersion2);
        }
        let Some(avatar) = self.avatar.clone() else {
            return Err(WireError::NotRegistered(Kind::AudioFormat));
        };
        log::info!(
            "ingest renderer #{}: avatar {avatar} speaks: {} {} Hz, {} channel(s)",
            self.conn,
            match f.codec {
                AudioCodec::PcmS16le => "pcm_s16le",
                AudioCodec::Opus => "opus",
            },
            f.sample_rate,
            f.channels
        );
        self.audio = Some(f);
        if self.voice.is_none() {
            let voice = Arc::new(Voice::new(
                avatar.clone(),
                self.shared.clone(),
                self.own.clone(),
                self.timeline.clone(),
            ));
            let thread = std::thread::Builder::new()
                .name(format!("ingest-voice-{}", self.conn))
                .spawn({
                    let voice = voice.clone();
                    let slice = self.shared.config.latency_slice;
                    move || {
                        crate::sched::apply_quietly(slice, "ingest voice");
                        voice.run()
                    }
                })
                .map_err(WireError::Io)?;
            self.voice = Some((voice, thread));
            self.shared.speaks(&avatar);
        }
        Ok(())
    }

    /// AUDIO: one chunk for the voice thread; unusable audio is dropped and counted.
    fn audio_chunk(&mut self, len: usize, pts_us: u64) -> Result<(), WireError> {
        if self.version != VERSION_2 {
            return Err(WireError::AudioNeedsVersion2);
        }
        let Some(format) = self.audio else {
            return Err(WireError::NoAudioFormat);
        };
        let max = format.max_chunk_bytes();
        if len > max {
            return Err(WireError::AudioChunkTooLarge { size: len, max });
        }
        let frame = 2 * usize::from(format.channels);
        if format.codec == AudioCodec::PcmS16le && len % frame != 0 {
            return Err(WireError::BadPcmLength { size: len, frame });
        }
        let mut data = vec![0u8; len];
        self.read_full(&mut data, "audio payload", false)?;
        self.count(Stat::AudioChunksReceived);
        let duration = match format.codec {
            AudioCodec::PcmS16le => Duration::from_nanos(
                (len / frame) as u64 * 1_000_000_000 / u64::from(format.sample_rate),
            ),
            AudioCodec::Opus => match portcast_engine::audio::opus_packet_samples(&data) {
                Some(n) => Duration::from_nanos(n as u64 * 1_000_000_000 / 48_000),
                None => {
                    self.count(Stat::AudioDroppedBadOpus);
                    return Ok(());
                }
            },
        };
        if duration.is_zero() {
            return Ok(());
        }
        let chunk = Chunk {
            pts_us,
            format,
            data,
            duration,
            arrived_at: Instant::now(),
        };
        if let Some((voice, _)) = &self.voice {
            if !voice.offer(chunk) {
                self.count(Stat::AudioDroppedQueueFull);
            }
        }
        Ok(())
    }

    /// FLUSH (barge-in): the queued audio and the frame waiting for the encoder go.
    fn flush(&mut self) {
        let mut dropped = self.voice.as_ref().map_or(0, |(v, _)| v.flush()) as u64;
        dropped += u64::from(self.slot.discard());
        self.count(Stat::Flushes);
        count_both(&self.shared, self.own.as_ref(), Stat::Flushed, dropped);
        log::debug!(
            "ingest renderer #{}: flush dropped {dropped} chunk(s)/frame(s)",
            self.conn
        );
    }

    fn set_format(&mut self, f: StreamFormat) {
        let raw = f.format != PixelFormat::H264;
        let was_raw = self.format.map(|old| old.format != PixelFormat::H264);
        self.passthrough.store(!raw, Ordering::Relaxed);
        self.format = Some(f);
        if was_raw != Some(raw) {
            if let Some(avatar) = &self.avatar {
                if !raw && self.watched.get(VideoCodec::Vp8) {
                    log::warn!(
                        "ingest avatar {avatar}: now pass-through H.264, so its VP8 viewers get no more pictures"
                    );
                }
                self.shared.raw(avatar, raw);
            }
        }
    }

    fn frame(&mut self, len: usize, index: u64, at: Instant) -> Result<(), WireError> {
        let Some(format) = self.format else {
            return Err(WireError::NotRegistered(Kind::Frame));
        };
        match format.frame_bytes() {
            Some(expected) => {
                if len != expected {
                    return Err(WireError::FrameSizeMismatch { expected, got: len });
                }
                let mut data = self.slot.buffer();
                data.resize(len, 0);
                if let Err(e) = self.read_full(&mut data, "frame payload", false) {
                    self.slot.recycle(data);
                    return Err(e);
                }
                self.count(Stat::FramesReceived);
                let dropped = self.slot.put(RawFrame {
                    format,
                    index,
                    arrived_at: at,
                    data,
                });
                if dropped {
                    self.count(Stat::DroppedNewestWins);
                }
                Ok(())
            }
            None => self.passthrough_frame(len, index, at),
        }
    }

    fn passthrough_frame(&mut self, len: usize, index: u64, at: Instant) -> Result<(), WireError> {
        let mut data = std::mem::take(&mut self.h264);
        data.resize(len, 0);
        let read = self.read_full(&mut data, "frame payload", false);
        let arrived_at = at;
        self.h264 = data;
        read?;
        self.count(Stat::FramesReceived);
        if !wire::is_annexb(&self.h264) {
            return Err(WireError::NotAnnexB);
        }
        let keyframe = annexb_has_idr(&self.h264);
        if self.waiting_idr && !keyframe {
            self.count(Stat::DroppedWaitingIdr);
            self.ask_keyframe(arrived_at);
            return Ok(());
        }
        self.waiting_idr = false;
        let Some(avatar) = self.avatar.clone() else {
            return Ok(());
        };
        let au = AccessUnit {
            codec: VideoCodec::H264,
            data: Arc::from(&self.h264[..]),
            rtp_time: self.shared.rtp_time(arrived_at),
            keyframe,
            captured_at: arrived_at,
            encoded_at: arrived_at,
            frame_index: index,
            // The renderer's own stream: one rendition, its own rate.
            rendition: 0,
            bitrate_bps: 0,
        };
        if forward(&self.shared, self.own.as_ref(), &avatar, au) {
            self.count(Stat::FramesForwarded);
        } else {
            // A lost P-frame breaks the chain for every viewer: drop until an IDR.
            self.waiting_idr = true;
            self.ask_keyframe(arrived_at);
        }
        Ok(())
    }

    fn ask_keyframe(&mut self, now: Instant) {
        let due = self
            .last_keyframe_ask
            .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_RETRY);
        if due {
            self.last_keyframe_ask = Some(now);
            self.slot.request_keyframe();
        }
    }

    fn read_header(&mut self, idle_ok: bool) -> Result<Option<Header>, WireError> {
        let mut bytes = [0u8; HEADER_LEN];
        if !self.read_full(&mut bytes, "header", idle_ok)? {
            return Ok(None);
        }
        // Payload bound: REGISTER and FORMAT carry little, frames up to the limit.
        Header::parse(&bytes, self.shared.config.max_frame_bytes).map(Some)
    }

    fn read_message(&mut self, header: &Header) -> Result<Message, WireError> {
        let mut meta = [0u8; MAX_META_BYTES];
        let meta = meta.get_mut(..header.meta_len).unwrap_or(&mut []);
        self.read_full(meta, "fields", false)?;
        Message::parse(header, meta, self.shared.config.max_frame_bytes)
    }

    fn skip(&mut self, mut len: usize) -> Result<(), WireError> {
        let mut scratch = [0u8; 4096];
        while len > 0 {
            let n = len.min(scratch.len());
            self.read_full(&mut scratch[..n], "payload", false)?;
            len -= n;
        }
        Ok(())
    }

    /// Fills `buf`; false on a clean close before its first byte when `idle_ok`.
    ///
    /// With `idle_ok` the renderer may take its time before the first byte (a
    /// paused renderer is fine); once a message has started, all of it must
    /// arrive within the body timeout, or its length was a lie.
    fn read_full(
        &mut self,
        buf: &mut [u8],
        part: &'static str,
        idle_ok: bool,
    ) -> Result<bool, WireError> {
        let timeout = self.shared.config.body_timeout;
        let mut started = (!idle_ok).then(Instant::now);
        let mut filled = 0;
        while filled < buf.len() {
            if self.shared.stopping() {
                return Err(WireError::Io(io::Error::other("daemon shutting down")));
            }
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 && idle_ok => return Ok(false),
                Ok(0) => return Err(WireError::Truncated { part }),
                Ok(n) => {
                    filled += n;
                    started.get_or_insert_with(Instant::now);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if started.is_some_and(|t| t.elapsed() > timeout) {
                        return Err(WireError::Stalled {
                            part,
                            secs: timeout.as_secs(),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WireError::Io(e)),
            }
        }
        Ok(true)
    }
}

/// Counts on the hub and, once the renderer is registered, on its avatar.
fn count_both(shared: &Shared, own: Option<&IngestCounters>, stat: Stat, n: u64) {
    shared.add(stat, n);
    if let Some(c) = own {
        c.add(stat, n);
    }
}

/// Hands an encoded picture to the loop; false when it was dropped because
/// the loop is behind (counted), true when sent or when the loop is gone.
fn forward(
    shared: &Shared,
    own: Option<&IngestCounters>,
    avatar: &AvatarId,
    au: AccessUnit,
) -> bool {
    match shared.frames.try_send((avatar.clone(), Media::Video(au))) {
        Ok(()) => {
            let _ = shared.waker.wake();
            true
        }
        Err(TrySendError::Full(_)) => {
            count_both(shared, own, Stat::DroppedLoopBehind, 1);
            false
        }
        Err(TrySendError::Disconnected(_)) => true,
    }
}

/// Writes one whole message; false if the renderer is gone or not reading.
fn send(writer: &Writer, bytes: &[u8]) -> bool {
    match writer.lock() {
        Ok(mut w) => w.write_all(bytes).is_ok(),
        Err(_) => false,
    }
}
