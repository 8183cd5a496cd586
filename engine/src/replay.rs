//! Replaying captured offers through an engine exactly as the daemon would, without sockets.
//!
//! `portcast replay` and the fixture tests hand each offer to a real [`Engine`]
//! built from the daemon's configuration, on a fresh signaling connection, and
//! read back the reply the daemon would have sent. An answer is then checked
//! against its offer ([`crate::answer_check`]). Unlike the rest of the engine
//! this module reads the clock: how long the engine took is part of a replay's
//! report.
//!
//! Inputs are `.sdp` files (the raw offer, sent as the `sdp` of a seed
//! `webrtc_offer` message for the first configured avatar) and `.json` files
//! holding one `webrtc_offer` message as the daemon received it (what
//! `--capture-offers` writes). Any other `.json`, such as the metadata next to
//! each fixture, is not an offer and is skipped.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::answer_check::{check_answer, AnswerCheck};
use crate::{ConnId, Engine, EngineConfig, EngineError, Output, SessionId};

/// An offer to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayInput {
    /// A raw SDP offer.
    Sdp(String),
    /// A complete `webrtc_offer` message, replayed byte for byte.
    Message(String),
}

/// What a file holds, as far as replaying goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// An offer to replay.
    Offer(ReplayInput),
    /// Not an offer (fixture metadata, another extension): nothing to replay.
    Skipped(String),
    /// Meant as an offer but unusable (not UTF-8, not JSON).
    Unusable(String),
}

impl FileKind {
    /// Decides from the file name's extension and the bytes what a file is.
    pub fn classify(file_name: &str, bytes: &[u8]) -> FileKind {
        let ext = file_name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase());
        let text = || {
            // WebSocket text frames are UTF-8, so the daemon never sees anything else.
            std::str::from_utf8(bytes)
                .map(str::to_string)
                .map_err(|e| FileKind::Unusable(format!("not UTF-8: {e}")))
        };
        match ext.as_deref() {
            Some("sdp") => match text() {
                Ok(t) => FileKind::Offer(ReplayInput::Sdp(t)),
                Err(e) => e,
            },
            Some("json") => {
                let t = match text() {
                    Ok(t) => t,
                    Err(e) => return e,
                };
                match serde_json::from_str::<Value>(&t) {
                    Ok(v) if v.get("type").and_then(Value::as_str) == Some("webrtc_offer") => {
                        FileKind::Offer(ReplayInput::Message(t))
                    }
                    Ok(_) => {
                        FileKind::Skipped("not a webrtc_offer message (fixture metadata?)".into())
                    }
                    Err(e) => FileKind::Unusable(format!("not JSON: {e}")),
                }
            }
            _ => FileKind::Skipped("neither .sdp nor .json".into()),
        }
    }
}

/// The daemon's reply to one offer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayOutcome {
    /// A `webrtc_answer`, with the checks of its SDP.
    Answered {
        /// The answer SDP.
        sdp: String,
        /// Its facts and broken invariants.
        check: AnswerCheck,
    },
    /// An `error` reply.
    Refused {
        /// The error code.
        code: String,
        /// The message for the user.
        message: String,
    },
    /// The engine sent nothing back.
    NoReply,
}

/// One replayed offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// What the daemon would have replied.
    pub outcome: ReplayOutcome,
    /// Time from handing the message to the engine to having drained its output.
    pub engine_time: Duration,
}

/// An engine that replays offers one after another, each on its own connection.
pub struct Replayer {
    engine: Engine,
    public: Vec<SocketAddr>,
    avatar: String,
    next_conn: u64,
    clock: fn() -> Instant,
}

