//! The scenarios: each measures, prints a table, and writes JSON.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use portcast_engine::encoder::EncoderSettings;
use portcast_engine::{ConnId, Engine, EngineConfig, Output, SessionId, SocketSpec};
use portcast_net::FrameTiming;
use serde_json::{json, Value};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};

use crate::daemon::{Daemon, ViewerProcess};
use crate::naive::Naive;
use crate::stats::{fmt_us, summarize, us, Summary};
use crate::viewers::{process_cpu_seconds, rss_bytes, thread_cpu_seconds, ViewerReport};

/// Options common to all scenarios.
pub struct Opts {
    /// Seconds of streaming per measurement.
    pub seconds: f64,
    /// Output folder.
    pub out: PathBuf,
    /// Short run with small sizes.
    pub smoke: bool,
}

impl Opts {
    pub fn secs(&self) -> f64 {
        if self.smoke {
            self.seconds.min(2.0)
        } else {
            self.seconds
        }
    }

    pub fn write(&self, name: &str, value: &serde_json::Value) -> Result<(), String> {
        std::fs::create_dir_all(&self.out).map_err(|e| format!("{}: {e}", self.out.display()))?;
        let path = self.out.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
        Ok(())
    }
}

pub fn settings(width: u32, height: u32, bitrate_bps: u32, threads: u16) -> EncoderSettings {
    EncoderSettings {
        width,
        height,
        fps: 30,
        bitrate_bps,
        threads,
    }
}

