//! Settings of single features (limits, token secret, log format, voice, the busy
//! pattern), each resolved from every layer.

use super::*;

/// Per-avatar sessions, connections, idle/header timeouts, message/SDP KiB, messages per
/// second, burst, connect timeout.
type Limits = (usize, usize, u64, u64, usize, usize, u32, u32, u64);

fn limits(config: &Config) -> Limits {
    let s = &config.settings;
    (
        config.max_sessions_per_avatar(),
        s.max_connections,
        s.idle_timeout_secs,
        s.header_timeout_secs,
        s.max_message_kib,
        s.max_sdp_kib,
        s.messages_per_sec,
        s.message_burst,
        s.connect_timeout_secs,
    )
}

#[test]
fn limits_resolve_from_every_layer() {
    let config = load(&cli(&[]), &no_env).expect("defaults load");
    assert_eq!(limits(&config), (200, 1024, 30, 5, 256, 64, 10, 20, 20));
    // The per-avatar cap follows max_sessions from whichever layer sets it.
    let config = load(&cli(&["--max-sessions", "40"]), &no_env).expect("flag loads");
    assert_eq!(config.max_sessions_per_avatar(), 40);

    let file = temp_toml(
        "limits",
        r#"
max_sessions_per_avatar = 11
max_connections = 100
idle_timeout_secs = 12
header_timeout_secs = 3
max_message_kib = 128
max_sdp_kib = 32
messages_per_sec = 4
message_burst = 8
connect_timeout_secs = 15
"#,
    );
    let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
    assert_eq!(limits(&config), (11, 100, 12, 3, 128, 32, 4, 8, 15));

    let flags = [
        "--config",
        &file.arg(),
        "--max-sessions-per-avatar",
        "12",
        "--max-connections",
        "200",
        "--idle-timeout-secs",
        "60",
        "--header-timeout-secs",
        "7",
        "--max-message-kib",
        "512",
        "--max-sdp-kib",
        "100",
        "--messages-per-sec",
        "5",
        "--message-burst",
        "9",
        "--connect-timeout-secs",
        "25",
    ];
    let config = load(&cli(&flags), &no_env).expect("flags load");
    assert_eq!(limits(&config), (12, 200, 60, 7, 512, 100, 5, 9, 25));

    let env = env_of(&[
        ("PORTCAST_MAX_SESSIONS_PER_AVATAR", "13"),
        ("PORTCAST_MAX_CONNECTIONS", "300"),
        ("PORTCAST_IDLE_TIMEOUT_SECS", "90"),
        ("PORTCAST_HEADER_TIMEOUT_SECS", "2"),
        ("PORTCAST_MAX_MESSAGE_KIB", "64"),
        ("PORTCAST_MAX_SDP_KIB", "64"),
        ("PORTCAST_MESSAGES_PER_SEC", "6"),
        ("PORTCAST_MESSAGE_BURST", "30"),
        // Empty counts as unset: the flag's value stays.
        ("PORTCAST_CONNECT_TIMEOUT_SECS", ""),
    ]);
    let config = load(&cli(&flags), &env).expect("env loads");
    assert_eq!(limits(&config), (13, 300, 90, 2, 64, 64, 6, 30, 25));
}

