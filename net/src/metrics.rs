//! Prometheus metrics: every family is declared and registered once, in
//! [`Metrics::new`], and counted where its event happens.
//!
//! The engine's counters are its own ([`EngineStats`], registered here); the
//! UDP sockets, the sources and the ingest hub get handles on their counters
//! from [`Metrics::udp`], [`Metrics::source`] and [`Metrics::ingest`] when they
//! are created and count on them from whichever thread they run on; the loop
//! observes the histograms. A scrape sets the few gauges that describe live
//! state (sessions by phase, connections, renderers, memory) and encodes the
//! registry: nothing is copied in between.
//!
//! A new metric: a field and one `register` line below, then count on it.

use prometheus_client::encoding::text::encode;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use portcast_engine::{labels, EngineStats, Labels, Phase, RenditionInfo, SessionInfo, VideoCodec};

use crate::ingest::{IngestCounters, IngestMetrics};
use crate::source::SourceCounters;
use crate::udp::UdpCounters;

/// The daemon's metrics and the registry `/metrics` encodes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Encoder time per frame (t1 - t0), seconds.
    pub encode: Histogram,
    /// Frame-to-packet time (t2 - t0), seconds.
    pub frame_to_packet: Histogram,
    /// Time the loop spends handling one wake-up, seconds.
    pub loop_iteration: Histogram,
    /// An Opus packet ready (its last sample in hand, its time come) to its last datagram sent, seconds.
    pub audio_to_packet: Histogram,
    drops: Family<Labels, Counter>,
    sessions: Family<Labels, Gauge>,
    connections: Gauge,
    whep_sessions: Gauge,
    resident_memory: Gauge,
    udp_in: Family<Labels, Counter>,
    udp_bytes_in: Family<Labels, Counter>,
    udp_out: Family<Labels, Counter>,
    udp_bytes_out: Family<Labels, Counter>,
    udp_calls: Family<Labels, Counter>,
    udp_segmented: Family<Labels, Counter>,
    source_frames: Family<Labels, Counter>,
    source_encoding: Family<Labels, Gauge>,
    source_bitrate: Family<Labels, Gauge>,
    rendition_viewers: Family<Labels, Gauge>,
    rendition_bitrate: Family<Labels, Gauge>,
    rendition_keyframes: Family<Labels, Counter>,
    rendition_bytes: Family<Labels, Counter>,
    ingest: Option<(IngestMetrics, Gauge)>,
}

/// What a scrape reads from the loop's live state.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// Live sessions.
    pub sessions: &'a [SessionInfo],
    /// Open TCP connections.
    pub connections: usize,
    /// Live sessions started over WHEP (they hold no connection).
    pub whep_sessions: usize,
    /// Renderers feeding an avatar now (ingest on).
    pub renderers: usize,
    /// Every rendition of every avatar.
    pub renditions: &'a [RenditionInfo],
}