fn wall_ns(t: std::time::SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// What one streaming run measured.
pub struct Streamed {
    /// The (stopped) daemon, for its source counters.
    pub daemon: Daemon,
    /// Every probe report, frames sent to nobody included.
    pub timings: Vec<FrameTiming>,
    /// The viewer process's report.
    pub report: ViewerReport,
    /// Loop-thread CPU seconds per second over the steady part of the run.
    pub loop_cpu_per_s: f64,
    /// Whole-process CPU seconds per second over the run (loop, sources, harness).
    pub process_cpu_per_s: f64,
    /// Peak RSS growth of this process during the run, bytes.
    pub rss_growth: u64,
}

/// Streams for `seconds` from an in-process daemon to the viewer process.
pub fn stream(
    avatars: &[(String, EncoderSettings)],
    viewers: usize,
    seconds: f64,
    busy: bool,
) -> Result<Streamed, String> {
    let d = Daemon::start_with(avatars, viewers + 16, busy)?;
    stream_from(d, avatars, viewers, seconds, false)
}

/// [`stream`] from the daemon `d` already started with `avatars`; with `voiced`
/// every viewer takes its avatar's audio.
pub fn stream_from(
    mut d: Daemon,
    avatars: &[(String, EncoderSettings)],
    viewers: usize,
    seconds: f64,
    voiced: bool,
) -> Result<Streamed, String> {
    let mut timings = Vec::new();
    let names: Vec<String> = avatars.iter().map(|(n, _)| n.clone()).collect();
    let driven = drive(
        d.signal,
        d.loop_tid,
        &names,
        viewers,
        seconds,
        voiced,
        || timings.extend(d.timings()),
    )?;
    timings.extend(d.timings());
    d.stop();
    Ok(Streamed {
        daemon: d,
        timings,
        report: driven.report,
        loop_cpu_per_s: driven.loop_cpu_per_s,
        process_cpu_per_s: driven.process_cpu_per_s,
        rss_growth: driven.rss_growth,
    })
}

/// What driving the viewer process against a server measured.
pub struct Driven {
    /// The viewer process's report.
    pub report: ViewerReport,
    /// The server loop thread's CPU seconds per second over the steady part of the run.
    pub loop_cpu_per_s: f64,
    /// Whole-process CPU seconds per second over the run.
    pub process_cpu_per_s: f64,
    /// Peak RSS growth of this process during the run, bytes.
    pub rss_growth: u64,
}

/// Runs the viewer process against the server at `signal` (`viewers` viewers
/// of `names`, for `seconds`), sampling the CPU time of the server's loop
/// thread `loop_tid` every 250 ms (`tick` runs at each sample).
pub fn drive(
    signal: std::net::SocketAddr,
    loop_tid: u32,
    names: &[String],
    viewers: usize,
    seconds: f64,
    voiced: bool,
    mut tick: impl FnMut(),
) -> Result<Driven, String> {
    let rss_before = rss_bytes();
    let cpu_before = process_cpu_seconds();
    let vp = ViewerProcess::start(signal, viewers, names, seconds, 30, voiced)?;
    // Sample the loop thread's CPU time; the rate over the steady part is what counts.
    let start = Instant::now();
    let mut samples = vec![(start, thread_cpu_seconds(loop_tid))];
    let limit = Duration::from_secs_f64(seconds + 60.0 + viewers as f64 * 0.05);
    let mut peak_rss = rss_before;
    let report = loop {
        std::thread::sleep(Duration::from_millis(250));
        tick();
        samples.push((Instant::now(), thread_cpu_seconds(loop_tid)));
        peak_rss = peak_rss.max(rss_bytes());
        if samples.len() % 4 == 0 && start.elapsed() > limit {
            return Err("viewer process overran its time".into());
        }
        if vp.finished() {
            break vp.wait(Duration::from_secs(10))?;
        }
    };
    // Steady window: the last `seconds * 0.8` of the run.
    let end = samples.last().map_or(start, |s| s.0);
    let from = end - Duration::from_secs_f64(seconds * 0.8);
    let a = samples
        .iter()
        .find(|s| s.0 >= from)
        .copied()
        .unwrap_or(samples[0]);
    let b = samples[samples.len() - 1];
    Ok(Driven {
        report,
        loop_cpu_per_s: (b.1 - a.1) / b.0.duration_since(a.0).as_secs_f64().max(0.001),
        process_cpu_per_s: (process_cpu_seconds() - cpu_before)
            / start.elapsed().as_secs_f64().max(0.001),
        rss_growth: peak_rss.saturating_sub(rss_before),
    })
}

/// Scenario 1.
pub fn latency(o: &Opts) -> Result<(), String> {
    let cases: Vec<(&str, u32, u32, u32)> = if o.smoke {
        vec![("360p", 640, 360, 1_000_000)]
    } else {
        vec![
            ("360p", 640, 360, 1_000_000),
            ("720p", 1280, 720, 2_500_000),
            ("1080p", 1920, 1080, 4_000_000),
        ]
    };
    let threads: &[u16] = if o.smoke { &[1] } else { &[1, 2] };
    println!(
        "\n## latency: one avatar, one viewer over loopback, 30 fps ({} s each)",
        o.secs()
    );
    println!(
        "{:<6} {:>3} {:<4} {:>5} | {:>28} | {:>28} | {:>24} | {:>28} | {:>10}",
        "res",
        "thr",
        "kind",
        "n",
        "encode t1-t0 p50/p99/p99.9/max",
        "engine+send t2-t1",
        "p99 wake/engine/kernel",
        "frame-to-packet t2-t0",
        "t3-t2 p50"
    );
    let mut rows = Vec::new();
    for (label, w, h, bps) in &cases {
        for &t in threads {
            let avatars = vec![("bench".to_string(), settings(*w, *h, *bps, t))];
            let Streamed {
                timings,
                report,
                loop_cpu_per_s: cpu,
                ..
            } = stream(&avatars, 1, o.secs(), true)?;
            let arrivals: HashMap<u64, u128> = report
                .frames
                .iter()
                .map(|(_, idx, first, _, _)| (*idx, *first))
                .collect();
            let delivered: Vec<&FrameTiming> = timings.iter().filter(|t| t.datagrams > 0).collect();
            let kbps = encoded_kbps(&delivered);
            println!(
                "{label} threads={t}: encoder output {kbps:.0} kbit/s (test pattern with noise)"
            );
            for kind in ["IDR", "P"] {
                let sel: Vec<&&FrameTiming> = delivered
                    .iter()
                    .filter(|t| t.keyframe == (kind == "IDR"))
                    .collect();
                // Percentiles of one span (end minus start) over the selected frames.
                let span = |d: fn(&FrameTiming) -> std::time::Duration| {
                    summarize(&sel.iter().map(|t| us(d(t))).collect::<Vec<_>>())
                };
                let enc = span(|t| t.encoded_at - t.captured_at);
                let eng = span(|t| t.sent_at - t.encoded_at);
                let f2p = span(|t| t.sent_at - t.captured_at);
                // t2-t1 = channel + loop wake-up (t1 to dequeue) + engine + sendmmsg.
                let wake = span(|t| t.dequeued_at.saturating_duration_since(t.encoded_at));
                let work = span(|t| t.sent_at - t.dequeued_at);
                // ... of which the engine (packetize, SRTP) and the kernel (sendmmsg).
                let engine = span(|t| t.written_at - t.dequeued_at);
                let kernel = span(|t| t.sent_at - t.written_at);
                let net: Vec<f64> = sel
                    .iter()
                    .filter_map(|t| {
                        let a = *arrivals.get(&t.frame_index)?;
                        Some((a as f64 - wall_ns(t.sent_wall) as f64) / 1000.0)
                    })
                    .collect();
                let net = summarize(&net);
                println!(
                    "{:<6} {:>3} {:<4} {:>5} | {:>28} | {:>28} | {:>24} | {:>28} | {:>10}",
                    label,
                    t,
                    kind,
                    enc.n,
                    quad(&enc),
                    quad(&eng),
                    format!(
                        "{}/{}/{}",
                        fmt_us(wake.p99),
                        fmt_us(engine.p99),
                        fmt_us(kernel.p99)
                    ),
                    quad(&f2p),
                    fmt_us(net.p50)
                );
                rows.push(json!({
                    "resolution": label, "threads": t, "kind": kind, "bitrate_bps": bps,
                    "encode_us": enc, "engine_send_us": eng, "frame_to_packet_us": f2p,
                    "channel_and_wake_us": wake, "engine_and_sendto_us": work,
                    "engine_us": engine, "sendmmsg_us": kernel,
                    "encoded_kbit_per_s": kbps,
                    "send_to_receive_us": net, "loop_cpu_per_s": cpu,
                    "frames_received": report.clients.first().map_or(0, |c| c.frames),
                }));
            }
        }
    }
    o.write(
        "latency",
        &json!({ "scenario": "latency", "seconds": o.secs(), "rows": rows }),
    )
}

/// The encoder's output rate over the frames given.
fn encoded_kbps(frames: &[&FrameTiming]) -> f64 {
    match (frames.first(), frames.last()) {
        (Some(a), Some(b)) if b.sent_at > a.sent_at => {
            let bytes: usize = frames.iter().map(|t| t.bytes).sum();
            bytes as f64 * 8.0 / 1000.0 / b.sent_at.duration_since(a.sent_at).as_secs_f64()
        }
        _ => 0.0,
    }
}

fn quad(s: &Summary) -> String {
    format!(
        "{}/{}/{}/{}",
        fmt_us(s.p50),
        fmt_us(s.p99),
        fmt_us(s.p999),
        fmt_us(s.max)
    )
}

/// Loop CPU (s/s) below which a step's ratio to the naive loop is not given:
/// /proc counts CPU time in 10 ms ticks.
const MIN_CPU_FOR_RATIO: f64 = 0.01;

/// Scenario 2. With `naive` (a number of rounds), each viewer count is also
/// served by the naive str0m loop, the two taking turns that many times; the
/// median of the rounds' ratios is what the count reports.
pub fn fanout(
    o: &Opts,
    counts: Option<Vec<usize>>,
    voiced: bool,
    estimation: bool,
    naive: Option<usize>,
) -> Result<(), String> {
    let counts = counts.unwrap_or_else(|| {
        if o.smoke {
            vec![1, 10]
        } else {
            vec![1, 10, 50, 100, 200, 400]
        }
    });
    let (w, h) = if o.smoke { (640, 360) } else { (1280, 720) };
    println!(
        "\n## fanout: one {w}x{h} 2 Mbit/s avatar{} to N viewers ({} s each), bandwidth estimation {}",
        if voiced {
            " speaking (Opus 32 kbit/s, every viewer takes it)"
        } else {
            ""
        },
        o.secs(),
        if estimation {
            "on (str0m paces each viewer: f2p is the frame's first burst)"
        } else {
            "off"
        }
    );
    println!(
        "{:>5} {:>9} {:>10} {:>12} {:>9} {:>12} {:>12} {:>12} {:>14}",
        "N",
        "connected",
        "pkts/s",
        "loop cpu/s",
        "loss %",
        "spread p50",
        "spread p99",
        "f2p p99",
        "RSS/viewer KiB"
    );
    let rounds = if voiced { 1 } else { naive.unwrap_or(1).max(1) };
    let mut rows = Vec::new();
    'counts: for n in counts {
        let (mut ratios, mut bit_ratios) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut row = fanout_portcast(o, (w, h), n, voiced, estimation)?;
            if rounds > 1 {
                row["round"] = json!(round + 1);
            }
            let cpu = row["loop_cpu_s_per_s"].as_f64().unwrap_or(0.0);
            let (connected, loss) = (
                row["connected"].as_u64().unwrap_or(0) as usize,
                row["loss_percent"].as_f64().unwrap_or(100.0),
            );
            if naive.is_some() && !voiced {
                // The same viewers against the naive str0m server, right after: viewers per
                // core of loop time is n / cpu, so the ratio is naive cpu / portcast cpu.
                let base = fanout_naive(o, (w, h), n, estimation)?;
                let naive_cpu = base["loop_cpu_s_per_s"].as_f64().unwrap_or(0.0);
                row["naive"] = base;
                // Below 1 % of a core either figure is a few clock ticks: no ratio.
                if cpu.min(naive_cpu) >= MIN_CPU_FOR_RATIO {
                    let ratio = naive_cpu / cpu;
                    // The naive server loops canned pictures (an IDR each second), so
                    // its viewers may receive a little more or less: per bit too.
                    let bits = |r: &Value| r["received_kbit_per_s"].as_f64().unwrap_or(0.0);
                    let per_bit = ratio * bits(&row) / bits(&row["naive"]).max(1.0);
                    println!(
                        "{n:>5} viewers, round {}: portcast serves {ratio:.2}x the naive loop's viewers per core ({per_bit:.2}x per bit received)",
                        round + 1
                    );
                    ratios.push(ratio);
                    bit_ratios.push(per_bit);
                    row["naive"]["portcast_viewers_per_core_ratio"] = json!(ratio);
                    row["naive"]["portcast_bits_per_core_ratio"] = json!(per_bit);
                } else {
                    println!(
                        "{n:>5} viewers, round {}: too little CPU for a ratio",
                        round + 1
                    );
                }
            }
            rows.push(row);
            if connected < n || loss > 1.0 {
                println!("stopping: {connected}/{n} connected, {loss:.2}% loss");
                break 'counts;
            }
        }
        if ratios.len() > 1 {
            let mut sorted = ratios.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            bit_ratios.sort_by(f64::total_cmp);
            let bit_median = bit_ratios[bit_ratios.len() / 2];
            println!(
                "{n:>5} viewers: portcast serves {median:.2}x the naive loop's viewers per core (median of {} rounds, {:.2}-{:.2}x; per bit received {bit_median:.2}x)",
                sorted.len(),
                sorted[0],
                sorted[sorted.len() - 1]
            );
            rows.push(json!({
                "viewers": n, "rounds": sorted.len(), "ratio_median": median,
                "ratio_min": sorted[0], "ratio_max": sorted[sorted.len() - 1], "ratios": ratios,
                "bits_ratio_median": bit_median,
            }));
        }
    }
    let name = match (voiced, estimation) {
        (true, true) => "fanout_audio",
        (true, false) => "fanout_audio_no_estimation",
        (false, true) => "fanout",
        (false, false) => "fanout_no_estimation",
    };
    let name = if naive.is_some() {
        format!("{name}_vs_naive")
    } else {
        name.to_string()
    };
    o.write(
        &name,
        &json!({ "scenario": name, "seconds": o.secs(), "rows": rows }),
    )
}

