//! SIGHUP: a new configuration for new connections and offers, without
//! dropping a session; what needs a restart is logged and ignored.

use portcast_engine::encoder::EncoderSettings;
use portcast_engine::{AvatarId, EngineConfig};

use super::{Server, ServerConfig};

impl Server {
    /// Applies what SIGHUP's reloader builds (see [`Server::set_reloader`]).
    pub(super) fn reload(&mut self) {
        let Some(reloader) = self.reloader.as_mut() else {
            log::warn!("SIGHUP received, but this server has no configuration to reload");
            return;
        };
        let new = match reloader() {
            Ok(c) => c,
            Err(e) => {
                log::error!("SIGHUP: configuration not reloaded, the running one stays: {e}");
                return;
            }
        };
        let engine_changed = match self.engine.reload_limits(&new.engine) {
            Ok(changed) => changed,
            Err(e) => {
                log::error!("SIGHUP: configuration not reloaded, the running one stays: {e}");
                return;
            }
        };
        let old = &self.config;
        let avatars = |c: &ServerConfig| -> Vec<(AvatarId, EncoderSettings)> {
            c.avatars
                .iter()
                .map(|a| (a.name.clone(), a.encoder))
                .collect()
        };
        let names = |pairs: &[(bool, &'static str)]| -> Vec<&'static str> {
            pairs.iter().filter(|(d, _)| *d).map(|(_, n)| *n).collect()
        };
        let fixed = names(&[
            (new.bind_ip != old.bind_ip, "bind_ip"),
            (new.signal_port != old.signal_port, "signal_port"),
            (new.udp_ports != old.udp_ports, "udp ports or public_ip"),
            (avatars(&new) != avatars(old), "avatars"),
            (new.file_sources != old.file_sources, "sources.file"),
            (new.ingest != old.ingest, "sources.ingest"),
            (new.capture_offers != old.capture_offers, "capture_offers"),
            (new.engine.ladders != old.engine.ladders, "renditions"),
            (
                new.engine.bandwidth_estimation != old.engine.bandwidth_estimation,
                "bandwidth_estimation",
            ),
        ]);
        let mut changed = engine_changed;
        changed.extend(names(&[
            (
                new.max_connections != old.max_connections,
                "max_connections",
            ),
            (new.head_timeout != old.head_timeout, "header_timeout"),
            (new.idle_timeout != old.idle_timeout, "idle_timeout"),
            (new.limits != old.limits, "connection limits"),
            (
                new.allowed_origins != old.allowed_origins,
                "allowed_origins",
            ),
        ]));
        let c = &mut self.config;
        c.max_connections = new.max_connections;
        c.head_timeout = new.head_timeout;
        c.idle_timeout = new.idle_timeout;
        c.limits = new.limits;
        c.allowed_origins = new.allowed_origins;
        c.shutdown_grace = new.shutdown_grace;
        c.engine = EngineConfig {
            sockets: std::mem::take(&mut c.engine.sockets),
            avatars: std::mem::take(&mut c.engine.avatars),
            audio_avatars: std::mem::take(&mut c.engine.audio_avatars),
            ladders: std::mem::take(&mut c.engine.ladders),
            bandwidth_estimation: c.engine.bandwidth_estimation,
            ..new.engine
        };
        if !fixed.is_empty() {
            log::warn!(
                "SIGHUP: {} changed but need a restart; still running with the old values",
                fixed.join(", ")
            );
        }
        if changed.is_empty() {
            log::info!("SIGHUP: configuration reloaded; no limit changed");
        } else {
            log::info!(
                "SIGHUP: configuration reloaded; now in effect for new connections and offers: {}",
                changed.join(", ")
            );
        }
    }
}
