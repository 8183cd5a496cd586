//! Tests of `config::load`: every layer, every setting, every error message.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod features;
mod lists;

/// A TOML file in the temp dir, removed when dropped.
fn temp_toml(name: &str, text: &str) -> TempFile {
    TempFile::new(&format!("{name}.toml"), text.as_bytes())
}

fn cli(args: &[&str]) -> Cli {
    try_cli(args).expect("valid test args")
}

fn try_cli(args: &[&str]) -> Result<Cli, clap::Error> {
    crate::cli::parse_from(std::iter::once("portcast").chain(args.iter().copied()))
}

/// Parses the flags and loads; a bad flag fails while parsing, with the same words.
fn load_args(args: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    let cli = try_cli(args).map_err(|e| read::problem(&e))?;
    load(&cli, env).map_err(|e| e.to_string())
}

fn id(name: &str) -> AvatarId {
    AvatarId::parse(name).unwrap()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    let pairs = pairs.to_vec();
    move |key| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }
}

fn pairs(list: &[(u16, u16)]) -> Vec<PortPair> {
    list.iter()
        .map(|&(local, public)| PortPair { local, public })
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IP")
}

#[test]
fn defaults_are_the_documented_values() {
    let config = Config::default();
    assert_eq!(
        config.settings.webrtc_public_ip,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))
    );
    assert_eq!(
        config.settings.bind_ip,
        IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0))
    );
    assert_eq!(config.settings.signal_port, 9000);
    assert_eq!(
        config.udp_ports,
        pairs(&[
            (10111, 10111),
            (10112, 10112),
            (10113, 10113),
            (10114, 10114),
            (10115, 10115)
        ])
    );
    assert_eq!(config.settings.max_sessions, 200);
    assert_eq!(config.settings.consent_timeout_secs, 30);
    assert_eq!(config.settings.fallback_avatar, None);
    assert_eq!(
        config.avatars,
        vec![AvatarConfig {
            name: id("test-pattern"),
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_bps: 2_000_000,
            encoder_threads: 1,
            audio_bitrate_kbps: None,
        }]
    );
    assert_eq!(load(&cli(&[]), &no_env).expect("defaults load"), config);
}

