//! Scenario 5, `compare-aiortc`: portcast and an aiortc server doing the same
//! job, measured in one run by the same viewer process.
//!
//! The aiortc side is `benches/aiortc/server.py` (the seed signaling protocol,
//! aiortc's own H.264 encoder, one UDP port per peer connection), installed
//! into `target/aiortc-venv` from `benches/aiortc/requirements.txt` when
//! missing or out of date. aiortc never gathers 127.0.0.1, so the server and
//! its viewer process run in a network namespace made here, whose loopback
//! also carries 198.18.9.1 (the address aiortc announces); nothing leaves it,
//! and it is deleted on drop. Portcast runs in this process as in the other
//! scenarios, over the machine's loopback.
//!
//! Both sides serve the busy test pattern (`TestPattern::set_busy`: fresh
//! low-amplitude noise over a corner every frame, so each encoder spends about
//! its whole bitrate as on real video; aiortc: the same picture and the same
//! noise distribution drawn with numpy, without the digits) at the same size,
//! 30 fps and target bitrate:
//! 1280x720 2.5 Mbit/s for latency and viewer counts, 640x360 1 Mbit/s for
//! source counts. t2 is when a frame's last datagram has been handed to the
//! kernel. t0 is portcast's probe (taken before its source thread draws the
//! pattern, so portcast's figures include drawing) and, for aiortc, the moment
//! the drawn frame leaves the source track for aiortc's pipeline (relay, event
//! loop, executor, encoder, packetizer, SRTP, asyncio `sendto`): drawing with
//! numpy is the harness's cost, not aiortc's.
//!
//! Frames a stream is missing after its first second (source late skips,
//! frames an unbuffered aiortc relay overwrote, channel drops) count as
//! dropped, the same way on both sides.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use portcast_engine::encoder::EncoderSettings;
use portcast_net::FrameTiming;
use serde::Deserialize;
use serde_json::json;

use crate::scenarios::{self, settings, Opts};
use crate::stats::{fmt_us, summarize, us, Summary};
use crate::viewers::ViewerReport;

const FPS: u32 = 30;
/// The address aiortc gathers inside the namespace (loopback there, TEST-NET benchmark range).
const NS_ADDR: &str = "198.18.9.1/32";
const NS_PREFIX: &str = "pcbench-aiortc-";
/// Frames at the start of each aiortc session not counted as drops (codec start, first IDR).
const WARMUP_FRAMES: u64 = 30;
/// Frame-to-packet p99 bound of the source-count scenario, in microseconds.
const BOUND_US: f64 = 33_333.0;

/// One frame an aiortc peer connection sent (a line of the server's timings file).
#[derive(Debug, Clone, Deserialize)]
struct AiortcFrame {
    session: String,
    avatar: String,
    n: u64,
    rtp_ts: u64,
    key: bool,
    bytes: u64,
    t_render: u64,
    t_ready: u64,
    t0: u64,
    t1: u64,
    t2: u64,
    t2_wall: u128,
}

/// The server's last line.
#[derive(Debug, Clone, Default, Deserialize)]
struct AiortcSummary {
    late_skips: HashMap<String, u64>,
    target_bitrates: Vec<Option<u64>>,
}

