//! Every captured offer in `fixtures/offers` replays to the outcome recorded in
//! `fixtures/offers/expected.json`, every answer holds the answer invariants,
//! and media the engine does not send is rejected without breaking the video.

mod util;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use portcast_engine::answer_check::check_answer;
use portcast_engine::replay::{Expectations, FileKind, ReplayInput, ReplayOutcome, Replayer};
use portcast_engine::EngineConfig;
use str0m::media::{Direction, MediaKind};
use util::*;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/offers")
}

/// The fixtures `portcast replay fixtures/offers` replays, by file name, in name order.
fn replayable_fixtures() -> Vec<(String, ReplayInput)> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().to_string();
            match FileKind::classify(&name, &std::fs::read(&p).unwrap()) {
                FileKind::Offer(input) => Some((name, input)),
                FileKind::Skipped(_) => None,
                FileKind::Unusable(why) => panic!("{name}: {why}"),
            }
        })
        .collect()
}

/// The daemon's shape behind a forwarder: public address and ports differ from the bound ones.
fn forwarded_config() -> EngineConfig {
    EngineConfig {
        sockets: sockets("198.18.0.1", 20111),
        ..EngineConfig::default()
    }
}

/// The forwarded daemon whose avatar has no voice: every audio m-line is rejected.
fn silent_config() -> EngineConfig {
    EngineConfig {
        audio_avatars: Vec::new(),
        ..forwarded_config()
    }
}

/// The answer of a silent avatar (see [`silent_config`]).
fn answer_of(file: &str) -> String {
    let mut r = Replayer::new(silent_config(), std::time::Instant::now).unwrap();
    match r.replay(&ReplayInput::Sdp(fixture(file))).outcome {
        ReplayOutcome::Answered { sdp, .. } => sdp,
        other => panic!("{file}: not answered: {other:?}"),
    }
}

#[test]
fn every_fixture_gets_its_expected_outcome_and_every_answer_holds_the_invariants() {
    let text = std::fs::read_to_string(fixtures_dir().join("expected.json")).unwrap();
    let expected = Expectations::parse(&text).unwrap();
    let fixtures = replayable_fixtures();
    let names: BTreeSet<&str> = fixtures.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        expected.files().collect::<BTreeSet<_>>(),
        names,
        "expected.json lists exactly the replayable fixtures"
    );
    assert!(names.len() >= 18, "{names:?}");

    let mut replayer = Replayer::new(forwarded_config(), std::time::Instant::now).unwrap();
    let mut slowest = (String::new(), Duration::ZERO);
    let mut answered = 0;
    for (name, input) in &fixtures {
        let replay = replayer.replay(input);
        eprintln!("{}", replay.line(name));
        assert_eq!(
            expected.compare(name, &replay),
            Vec::<String>::new(),
            "{name}"
        );
        assert_eq!(replay.violations(), Vec::<String>::new(), "{name}");
        if let ReplayOutcome::Answered { check, .. } = &replay.outcome {
            answered += 1;
            let public = &check.facts.candidates;
            assert!(
                public.iter().all(|c| c.ip().to_string() == "198.18.0.1"),
                "{name}: {public:?}"
            );
        }
        if replay.engine_time > slowest.1 {
            slowest = (name.clone(), replay.engine_time);
        }
    }
    assert_eq!(
        answered, 16,
        "the real or derived offers that must be answered"
    );
    eprintln!("slowest replay: {} in {:?}", slowest.0, slowest.1);
}

