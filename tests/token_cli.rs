//! `portcast token` as a backend runs it: the token it prints verifies for its session and
//! avatar only; bad arguments and unusable secrets exit 2 with a clear message. Also the
//! daemon refusing a short secret at start, and `--log-format json` lines.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcast_engine::auth::{TokenError, TokenKey};

const SECRET: &[u8] = b"an-example-shared-secret-of-32-b";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs portcast without any inherited `PORTCAST_*` variable; killed if it outlives `limit`.
fn portcast(args: &[&str], extra_env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcast"));
    cmd.current_dir(root())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTCAST_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(extra_env.iter().copied());
    let mut child = cmd.spawn().expect("portcast starts");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("portcast output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("portcast-token-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile(path)
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

const QUICK: Duration = Duration::from_secs(20);

#[test]
fn a_minted_token_verifies_for_its_session_and_avatar_only() {
    // A trailing newline, as `echo` or an editor leaves it, is not part of the secret.
    let secret = TempFile::new("secret", &[SECRET, b"\n"].concat());
    let before = now_unix();
    let out = portcast(
        &[
            "token",
            "--secret-file",
            &secret.arg(),
            "--session",
            "lesson-42.a_b~c",
            "--avatar",
            "avatar_tutor_13",
            "--ttl-secs",
            "600",
        ],
        &[],
        QUICK,
    );
    let after = now_unix();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    let token = stdout.trim_end();

    let mut parts = token.split('.');
    assert_eq!(parts.next(), Some("v1"), "{token}");
    let expiry: u64 = parts
        .next()
        .and_then(|e| e.parse().ok())
        .expect("numeric expiry");
    assert!(
        (before + 600..=after + 600).contains(&expiry),
        "expiry {expiry} not now+600 ({before}..{after})"
    );

    let key = TokenKey::new(SECRET).expect("key");
    let now = now_unix();
    assert_eq!(
        key.verify(token, "lesson-42.a_b~c", "avatar_tutor_13", now),
        Ok(())
    );
    assert_eq!(
        key.verify(token, "lesson-43", "avatar_tutor_13", now),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        key.verify(token, "lesson-42.a_b~c", "test-pattern", now),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        key.verify(token, "lesson-42.a_b~c", "avatar_tutor_13", expiry),
        Err(TokenError::Expired)
    );
    let other = TokenKey::new(b"another-secret-of-enough-bytes").expect("key");
    assert_eq!(
        other.verify(token, "lesson-42.a_b~c", "avatar_tutor_13", now),
        Err(TokenError::BadSignature)
    );

    // The default lifetime is one hour.
    let out = portcast(
        &[
            "token",
            "--secret-file",
            &secret.arg(),
            "--session",
            "s1",
            "--avatar",
            "test-pattern",
        ],
        &[],
        QUICK,
    );
    assert!(out.status.success(), "{out:?}");
    let token = text(&out.stdout);
    let expiry: u64 = token
        .trim_end()
        .split('.')
        .nth(1)
        .and_then(|e| e.parse().ok())
        .expect("numeric expiry");
    let now = now_unix();
    assert!(expiry > now + 3500 && expiry <= now + 3600, "{token}");
    assert_eq!(
        key.verify(token.trim_end(), "s1", "test-pattern", now),
        Ok(())
    );
}

#[test]
fn bad_arguments_and_unusable_secrets_exit_2_with_a_clear_message() {
    let secret = TempFile::new("ok-secret", SECRET);
    let short = TempFile::new("short-secret", b"0123456789abcde\n");
    let ok = secret.arg();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--secret-file", "/nonexistent-portcast/secret", "--session", "s", "--avatar", "a"],
            "portcast token: --secret-file: cannot read the secret file /nonexistent-portcast/secret: No such file or directory",
        ),
        (
            &["--secret-file", &short.arg(), "--session", "s", "--avatar", "a"],
            "is 15 bytes; at least 16 are required",
        ),
        (
            &["--secret-file", &ok, "--session", "no spaces", "--avatar", "a"],
            "portcast token: --session: 'no spaces' is not a valid session id",
        ),
        (
            &["--secret-file", &ok, "--session", &"x".repeat(129), "--avatar", "a"],
            "is not a valid session id (1-128 characters",
        ),
        (
            &["--secret-file", &ok, "--session", "s", "--avatar", "a/b"],
            "portcast token: --avatar: 'a/b' is not a valid avatar name",
        ),
        (
            &["--secret-file", &ok, "--session", "s", "--avatar", "a", "--ttl-secs", "0"],
            "portcast token: --ttl-secs: 0 is out of range (1-2678400 seconds, 31 days)",
        ),
        (
            &["--secret-file", &ok, "--session", "s", "--avatar", "a", "--ttl-secs", "2678401"],
            "portcast token: --ttl-secs: 2678401 is out of range",
        ),
        (
            &["--secret-file", &ok, "--session", "s", "--avatar", "a", "--ttl-secs", "1d"],
            "portcast token: --ttl-secs: '1d' is not a whole number of seconds",
        ),
        (&["--secret-file", &ok, "--avatar", "a"], "--session <ID>"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["token"];
        full.extend_from_slice(args);
        let out = portcast(&full, &[], QUICK);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: no token on stdout");
        assert!(
            stderr.contains(expected),
            "{args:?}: {stderr:?} lacks {expected:?}"
        );
        assert!(
            !stderr.contains("an-example"),
            "the secret leaked: {stderr}"
        );
    }
}

#[test]
fn the_daemon_refuses_a_short_or_missing_secret_at_start() {
    let short = TempFile::new("daemon-short", b"0123456789abcde\n");
    let out = portcast(
        &[
            "--token-secret-file",
            &short.arg(),
            "--ingest-socket",
            "off",
        ],
        &[],
        QUICK,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "portcast: configuration error: --token-secret-file: the secret in {} is 15 bytes",
            short.arg()
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("0123456789"),
        "the secret leaked: {stderr}"
    );

    let out = portcast(
        &["--ingest-socket", "off", "--log-format", "json"],
        &[("PORTCAST_TOKEN_SECRET_FILE", "/nonexistent-portcast/secret")],
        QUICK,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Config errors stay plain text whatever the log format.
    assert!(
        stderr.starts_with(
            "portcast: configuration error: environment PORTCAST_TOKEN_SECRET_FILE: cannot read"
        ),
        "{stderr}"
    );
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let out = portcast(
        &[
            "--log-format",
            "json",
            "replay",
            "fixtures/offers/aiortc1.16_video_recvonly.sdp",
        ],
        &[("RUST_LOG", "info")],
        QUICK,
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    // The replay's own summary goes to stderr too; it is a report, not a log line.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("replayed "))
        .collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        let object = value.as_object().expect("an object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = vec!["level", "msg", "target", "ts"];
        expected.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, expected, "{line}");
        assert!(line.starts_with("{\"ts\":\""), "ts first: {line}");
        let ts = object["ts"].as_str().expect("ts string");
        // RFC 3339 in UTC with milliseconds: 2026-01-02T03:04:05.678Z
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(
            ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
            "{ts}"
        );
        assert_eq!(object["level"], "INFO", "{line}");
        assert!(
            object["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("portcast")),
            "{line}"
        );
    }
    assert!(stderr.contains("session replay-1 started"), "{stderr}");
}