/// Runs scenario 5 and writes `<out>/compare-aiortc.json`.
pub fn compare(o: &Opts) -> Result<(), String> {
    let secs = if o.smoke {
        o.seconds.min(2.0)
    } else {
        o.seconds
    };
    let started = Instant::now();
    let env = AiortcEnv::prepare()?;
    println!(
        "\n## compare-aiortc: portcast vs aiortc 1.16 ({} s per measurement; aiortc in netns {})",
        secs, env.ns.name
    );

    // 1. Latency, 720p 2.5 Mbit/s, one viewer.
    let hd = settings(1280, 720, 2_500_000, 1);
    let pc1 = run_portcast(&[("bench".into(), hd)], 1, secs)?;
    let pc2 = run_portcast(
        &[("bench".into(), EncoderSettings { threads: 2, ..hd })],
        1,
        secs,
    )?;
    let ai = run_aiortc(&env, (1280, 720, 2_500_000), 1, &["bench".into()], secs)?;
    let lat_pc = portcast_latency(&pc1, secs);
    let lat_pc2 = portcast_latency(&pc2, secs);
    let lat_ai = aiortc_latency(&ai);

    // 2. Largest viewer count of one 720p avatar.
    let fan_counts: &[usize] = if o.smoke {
        &[2]
    } else {
        &[1, 5, 10, 20, 50, 100, 200, 400]
    };
    println!("viewers of one 720p avatar (ok: all connect, loss <= 1%, dropped frames <= 1% after each stream's first second):");
    let (fan_pc, fan_pc_rows) = largest("portcast", fan_counts, |n| {
        let r = run_portcast(&[("bench".into(), hd)], n, secs)?;
        Ok(portcast_scale(&r, n, false))
    });
    let (fan_ai, fan_ai_rows) = largest("aiortc", fan_counts, |n| {
        let r = run_aiortc(&env, (1280, 720, 2_500_000), n, &["bench".into()], secs)?;
        Ok(aiortc_scale(&r, n, false))
    });

    // 3. Largest count of independent 360p avatars, one viewer each.
    let src_counts: &[usize] = if o.smoke {
        &[2]
    } else {
        &[1, 2, 4, 6, 8, 10, 15, 20, 30, 40, 50, 60, 80]
    };
    println!("independent 360p 1 Mbit/s sources, one viewer each (ok: all connect, no dropped frame after each stream's first second, f2p p99 < 33 ms):");
    let (src_pc, src_pc_rows) = largest("portcast", src_counts, |n| {
        let avatars: Vec<(String, EncoderSettings)> = (0..n)
            .map(|i| (format!("src{i}"), settings(640, 360, 1_000_000, 1)))
            .collect();
        let r = run_portcast(&avatars, n, secs)?;
        Ok(portcast_scale(&r, n, true))
    });
    let (src_ai, src_ai_rows) = largest("aiortc", src_counts, |n| {
        let names: Vec<String> = (0..n).map(|i| format!("src{i}")).collect();
        let r = run_aiortc(&env, (640, 360, 1_000_000), n, &names, secs)?;
        Ok(aiortc_scale(&r, n, true))
    });

    println!(
        "\n{:<44} {:>12} {:>12} {:>18}",
        "720p 2.5 Mbit/s, one viewer", "portcast", "aiortc", "portcast advantage"
    );
    let lat_rows = [
        ("frame-to-packet t2-t0 p50", lat_pc.f2p.p50, lat_ai.f2p.p50),
        ("frame-to-packet t2-t0 p99", lat_pc.f2p.p99, lat_ai.f2p.p99),
        ("  P frames only p50", lat_pc.f2p_p.p50, lat_ai.f2p_p.p50),
        ("  P frames only p99", lat_pc.f2p_p.p99, lat_ai.f2p_p.p99),
        ("encode t1-t0 p50", lat_pc.encode.p50, lat_ai.encode.p50),
        (
            "t1 to last datagram sent t2-t1 p50",
            lat_pc.send.p50,
            lat_ai.send.p50,
        ),
        ("t2 to viewer t3-t2 p50", lat_pc.net.p50, lat_ai.net.p50),
    ];
    for (label, p, a) in lat_rows {
        println!(
            "{label:<44} {:>12} {:>12} {:>17.1}x",
            fmt_us(p),
            fmt_us(a),
            a / p.max(1.0)
        );
    }
    println!(
        "{:<44} {:>12} {:>12}",
        "  (portcast with 2 encoder threads p50/p99)",
        fmt_us(lat_pc2.f2p.p50),
        fmt_us(lat_pc2.f2p.p99)
    );
    println!(
        "{:<44} {:>12.0} {:>12.0}",
        "bitrate actually sent, kbit/s", lat_pc.kbps, lat_ai.kbps
    );
    println!(
        "{:<44} {:>12.3} {:>12.3}",
        "server CPU s per s (portcast: whole process)", pc1.cpu_per_s, ai.cpu_per_s
    );
    let ratio = |p: usize, a: usize| p as f64 / (a.max(1)) as f64;
    println!(
        "{:<44} {:>12} {:>12} {:>17.1}x",
        "largest viewer count, 720p",
        fan_pc,
        fan_ai,
        ratio(fan_pc, fan_ai)
    );
    println!(
        "{:<44} {:>12} {:>12} {:>17.1}x",
        "largest source count, 360p, p99 < 33 ms",
        src_pc,
        src_ai,
        ratio(src_pc, src_ai)
    );
    let tried = |counts: &[usize], best: usize| counts.last().is_some_and(|l| *l == best);
    if tried(fan_counts, fan_pc) || tried(src_counts, src_pc) {
        println!("(a largest count equal to the last one tried is a lower bound)");
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());

    let out = json!({
        "scenario": "compare-aiortc",
        "seconds": secs,
        "smoke": o.smoke,
        "aiortc": {"version": "1.16.0", "namespace_address": NS_ADDR},
        "latency_720p": {
            "portcast": lat_pc.to_json(),
            "portcast_2_encoder_threads": lat_pc2.to_json(),
            "aiortc": lat_ai.to_json(),
            "aiortc_t0_at_encoder_call_instead_of_frame_ready": {
                "frame_to_packet_us": lat_ai.f2p_from_encoder_call,
                "frame_ready_to_encoder_call_us": lat_ai.handoff,
            },
            "aiortc_drawing_the_pattern_us": lat_ai.render,
            "server_cpu_s_per_s": {"portcast_process": pc1.cpu_per_s, "aiortc_process": ai.cpu_per_s},
            "aiortc_target_bitrates": ai.summary.target_bitrates,
            "ratio_aiortc_over_portcast": {
                "p50": lat_ai.f2p.p50 / lat_pc.f2p.p50.max(1.0),
                "p99": lat_ai.f2p.p99 / lat_pc.f2p.p99.max(1.0),
            },
        },
        "viewers_720p": {
            "portcast": fan_pc, "aiortc": fan_ai, "ratio": ratio(fan_pc, fan_ai),
            "tried": fan_counts, "portcast_rows": fan_pc_rows, "aiortc_rows": fan_ai_rows,
        },
        "sources_360p": {
            "portcast": src_pc, "aiortc": src_ai, "ratio": ratio(src_pc, src_ai),
            "tried": src_counts, "portcast_rows": src_pc_rows, "aiortc_rows": src_ai_rows,
        },
        "total_seconds": started.elapsed().as_secs_f64(),
    });
    o.write("compare-aiortc", &out)
}

