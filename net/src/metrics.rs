//! Prometheus metrics, rendered on the loop thread at scrape time.
//!
//! Counters live where they are cheapest to keep (the engine's stats, each UDP
//! socket's counters, each source's atomics) and are copied into a fresh
//! registry when `/metrics` is scraped; only the histograms are kept here,
//! observed by the loop as frames and iterations go by.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use portcast_engine::{EngineStats, Phase, SessionInfo};

type Labels = Vec<(String, String)>;

/// The histograms the loop feeds.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// Encoder time per frame (t1 - t0), seconds.
    pub encode: Histogram,
    /// Frame-to-packet time (t2 - t0), seconds.
    pub frame_to_packet: Histogram,
    /// Time the loop spends handling one wake-up, seconds.
    pub loop_iteration: Histogram,
}

impl Default for Histograms {
    fn default() -> Self {
        // 50 us .. ~0.4 s in x2 steps: covers an iteration as well as a slow IDR.
        let buckets = || Histogram::new(exponential_buckets(0.000_05, 2.0, 14));
        Histograms {
            encode: buckets(),
            frame_to_packet: buckets(),
            loop_iteration: buckets(),
        }
    }
}

/// One UDP socket's counters at scrape time.
#[derive(Debug, Clone)]
pub struct SocketCounters {
    /// Its local address.
    pub local: String,
    /// Datagrams received.
    pub received: u64,
    /// Bytes received.
    pub received_bytes: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Dropped because the send queue was full.
    pub dropped_queue_full: u64,
    /// Refused by the kernel.
    pub send_errors: u64,
    /// Send system calls (each up to a batch of datagrams).
    pub send_calls: u64,
}

/// One source's counters at scrape time.
#[derive(Debug, Clone)]
pub struct SourceSnapshot {
    /// Avatar.
    pub avatar: String,
    /// Frames encoded.
    pub frames: u64,
    /// Keyframes encoded.
    pub keyframes: u64,
    /// Frames skipped because the source fell behind.
    pub late_skips: u64,
    /// Frames dropped because the loop's channel was full.
    pub channel_drops: u64,
    /// Pictures the encoder's rate control skipped.
    pub encoder_skips: u64,
}

/// The renderers' ingest socket at scrape time (all renderers together).
#[derive(Debug, Clone, Default)]
pub struct IngestSnapshot {
    /// Renderers feeding an avatar now.
    pub live_renderers: u64,
    /// Registrations accepted.
    pub registered: u64,
    /// Connections closed for breaking the protocol or being refused.
    pub protocol_errors: u64,
    /// Frames read from renderers.
    pub frames_received: u64,
    /// Raw frames encoded.
    pub frames_encoded: u64,
    /// Access units handed to the loop.
    pub frames_forwarded: u64,
    /// Raw frames replaced by a newer one before the encoder took them.
    pub dropped_newest_wins: u64,
    /// Access units dropped because the loop's channel was full.
    pub dropped_loop_behind: u64,
    /// Pass-through frames dropped while waiting for an IDR.
    pub dropped_waiting_idr: u64,
    /// Raw frames the encoder's rate control skipped.
    pub encoder_skips: u64,
    /// KEYFRAME_REQUEST messages sent to pass-through renderers.
    pub keyframe_requests_sent: u64,
    /// Time spent converting RGB to I420, seconds.
    pub convert_seconds: f64,
    /// The same counters per avatar id a renderer fed (hub-wide fields such
    /// as `live_renderers` are unused there).
    pub avatars: Vec<(String, IngestSnapshot)>,
}

/// Everything a scrape shows besides the histograms.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    /// Engine counters.
    pub engine: &'a EngineStats,
    /// Live sessions.
    pub sessions: &'a [SessionInfo],
    /// Per UDP socket.
    pub sockets: Vec<SocketCounters>,
    /// Per source.
    pub sources: Vec<SourceSnapshot>,
    /// Open TCP connections.
    pub connections: usize,
    /// Connections refused or closed by a limit, by reason.
    pub conn_drops: Vec<(&'static str, u64)>,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// The ingest socket, when enabled.
    pub ingest: Option<IngestSnapshot>,
}

