//! portcast-net: the single-threaded mio loop that drives the portcast engine.
//!
//! It owns the UDP media sockets (bound once at start), the TCP signaling
//! listener (HTTP parsed with httparse, WebSocket via tungstenite on
//! non-blocking streams), and the channel through which source threads hand in
//! encoded access units. It never blocks and never encodes.

#![warn(missing_docs)]

pub mod capture;
pub mod conn;
pub mod encoders;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod probe;
pub mod rfc4571;
pub mod sched;
pub mod server;
pub mod source;
pub mod udp;
pub mod y4m;

pub use capture::CaptureConfig;
pub use conn::ConnLimits;
pub use ingest::{IngestConfig, IngestCounters, IngestMetrics};
pub use probe::FrameTiming;
pub use server::{
    AvatarSpec, NetError, Reloader, Server, ServerConfig, ShutdownHandle, UdpPortSpec, VIEWER_PAGE,
};