/// Tries `counts` in order until one fails (a run that errs, e.g. a viewer refused, fails too);
/// returns the largest that passed and every row.
fn largest(
    side: &str,
    counts: &[usize],
    mut run: impl FnMut(usize) -> Result<(bool, serde_json::Value), String>,
) -> (usize, Vec<serde_json::Value>) {
    let mut best = 0;
    let mut rows = Vec::new();
    for &n in counts {
        match run(n) {
            Ok((ok, row)) => {
                rows.push(row);
                if !ok {
                    break;
                }
                best = n;
            }
            Err(e) => {
                println!("  {side:<8} N={n:<4} FAILS: {e}");
                rows.push(json!({"n": n, "error": e, "ok": false}));
                break;
            }
        }
    }
    (best, rows)
}

// ---------------------------------------------------------------- portcast side

struct PortcastRun {
    timings: Vec<FrameTiming>,
    report: ViewerReport,
    /// The sources' own counters (late skips + channel drops) since the daemon started.
    skips: u64,
    /// Pictures the encoders' rate control skipped since the daemon started.
    rate_skips: u64,
    cpu_per_s: f64,
}

/// The in-process daemon streaming to the viewer process, frames sent to nobody dropped.
fn run_portcast(
    avatars: &[(String, EncoderSettings)],
    viewers: usize,
    seconds: f64,
) -> Result<PortcastRun, String> {
    let mut run = scenarios::stream(avatars, viewers, seconds, true)?;
    run.timings.retain(|t| t.datagrams > 0);
    Ok(PortcastRun {
        skips: run.daemon.source_skips(),
        rate_skips: run.daemon.encoder_skips(),
        timings: run.timings,
        report: run.report,
        cpu_per_s: run.process_cpu_per_s,
    })
}

fn ns_us(a: u64, b: u64) -> f64 {
    b.saturating_sub(a) as f64 / 1000.0
}

/// Latency figures of one side.
#[derive(Default)]
struct Latency {
    f2p: Summary,
    f2p_p: Summary,
    f2p_idr: Summary,
    encode: Summary,
    send: Summary,
    net: Summary,
    kbps: f64,
    frames_received: u64,
    f2p_from_encoder_call: Summary,
    handoff: Summary,
    render: Summary,
}

