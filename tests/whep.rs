//! WHEP (draft-ietf-wish-whep) on the signaling port, over loopback: a str0m
//! player that offers by `POST /whep/{avatar}` decodes the avatar, `DELETE`
//! frees everything, every refusal has its HTTP status and the WebSocket's
//! code, and CORS preflights answer only allowed origins.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use portcast_engine::auth::TokenKey;
use serde_json::Value;

fn addr(d: &Daemon) -> SocketAddr {
    ([127, 0, 0, 1], d.signal_port).into()
}

/// `POST /whep/{avatar}` of `sdp` with `headers`: (status, Location, body).
fn post(d: &Daemon, avatar: &str, headers: &[(&str, &str)], sdp: &[u8]) -> (u16, String, String) {
    let r = http_request(addr(d), "POST", &format!("/whep/{avatar}"), headers, sdp).unwrap();
    let (status, location, body) = http_parts(&r, "location");
    (status, location.unwrap_or("").to_string(), body.to_string())
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["type"], "error", "{body}");
    assert!(v["message"].as_str().unwrap().len() > 10, "{body}");
    v["code"].as_str().unwrap().to_string()
}

const SDP: (&str, &str) = ("Content-Type", "application/sdp");

#[test]
fn a_whep_player_decodes_the_avatar_and_delete_frees_everything() {
    let d = Daemon::start(&[]);
    let mut v = NetViewer::connect_whep(d.signal_port, "test-pattern", &[]).expect("201");
    let location = v.whep_location.clone().expect("a Location");
    assert!(location.starts_with("/whep/sessions/whep-"), "{location}");
    v.run_until_frames(30, Duration::from_secs(15));
    assert!(
        v.counters.len() >= 30,
        "decoded {}: {}",
        v.counters.len(),
        d.log()
    );
    assert!(v.counters.windows(2).all(|w| w[1] > w[0]));
    let m = d.metrics();
    assert_eq!(metric(&m, "portcast_whep_sessions "), 1, "{m}");
    assert_eq!(
        metric(&m, "portcast_sessions{state=\"streaming\"}"),
        1,
        "{m}"
    );

    let r = http_request(addr(&d), "DELETE", &location, &[], b"").unwrap();
    assert_eq!(http_parts(&r, "").0, 200, "{r}");
    let m = d.metrics();
    assert_eq!(metric(&m, "portcast_whep_sessions "), 0, "{m}");
    for state in ["negotiated", "connected", "streaming"] {
        assert_eq!(
            metric(&m, &format!("portcast_sessions{{state=\"{state}\"}}")),
            0,
            "{m}"
        );
    }
    assert_eq!(
        metric(&m, "portcast_sessions_ended_total{reason=\"deleted\"}"),
        1,
        "{m}"
    );
    // The resource is gone: a second DELETE is 404 with the WebSocket-style error.
    let r = http_request(addr(&d), "DELETE", &location, &[], b"").unwrap();
    let (status, _, body) = http_parts(&r, "");
    assert_eq!(
        (status, error_code(body).as_str()),
        (404, "unknown_session")
    );
    // Trickle and ICE restarts are not offered (ICE-lite, complete answer): 405 naming what is.
    let frag = [("Content-Type", "application/trickle-ice-sdpfrag")];
    let r = http_request(
        addr(&d),
        "PATCH",
        &location,
        &frag,
        b"a=end-of-candidates\r\n",
    )
    .unwrap();
    let (status, allow, body) = http_parts(&r, "allow");
    assert_eq!((status, allow), (405, Some("DELETE, OPTIONS")), "{r}");
    assert_eq!(error_code(body), "trickle_not_supported");
    let r = http_request(addr(&d), "DELETE", "/whep/sessions/never-was", &[], b"").unwrap();
    assert_eq!(http_parts(&r, "").0, 404);
    // The daemon still serves a player afterwards.
    let mut again = NetViewer::connect_whep(d.signal_port, "test-pattern", &[]).expect("201");
    again.run_until_frames(5, Duration::from_secs(10));
    assert!(again.counters.len() >= 5);
}

#[test]
fn refused_offers_get_the_websocket_codes_as_http_statuses() {
    let d = Daemon::start(&["--max-sessions", "1"]);
    let good = fixture("chromium156_video_recvonly_nocand.sdp");
    // (avatar, Content-Type, body, status, code)
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "nobody",
            "application/sdp",
            good.clone().into_bytes(),
            404,
            "unknown_avatar",
        ),
        (
            "test-pattern",
            "application/sdp",
            b"hello".to_vec(),
            400,
            "invalid_sdp",
        ),
        (
            "test-pattern",
            "application/sdp",
            fixture("derived_no_h264_no_vp8.sdp").into_bytes(),
            400,
            "no_h264",
        ),
        (
            "test-pattern",
            "text/plain",
            good.clone().into_bytes(),
            415,
            "unsupported_media_type",
        ),
        // Over the engine's SDP limit (64 KiB), under the HTTP body limit.
        (
            "test-pattern",
            "application/sdp",
            vec![b'a'; 100 * 1024],
            413,
            "sdp_too_large",
        ),
    ];
    for (avatar, content_type, body, status, code) in cases {
        let (got, location, text) = post(&d, avatar, &[("Content-Type", content_type)], &body);
        assert_eq!((got, error_code(&text).as_str()), (status, code), "{text}");
        assert!(location.is_empty());
    }
    // Over the HTTP body limit, and a chunked body: refused from the head alone,
    // before any body is read (none is sent, so the close cannot reset the reply).
    let big = [SDP, ("Content-Length", "307200")];
    let r = http_request(addr(&d), "POST", "/whep/test-pattern", &big, b"").unwrap();
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let chunked = [SDP, ("Transfer-Encoding", "chunked")];
    let r = http_request(addr(&d), "POST", "/whep/test-pattern", &chunked, b"").unwrap();
    assert!(r.starts_with("HTTP/1.1 411"), "{r}");

    // The one session allowed is taken: the next offer is 503 too_many_sessions.
    let first = NetViewer::connect_whep(d.signal_port, "test-pattern", &[]).expect("201");
    let (status, _, text) = post(&d, "test-pattern", &[SDP], good.as_bytes());
    assert_eq!(
        (status, error_code(&text).as_str()),
        (503, "too_many_sessions")
    );
    drop(first);
    assert_eq!(
        metric(&d.metrics(), "portcast_whep_sessions "),
        1,
        "refusals hold no session"
    );
}