impl Metrics {
    /// Registers the engine's counters and the daemon's own; the ingest
    /// families exist only when the ingest socket is on.
    pub fn new(engine: &EngineStats, ingest: bool) -> Self {
        let mut r = Registry::with_prefix("portcast");
        engine.register(&mut r);
        // 50 us .. ~0.4 s in x2 steps: covers an iteration as well as a slow IDR.
        let buckets = || Histogram::new(exponential_buckets(0.000_05, 2.0, 14));
        let m = Metrics {
            encode: buckets(),
            frame_to_packet: buckets(),
            loop_iteration: buckets(),
            audio_to_packet: buckets(),
            drops: engine.drops.clone(),
            sessions: Family::default(),
            connections: Gauge::default(),
            whep_sessions: Gauge::default(),
            resident_memory: Gauge::default(),
            udp_in: Family::default(),
            udp_bytes_in: Family::default(),
            udp_out: Family::default(),
            udp_bytes_out: Family::default(),
            udp_calls: Family::default(),
            udp_segmented: Family::default(),
            source_frames: Family::default(),
            source_encoding: Family::default(),
            source_bitrate: Family::default(),
            rendition_viewers: Family::default(),
            rendition_bitrate: Family::default(),
            rendition_keyframes: Family::default(),
            rendition_bytes: Family::default(),
            ingest: ingest.then(|| (ingest_metrics(&engine.drops), Gauge::default())),
            registry: Registry::default(),
        };
        r.register("sessions", "Live sessions by state", m.sessions.clone());
        r.register(
            "source_encoding",
            "1 while a built-in source's encoder of this codec runs (a viewer receives it), 0 while it is stopped",
            m.source_encoding.clone(),
        );
        r.register(
            "source_bitrate_bps",
            "The bitrate a built-in source's encoder of this codec aims at now: the configured one, or less while its one viewer's bandwidth estimate is lower (0 while stopped)",
            m.source_bitrate.clone(),
        );
        for (name, help, f) in [
            (
                "rendition_viewers",
                "Viewers receiving each rendition of an avatar (top: the source's own picture; 360p: a rung of the ladder)",
                &m.rendition_viewers,
            ),
            (
                "rendition_bitrate_bps",
                "The bitrate each rendition's encoder aims at (top: the highest it reported)",
                &m.rendition_bitrate,
            ),
        ] {
            r.register(name, help, f.clone());
        }
        for (name, help, f) in [
            (
                "rendition_keyframes",
                "Keyframes each rendition delivered to the loop",
                &m.rendition_keyframes,
            ),
            (
                "rendition_bytes",
                "Encoded bytes each rendition delivered to the loop (x8 and rate(): its bitrate)",
                &m.rendition_bytes,
            ),
        ] {
            r.register(name, help, f.clone());
        }
        for (name, help, f) in [
            (
                "udp_datagrams_in",
                "Datagrams received, per socket",
                &m.udp_in,
            ),
            (
                "udp_bytes_in",
                "Bytes received, per socket",
                &m.udp_bytes_in,
            ),
            (
                "udp_datagrams_out",
                "Datagrams sent, per socket",
                &m.udp_out,
            ),
            ("udp_bytes_out", "Bytes sent, per socket", &m.udp_bytes_out),
            (
                "udp_send_calls",
                "sendmmsg calls, per socket (datagrams_out / send_calls = batch size)",
                &m.udp_calls,
            ),
            (
                "udp_segmented_datagrams_out",
                "Datagrams sent inside segmented messages (UDP GSO: one buffer the kernel cuts into datagrams), per socket",
                &m.udp_segmented,
            ),
            (
                "source_frames",
                "Frames encoded, per avatar",
                &m.source_frames,
            ),
        ] {
            r.register(name, help, f.clone());
        }
        if let Some((i, renderers)) = &m.ingest {
            r.register(
                "ingest_renderers",
                "Renderers feeding an avatar through the ingest socket",
                renderers.clone(),
            );
            let hub = &i.hub;
            for (name, help, c) in [
                (
                    "ingest_registrations",
                    "Renderer registrations accepted",
                    &hub.registered,
                ),
                (
                    "ingest_frames_received",
                    "Frames read from renderers",
                    &hub.frames_received,
                ),
                (
                    "ingest_frames_encoded",
                    "Raw renderer frames encoded",
                    &hub.frames_encoded,
                ),
                (
                    "ingest_frames_forwarded",
                    "Renderer access units handed to the loop",
                    &hub.frames_forwarded,
                ),
                (
                    "ingest_keyframe_requests",
                    "Keyframe requests sent to pass-through renderers",
                    &hub.keyframe_requests_sent,
                ),
                (
                    "ingest_audio_chunks_received",
                    "AUDIO messages read from renderers",
                    &hub.audio_chunks_received,
                ),
                (
                    "ingest_audio_frames_forwarded",
                    "Renderer Opus packets handed to the loop",
                    &hub.audio_frames_forwarded,
                ),
                (
                    "ingest_flushes",
                    "FLUSH (barge-in) messages from renderers",
                    &hub.flushes,
                ),
            ] {
                r.register(name, help, c.clone());
            }
            r.register(
                "ingest_convert_seconds",
                "Time spent converting renderer RGB frames to I420",
                hub.convert_seconds.clone(),
            );
            for (name, help, f) in [
                (
                    "ingest_avatar_frames",
                    "Renderer frames per avatar, by stage (received, encoded, forwarded to the loop)",
                    &i.avatar_frames,
                ),
                (
                    "ingest_avatar_drops",
                    "Renderer frames lost per avatar, by reason",
                    &i.avatar_drops,
                ),
            ] {
                r.register(name, help, f.clone());
            }
        }
        r.register("connections", "Open TCP connections", m.connections.clone());
        r.register(
            "whep_sessions",
            "Live sessions started with a WHEP POST (also counted in portcast_sessions)",
            m.whep_sessions.clone(),
        );
        r.register(
            "resident_memory_bytes",
            "Resident set size",
            m.resident_memory.clone(),
        );
        for (name, help, h) in [
            ("encode_seconds", "Encoder time per frame", &m.encode),
            (
                "frame_to_packet_seconds",
                "Raw frame to last datagram sent",
                &m.frame_to_packet,
            ),
            (
                "loop_iteration_seconds",
                "Loop time per wake-up",
                &m.loop_iteration,
            ),
            (
                "audio_to_packet_seconds",
                "Opus packet ready to its last datagram sent",
                &m.audio_to_packet,
            ),
        ] {
            r.register(name, help, h.clone());
        }
        Metrics { registry: r, ..m }
    }