impl Latency {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "frame_to_packet_us": self.f2p, "frame_to_packet_p_frames_us": self.f2p_p,
            "frame_to_packet_idr_us": self.f2p_idr, "encode_us": self.encode,
            "encode_out_to_sent_us": self.send, "sent_to_viewer_us": self.net,
            "kbit_per_s_sent": self.kbps, "frames_received": self.frames_received,
        })
    }
}

fn portcast_latency(r: &PortcastRun, seconds: f64) -> Latency {
    let t = &r.timings;
    let f2p = |sel: &dyn Fn(&FrameTiming) -> bool| {
        summarize(
            &t.iter()
                .filter(|x| sel(x))
                .map(|x| us(x.sent_at - x.captured_at))
                .collect::<Vec<_>>(),
        )
    };
    let arrivals = r.report.first_arrivals();
    let net: Vec<f64> = t
        .iter()
        .filter_map(|x| {
            let a = *arrivals.get(&(x.avatar.as_str(), x.frame_index))?;
            let sent = x.sent_wall.duration_since(UNIX_EPOCH).ok()?.as_nanos();
            Some((a as f64 - sent as f64) / 1000.0)
        })
        .collect();
    let span = match (t.first(), t.last()) {
        (Some(a), Some(b)) => (b.sent_at - a.sent_at).as_secs_f64(),
        _ => seconds,
    };
    Latency {
        f2p: f2p(&|_| true),
        f2p_p: f2p(&|x| !x.keyframe),
        f2p_idr: f2p(&|x| x.keyframe),
        encode: summarize(
            &t.iter()
                .map(|x| us(x.encoded_at - x.captured_at))
                .collect::<Vec<_>>(),
        ),
        send: summarize(
            &t.iter()
                .map(|x| us(x.sent_at - x.encoded_at))
                .collect::<Vec<_>>(),
        ),
        net: summarize(&net),
        kbps: t.iter().map(|x| x.bytes as f64).sum::<f64>() * 8.0 / span.max(0.001) / 1000.0,
        frames_received: r.report.clients.iter().map(|c| c.frames).sum(),
        ..Latency::default()
    }
}

/// Judges one portcast run of a scale scenario (`bounded`: also f2p p99 < 33 ms, no drop at all).
fn portcast_scale(r: &PortcastRun, n: usize, bounded: bool) -> (bool, serde_json::Value) {
    let (connected, loss) = r.report.connected_and_loss();
    let f2p = summarize(
        &r.timings
            .iter()
            .map(|x| us(x.sent_at - x.captured_at))
            .collect::<Vec<_>>(),
    );
    let (missing, span) = gaps(r.timings.iter().map(|t| (t.avatar.as_str(), t.frame_index)));
    // openh264's rate control may skip a picture of costly content (x264 as
    // aiortc runs it never does): a bitrate decision, reported but not a drop.
    let dropped = missing.saturating_sub(r.rate_skips);
    let drop_pct = 100.0 * dropped as f64 / span.max(1) as f64;
    let ok = connected == n
        && if bounded {
            dropped == 0 && f2p.p99 < BOUND_US
        } else {
            loss <= 1.0 && drop_pct <= 1.0
        };
    print_scale(
        "portcast",
        n,
        connected,
        loss,
        dropped,
        &f2p,
        r.cpu_per_s,
        ok,
    );
    (
        ok,
        json!({"n": n, "connected": connected, "loss_percent": loss, "dropped_frames": dropped,
               "dropped_percent": drop_pct, "source_skips_since_start": r.skips,
               "encoder_rate_control_skips": r.rate_skips, "frame_to_packet_us": f2p, "cpu_s_per_s": r.cpu_per_s,
               "viewer_process_cpu_s": r.report.cpu_seconds, "ok": ok}),
    )
}

// One printed table row: each argument is one column of it.
#[allow(clippy::too_many_arguments)]
fn print_scale(
    side: &str,
    n: usize,
    connected: usize,
    loss: f64,
    dropped: u64,
    f2p: &Summary,
    cpu: f64,
    ok: bool,
) {
    println!(
        "  {side:<8} N={n:<4} connected {connected:<4} loss {loss:>6.2}% dropped frames {dropped:<5} f2p p50 {:>8} p99 {:>8} server cpu {cpu:.2} s/s {}",
        fmt_us(f2p.p50),
        fmt_us(f2p.p99),
        if ok { "ok" } else { "FAILS" }
    );
}

// ---------------------------------------------------------------- aiortc side

/// Everything the aiortc side needs: the venv's python, the server script, the namespace.
struct AiortcEnv {
    python: PathBuf,
    script: PathBuf,
    exe: PathBuf,
    ns: Netns,
}

