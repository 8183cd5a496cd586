//! The answer holds one accepted m-line, the video the engine streams; every
//! other m-line of the offer is rejected here, not by str0m.
//!
//! str0m 0.25 answers every m-line it is given. An audio m-line it has no codec
//! for comes back with port 0 but still `a=sendonly`, ICE/DTLS attributes and
//! payload type 0 without an `a=rtpmap`; an `m=application` (data channel) is
//! *accepted*, and str0m then starts SCTP over the DTLS connection. It has no
//! setting that refuses data channels. So str0m only ever sees the chosen
//! video m-line: [`AnswerPlan::str0m_offer`] cuts the offer down to it (and its
//! BUNDLE group down to its mid, and its formats down to the chosen H.264
//! payload type and its RTX, so str0m cannot match the engine's codec to
//! another H.264 payload type of the offer), and [`AnswerPlan::complete`] widens str0m's
//! one-section answer back to the offer's m-lines, in the offer's order. Each
//! other m-line becomes a rejected section as RFC 3264 section 6 and RFC 8843
//! section 7.3.3 describe it: port 0, its mid kept, left out of the BUNDLE
//! group, `a=inactive` for RTP. JSEP needs nothing more, and libwebrtc skips
//! ICE and DTLS checks for rejected contents (`VerifyIceUfragPwdPresent`),
//! but aiortc 1.16 validates every m-line of an answer, port 0 or not: ICE
//! credentials, `a=setup` active/passive, for RTP `a=rtcp-mux` and a codec
//! in common. So a rejected section repeats the accepted one's ICE
//! credentials, fingerprint and setup (no candidate) and the offer's first
//! format with its `a=rtpmap`: outside the BUNDLE group and with port 0,
//! nothing uses them.

use crate::offer::{OpusChoice, VideoChoice};
use crate::sdp_text::{MediaText, SdpText};
use crate::signaling::SignalError;

/// How one offer is answered: which m-lines str0m negotiates, which are rejected.
#[derive(Debug)]
pub(crate) struct AnswerPlan<'a> {
    offer: SdpText<'a>,
    /// The accepted m-lines in the offer's order (the video, and the audio when
    /// the avatar speaks), each with the only formats str0m sees: the chosen
    /// H.264 payload type and its RTX, or the Opus payload type.
    chosen: Vec<(usize, Vec<u8>)>,
    /// The accepted mids the offer bundles (the answer's BUNDLE group is then exactly them).
    bundled: Vec<&'a str>,
}

impl<'a> AnswerPlan<'a> {
    /// Plans the answer of `offer_sdp`, accepting only the chosen video m-line and format.
    #[cfg(test)]
    pub fn new(offer_sdp: &'a str, choice: &VideoChoice) -> Result<Self, SignalError> {
        Self::with_audio(offer_sdp, choice, None)
    }

