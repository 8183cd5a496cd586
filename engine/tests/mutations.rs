//! Thousands of variants of every real captured offer, and of the signaling
//! JSON around it, each get an answer that holds the answer invariants or a
//! clear error: no panic, no hang, bounded time.
//!
//! The mutator is small and deterministic (no proptest): truncate at every
//! line and in the middle of every line, drop each line, duplicate each line,
//! flip bits at a spread of byte positions, change line endings and the
//! video's direction, and inflate attributes and m-lines. Timings are printed, not asserted; only a single
//! case taking absurdly long (a hang in the making) fails the test.

mod util;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portcast_engine::replay::{ReplayInput, ReplayOutcome, Replayer};
use portcast_engine::EngineConfig;
use serde_json::{json, Value};
use util::*;

/// One case longer than this is a hang in the making, whatever the machine.
const ABSURD: Duration = Duration::from_secs(2);
/// With no progress for this long, the run is declared hung.
const WATCHDOG: Duration = Duration::from_secs(30);
/// Byte positions flipped per offer, spread evenly over it.
const FLIP_POSITIONS: usize = 97;

/// Every code a refusal may carry (README "Error codes").
const CODES: &[&str] = &[
    "malformed_json",
    "unknown_type",
    "missing_field",
    "invalid_field",
    "session_id_mismatch",
    "sdp_too_large",
    "invalid_sdp",
    "no_video",
    "no_h264",
    "no_h264_profile",
    "no_rtcp_mux",
    "unknown_avatar",
    "offer_rejected",
];

/// The real captures (not the `derived_*` files), by file name.
fn real_offers() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/offers");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".sdp") && !n.starts_with("derived_"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| (n.clone(), fixture(&n)))
        .collect()
}

/// Lines of `sdp` with their terminators, so joining them gives `sdp` back.
fn lines(sdp: &str) -> Vec<&str> {
    sdp.split_inclusive('\n').collect()
}

/// Deterministic variants of one offer, each with a name saying how it was made.
fn sdp_mutations(sdp: &str) -> Vec<(String, String)> {
    let ls = lines(sdp);
    let mut out = Vec::new();
    for i in 0..=ls.len() {
        out.push((format!("truncated after line {i}"), ls[..i].concat()));
    }
    for (i, l) in ls.iter().enumerate() {
        let mut cut = ls[..i].concat();
        let half: String = l.chars().take(l.chars().count() / 2).collect();
        cut.push_str(&half);
        out.push((format!("truncated in line {}", i + 1), cut));

        let mut dropped = ls.clone();
        dropped.remove(i);
        out.push((format!("line {} dropped", i + 1), dropped.concat()));

        let mut doubled = ls.clone();
        doubled.insert(i, l);
        out.push((format!("line {} duplicated", i + 1), doubled.concat()));
    }
    let bytes = sdp.as_bytes();
    for k in 0..FLIP_POSITIONS {
        let pos = k * bytes.len() / FLIP_POSITIONS;
        // 0x01 and 0x20 keep ASCII text ASCII (case, digits, separators);
        // 0x80 makes it invalid UTF-8, which a WebSocket text frame cannot
        // carry, so it arrives as U+FFFD, as it would from a lossy client.
        for mask in [0x01u8, 0x20, 0x80] {
            let mut b = bytes.to_vec();
            b[pos] ^= mask;
            out.push((
                format!("byte {pos} xor {mask:#04x}"),
                String::from_utf8_lossy(&b).into_owned(),
            ));
        }
    }
    let lf = sdp.replace("\r\n", "\n");
    let endings = [
        ("CRLF to LF", lf.clone()),
        ("LF to CRLF", lf.replace('\n', "\r\n")),
        ("CR only", lf.replace('\n', "\r")),
        ("CRCRLF", lf.replace('\n', "\r\r\n")),
        (
            "mixed endings",
            lines(&lf)
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i % 2 == 0 {
                        l.replace('\n', "\r\n")
                    } else {
                        l.to_string()
                    }
                })
                .collect(),
        ),
        ("no final newline", sdp.trim_end().to_string()),
        ("blank lines between", lf.replace('\n', "\r\n\r\n")),
        ("leading spaces", lf.replace('\n', "\n ")),
    ];
    out.extend(endings.into_iter().map(|(n, s)| (n.to_string(), s)));
    // Every direction the viewer's video could declare, and none.
    for dir in ["a=sendrecv\r\n", "a=sendonly\r\n", "a=inactive\r\n", ""] {
        let name = format!("recvonly -> {:?}", dir.trim_end());
        out.push((name, sdp.replacen("a=recvonly\r\n", dir, 1)));
    }
    out.extend(inflations(sdp));
    out
}

