//! Tests of `answer_check.rs`.

use super::*;

const FP: &str = "sha-256 9B:61:66:C7:25:21:4F:77:42:97:81:DF:E2:5C:1D:7E:75:33:86:5A:8E:B9:93:6B:24:DE:35:48:9B:90:DC:38";

fn offer() -> String {
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
         a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
         a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\n\
         a=setup:actpass\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n\
         a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\n\
         a=rtcp-fb:102 nack pli\r\n\
         a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
         a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\n\
         a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:* transport-cc\r\n"
        .to_string()
}

fn answer() -> String {
    format!(
        "v=0\r\no=str0m-0.25.0 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             a=ice-lite\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 0.0.0.0\r\n\
             a=candidate:1 1 udp 2130706175 198.18.0.1 10111 typ host\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:{FP}\r\n\
             a=setup:passive\r\na=mid:0\r\n\
             a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
             a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\n\
             a=sendonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\n\
             a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
             a=rtcp-fb:102 nack pli\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
             m=audio 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=inactive\r\n"
    )
}

/// [`answer`] with the audio accepted as a speaking avatar's: Opus, bundled, one msid stream.
fn spoken() -> String {
    answer()
        .replace("BUNDLE 0\r\n", "BUNDLE 0 1\r\n")
        .replace("a=mid:0\r\n", "a=mid:0\r\na=msid:s1 v1\r\n")
        .replace(
            "m=audio 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=inactive\r\n",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=msid:s1 a1\r\n\
                 a=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
                 a=rtcp-fb:111 transport-cc\r\n",
        )
}

#[test]
fn a_speaking_avatars_answer_accepts_opus_audio_beside_the_video() {
    let c = check_answer(&offer(), &spoken(), &public());
    assert_eq!(c.violations, vec![], "{}", spoken());
    assert_eq!(c.facts.audio_mid.as_deref(), Some("1"));
    assert_eq!(c.facts.opus_pt, Some(111));
    assert_eq!(c.facts.bundle, Some(vec!["0".into(), "1".into()]));
    assert!(c.facts.rejected_mids.is_empty());
}

fn public() -> Vec<SocketAddr> {
    vec!["198.18.0.1:10111".parse().unwrap()]
}

fn rules(answer: &str) -> Vec<Rule> {
    check_answer(&offer(), answer, &public())
        .violations
        .iter()
        .map(|v| v.rule)
        .collect()
}

#[test]
fn a_good_answer_has_its_facts_and_no_violation() {
    let c = check_answer(&offer(), &answer(), &public());
    assert_eq!(c.violations, vec![], "{:?}", c.violations);
    assert_eq!(
        c.facts,
        AnswerFacts {
            codec: Some("H264".into()),
            pt: Some(102),
            profile_level_id: Some("42e01f".into()),
            packetization_mode: Some(1),
            rtx: Some(103),
            setup: Some("passive".into()),
            video_mid: Some("0".into()),
            rejected_mids: vec!["1".into()],
            bundle: Some(vec!["0".into()]),
            candidates: public(),
            ..AnswerFacts::default()
        }
    );
}