    /// Plans the answer of `offer_sdp`: the chosen video, and `audio` when it
    /// is bundled with the video (one transport carries both); every other
    /// m-line is rejected.
    ///
    /// str0m no longer sees the other m-lines, so the cross-section rules it
    /// would have enforced (one mid per m-line, mids unique, BUNDLE naming
    /// existing mids) are checked here.
    pub fn with_audio(
        offer_sdp: &'a str,
        choice: &VideoChoice,
        audio: Option<&OpusChoice>,
    ) -> Result<Self, SignalError> {
        let offer = SdpText::parse(offer_sdp);
        let Some(section) = offer.media.get(choice.mline) else {
            return Err(SignalError::InvalidSdp(format!(
                "m-line {} does not exist",
                choice.mline + 1
            )));
        };
        let mut mids: Vec<&str> = Vec::with_capacity(offer.media.len());
        for (i, m) in offer.media.iter().enumerate() {
            let mut own = m.attrs().filter(|(n, _)| *n == "mid").map(|(_, v)| v);
            if let Some(mid) = own.next() {
                if own.next().is_some() {
                    return Err(SignalError::InvalidSdp(format!(
                        "m-line {} has more than one a=mid",
                        i + 1
                    )));
                }
                if mids.contains(&mid) {
                    return Err(SignalError::InvalidSdp(format!(
                        "mid {:?} is used by more than one m-line",
                        short(mid)
                    )));
                }
                mids.push(mid);
            }
        }
        let bundle = offer.bundle_mids().unwrap_or_default();
        if let Some(missing) = bundle.iter().find(|b| !mids.contains(b)) {
            return Err(SignalError::InvalidSdp(format!(
                "a=group:BUNDLE names mid {:?}, which no m-line has",
                short(missing)
            )));
        }
        let bundled_mid = |m: &MediaText<'a>| m.mid().filter(|mid| bundle.contains(mid));
        let video_formats = std::iter::once(choice.pt).chain(choice.rtx).collect();
        let mut chosen = vec![(choice.mline, video_formats)];
        // Audio rides the video's transport: only an audio m-line bundled with it.
        if let Some(a) = audio {
            let bundled_audio = offer.media.get(a.mline).and_then(bundled_mid);
            if bundled_mid(section).is_some() && bundled_audio.is_some() && a.mline != choice.mline
            {
                chosen.push((a.mline, vec![a.pt]));
            }
        }
        chosen.sort_by_key(|(i, _)| *i);
        let bundled = chosen
            .iter()
            .filter_map(|(i, _)| offer.media.get(*i).and_then(bundled_mid))
            .collect();
        Ok(AnswerPlan {
            offer,
            chosen,
            bundled,
        })
    }

    /// Whether the answer accepts an audio m-line.
    pub fn has_audio(&self) -> bool {
        self.chosen.iter().any(|(i, _)| {
            self.offer
                .media
                .get(*i)
                .is_some_and(|m| m.kind() == "audio")
        })
    }

    /// The offer str0m answers: the session part and the chosen m-lines only.
    pub fn str0m_offer(&self) -> String {
        let mut out = String::new();
        // Only the chosen m-lines remain, so the group is their mids. str0m
        // 0.25 refuses an offer without a=group ("Session attribute a=group
        // missing"), so it gets one even when the offer had none; the answer
        // then carries none (`complete`), as RFC 8843 asks.
        let mids: Vec<&str> = self
            .chosen
            .iter()
            .filter_map(|(i, _)| self.offer.media.get(*i).and_then(|m| m.mid()))
            .collect();
        let mut group = Some(mids.as_slice()).filter(|m| !m.is_empty());
        let mut seen_time = false;
        for line in &self.offer.session {
            if line.starts_with("a=group:") || is_direction(line) {
                continue;
            }
            // RFC 4566 allows several time descriptions (t= with r= repeats)
            // and z= adjustments; they mean nothing to WebRTC (JSEP: one
            // "t=0 0") and str0m 0.25 cannot parse them, so the first t= stays.
            if line.starts_with("r=") || line.starts_with("z=") {
                continue;
            }
            if line.starts_with("t=") {
                if seen_time {
                    continue;
                }
                seen_time = true;
            }
            push_line(&mut out, line);
            if line.starts_with("t=") {
                push_bundle(&mut out, group.take());
            }
        }
        push_bundle(&mut out, group);
        for (i, formats) in &self.chosen {
            if let Some(m) = self.offer.media.get(*i) {
                push_chosen(&mut out, m, formats);
            }
        }
        out
    }