/// One fan-out step against portcast: prints its row, returns it as JSON.
fn fanout_portcast(
    o: &Opts,
    (w, h): (u32, u32),
    n: usize,
    voiced: bool,
    estimation: bool,
) -> Result<Value, String> {
    let avatars = vec![("bench".to_string(), settings(w, h, 2_000_000, 1))];
    let Streamed {
        timings,
        report,
        loop_cpu_per_s: cpu,
        rss_growth: rss_delta,
        ..
    } = stream_from(
        Daemon::start_fanout(&avatars, n + 16, voiced, estimation)?,
        &avatars,
        n,
        o.secs(),
        voiced,
    )?;
    let (connected, loss) = report.connected_and_loss();
    let heard = report.clients.iter().map(|c| c.audio_packets).sum::<u64>();
    let steady: Vec<&FrameTiming> = timings.iter().filter(|t| t.datagrams > 0).collect();
    // Received by the viewers (RTP in completed frames) over the run: with
    // estimation on, str0m's pacer sends most of a frame's datagrams after
    // the write that the frame probe times.
    let pps = report.clients.iter().map(|c| c.packets).sum::<u64>() as f64 / o.secs();
    let received_kbps = received_kbps(&report, o.secs());
    let kbps = encoded_kbps(&steady);
    let spread = spread_at(&report, n);
    let f2p = summarize(
        &steady
            .iter()
            .map(|t| us(t.sent_at - t.captured_at))
            .collect::<Vec<_>>(),
    );
    let rss_per = rss_delta as f64 / n as f64 / 1024.0;
    println!(
        "{:>5} {:>9} {:>10.0} {:>12.3} {:>9.3} {:>12} {:>12} {:>12} {:>14.0}",
        n,
        connected,
        pps,
        cpu,
        loss,
        fmt_us(spread.p50),
        fmt_us(spread.p99),
        fmt_us(f2p.p99),
        rss_per
    );
    Ok(json!({
        "viewers": n, "connected": connected, "packets_per_s": pps, "encoded_kbit_per_s": kbps,
        "received_kbit_per_s": received_kbps, "loop_cpu_s_per_s": cpu, "loss_percent": loss, "spread_us": spread,
        "frame_to_packet_us": f2p, "rss_per_viewer_bytes": rss_per * 1024.0,
        "viewer_process_cpu_s": report.cpu_seconds, "audio_packets_heard": heard,
    }))
}

