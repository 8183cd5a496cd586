//! The daemon's loop running in this process, with the frame probe on, and
//! the viewer process started beside it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use portcast_engine::audio::AudioSettings;
use portcast_engine::encoder::EncoderSettings;
use portcast_engine::{AvatarId, EngineConfig, Ladders};
use portcast_net::source::SourceCounters;
use portcast_net::{AvatarSpec, FrameTiming, Server, ServerConfig, ShutdownHandle, UdpPortSpec};

use crate::viewers::ViewerReport;

/// A running in-process daemon.
pub struct Daemon {
    /// Its signaling address.
    pub signal: SocketAddr,
    /// Per-frame timings.
    pub probe: Receiver<FrameTiming>,
    /// Thread id of the loop thread (for its CPU time).
    pub loop_tid: u32,
    /// Source counters.
    pub sources: Vec<(AvatarId, SourceCounters)>,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Starts a loop with `avatars` (name, settings) on five loopback ports,
    /// the frame probe on; with `busy` the test pattern carries noise so the
    /// encoder spends its full bitrate, as on real video.
    pub fn start_with(
        avatars: &[(String, EncoderSettings)],
        max_sessions: usize,
        busy: bool,
    ) -> Result<Daemon, String> {
        Self::start_inner(avatars, max_sessions, busy, true, false, true)
    }

    /// Like `start_with`, every avatar speaking (the test pattern's beep, Opus 32 kbit/s).
    pub fn start_voiced(
        avatars: &[(String, EncoderSettings)],
        max_sessions: usize,
        busy: bool,
    ) -> Result<Daemon, String> {
        Self::start_inner(avatars, max_sessions, busy, true, true, true)
    }

    /// Like `start_with`, with every avatar speaking when `voiced`, and per-viewer
    /// bandwidth estimation on or off.
    pub fn start_fanout(
        avatars: &[(String, EncoderSettings)],
        max_sessions: usize,
        voiced: bool,
        estimation: bool,
    ) -> Result<Daemon, String> {
        Self::start_inner(avatars, max_sessions, true, true, voiced, estimation)
    }

    /// Like `start_with` (plain pattern) without the frame probe, as the daemon runs in production
    /// (the soak: the probe's 64k-slot channel would add resident pages as it
    /// fills, which is harness memory, not the daemon's).
    pub fn start_unprobed(
        avatars: &[(String, EncoderSettings)],
        max_sessions: usize,
    ) -> Result<Daemon, String> {
        Self::start_inner(avatars, max_sessions, false, false, false, true)
    }

    fn start_inner(
        avatars: &[(String, EncoderSettings)],
        max_sessions: usize,
        busy: bool,
        probed: bool,
        voiced: bool,
        estimation: bool,
    ) -> Result<Daemon, String> {
        let (tx, probe) = mpsc::sync_channel(if probed { 1 << 16 } else { 0 });
        let config = ServerConfig {
            avatars: avatars
                .iter()
                .map(|(n, s)| {
                    Ok(AvatarSpec {
                        name: AvatarId::parse(n).map_err(|e| e.to_string())?,
                        encoder: *s,
                        busy,
                        audio: voiced.then(AudioSettings::default),
                    })
                })
                .collect::<Result<_, String>>()?,
            engine: EngineConfig {
                max_sessions,
                max_sessions_per_avatar: max_sessions,
                bandwidth_estimation: if estimation {
                    EngineConfig::default().bandwidth_estimation
                } else {
                    None
                },
                // Every viewer on the avatar's own picture: the figures are the cost of N
                // viewers of one 2 Mbit/s stream, not of viewers a saturated loop moved to
                // a cheaper rendition.
                ladders: Ladders::default(),
                ..EngineConfig::default()
            },
            max_connections: max_sessions * 2 + 64,
            frame_probe: probed.then_some(tx),
            ..loopback_config(None)
        };
        let server = Server::bind(config).map_err(|e| e.to_string())?;
        let signal = server.signal_addr();
        let shutdown = server.shutdown_handle();
        let sources = server.source_counters();
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("portcast-loop".into())
            .spawn(move || {
                let _ = tid_tx.send(current_tid());
                if let Err(e) = server.run() {
                    eprintln!("loop failed: {e}");
                }
            })
            .map_err(|e| e.to_string())?;
        let loop_tid = tid_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        Ok(Daemon {
            signal,
            probe,
            loop_tid,
            sources,
            shutdown,
            thread: Some(thread),
        })
    }

    /// Frames the sources skipped (late) or dropped (channel full) since the daemon started.
    pub fn source_skips(&self) -> u64 {
        self.sources
            .iter()
            .map(|(_, c)| c.late_skips.get() + c.channel_drops.get())
            .sum()
    }

    /// Pictures the encoders' rate control skipped since the daemon started
    /// (a bitrate decision, not a pipeline drop).
    pub fn encoder_skips(&self) -> u64 {
        self.sources
            .iter()
            .map(|(_, c)| c.encoder_skips.get())
            .sum()
    }

    /// Every picture the probe reported so far (audio packets left out).
    pub fn timings(&self) -> Vec<FrameTiming> {
        self.probe.try_iter().filter(|t| !t.audio).collect()
    }

    /// Stops the loop and waits for it.
    pub fn stop(&mut self) {
        self.shutdown.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loop on 127.0.0.1: signaling and five UDP ports on free ports, and the frame probe given.
pub fn loopback_config(probe: Option<SyncSender<FrameTiming>>) -> ServerConfig {
    ServerConfig {
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        signal_port: 0,
        udp_ports: (0..5)
            .map(|_| UdpPortSpec {
                local_port: 0,
                public: SocketAddr::from(([127, 0, 0, 1], 0)),
            })
            .collect(),
        frame_probe: probe,
        ..ServerConfig::default()
    }
}

pub fn current_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// The viewer process, started from this same binary (`portcast-bench viewers ...`).
pub struct ViewerProcess {
    child: Child,
    out: std::path::PathBuf,
}

impl ViewerProcess {
    /// Starts `count` clients against `signal`, receiving for `seconds` after
    /// connecting; with `audio` they offer to receive audio too.
    pub fn start(
        signal: SocketAddr,
        count: usize,
        avatars: &[String],
        seconds: f64,
        fps: u32,
        audio: bool,
    ) -> Result<ViewerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let out = std::env::temp_dir().join(format!(
            "portcast-viewers-{}-{}.json",
            std::process::id(),
            signal.port()
        ));
        let child = Command::new(exe)
            .args([
                "viewers",
                "--signal",
                &signal.to_string(),
                "--count",
                &count.to_string(),
                "--avatars",
                &avatars.join(","),
                "--seconds",
                &seconds.to_string(),
                "--fps",
                &fps.to_string(),
                "--out",
            ])
            .arg(&out)
            .args(audio.then_some("--audio"))
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        Ok(ViewerProcess { child, out })
    }

    /// Whether the process has exited.
    pub fn finished(&self) -> bool {
        // try_wait needs &mut; a zero-cost peek through /proc avoids reaping here.
        !std::path::Path::new(&format!("/proc/{}", self.child.id())).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true)
    }

    /// Waits (bounded) for the report.
    pub fn wait(mut self, limit: Duration) -> Result<ViewerReport, String> {
        let end = std::time::Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => return Err(format!("viewer process failed: {status}")),
                Ok(None) if std::time::Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("viewer process did not finish in time".into());
                }
            }
        }
        let text = std::fs::read_to_string(&self.out).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&self.out);
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}

impl Drop for ViewerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
