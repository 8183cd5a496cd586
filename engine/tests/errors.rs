//! Every refusal the signaling protocol defines, with its code, and the engine
//! still serving a fresh viewer afterwards.

mod util;

use std::time::Duration;

use portcast_engine::{ConnId, EngineConfig, SessionId};
use serde_json::Value;
use util::*;

fn world(max_sessions: usize) -> World {
    let cfg = EngineConfig {
        sockets: sockets("127.0.0.1", 10111),
        max_sessions,
        ..EngineConfig::default()
    };
    World::new(cfg, 256, 144)
}

/// Sends `text` on a fresh connection opened at `/ws/{url_id}`; returns the reply.
fn reply(w: &mut World, conn: u64, url_id: &str, text: &str) -> Value {
    let conn = ConnId(conn);
    w.engine
        .open_connection(conn, SessionId::parse(url_id).unwrap());
    w.reply_on(conn, text)
}

fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], code, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.len() > 20, "message says what to do: {message}");
}

fn assert_fresh_viewer_still_works(w: &mut World, id: &str) {
    let v = w.add_viewer(id, addr("127.0.0.1:45000"));
    w.run(Duration::from_secs(1));
    assert!(w.viewers[v].connected, "fresh viewer connects");
    assert!(!w.viewers[v].counters.is_empty(), "fresh viewer decodes");
}

#[test]
fn malformed_and_incomplete_messages_get_their_codes() {
    let mut w = world(10);
    let good = fixture("chromium156_video_recvonly_nocand.sdp");
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "malformed_json"),
        ("\"just a string\"".into(), "malformed_json"),
        (r#"{"type":"subscribe"}"#.into(), "unknown_type"),
        (r#"{"session_id":"s"}"#.into(), "missing_field"),
        (
            serde_json::json!({"type":"webrtc_offer","session_id":"s","user_id":5,"avatar_id":"test-pattern"}).to_string(),
            "missing_field",
        ),
        (
            serde_json::json!({"type":"webrtc_offer","session_id":"s","user_id":5,"sdp":good}).to_string(),
            "missing_field",
        ),
        (
            serde_json::json!({"type":"webrtc_offer","session_id":"s","user_id":{"a":1},"avatar_id":"test-pattern","sdp":good}).to_string(),
            "invalid_field",
        ),
    ];
    for (i, (text, code)) in cases.iter().enumerate() {
        let v = reply(&mut w, i as u64 + 1, "s", text);
        assert_error(&v, code);
    }
    assert_eq!(w.engine.session_count(), 0);
    assert_fresh_viewer_still_works(&mut w, "after-bad-json");
}

#[test]
fn session_id_differing_from_the_url_is_refused() {
    let mut w = world(10);
    let sdp = fixture("chromium156_video_recvonly_nocand.sdp");
    let v = reply(
        &mut w,
        1,
        "url-id",
        &offer_message("other-id", "test-pattern", &sdp),
    );
    assert_error(&v, "session_id_mismatch");
    assert!(v["message"].as_str().unwrap().contains("url-id"));
    assert_fresh_viewer_still_works(&mut w, "url-id");
}

#[test]
fn unusable_offers_from_real_peers_are_refused_with_the_reason() {
    let mut w = world(10);
    let cases = [
        ("derived_no_h264_no_vp8.sdp", "no_h264"),
        ("derived_no_video_mline.sdp", "no_video"),
        ("derived_truncated_midline.sdp", "invalid_sdp"),
        ("derived_missing_ice_ufrag.sdp", "invalid_sdp"),
        ("derived_missing_fingerprint.sdp", "invalid_sdp"),
        ("derived_junk_200kb.sdp", "sdp_too_large"),
    ];
    for (i, (file, code)) in cases.iter().enumerate() {
        let id = format!("s{i}");
        let v = reply(
            &mut w,
            i as u64 + 1,
            &id,
            &offer_message(&id, "test-pattern", &fixture(file)),
        );
        assert_error(&v, code);
    }
    let v = reply(
        &mut w,
        50,
        "junk",
        &offer_message("junk", "test-pattern", "v=0\r\nthis is not sdp"),
    );
    assert_error(&v, "invalid_sdp");
    assert_eq!(w.engine.session_count(), 0);
    assert_eq!(w.engine.demux_table_sizes(), (0, 0));
    assert_fresh_viewer_still_works(&mut w, "after-bad-sdp");
}