/// One fan-out step against the naive str0m server: prints its row, returns it as JSON.
fn fanout_naive(o: &Opts, (w, h): (u32, u32), n: usize, estimation: bool) -> Result<Value, String> {
    let mut server = Naive::start(settings(w, h, 2_000_000, 1), 90, estimation)?;
    let names = ["bench".to_string()];
    let run = drive(
        server.signal,
        server.loop_tid,
        &names,
        n,
        o.secs(),
        false,
        || {},
    );
    server.stop();
    let run = run?;
    let (connected, loss) = run.report.connected_and_loss();
    let pps = run.report.clients.iter().map(|c| c.packets).sum::<u64>() as f64 / o.secs();
    let received_kbps = received_kbps(&run.report, o.secs());
    let spread = spread_at(&run.report, n);
    println!(
        "{:>5} {:>9} {:>10.0} {:>12.3} {:>9.3} {:>12} {:>12} {:>12} {:>14}   (naive)",
        n,
        connected,
        pps,
        run.loop_cpu_per_s,
        loss,
        fmt_us(spread.p50),
        fmt_us(spread.p99),
        "-",
        "-"
    );
    Ok(json!({
        "connected": connected, "packets_per_s": pps, "loop_cpu_s_per_s": run.loop_cpu_per_s,
        "received_kbit_per_s": received_kbps, "loss_percent": loss, "spread_us": spread,
    }))
}