impl AiortcEnv {
    fn prepare() -> Result<AiortcEnv, String> {
        let bench_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = bench_dir.join("aiortc");
        let venv = bench_dir.join("../target/aiortc-venv");
        let python = ensure_venv(&venv, &dir.join("requirements.txt"))?;
        Ok(AiortcEnv {
            python,
            script: dir.join("server.py"),
            exe: std::env::current_exe().map_err(|e| format!("own executable: {e}"))?,
            ns: Netns::create()?,
        })
    }
}

/// Creates (or refreshes) the venv when its recorded requirements differ from `requirements`.
pub fn ensure_venv(venv: &Path, requirements: &Path) -> Result<PathBuf, String> {
    let wanted = std::fs::read_to_string(requirements)
        .map_err(|e| format!("{}: {e}", requirements.display()))?;
    let stamp = venv.join("portcast-requirements.txt");
    let python = venv.join("bin/python");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return Ok(python);
    }
    let base = ["python3.11", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import sys; sys.exit(sys.version_info < (3, 10))"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .ok_or("aiortc 1.16 needs Python >= 3.10: neither python3.11 nor python3 qualifies")?;
    println!("installing aiortc into {} (once) ...", venv.display());
    let log = venv.with_file_name("aiortc-venv-install.log");
    let steps: [Vec<&std::ffi::OsStr>; 2] = [
        vec![
            "-m".as_ref(),
            "venv".as_ref(),
            "--clear".as_ref(),
            venv.as_os_str(),
        ],
        vec![
            "-m".as_ref(),
            "pip".as_ref(),
            "install".as_ref(),
            "--disable-pip-version-check".as_ref(),
            "--only-binary".as_ref(),
            ":all:".as_ref(),
            "-r".as_ref(),
            requirements.as_os_str(),
        ],
    ];
    for (i, args) in steps.iter().enumerate() {
        let program = if i == 0 { Path::new(base) } else { &python };
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = Guarded(
            Command::new(program)
                .args(args)
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("{}: {e}", program.display()))?,
        );
        let status = child.wait_for(Duration::from_secs(600))?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            return Err(format!(
                "installing aiortc failed ({status}); last lines of {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

/// A child process killed when dropped.
struct Guarded(Child);

impl Guarded {
    fn wait_for(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let end = Instant::now() + limit;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) => {
                    let _ = self.0.kill();
                    let _ = self.0.wait();
                    return Err(format!("process {} did not finish in time", self.0.id()));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// User + system CPU seconds of the (still running) process.
    fn cpu_seconds(&self) -> f64 {
        let text =
            std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap_or_default();
        let fields: Vec<&str> = text
            .rsplit_once(')')
            .map_or("", |(_, r)| r)
            .split_whitespace()
            .collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (tick(11) + tick(12)) / 100.0
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A network namespace with loopback up and 198.18.9.1 on it; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        // Namespaces left by a run that was killed: their owner's pid is gone.
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                if let Some(pid) = name.strip_prefix(NS_PREFIX) {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = ip(&["netns", "del", name]);
                    }
                }
            }
        }
        let name = format!("{NS_PREFIX}{}", std::process::id());
        ip(&["netns", "add", &name]).map_err(|e| {
            format!("{e} (compare-aiortc runs aiortc in a network namespace: it needs root and iproute2)")
        })?;
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns.name, "addr", "add", NS_ADDR, "dev", "lo"])?;
        Ok(ns)
    }

    /// A command run inside the namespace.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

struct AiortcRun {
    frames: Vec<AiortcFrame>,
    summary: AiortcSummary,
    report: ViewerReport,
    cpu_per_s: f64,
}