/// Attribute and m-line inflation: within the SDP limit and over it.
fn inflations(sdp: &str) -> Vec<(String, String)> {
    let ls = lines(sdp);
    let mut out = Vec::new();
    for prefix in [
        "a=candidate",
        "a=rtpmap",
        "a=fmtp",
        "a=extmap",
        "a=ssrc",
        "a=rtcp-fb",
    ] {
        let Some(i) = ls.iter().position(|l| l.starts_with(prefix)) else {
            continue;
        };
        for times in [10, 100, 1000] {
            let mut v = ls.clone();
            for _ in 0..times {
                v.insert(i, ls[i]);
            }
            out.push((format!("{prefix} x{times}"), v.concat()));
        }
    }
    if let Some(i) = ls.iter().position(|l| l.starts_with("a=mid")) {
        for len in [1_000, 60_000, 70_000] {
            let mut v = ls.clone();
            let long = format!("a=x-long:{}\r\n", "y".repeat(len));
            v.insert(i + 1, &long);
            out.push((format!("attribute of {len} bytes"), v.concat()));
        }
    }
    // The video section again and again, each copy with its own mid.
    if let Some(start) = ls.iter().position(|l| l.starts_with("m=video")) {
        let end = ls[start + 1..]
            .iter()
            .position(|l| l.starts_with("m="))
            .map_or(ls.len(), |p| start + 1 + p);
        let section = ls[start..end].concat();
        for copies in [2, 20, 200] {
            let mut s = sdp.to_string();
            for c in 0..copies {
                s.push_str(&section.replace("a=mid:0", &format!("a=mid:x{c}")));
            }
            out.push((format!("video section x{copies} more"), s));
        }
    }
    out
}

/// Deterministic variants of a `webrtc_offer` message around a real offer.
fn json_mutations(sdp: &str) -> Vec<(String, String)> {
    let base = json!({
        "type": "webrtc_offer", "session_id": "mut", "user_id": 5,
        "avatar_id": "test-pattern", "sdp": sdp,
    });
    let text = base.to_string();
    let mut out = Vec::new();
    let steps = 150;
    for k in 0..=steps {
        let mut end = k * text.len() / steps;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        out.push((
            format!("message truncated at {end}"),
            text[..end].to_string(),
        ));
    }
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let values: Vec<(&str, Value)> = vec![
        ("null", Value::Null),
        ("true", json!(true)),
        ("0", json!(0)),
        ("-1.5e308", json!(-1.5e308)),
        ("u64 max", json!(u64::MAX)),
        ("empty string", json!("")),
        ("long string", json!("s".repeat(100_000))),
        ("array", json!([1, "two", null])),
        ("object", json!({"nested": {"sdp": sdp}})),
        ("unicode", json!("\u{1F600}\u{0}\u{FFFD}\"\\")),
    ];
    for key in ["type", "session_id", "user_id", "avatar_id", "sdp"] {
        for (what, v) in &values {
            let mut m = base.clone();
            m[key] = v.clone();
            out.push((format!("{key} = {what}"), m.to_string()));
        }
        let mut m = base.clone();
        if let Some(o) = m.as_object_mut() {
            o.remove(key);
        }
        out.push((format!("{key} removed"), m.to_string()));
        out.push((
            format!("{key} = deeply nested array"),
            text.replacen(
                &format!("\"{key}\":"),
                &format!("\"{key}\":{deep},\"x\":"),
                1,
            ),
        ));
    }
    for t in [
        "WEBRTC_OFFER",
        "webrtc_answer",
        "client_stats",
        "error",
        " webrtc_offer",
    ] {
        let mut m = base.clone();
        m["type"] = json!(t);
        out.push((format!("type {t:?}"), m.to_string()));
    }
    for (what, s) in [
        ("not an object", json!([base.clone()]).to_string()),
        ("string", json!(text).to_string()),
        ("empty", String::new()),
        ("whitespace", " \n\t".into()),
        (
            "duplicate type",
            text.replacen('{', "{\"type\":\"client_stats\",", 1),
        ),
        (
            "unknown fields",
            text.replacen('{', "{\"zzz\":[1,{\"a\":null}],", 1),
        ),
        ("trailing garbage", format!("{text} {{")),
        ("two messages", format!("{text}{text}")),
        ("NaN", text.replacen("\"user_id\":5", "\"user_id\":NaN", 1)),
        ("lone surrogate", text.replacen("\"mut\"", "\"\\ud800\"", 1)),
    ] {
        out.push((what.to_string(), s));
    }
    out
}

struct Tally {
    cases: usize,
    failures: Vec<String>,
    answered: usize,
    by_code: BTreeMap<String, usize>,
    /// The first case refused with each code, and its message.
    examples: BTreeMap<String, String>,
    total: Duration,
    slowest: (String, Duration),
}