#[test]
fn token_secret_file_resolves_from_every_layer_and_is_read_at_start() {
    let config = load(&cli(&[]), &no_env).expect("defaults load");
    assert_eq!(config.token_secret_file, None);

    let secret = TempFile::new("secret", b"0123456789abcdef-secret\n");
    let file = temp_toml(
        "secret",
        &format!("token_secret_file = \"{}\"\n", secret.arg()),
    );
    let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
    let from_file = config.token_secret_file.expect("secret file set");
    assert_eq!(from_file.path, secret.0);
    assert_eq!(
        from_file.origin,
        Origin::File {
            path: file.0.clone(),
            key: "token_secret_file".into()
        }
    );
    let key = from_file.read().expect("secret reads");
    let token = key.mint("s", "a", 10);
    let reference =
        portcast_engine::auth::TokenKey::new(b"0123456789abcdef-secret").expect("reference key");
    assert_eq!(reference.verify(&token, "s", "a", 9), Ok(()));

    let args = [
        "--config",
        &file.arg(),
        "--token-secret-file",
        "/flag/secret",
    ];
    let config = load(&cli(&args), &no_env).expect("flag loads");
    let from_flag = config.token_secret_file.expect("secret file set");
    assert_eq!(from_flag.path, PathBuf::from("/flag/secret"));
    assert_eq!(
        from_flag.read().expect_err("missing").to_string(),
        "--token-secret-file: cannot read the secret file /flag/secret: No such file or directory"
    );

    let short = TempFile::new("short-secret", b"fifteen-bytes!!\n");
    let short_path = short.arg();
    let env = move |key: &str| (key == "PORTCAST_TOKEN_SECRET_FILE").then(|| short_path.clone());
    let config = load(&cli(&args), &env).expect("env loads");
    let from_env = config.token_secret_file.expect("secret file set");
    assert_eq!(from_env.path, short.0);
    let message = from_env.read().expect_err("short secret").to_string();
    assert_eq!(
        message,
        format!(
            "environment PORTCAST_TOKEN_SECRET_FILE: the secret in {} is 15 bytes; at least 16 \
             are required (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
            short.arg()
        )
    );
    assert!(!message.contains("fifteen"), "the secret leaked: {message}");
}

#[test]
fn log_format_resolves_from_every_layer() {
    let config = load(&cli(&[]), &no_env).expect("defaults load");
    assert_eq!(config.settings.log_format, LogFormat::Text);
    let file = temp_toml("log-format", "log_format = \"json\"\n");
    let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
    assert_eq!(config.settings.log_format, LogFormat::Json);
    let args = ["--config", &file.arg(), "--log-format", "text"];
    let config = load(&cli(&args), &no_env).expect("flag loads");
    assert_eq!(config.settings.log_format, LogFormat::Text);
    let env = env_of(&[("PORTCAST_LOG_FORMAT", "JSON")]);
    let config = load(&cli(&args), &env).expect("env loads");
    assert_eq!(config.settings.log_format, LogFormat::Json);
}

#[test]
fn voice_settings_resolve_from_every_layer() {
    let config = load(&cli(&[]), &no_env).expect("defaults load");
    let s = &config.settings;
    assert_eq!(
        (s.test_pattern_audio, s.audio_bitrate_kbps, s.audio_frame_ms),
        (true, 32, 20)
    );
    // A TOML boolean, a flag and a variable, each in its own layer.
    let file = temp_toml(
        "voice",
        "test_pattern_audio = false\naudio_bitrate_kbps = 64\n",
    );
    let env = env_of(&[("PORTCAST_AUDIO_FRAME_MS", "10")]);
    let config = load(
        &cli(&["--config", &file.arg(), "--audio-bitrate-kbps", "24"]),
        &env,
    )
    .expect("loads");
    let s = &config.settings;
    assert_eq!(
        (s.test_pattern_audio, s.audio_bitrate_kbps, s.audio_frame_ms),
        (false, 24, 10)
    );
    let err = load_args(&["--test-pattern-audio", "maybe"], &no_env).unwrap_err();
    assert_eq!(err, "--test-pattern-audio: 'maybe' is not on or off");
    let bad = temp_toml("voice-bad", "audio_frame_ms = 15\n");
    let err = load(&cli(&["--config", &bad.arg()]), &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("key 'audio_frame_ms': '15' is not an Opus frame length (10 or 20 ms)"),
        "{err}"
    );
}

#[test]
fn the_busy_test_pattern_is_off_unless_asked_for() {
    assert!(
        !load(&cli(&[]), &no_env)
            .expect("defaults")
            .settings
            .test_pattern_busy
    );
    let on = load(&cli(&["--test-pattern-busy", "on"]), &no_env).expect("flag loads");
    assert!(on.settings.test_pattern_busy);
    let env = env_of(&[("PORTCAST_TEST_PATTERN_BUSY", "on")]);
    assert!(
        load(&cli(&[]), &env)
            .expect("env loads")
            .settings
            .test_pattern_busy
    );
}
