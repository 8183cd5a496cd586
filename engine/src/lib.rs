//! portcast-engine: the sans-IO core of portcast.
//!
//! The engine answers WebRTC offers as an ICE-lite H.264 sender, finds which
//! session each datagram belongs to when many sessions share a few UDP ports,
//! announces the forwarder's public address instead of the bound one, and fans
//! each encoded picture of an avatar out to all of its viewers, each viewer
//! getting the rendition of its avatar's encoding ladder its bandwidth
//! estimate carries. It owns no
//! socket, no clock and no thread: the caller feeds it input with `handle_*`,
//! passing the current `Instant`, and takes output with [`Engine::poll_output`]
//! until it returns [`Output::Timeout`]. The `portcast-net` crate drives it
//! with a mio loop; tests drive it in memory with a fake clock.
//!
//! # The drive loop
//!
//! ```
//! use std::time::{Duration, Instant};
//! use portcast_engine::{
//!     ConnId, Datagram, Engine, EngineConfig, Output, SessionId, SocketId, SocketSpec,
//! };
//!
//! let mut now = Instant::now();
//! let mut engine = Engine::new(EngineConfig {
//!     sockets: vec![SocketSpec {
//!         local: "127.0.0.1:10111".parse().unwrap(),
//!         public: "198.18.0.1:10111".parse().unwrap(),
//!     }],
//!     ..EngineConfig::default()
//! }, now)
//! .unwrap();
//! let conn = ConnId(1);
//! engine.open_connection(conn, SessionId::parse("session-123").unwrap());
//! engine.handle_signal(now, conn, r#"{"type":"webrtc_offer","session_id":"session-123"}"#);
//! engine.handle_datagram(now, Datagram {
//!     socket: SocketId(0),
//!     from: "198.18.0.7:40000".parse().unwrap(),
//!     bytes: &[0x80, 0x60, 0, 1],
//! });
//!
//! // Drain after every input.
//! loop {
//!     match engine.poll_output() {
//!         Output::Transmit(t) => { /* socket[t.socket].send_to(&t.bytes, t.to) */ }
//!         Output::Signal { conn, text } => {
//!             // The offer above lacks its avatar and SDP: the peer gets an error.
//!             assert!(text.contains(r#""code":"missing_field""#));
//!         }
//!         Output::KeyframeRequest { avatar, codec, rendition } => { /* tell that encoder of the avatar */ }
//!         Output::Watched { avatar, codec, rendition, watched } => { /* start or pause that encoder */ }
//!         Output::VideoBitrate { avatar, codec, cap_bps } => { /* retune that encoder (None: its own bitrate) */ }
//!         Output::SessionClosed { .. } => { /* close the WebSocket */ }
//!         Output::Timeout(at) => {
//!             // Sleep until `at` or the next input, then:
//!             now = at.max(now);
//!             engine.handle_timeout(now);
//!             break;
//!         }
//!     }
//! }
//! # let _ = Duration::ZERO;
//! ```
//!
//! Encoded pictures come in with [`Engine::handle_access_unit`]; the
//! [`encoder`] and [`pattern`] modules make them from the built-in test
//! pattern (pure computation, run on whatever thread the caller picks).

#![warn(missing_docs)]

pub mod address;
mod answer;
pub mod answer_check;
pub mod audio;
pub mod auth;
pub mod demux;
pub mod encoder;
mod engine;
pub mod gop;
mod ids;
pub mod keyframe;
pub mod media;
pub mod offer;
pub mod pattern;
pub mod playout_delay;
pub mod replay;
mod sctp_guard;
mod sdp_text;
mod session;
pub mod signaling;
mod stats;
pub mod vp8;

pub use address::{SocketSpec, SocketTable};
pub use engine::{
    check_ladder, BandwidthEstimation, ConnectInfo, Datagram, Engine, EngineConfig, EngineError,
    Output, RenditionInfo, Transmit,
};
pub use ids::{AvatarId, ConnId, InvalidAvatarId, InvalidSessionId, SessionId, SocketId};
pub use media::{
    rendition_name, AccessUnit, AudioFrame, Ladders, Rung, VideoCodec, MAX_RENDITIONS,
};
pub use playout_delay::PlayoutDelay;
pub use session::{EndReason, Phase, SessionInfo};
pub use signaling::SignalError;
pub use stats::{labels, EngineStats, Labels};