#[test]
fn audio_and_data_channel_are_rejected_with_port_0_in_the_offers_order() {
    let answer = answer_of("chromium156_video_audio_dc_gathered.sdp");
    let lines: Vec<&str> = answer.split("\r\n").collect();
    let mlines: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("m="))
        .collect();
    assert_eq!(
        mlines,
        [
            "m=video 9 UDP/TLS/RTP/SAVPF 102 103",
            "m=audio 0 UDP/TLS/RTP/SAVPF 111",
            "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
        ],
        "{answer}"
    );
    assert!(lines.contains(&"a=group:BUNDLE 0"), "{answer}");
    assert!(!answer.contains("a=sctp-port"), "data channel not accepted");
    assert_eq!(answer.matches("a=candidate:").count(), 1);
    let audio = answer.split("m=audio").nth(1).unwrap();
    let audio = audio.split("m=application").next().unwrap();
    assert!(audio.starts_with(" 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:"));
    assert!(
        audio.ends_with("a=mid:1\r\na=inactive\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"),
        "{audio}"
    );
    assert!(
        !audio.contains("a=candidate") && !audio.contains("a=sendonly"),
        "{audio}"
    );
    let data = answer.split("m=application").nth(1).unwrap();
    assert!(
        data.starts_with(" 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"),
        "{data}"
    );
    assert!(data.ends_with("a=setup:passive\r\na=mid:2\r\n"), "{data}");
}

#[test]
fn an_offer_insisting_on_setup_passive_is_answered_active() {
    let answer = answer_of("derived_setup_passive.sdp");
    assert!(answer.contains("\r\na=setup:active\r\n"), "{answer}");
    let actpass = answer_of("chromium156_video_recvonly_gathered.sdp");
    assert!(!actpass.contains("a=setup:actpass"), "{actpass}");
}

#[test]
fn an_offer_without_bundle_is_answered_without_bundle() {
    let sdp = fixture("chromium156_video_audio_recvonly_gathered.sdp")
        .replace("a=group:BUNDLE 0 1\r\n", "");
    let mut r = Replayer::new(forwarded_config(), std::time::Instant::now).unwrap();
    let ReplayOutcome::Answered { sdp: answer, check } = r.replay(&ReplayInput::Sdp(sdp)).outcome
    else {
        panic!("not answered");
    };
    assert_eq!(check.violations, vec![]);
    assert_eq!(check.facts.bundle, None);
    assert!(!answer.contains("a=group"), "{answer}");
}

#[test]
fn a_captured_message_replays_like_its_sdp() {
    let sdp = fixture("chromium156_video_audio_recvonly_gathered.sdp");
    let message = offer_message("captured-1", "test-pattern", &sdp);
    let mut r = Replayer::new(forwarded_config(), std::time::Instant::now).unwrap();
    let facts = |o: ReplayOutcome| match o {
        ReplayOutcome::Answered { check, .. } => check.facts,
        other => panic!("not answered: {other:?}"),
    };
    let from_sdp = facts(r.replay(&ReplayInput::Sdp(sdp)).outcome);
    let from_message = facts(r.replay(&ReplayInput::Message(message.clone())).outcome);
    assert_eq!(from_sdp, from_message);
    // Replays leave nothing behind: the same session id can be replayed again.
    let again = r.replay(&ReplayInput::Message(message)).outcome;
    assert!(matches!(again, ReplayOutcome::Answered { .. }), "{again:?}");
}

#[test]
fn a_viewer_offering_video_audio_and_a_data_channel_decodes_and_gets_no_sctp() {
    let mut w = World::new(silent_config(), 256, 144);
    let v = w.add_viewer_with("dc", addr("10.0.0.7:40000"), |api| {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        api.add_channel("chat".into());
    });
    w.run(Duration::from_secs(2));
    let viewer = &w.viewers[v];
    let answer = viewer.answer_sdp.clone().expect("answered");
    assert!(answer.contains("\r\nm=audio 0 "), "{answer}");
    assert!(answer.contains("\r\nm=application 0 "), "{answer}");
    assert!(viewer.connected, "ICE and DTLS up");
    assert!(
        viewer.counters.len() > 30,
        "decoded {}",
        viewer.counters.len()
    );
    assert!(viewer.counters_advance());
    assert_eq!(viewer.channels_opened, 0, "no data channel opened");
    assert_eq!(
        w.dtls_app_data_from_engine, 0,
        "the engine sent no DTLS application data, so no SCTP"
    );
    // str0m as an offerer ignores the rejected m=application and, as the DTLS
    // client here, starts SCTP anyway: the engine drops it instead of answering.
    assert!(w.engine.stats().drop_dtls_application_data.get() > 0);
}

