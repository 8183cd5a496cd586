//! The engine's counters, kept as Prometheus metrics (prometheus-client).
//!
//! Each counter is declared once here, counted where its event happens, and
//! registered by [`EngineStats::register`] into the daemon's registry, so a
//! scrape reads the live values: there is no copy to keep in step. A new
//! counter is a field and a line in `register` (or a reason in `drops`).
//! The counters are atomics the engine alone writes; a relaxed increment on
//! one thread costs what the `u64` it replaced did within noise.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A metric's labels: (name, value) pairs.
pub type Labels = Vec<(String, String)>;

/// Builds a label set from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Counters kept by the engine.
#[derive(Debug, Clone)]
pub struct EngineStats {
    /// Offers received.
    pub offers: Counter,
    /// Answers sent.
    pub answers: Counter,
    /// Errors sent to peers, by `code`.
    pub errors: Family<Labels, Counter>,
    /// Sessions ended, by `reason`.
    pub ended: Family<Labels, Counter>,
    /// Things dropped, by `reason` (and `socket` or `avatar`): the daemon adds
    /// its own reasons to this one family.
    pub drops: Family<Labels, Counter>,
    /// Datagrams dropped: STUN naming an unknown ufrag.
    pub drop_unknown_ufrag: Counter,
    /// Datagrams dropped: not STUN and from an unknown pair.
    pub drop_unknown_source: Counter,
    /// Datagrams dropped: not a WebRTC packet kind, or unparsable.
    pub drop_malformed: Counter,
    /// Datagrams dropped or cut for carrying DTLS application data (SCTP, never negotiated).
    pub drop_dtls_application_data: Counter,
    /// Frames held back from a viewer waiting for its first keyframe.
    pub frames_held: Counter,
    /// Frames written to viewers (one per viewer per frame).
    pub frames_written: Counter,
    /// Opus packets written to viewers (one per viewer per packet).
    pub audio_frames_written: Counter,
    /// Keyframe requests sent to encoders.
    pub keyframe_requests: Counter,
    /// Probes of a viewer's link for more bandwidth the engine asked str0m for.
    pub bandwidth_probes: Counter,
    /// Sessions dropped because handling them panicked (a bug, contained).
    pub session_panics: Counter,
    /// Answer sent to the session's first frame written, seconds (ICE + DTLS + the wait for a keyframe).
    pub first_frame: Histogram,
    /// Viewers' bandwidth estimates, bits per second (each viewer at most once a second).
    pub viewer_estimates: Histogram,
    /// Viewers moved to another rendition of their avatar, by `direction` (`up`, `down`).
    pub rendition_switches: Family<Labels, Counter>,
}

impl Default for EngineStats {
    fn default() -> Self {
        let drops = Family::<Labels, Counter>::default();
        let reason = |r: &str| drops.get_or_create_owned(&labels(&[("reason", r)]));
        EngineStats {
            offers: Counter::default(),
            answers: Counter::default(),
            errors: Family::default(),
            ended: Family::default(),
            drop_unknown_ufrag: reason("unknown_ufrag"),
            drop_unknown_source: reason("unknown_source"),
            drop_malformed: reason("malformed"),
            drop_dtls_application_data: reason("dtls_application_data"),
            frames_held: reason("held_for_keyframe"),
            frames_written: Counter::default(),
            audio_frames_written: Counter::default(),
            keyframe_requests: Counter::default(),
            bandwidth_probes: Counter::default(),
            session_panics: Counter::default(),
            // 5 ms .. ~5 s in x2 steps.
            first_frame: Histogram::new(exponential_buckets(0.005, 2.0, 11)),
            // 62.5 kbit/s .. 16 Mbit/s in x2 steps.
            viewer_estimates: Histogram::new(exponential_buckets(62_500.0, 2.0, 9)),
            rendition_switches: Family::default(),
            drops,
        }
    }
}

impl EngineStats {
    /// Registers every counter (sharing its value) in `r`.
    pub fn register(&self, r: &mut Registry) {
        for (name, help, c) in [
            ("offers", "Offers received", &self.offers),
            ("answers", "Answers sent", &self.answers),
            (
                "session_panics",
                "Sessions dropped because handling them panicked (a bug: report it)",
                &self.session_panics,
            ),
            (
                "keyframe_requests",
                "Keyframe requests sent to encoders",
                &self.keyframe_requests,
            ),
            (
                "bandwidth_probes",
                "Probes of a viewer's link for more bandwidth asked of str0m",
                &self.bandwidth_probes,
            ),
            (
                "frames_written",
                "Frames written to viewers",
                &self.frames_written,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        for (name, help, f) in [
            (
                "signal_errors",
                "Errors sent to viewers, by code",
                &self.errors,
            ),
            ("sessions_ended", "Sessions ended, by reason", &self.ended),
            ("drops", "Things dropped, by reason", &self.drops),
            (
                "rendition_switches",
                "Viewers moved to another rendition of their avatar at its keyframe, by direction",
                &self.rendition_switches,
            ),
        ] {
            r.register(name, help, f.clone());
        }
        r.register(
            "first_frame_seconds",
            "Answer sent to a viewer's first frame written (ICE + DTLS + the wait for a keyframe)",
            self.first_frame.clone(),
        );
        r.register(
            "viewer_estimate_bps",
            "Viewers' bandwidth estimates (transport-cc or REMB), bits per second, each viewer at most once a second",
            self.viewer_estimates.clone(),
        );
    }

    /// Errors sent with `code` so far.
    pub fn error_count(&self, code: &str) -> u64 {
        self.errors
            .get(&labels(&[("code", code)]))
            .map_or(0, |c| c.get())
    }

    /// Sessions ended with `reason` so far.
    pub fn ended_count(&self, reason: &str) -> u64 {
        self.ended
            .get(&labels(&[("reason", reason)]))
            .map_or(0, |c| c.get())
    }

    pub(crate) fn count_error(&self, code: &str) {
        self.errors.get_or_create(&labels(&[("code", code)])).inc();
    }

    pub(crate) fn count_ended(&self, reason: &str) {
        self.ended
            .get_or_create(&labels(&[("reason", reason)]))
            .inc();
    }
}
