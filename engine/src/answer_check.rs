//! The invariants every SDP answer of the engine must hold, checked against its offer.
//!
//! `portcast replay` reports them for each answered offer and the fixture and
//! mutation tests assert them. The checks read the SDP text independently of
//! the code that wrote it (and of str0m, except for the last rule, which asks
//! str0m to parse the answer again), so a rewrite that goes wrong shows here.

use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;
use str0m::change::SdpAnswer;

use crate::sdp_text::{MediaText, SdpText};

mod fields;
use fields::{complete_fingerprint, host_candidate, Format, Formats};

/// What an answer says, as far as a viewer's interoperability goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnswerFacts {
    /// The answered video codec (`H264` or `VP8`, as the SDP spells it).
    pub codec: Option<String>,
    /// Payload type of the answered video format.
    pub pt: Option<u8>,
    /// Its `profile-level-id`, lowercase hex as in the SDP (`42e01f`).
    pub profile_level_id: Option<String>,
    /// Its `packetization-mode`.
    pub packetization_mode: Option<u8>,
    /// The RTX payload type paired with it.
    pub rtx: Option<u8>,
    /// `a=setup` of the accepted m-line (`active` or `passive`).
    pub setup: Option<String>,
    /// Mid of the accepted video m-line.
    pub video_mid: Option<String>,
    /// Mid of the accepted audio m-line, when the avatar speaks and the offer has Opus.
    pub audio_mid: Option<String>,
    /// Payload type of the answered Opus format.
    pub opus_pt: Option<u8>,
    /// Mids of the m-lines answered with port 0, in order.
    pub rejected_mids: Vec<String>,
    /// The mids of the answer's BUNDLE group, if it has one.
    pub bundle: Option<Vec<String>>,
    /// Addresses of the announced candidates.
    pub candidates: Vec<SocketAddr>,
}

/// Which invariant an answer broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rule {
    /// The session carries `a=ice-lite`.
    IceLite,
    /// Candidates are host/udp at a configured public address and port, on the accepted m-line.
    Candidates,
    /// The accepted m-line has a complete DTLS fingerprint and ICE credentials.
    Transport,
    /// `a=setup` is what the offer's setup allows (RFC 8842).
    Setup,
    /// Same m-lines as the offer: count, order, media types and mids.
    Mids,
    /// The BUNDLE group lists exactly the accepted mids, if the offer bundled them.
    Bundle,
    /// One H.264 payload type from the offer, its fmtp unchanged, plus only its RTX.
    Codec,
    /// Exactly one video m-line is accepted, and at most one audio m-line beside
    /// it, each `a=sendonly` where the offer lets the viewer receive it.
    Direction,
    /// An accepted audio m-line: one Opus payload type from the offer, bundled
    /// with the video, in the video's msid stream (so the browser syncs them).
    Audio,
    /// Every other m-line is rejected: port 0, no candidate, no direction but inactive.
    Rejected,
    /// Each answered header extension was offered on that m-line with the same id (RFC 8285).
    Extensions,
    /// An accepted m-line carries no `a=rtcp-mux`, `a=rtcp-rsize` or `a=rtcp-fb` that its
    /// offered m-line lacks (RFC 5761, RFC 5506, RFC 4585: an answer may only accept these).
    NotOffered,
    /// str0m parses the answer again.
    Parses,
}

/// One broken invariant, with what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The invariant.
    pub rule: Rule,
    /// What the answer says instead.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = serde_json::to_value(self.rule)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        write!(f, "{rule}: {}", self.detail)
    }
}

/// The facts of an answer and every invariant it breaks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerCheck {
    /// What the answer says.
    pub facts: AnswerFacts,
    /// Broken invariants; empty for a good answer.
    pub violations: Vec<Violation>,
}

