//! `--capture-offers DIR`: the daemon keeps each offer message it receives,
//! byte for byte, up to `--capture-max` files, and `portcast replay DIR`
//! answers them again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;
use tungstenite::Message;

/// A fresh folder under the temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("portcast-capture-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/offers")
            .join(name),
    )
    .unwrap()
}

#[test]
fn offers_are_captured_as_received_up_to_the_limit_and_replay() {
    let dir = TempDir::new("daemon");
    let d = Daemon::start(&["--capture-offers", dir.arg(), "--capture-max", "2"]);

    // The seed's message, with extra fields and a string user id: kept byte for byte.
    let first = json!({
        "type": "webrtc_offer", "session_id": "cap-1", "user_id": "u-77",
        "avatar_id": "test-pattern", "extra": [1, 2],
        "sdp": fixture("chromium156_video_audio_dc_gathered.sdp"),
    })
    .to_string();
    let mut ws = connect_ws(d.signal_port, "cap-1");
    assert_eq!(send_recv(&mut ws, &first)["type"], "webrtc_answer");
    // Not offers: never captured.
    ws.send(Message::text(r#"{"type":"client_stats","fps":30}"#))
        .unwrap();
    assert_eq!(send_recv(&mut ws, "{broken")["code"], "malformed_json");

    // A real viewer's offer is captured and still streams.
    let mut v = NetViewer::connect(d.signal_port, "cap-2", "test-pattern").expect("answer");
    v.run_until_frames(10, Duration::from_secs(10));
    assert!(v.counters.len() >= 10, "log:\n{}", d.log());

    // Over the limit: answered as usual, not written.
    let third = first.replace("cap-1", "cap-3");
    let mut ws3 = connect_ws(d.signal_port, "cap-3");
    assert_eq!(send_recv(&mut ws3, &third)["type"], "webrtc_answer");

    let files = dir.files();
    assert_eq!(files.len(), 2, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("offer-") && name.ends_with("-cap-1.json"),
        "{name}"
    );
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), first);
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[1]).unwrap()).unwrap();
    assert_eq!(second["session_id"], "cap-2");
    assert_eq!(second["user_id"], 5);
    let log = d.log();
    assert_eq!(log.matches("offer capture stopped").count(), 1, "{log}");

    let out = Command::new(env!("CARGO_BIN_EXE_portcast"))
        .args(["replay", dir.arg()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches(": answered H264 pt=").count(), 2, "{stdout}");
    assert!(
        stdout.contains(
            "-cap-1.json: answered H264 pt=102 profile=42001f rtx=103 setup=passive mid=0 rejected=2"
        ),
        "{stdout}"
    );
}

#[test]
fn an_unusable_capture_folder_stops_the_daemon_at_start() {
    let dir = TempDir::new("not-a-folder");
    std::fs::write(&dir.0, "a file, not a folder").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcast"))
        .args([
            "--capture-offers",
            dir.arg(),
            "--signal-port",
            &free_tcp_port().to_string(),
        ])
        .args([
            "--udp-ports",
            &free_udp_ports(1)[0].to_string(),
            "--bind-ip",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&dir.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("offer capture") && stderr.contains(dir.arg()),
        "{stderr}"
    );
}
