//! `portcast replay` as a user runs it: the fixtures match their recorded
//! outcomes, a wrong expectation fails with a readable difference, and the
//! daemon's own flags shape the answers.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn portcast(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcast"));
    cmd.current_dir(root()).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTCAST_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("portcast runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("portcast-replay-{}-{name}", std::process::id()));
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn replaying_the_fixtures_matches_their_expected_outcomes() {
    let out = portcast(&[
        "replay",
        "fixtures/offers",
        "--expect",
        "fixtures/offers/expected.json",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The counts come from the fixtures themselves, so a new fixture needs no edit here.
    let dir = root().join("fixtures/offers");
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let offers = expected.len();
    let answered = expected
        .values()
        .filter(|v| v["outcome"] == "answered")
        .count();
    let offer_like_files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let p = e.as_ref().unwrap().path();
            matches!(p.extension().and_then(|x| x.to_str()), Some("sdp" | "json"))
        })
        .count();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), offers, "{stdout}");
    assert!(lines.iter().all(|l| l.ends_with(" ms")), "{stdout}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains(": answered H264 pt=") || l.contains(": answered VP8 pt="))
            .count(),
        answered
    );
    assert!(
        stdout.contains(
            "capture_firefox140_viewer_page.json: answered VP8 pt=120 profile=- rtx=124 "
        ),
        "{stdout}"
    );
    assert!(stdout.contains(
        "chromium156_video_audio_dc_gathered.sdp: answered H264 pt=102 profile=42001f rtx=103 setup=passive mid=0 rejected=2 cands=127.0.0.1:10111 audio=1:opus/111 in "
    ), "{stdout}");
    assert!(stdout.contains(
        "chromium156_audio_video_dc_loopback.sdp: answered H264 pt=102 profile=42001f rtx=103 setup=passive mid=1 rejected=2 "
    ), "{stdout}");
    assert!(
        stdout.contains("capture_chromium156_viewer_page.json: answered H264 pt=102 "),
        "{stdout}"
    );
    assert!(
        stdout.contains("derived_junk_200kb.sdp: error sdp_too_large: "),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "replayed {offers} offers: {answered} answered, {} refused",
            offers - answered
        )),
        "{stderr}"
    );
    // The other .sdp/.json files (expected.json, each .sdp's metadata) hold no offer.
    assert!(
        stderr.contains(&format!("skipped {} files", offer_like_files - offers)),
        "metadata .json noted: {stderr}"
    );
}

#[test]
fn a_wrong_expectation_fails_and_shows_each_difference() {
    let expected = std::fs::read_to_string(root().join("fixtures/offers/expected.json")).unwrap();
    let wrong = expected
        .replace(r#""code": "no_h264""#, r#""code": "no_video""#)
        .replace(r#""setup": "active""#, r#""setup": "passive""#);
    let file = temp_file("wrong.json", &wrong);
    let out = portcast(&[
        "replay",
        "fixtures/offers",
        "--expect",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "derived_no_h264_no_vp8.sdp: DIFFERENCE code: expected \"no_video\", got \"no_h264\""
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "derived_setup_passive.sdp: DIFFERENCE setup: expected \"passive\", got \"active\""
        ),
        "{stdout}"
    );
    assert_eq!(stdout.matches("DIFFERENCE").count(), 2, "{stdout}");
    assert!(text(&out.stderr).contains("FAILED"));
}

#[test]
fn json_reports_follow_the_daemon_flags() {
    let out = portcast(&[
        "--public-ip",
        "203.0.113.7",
        "--udp-ports",
        "20111",
        "replay",
        "fixtures/offers/derived_setup_passive.sdp",
        "fixtures/offers/derived_no_h264_no_vp8.sdp",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["outcome"], "answered");
    assert_eq!(
        reports[0]["candidates"],
        serde_json::json!(["203.0.113.7:20111"])
    );
    assert_eq!(reports[0]["setup"], "active");
    assert_eq!(reports[0]["violations"], serde_json::json!([]));
    assert!(reports[0]["engine_ms"].as_f64().is_some());
    assert_eq!(reports[1]["outcome"], "error");
    assert_eq!(reports[1]["code"], "no_h264");
}

#[test]
fn unusable_arguments_are_usage_errors() {
    let bad = temp_file(
        "bad.json",
        r#"{"x.sdp": {"outcome": "answered", "ptt": 1}}"#,
    );
    let out = portcast(&[
        "replay",
        "fixtures/offers",
        "--expect",
        bad.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown key 'ptt'"),
        "{}",
        text(&out.stderr)
    );
    let out = portcast(&["replay", "no/such/folder"]);
    assert_eq!(out.status.code(), Some(2));
    let out = portcast(&["replay", "fixtures/offers", "--public-ip", "0.0.0.0"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "config errors stop a replay too"
    );
}
