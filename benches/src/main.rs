//! portcast-bench: measures frame-to-packet latency, fan-out, many sources and
//! session setup of portcast on this machine, over loopback.
//!
//! Every scenario prints a table and writes JSON under `benches/results/` (or
//! `--out DIR`). The daemon's loop runs in this process with its per-frame
//! probe on; viewers are light str0m clients in a second process (this same
//! binary, `viewers` subcommand) doing real ICE, DTLS and SRTP.

mod aiortc;
mod avsync;
mod codecs;
mod daemon;
mod glass;
mod heap;
mod ingest;
mod naive;
mod rxstamp;
mod scenarios;
mod soak;
mod stats;
mod viewers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "portcast-bench",
    about = "Latency and scale harness for portcast"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Seconds of streaming per measurement
    #[arg(long, global = true, default_value_t = 10.0)]
    seconds: f64,
    /// Where JSON results go
    #[arg(long, global = true, default_value = "benches/results")]
    out: PathBuf,
    /// A few seconds per scenario, small sizes: proves the harness works (used by the test suite)
    #[arg(long, global = true)]
    smoke: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// One viewer; t0 encode in, t1 encode out, t2 last datagram sent, t3 last packet received
    Latency,
    /// One 720p avatar to N viewers (1, 10, 50, 100, 200, 400; stops when it breaks)
    Fanout {
        /// Viewer counts to try, comma separated
        #[arg(long, value_delimiter = ',')]
        viewers: Option<Vec<usize>>,
        /// The avatar speaks (the test pattern's beep) and every viewer takes the audio
        #[arg(long)]
        audio: bool,
        /// Turn per-viewer bandwidth estimation off (no transport-cc feedback, no pacer), as
        /// `portcast --bandwidth-estimation off`
        #[arg(long)]
        no_estimation: bool,
        /// After each viewer count, the same viewers against a naive single-threaded str0m
        /// server (one port, canned frames, write + SRTP + send_to per viewer; benches/src/naive.rs),
        /// with the same estimation setting: the ratio of viewers per core of loop time
        #[arg(long)]
        naive: bool,
        /// With --naive: portcast and the naive server take turns this many times at each
        /// viewer count, and the median ratio is reported (one 10 s step moved the ratio
        /// 1.09-1.59x on this 2-core VM)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
        rounds: u32,
    },
    /// N independent 360p30 avatars with one viewer each
    Sources {
        /// Source counts to try, comma separated
        #[arg(long, value_delimiter = ',')]
        counts: Option<Vec<usize>>,
        /// The busy pattern (noise corner): each encoder spends its whole 1 Mbit/s
        #[arg(long)]
        busy: bool,
    },
    /// Offer-to-answer time and sessions established per second
    Setup {
        /// Offers through the engine
        #[arg(long, default_value_t = 1000)]
        offers: usize,
    },
    /// Renderer frames (720p I420, 30 fps) pushed over the ingest socket: arrival to last RTP packet, drops
    Ingest {
        /// Also 48 kHz mono PCM in 20 ms chunks on the frames' clock (protocol
        /// version 2), a viewer that takes the audio: chunk in to its Opus packet sent
        #[arg(long)]
        audio: bool,
    },
    /// RGB24/BGRA to I420 at 720p: plain loop vs openh264 vs the yuv crate
    Convert,
    /// H.264 (openh264) beside VP8 (libvpx): encode time and bitrate at 720p and 360p, busy pattern
    Codecs,
    /// The speaking test pattern to one viewer for --seconds: A/V offset at the viewer, first minute vs last
    Avsync,
    /// Sessions connecting and disconnecting in churn around a steady viewer; RSS and fds
    Soak {
        /// Sessions to churn through
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Fail when RSS or fds end more than this many percent above the start
        #[arg(long, default_value_t = 5.0)]
        max_growth_pct: f64,
    },
    /// portcast vs an aiortc server doing the same job: 720p latency, largest viewer and source counts
    CompareAiortc,
    /// Capture -> display in headless Chromium through the e2e NAT (root), portcast vs aiortc;
    /// first frame over fresh pages. Runs the release daemon: build it first
    Glass {
        /// The daemon binary [default: target/release/portcast]
        #[arg(long)]
        daemon: Option<PathBuf>,
        /// Fresh pages per server timing connect -> first frame
        #[arg(long, default_value_t = 10)]
        pages: usize,
    },
    /// Every scenario in turn
    All,
    /// (internal) the viewer process
    #[command(hide = true)]
    Viewers {
        #[arg(long)]
        signal: std::net::SocketAddr,
        #[arg(long)]
        count: usize,
        #[arg(long, value_delimiter = ',')]
        avatars: Vec<String>,
        #[arg(long)]
        fps: u32,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        audio: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let opts = scenarios::Opts {
        seconds: cli.seconds,
        out: cli.out.clone(),
        smoke: cli.smoke,
    };
    let result = match cli.command {
        Cmd::Latency => scenarios::latency(&opts),
        Cmd::Fanout {
            viewers,
            audio,
            no_estimation,
            naive,
            rounds,
        } => scenarios::fanout(
            &opts,
            viewers,
            audio,
            !no_estimation,
            naive.then_some(rounds as usize),
        ),
        Cmd::Sources { counts, busy } => scenarios::sources(&opts, counts, busy),
        Cmd::Setup { offers } => scenarios::setup(&opts, offers),
        Cmd::Soak {
            sessions,
            max_growth_pct,
        } => soak::soak(&opts, sessions, max_growth_pct),
        Cmd::Ingest { audio } => ingest::ingest(
            opts.seconds.min(if opts.smoke { 2.0 } else { f64::MAX }),
            audio,
            &opts.out,
        ),
        Cmd::Convert => ingest::convert(&opts.out),
        Cmd::Codecs => codecs::codecs(&opts),
        Cmd::Avsync => avsync::avsync(
            opts.seconds.min(if opts.smoke { 4.0 } else { f64::MAX }),
            &opts.out,
        ),
        Cmd::CompareAiortc => aiortc::compare(&opts),
        Cmd::Glass { daemon, pages } => glass::glass(&opts, daemon, pages),
        Cmd::All => scenarios::latency(&opts)
            .and_then(|_| scenarios::fanout(&opts, None, false, true, Some(1)))
            .and_then(|_| scenarios::sources(&opts, None, false))
            .and_then(|_| scenarios::setup(&opts, 1000))
            .and_then(|_| avsync::avsync(if opts.smoke { 4.0 } else { opts.seconds }, &opts.out))
            // A smoke soak churns a few dozen sessions: allocator noise is a
            // larger share of so little, so it only catches gross leaks.
            .and_then(|_| soak::soak(&opts, 1000, if opts.smoke { 20.0 } else { 5.0 })),
        Cmd::Viewers {
            signal,
            count,
            avatars,
            fps,
            out,
            audio,
        } => {
            let job = viewers::ViewerJob {
                signal,
                count,
                avatars,
                seconds: cli.seconds,
                fps,
                prefix: format!("bench{}", std::process::id()),
                audio,
            };
            viewers::run(&job).and_then(|r| {
                let text = serde_json::to_string(&r).map_err(|e| e.to_string())?;
                std::fs::write(&out, text).map_err(|e| e.to_string())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcast-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