#[test]
fn each_broken_invariant_is_named() {
    let a = answer();
    let cases = [
        (a.replace("a=ice-lite\r\n", ""), Rule::IceLite),
        (
            a.replace("198.18.0.1 10111", "10.0.0.1 10111"),
            Rule::Candidates,
        ),
        (a.replace("typ host", "typ srflx"), Rule::Candidates),
        (
            a.replace("a=fingerprint:sha-256 9B:", "a=fingerprint:sha-256 "),
            Rule::Transport,
        ),
        (
            a.replace("a=ice-pwd:abcdefghijklmnopqrstuv", "a=ice-pwd:short"),
            Rule::Transport,
        ),
        (a.replace("a=setup:passive", "a=setup:actpass"), Rule::Setup),
        (a.replace("a=mid:1", "a=mid:7"), Rule::Mids),
        (a.replace("BUNDLE 0", "BUNDLE 0 1"), Rule::Bundle),
        (
            a.replace("profile-level-id=42e01f", "profile-level-id=42001f"),
            Rule::Codec,
        ),
        (a.replace("102 103\r\n", "102 103 96\r\n"), Rule::Codec),
        // VP8 answered on a payload type the offer gave H.264.
        (
            a.replace("a=rtpmap:102 H264/90000", "a=rtpmap:102 VP8/90000"),
            Rule::Codec,
        ),
        (a.replace("a=sendonly", "a=sendrecv"), Rule::Direction),
        // Audio accepted without Opus, outside the bundle, in no msid stream.
        (a.replace("m=audio 0", "m=audio 9"), Rule::Audio),
        (
            spoken().replace("a=msid:s1 a1", "a=msid:s2 a1"),
            Rule::Audio,
        ),
        (spoken().replace("BUNDLE 0 1", "BUNDLE 0"), Rule::Bundle),
        (spoken().replace("111 opus", "111 PCMU"), Rule::Audio),
        (
            spoken().replace("a=mid:1\r\na=msid:s1 a1\r\na=sendonly", "a=mid:1\r\na=msid:s1 a1\r\na=sendrecv"),
            Rule::Direction,
        ),
        (a.replace("a=inactive", "a=sendonly"), Rule::Rejected),
        (a.replace("v=0\r\n", ""), Rule::Parses),
        (a.replace("a=extmap:5 ", "a=extmap:6 "), Rule::Extensions),
        (a.replace("102 nack pli", "102 goog-remb"), Rule::NotOffered),
        (a.replace("a=rtcp-mux", "a=rtcp-mux\r\na=rtcp-rsize"), Rule::NotOffered),
        (
            spoken().replace("111 transport-cc", "111 nack"),
            Rule::NotOffered,
        ),
        (
            a.replace(
                "a=sendonly",
                "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=sendonly",
            ),
            Rule::Extensions,
        ),
    ];
    for (bad, rule) in cases {
        let got = rules(&bad);
        assert!(
            got.contains(&rule),
            "{rule:?} not found in {got:?} for\n{bad}"
        );
    }
}

#[test]
fn rtcp_mux_the_offer_lacks_is_a_violation() {
    let offer = offer().replace("a=rtcp-mux\r\n", "");
    let c = check_answer(&offer, &spoken(), &public());
    let found: Vec<String> = c
        .violations
        .iter()
        .filter(|v| v.rule == Rule::NotOffered)
        .map(|v| v.detail.clone())
        .collect();
    assert_eq!(
        found,
        [
            "m-line 1: a=rtcp-mux was not offered",
            "m-line 2: a=rtcp-mux was not offered"
        ]
    );
}

#[test]
fn setup_follows_rfc_8842() {
    let cases = [
        ("actpass", "active", true),
        ("actpass", "passive", true),
        ("passive", "active", true),
        ("passive", "passive", false),
        ("active", "passive", true),
        ("active", "active", false),
    ];
    for (offered, answered, ok) in cases {
        let o = offer().replace("a=setup:actpass", &format!("a=setup:{offered}"));
        let a = answer().replace("a=setup:passive", &format!("a=setup:{answered}"));
        let c = check_answer(&o, &a, &public());
        let broke = c.violations.iter().any(|v| v.rule == Rule::Setup);
        assert_eq!(!broke, ok, "{offered} -> {answered}: {:?}", c.violations);
    }
}

#[test]
fn answering_a_sendonly_offer_breaks_direction() {
    let o = offer().replacen("a=recvonly", "a=sendonly", 1);
    let c = check_answer(&o, &answer(), &public());
    assert!(c.violations.iter().any(|v| v.rule == Rule::Direction));
}

#[test]
fn violations_print_rule_and_detail() {
    let v = Violation {
        rule: Rule::IceLite,
        detail: "no session-level a=ice-lite".into(),
    };
    assert_eq!(v.to_string(), "ice_lite: no session-level a=ice-lite");
}