    /// The answer sent to the viewer, built from str0m's answer to [`Self::str0m_offer`].
    pub fn complete(&self, str0m_answer: &str) -> Result<String, SignalError> {
        let answer = SdpText::parse(str0m_answer);
        if answer.media.len() != self.chosen.len() {
            return Err(SignalError::OfferRejected(format!(
                "the WebRTC stack answered {} m-lines instead of {}",
                answer.media.len(),
                self.chosen.len()
            )));
        }
        // str0m gives each sending track a random msid stream; the browser
        // synchronises (lip sync) the tracks of one stream, so every accepted
        // section takes the first one's.
        let stream = answer
            .media
            .first()
            .and_then(|m| m.attrs().find(|(n, _)| *n == "msid"))
            .and_then(|(_, v)| v.split(' ').next());
        let mut out = String::with_capacity(str0m_answer.len() + 128 * self.offer.media.len());
        let mut group = Some(self.bundled.as_slice()).filter(|m| !m.is_empty());
        for line in &answer.session {
            if line.starts_with("a=group:") {
                continue;
            }
            match (line.strip_prefix("a=msid-semantic:"), stream) {
                (Some(_), Some(stream)) => {
                    push_line(&mut out, &format!("a=msid-semantic: WMS {stream}"));
                }
                _ => push_line(&mut out, line),
            }
            // a= lines follow t= (RFC 8866 section 5): the group goes first among them.
            if line.starts_with("t=") {
                push_bundle(&mut out, group.take());
            }
        }
        push_bundle(&mut out, group);
        let transport: Vec<&str> = answer
            .media
            .first()
            .map(|m| m.lines.as_slice())
            .unwrap_or_default()
            .iter()
            .chain(&answer.session)
            .copied()
            .filter(|l| TRANSPORT.iter().any(|t| l.starts_with(t)))
            .collect();
        let mut accepted = answer.media.iter();
        for (i, m) in self.offer.media.iter().enumerate() {
            if self.chosen.iter().any(|(c, _)| *c == i) {
                if let Some(a) = accepted.next() {
                    push_section(&mut out, a, m, stream);
                }
            } else {
                push_rejected(&mut out, m, &transport);
            }
        }
        Ok(out)
    }
}

/// A chosen m-line with only its chosen formats and their attributes, as `a=recvonly`,
/// without `a=bundle-only`.
///
/// The engine only sends. Shown a `sendrecv` viewer, str0m would answer
/// `sendrecv` and invite the browser's camera or microphone; shown `recvonly`,
/// it answers `sendonly`, which RFC 3264 section 6.1 allows against either.
/// The offer summary has already refused viewers that do not receive.
fn push_chosen(out: &mut String, m: &MediaText<'_>, formats: &[u8]) {
    let mut mline: Vec<String> = m.mline.split(' ').take(3).map(str::to_string).collect();
    // A bundle-only m-line (port 0, RFC 8843) the engine accepts is offered to str0m
    // like the others; it answers port 9 beside them, as browsers do.
    if mline.get(1).is_some_and(|p| p == "0") {
        mline[1] = "9".into();
    }
    mline.extend(formats.iter().map(u8::to_string));
    push_line(out, &format!("m={}", mline.join(" ")));
    for line in &m.lines {
        if keeps(line, formats) && !is_direction(line) && *line != "a=bundle-only" {
            push_line(out, line);
        }
    }
    push_line(out, "a=recvonly");
}

/// Whether a line of a chosen section survives: format attributes only for kept formats.
fn keeps(line: &str, formats: &[u8]) -> bool {
    let Some(rest) = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
        .iter()
        .find_map(|p| line.strip_prefix(p))
    else {
        return true;
    };
    let pt = rest.split(' ').next().unwrap_or("");
    // `a=rtcp-fb:* nack` applies to every format.
    pt == "*" || pt.parse::<u8>().is_ok_and(|pt| formats.contains(&pt))
}

/// Attributes a rejected section repeats from the accepted one, for strict parsers.
const TRANSPORT: [&str; 4] = ["a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:"];

