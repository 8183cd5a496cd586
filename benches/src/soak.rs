//! The soak: sessions connecting and disconnecting in churn around one steady
//! viewer, with the daemon's memory and file descriptors sampled throughout.
//!
//! Churn comes in rounds: a viewer process opens a batch of sessions (real
//! ICE, DTLS and SRTP), receives for a moment and exits, which closes every
//! WebSocket at once. The steady viewer runs in its own process for the
//! whole soak. At the end the daemon must be back within 5% of where it
//! started (RSS and open fds), with no session left behind.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::daemon::{Daemon, ViewerProcess};
use crate::scenarios::{settings, Opts};
use crate::viewers::rss_bytes;

extern "C" {
    /// glibc: give free heap memory back to the kernel.
    fn malloc_trim(pad: usize) -> i32;
}

/// RSS after asking glibc to return free memory. Without the trim, glibc keeps
/// the high-water mark of the busiest round in its arenas and RSS says nothing
/// about leaks; with it, memory still held is memory still referenced.
fn trimmed_rss() -> u64 {
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping; it takes no
    // pointers from us and is safe to call at any time from any thread.
    unsafe {
        malloc_trim(0);
    }
    rss_bytes()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn metrics_text(signal: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(signal) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn labelled(text: &str, family: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| l.starts_with(family))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let v = value.parse::<f64>().ok()? as u64;
            (v > 0).then(|| (name.trim_start_matches(family).to_string(), v))
        })
        .collect()
}

/// Runs the soak: `sessions` churned over about `seconds`.
pub fn soak(o: &Opts, sessions: usize, max_growth_pct: f64) -> Result<(), String> {
    let (sessions, seconds) = if o.smoke {
        (sessions.min(40), 8.0)
    } else {
        (sessions, o.seconds.max(30.0))
    };
    let batch = 50.min(sessions).max(1);
    let rounds = sessions.div_ceil(batch);
    let round_time = (seconds / rounds as f64).max(1.5);
    println!("\n## soak: {sessions} sessions in {rounds} rounds of {batch}, ~{seconds:.0} s, one steady viewer");
    let d = Daemon::start_unprobed(
        &[("soak".to_string(), settings(640, 360, 800_000, 1))],
        batch + 16,
    )?;
    let steady = ViewerProcess::start(
        d.signal,
        1,
        &["soak".to_string()],
        seconds + round_time * 2.0 + 10.0,
        30,
        false,
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let cold = (trimmed_rss(), open_fds());
    // One warm-up batch first: the tables (sessions, demux, connections,
    // output queue) keep their grown capacity, which is a high-water mark and
    // not a leak. "start" is measured after it; the cold figure is reported too.
    ViewerProcess::start(d.signal, batch, &["soak".to_string()], 1.0, 30, false)?
        .wait(Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(1));
    let start = (trimmed_rss(), open_fds());
    crate::heap::start_counting();
    let mut samples = vec![json!({"t": 0.0, "rss": start.0, "fds": start.1})];
    println!(
        "cold: RSS {:.1} MiB, {} fds; start (after a {batch}-session warm-up): RSS {:.1} MiB, {} fds",
        cold.0 as f64 / 1048576.0,
        cold.1,
        start.0 as f64 / 1048576.0,
        start.1
    );
    let began = Instant::now();
    let mut peak = start;
    for r in 0..rounds {
        let n = batch.min(sessions - r * batch);
        let vp = ViewerProcess::start(
            d.signal,
            n,
            &["soak".to_string()],
            round_time * 0.6,
            30,
            false,
        )?;
        let report = vp.wait(Duration::from_secs_f64(round_time * 0.6 + 60.0))?;
        let connected = report.clients.iter().filter(|c| c.connected).count();
        let untrimmed = rss_bytes();
        let now = (trimmed_rss(), open_fds());
        peak = (peak.0.max(now.0), peak.1.max(now.1));
        let heap = crate::heap::live_since_start();
        samples.push(json!({"t": began.elapsed().as_secs_f64(), "rss": now.0, "rss_untrimmed": untrimmed, "fds": now.1, "heap_since_start": heap, "connected": connected, "of": n}));
        println!(
            "round {:>3}: {connected}/{n} connected; RSS {:.1} MiB ({:.1} MiB before trim), {} fds, heap {:+.0} KiB since start",
            r + 1,
            now.0 as f64 / 1048576.0,
            untrimmed as f64 / 1048576.0,
            now.1,
            heap as f64 / 1024.0
        );
        let left = Duration::from_secs_f64(round_time)
            .saturating_sub(Duration::from_secs_f64(round_time * 0.6));
        std::thread::sleep(left.min(Duration::from_secs(2)));
    }
    // Let the last closes settle (WebSocket close ends sessions at once).
    std::thread::sleep(Duration::from_secs(2));
    let end = (trimmed_rss(), open_fds());
    let end_heap = crate::heap::live_since_start();
    let m = metrics_text(d.signal);
    let steady_report = steady.wait(Duration::from_secs(120))?;
    let live: u64 = labelled(&m, "portcast_sessions{")
        .iter()
        .map(|(_, v)| *v)
        .sum();
    // The steady viewer's frame rate per 5 s window, from its completion times.
    let mut times: Vec<u128> = steady_report.frames.iter().map(|f| f.2).collect();
    times.sort_unstable();
    let mut fps = Vec::new();
    if let (Some(first), Some(last)) = (times.first(), times.last()) {
        let window = 5_000_000_000u128;
        let mut t = *first;
        while t + window <= *last {
            let n = times
                .iter()
                .filter(|x| **x >= t && **x < t + window)
                .count();
            fps.push(n as f64 / 5.0);
            t += window;
        }
    }
    let errors = labelled(&m, "portcast_signal_errors_total");
    let ended = labelled(&m, "portcast_sessions_ended_total");
    let rss_growth = end.0 as f64 / start.0.max(1) as f64 - 1.0;
    let fd_growth = end.1 as f64 / start.1.max(1) as f64 - 1.0;
    println!(
        "end: RSS {:.1} MiB ({:+.1}%), {} fds ({:+.1}%); peak RSS {:.1} MiB, {} fds; live sessions {live} (the steady one)",
        end.0 as f64 / 1048576.0,
        rss_growth * 100.0,
        end.1,
        fd_growth * 100.0,
        peak.0 as f64 / 1048576.0,
        peak.1
    );
    println!(
        "heap still allocated since start: {:+.0} KiB (the rest of the RSS change is allocator slack)",
        end_heap as f64 / 1024.0
    );
    println!("errors by code: {errors:?}; sessions ended by reason: {ended:?}");
    println!(
        "steady viewer fps per 5 s: {}",
        fps.iter()
            .map(|f| format!("{f:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let bound = max_growth_pct / 100.0;
    let ok = rss_growth <= bound && fd_growth <= bound && live == 1;
    println!("within {max_growth_pct}% of start and no session left behind: {ok}");
    o.write(
        "soak",
        &json!({
            "scenario": "soak", "sessions": sessions, "rounds": rounds, "seconds": seconds,
            "cold": {"rss": cold.0, "fds": cold.1},
            "start": {"rss": start.0, "fds": start.1}, "end": {"rss": end.0, "fds": end.1, "heap_since_start": end_heap},
            "peak": {"rss": peak.0, "fds": peak.1}, "samples": samples,
            "errors_by_code": errors, "ended_by_reason": ended,
            "steady_fps_per_5s": fps, "live_sessions_at_end": live, "within_bounds": ok,
        }),
    )?;
    if ok {
        Ok(())
    } else {
        Err("the soak did not return to its starting footprint".into())
    }
}
