//! `/metrics` and `/readyz`: the answers that need the loop's own state.

use std::sync::atomic::Ordering;

use crate::ingest::IngestCounters;
use crate::metrics::{self, SocketCounters, SourceSnapshot};

use super::Server;

impl Server {
    /// `/metrics` and `/readyz`, which need the loop's state.
    pub(super) fn dynamic_response(&self, request: &crate::http::Request) -> Vec<u8> {
        use crate::http::{response, Request};
        match request {
            Request::Metrics => {
                let sessions = self.engine.sessions();
                let snapshot = metrics::Snapshot {
                    engine: self.engine.stats(),
                    sessions: &sessions,
                    sockets: self
                        .udp
                        .iter()
                        .map(|u| SocketCounters {
                            local: u.local.to_string(),
                            received: u.received,
                            received_bytes: u.received_bytes,
                            sent: u.sent,
                            sent_bytes: u.sent_bytes,
                            dropped_queue_full: u.dropped_full,
                            send_errors: u.send_errors,
                            send_calls: u.send_calls,
                        })
                        .collect(),
                    sources: self
                        .sources
                        .iter()
                        .map(|(a, h)| SourceSnapshot {
                            avatar: a.to_string(),
                            frames: h.counters.frames.load(Ordering::Relaxed),
                            keyframes: h.counters.keyframes.load(Ordering::Relaxed),
                            late_skips: h.counters.late_skips.load(Ordering::Relaxed),
                            channel_drops: h.counters.channel_drops.load(Ordering::Relaxed),
                            encoder_skips: h.counters.encoder_skips.load(Ordering::Relaxed),
                        })
                        .collect(),
                    connections: self.conns.len(),
                    conn_drops: self.conn_drops.iter().map(|(k, v)| (*k, *v)).collect(),
                    rss_bytes: metrics::rss_bytes(),
                    ingest: self.ingest.as_ref().map(|hub| metrics::IngestSnapshot {
                        live_renderers: hub.live_renderers() as u64,
                        avatars: hub
                            .avatar_counters()
                            .iter()
                            .map(|(a, c)| (a.to_string(), ingest_snapshot(c)))
                            .collect(),
                        ..ingest_snapshot(&hub.counters())
                    }),
                };
                let body = metrics::render(&self.histograms, &snapshot);
                response(
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body.as_bytes(),
                )
            }
            Request::Ready => {
                let dead: Vec<String> = self
                    .sources
                    .iter()
                    .filter(|(_, h)| !h.is_alive())
                    .map(|(a, _)| a.to_string())
                    .collect();
                if dead.is_empty() {
                    let body = format!(
                        "ready: {} udp sockets bound, {} sources running\n",
                        self.udp.len(),
                        self.sources.len()
                    );
                    response("200 OK", "text/plain", body.as_bytes())
                } else {
                    let body = format!("not ready: source threads stopped: {}\n", dead.join(", "));
                    response("503 Service Unavailable", "text/plain", body.as_bytes())
                }
            }
            _ => response("404 Not Found", "text/plain", b"not found\n"),
        }
    }
}

/// One set of ingest counters as `/metrics` shows them.
fn ingest_snapshot(c: &IngestCounters) -> metrics::IngestSnapshot {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    metrics::IngestSnapshot {
        live_renderers: 0,
        registered: get(&c.registered),
        protocol_errors: get(&c.protocol_errors),
        frames_received: get(&c.frames_received),
        frames_encoded: get(&c.frames_encoded),
        frames_forwarded: get(&c.frames_forwarded),
        dropped_newest_wins: get(&c.dropped_newest_wins),
        dropped_loop_behind: get(&c.dropped_loop_behind),
        dropped_waiting_idr: get(&c.dropped_waiting_idr),
        encoder_skips: get(&c.encoder_skips),
        keyframe_requests_sent: get(&c.keyframe_requests_sent),
        convert_seconds: get(&c.convert_us) as f64 / 1e6,
        avatars: Vec::new(),
    }
}