impl Replayer {
    /// Builds the engine once (its DTLS certificate is shared by every replay, as in the daemon).
    ///
    /// `clock` is the driver's time source (`Instant::now` in the daemon): the
    /// engine crate reads no clock of its own.
    pub fn new(config: EngineConfig, clock: fn() -> Instant) -> Result<Self, EngineError> {
        let avatar = config
            .avatars
            .first()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| "test-pattern".into());
        let engine = Engine::new(config, clock())?;
        let sockets = engine.sockets();
        let udp = sockets.specs().iter().map(|s| s.public);
        let public = udp.chain(sockets.ice_tcp().map(|(_, a)| a)).collect();
        Ok(Replayer {
            engine,
            public,
            avatar,
            next_conn: 1,
            clock,
        })
    }

    /// Replays one offer; the connection and any session are closed afterwards.
    pub fn replay(&mut self, input: &ReplayInput) -> Replay {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let fresh_id = format!("replay-{}", conn.0);
        let fresh = || SessionId::parse(&fresh_id).expect("replay-N is a valid session id");
        let (text, offer_sdp, url_id) = match input {
            ReplayInput::Sdp(sdp) => {
                let text = json!({
                    "type": "webrtc_offer", "session_id": fresh_id, "user_id": "replay",
                    "avatar_id": self.avatar, "sdp": sdp,
                })
                .to_string();
                (text, Some(sdp.clone()), fresh())
            }
            ReplayInput::Message(text) => {
                let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                let sdp = v.get("sdp").and_then(Value::as_str).map(str::to_string);
                // The daemon only upgrades URLs with a valid id, and refuses a
                // message whose id differs; a captured message had both equal.
                let url_id = v
                    .get("session_id")
                    .and_then(Value::as_str)
                    .and_then(|id| SessionId::parse(id).ok())
                    .unwrap_or_else(fresh);
                (text.clone(), sdp, url_id)
            }
        };

        let now = (self.clock)();
        self.engine.open_connection(conn, url_id);
        self.engine.handle_signal(now, conn, &text);
        let reply = self.drain(conn);
        let engine_time = (self.clock)().saturating_duration_since(now);
        self.engine.close_connection(now, conn);
        let _ = self.drain(conn);

        let outcome = match reply {
            None => ReplayOutcome::NoReply,
            Some(reply) => self.outcome(&reply, offer_sdp.as_deref()),
        };
        Replay {
            outcome,
            engine_time,
        }
    }

    fn drain(&mut self, conn: ConnId) -> Option<String> {
        let mut reply = None;
        loop {
            match self.engine.poll_output() {
                Output::Timeout(_) => return reply,
                Output::Signal { conn: c, text } if c == conn && reply.is_none() => {
                    reply = Some(text)
                }
                _ => {}
            }
        }
    }

    fn outcome(&self, reply: &str, offer_sdp: Option<&str>) -> ReplayOutcome {
        let v: Value = serde_json::from_str(reply).unwrap_or(Value::Null);
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        match v.get("type").and_then(Value::as_str) {
            Some("webrtc_answer") => {
                let sdp = field("sdp");
                let check = check_answer(offer_sdp.unwrap_or(""), &sdp, &self.public);
                ReplayOutcome::Answered { sdp, check }
            }
            _ => ReplayOutcome::Refused {
                code: field("code"),
                message: field("message"),
            },
        }
    }
}

impl Replay {
    /// The report as one JSON object (what `--json` prints and `--expect` compares).
    pub fn to_json(&self, file: &str) -> Value {
        let ms = (self.engine_time.as_secs_f64() * 1e6).round() / 1e3;
        match &self.outcome {
            ReplayOutcome::Answered { check, .. } => {
                let f = &check.facts;
                json!({
                    "file": file, "outcome": "answered",
                    "codec": f.codec, "pt": f.pt, "profile_level_id": f.profile_level_id,
                    "packetization_mode": f.packetization_mode, "rtx": f.rtx,
                    "setup": f.setup, "video_mid": f.video_mid,
                    "audio_mid": f.audio_mid, "opus_pt": f.opus_pt,
                    "rejected_mids": f.rejected_mids, "bundle": f.bundle,
                    "candidates": f.candidates.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                    "violations": check.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                    "engine_ms": ms,
                })
            }
            ReplayOutcome::Refused { code, message } => json!({
                "file": file, "outcome": "error", "code": code, "message": message,
                "engine_ms": ms,
            }),
            ReplayOutcome::NoReply => json!({
                "file": file, "outcome": "no_reply", "engine_ms": ms,
            }),
        }
    }