/// Starts the aiortc server in the namespace, runs the viewer process there, collects the timings.
fn run_aiortc(
    env: &AiortcEnv,
    (width, height, bitrate): (u32, u32, u32),
    viewers: usize,
    avatars: &[String],
    seconds: f64,
) -> Result<AiortcRun, String> {
    let tag = format!("{}-{viewers}-{width}", std::process::id());
    let tmp = std::env::temp_dir();
    let timings_path = tmp.join(format!("portcast-aiortc-timings-{tag}.jsonl"));
    let stderr_path = tmp.join(format!("portcast-aiortc-server-{tag}.log"));
    let viewers_path = tmp.join(format!("portcast-aiortc-viewers-{tag}.json"));
    let limit = seconds + 60.0 + viewers as f64 * 0.2;
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| format!("{}: {e}", stderr_path.display()))?;
    let mut server = Guarded(
        env.ns
            .command(&env.python)
            .arg(&env.script)
            .args([
                "--width",
                &width.to_string(),
                "--height",
                &height.to_string(),
            ])
            .args(["--fps", &FPS.to_string(), "--bitrate", &bitrate.to_string()])
            .arg("--busy")
            .arg("--timings")
            .arg(&timings_path)
            .args(["--max-seconds", &format!("{:.0}", limit + 30.0)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting the aiortc server: {e}"))?,
    );
    let stdin: Option<ChildStdin> = server.0.stdin.take();
    let signal = read_listening(&mut server, &stderr_path)?;

    let cpu0 = server.cpu_seconds();
    let start = Instant::now();
    let mut vp = Guarded(
        env.ns
            .command(&env.exe)
            .args(["viewers", "--signal", &signal.to_string()])
            .args([
                "--count",
                &viewers.to_string(),
                "--avatars",
                &avatars.join(","),
            ])
            .args(["--seconds", &seconds.to_string(), "--fps", &FPS.to_string()])
            .arg("--out")
            .arg(&viewers_path)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the viewer process: {e}"))?,
    );
    let status = vp.wait_for(Duration::from_secs_f64(limit))?;
    let cpu_per_s = (server.cpu_seconds() - cpu0) / start.elapsed().as_secs_f64().max(0.001);
    if !status.success() {
        return Err(format!("viewer process against aiortc failed: {status}"));
    }
    let text = std::fs::read_to_string(&viewers_path)
        .map_err(|e| format!("{}: {e}", viewers_path.display()))?;
    let _ = std::fs::remove_file(&viewers_path);
    let report: ViewerReport =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", viewers_path.display()))?;

    // Closing stdin asks the server to close its peer connections and write its summary.
    drop(stdin);
    let status = server.wait_for(Duration::from_secs(20))?;
    if !status.success() {
        return Err(format!(
            "aiortc server exited with {status}; see {}",
            stderr_path.display()
        ));
    }
    let (frames, summary) = read_timings(&timings_path)?;
    let _ = std::fs::remove_file(&timings_path);
    let _ = std::fs::remove_file(&stderr_path);
    Ok(AiortcRun {
        frames,
        summary,
        report,
        cpu_per_s,
    })
}

/// Waits (bounded) for the server's `listening HOST:PORT` line.
fn read_listening(server: &mut Guarded, stderr: &Path) -> Result<std::net::SocketAddr, String> {
    let stdout = server
        .0
        .stdout
        .take()
        .ok_or("aiortc server has no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    line.trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            let log = std::fs::read_to_string(stderr).unwrap_or_default();
            format!(
                "aiortc server did not start (said {:?}); its stderr:\n{}",
                line.trim(),
                log.lines().rev().take(15).collect::<Vec<_>>().join("\n")
            )
        })
}

fn read_timings(path: &Path) -> Result<(Vec<AiortcFrame>, AiortcSummary), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut frames = Vec::new();
    let mut summary = None;
    for (i, line) in text.lines().enumerate() {
        let bad = |e: serde_json::Error| format!("{} line {}: {e}", path.display(), i + 1);
        let v: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
        match v["type"].as_str() {
            Some("frame") => frames.push(serde_json::from_value(v).map_err(bad)?),
            Some("summary") => summary = Some(serde_json::from_value(v).map_err(bad)?),
            _ => return Err(format!("{} line {}: unknown record", path.display(), i + 1)),
        }
    }
    let summary = summary.ok_or_else(|| format!("{}: no summary line", path.display()))?;
    Ok((frames, summary))
}

/// Per session, frames in order of their number.
fn by_session(frames: &[AiortcFrame]) -> HashMap<&str, Vec<&AiortcFrame>> {
    let mut m: HashMap<&str, Vec<&AiortcFrame>> = HashMap::new();
    for f in frames {
        m.entry(f.session.as_str()).or_default().push(f);
    }
    for v in m.values_mut() {
        v.sort_by_key(|f| f.n);
    }
    m
}