    /// The counters of the UDP socket bound at `local`.
    pub fn udp(&self, local: &str) -> UdpCounters {
        let l = labels(&[("socket", local)]);
        let drop = |reason| {
            self.drops
                .get_or_create_owned(&labels(&[("reason", reason), ("socket", local)]))
        };
        UdpCounters {
            received: self.udp_in.get_or_create_owned(&l),
            received_bytes: self.udp_bytes_in.get_or_create_owned(&l),
            sent: self.udp_out.get_or_create_owned(&l),
            sent_bytes: self.udp_bytes_out.get_or_create_owned(&l),
            send_calls: self.udp_calls.get_or_create_owned(&l),
            segmented: self.udp_segmented.get_or_create_owned(&l),
            dropped_full: drop("udp_queue_full"),
            send_errors: drop("udp_send_error"),
        }
    }

    /// The counters of the source feeding `avatar`.
    pub fn source(&self, avatar: &str) -> SourceCounters {
        let drop = |reason| {
            self.drops
                .get_or_create_owned(&labels(&[("reason", reason), ("avatar", avatar)]))
        };
        SourceCounters {
            frames: self
                .source_frames
                .get_or_create_owned(&labels(&[("avatar", avatar)])),
            late_skips: drop("source_late"),
            channel_drops: drop("source_channel_full"),
            encoder_skips: drop("source_encoder_skip"),
            encoding: VideoCodec::ALL.map(|codec| {
                self.source_encoding
                    .get_or_create_owned(&labels(&[("avatar", avatar), ("codec", codec.name())]))
            }),
            bitrate_bps: VideoCodec::ALL.map(|codec| {
                self.source_bitrate
                    .get_or_create_owned(&labels(&[("avatar", avatar), ("codec", codec.name())]))
            }),
            ..SourceCounters::default()
        }
    }

    /// The ingest hub's counters (unregistered ones when ingest is off).
    pub fn ingest(&self) -> IngestMetrics {
        self.ingest
            .as_ref()
            .map_or_else(IngestMetrics::default, |(i, _)| i.clone())
    }

    /// Counts a connection refused or closed by a limit.
    pub fn connection_dropped(&self, reason: &str) {
        self.drops
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }

