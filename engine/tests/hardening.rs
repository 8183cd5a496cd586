//! Defences inside the engine: signaling tokens, per-avatar limits, and a
//! panic in one session staying in that session.

mod util;

use std::time::Duration;

use portcast_engine::auth::TokenKey;
use portcast_engine::{ConnId, ConnectInfo, EndReason, EngineConfig};
use serde_json::Value;
use util::*;

const SECRET: &[u8] = b"a test secret of 32 bytes.......";

fn offer_reply(
    w: &mut World,
    conn: u64,
    id: &str,
    avatar: &str,
    token: Option<String>,
    unix: u64,
) -> Value {
    let conn = ConnId(conn);
    w.engine.open_connection_with(
        conn,
        portcast_engine::SessionId::parse(id).unwrap(),
        ConnectInfo {
            token,
            unix_time: unix,
        },
    );
    let sdp = fixture("chromium156_video_recvonly_nocand.sdp");
    w.reply_on(conn, &offer_message(id, avatar, &sdp))
}

#[test]
fn with_a_token_key_only_offers_with_a_valid_token_for_that_session_and_avatar_are_answered() {
    let key = TokenKey::new(SECRET).unwrap();
    let cfg = EngineConfig {
        sockets: sockets("127.0.0.1", 10111),
        token_key: Some(key.clone()),
        ..EngineConfig::default()
    };
    let mut w = World::new(cfg, 256, 144);
    let now_unix = 1_800_000_000;
    let good = key.mint("s-ok", "test-pattern", now_unix + 60);
    let cases = [
        ("s-none", None, now_unix, "token_required"),
        (
            "s-junk",
            Some("v1.123.nothex".to_string()),
            now_unix,
            "token_invalid",
        ),
        // A token minted for another session id is useless here.
        ("s-other", Some(good.clone()), now_unix, "token_invalid"),
        ("s-ok", Some(good.clone()), now_unix + 61, "token_expired"),
    ];
    for (i, (id, token, unix, code)) in cases.into_iter().enumerate() {
        let v = offer_reply(&mut w, i as u64 + 1, id, "test-pattern", token, unix);
        assert_eq!(v["code"], code, "{id}: {v}");
    }
    assert_eq!(w.engine.session_count(), 0);
    let v = offer_reply(&mut w, 50, "s-ok", "test-pattern", Some(good), now_unix);
    assert_eq!(v["type"], "webrtc_answer", "{v}");
    assert_eq!(w.engine.session_count(), 1);
}

#[test]
fn the_per_avatar_limit_refuses_the_next_viewer_of_that_avatar() {
    let cfg = EngineConfig {
        sockets: sockets("127.0.0.1", 10111),
        max_sessions_per_avatar: 2,
        ..EngineConfig::default()
    };
    let mut w = World::new(cfg, 256, 144);
    w.add_viewer("v1", addr("127.0.0.1:40001"));
    w.add_viewer("v2", addr("127.0.0.1:40002"));
    let v = offer_reply(&mut w, 99, "v3", "test-pattern", None, 0);
    assert_eq!(v["code"], "too_many_viewers", "{v}");
    assert_eq!(w.engine.session_count(), 2);
}

#[test]
fn a_panic_while_handling_one_session_drops_only_that_session() {
    let cfg = EngineConfig {
        sockets: sockets("127.0.0.1", 10111),
        ..EngineConfig::default()
    };
    let mut w = World::new(cfg, 256, 144);
    let a = w.add_viewer("doomed", addr("127.0.0.1:40001"));
    let b = w.add_viewer("survivor", addr("127.0.0.1:40002"));
    w.run(Duration::from_secs(1));
    assert_eq!(w.engine.session_count(), 2);
    w.engine.poison_session_for_tests("doomed");
    let before = w.viewers[b].counters.len();
    w.run(Duration::from_secs(1));
    assert_eq!(w.engine.stats().session_panics.get(), 1);
    assert_eq!(w.engine.session_count(), 1);
    assert!(w
        .closed
        .iter()
        .any(|(_, id, r)| id == "doomed" && *r == EndReason::InternalError));
    assert!(
        w.viewers[b].counters.len() > before + 20,
        "the other viewer keeps streaming"
    );
    assert_eq!(w.viewers[a].byes.len(), 1, "the dropped viewer is told");
    // A fresh viewer still works.
    let c = w.add_viewer("fresh", addr("127.0.0.1:40003"));
    w.run(Duration::from_secs(1));
    assert!(!w.viewers[c].counters.is_empty());
}