fn aiortc_latency(r: &AiortcRun) -> Latency {
    let f = &r.frames;
    let f2p = |sel: &dyn Fn(&AiortcFrame) -> bool| {
        summarize(
            &f.iter()
                .filter(|x| sel(x))
                .map(|x| ns_us(x.t_ready, x.t2))
                .collect::<Vec<_>>(),
        )
    };
    // The viewer numbers frames by its extended RTP time / 3000; unwrap the same way.
    let arrivals = r.report.first_arrivals();
    let ticks = u64::from(90_000 / FPS);
    let mut net = Vec::new();
    for frames in by_session(f).values() {
        let mut wraps = 0u64;
        let mut prev: Option<u64> = None;
        for x in frames {
            if prev.is_some_and(|p| x.rtp_ts < p) {
                wraps += 1 << 32;
            }
            prev = Some(x.rtp_ts);
            if let Some(a) = arrivals.get(&(x.avatar.as_str(), (x.rtp_ts + wraps) / ticks)) {
                net.push((*a as f64 - x.t2_wall as f64) / 1000.0);
            }
        }
    }
    let span = match (f.iter().map(|x| x.t2).min(), f.iter().map(|x| x.t2).max()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    Latency {
        f2p: f2p(&|_| true),
        f2p_p: f2p(&|x| !x.key),
        f2p_idr: f2p(&|x| x.key),
        encode: summarize(&f.iter().map(|x| ns_us(x.t0, x.t1)).collect::<Vec<_>>()),
        send: summarize(&f.iter().map(|x| ns_us(x.t1, x.t2)).collect::<Vec<_>>()),
        net: summarize(&net),
        kbps: f.iter().map(|x| x.bytes as f64).sum::<f64>() * 8.0 / span.max(0.001) / 1000.0,
        frames_received: r.report.clients.iter().map(|c| c.frames).sum(),
        f2p_from_encoder_call: summarize(&f.iter().map(|x| ns_us(x.t0, x.t2)).collect::<Vec<_>>()),
        handoff: summarize(&f.iter().map(|x| ns_us(x.t_ready, x.t0)).collect::<Vec<_>>()),
        render: summarize(
            &f.iter()
                .map(|x| ns_us(x.t_render, x.t_ready))
                .collect::<Vec<_>>(),
        ),
    }
}

/// Frames missing from each stream's numbering after its first `WARMUP_FRAMES` sent
/// (late source skips and dropped frames alike): (missing, frames the span should hold).
fn gaps<'a>(frames: impl Iterator<Item = (&'a str, u64)>) -> (u64, u64) {
    let mut streams: HashMap<&str, Vec<u64>> = HashMap::new();
    for (stream, n) in frames {
        streams.entry(stream).or_default().push(n);
    }
    let (mut missing, mut span) = (0, 0);
    for v in streams.values_mut() {
        v.sort_unstable();
        v.dedup();
        let steady = v.get(WARMUP_FRAMES as usize..).unwrap_or(&[]);
        if let (Some(a), Some(b)) = (steady.first(), steady.last()) {
            span += b - a + 1;
            missing += (b - a + 1).saturating_sub(steady.len() as u64);
        }
    }
    (missing, span)
}

fn aiortc_scale(r: &AiortcRun, n: usize, bounded: bool) -> (bool, serde_json::Value) {
    let (connected, loss) = r.report.connected_and_loss();
    let f2p = summarize(
        &r.frames
            .iter()
            .map(|x| ns_us(x.t_ready, x.t2))
            .collect::<Vec<_>>(),
    );
    let (dropped, span) = gaps(r.frames.iter().map(|f| (f.session.as_str(), f.n)));
    let drop_pct = 100.0 * dropped as f64 / span.max(1) as f64;
    let late: u64 = r.summary.late_skips.values().sum();
    let sending = by_session(&r.frames).len();
    let ok = connected == n
        && sending == n
        && if bounded {
            dropped == 0 && f2p.p99 < BOUND_US
        } else {
            loss <= 1.0 && drop_pct <= 1.0
        };
    print_scale("aiortc", n, connected, loss, dropped, &f2p, r.cpu_per_s, ok);
    (
        ok,
        json!({"n": n, "connected": connected, "sessions_sending": sending, "loss_percent": loss,
               "dropped_frames": dropped, "dropped_percent": drop_pct, "source_late_skips": late,
               "frame_to_packet_us": f2p, "cpu_s_per_s": r.cpu_per_s,
               "viewer_process_cpu_s": r.report.cpu_seconds, "ok": ok}),
    )
}
