//! The multi-valued settings (`lists.rs`): ports and the port map, avatars and
//! `[[avatar]]` tables, allowed origins, rendition ladders.

use super::*;

#[test]
fn avatar_tables_replace_the_default_list_and_fill_missing_keys() {
    let file = temp_toml(
        "avatars",
        r#"
fallback_avatar = "lobby"
[[avatar]]
name = "lobby"
width = 640
height = 360
[[avatar]]
name = "hd.main_1"
fps = 60
bitrate_kbps = 6000
encoder_threads = 4
audio_bitrate_kbps = 64
"#,
    );
    let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("avatars load");
    assert_eq!(
        config.avatars,
        vec![
            AvatarConfig {
                name: id("lobby"),
                width: 640,
                height: 360,
                ..AvatarConfig::default()
            },
            AvatarConfig {
                name: id("hd.main_1"),
                fps: 60,
                bitrate_bps: 6_000_000,
                encoder_threads: 4,
                audio_bitrate_kbps: Some(64),
                ..AvatarConfig::default()
            },
        ]
    );
    assert_eq!(config.settings.fallback_avatar.as_deref(), Some("lobby"));
}

#[test]
fn avatar_flags_modify_the_test_pattern_avatar() {
    let args = [
        "--width",
        "1920",
        "--height",
        "1080",
        "--fps",
        "25",
        "--bitrate-kbps",
        "4500",
        "--encoder-threads",
        "2",
    ];
    let config = load(&cli(&args), &no_env).expect("avatar flags load");
    assert_eq!(
        config.avatars,
        vec![AvatarConfig {
            name: id("test-pattern"),
            width: 1920,
            height: 1080,
            fps: 25,
            bitrate_bps: 4_500_000,
            encoder_threads: 2,
            audio_bitrate_kbps: None,
        }]
    );
}

#[test]
fn port_map_flag_accepts_comma_lists() {
    let config = load(
        &cli(&[
            "--port-map",
            "10111:20111,10112:20112",
            "--port-map",
            "10115:20115",
        ]),
        &no_env,
    )
    .expect("port map loads");
    assert_eq!(
        config.udp_ports,
        pairs(&[
            (10111, 20111),
            (10112, 20112),
            (10113, 10113),
            (10114, 10114),
            (10115, 20115)
        ])
    );
}

#[test]
fn allowed_origins_resolve_from_every_layer_and_are_normalised() {
    let config = load(&cli(&[]), &no_env).expect("defaults load");
    assert!(config.allowed_origins.is_empty());

    let file = temp_toml(
        "origins",
        "allowed_origins = [\"https://App.Example.com/\", \"http://localhost:9000\"]\n",
    );
    let config = load(&cli(&["--config", &file.arg()]), &no_env).expect("file loads");
    assert_eq!(
        config.allowed_origins,
        ["https://app.example.com", "http://localhost:9000"]
    );

    // The flag's list replaces the file's as a whole; occurrences may be comma lists.
    let args = [
        "--config",
        &file.arg(),
        "--allowed-origin",
        "https://a.example:443,http://[::1]:8080",
        "--allowed-origin",
        "https://b.example:8443",
    ];
    let config = load(&cli(&args), &no_env).expect("flags load");
    assert_eq!(
        config.allowed_origins,
        [
            "https://a.example",
            "http://[::1]:8080",
            "https://b.example:8443"
        ]
    );

    let env = env_of(&[("PORTCAST_ALLOWED_ORIGINS", " https://c.example , ")]);
    let config = load(&cli(&args), &env).expect("env loads");
    assert_eq!(config.allowed_origins, ["https://c.example"]);

    // `*` alone puts back the default (any origin) over a lower layer's list.
    let env = env_of(&[("PORTCAST_ALLOWED_ORIGINS", "*")]);
    let config = load(&cli(&args), &env).expect("env loads");
    assert!(config.allowed_origins.is_empty());
}