/// Video the viewers received in completed frames, kbit/s summed over them.
fn received_kbps(report: &ViewerReport, secs: f64) -> f64 {
    report.clients.iter().map(|c| c.frame_bytes).sum::<u64>() as f64 * 8.0 / 1000.0 / secs
}

/// First to last viewer's arrival of each frame that all `n` viewers got, in us: the
/// kernel's receive time of the datagram that completed the frame at each viewer
/// (`rxstamp`), so the viewer process's own backlog does not count.
fn spread_at(report: &ViewerReport, n: usize) -> Summary {
    summarize(
        &report
            .frames
            .iter()
            .filter(|f| f.4 as usize == n)
            .map(|f| (f.3 - f.2) as f64 / 1000.0)
            .collect::<Vec<_>>(),
    )
}

/// Scenario 3.
pub fn sources(o: &Opts, counts: Option<Vec<usize>>, busy: bool) -> Result<(), String> {
    let counts = counts.unwrap_or_else(|| {
        if o.smoke {
            vec![1, 2]
        } else {
            vec![1, 5, 10, 20, 30, 40, 50, 60]
        }
    });
    println!(
        "\n## sources: N 640x360 30 fps 1 Mbit/s avatars ({} pattern), one viewer each ({} s each)",
        if busy { "busy" } else { "plain" },
        o.secs()
    );
    println!(
        "{:>4} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "N", "f2p p50", "f2p p99", "skipped", "rate skip", "dropped", "received", "ok"
    );
    let mut rows = Vec::new();
    let mut best = 0;
    for n in counts {
        let avatars: Vec<(String, EncoderSettings)> = (0..n)
            .map(|i| (format!("src{i}"), settings(640, 360, 1_000_000, 1)))
            .collect();
        let Streamed {
            daemon: d,
            timings,
            report,
            ..
        } = stream(&avatars, n, o.secs(), busy)?;
        let steady: Vec<&FrameTiming> = timings.iter().filter(|t| t.datagrams > 0).collect();
        let f2p = summarize(
            &steady
                .iter()
                .map(|t| us(t.sent_at - t.captured_at))
                .collect::<Vec<_>>(),
        );
        let skipped = d.source_skips();
        // Pictures openh264's rate control chose not to encode (costly content
        // for the bitrate): a bitrate decision, reported, not counted as drops.
        let rate_skips = d.encoder_skips();
        let received: u64 = report.clients.iter().map(|c| c.frames).sum();
        let all_connected = report.clients.iter().all(|c| c.connected);
        // Dropped = frame numbers missing at a viewer after its first second
        // (start-up, while the encoders and viewers all start at once, is excluded;
        // `skipped` above counts from daemon start and is reported too).
        let mut per_avatar: HashMap<&str, Vec<u64>> = HashMap::new();
        for (a, idx, ..) in &report.frames {
            per_avatar.entry(a.as_str()).or_default().push(*idx);
        }
        let dropped: u64 = per_avatar
            .values_mut()
            .map(|v| {
                v.sort_unstable();
                let first = v.first().copied().unwrap_or(0) + 30;
                let last = v.last().copied().unwrap_or(0);
                let seen = v.iter().filter(|i| **i >= first).count() as u64;
                (last + 1).saturating_sub(first).saturating_sub(seen)
            })
            .sum::<u64>()
            .saturating_sub(rate_skips);
        let ok = all_connected && dropped == 0 && f2p.p99 < 33_333.0;
        if ok {
            best = best.max(n);
        }
        println!(
            "{:>4} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>6}",
            n,
            fmt_us(f2p.p50),
            fmt_us(f2p.p99),
            skipped,
            rate_skips,
            dropped,
            received,
            ok
        );
        rows.push(json!({
            "sources": n, "frame_to_packet_us": f2p, "skipped_frames_since_start": skipped,
            "encoder_rate_control_skips": rate_skips,
            "dropped_frames_steady": dropped,
            "frames_received": received, "all_connected": all_connected, "within_bound": ok,
        }));
        if !ok {
            break;
        }
    }
    println!("largest N within the 33 ms p99 bound with no dropped frame: {best}");
    o.write(
        if busy { "sources-busy" } else { "sources" },
        &json!({ "scenario": "sources", "busy_pattern": busy, "seconds": o.secs(), "largest_ok": best, "rows": rows }),
    )
}