/// A rejected section: port 0, the offer's media type and protocol, its mid,
/// the accepted section's `transport` lines.
fn push_rejected(out: &mut String, m: &MediaText<'_>, transport: &[&str]) {
    // An RTP section needs a format. aiortc negotiates codecs even for a
    // rejected m-line and fails without a common one, so the offer's first
    // format with a well-formed a=rtpmap is echoed with it; failing that,
    // payload type 0 (PCMU), which is static and needs no a=rtpmap.
    let mapped = m
        .formats()
        .filter(|pt| m.is_rtp() && pt.parse::<u8>().is_ok_and(|pt| pt < 128))
        .find_map(|pt| rtpmap_of(m, pt).map(|map| (pt, map)));
    let (first, rtpmap) = (mapped.map(|(pt, _)| pt), mapped.map(|(_, map)| map));
    let formats = if m.is_rtp() {
        first.unwrap_or("0").to_string()
    } else {
        let f: Vec<&str> = m.formats().collect();
        if f.is_empty() {
            "webrtc-datachannel".to_string()
        } else {
            f.join(" ")
        }
    };
    push_line(out, &format!("m={} 0 {} {formats}", m.kind(), m.proto()));
    push_line(out, "c=IN IP4 0.0.0.0");
    for line in transport {
        push_line(out, line);
    }
    if let Some(mid) = m.mid() {
        push_line(out, &format!("a=mid:{mid}"));
    }
    if m.is_rtp() {
        push_line(out, "a=inactive");
        push_line(out, "a=rtcp-mux");
    }
    if let Some(rtpmap) = rtpmap {
        push_line(out, &format!("a=rtpmap:{rtpmap}"));
    }
}

fn is_direction(line: &str) -> bool {
    matches!(
        line,
        "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
    )
}

/// The `a=rtpmap` value of `pt` in `m`, if it reads `<name>/<clock rate>[/<channels>]`.
fn rtpmap_of<'a>(m: &MediaText<'a>, pt: &str) -> Option<&'a str> {
    let value = m
        .attrs()
        .filter(|(n, _)| *n == "rtpmap")
        .map(|(_, v)| v)
        .find(|v| v.split(' ').next() == Some(pt))?;
    let (_, encoding) = value.split_once(' ')?;
    let mut parts = encoding.split('/');
    let name_ok = parts.next().is_some_and(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let numbers_ok = parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (name_ok && numbers_ok).then_some(value)
}

fn push_bundle(out: &mut String, mids: Option<&[&str]>) {
    if let Some(mids) = mids {
        push_line(out, &format!("a=group:BUNDLE {}", mids.join(" ")));
    }
}

/// An accepted section as str0m wrote it, its `a=msid` moved to `stream`, less
/// the `a=rtcp-fb` and `a=rtcp-rsize` lines `offered` lacks: str0m 0.25 answers its
/// own feedback set (goog-remb, ccm fir, nack...) whatever was offered, and an
/// answer may only accept what the offer proposed (RFC 4585 section 4.2, RFC 5506).
fn push_section(
    out: &mut String,
    m: &MediaText<'_>,
    offered: &MediaText<'_>,
    stream: Option<&str>,
) {
    out.push_str("m=");
    push_line(out, m.mline);
    for line in &m.lines {
        if !was_offered(line, offered) {
            continue;
        }
        match (line.strip_prefix("a=msid:"), stream) {
            (Some(msid), Some(stream)) => {
                let track = msid.split_once(' ').map_or("", |(_, t)| t);
                push_line(out, &format!("a=msid:{stream} {track}"));
            }
            _ => push_line(out, line),
        }
    }
}