    /// Broken invariants of the answer, if any.
    pub fn violations(&self) -> Vec<String> {
        match &self.outcome {
            ReplayOutcome::Answered { check, .. } => {
                check.violations.iter().map(|v| v.to_string()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The report as one human line: `file: answered H264 pt=102 ... in 0.42 ms`.
    pub fn line(&self, file: &str) -> String {
        let ms = self.engine_time.as_secs_f64() * 1e3;
        let what = match &self.outcome {
            ReplayOutcome::Answered { check, .. } => {
                let f = &check.facts;
                let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                let cands: Vec<String> = f.candidates.iter().map(|c| c.to_string()).collect();
                let mut s = format!(
                    "answered {} pt={} profile={} rtx={} setup={} mid={} rejected={} cands={}",
                    opt(f.codec.clone()),
                    opt(f.pt.map(|p| p.to_string())),
                    opt(f.profile_level_id.clone()),
                    opt(f.rtx.map(|p| p.to_string())),
                    opt(f.setup.clone()),
                    opt(f.video_mid.clone()),
                    if f.rejected_mids.is_empty() {
                        "-".to_string()
                    } else {
                        f.rejected_mids.join(",")
                    },
                    cands.join(","),
                );
                if let (Some(mid), Some(pt)) = (&f.audio_mid, f.opus_pt) {
                    s.push_str(&format!(" audio={mid}:opus/{pt}"));
                }
                for v in &check.violations {
                    s.push_str(&format!(" VIOLATION {v};"));
                }
                s
            }
            ReplayOutcome::Refused { code, message } => format!("error {code}: {message}"),
            ReplayOutcome::NoReply => "no reply".to_string(),
        };
        format!("{file}: {what} in {ms:.2} ms")
    }
}

/// Keys an expectation may name; each compares equal to the same key of [`Replay::to_json`],
/// except `message`, which the refusal's message must contain.
pub const EXPECTATION_KEYS: &[&str] = &[
    "outcome",
    "code",
    "message",
    "codec",
    "pt",
    "profile_level_id",
    "packetization_mode",
    "rtx",
    "setup",
    "video_mid",
    "audio_mid",
    "opus_pt",
    "rejected_mids",
    "bundle",
    "candidates",
];

/// Recorded outcomes, by file name: `{"offer.sdp": {"outcome": "answered", "pt": 102, ...}}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expectations {
    entries: BTreeMap<String, Map<String, Value>>,
}

/// Why an expectations file is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectationsError(String);

impl fmt::Display for ExpectationsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExpectationsError {}

impl Expectations {
    /// Parses an expectations file; unknown keys are refused so a typo cannot pass silently.
    pub fn parse(text: &str) -> Result<Self, ExpectationsError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| ExpectationsError(format!("not JSON: {e}")))?;
        let Value::Object(top) = v else {
            return Err(ExpectationsError(
                "must be an object of file name -> expected outcome".into(),
            ));
        };
        let mut entries = BTreeMap::new();
        for (file, entry) in top {
            let Value::Object(entry) = entry else {
                return Err(ExpectationsError(format!("{file}: must be an object")));
            };
            if let Some(k) = entry
                .keys()
                .find(|k| !EXPECTATION_KEYS.contains(&k.as_str()))
            {
                return Err(ExpectationsError(format!(
                    "{file}: unknown key '{k}'; known: {}",
                    EXPECTATION_KEYS.join(", ")
                )));
            }
            if !entry.contains_key("outcome") {
                return Err(ExpectationsError(format!("{file}: has no 'outcome'")));
            }
            entries.insert(file, entry);
        }
        Ok(Expectations { entries })
    }

    /// The file names with a recorded outcome.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Differences between `replay` of `file` and its recorded outcome, one line each.
    pub fn compare(&self, file: &str, replay: &Replay) -> Vec<String> {
        let Some(expected) = self.entries.get(file) else {
            return vec!["no expected outcome is recorded for this file".into()];
        };
        let actual = replay.to_json(file);
        let mut diffs = Vec::new();
        for (key, want) in expected {
            let got = actual.get(key).unwrap_or(&Value::Null);
            let same = match (key.as_str(), want, got) {
                ("message", Value::String(w), Value::String(g)) => g.contains(w.as_str()),
                _ => want == got,
            };
            if !same {
                diffs.push(format!("{key}: expected {want}, got {got}"));
            }
        }
        diffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_files_are_offers_and_metadata_json_is_skipped() {
        assert_eq!(
            FileKind::classify("a.sdp", b"v=0\r\n"),
            FileKind::Offer(ReplayInput::Sdp("v=0\r\n".into()))
        );
        let msg = r#"{"type":"webrtc_offer","session_id":"s","sdp":"v=0"}"#;
        assert_eq!(
            FileKind::classify("c.JSON", msg.as_bytes()),
            FileKind::Offer(ReplayInput::Message(msg.into()))
        );
        let meta = br#"{"source":"Chromium","expected":"answer: H.264 sendonly video"}"#;
        assert!(matches!(
            FileKind::classify("m.json", meta),
            FileKind::Skipped(_)
        ));
        assert!(matches!(
            FileKind::classify("README.md", b"# hi"),
            FileKind::Skipped(_)
        ));
        assert!(matches!(
            FileKind::classify("x.json", b"{"),
            FileKind::Unusable(_)
        ));
        assert!(matches!(
            FileKind::classify("x.sdp", &[0xff, 0xfe]),
            FileKind::Unusable(_)
        ));
    }

    fn refused(code: &str, message: &str) -> Replay {
        Replay {
            outcome: ReplayOutcome::Refused {
                code: code.into(),
                message: message.into(),
            },
            engine_time: Duration::from_micros(420),
        }
    }

    #[test]
    fn expectations_report_each_difference() {
        let e = Expectations::parse(
            r#"{"a.sdp": {"outcome": "error", "code": "no_h264", "message": "H.264"}}"#,
        )
        .unwrap();
        assert_eq!(e.files().collect::<Vec<_>>(), ["a.sdp"]);
        assert!(e
            .compare("a.sdp", &refused("no_h264", "no H.264 here"))
            .is_empty());
        assert_eq!(
            e.compare("a.sdp", &refused("no_video", "nothing")),
            [
                r#"code: expected "no_h264", got "no_video""#,
                r#"message: expected "H.264", got "nothing""#
            ]
        );
        assert_eq!(e.compare("b.sdp", &refused("x", "y")).len(), 1);
    }

    #[test]
    fn expectation_typos_are_refused() {
        let e = Expectations::parse(r#"{"a.sdp": {"outcome": "error", "cod": "x"}}"#);
        assert!(e.unwrap_err().to_string().contains("unknown key 'cod'"));
        assert!(Expectations::parse(r#"{"a.sdp": {"code": "x"}}"#).is_err());
        assert!(Expectations::parse("[]").is_err());
    }

    #[test]
    fn a_refusal_prints_code_message_and_time() {
        assert_eq!(
            refused("no_h264", "no H.264").line("f.sdp"),
            "f.sdp: error no_h264: no H.264 in 0.42 ms"
        );
        let j = refused("no_h264", "m").to_json("f.sdp");
        assert_eq!(j["outcome"], "error");
        assert_eq!(j["engine_ms"], 0.42);
    }
}