#[test]
fn tokens_are_bearer_tokens_for_the_session_named_in_the_query() {
    let dir = std::env::temp_dir().join(format!("portcast-whep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    let d = Daemon::start(&["--token-secret-file", secret.to_str().unwrap()]);
    let key = TokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
    let good = fixture("chromium156_video_recvonly_nocand.sdp");
    let token = key.mint("class-7", "test-pattern", u64::MAX / 2);
    let auth = format!("Bearer {token}");

    let (status, _, text) = post(&d, "test-pattern?session=class-7", &[SDP], good.as_bytes());
    assert_eq!(
        (status, error_code(&text).as_str()),
        (401, "token_required")
    );
    let wrong = [SDP, ("Authorization", "Bearer v1.99999999999.00")];
    let (status, _, text) = post(&d, "test-pattern?session=class-7", &wrong, good.as_bytes());
    assert_eq!((status, error_code(&text).as_str()), (403, "token_invalid"));
    // A token is minted for one session id: a server-chosen id cannot match it.
    let (status, _, _) = post(
        &d,
        "test-pattern",
        &[SDP, ("Authorization", &auth)],
        good.as_bytes(),
    );
    assert_eq!(status, 403);

    let ok = [SDP, ("Authorization", auth.as_str())];
    let (status, location, _) = post(&d, "test-pattern?session=class-7", &ok, good.as_bytes());
    assert_eq!((status, location.as_str()), (201, "/whep/sessions/class-7"));
    // Ending it takes the same token.
    let r = http_request(addr(&d), "DELETE", &location, &[], b"").unwrap();
    assert_eq!(http_parts(&r, "").0, 401, "{r}");
    let r = http_request(
        addr(&d),
        "DELETE",
        &location,
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(http_parts(&r, "").0, 200, "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cors_preflight_and_responses_name_only_allowed_origins() {
    let d = Daemon::start(&["--allowed-origin", "https://tutor.example"]);
    let allowed = ("Origin", "https://tutor.example");
    for path in ["/whep/test-pattern", "/whep/sessions/anything"] {
        let r = http_request(addr(&d), "OPTIONS", path, &[allowed], b"").unwrap();
        let (status, origin, _) = http_parts(&r, "access-control-allow-origin");
        assert_eq!(
            (status, origin),
            (204, Some("https://tutor.example")),
            "{r}"
        );
        let (_, exposed, _) = http_parts(&r, "access-control-expose-headers");
        assert_eq!(exposed, Some("Location, ETag, Link"), "{r}");
        let (_, headers, _) = http_parts(&r, "access-control-allow-headers");
        assert!(headers.unwrap().contains("Authorization"), "{r}");
    }
    let r = http_request(
        addr(&d),
        "OPTIONS",
        "/whep/test-pattern",
        &[("Origin", "https://evil.example")],
        b"",
    )
    .unwrap();
    assert_eq!(http_parts(&r, "").0, 403, "{r}");
    let good = fixture("chromium156_video_recvonly_nocand.sdp");
    let (status, _, text) = post(
        &d,
        "test-pattern",
        &[SDP, ("Origin", "https://evil.example")],
        good.as_bytes(),
    );
    assert_eq!(
        (status, error_code(&text).as_str()),
        (403, "origin_not_allowed")
    );
    let r = http_request(
        addr(&d),
        "POST",
        "/whep/test-pattern",
        &[SDP, allowed],
        good.as_bytes(),
    )
    .unwrap();
    let (status, origin, _) = http_parts(&r, "access-control-allow-origin");
    assert_eq!(
        (status, origin),
        (201, Some("https://tutor.example")),
        "{r}"
    );
}

#[test]
fn a_delete_after_the_player_closed_its_peer_connection_is_still_200() {
    // whip-whep closes its RTCPeerConnection (DTLS close_notify ends the
    // session as peer_closed) before it sends DELETE: that is not an error.
    let d = Daemon::start(&[]);
    let mut v = NetViewer::connect_whep(d.signal_port, "test-pattern", &[]).expect("201");
    v.run_until_frames(5, Duration::from_secs(10));
    let location = v.whep_location.clone().unwrap();
    v.rtc.close().unwrap();
    v.run_for(Duration::from_millis(300));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric(&d.metrics(), "portcast_whep_sessions ") != 0 {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = http_request(addr(&d), "DELETE", &location, &[], b"").unwrap();
    let (status, _, body) = http_parts(&r, "");
    assert_eq!(status, 200, "{r}");
    assert!(body.contains("already ended"), "{body}");
}