/// Whether an answer line is one the offer allowed: `a=rtcp-rsize` only when
/// offered, `a=rtcp-fb:PT TYPE` only when offered for PT or for `*`. Other lines pass.
fn was_offered(line: &str, offered: &MediaText<'_>) -> bool {
    if line == "a=rtcp-rsize" {
        return offered.attrs().any(|(n, _)| n == "rtcp-rsize");
    }
    let Some(value) = line.strip_prefix("a=rtcp-fb:") else {
        return true;
    };
    let fb = value.split_once(' ').map_or("", |(_, fb)| fb);
    offered
        .attrs()
        .any(|(n, v)| n == "rtcp-fb" && (v == value || v.strip_prefix("* ") == Some(fb)))
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push_str("\r\n");
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(sdp: &str) -> VideoChoice {
        crate::offer::OfferSummary::parse(sdp)
            .unwrap()
            .choose_video(true)
            .unwrap()
    }

    /// A choice for hand-written offers that carry no ICE/DTLS attributes.
    fn pick(mline: usize, pt: u8, rtx: Option<u8>) -> VideoChoice {
        VideoChoice {
            mline,
            mid: None,
            codec: crate::media::VideoCodec::H264,
            pt,
            rtx,
            profile_level_id: Some(0x42e01f),
        }
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/../fixtures/offers/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    const STR0M_ANSWER: &str = "v=0\r\no=str0m-0.25.0 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0\r\na=ice-lite\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 0.0.0.0\r\n\
        a=candidate:1 1 udp 2130706175 198.18.0.1 10111 typ host\r\n\
        a=ice-ufrag:uf12\r\na=ice-pwd:pw\r\na=ice-options:trickle\r\n\
        a=fingerprint:sha-256 AB:CD\r\na=setup:passive\r\na=mid:0\r\na=sendonly\r\n";

    #[test]
    fn str0m_sees_only_the_video_of_an_offer_with_audio_and_data() {
        let offer = fixture("chromium156_video_audio_dc_gathered.sdp");
        let plan = AnswerPlan::new(&offer, &choice(&offer)).unwrap();
        let cut = plan.str0m_offer();
        let t = SdpText::parse(&cut);
        let kinds: Vec<&str> = t.media.iter().map(|m| m.kind()).collect();
        assert_eq!(kinds, ["video"]);
        assert_eq!(t.bundle_mids(), Some(vec!["0"]));
        assert!(!cut.contains("sctp") && !cut.contains("opus"), "{cut}");
    }

    #[test]
    fn audio_and_data_are_rejected_in_the_offers_order() {
        let offer = fixture("chromium156_video_audio_dc_gathered.sdp");
        let plan = AnswerPlan::new(&offer, &choice(&offer)).unwrap();
        let answer = plan.complete(STR0M_ANSWER).unwrap();
        let t = SdpText::parse(&answer);
        let lines: Vec<&str> = answer.split("\r\n").collect();
        assert!(
            lines.contains(&"m=audio 0 UDP/TLS/RTP/SAVPF 111"),
            "{answer}"
        );
        assert!(
            lines.contains(&"m=application 0 UDP/DTLS/SCTP webrtc-datachannel"),
            "{answer}"
        );
        let kinds: Vec<&str> = t.media.iter().map(|m| m.kind()).collect();
        assert_eq!(kinds, ["video", "audio", "application"]);
        let mids: Vec<Option<&str>> = t.media.iter().map(|m| m.mid()).collect();
        assert_eq!(mids, [Some("0"), Some("1"), Some("2")]);
        assert_eq!(t.bundle_mids(), Some(vec!["0"]));
        let transport = [
            "c=IN IP4 0.0.0.0",
            "a=ice-ufrag:uf12",
            "a=ice-pwd:pw",
            "a=fingerprint:sha-256 AB:CD",
            "a=setup:passive",
        ];
        let audio = [
            &transport[..],
            &[
                "a=mid:1",
                "a=inactive",
                "a=rtcp-mux",
                "a=rtpmap:111 opus/48000/2",
            ],
        ]
        .concat();
        assert_eq!(t.media[1].lines, audio, "no candidate, no ice-options");
        let data = [&transport[..], &["a=mid:2"]].concat();
        assert_eq!(t.media[2].lines, data, "no a=sctp-port");
        assert!(answer.ends_with("\r\n"));
    }

    #[test]
    fn video_after_audio_keeps_its_position_and_leads_the_bundle() {
        let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96 102 103\r\na=mid:v\r\na=rtpmap:96 VP8/90000\r\n\
            a=rtcp-fb:96 nack\r\na=rtpmap:102 H264/90000\r\na=rtcp-fb:* nack\r\n\
            a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n";
        let plan = AnswerPlan::new(offer, &pick(1, 102, Some(103))).unwrap();
        assert_eq!(
            plan.str0m_offer(),
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE v\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\na=mid:v\r\na=rtpmap:102 H264/90000\r\n\
             a=rtcp-fb:* nack\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=recvonly\r\n",
            "only the chosen format and its rtx reach str0m"
        );
        let answer = plan
            .complete(&STR0M_ANSWER.replace("a=mid:0", "a=mid:v"))
            .unwrap();
        let t = SdpText::parse(&answer);
        // 111 has no a=rtpmap here: the static payload type 0 stands in.
        assert_eq!(t.media[0].mline, "audio 0 UDP/TLS/RTP/SAVPF 0");
        assert_eq!(t.media[1].mid(), Some("v"));
        assert_eq!(t.bundle_mids(), Some(vec!["v"]));
        assert_eq!(t.session[4], "a=group:BUNDLE v", "group right after t=");
    }

    #[test]
    fn str0m_is_shown_a_receive_only_viewer_so_it_answers_sendonly() {
        let offer = fixture("chromium156_video_recvonly_gathered.sdp");
        for dir in ["a=sendrecv\r\n", ""] {
            let o = offer.replace("a=recvonly\r\n", dir);
            let cut = AnswerPlan::new(&o, &choice(&o)).unwrap().str0m_offer();
            let t = SdpText::parse(&cut);
            assert_eq!(t.media[0].direction(), Some("recvonly"), "{dir:?}");
            assert_eq!(cut.matches("a=recvonly").count(), 1);
            assert!(!cut.contains("a=sendrecv"));
        }
    }

    #[test]
    fn an_offer_without_bundle_gets_an_answer_without_bundle() {
        let offer = "v=0\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n";
        let plan = AnswerPlan::new(offer, &pick(0, 102, None)).unwrap();
        assert!(
            plan.str0m_offer().contains("\r\na=group:BUNDLE 0\r\n"),
            "str0m needs one"
        );
        let answer = plan.complete(STR0M_ANSWER).unwrap();
        assert_eq!(SdpText::parse(&answer).bundle_mids(), None);
    }

    #[test]
    fn lf_only_offers_are_answered_with_crlf() {
        let offer = fixture("derived_lf_only_line_endings.sdp");
        let plan = AnswerPlan::new(&offer, &choice(&offer)).unwrap();
        let cut = plan.str0m_offer();
        assert_eq!(cut.matches("\r\n").count(), cut.matches('\n').count());
        let answer = plan.complete(STR0M_ANSWER).unwrap();
        assert_eq!(answer.matches("\r\n").count(), answer.matches('\n').count());
    }

    #[test]
    fn cross_section_defects_are_invalid_sdp() {
        let base = "v=0\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n";
        assert!(AnswerPlan::new(base, &pick(0, 102, None)).is_ok());
        let cases = [
            (base.replace("a=mid:1", "a=mid:0"), "more than one m-line"),
            (
                base.replace("a=mid:1", "a=mid:1\r\na=mid:2"),
                "more than one a=mid",
            ),
            (base.replace("BUNDLE 0 1", "BUNDLE 0 7"), "no m-line has"),
        ];
        for (sdp, why) in cases {
            let e = AnswerPlan::new(&sdp, &pick(0, 102, None)).unwrap_err();
            assert_eq!(e.code(), "invalid_sdp");
            assert!(e.to_string().contains(why), "{e}");
        }
        assert_eq!(
            AnswerPlan::new(base, &pick(5, 102, None))
                .unwrap_err()
                .code(),
            "invalid_sdp"
        );
    }

    #[test]
    fn a_str0m_answer_with_other_than_one_section_is_refused() {
        let plan = AnswerPlan::new("v=0\r\nm=video 9 RTP/AVP 0\r\n", &pick(0, 0, None)).unwrap();
        let two = format!("{STR0M_ANSWER}m=audio 0 RTP/AVP 0\r\n");
        assert_eq!(plan.complete(&two).unwrap_err().code(), "offer_rejected");
        assert_eq!(
            plan.complete("v=0\r\n").unwrap_err().code(),
            "offer_rejected"
        );
    }
}
