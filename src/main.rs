//! portcast: streams live avatar video to browsers over WebRTC through fixed
//! forwarded UDP ports, with no STUN and no TURN.
//!
//! This binary only wires things together: flags and config file into a
//! [`config::Config`], that into the `portcast-net` server, which drives the
//! `portcast-engine` core. `portcast replay` feeds offer files to the same
//! engine instead (`replay.rs`). Run `portcast --help` for the options.

mod cli;
mod config;
mod replay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use portcast_engine::encoder::EncoderSettings;
use portcast_engine::{AvatarId, EngineConfig, SocketSpec};
use portcast_net::y4m::FileSourceSpec;
use portcast_net::{AvatarSpec, CaptureConfig, IngestConfig, Server, ServerConfig, UdpPortSpec};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A replay prints its own report; the engine's per-session info lines would bury it.
    let level = if cli.command.is_some() {
        "warn"
    } else {
        "info"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let config = match config::load(&cli, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcast: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(cli::Command::Replay {
        paths,
        expect,
        json,
    }) = &cli.command
    {
        return replay::run(&config, paths, expect.as_deref(), *json);
    }
    let ingest = match &config.sources.ingest_socket {
        config::IngestSocket::Off => None,
        config::IngestSocket::At(path) => Some(path.clone()),
        config::IngestSocket::Default => {
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
    let mut server = match Server::bind(server_config(&config, ingest)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portcast: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = server.handle_signals() {
        eprintln!("portcast: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
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
    EngineConfig {
        sockets: c
            .udp_ports
            .iter()
            .map(|p| SocketSpec {
                local: SocketAddr::new(c.bind_ip, p.local),
                public: SocketAddr::new(c.public_ip, p.public),
            })
            .collect(),
        avatars: c.avatars.iter().map(|a| AvatarId::new(&a.name)).collect(),
        max_sessions: c.max_sessions,
        consent_timeout: c.consent_timeout,
        fallback_avatar: c.fallback_avatar.as_deref().map(AvatarId::new),
        ..EngineConfig::default()
    }
}

fn server_config(c: &config::Config, ingest: Option<PathBuf>) -> ServerConfig {
    let engine = engine_config(c);
    ServerConfig {
        bind_ip: c.bind_ip,
        signal_port: c.signal_port,
        udp_ports: c
            .udp_ports
            .iter()
            .map(|p| UdpPortSpec {
                local_port: p.local,
                public: SocketAddr::new(c.public_ip, p.public),
            })
            .collect(),
        avatars: c
            .avatars
            .iter()
            .map(|a| AvatarSpec {
                name: AvatarId::new(&a.name),
                encoder: EncoderSettings {
                    width: a.width,
                    height: a.height,
                    fps: a.fps,
                    bitrate_bps: a.bitrate_bps,
                    threads: a.encoder_threads,
                },
            })
            .collect(),
        capture_offers: c
            .capture_offers_dir
            .clone()
            .map(|dir| CaptureConfig::new(dir, c.capture_offers_max, engine.max_sdp_bytes)),
        engine,
        ingest: ingest.map(|path| IngestConfig {
            max_frame_bytes: c.sources.ingest_max_frame_bytes,
            ..IngestConfig::new(path)
        }),
        file_sources: c
            .sources
            .file
            .iter()
            .map(|f| FileSourceSpec {
                name: AvatarId::new(&f.avatar),
                path: f.path.clone(),
                bitrate_bps: None,
            })
            .collect(),
        ..ServerConfig::default()
    }
}
