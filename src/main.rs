//! portcast: streams live avatar video to browsers over WebRTC through fixed
//! forwarded UDP ports, with no STUN and no TURN.
//!
//! This binary only wires things together: flags and config file into a
//! [`config::Config`], that into the `portcast-net` server, which drives the
//! `portcast-engine` core. `portcast replay` feeds offer files to the same
//! engine instead (`replay.rs`). Run `portcast --help` for the options.

mod cli;
mod config;
mod logging;
mod replay;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use portcast_engine::audio::AudioSettings;
use portcast_engine::auth::TokenKey;
use portcast_engine::encoder::EncoderSettings;
use portcast_engine::{BandwidthEstimation, EngineConfig, Ladders, PlayoutDelay, Rung, SocketSpec};
use portcast_net::y4m::FileSourceSpec;
use portcast_net::{
    AvatarSpec, CaptureConfig, ConnLimits, IngestConfig, Server, ServerConfig, UdpPortSpec,
};

fn main() -> ExitCode {
    let cli = cli::parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    // Minting a token needs no daemon configuration (and must not fail on one).
    if let Some(cli::Command::Token {
        secret_file,
        session,
        avatar,
        ttl_secs,
    }) = &cli.command
    {
        return token::run(secret_file, session, avatar, ttl_secs);
    }
    // The log format is a config setting, so the logger starts once the config is loaded;
    // config errors go to stderr as plain text whatever the format.
    let config = match config::load(&cli, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcast: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // A replay prints its own report; the engine's per-session info lines would bury it.
    let level = if cli.command.is_some() {
        "warn"
    } else {
        "info"
    };
    logging::init(config.settings.log_format, level);
    if let Some(cli::Command::Replay {
        paths,
        expect,
        json,
    }) = &cli.command
    {
        return replay::run(&config, paths, expect.as_deref(), *json);
    }
    let token_key = match &config.token_secret_file {
        None => {
            log::info!(
                "signaling auth off: offers need no token (set token_secret_file to require one)"
            );
            None
        }
        Some(file) => match file.read() {
            Ok(key) => {
                log::info!(
                    "signaling auth on: offers need a token signed with the secret in {}",
                    file.path.display()
                );
                warn_if_readable_by_others(&file.path);
                Some(key)
            }
            Err(e) => {
                eprintln!("portcast: configuration error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if config.allowed_origins.is_empty() {
        log::info!("WebSocket origins: any (set allowed_origins to restrict)");
    } else {
        log::info!(
            "WebSocket origins allowed: {}",
            config.allowed_origins.join(", ")
        );
    }
    let engine = engine_config(&config);
    log_ladders(&engine);
    match engine.bandwidth_estimation {
        Some(b) => log::info!(
            "bandwidth estimation on: each viewer's link is estimated (transport-cc), a lone viewer's encoder follows it, probing up to {} kbit/s",
            b.max_bps / 1000
        ),
        None => log::info!(
            "bandwidth estimation off: every viewer gets the configured bitrate whatever its link carries"
        ),
    }
    let ingest = match &config.settings.ingest_socket {
        Some(config::IngestSocket::Off) => None,
        Some(config::IngestSocket::At(path)) => Some(path.clone()),
        None => {
            match portcast_net::ingest::default_socket_path(cli.config.as_deref()) {
                Ok(path) => Some(path),
                // Without a usable default place the daemon still serves its
                // built-in avatars: renderers are an option, not a requirement.
                Err(e) => {
                    log::warn!("renderer ingest disabled: {e}");
                    None
                }
            }
        }
    };
    let mut server = match Server::bind(server_config(&config, ingest.clone(), token_key)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portcast: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    // SIGHUP: read the file, flags and environment again; the server applies
    // the limits and logs what would need a restart.
    let reload_cli = cli.clone();
    server.set_reloader(Box::new(move || {
        let config =
            config::load(&reload_cli, &|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
        let token_key = match &config.token_secret_file {
            None => None,
            Some(file) => Some(file.read().map_err(|e| e.to_string())?),
        };
        Ok(server_config(&config, ingest.clone(), token_key))
    }));
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcast: event loop failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// The engine's settings as the daemon runs it; `replay` answers with the same.
fn engine_config(c: &config::Config) -> EngineConfig {
    let s = &c.settings;
    EngineConfig {
        sockets: c
            .udp_ports
            .iter()
            .map(|p| SocketSpec {
                local: SocketAddr::new(s.bind_ip, p.local),
                public: SocketAddr::new(s.webrtc_public_ip, p.public),
            })
            .collect(),
        // On when either port is set; the candidate names the public one.
        ice_tcp: s
            .ice_tcp_public_port
            .or(s.ice_tcp_port)
            .map(|port| SocketAddr::new(s.webrtc_public_ip, port)),
        // Every avatar with a picture: the test-pattern ones and a `--source` file's.
        avatars: c
            .avatars
            .iter()
            .map(|a| a.name.clone())
            .chain(c.file_source.iter().map(|f| f.avatar.clone()))
            .collect(),
        // Every avatar the daemon renders or reads itself has raw pictures: it
        // can also encode VP8 for viewers without H.264 (renderers' avatars cannot).
        vp8_avatars: c
            .avatars
            .iter()
            .map(|a| a.name.clone())
            .chain(c.file_source.iter().map(|f| f.avatar.clone()))
            .collect(),
        // The test-pattern avatars speak unless test_pattern_audio is off.
        audio_avatars: c
            .avatars
            .iter()
            .filter(|_| s.test_pattern_audio)
            .map(|a| a.name.clone())
            .collect(),
        max_sessions: s.max_sessions,
        max_sessions_per_avatar: c.max_sessions_per_avatar(),
        max_sdp_bytes: s.max_sdp_kib << 10,
        consent_timeout: Duration::from_secs(s.consent_timeout_secs),
        connect_timeout: Duration::from_secs(s.connect_timeout_secs),
        fallback_avatar: s.fallback_avatar.clone(),
        playout_delay: Some(PlayoutDelay {
            min: Duration::ZERO,
            max: Duration::from_millis(s.playout_delay_max_ms),
        }),
        // Probing aims at the most any avatar sends: its video and its voice.
        bandwidth_estimation: s.bandwidth_estimation.then(|| {
            let video = c
                .avatars
                .iter()
                .map(|a| a.bitrate_bps)
                .chain(
                    c.file_source
                        .iter()
                        .map(|_| EncoderSettings::default().bitrate_bps),
                )
                .max()
                .unwrap_or(EncoderSettings::default().bitrate_bps);
            BandwidthEstimation::for_max(video.saturating_add(audio_settings(s).bitrate_bps))
        }),
        ladders: Ladders {
            default: s.renditions.0.clone(),
            per_avatar: c.avatar_renditions.clone(),
        },
        // Set by `server_config` only: captured offers carry no token, so replay checks none.
        token_key: None,
        ..EngineConfig::default()
    }
}

/// Says what renditions avatars have, the default ladder and each avatar's own.
fn log_ladders(engine: &EngineConfig) {
    let text = |ladder: &[Rung]| match ladder {
        [] => "one rendition".to_string(),
        rungs => {
            let rungs: Vec<_> = rungs
                .iter()
                .map(|r| format!("{}@{}k", r.name(), r.bitrate_bps / 1000))
                .collect();
            format!("its own picture, then {}", rungs.join(", "))
        }
    };
    let ladders = &engine.ladders;
    if engine.bandwidth_estimation.is_none() {
        if !ladders.default.is_empty() || ladders.per_avatar.values().any(|l| !l.is_empty()) {
            log::warn!(
                "renditions: every viewer gets each avatar's own picture, since bandwidth estimation is off (--renditions is unused)"
            );
        }
        return;
    }
    log::info!(
        "renditions: each avatar has {} (encoded while someone receives them; a viewer sharing its avatar gets the highest its estimate carries)",
        text(&ladders.default)
    );
    for (avatar, ladder) in &ladders.per_avatar {
        log::info!("renditions of avatar '{avatar}': {}", text(ladder));
    }
}

/// The Opus settings of the voices the daemon encodes.
fn audio_settings(s: &config::Settings) -> AudioSettings {
    AudioSettings {
        bitrate_bps: s.audio_bitrate_kbps * 1000,
        frame: Duration::from_millis(s.audio_frame_ms),
        lead: Duration::from_millis(s.audio_lead_ms),
    }
}

fn server_config(
    c: &config::Config,
    ingest: Option<PathBuf>,
    token_key: Option<TokenKey>,
) -> ServerConfig {
    let s = &c.settings;
    let engine = EngineConfig {
        token_key,
        ..engine_config(c)
    };
    ServerConfig {
        bind_ip: s.bind_ip,
        signal_port: s.signal_port,
        // Its own listener only when it differs from signaling's.
        ice_tcp_port: s.ice_tcp_port.filter(|p| *p != s.signal_port),
        udp_ports: c
            .udp_ports
            .iter()
            .map(|p| UdpPortSpec {
                local_port: p.local,
                public: SocketAddr::new(s.webrtc_public_ip, p.public),
            })
            .collect(),
        avatars: c
            .avatars
            .iter()
            .map(|a| AvatarSpec {
                name: a.name.clone(),
                encoder: EncoderSettings {
                    width: a.width,
                    height: a.height,
                    fps: a.fps,
                    bitrate_bps: a.bitrate_bps,
                    threads: a.encoder_threads,
                },
                busy: s.test_pattern_busy,
                audio: s.test_pattern_audio.then(|| AudioSettings {
                    bitrate_bps: a
                        .audio_bitrate_kbps
                        .map_or(audio_settings(s).bitrate_bps, |k| k * 1000),
                    ..audio_settings(s)
                }),
            })
            .collect(),
        capture_offers: s
            .capture_offers_dir
            .clone()
            .map(|dir| CaptureConfig::new(dir, s.capture_offers_max, engine.max_sdp_bytes)),
        engine,
        ingest: ingest.map(|path| IngestConfig {
            max_frame_bytes: s.ingest_max_frame_mb << 20,
            audio: audio_settings(s),
            ..IngestConfig::new(path)
        }),
        file_sources: c
            .file_source
            .iter()
            .map(|f| FileSourceSpec {
                name: f.avatar.clone(),
                path: f.path.clone(),
                bitrate_bps: None,
            })
            .collect(),
        allowed_origins: c.allowed_origins.clone(),
        idle_timeout: Duration::from_secs(s.idle_timeout_secs),
        head_timeout: Duration::from_secs(s.header_timeout_secs),
        max_connections: s.max_connections,
        limits: ConnLimits {
            max_message: s.max_message_kib << 10,
            messages_per_sec: s.messages_per_sec.into(),
            message_burst: s.message_burst.into(),
            ..ConnLimits::default()
        },
        handle_signals: true,
        latency_slice: (s.latency_slice_us > 0).then(|| Duration::from_micros(s.latency_slice_us)),
        ..ServerConfig::default()
    }
}

/// The secret is only as safe as its file: say so when other users may read it.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            log::warn!(
                "the token secret file {} has mode {:o}; chmod o-rwx it so other users cannot mint tokens",
                path.display(),
                mode & 0o777
            );
        }
    }
}