/// Renders the Prometheus text exposition.
pub fn render(h: &Histograms, s: &Snapshot<'_>) -> String {
    let mut r = Registry::with_prefix("portcast");
    let by_phase = Family::<Labels, Gauge>::default();
    for phase in [Phase::Negotiated, Phase::Connected, Phase::Streaming] {
        let n = s.sessions.iter().filter(|x| x.phase == phase).count();
        by_phase
            .get_or_create(&label("state", phase_name(phase)))
            .set(n as i64);
    }
    r.register("sessions", "Live sessions by state", by_phase);
    r.register(
        "offers",
        "Offers received",
        ConstCounter::new(s.engine.offers),
    );
    r.register(
        "answers",
        "Answers sent",
        ConstCounter::new(s.engine.answers),
    );
    let errors = Family::<Labels, Counter>::default();
    for (code, n) in &s.engine.errors {
        errors.get_or_create(&label("code", code)).inc_by(*n);
    }
    r.register("signal_errors", "Errors sent to viewers, by code", errors);
    let ended = Family::<Labels, Counter>::default();
    for (reason, n) in &s.engine.ended {
        ended.get_or_create(&label("reason", reason)).inc_by(*n);
    }
    r.register("sessions_ended", "Sessions ended, by reason", ended);
    r.register(
        "session_panics",
        "Sessions dropped because handling them panicked (a bug: report it)",
        ConstCounter::new(s.engine.session_panics),
    );
    let drops = Family::<Labels, Counter>::default();
    let engine_drops = [
        ("unknown_ufrag", s.engine.drop_unknown_ufrag),
        ("unknown_source", s.engine.drop_unknown_source),
        ("malformed", s.engine.drop_malformed),
        ("dtls_application_data", s.engine.drop_dtls_application_data),
        ("held_for_keyframe", s.engine.frames_held),
    ];
    let ingest_drops = s.ingest.as_ref().map_or_else(Vec::new, |i| {
        vec![
            ("ingest_newest_wins", i.dropped_newest_wins),
            ("ingest_loop_behind", i.dropped_loop_behind),
            ("ingest_waiting_idr", i.dropped_waiting_idr),
            ("ingest_encoder_skip", i.encoder_skips),
            ("ingest_protocol_error", i.protocol_errors),
        ]
    });
    for (reason, n) in engine_drops
        .iter()
        .chain(s.conn_drops.iter())
        .chain(ingest_drops.iter())
    {
        drops.get_or_create(&label("reason", reason)).inc_by(*n);
    }
    for sock in &s.sockets {
        drops
            .get_or_create(&labels(&[
                ("reason", "udp_queue_full"),
                ("socket", &sock.local),
            ]))
            .inc_by(sock.dropped_queue_full);
        drops
            .get_or_create(&labels(&[
                ("reason", "udp_send_error"),
                ("socket", &sock.local),
            ]))
            .inc_by(sock.send_errors);
    }
    for src in &s.sources {
        for (reason, n) in [
            ("source_late", src.late_skips),
            ("source_channel_full", src.channel_drops),
            ("source_encoder_skip", src.encoder_skips),
        ] {
            drops
                .get_or_create(&labels(&[("reason", reason), ("avatar", &src.avatar)]))
                .inc_by(n);
        }
    }
    r.register("drops", "Things dropped, by reason", drops);
    let io = Family::<Labels, Counter>::default;
    let (dg_in, by_in, dg_out, by_out, calls) = (io(), io(), io(), io(), io());
    for sock in &s.sockets {
        let l = label("socket", &sock.local);
        dg_in.get_or_create(&l).inc_by(sock.received);
        by_in.get_or_create(&l).inc_by(sock.received_bytes);
        dg_out.get_or_create(&l).inc_by(sock.sent);
        by_out.get_or_create(&l).inc_by(sock.sent_bytes);
        calls.get_or_create(&l).inc_by(sock.send_calls);
    }
    r.register("udp_datagrams_in", "Datagrams received, per socket", dg_in);
    r.register("udp_bytes_in", "Bytes received, per socket", by_in);
    r.register("udp_datagrams_out", "Datagrams sent, per socket", dg_out);
    r.register("udp_bytes_out", "Bytes sent, per socket", by_out);
    r.register(
        "udp_send_calls",
        "sendmmsg calls, per socket (datagrams_out / send_calls = batch size)",
        calls,
    );
    if let Some(i) = &s.ingest {
        r.register(
            "ingest_renderers",
            "Renderers feeding an avatar through the ingest socket",
            ConstGauge::new(i.live_renderers as i64),
        );
        let counters = [
            (
                "ingest_registrations",
                "Renderer registrations accepted",
                i.registered,
            ),
            (
                "ingest_frames_received",
                "Frames read from renderers",
                i.frames_received,
            ),
            (
                "ingest_frames_encoded",
                "Raw renderer frames encoded",
                i.frames_encoded,
            ),
            (
                "ingest_frames_forwarded",
                "Renderer access units handed to the loop",
                i.frames_forwarded,
            ),
            (
                "ingest_keyframe_requests",
                "Keyframe requests sent to pass-through renderers",
                i.keyframe_requests_sent,
            ),
        ];
        for (name, help, n) in counters {
            r.register(name, help, ConstCounter::new(n));
        }
        r.register(
            "ingest_convert_seconds",
            "Time spent converting renderer RGB frames to I420",
            ConstCounter::new(i.convert_seconds),
        );
        let frames = Family::<Labels, Counter>::default();
        let lost = Family::<Labels, Counter>::default();
        for (avatar, a) in &i.avatars {
            for (stage, n) in [
                ("received", a.frames_received),
                ("encoded", a.frames_encoded),
                ("forwarded", a.frames_forwarded),
            ] {
                frames
                    .get_or_create(&labels(&[("avatar", avatar), ("stage", stage)]))
                    .inc_by(n);
            }
            for (reason, n) in [
                ("newest_wins", a.dropped_newest_wins),
                ("loop_behind", a.dropped_loop_behind),
                ("waiting_idr", a.dropped_waiting_idr),
                ("encoder_skip", a.encoder_skips),
            ] {
                lost.get_or_create(&labels(&[("avatar", avatar), ("reason", reason)]))
                    .inc_by(n);
            }
        }
        r.register(
            "ingest_avatar_frames",
            "Renderer frames per avatar, by stage (received, encoded, forwarded to the loop)",
            frames,
        );
        r.register(
            "ingest_avatar_drops",
            "Renderer frames lost per avatar, by reason",
            lost,
        );
    }
    r.register(
        "keyframe_requests",
        "Keyframe requests sent to encoders",
        ConstCounter::new(s.engine.keyframe_requests),
    );
    r.register(
        "frames_written",
        "Frames written to viewers",
        ConstCounter::new(s.engine.frames_written),
    );
    let frames = Family::<Labels, Counter>::default();
    for src in &s.sources {
        frames
            .get_or_create(&label("avatar", &src.avatar))
            .inc_by(src.frames);
    }
    r.register("source_frames", "Frames encoded, per avatar", frames);
    r.register(
        "connections",
        "Open TCP connections",
        ConstGauge::new(s.connections as i64),
    );
    r.register(
        "resident_memory_bytes",
        "Resident set size",
        ConstGauge::new(s.rss_bytes as i64),
    );
    r.register("encode_seconds", "Encoder time per frame", h.encode.clone());
    r.register(
        "frame_to_packet_seconds",
        "Raw frame to last datagram sent",
        h.frame_to_packet.clone(),
    );
    r.register(
        "loop_iteration_seconds",
        "Loop time per wake-up",
        h.loop_iteration.clone(),
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

fn label(k: &str, v: &str) -> Labels {
    labels(&[(k, v)])
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Negotiated => "negotiated",
        Phase::Connected => "connected",
        Phase::Streaming => "streaming",
    }
}

/// Resident set size of this process from /proc, 0 where unavailable.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn rendered() -> String {
        // One of everything, so every family shows (empty families render nothing).
        let mut stats = EngineStats::default();
        stats.errors.insert("invalid_sdp", 1);
        stats.ended.insert("websocket_closed", 1);
        rendered_with(&stats)
    }

    fn rendered_with(stats: &EngineStats) -> String {
        let snapshot = Snapshot {
            engine: stats,
            sessions: &[],
            sockets: vec![SocketCounters {
                local: "127.0.0.1:10111".into(),
                received: 1,
                received_bytes: 100,
                sent: 2,
                sent_bytes: 200,
                dropped_queue_full: 0,
                send_errors: 0,
                send_calls: 1,
            }],
            sources: vec![SourceSnapshot {
                avatar: "test-pattern".into(),
                frames: 3,
                keyframes: 1,
                late_skips: 0,
                channel_drops: 0,
                encoder_skips: 0,
            }],
            connections: 1,
            conn_drops: vec![("head_timeout", 1)],
            rss_bytes: 1 << 20,
            ingest: Some(IngestSnapshot {
                avatars: vec![("renderer-1".into(), IngestSnapshot::default())],
                ..IngestSnapshot::default()
            }),
        };
        render(&Histograms::default(), &snapshot)
    }

    fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => collect_exprs(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
            _ => {}
        }
    }

    /// Every counter the engine keeps reaches /metrics (two once did not).
    #[test]
    fn every_engine_counter_is_exported() {
        let stats = EngineStats {
            offers: 1,
            answers: 2,
            datagrams_in: 3,
            drop_unknown_ufrag: 4,
            drop_unknown_source: 5,
            drop_malformed: 6,
            drop_dtls_application_data: 7,
            frames_written: 8,
            frames_held: 9,
            keyframe_requests: 10,
            session_panics: 11,
            ..EngineStats::default()
        };
        let text = rendered_with(&stats);
        for line in [
            "portcast_offers_total 1",
            "portcast_answers_total 2",
            "portcast_drops_total{reason=\"unknown_ufrag\"} 4",
            "portcast_drops_total{reason=\"unknown_source\"} 5",
            "portcast_drops_total{reason=\"malformed\"} 6",
            "portcast_drops_total{reason=\"dtls_application_data\"} 7",
            "portcast_drops_total{reason=\"held_for_keyframe\"} 9",
            "portcast_frames_written_total 8",
            "portcast_keyframe_requests_total 10",
            "portcast_session_panics_total 11",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    /// docs/grafana.json may only chart metrics this daemon exports.
    #[test]
    fn the_dashboard_names_only_exported_metrics() {
        let text = rendered();
        let types: HashMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .collect();
        assert!(types.contains_key("portcast_frame_to_packet_seconds"));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana.json");
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut exprs = Vec::new();
        collect_exprs(&dash, &mut exprs);
        assert!(exprs.len() > 10, "the dashboard has queries");
        let mut used = 0;
        for expr in &exprs {
            let bytes = expr.as_bytes();
            let mut i = 0;
            while let Some(at) = expr[i..].find("portcast_") {
                let start = i + at;
                let end = start
                    + bytes[start..]
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                        .count();
                let name = &expr[start..end];
                let known = [("", "gauge"), ("_total", "counter")]
                    .into_iter()
                    .chain(["_bucket", "_sum", "_count"].map(|s| (s, "histogram")))
                    .any(|(suffix, kind)| {
                        name.strip_suffix(suffix)
                            .and_then(|family| types.get(family))
                            .is_some_and(|t| *t == kind)
                    });
                assert!(known, "{name} in `{expr}` is not exported");
                used += 1;
                i = end;
            }
        }
        assert!(used >= exprs.len());
    }
}
