//! A blocking ingest client for Rust renderers (std only, no thread of its own).
//!
//! ```no_run
//! use portcast_net::ingest::client::IngestClient;
//! use portcast_net::ingest::wire::{PixelFormat, StreamFormat};
//!
//! let format = StreamFormat { format: PixelFormat::Rgb24, width: 640, height: 360, fps: 30, bitrate_kbps: 0 };
//! let mut client = IngestClient::connect("/run/portcast/ingest.sock", "avatar_tutor_13", format)?;
//! let frame = vec![0u8; 640 * 360 * 3];
//! loop {
//!     client.send_frame(&frame)?;
//!     if client.poll_keyframe_request()? {
//!         // Pass-through (H.264) renderers: make the next frame an IDR.
//!     }
//!     # break;
//! }
//! # Ok::<(), portcast_net::ingest::client::ClientError>(())
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::wire::{self, AudioFormat, Header, Kind, Message, StreamFormat, HEADER_LEN};

/// How long `connect` waits for the daemon's answer to REGISTER.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a client call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket failed (daemon not running, gone, or the path is wrong).
    Io(io::Error),
    /// The daemon refused the renderer and closed the connection.
    Refused {
        /// The daemon's error code, e.g. `avatar_live`.
        code: String,
        /// What to fix.
        message: String,
    },
    /// The daemon sent something this client does not understand.
    Protocol(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "ingest socket: {e}"),
            ClientError::Refused { code, message } => {
                write!(f, "refused by portcast: {code}: {message}")
            }
            ClientError::Protocol(m) => write!(f, "ingest protocol: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A registered renderer connection.
#[derive(Debug)]
pub struct IngestClient {
    stream: UnixStream,
    format: StreamFormat,
    max_frame_bytes: usize,
    next_index: u64,
    inbox: Vec<u8>,
    audio: Option<AudioFormat>,
    watched: Option<bool>,
}

impl IngestClient {
    /// Connects to the daemon's ingest socket at `path` and registers `avatar` with `format`
    /// (protocol version 1: frames are timed by their arrival).
    pub fn connect(
        path: impl AsRef<Path>,
        avatar: &str,
        format: StreamFormat,
    ) -> Result<IngestClient, ClientError> {
        Self::connect_with(path, &wire::register(avatar, &format), format)
    }

    /// Like [`connect`](Self::connect), in protocol version 2: every frame's
    /// and audio chunk's `pts_us` is its capture time on one clock of the
    /// renderer's, which drives both RTP clocks (lip sync). Audio needs it.
    pub fn connect_v2(
        path: impl AsRef<Path>,
        avatar: &str,
        format: StreamFormat,
    ) -> Result<IngestClient, ClientError> {
        Self::connect_with(path, &wire::register_v2(avatar, &format), format)
    }

    fn connect_with(
        path: impl AsRef<Path>,
        register: &[u8],
        format: StreamFormat,
    ) -> Result<IngestClient, ClientError> {
        let stream = UnixStream::connect(path).map_err(ClientError::Io)?;
        let mut client = IngestClient {
            stream,
            format,
            max_frame_bytes: 0,
            next_index: 0,
            inbox: Vec::new(),
            audio: None,
            watched: None,
        };
        client.write(register)?;
        client
            .stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(ClientError::Io)?;
        match client.read_message()? {
            (Message::Accepted { max_frame_bytes }, _) => {
                client.max_frame_bytes = max_frame_bytes as usize;
                client
                    .stream
                    .set_read_timeout(None)
                    .map_err(ClientError::Io)?;
                Ok(client)
            }
            (Message::Refused, text) => Err(refusal(&text)),
            (other, _) => Err(ClientError::Protocol(format!(
                "expected ACCEPTED, got {other:?}"
            ))),
        }
    }

    /// Largest frame payload the daemon accepts.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// The format frames are sent in.
    pub fn format(&self) -> StreamFormat {
        self.format
    }

    /// Changes format, size, rate or bitrate for the frames that follow.
    pub fn set_format(&mut self, format: StreamFormat) -> Result<(), ClientError> {
        self.write(&wire::format(&format))?;
        self.format = format;
        Ok(())
    }

    /// Sends one frame numbered after the previous one, stamped with the wall clock; returns its number.
    pub fn send_frame(&mut self, payload: &[u8]) -> Result<u64, ClientError> {
        let index = self.next_index;
        let pts_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.send_frame_at(index, pts_us, payload)?;
        Ok(index)
    }

    /// Sends one frame with the caller's frame number and timestamp (microseconds).
    pub fn send_frame_at(
        &mut self,
        index: u64,
        pts_us: u64,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        if let Some(expected) = self.format.frame_bytes() {
            if payload.len() != expected {
                return Err(ClientError::Protocol(format!(
                    "frame is {} bytes; {} {}x{} needs {expected}",
                    payload.len(),
                    self.format.format.name(),
                    self.format.width,
                    self.format.height
                )));
            }
        }
        self.write(&wire::frame_head(index, pts_us, payload.len()))?;
        self.write(payload)?;
        self.next_index = index + 1;
        Ok(())
    }

    /// Announces the avatar's voice: AUDIO chunks that follow are in `format`
    /// (a [`connect_v2`](Self::connect_v2) connection only).
    pub fn set_audio_format(&mut self, format: &AudioFormat) -> Result<(), ClientError> {
        self.write(&wire::audio_format(format))?;
        self.audio = Some(*format);
        Ok(())
    }

    /// Sends one audio chunk (PCM s16le, channels interleaved, up to one
    /// second; or one Opus packet) whose first sample was captured at
    /// `pts_us` on the clock of the frames' timestamps.
    pub fn send_audio(&mut self, pts_us: u64, payload: &[u8]) -> Result<(), ClientError> {
        let Some(format) = self.audio else {
            return Err(ClientError::Protocol(
                "send_audio before set_audio_format".into(),
            ));
        };
        if payload.len() > format.max_chunk_bytes() {
            return Err(ClientError::Protocol(format!(
                "an audio chunk of {} bytes is over {}",
                payload.len(),
                format.max_chunk_bytes()
            )));
        }
        self.write(&wire::audio_head(pts_us, payload.len()))?;
        self.write(payload)
    }

    /// Barge-in: the daemon drops this avatar's queued audio and waiting frame.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.write(&wire::flush())
    }

    /// Whether any viewer watches the avatar, as the daemon last said (WATCHED,
    /// read by [`poll_keyframe_request`](Self::poll_keyframe_request)); `None` before it said.
    /// A renderer may pause rendering while this is `Some(false)`.
    pub fn watched(&self) -> Option<bool> {
        self.watched
    }

    /// Whether the daemon asked for an IDR since the last call (never blocks).
    ///
    /// Only pass-through (H.264) renderers get asked; the daemon's own encoder
    /// handles raw formats.
    pub fn poll_keyframe_request(&mut self) -> Result<bool, ClientError> {
        self.stream.set_nonblocking(true).map_err(ClientError::Io)?;
        let mut buf = [0u8; 512];
        let read = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break Err(ClientError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    self.inbox.extend_from_slice(&buf[..n]);
                    if self.inbox.len() > 64 * 1024 {
                        break Err(ClientError::Protocol("daemon sent too much".into()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(ClientError::Io(e)),
            }
        };
        self.stream
            .set_nonblocking(false)
            .map_err(ClientError::Io)?;
        let mut wanted = false;
        while let Some((msg, text)) = self.take_inbox()? {
            match msg {
                Message::KeyframeRequest => wanted = true,
                Message::Refused => return Err(refusal(&text)),
                Message::Watched(w) => self.watched = Some(w),
                _ => {}
            }
        }
        read.map(|()| wanted)
    }

    fn take_inbox(&mut self) -> Result<Option<(Message, Vec<u8>)>, ClientError> {
        let Some(head) = self.inbox.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(head);
        let h = Header::parse(&bytes, wire::MAX_REASON_BYTES)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let total = HEADER_LEN + h.meta_len + h.payload_len;
        if self.inbox.len() < total {
            return Ok(None);
        }
        let meta = &self.inbox[HEADER_LEN..HEADER_LEN + h.meta_len];
        let msg = Message::parse(&h, meta, 0).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let payload = self.inbox[HEADER_LEN + h.meta_len..total].to_vec();
        self.inbox.drain(..total);
        Ok(Some((msg, payload)))
    }

    fn read_message(&mut self) -> Result<(Message, Vec<u8>), ClientError> {
        let mut bytes = [0u8; HEADER_LEN];
        self.stream
            .read_exact(&mut bytes)
            .map_err(ClientError::Io)?;
        let h = Header::parse(&bytes, wire::MAX_REASON_BYTES)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut rest = vec![0u8; h.meta_len + h.payload_len];
        self.stream.read_exact(&mut rest).map_err(ClientError::Io)?;
        let msg = Message::parse(&h, &rest[..h.meta_len], 0)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if matches!(h.kind, Kind::Register | Kind::Frame | Kind::Format) {
            return Err(ClientError::Protocol(format!("daemon sent {:?}", h.kind)));
        }
        Ok((msg, rest.split_off(h.meta_len)))
    }

    /// Writes all of `bytes`; when the daemon closed on us, returns its REFUSED reason if it sent one.
    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match self.stream.write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self
                    .stream
                    .set_read_timeout(Some(Duration::from_millis(500)));
                match self.read_message() {
                    Ok((Message::Refused, text)) => Err(refusal(&text)),
                    _ => Err(ClientError::Io(e)),
                }
            }
        }
    }
}

fn refusal(text: &[u8]) -> ClientError {
    let text = String::from_utf8_lossy(text);
    let (code, message) = text.split_once(": ").unwrap_or(("refused", &text));
    ClientError::Refused {
        code: code.to_string(),
        message: message.to_string(),
    }
}
