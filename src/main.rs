//! portcast: streams live avatar video to browsers over WebRTC through fixed
//! forwarded UDP ports, with no STUN and no TURN.
//!
//! This binary only wires things together: flags and config file into a
//! [`config::Config`], that into the `portcast-net` server, which drives the
//! `portcast-engine` core. Run `portcast --help` for the options.

mod cli;
mod config;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use portcast_engine::encoder::EncoderSettings;
use portcast_engine::{AvatarId, EngineConfig};
use portcast_net::{AvatarSpec, Server, ServerConfig, UdpPortSpec};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = cli::Cli::parse();
    let config = match config::load(&cli, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcast: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut server = match Server::bind(server_config(&config)) {
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

fn server_config(c: &config::Config) -> ServerConfig {
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
        engine: EngineConfig {
            max_sessions: c.max_sessions,
            consent_timeout: c.consent_timeout,
            fallback_avatar: c.fallback_avatar.as_deref().map(AvatarId::new),
            ..EngineConfig::default()
        },
        ..ServerConfig::default()
    }
}