#[test]
fn a_second_offer_on_a_live_session_is_refused_and_the_first_keeps_streaming() {
    let mut w = world(10);
    let v = w.add_viewer("live", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(1));
    let conn = w.viewers[v].conn;
    w.signals.clear();
    let again = offer_message(
        "live",
        "test-pattern",
        &fixture("chromium156_ice_restart_gathered.sdp"),
    );
    w.engine.handle_signal(w.now, conn, &again);
    let before = w.viewers[v].counters.len();
    w.pump();
    let reply: Value = serde_json::from_str(&w.signals[0].1).unwrap();
    // The viewer's harness records errors; the refusal names renegotiation.
    assert_error(&reply, "already_negotiated");
    w.run(Duration::from_secs(1));
    assert!(
        w.viewers[v].counters.len() > before + 20,
        "the first session keeps streaming"
    );
}

#[test]
fn unknown_avatar_is_refused_unless_a_fallback_is_configured() {
    let mut w = world(10);
    let sdp = fixture("chromium156_video_recvonly_nocand.sdp");
    let v = reply(
        &mut w,
        1,
        "a1",
        &offer_message("a1", "avatar_tutor_13", &sdp),
    );
    assert_error(&v, "unknown_avatar");
    assert!(
        v["message"].as_str().unwrap().contains("test-pattern"),
        "lists what exists"
    );

    let cfg = EngineConfig {
        sockets: sockets("127.0.0.1", 10111),
        fallback_avatar: Some(portcast_engine::AvatarId::parse("test-pattern").unwrap()),
        ..EngineConfig::default()
    };
    let mut w = World::new(cfg, 256, 144);
    let v = reply(
        &mut w,
        1,
        "a2",
        &offer_message("a2", "avatar_tutor_13", &sdp),
    );
    assert_eq!(v["type"], "webrtc_answer", "{v}");
}

#[test]
fn over_the_session_limit_is_refused_until_a_session_ends() {
    let mut w = world(2);
    w.add_viewer("one", addr("127.0.0.1:40001"));
    w.add_viewer("two", addr("127.0.0.1:40002"));
    let sdp = fixture("chromium156_video_recvonly_nocand.sdp");
    let v = reply(
        &mut w,
        99,
        "three",
        &offer_message("three", "test-pattern", &sdp),
    );
    assert_error(&v, "too_many_sessions");
    let first = w.viewers[0].conn;
    w.engine.close_connection(w.now, first);
    w.pump();
    assert_fresh_viewer_still_works(&mut w, "three");
}

#[test]
fn a_session_id_in_use_on_another_connection_is_refused() {
    let mut w = world(10);
    w.add_viewer("dup", addr("127.0.0.1:40001"));
    let sdp = fixture("chromium156_video_recvonly_nocand.sdp");
    let v = reply(
        &mut w,
        77,
        "dup",
        &offer_message("dup", "test-pattern", &sdp),
    );
    assert_error(&v, "session_in_use");
    assert_eq!(w.engine.session_count(), 1);
}

#[test]
fn every_real_offer_that_should_be_answered_is_answered() {
    let mut w = world(50);
    let files = [
        "chromium156_video_recvonly_nocand.sdp",
        "chromium156_video_recvonly_gathered.sdp",
        "chromium156_video_audio_recvonly_nocand.sdp",
        "chromium156_video_audio_recvonly_gathered.sdp",
        "chromium156_video_audio_dc_gathered.sdp",
        "chromium156_ice_restart_gathered.sdp",
        "aiortc1.16_video_recvonly.sdp",
        "aiortc1.16_video_audio_recvonly.sdp",
        "derived_lf_only_line_endings.sdp",
        "derived_setup_passive.sdp",
    ];
    for (i, file) in files.iter().enumerate() {
        let id = format!("ok{i}");
        let v = reply(
            &mut w,
            i as u64 + 1,
            &id,
            &offer_message(&id, "test-pattern", &fixture(file)),
        );
        assert_eq!(v["type"], "webrtc_answer", "{file}: {v}");
        let sdp = v["sdp"].as_str().unwrap();
        assert!(sdp.contains("a=ice-lite"), "{file}");
        assert!(sdp.contains("H264/90000"), "{file}");
        assert!(
            sdp.contains("127.0.0.1 1011"),
            "{file}: candidate at the public address"
        );
        // MID, transport-wide-cc (per-viewer bandwidth estimation, on by
        // default) and playout-delay, each exactly when the offer has it
        // (Chromium has all three, aiortc neither of the others).
        let playout = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
        let twcc = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
        let extmaps: Vec<&str> = sdp.lines().filter(|l| l.starts_with("a=extmap:")).collect();
        let known = [
            " urn:ietf:params:rtp-hdrext:sdes:mid".to_string(),
            format!(" {playout}"),
            format!(" {twcc}"),
        ];
        assert!(
            extmaps
                .iter()
                .all(|l| known.iter().any(|k| l.ends_with(k.as_str()))),
            "{file}: {extmaps:?}"
        );
        for ext in [playout, twcc] {
            let offered = fixture(file).contains(ext);
            assert_eq!(
                extmaps.iter().any(|l| l.ends_with(ext)),
                offered,
                "{file}: {ext} offered {offered}, answered {extmaps:?}"
            );
        }
    }
}