#[test]
fn as_the_dtls_client_the_engine_never_starts_sctp_for_a_rejected_data_channel() {
    let mut w = World::new(forwarded_config(), 256, 144);
    let mut viewer = Viewer::new(2000, "dc-active", addr("10.0.0.9:40000"), w.now);
    let offer = viewer.make_offer_with(|api| {
        api.add_channel("chat".into());
    });
    // The viewer insists on being the DTLS server, so the engine is the DTLS
    // (and would-be SCTP) client: any SCTP now could only come from the engine.
    let offer = offer.replace("a=setup:actpass", "a=setup:passive");
    w.engine.open_connection(
        viewer.conn,
        portcast_engine::SessionId::parse("dc-active").unwrap(),
    );
    let text = offer_message("dc-active", "test-pattern", &offer);
    w.engine.handle_signal(w.now, viewer.conn, &text);
    w.viewers.push(viewer);
    w.pump();
    w.run(Duration::from_secs(2));
    let viewer = &w.viewers[0];
    assert!(viewer
        .answer_sdp
        .as_deref()
        .is_some_and(|a| a.contains("a=setup:active")));
    assert!(viewer.connected && viewer.counters.len() > 30);
    assert_eq!(viewer.channels_opened, 0);
    assert_eq!(
        w.dtls_app_data_from_engine, 0,
        "no SCTP INIT from the engine"
    );
    assert_eq!(w.engine.stats().drop_dtls_application_data.get(), 0);
}

#[test]
fn the_invariants_hold_for_answers_to_str0m_offers_too() {
    // The in-memory viewers' own offers (str0m's SDP dialect), through the same checks.
    let mut viewer = Viewer::new(1, "s", addr("10.0.0.8:40000"), Instant::now());
    let offer = viewer.make_offer_with(|api| {
        api.add_channel("chat".into());
    });
    let mut r = Replayer::new(forwarded_config(), std::time::Instant::now).unwrap();
    let replay = r.replay(&ReplayInput::Sdp(offer.clone()));
    let ReplayOutcome::Answered { sdp, check } = replay.outcome else {
        panic!("not answered: {:?}", replay.outcome);
    };
    assert_eq!(check.violations, vec![]);
    assert_eq!(check.facts.rejected_mids.len(), 1, "the data channel");
    let public: Vec<_> = forwarded_config()
        .sockets
        .iter()
        .map(|s| s.public)
        .collect();
    assert_eq!(check_answer(&offer, &sdp, &public).violations, vec![]);
}

#[test]
fn a_speaking_avatar_accepts_the_offers_opus_audio_and_still_rejects_the_data_channel() {
    let mut r = Replayer::new(forwarded_config(), std::time::Instant::now).unwrap();
    let file = "chromium156_video_audio_dc_gathered.sdp";
    let ReplayOutcome::Answered { sdp: answer, check } =
        r.replay(&ReplayInput::Sdp(fixture(file))).outcome
    else {
        panic!("{file}: not answered");
    };
    assert_eq!(check.violations, vec![], "{answer}");
    let mlines: Vec<&str> = answer
        .split("\r\n")
        .filter(|l| l.starts_with("m="))
        .collect();
    assert_eq!(
        mlines,
        [
            "m=video 9 UDP/TLS/RTP/SAVPF 102 103",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
        ],
        "{answer}"
    );
    assert!(answer.contains("\r\na=group:BUNDLE 0 1\r\n"), "{answer}");
    let audio = answer.split("m=audio").nth(1).unwrap();
    let audio = audio.split("m=application").next().unwrap();
    assert!(audio.contains("a=sendonly\r\n"), "{audio}");
    assert!(audio.contains("a=rtpmap:111 opus/48000/2\r\n"), "{audio}");
    assert_eq!(
        (check.facts.audio_mid.as_deref(), check.facts.opus_pt),
        (Some("1"), Some(111))
    );
    assert!(!answer.contains("a=sctp-port"), "data channel not accepted");
}