impl Tally {
    fn new() -> Self {
        Tally {
            cases: 0,
            failures: Vec::new(),
            answered: 0,
            by_code: BTreeMap::new(),
            examples: BTreeMap::new(),
            total: Duration::ZERO,
            slowest: (String::new(), Duration::ZERO),
        }
    }

    /// Replays one case and asserts its outcome is an answer that holds the
    /// invariants or a clear error (or silence, for a well-formed `client_stats`).
    fn run(&mut self, r: &mut Replayer, name: &str, input: &ReplayInput) {
        let started = Instant::now();
        let replay = r.replay(input);
        let took = started.elapsed();
        assert!(took < ABSURD, "{name} took {took:?}");
        self.cases += 1;
        self.total += took;
        if took > self.slowest.1 {
            self.slowest = (name.to_string(), took);
        }
        match &replay.outcome {
            ReplayOutcome::Answered { check, .. } => {
                self.answered += 1;
                if !check.violations.is_empty() {
                    self.failures
                        .push(format!("{name}: answer breaks {:?}", check.violations));
                }
            }
            ReplayOutcome::Refused { code, message } => {
                if !CODES.contains(&code.as_str()) || message.len() < 10 {
                    self.failures
                        .push(format!("{name}: unclear error {code:?} {message:?}"));
                }
                *self.by_code.entry(code.clone()).or_default() += 1;
                self.examples
                    .entry(code.clone())
                    .or_insert_with(|| format!("{name}: {message}"));
            }
            ReplayOutcome::NoReply if is_client_stats(input) => {
                *self
                    .by_code
                    .entry("(client_stats, no reply)".into())
                    .or_default() += 1;
            }
            other => self.failures.push(format!("{name}: {other:?}")),
        }
    }

    /// Prints the counts and times, then fails listing the first failures, if any.
    fn finish(&self, what: &str) {
        eprintln!(
            "{what}: {} cases, {} answered, refused {:?}; total {:.2?}, slowest {} ({:.2?})",
            self.cases, self.answered, self.by_code, self.total, self.slowest.0, self.slowest.1
        );
        for (code, example) in &self.examples {
            eprintln!("  e.g. {code}: {example}");
        }
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed; first ones:\n{}",
            self.failures.len(),
            self.cases,
            self.failures[..self.failures.len().min(25)].join("\n")
        );
    }
}

/// A well-formed `client_stats` message, which the engine keeps without replying.
fn is_client_stats(input: &ReplayInput) -> bool {
    let ReplayInput::Message(text) = input else {
        return false;
    };
    serde_json::from_str::<Value>(text).is_ok_and(|v| v["type"] == "client_stats")
}

fn replayer() -> Replayer {
    Replayer::new(
        EngineConfig {
            sockets: sockets("198.18.0.1", 20111),
            ..EngineConfig::default()
        },
        std::time::Instant::now,
    )
    .unwrap()
}

/// Runs `body` on its own thread, failing the test if it stops making progress.
fn with_watchdog(body: impl FnOnce(&dyn Fn(&str)) + Send + 'static) {
    let (tx, rx) = mpsc::channel::<String>();
    let worker = std::thread::spawn(move || {
        let progress = move |name: &str| {
            let _ = tx.send(name.to_string());
        };
        body(&progress);
    });
    let mut last = String::from("(start)");
    loop {
        match rx.recv_timeout(WATCHDOG) {
            Ok(name) => last = name,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no progress for {WATCHDOG:?} after {last}")
            }
        }
    }
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn thousands_of_offer_variants_get_an_answer_or_a_clear_error() {
    with_watchdog(|progress| {
        let mut r = replayer();
        let mut tally = Tally::new();
        for (file, sdp) in real_offers() {
            for (how, variant) in sdp_mutations(&sdp) {
                let name = format!("{file}: {how}");
                progress(&name);
                tally.run(&mut r, &name, &ReplayInput::Sdp(variant));
            }
        }
        tally.finish("offer variants");
        assert!(tally.cases >= 5000, "{} cases", tally.cases);
        assert!(tally.answered > 100 && tally.by_code.len() >= 3);
    });
}

#[test]
fn signaling_json_variants_get_an_answer_or_a_clear_error() {
    with_watchdog(|progress| {
        let mut r = replayer();
        let mut tally = Tally::new();
        for (file, sdp) in real_offers() {
            for (how, text) in json_mutations(&sdp) {
                let name = format!("{file}: {how}");
                progress(&name);
                tally.run(&mut r, &name, &ReplayInput::Message(text));
            }
        }
        tally.finish("signaling variants");
        assert!(tally.cases >= 1000, "{} cases", tally.cases);
        assert!(tally.by_code.contains_key("malformed_json"));
        assert!(tally.by_code.contains_key("invalid_field"));
        assert!(tally.by_code.contains_key("missing_field"));
    });
}
