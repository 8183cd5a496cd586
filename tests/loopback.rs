//! The daemon as a process, over real loopback sockets: signaling, ICE, DTLS,
//! SRTP and decoded H.264, errors, teardown and clean shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The readiness contract (README, Operations): the moment the signaling port
/// accepts, the UDP ports and the ingest socket exist and a SIGHUP is handled,
/// not fatal. Polled every millisecond, so a daemon that listens before it has
/// bound the rest is caught in its gap.
#[test]
fn the_signaling_port_accepts_only_once_every_socket_and_signal_handler_is_in_place() {
    for round in 0..3 {
        let d = Daemon::spawn(&[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", d.signal_port)).is_err() {
            assert!(Instant::now() < deadline, "never listened: {}", d.log());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            std::os::unix::net::UnixStream::connect(&d.ingest_path).is_ok(),
            "round {round}: signaling accepted before the ingest socket existed"
        );
        for port in &d.udp_ports {
            assert!(
                std::net::UdpSocket::bind(("127.0.0.1", *port)).is_err(),
                "round {round}: signaling accepted before udp {port} was bound"
            );
        }
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &d.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.log().contains("SIGHUP") {
            assert!(
                Instant::now() < deadline,
                "round {round}: SIGHUP neither handled nor logged: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let ready = http_get(
            std::net::SocketAddr::from(([127, 0, 0, 1], d.signal_port)),
            "/readyz",
        );
        assert!(ready.starts_with("HTTP/1.1 200"), "round {round}: {ready}");
    }
}

#[test]
fn a_viewer_over_loopback_decodes_advancing_frames() {
    let d = Daemon::start(&[]);
    let mut v = NetViewer::connect(d.signal_port, "loop-1", "test-pattern").expect("answer");
    let sdp = v.answer["sdp"].as_str().unwrap().to_string();
    assert!(sdp.contains("a=ice-lite"));
    let cand = sdp
        .lines()
        .find(|l| l.starts_with("a=candidate"))
        .unwrap()
        .to_string();
    assert!(
        d.udp_ports
            .iter()
            .any(|p| cand.contains(&format!("127.0.0.1 {p} typ host"))),
        "candidate {cand} names one of {:?}",
        d.udp_ports
    );
    v.run_until_frames(45, Duration::from_secs(15));
    assert!(v.connected_at.is_some(), "connected; log:\n{}", d.log());
    assert!(
        v.counters.len() >= 45,
        "decoded {} frames; log:\n{}",
        v.counters.len(),
        d.log()
    );
    assert!(
        v.counters.windows(2).all(|w| w[1] > w[0]),
        "frame counter advances"
    );
    let first = v.first_frame_at.unwrap().duration_since(v.started);
    eprintln!("offer to first decoded frame over loopback: {first:?}");
    let log = d.log();
    assert!(log.contains("session loop-1 started"), "{log}");
    assert!(log.contains("session loop-1 connected"), "{log}");
}

#[test]
fn refusals_over_the_websocket_leave_the_daemon_serving() {
    let d = Daemon::start(&[]);
    let mut ws = connect_ws(d.signal_port, "bad-1");
    let r = send_recv(&mut ws, "{this is not json");
    assert_eq!(r["code"], "malformed_json");
    let no_h264 = serde_json::json!({
        "type": "webrtc_offer", "session_id": "bad-1", "user_id": 5, "avatar_id": "test-pattern",
        "sdp": fixture("derived_no_h264_no_vp8.sdp"),
    });
    let r = send_recv(&mut ws, &no_h264.to_string());
    assert_eq!(r["code"], "no_h264");
    let wrong_id = no_h264.to_string().replace("\"bad-1\"", "\"other\"");
    assert_eq!(send_recv(&mut ws, &wrong_id)["code"], "session_id_mismatch");
    // An oversized WebSocket message closes that connection only.
    let huge = "x".repeat(300 * 1024);
    let _ = ws.send(tungstenite::Message::text(huge));
    let closed = (0..50).any(|_| ws.read().is_err());
    assert!(closed, "an oversized message closes the connection");
    // Plain HTTP junk gets an HTTP error, not a crash.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", d.signal_port)).unwrap();
    use std::io::{Read, Write};
    raw.write_all(b"BREW / HTTP/1.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = raw.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    // And a fresh viewer still gets video.
    let mut v = NetViewer::connect(d.signal_port, "fresh", "test-pattern").expect("answer");
    v.run_until_frames(10, Duration::from_secs(10));
    assert!(
        v.counters.len() >= 10,
        "fresh viewer decoded {}; log:\n{}",
        v.counters.len(),
        d.log()
    );
}

#[test]
fn closing_the_websocket_ends_the_session_and_sigterm_stops_cleanly() {
    let mut d = Daemon::start(&[]);
    let metrics = || common::http_get(([127, 0, 0, 1], d.signal_port).into(), "/metrics");
    // Nobody watches yet: the test pattern does not encode.
    let idle = metrics();
    assert!(
        idle.contains(r#"portcast_source_encoding{avatar="test-pattern",codec="H264"} 0"#),
        "{idle}"
    );
    let mut v = NetViewer::connect(d.signal_port, "short", "test-pattern").expect("answer");
    v.run_until_frames(5, Duration::from_secs(10));
    assert!(!v.counters.is_empty(), "streaming before the close");
    let watched = metrics();
    assert!(
        watched.contains(r#"portcast_source_encoding{avatar="test-pattern",codec="H264"} 1"#),
        "{watched}"
    );
    // No viewer without H.264: the VP8 encoder does not run.
    assert!(
        watched.contains(r#"portcast_source_encoding{avatar="test-pattern",codec="VP8"} 0"#),
        "{watched}"
    );
    let ws = v.ws.as_mut().expect("a WebSocket viewer");
    let _ = ws.close(None);
    let _ = ws.flush();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d
        .log()
        .contains("session short ended: reason=websocket_closed")
    {
        assert!(Instant::now() < deadline, "no end line; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The last viewer left: the source pauses, and starts again for the next one (below).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d.log().contains("source test-pattern: paused") {
        assert!(Instant::now() < deadline, "no pause; log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A second viewer is live when SIGTERM arrives: it gets a bye.
    let mut v2 = NetViewer::connect(d.signal_port, "at-exit", "test-pattern").expect("answer");
    v2.run_until_frames(3, Duration::from_secs(10));
    let status = d.terminate().expect("daemon exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    std::thread::sleep(Duration::from_millis(100));
    let msgs = v2.server_messages();
    assert!(
        msgs.iter()
            .any(|m| m["type"] == "bye" && m["reason"] == "shutdown"),
        "viewer told of shutdown: {msgs:?}"
    );
    assert!(d.log().contains("session at-exit ended: reason=shutdown"));
}

#[test]
fn a_bad_config_stops_the_daemon_at_start_naming_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcast"))
        .args(["--udp-ports", "10115-10111"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--udp-ports"), "{err}");
    let dir = std::env::temp_dir().join(format!("portcast-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("portcast.toml");
    std::fs::write(
        &file,
        "webrtc_public_ip = \"51.161.209.200\"\nwebrtc_port_min = 70000\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcast"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("webrtc_port_min") && err.contains("portcast.toml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sighup_reloads_limits_without_dropping_a_session() {
    let dir = std::env::temp_dir().join(format!("portcast-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("portcast.toml");
    std::fs::write(&file, "max_sessions = 1\n").unwrap();
    let d = Daemon::start(&["--config", file.to_str().unwrap()]);
    let hup = |d: &Daemon, nth: usize| {
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &d.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.log().matches("SIGHUP: configuration").count() < nth {
            assert!(
                Instant::now() < deadline,
                "no reload line; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut v1 = NetViewer::connect(d.signal_port, "first", "test-pattern").expect("answer");
    v1.run_until_frames(3, Duration::from_secs(10));
    let refused = NetViewer::connect(d.signal_port, "second", "test-pattern").err();
    assert_eq!(
        refused.map(|e| e["code"].clone()),
        Some("too_many_sessions".into())
    );

    // Raise the cap, and change a setting that needs a restart.
    std::fs::write(
        &file,
        format!(
            "max_sessions = 2\ncapture_offers_dir = \"{}\"\nrenditions = \"off\"\n",
            dir.join("offers").display()
        ),
    )
    .unwrap();
    hup(&d, 1);
    let log = d.log();
    assert!(
        log.contains("now in effect for new connections and offers: max_sessions"),
        "{log}"
    );
    assert!(
        log.contains("capture_offers, renditions changed but need a restart"),
        "{log}"
    );
    let mut v2 = NetViewer::connect(d.signal_port, "second", "test-pattern").expect("answer");
    v2.run_until_frames(3, Duration::from_secs(10));

    // A file that does not load keeps the running configuration.
    std::fs::write(&file, "max_sessions = \"lots\"\n").unwrap();
    hup(&d, 2);
    assert!(d
        .log()
        .contains("configuration not reloaded, the running one stays"));
    let refused = NetViewer::connect(d.signal_port, "third", "test-pattern").err();
    assert_eq!(
        refused.map(|e| e["code"].clone()),
        Some("too_many_sessions".into())
    );

    // The first viewer streamed through both reloads.
    let before = v1.counters.len();
    v1.run_until_frames(before + 10, Duration::from_secs(10));
    assert!(
        v1.counters.len() >= before + 10,
        "first viewer stalled; log:\n{}",
        d.log()
    );
    assert!(!d.log().contains("session first ended"), "{}", d.log());
    let _ = std::fs::remove_dir_all(&dir);
}