#[test]
fn renditions_read_as_lines_at_kbits_or_off_and_bad_ladders_are_named() {
    use portcast_engine::Rung;
    let rung = |height, kbps: u32| Rung {
        height,
        bitrate_bps: kbps * 1000,
    };
    assert_eq!(
        Config::default().settings.renditions.0,
        [rung(360, 600), rung(180, 150)]
    );
    let file = temp_toml("renditions", "renditions = \"540p@1200k, 270p@300\"\n");
    let c = load_args(&["--config", &file.arg()], &no_env).unwrap();
    assert_eq!(c.settings.renditions.0, [rung(540, 1200), rung(270, 300)]);
    let env = env_of(&[("PORTCAST_RENDITIONS", "off")]);
    let c = load_args(&["--config", &file.arg()], &env).unwrap();
    assert!(c.settings.renditions.0.is_empty(), "the environment wins");
    for (text, problem) in [
        ("360p", "'360p' is not a rendition like 360p@600k"),
        ("360@600k", "'360@600k' is not a rendition"),
        (
            "360p@600k,540p@300k",
            "540p at 300 kbit/s must be smaller and cheaper",
        ),
        ("8p@600k", "8p at 600 kbit/s is out of range"),
        (
            "360p@600k,300p@500k,240p@400k,180p@300k",
            "at most 3 lower renditions, not 4",
        ),
    ] {
        let err = load_args(&["--renditions", text], &no_env).unwrap_err();
        assert!(
            err.contains("--renditions") && err.contains(problem),
            "{text}: {err}"
        );
    }
}

#[test]
fn avatar_renditions_read_from_file_flags_and_environment_each_replacing_the_lower() {
    use portcast_engine::Rung;
    let rung = |height, kbps: u32| Rung {
        height,
        bitrate_bps: kbps * 1000,
    };
    assert!(Config::default().avatar_renditions.is_empty());
    let file = temp_toml(
        "avatar_renditions",
        "[avatar_renditions]\ntutor = \"540p@1200k,270p@300k\"\nkiosk = \"off\"\n",
    );
    let c = load_args(&["--config", &file.arg()], &no_env).unwrap();
    assert_eq!(c.avatar_renditions.len(), 2);
    assert_eq!(
        c.avatar_renditions[&id("tutor")],
        [rung(540, 1200), rung(270, 300)]
    );
    assert!(c.avatar_renditions[&id("kiosk")].is_empty());
    // Flags replace the file's table as a whole; repeated or ';'-separated.
    let c = load_args(
        &[
            "--config",
            &file.arg(),
            "--avatar-renditions",
            "tutor=360p@500k; kiosk=180p@100k",
            "--avatar-renditions",
            "other=off",
        ],
        &no_env,
    )
    .unwrap();
    assert_eq!(c.avatar_renditions[&id("tutor")], [rung(360, 500)]);
    assert_eq!(c.avatar_renditions[&id("kiosk")], [rung(180, 100)]);
    assert!(c.avatar_renditions[&id("other")].is_empty());
    let env = env_of(&[("PORTCAST_AVATAR_RENDITIONS", "solo=off")]);
    let c = load_args(&["--config", &file.arg()], &env).unwrap();
    assert_eq!(
        c.avatar_renditions.keys().collect::<Vec<_>>(),
        [&id("solo")],
        "the environment wins"
    );
    for (text, problem) in [
        ("tutor", "'tutor' is not AVATAR=RENDITIONS"),
        ("tutor=360p", "avatar 'tutor': '360p' is not a rendition"),
        ("bad name=off", "bad name"),
        (
            "a=off;a=360p@500k",
            "avatar 'a' is given renditions more than once",
        ),
    ] {
        let err = load_args(&["--avatar-renditions", text], &no_env).unwrap_err();
        assert!(
            err.contains("--avatar-renditions") && err.contains(problem),
            "{text}: {err}"
        );
    }
    let file = temp_toml(
        "avatar_renditions_bad",
        "avatar_renditions = \"tutor=off\"\n",
    );
    let err = load_args(&["--config", &file.arg()], &no_env).unwrap_err();
    assert!(err.contains("expected a table"), "{err}");
}