    /// Sets the gauges of live state and renders the Prometheus text exposition.
    pub fn render(&self, live: Live<'_>) -> String {
        for phase in [Phase::Negotiated, Phase::Connected, Phase::Streaming] {
            let n = live.sessions.iter().filter(|x| x.phase == phase).count();
            self.sessions
                .get_or_create(&labels(&[("state", phase_name(phase))]))
                .set(n as i64);
        }
        self.connections.set(live.connections as i64);
        self.whep_sessions.set(live.whep_sessions as i64);
        self.resident_memory.set(rss_bytes() as i64);
        if let Some((_, renderers)) = &self.ingest {
            renderers.set(live.renderers as i64);
        }
        for r in live.renditions {
            let l = labels(&[
                ("avatar", r.avatar.as_str()),
                ("codec", r.codec.name()),
                ("rendition", &r.rendition),
            ]);
            self.rendition_viewers
                .get_or_create(&l)
                .set(r.viewers as i64);
            self.rendition_bitrate
                .get_or_create(&l)
                .set(i64::from(r.bitrate_bps));
            // The engine keeps the totals; the counters catch up to them.
            for (family, total) in [
                (&self.rendition_keyframes, r.keyframes),
                (&self.rendition_bytes, r.bytes),
            ] {
                let c = family.get_or_create(&l);
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The hub's counters, whose losses are reasons of the one drops family.
fn ingest_metrics(drops: &Family<Labels, Counter>) -> IngestMetrics {
    let reason = |r| drops.get_or_create_owned(&labels(&[("reason", r)]));
    IngestMetrics {
        hub: IngestCounters {
            dropped_newest_wins: reason("ingest_newest_wins"),
            dropped_loop_behind: reason("ingest_loop_behind"),
            dropped_waiting_idr: reason("ingest_waiting_idr"),
            encoder_skips: reason("ingest_encoder_skip"),
            protocol_errors: reason("ingest_protocol_error"),
            audio_dropped_queue_full: reason("ingest_audio_queue_full"),
            audio_dropped_bad_opus: reason("ingest_audio_bad_opus"),
            audio_dropped_loop_behind: reason("ingest_audio_loop_behind"),
            timestamps_back: reason("ingest_timestamp_back"),
            flushed: reason("ingest_flushed"),
            ..IngestCounters::default()
        },
        ..IngestMetrics::default()
    }
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
        let stats = EngineStats::default();
        stats
            .errors
            .get_or_create(&labels(&[("code", "invalid_sdp")]))
            .inc();
        stats
            .ended
            .get_or_create(&labels(&[("reason", "websocket_closed")]))
            .inc();
        rendered_with(&stats)
    }

    fn rendered_with(stats: &EngineStats) -> String {
        let m = Metrics::new(stats, true);
        m.udp("127.0.0.1:10111").received.inc();
        m.source("test-pattern").frames.inc_by(3);
        m.connection_dropped("head_timeout");
        m.ingest()
            .for_avatar(&portcast_engine::AvatarId::parse("renderer-1").unwrap())
            .frames_received
            .inc();
        m.render(Live {
            sessions: &[],
            connections: 1,
            whep_sessions: 0,
            renderers: 1,
            renditions: &[rendition(3, 1000)],
        })
    }

    fn rendition(keyframes: u64, bytes: u64) -> RenditionInfo {
        RenditionInfo {
            avatar: portcast_engine::AvatarId::parse("test-pattern").unwrap(),
            codec: VideoCodec::H264,
            rendition: "360p".into(),
            viewers: 2,
            bitrate_bps: 600_000,
            keyframes,
            bytes,
        }
    }

    /// The engine keeps each rendition's totals; every scrape shows them as counters.
    #[test]
    fn renditions_show_their_viewers_bitrate_and_totals() {
        let m = Metrics::new(&EngineStats::default(), false);
        let live = |r: &[RenditionInfo]| {
            m.render(Live {
                sessions: &[],
                connections: 0,
                whep_sessions: 0,
                renderers: 0,
                renditions: r,
            })
        };
        let l = r#"{avatar="test-pattern",codec="H264",rendition="360p"}"#;
        let has = |text: &str, line: String| {
            assert!(text.lines().any(|x| x == line), "{line} not in {text}")
        };
        let text = live(&[rendition(3, 1000)]);
        has(&text, format!("portcast_rendition_viewers{l} 2"));
        has(&text, format!("portcast_rendition_bitrate_bps{l} 600000"));
        has(&text, format!("portcast_rendition_keyframes_total{l} 3"));
        let text = live(&[rendition(5, 4000)]);
        has(&text, format!("portcast_rendition_keyframes_total{l} 5"));
        has(&text, format!("portcast_rendition_bytes_total{l} 4000"));
    }

    /// A counter bumped where its event happens shows at the next scrape:
    /// the registry holds the live counters, not a copy.
    #[test]
    fn counts_show_at_the_next_scrape_without_a_copy() {
        let stats = EngineStats::default();
        let m = Metrics::new(&stats, false);
        let udp = m.udp("127.0.0.1:10111");
        let live = Live {
            sessions: &[],
            connections: 0,
            whep_sessions: 0,
            renderers: 0,
            renditions: &[],
        };
        let line = "portcast_udp_datagrams_in_total{socket=\"127.0.0.1:10111\"} 5";
        assert!(!m.render(live).lines().any(|l| l == line));
        udp.received.inc_by(5);
        stats.offers.inc();
        let text = m.render(live);
        assert!(text.lines().any(|l| l == line), "{text}");
        assert!(
            text.lines().any(|l| l == "portcast_offers_total 1"),
            "{text}"
        );
        // Ingest off: none of its families.
        assert!(!text.contains("portcast_ingest"), "{text}");
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
        let stats = EngineStats::default();
        for (c, n) in [
            (&stats.offers, 1),
            (&stats.answers, 2),
            (&stats.drop_unknown_ufrag, 4),
            (&stats.drop_unknown_source, 5),
            (&stats.drop_malformed, 6),
            (&stats.drop_dtls_application_data, 7),
            (&stats.frames_written, 8),
            (&stats.frames_held, 9),
            (&stats.keyframe_requests, 10),
            (&stats.session_panics, 11),
            (&stats.bandwidth_probes, 12),
        ] {
            c.inc_by(n);
        }
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
            "portcast_bandwidth_probes_total 12",
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