/// Scenario 4.
pub fn setup(o: &Opts, offers: usize) -> Result<(), String> {
    let offers = if o.smoke { offers.min(50) } else { offers };
    println!("\n## setup: {offers} offers through the engine, then sessions over loopback");
    // Offers from str0m clients, made before timing starts.
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .ok_or("no certificate")?;
    let now = Instant::now();
    let sdps: Vec<String> = (0..offers)
        .map(|i| {
            let mut rtc = RtcConfig::new()
                .set_dtls_cert(cert.clone())
                .set_extension(5, str0m::rtp::Extension::PlayoutDelay)
                .build(now);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 20000 + (i % 40000) as u16));
            if let Ok(c) = Candidate::host(addr, "udp") {
                rtc.add_local_candidate(c);
            }
            let mut api = rtc.sdp_api();
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            api.apply()
                .map(|(o, _)| o.to_sdp_string())
                .unwrap_or_default()
        })
        .collect();
    let mut engine = Engine::new(
        EngineConfig {
            sockets: (0..5)
                .map(|i| SocketSpec {
                    local: std::net::SocketAddr::from(([127, 0, 0, 1], 10111 + i)),
                    public: std::net::SocketAddr::from(([198, 18, 0, 1], 10111 + i)),
                })
                .collect(),
            max_sessions: offers + 1,
            max_sessions_per_avatar: offers + 1,
            ..EngineConfig::default()
        },
        Instant::now(),
    )
    .map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(offers);
    for (i, sdp) in sdps.iter().enumerate() {
        let conn = ConnId(i as u64);
        let id = format!("s{i}");
        let msg = json!({"type":"webrtc_offer","session_id":id,"user_id":5,"avatar_id":"test-pattern","sdp":sdp})
            .to_string();
        engine.open_connection(conn, SessionId::parse(&id).map_err(|e| e.to_string())?);
        let t = Instant::now();
        engine.handle_signal(t, conn, &msg);
        let mut answered = false;
        loop {
            match engine.poll_output() {
                Output::Timeout(_) => break,
                Output::Signal { text, .. } => answered = text.contains("webrtc_answer"),
                _ => {}
            }
        }
        times.push(us(t.elapsed()));
        if !answered {
            return Err(format!("offer {i} was not answered"));
        }
    }
    let answer = summarize(&times);
    println!(
        "engine offer-to-answer ({} sessions live at the end): p50 {} p99 {} max {}",
        engine.session_count(),
        fmt_us(answer.p50),
        fmt_us(answer.p99),
        fmt_us(answer.max)
    );
    // Real sessions: WebSocket offer, ICE, DTLS, over loopback.
    let n = if o.smoke { 10 } else { 200 };
    let avatars = vec![("bench".to_string(), settings(320, 180, 300_000, 1))];
    let Streamed { report, .. } = stream(&avatars, n, 3.0, false)?;
    let ws_answer = summarize(
        &report
            .clients
            .iter()
            .map(|c| c.answer_ms * 1000.0)
            .collect::<Vec<_>>(),
    );
    let connect = summarize(
        &report
            .clients
            .iter()
            .filter_map(|c| c.connect_ms)
            .map(|m| m * 1000.0)
            .collect::<Vec<_>>(),
    );
    let connected = report.clients.iter().filter(|c| c.connected).count();
    // Clients offer one after another, then all run ICE + DTLS at once: the
    // slowest connect time bounds how long the daemon took to set them all up.
    let per_s = connected as f64 / (connect.max / 1e6).max(0.001);
    println!(
        "{n} sessions over loopback: {connected} connected; offer-to-answer over WebSocket p50 {} p99 {}; offer-to-DTLS-connected p50 {} p99 {}; ~{per_s:.0} sessions established/s",
        fmt_us(ws_answer.p50),
        fmt_us(ws_answer.p99),
        fmt_us(connect.p50),
        fmt_us(connect.p99)
    );
    o.write(
        "setup",
        &json!({
            "scenario": "setup", "offers": offers, "engine_offer_to_answer_us": answer,
            "sessions": n, "connected": connected, "ws_offer_to_answer_us": ws_answer,
            "offer_to_connected_us": connect, "sessions_per_s": per_s,
        }),
    )
}