#[test]
fn reloaded_limits_apply_to_new_offers_and_keep_live_sessions() {
    let mut w = world(1);
    w.add_viewer("one", addr("127.0.0.1:40001"));
    let sdp = fixture("chromium156_video_recvonly_nocand.sdp");
    let v = reply(
        &mut w,
        90,
        "two",
        &offer_message("two", "test-pattern", &sdp),
    );
    assert_error(&v, "too_many_sessions");

    // A fallback naming no avatar is refused and changes nothing.
    let bad = EngineConfig {
        max_sessions: 5,
        fallback_avatar: Some(portcast_engine::AvatarId::parse("nobody").unwrap()),
        ..EngineConfig::default()
    };
    assert!(w.engine.reload_limits(&bad).is_err());
    let v = reply(
        &mut w,
        91,
        "two",
        &offer_message("two", "test-pattern", &sdp),
    );
    assert_error(&v, "too_many_sessions");

    let good = EngineConfig {
        max_sessions: 5,
        max_sdp_bytes: 1024,
        ..EngineConfig::default()
    };
    let changed = w.engine.reload_limits(&good).unwrap();
    assert!(changed.contains(&"max_sessions") && changed.contains(&"max_sdp_bytes"));
    // The new SDP bound holds for the next offer...
    let v = reply(
        &mut w,
        92,
        "two",
        &offer_message("two", "test-pattern", &sdp),
    );
    assert_error(&v, "sdp_too_large");
    // ...the first viewer kept streaming through it, and the raised cap admits more.
    let before = w.viewers[0].counters.len();
    w.run(Duration::from_millis(500));
    assert!(
        w.viewers[0].counters.len() > before,
        "live session untouched"
    );
    let relaxed = EngineConfig {
        max_sessions: 5,
        ..EngineConfig::default()
    };
    w.engine.reload_limits(&relaxed).unwrap();
    assert_fresh_viewer_still_works(&mut w, "three");
}

#[test]
fn repeated_time_descriptions_are_answered() {
    // RFC 4566 allows several t= lines, r= repeats and z= adjustments; str0m
    // 0.25 cannot parse them ("No m-lines in offer"), so they are cut.
    let mut w = world(10);
    let sdp = fixture("chromium156_video_recvonly_nocand.sdp").replacen(
        "t=0 0\r\n",
        "t=0 0\r\nt=3034423619 3042462419\r\nr=604800 3600 0 90000\r\nz=2882844526 -1h\r\n",
        1,
    );
    assert!(sdp.contains("\r\nr=604800"), "the fixture has a t=0 0 line");
    let v = reply(
        &mut w,
        1,
        "times",
        &offer_message("times", "test-pattern", &sdp),
    );
    assert_eq!(v["type"], "webrtc_answer", "{v}");
}

#[test]
fn an_unreadable_session_line_is_named_as_such() {
    // str0m 0.25 stops at a session-level line it cannot read and then sees
    // no m-lines; the error says which section failed, not "No m-lines".
    let mut w = world(10);
    let sdp = fixture("chromium156_video_recvonly_nocand.sdp").replacen(
        "t=0 0\r\n",
        "t=0 0\r\ne=someone@example.com\r\nk=clear:secret\r\n",
        1,
    );
    let v = reply(
        &mut w,
        1,
        "session",
        &offer_message("session", "test-pattern", &sdp),
    );
    assert_eq!(v["code"], "offer_rejected", "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains("session section"), "{v}");
    assert!(!message.contains("No m-lines"), "{v}");
}