#[test]
fn help_states_every_default_variable_and_the_precedence() {
    let command = crate::cli::command();
    let help = command.clone().render_help().to_string();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        // clap prints the declared default; an optional setting says in words what unset means.
        let text = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        assert!(
            !arg.get_default_values().is_empty() || text.contains("[default: "),
            "--{long} states no default: {text:?}"
        );
        if let Some(var) = arg.get_env() {
            let var = var.to_string_lossy();
            assert!(
                help.contains(&format!("[env: {var}]")),
                "help lacks {var}:\n{help}"
            );
        }
    }
    // The defaults written in words are the ones loaded when no layer sets a value.
    let config = Config::default();
    let avatar = &config.avatars[0];
    let (first, last) = (
        config.udp_ports[0],
        config.udp_ports[config.udp_ports.len() - 1],
    );
    for needle in [
        format!("[default: {}-{}]", first.local, last.local),
        format!("[default: {}]", avatar.width),
        format!("[default: {}]", avatar.height),
        format!("[default: {}]", avatar.fps),
        format!("[default: {}]", avatar.bitrate_bps / 1000),
        format!("[default: {}]", avatar.encoder_threads),
        "built-in defaults < config file (--config) < command-line flags < environment variables"
            .to_string(),
    ] {
        assert!(help.contains(&needle), "help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn every_setting_is_a_file_key_and_a_flag() {
    // Each single-valued setting, written in a file and as a flag with its default's text,
    // loads the defaults: the file key is the field name and the flag its `long`.
    let declared = Settings::augment_args(clap::Command::new("portcast"));
    let mut checked = 0;
    for arg in declared.get_arguments() {
        let Some(default) = arg.get_default_values().first() else {
            continue;
        };
        let (key, default) = (arg.get_id().as_str(), default.to_string_lossy());
        let file = temp_toml(&format!("key-{key}"), &format!("{key} = \"{default}\"\n"));
        let from_file = load(&cli(&["--config", &file.arg()]), &no_env);
        assert_eq!(from_file.expect(key), Config::default(), "{key}");
        let flag = format!("--{}", arg.get_long().expect("a flag"));
        let from_flag = load(&cli(&[flag.as_str(), &default]), &no_env);
        assert_eq!(from_flag.expect(key), Config::default(), "{flag}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} settings have defaults");
}

#[test]
fn seed_toml_keys_parse_into_config() {
    let file = temp_toml(
        "seed",
        r#"
webrtc_public_ip = "203.0.113.7"
webrtc_port_min = 20000
webrtc_port_max = 20002
signal_port = 8443
bind_ip = "10.0.0.5"
max_sessions = 50
consent_timeout_secs = 12
fallback_avatar = "test-pattern"

[port_map]
20001 = 30001
"#,
    );
    let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("seed config loads");
    assert_eq!(
        config,
        Config {
            settings: Settings {
                webrtc_public_ip: ip("203.0.113.7"),
                bind_ip: ip("10.0.0.5"),
                signal_port: 8443,
                max_sessions: 50,
                consent_timeout_secs: 12,
                fallback_avatar: Some(id("test-pattern")),
                ..Settings::default()
            },
            udp_ports: pairs(&[(20000, 20000), (20001, 30001), (20002, 20002)]),
            ..Config::default()
        }
    );
    // Unless set, the per-avatar cap follows max_sessions.
    assert_eq!(config.max_sessions_per_avatar(), 50);
}

#[test]
fn flags_override_file() {
    let file = temp_toml(
        "flags-over-file",
        r#"
webrtc_public_ip = "203.0.113.7"
bind_ip = "10.0.0.5"
signal_port = 8443
webrtc_port_min = 20000
webrtc_port_max = 20001
max_sessions = 50
consent_timeout_secs = 12
[port_map]
20000 = 30000
20001 = 30001
[[avatar]]
name = "test-pattern"
width = 640
fps = 10
[[avatar]]
name = "other"
"#,
    );
    let args = [
        "--config",
        &file.arg(),
        "--public-ip",
        "198.51.100.1",
        "--bind-ip",
        "::",
        "--signal-port",
        "9443",
        "--udp-ports",
        "40000-40002",
        "--port-map",
        "40000:50000",
        "--port-map",
        "40001:50001",
        "--max-sessions",
        "7",
        "--consent-timeout-secs",
        "5",
        "--fallback-avatar",
        "other",
        "--width",
        "800",
    ];
    let config = load(&cli(&args), &no_env).expect("flags over file load");
    assert_eq!(config.settings.webrtc_public_ip, ip("198.51.100.1"));
    assert_eq!(config.settings.bind_ip, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    assert_eq!(config.settings.signal_port, 9443);
    // The flag's port map replaces the file's map as a whole.
    assert_eq!(
        config.udp_ports,
        pairs(&[(40000, 50000), (40001, 50001), (40002, 40002)])
    );
    assert_eq!(config.settings.max_sessions, 7);
    assert_eq!(config.settings.consent_timeout_secs, 5);
    assert_eq!(config.settings.fallback_avatar.as_deref(), Some("other"));
    // Only the flagged field changes; the file's other avatar fields survive.
    assert_eq!((config.avatars[0].width, config.avatars[0].fps), (800, 10));
    assert_eq!(config.avatars[1].name, "other");
}

#[test]
fn fallback_avatar_may_be_the_avatar_of_a_source_file() {
    let args = [
        "--source",
        "y4m:/clips/lecture.y4m",
        "--avatar",
        "clip",
        "--fallback-avatar",
        "clip",
    ];
    let config = load(&cli(&args), &no_env).expect("a --source avatar is a fallback");
    assert_eq!(config.settings.fallback_avatar.as_deref(), Some("clip"));
    assert_eq!(
        config.file_source.map(|f| f.avatar).as_deref(),
        Some("clip")
    );
}

#[test]
fn env_overrides_flags() {
    let args = [
        "--public-ip",
        "198.51.100.1",
        "--bind-ip",
        "10.0.0.5",
        "--signal-port",
        "9443",
        "--udp-ports",
        "40000-40002",
        "--port-map",
        "40000:50000",
        "--max-sessions",
        "7",
        "--consent-timeout-secs",
        "5",
        "--fallback-avatar",
        "nope",
    ];
    let env = env_of(&[
        ("PORTCAST_PUBLIC_IP", "2001:db8::1"),
        ("PORTCAST_BIND_IP", "192.0.2.9"),
        ("PORTCAST_SIGNAL_PORT", "7000"),
        ("PORTCAST_UDP_PORTS", "10111"),
        ("PORTCAST_PORT_MAP", "10111:20111, "),
        ("PORTCAST_MAX_SESSIONS", "3"),
        ("PORTCAST_CONSENT_TIMEOUT_SECS", "60"),
        ("PORTCAST_FALLBACK_AVATAR", "test-pattern"),
    ]);
    let config = load(&cli(&args), &env).expect("env over flags load");
    assert_eq!(
        config,
        Config {
            settings: Settings {
                webrtc_public_ip: ip("2001:db8::1"),
                bind_ip: ip("192.0.2.9"),
                signal_port: 7000,
                max_sessions: 3,
                consent_timeout_secs: 60,
                fallback_avatar: Some(id("test-pattern")),
                ..Settings::default()
            },
            udp_ports: pairs(&[(10111, 20111)]),
            ..Config::default()
        }
    );
    assert_eq!(config.max_sessions_per_avatar(), 3);
}

#[test]
fn env_overrides_file_and_empty_env_is_unset() {
    let file = temp_toml("env-over-file", "signal_port = 8443\nmax_sessions = 50\n");
    let env = env_of(&[
        ("PORTCAST_SIGNAL_PORT", "7000"),
        ("PORTCAST_MAX_SESSIONS", "  "),
    ]);
    let config = load(&cli(&["--config", &file.arg()]), &env).expect("env over file load");
    assert_eq!(
        (config.settings.signal_port, config.settings.max_sessions),
        (7000, 50)
    );
}

#[test]
fn offer_capture_is_off_by_default_and_set_by_file_or_flags() {
    let config = load(&cli(&[]), &no_env).expect("defaults load");
    assert_eq!(
        (
            config.settings.capture_offers_dir,
            config.settings.capture_offers_max
        ),
        (None, 1000)
    );
    let file = temp_toml(
        "capture",
        "capture_offers_dir = \"/var/tmp/offers\"\ncapture_offers_max = 20\n",
    );
    let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
    assert_eq!(
        (
            config.settings.capture_offers_dir,
            config.settings.capture_offers_max
        ),
        (Some(PathBuf::from("/var/tmp/offers")), 20)
    );
    let args = [
        "--config",
        &file.arg(),
        "--capture-offers",
        "here",
        "--capture-max",
        "5",
    ];
    let config = load(&cli(&args), &no_env).expect("flags load");
    assert_eq!(
        (
            config.settings.capture_offers_dir,
            config.settings.capture_offers_max
        ),
        (Some(PathBuf::from("here")), 5)
    );
}

#[test]
fn file_errors_name_the_file_and_the_problem() {
    let missing = Path::new("/nonexistent-portcast/y.toml");
    let err = load(&cli(&["--config", "/nonexistent-portcast/y.toml"]), &no_env)
        .expect_err("missing file");
    assert_eq!(
        err.to_string(),
        format!(
            "config file {} could not be read: No such file or directory",
            missing.display()
        )
    );

    // (file name, contents, the error ({path}: the file's path), whole or only its start)
    let cases = [
        (
            "unknown-key",
            "signal_port = 1\nwebrtc_port_mn = 5\n",
            "{path}: key 'webrtc_port_mn': unknown key (`portcast --help` lists the keys)",
            true,
        ),
        (
            "unknown-avatar-key",
            "[[avatar]]\nname = \"a\"\ncolour = \"red\"\n",
            "{path}: key 'avatar[0].colour': unknown key",
            false,
        ),
        (
            "syntax",
            "signal_port = \n",
            "config file {path}: TOML parse error at line 1, column",
            false,
        ),
        (
            "wrong-type",
            "max_sessions = \"many\"\n",
            "{path}: key 'max_sessions': 'many' is not a whole number",
            true,
        ),
        (
            "list-for-scalar",
            "signal_port = [1, 2]\n",
            "{path}: key 'signal_port': expected a single value, found an array",
            true,
        ),
    ];
    for (name, text, expected, whole) in cases {
        let file = temp_toml(name, text);
        let err = load(&cli(&["--config", &file.arg()]), &no_env)
            .expect_err(name)
            .to_string();
        let expected = expected.replace("{path}", &file.arg());
        if whole {
            assert_eq!(err, expected, "{name}");
        } else {
            assert!(err.starts_with(&expected), "{name}: {err}");
        }
    }
}

/// (TOML file or "" for none, flags, environment, expected message prefix; `{file}` is the path)
type Case = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

// One case per line reads better than rustfmt's vertical layout.
#[rustfmt::skip]
const INVALID_CASES: &[Case] = &[
    ("webrtc_port_min = 70000", &[], &[], "{file}: key 'webrtc_port_min': 70000 is not a valid port (1-65535)"),
    ("webrtc_port_max = 0", &[], &[], "{file}: key 'webrtc_port_max': 0 is not a valid port (1-65535)"),
    ("webrtc_port_min = -3", &[], &[], "{file}: key 'webrtc_port_min': -3 is not a valid port (1-65535)"),
    ("", &["--udp-ports", "10115-10111"], &[], "--udp-ports: '10115-10111' has min > max"),
    ("", &["--udp-ports", "0-5"], &[], "--udp-ports: 0 is not a valid port (1-65535)"),
    ("", &["--udp-ports", "ten"], &[], "--udp-ports: 'ten' is not a port range (expected A-B or a single port)"),
    ("", &[], &[("PORTCAST_UDP_PORTS", "10000-10064")], "environment PORTCAST_UDP_PORTS: '10000-10064' has 65 ports; at most 64 are supported"),
    ("webrtc_port_min = 20000", &[], &[], "{file}: key 'webrtc_port_min': port range 20000-10115 has min > max (min from {file}: key 'webrtc_port_min', max from built-in default for 'webrtc_port_max')"),
    ("webrtc_port_min = 10116\nwebrtc_port_max = 10111", &[], &[], "{file}: key 'webrtc_port_min': port range 10116-10111 has min > max"),
    ("", &["--signal-port", "0"], &[], "--signal-port: 0 is not a valid port (1-65535)"),
    ("", &[], &[("PORTCAST_SIGNAL_PORT", "abc")], "environment PORTCAST_SIGNAL_PORT: 'abc' is not a port number"),
    ("signal_port = 65536", &[], &[], "{file}: key 'signal_port': 65536 is not a valid port (1-65535)"),
    ("[port_map]\n10200 = 20200", &[], &[], "{file}: key 'port_map.10200': local port 10200 is outside the UDP port range 10111-10115"),
    ("[port_map]\nabc = 20200", &[], &[], "{file}: key 'port_map.abc': 'abc' is not a port number"),
    ("[port_map]\n10111 = 70000", &[], &[], "{file}: key 'port_map.10111': public port 70000 is not a valid port (1-65535)"),
    ("", &["--port-map", "10111:10112"], &[], "--port-map: public port 10112 would be announced for both local ports 10111 and 10112"),
    ("", &["--port-map", "10111:1", "--port-map", "10111:2"], &[], "--port-map: local port 10111 is mapped more than once"),
    ("", &[], &[("PORTCAST_PORT_MAP", "10111=20111")], "environment PORTCAST_PORT_MAP: '10111=20111' is not a LOCAL:PUBLIC port pair"),
    ("", &["--public-ip", "0.0.0.0"], &[], "--public-ip: 0.0.0.0 is unspecified; ICE candidates need an address viewers can reach"),
    ("webrtc_public_ip = \"::\"", &[], &[], "{file}: key 'webrtc_public_ip': :: is unspecified"),
    ("", &[], &[("PORTCAST_PUBLIC_IP", "example.com")], "environment PORTCAST_PUBLIC_IP: 'example.com' is not an IP address"),
    ("bind_ip = \"10.0.0\"", &[], &[], "{file}: key 'bind_ip': '10.0.0' is not an IP address"),
    ("max_sessions = 0", &[], &[], "{file}: key 'max_sessions': 0 is out of range (1-10000)"),
    ("", &["--max-sessions", "10001"], &[], "--max-sessions: 10001 is out of range (1-10000)"),
    ("", &[], &[("PORTCAST_MAX_SESSIONS", "-1")], "environment PORTCAST_MAX_SESSIONS: -1 is out of range (1-10000)"),
    ("", &["--consent-timeout-secs", "0"], &[], "--consent-timeout-secs: 0 is out of range (1-86400 seconds)"),
    ("", &[], &[("PORTCAST_CONSENT_TIMEOUT_SECS", "1.5")], "environment PORTCAST_CONSENT_TIMEOUT_SECS: '1.5' is not a whole number of seconds"),
    ("", &["--fallback-avatar", "ghost"], &[], "--fallback-avatar: no avatar named 'ghost' is configured (configured: test-pattern)"),
    ("fallback_avatar = \"ghost\"", &[], &[], "{file}: key 'fallback_avatar': no avatar named 'ghost' is configured"),
    ("capture_offers_max = 0", &[], &[], "{file}: key 'capture_offers_max': 0 is out of range (1-1000000 files)"),
    ("", &["--capture-max", "lots"], &[], "--capture-max: 'lots' is not a whole number"),
    ("", &["--capture-offers", " "], &[], "--capture-offers: the folder name is empty"),
    ("avatar = []", &[], &[], "{file}: key 'avatar': at least one avatar must be configured"),
    ("[[avatar]]\nname = \"a b\"", &[], &[], "{file}: key 'avatar[0].name': 'a b' is not a valid avatar name (1-64 characters from A-Z a-z 0-9 _ . -)"),
    ("[[avatar]]\nname = \"\"", &[], &[], "{file}: key 'avatar[0].name': '' is not a valid avatar name"),
    ("[[avatar]]\nname = \"a\"\n[[avatar]]\nname = \"a\"", &[], &[], "{file}: key 'avatar[1].name': avatar name 'a' is used more than once"),
    ("[[avatar]]\n[[avatar]]", &[], &[], "{file}: key 'avatar[1]': avatar name 'test-pattern' is used more than once"),
    ("[[avatar]]\nwidth = 1281", &[], &[], "{file}: key 'avatar[0].width': 1281 must be even"),
    ("[[avatar]]\nwidth = 3842", &[], &[], "{file}: key 'avatar[0].width': 3842 is out of range (16-3840 pixels)"),
    ("", &["--height", "2162"], &[], "--height: 2162 is out of range (16-2160 pixels)"),
    ("", &["--height", "8"], &[], "--height: 8 is out of range (16-2160 pixels)"),
    ("", &["--fps", "61"], &[], "--fps: 61 is out of range (1-60)"),
    ("[[avatar]]\nfps = 0", &[], &[], "{file}: key 'avatar[0].fps': 0 is out of range (1-60)"),
    ("", &["--bitrate-kbps", "99"], &[], "--bitrate-kbps: 99 is out of range (100-50000 kbps)"),
    ("[[avatar]]\nbitrate_kbps = 50001", &[], &[], "{file}: key 'avatar[0].bitrate_kbps': 50001 is out of range (100-50000 kbps)"),
    ("", &["--encoder-threads", "9"], &[], "--encoder-threads: 9 is out of range (1-8)"),
    ("[[avatar]]\naudio_bitrate_kbps = 5", &[], &[], "{file}: key 'avatar[0].audio_bitrate_kbps': 5 is out of range (6-510 kbit/s)"),
    ("", &["--encoder-threads", "x"], &[], "--encoder-threads: 'x' is not a whole number"),
    ("token_secret_file = \" \"", &[], &[], "{file}: key 'token_secret_file': the file name is empty"),
    ("", &["--token-secret-file", ""], &[], "--token-secret-file: the file name is empty"),
    ("allowed_origins = [\"https://a.example\", \"a.example\"]", &[], &[], "{file}: key 'allowed_origins[1]': 'a.example' is not an origin (no scheme://;"),
    ("allowed_origins = [\"*\", \"https://a.example\"]", &[], &[], "{file}: key 'allowed_origins': '*' allows any origin and cannot be combined"),
    ("", &["--allowed-origin", "https://a.example/app"], &[], "--allowed-origin: 'https://a.example/app' is not an origin (only scheme, host and port"),
    ("", &[], &[("PORTCAST_ALLOWED_ORIGINS", "https://a.example,https://b.example:99999")], "environment PORTCAST_ALLOWED_ORIGINS: 'https://b.example:99999' is not an origin (bad port;"),
    ("max_sessions_per_avatar = 0", &[], &[], "{file}: key 'max_sessions_per_avatar': 0 is out of range (1-10000)"),
    ("", &["--max-sessions-per-avatar", "10001"], &[], "--max-sessions-per-avatar: 10001 is out of range (1-10000)"),
    ("", &[], &[("PORTCAST_MAX_SESSIONS_PER_AVATAR", "x")], "environment PORTCAST_MAX_SESSIONS_PER_AVATAR: 'x' is not a whole number"),
    ("max_connections = 15", &[], &[], "{file}: key 'max_connections': 15 is out of range (16-100000)"),
    ("", &[], &[("PORTCAST_MAX_CONNECTIONS", "100001")], "environment PORTCAST_MAX_CONNECTIONS: 100001 is out of range (16-100000)"),
    ("idle_timeout_secs = 0", &[], &[], "{file}: key 'idle_timeout_secs': 0 is out of range (1-3600 seconds)"),
    ("", &["--idle-timeout-secs", "3601"], &[], "--idle-timeout-secs: 3601 is out of range (1-3600 seconds)"),
    ("header_timeout_secs = 61", &[], &[], "{file}: key 'header_timeout_secs': 61 is out of range (1-60 seconds)"),
    ("", &[], &[("PORTCAST_HEADER_TIMEOUT_SECS", "0.5")], "environment PORTCAST_HEADER_TIMEOUT_SECS: '0.5' is not a whole number of seconds"),
    ("max_message_kib = 3", &[], &[], "{file}: key 'max_message_kib': 3 is out of range (4-4096 KiB)"),
    ("", &["--max-message-kib", "4097"], &[], "--max-message-kib: 4097 is out of range (4-4096 KiB)"),
    ("max_sdp_kib = 1025", &[], &[], "{file}: key 'max_sdp_kib': 1025 is out of range (4-1024 KiB)"),
    ("", &["--max-sdp-kib", "300"], &[], "--max-sdp-kib: max_sdp_kib 300 is larger than max_message_kib 256"),
    ("max_message_kib = 32", &[], &[], "{file}: key 'max_message_kib': max_sdp_kib 64 is larger than max_message_kib 32"),
    ("", &[], &[("PORTCAST_MAX_SDP_KIB", "3")], "environment PORTCAST_MAX_SDP_KIB: 3 is out of range (4-1024 KiB)"),
    ("messages_per_sec = 0", &[], &[], "{file}: key 'messages_per_sec': 0 is out of range (1-1000)"),
    ("", &["--messages-per-sec", "1001"], &[], "--messages-per-sec: 1001 is out of range (1-1000)"),
    ("message_burst = 10001", &[], &[], "{file}: key 'message_burst': 10001 is out of range (1-10000)"),
    ("", &[], &[("PORTCAST_MESSAGE_BURST", "0")], "environment PORTCAST_MESSAGE_BURST: 0 is out of range (1-10000)"),
    ("connect_timeout_secs = 301", &[], &[], "{file}: key 'connect_timeout_secs': 301 is out of range (1-300 seconds)"),
    ("", &["--connect-timeout-secs", "0"], &[], "--connect-timeout-secs: 0 is out of range (1-300 seconds)"),
    ("log_format = \"xml\"", &[], &[], "{file}: key 'log_format': 'xml' is not a log format (text or json)"),
    ("", &["--log-format", "yaml"], &[], "--log-format: 'yaml' is not a log format (text or json)"),
    ("", &[], &[("PORTCAST_LOG_FORMAT", "JSONL")], "environment PORTCAST_LOG_FORMAT: 'JSONL' is not a log format"),
    ("[[avatar]]\nname = \"lobby\"", &["--fps", "20"], &[], "--fps: no avatar named 'test-pattern' is configured"),
];

#[test]
fn validation_errors_name_source_and_key() {
    for (index, &(toml_text, args, env, expected)) in INVALID_CASES.iter().enumerate() {
        let file = temp_toml(&format!("case{index}"), toml_text);
        let mut full: Vec<&str> = Vec::new();
        let path = file.arg();
        if !toml_text.is_empty() {
            full.extend(["--config", &path]);
        }
        full.extend(args);
        let lookup = env_of(env);
        let expected = expected.replace("{file}", &path);
        match load_args(&full, &lookup) {
            Ok(config) => panic!("case {index}: expected error {expected:?}, got {config:?}"),
            Err(message) => assert!(
                message.starts_with(&expected),
                "case {index}: {message:?} does not start with {expected:?}"
            ),
        }
    }
}

#[test]
fn ingest_socket_and_file_source_resolve_from_every_layer() {
    let config = load(&cli(&[]), &no_env).expect("defaults load");
    assert_eq!(
        (&config.settings.ingest_socket, &config.file_source),
        (&None, &None)
    );
    assert_eq!(config.settings.ingest_max_frame_mb, 16);
    let file = temp_toml(
        "ingest",
        "ingest_socket = \"/tmp/r.sock\"\ningest_max_frame_mb = 4\n",
    );
    let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
    assert_eq!(
        config.settings.ingest_socket,
        Some(IngestSocket::At("/tmp/r.sock".into()))
    );
    assert_eq!(config.settings.ingest_max_frame_mb, 4);
    let env = env_of(&[("PORTCAST_INGEST_SOCKET", "off")]);
    let config = load(&cli(&["--ingest-socket", "/tmp/x.sock"]), &env).expect("env loads");
    assert_eq!(config.settings.ingest_socket, Some(IngestSocket::Off));
    let config = load(&cli(&["--source", "y4m:/data/talk.y4m"]), &no_env).expect("source loads");
    assert_eq!(
        config.file_source,
        Some(FileSource {
            avatar: id("talk"),
            path: "/data/talk.y4m".into()
        })
    );
    let error = |args: &[&str]| load_args(args, &no_env).unwrap_err();
    assert_eq!(
        error(&["--source", "mp4:/x.mp4"]),
        "--source: 'mp4:/x.mp4' is not a supported source; use y4m:FILE"
    );
    assert!(error(&["--avatar", "a"]).starts_with("--avatar: --avatar names the avatar"));
    assert!(
        error(&["--source", "y4m:/x.y4m", "--avatar", "test-pattern"])
            .contains("already configured")
    );
    assert_eq!(
        error(&["--ingest-max-frame-mb", "0"]),
        "--ingest-max-frame-mb: 0 is out of range (1-256 MiB)"
    );
}

/// A file in the temp dir with the given bytes, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("portcast-{}-{name}", std::process::id()));
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

#[test]
fn clap_definition_is_consistent() {
    // The token subcommand's --avatar shadows the global one; clap must accept that.
    crate::cli::command().debug_assert();
    let parsed = cli(&[
        "token",
        "--secret-file",
        "/s",
        "--session",
        "abc",
        "--avatar",
        "tutor",
    ]);
    assert_eq!(
        parsed.command,
        Some(crate::cli::Command::Token {
            secret_file: "/s".into(),
            session: "abc".into(),
            avatar: "tutor".into(),
            ttl_secs: "3600".into(),
        })
    );
}