/// Checks `answer` against `offer`; `public` lists the addresses candidates may name.
pub fn check_answer(offer: &str, answer: &str, public: &[SocketAddr]) -> AnswerCheck {
    let mut c = Checker {
        offer: SdpText::parse(offer),
        answer: SdpText::parse(answer),
        out: AnswerCheck::default(),
    };
    c.ice_lite();
    c.mids();
    c.candidates(public);
    if let Some((i, audio)) = c.accepted() {
        c.transport(i);
        c.setup(i);
        c.codec(i);
        c.bundle(i, audio);
        c.extensions(i);
        c.not_offered(i);
        if let Some(j) = audio {
            c.audio(i, j);
            c.extensions(j);
            c.not_offered(j);
        }
    }
    c.rejected();
    if let Err(e) = SdpAnswer::from_sdp_string(answer) {
        c.violate(Rule::Parses, format!("str0m: {e}"));
    }
    c.out
}

struct Checker<'a> {
    offer: SdpText<'a>,
    answer: SdpText<'a>,
    out: AnswerCheck,
}

impl<'a> Checker<'a> {
    fn violate(&mut self, rule: Rule, detail: String) {
        self.out.violations.push(Violation { rule, detail });
    }

    fn extensions(&mut self, i: usize) {
        fn extmaps<'s>(m: Option<&MediaText<'s>>) -> Vec<(&'s str, &'s str)> {
            m.map(|m| {
                m.attrs()
                    .filter(|(n, _)| *n == "extmap")
                    .filter_map(|(_, v)| {
                        let mut words = v.split_whitespace();
                        // The id may carry a direction ("5/sendonly"): compare the number.
                        let id = words.next()?.split('/').next()?;
                        Some((id, words.next()?))
                    })
                    .collect()
            })
            .unwrap_or_default()
        }
        let offered = extmaps(self.offer.media.get(i));
        for (id, uri) in extmaps(self.answer.media.get(i)) {
            if !offered.contains(&(id, uri)) {
                self.violate(
                    Rule::Extensions,
                    format!("a=extmap:{id} {uri} was not offered with that id"),
                );
            }
        }
    }

    fn not_offered(&mut self, i: usize) {
        let (Some(a), Some(o)) = (self.answer.media.get(i), self.offer.media.get(i)) else {
            return;
        };
        let offered: Vec<(&str, &str)> = o.attrs().collect();
        let mut problems = Vec::new();
        for (name, value) in a.attrs() {
            let ok = match name {
                "rtcp-mux" | "rtcp-rsize" => offered.iter().any(|(n, _)| *n == name),
                // "102 nack pli" is allowed by the same line or by the wildcard "* nack pli".
                "rtcp-fb" => {
                    let (_, fb) = value.split_once(' ').unwrap_or((value, ""));
                    offered.iter().any(|(n, v)| {
                        *n == "rtcp-fb" && (*v == value || v.strip_prefix("* ") == Some(fb))
                    })
                }
                _ => true,
            };
            if !ok {
                problems.push(format!(
                    "m-line {}: a={name}{}{value} was not offered",
                    i + 1,
                    if value.is_empty() { "" } else { ":" }
                ));
            }
        }
        for p in problems {
            self.violate(Rule::NotOffered, p);
        }
    }

    fn ice_lite(&mut self) {
        if !self.answer.session_attrs().any(|(n, _)| n == "ice-lite") {
            self.violate(Rule::IceLite, "no session-level a=ice-lite".into());
        }
    }

    fn mids(&mut self) {
        let (o, a) = (self.offer.media.len(), self.answer.media.len());
        if o != a {
            self.violate(
                Rule::Mids,
                format!("the offer has {o} m-lines, the answer {a}"),
            );
        }
        let pairs: Vec<(String, String, Option<&str>, Option<&str>)> = self
            .offer
            .media
            .iter()
            .zip(&self.answer.media)
            .map(|(o, a)| (o.kind().into(), a.kind().into(), o.mid(), a.mid()))
            .collect();
        for (i, (okind, akind, omid, amid)) in pairs.into_iter().enumerate() {
            if okind != akind {
                self.violate(
                    Rule::Mids,
                    format!("m-line {}: offered {okind:?}, answered {akind:?}", i + 1),
                );
            }
            if omid != amid {
                self.violate(
                    Rule::Mids,
                    format!("m-line {}: offered mid {omid:?}, answered {amid:?}", i + 1),
                );
            }
        }
    }

    fn candidates(&mut self, public: &[SocketAddr]) {
        let lines: Vec<(Option<usize>, &str)> = self
            .answer
            .session_attrs()
            .map(|a| (None, a))
            .chain(
                self.answer
                    .media
                    .iter()
                    .enumerate()
                    .flat_map(|(i, m)| m.attrs().map(move |a| (Some(i), a))),
            )
            .filter(|(_, (n, _))| *n == "candidate")
            .map(|(i, (_, v))| (i, v))
            .collect();
        for (section, value) in lines {
            match host_candidate(value) {
                Some(addr) if public.contains(&addr) => self.out.facts.candidates.push(addr),
                Some(addr) => self.violate(
                    Rule::Candidates,
                    format!("candidate at {addr}, which is no configured public address"),
                ),
                None => self.violate(
                    Rule::Candidates,
                    format!("a=candidate:{value} is neither a udp host nor a passive tcp host candidate"),
                ),
            }
            let on_accepted = section.is_some_and(|i| {
                self.answer
                    .media
                    .get(i)
                    .is_some_and(|m| m.port() != Some(0))
            });
            if !on_accepted {
                self.violate(
                    Rule::Candidates,
                    format!("a=candidate:{value} is not on the accepted m-line"),
                );
            }
        }
        if self.out.facts.candidates.is_empty() {
            self.violate(Rule::Candidates, "no candidate announced".into());
        }
    }

    /// The accepted video m-line and the accepted audio m-line, if the
    /// answer accepts exactly one video and at most one audio m-line.
    fn accepted(&mut self) -> Option<(usize, Option<usize>)> {
        let accepted: Vec<(usize, &MediaText<'a>)> = self
            .answer
            .media
            .iter()
            .enumerate()
            .filter(|(_, m)| m.port() != Some(0))
            .collect();
        let of = |kind: &str| -> Vec<usize> {
            accepted
                .iter()
                .filter(|(_, m)| m.kind() == kind)
                .map(|(i, _)| *i)
                .collect()
        };
        let (videos, audios) = (of("video"), of("audio"));
        let (&[i], [] | [_]) = (&videos[..], &audios[..]) else {
            let n = accepted.len();
            self.violate(
                Rule::Direction,
                format!(
                    "{n} m-lines accepted ({} video, {} audio); exactly one video and at most one audio may be",
                    videos.len(),
                    audios.len()
                ),
            );
            return None;
        };
        if videos.len() + audios.len() != accepted.len() {
            self.violate(
                Rule::Direction,
                "an m-line other than audio or video is accepted".into(),
            );
            return None;
        }
        let audio = audios.first().copied();
        for (j, kind) in std::iter::once((i, "video")).chain(audio.map(|j| (j, "audio"))) {
            let dir = self.answer.media.get(j).and_then(|m| m.direction());
            if dir != Some("sendonly") {
                self.violate(
                    Rule::Direction,
                    format!("the {kind} is answered {dir:?}, not sendonly"),
                );
            }
            // Port 0 with a=bundle-only is offered on the bundle's transport (RFC 8843).
            let offered = self.offer.media.get(j).map(|o| {
                let bundle_only = o.attrs().any(|(n, _)| n == "bundle-only");
                (o.port().filter(|p| *p != 0 || !bundle_only), o.direction())
            });
            match offered {
                Some((port, dir))
                    if port != Some(0) && matches!(dir, None | Some("recvonly" | "sendrecv")) => {}
                other => self.violate(
                    Rule::Direction,
                    format!(
                        "the offer's m-line {} does not receive {kind}: {other:?}",
                        j + 1
                    ),
                ),
            }
        }
        let mids: Vec<Option<String>> = std::iter::once(Some(i))
            .chain([audio])
            .map(|j| {
                let m = self.answer.media.get(j?)?;
                m.mid().map(str::to_string)
            })
            .collect();
        self.out.facts.video_mid = mids[0].clone();
        self.out.facts.audio_mid = mids[1].clone();
        Some((i, audio))
    }

    /// The accepted audio `j`: Opus from the offer, bundled and in one msid stream with video `i`.
    fn audio(&mut self, i: usize, j: usize) {
        let (Some(a), Some(o)) = (self.answer.media.get(j), self.offer.media.get(j)) else {
            return;
        };
        let (answered, offered) = (Formats::of(a), Formats::of(o));
        let mut problems = Vec::new();
        match &answered.list[..] {
            [f] if f.is("opus") && f.clock == "48000/2" => {
                self.out.facts.opus_pt = Some(f.pt);
                if !offered
                    .get(f.pt)
                    .is_some_and(|of| of.is("opus") && of.clock == "48000/2")
                {
                    problems.push(format!("pt {} is not an Opus format of the offer", f.pt));
                }
            }
            list => problems.push(format!(
                "the audio answers {:?}, not one opus/48000/2 format",
                list.iter().map(|f| f.pt).collect::<Vec<_>>()
            )),
        }
        let stream = |m: Option<&MediaText<'a>>| {
            m.and_then(|m| m.attr("msid"))
                .and_then(|v| v.split(' ').next())
        };
        let (video_stream, audio_stream) = (stream(self.answer.media.get(i)), stream(Some(a)));
        if video_stream.is_none() || video_stream != audio_stream {
            problems.push(format!(
                "msid streams: video {video_stream:?}, audio {audio_stream:?}; one stream is what the browser syncs"
            ));
        }
        let group = self.answer.bundle_mids().unwrap_or_default();
        let bundled = |m: Option<&MediaText<'a>>| {
            m.and_then(|m| m.mid())
                .is_some_and(|mid| group.contains(&mid))
        };
        if !bundled(self.answer.media.get(i)) || !bundled(Some(a)) {
            problems.push("the audio is not bundled with the video".into());
        }
        for p in problems {
            self.violate(Rule::Audio, p);
        }
    }

    fn transport(&mut self, i: usize) {
        let value = |name: &str| -> Option<&'a str> {
            self.answer
                .media
                .get(i)
                .and_then(|m| m.attr(name))
                .or_else(|| {
                    self.answer
                        .session_attrs()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| v)
                })
        };
        let (ufrag, pwd, fp) = (value("ice-ufrag"), value("ice-pwd"), value("fingerprint"));
        // RFC 8839 section 5.4: ufrag 4-256 ice-chars, pwd 22-256.
        if !ufrag.is_some_and(|u| (4..=256).contains(&u.len())) {
            self.violate(Rule::Transport, format!("a=ice-ufrag is {ufrag:?}"));
        }
        if !pwd.is_some_and(|p| (22..=256).contains(&p.len())) {
            self.violate(Rule::Transport, format!("a=ice-pwd is {pwd:?}"));
        }
        if !fp.is_some_and(complete_fingerprint) {
            self.violate(Rule::Transport, format!("a=fingerprint is {fp:?}"));
        }
    }

    fn setup(&mut self, i: usize) {
        let setup_of = |t: &SdpText<'a>| -> Option<&'a str> {
            t.media.get(i).and_then(|m| m.attr("setup")).or_else(|| {
                t.session_attrs()
                    .find(|(n, _)| *n == "setup")
                    .map(|(_, v)| v)
            })
        };
        let answer = setup_of(&self.answer);
        self.out.facts.setup = answer.map(str::to_string);
        // RFC 4145 section 4: an offer without a=setup means active.
        let offer = setup_of(&self.offer).unwrap_or("active");
        let ok = matches!(
            (offer, answer),
            ("actpass", Some("active" | "passive"))
                | ("active", Some("passive"))
                | ("passive", Some("active"))
        );
        if !ok {
            self.violate(
                Rule::Setup,
                format!("the offer says {offer:?}, the answer {answer:?}"),
            );
        }
    }

    fn codec(&mut self, i: usize) {
        let (Some(a), Some(o)) = (self.answer.media.get(i), self.offer.media.get(i)) else {
            return;
        };
        let (answered, offered) = (Formats::of(a), Formats::of(o));
        let mut problems = Vec::new();
        // One video format: H.264 or VP8 (its RTX aside).
        let video: Vec<&Format> = answered
            .list
            .iter()
            .filter(|f| f.is("H264") || f.is("VP8"))
            .collect();
        let [h] = video[..] else {
            problems.push(format!(
                "{} video payload types (H.264 or VP8) answered",
                video.len()
            ));
            self.report_codec(problems);
            return;
        };
        self.out.facts.pt = Some(h.pt);
        self.out.facts.codec = Some(h.codec.to_uppercase());
        self.out.facts.profile_level_id = h.param("profile-level-id").map(|p| p.to_lowercase());
        self.out.facts.packetization_mode =
            h.param("packetization-mode").and_then(|p| p.parse().ok());
        match offered.get(h.pt) {
            Some(of) if of.is("H264") && h.is("H264") => {
                for key in ["profile-level-id", "packetization-mode"] {
                    let (want, got) = (of.param(key), h.param(key));
                    if want.map(str::to_lowercase) != got.map(str::to_lowercase) {
                        problems.push(format!(
                            "pt {} {key}: offered {want:?}, answered {got:?}",
                            h.pt
                        ));
                    }
                }
            }
            Some(of) if of.is("VP8") && h.is("VP8") => {}
            _ => problems.push(format!(
                "pt {} is not a {} format of the offer",
                h.pt, h.codec
            )),
        }
        for f in answered.list.iter().filter(|f| f.pt != h.pt) {
            let apt = f.param("apt").and_then(|a| a.parse::<u8>().ok());
            let offered_rtx = offered
                .get(f.pt)
                .is_some_and(|of| of.is("rtx") && of.param("apt") == f.param("apt"));
            if f.is("rtx") && apt == Some(h.pt) && offered_rtx {
                self.out.facts.rtx = Some(f.pt);
            } else {
                problems.push(format!(
                    "pt {} ({}) is not the offered rtx of pt {}",
                    f.pt, f.codec, h.pt
                ));
            }
        }
        self.report_codec(problems);
    }

    fn report_codec(&mut self, problems: Vec<String>) {
        for p in problems {
            self.violate(Rule::Codec, p);
        }
    }

    fn bundle(&mut self, i: usize, audio: Option<usize>) {
        let offered = self.offer.bundle_mids().unwrap_or_default();
        let mut accepted = vec![i];
        accepted.extend(audio);
        accepted.sort_unstable();
        let expected: Vec<&str> = accepted
            .iter()
            .filter_map(|j| self.answer.media.get(*j).and_then(|m| m.mid()))
            .filter(|mid| offered.contains(mid))
            .collect();
        let expected = Some(expected).filter(|e| !e.is_empty());
        let got = self.answer.bundle_mids();
        self.out.facts.bundle = got
            .as_ref()
            .map(|g| g.iter().map(|s| s.to_string()).collect());
        if got != expected {
            self.violate(
                Rule::Bundle,
                format!("BUNDLE group is {got:?}, expected {expected:?}"),
            );
        }
    }

    fn rejected(&mut self) {
        let mut problems = Vec::new();
        let accepted = |kind: &str| {
            self.answer
                .media
                .iter()
                .filter(|m| m.port() != Some(0) && m.kind() == kind)
                .count()
        };
        let (videos, audios) = (accepted("video"), accepted("audio"));
        for (i, m) in self.answer.media.iter().enumerate() {
            if m.port() != Some(0) {
                let allowed = match m.kind() {
                    "video" => videos == 1,
                    "audio" => audios == 1 && videos == 1,
                    _ => false,
                };
                if !allowed {
                    problems.push(format!("m-line {} ({}) is not rejected", i + 1, m.kind()));
                }
                continue;
            }
            if let Some(mid) = m.mid() {
                self.out.facts.rejected_mids.push(mid.to_string());
            }
            if m.attr("candidate").is_some() {
                problems.push(format!("rejected m-line {} has candidates", i + 1));
            }
            if let Some(dir) = m.direction().filter(|d| *d != "inactive") {
                problems.push(format!("rejected m-line {} is {dir}", i + 1));
            }
            if m.attr("sctp-port").is_some() {
                problems.push(format!("rejected m-line {} has a=sctp-port", i + 1));
            }
        }
        for p in problems {
            self.violate(Rule::Rejected, p);
        }
    }
}

#[cfg(test)]
mod tests;
