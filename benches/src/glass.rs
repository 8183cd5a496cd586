//! `glass`: what a viewer sees, measured in the browser.
//!
//! Headless Chromium (Debian's, driven by playwright-core) opens portcast's
//! viewer page through the FRP-like NAT of the end-to-end test and reads the
//! test pattern's capture-clock band back on every displayed frame: capture to
//! display, on one machine clock. The same page measures, in the same run and
//! one at a time, portcast with its voice on (the default avatar), portcast
//! video-only, and the aiortc server of `compare-aiortc` drawing the same
//! picture: busy 1280x720, 30 fps, 2.5 Mbit/s everywhere.
//!
//! The orchestration (namespaces, servers, Chromium) is `benches/glass/run.sh`
//! and `benches/glass/glass.js`; this reads their JSON, prints the table and
//! the per-millisecond breakdown, and writes `glass.json`. The daemon is the
//! release binary (`cargo build --release -p portcast`), or `--daemon`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::aiortc::ensure_venv;
use crate::scenarios::Opts;

/// Runs the glass scenario: `pages` fresh pages per server time the first frame.
pub fn glass(o: &Opts, daemon: Option<PathBuf>, pages: usize) -> Result<(), String> {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = bench.join("..");
    let daemon = daemon.unwrap_or_else(|| root.join("target/release/portcast"));
    if !daemon.is_file() {
        return Err(format!(
            "no daemon binary at {} (build it: cargo build --release -p portcast, or pass --daemon)",
            daemon.display()
        ));
    }
    let python = ensure_venv(
        &root.join("target/aiortc-venv"),
        &bench.join("aiortc/requirements.txt"),
    )?;
    let (seconds, pages) = if o.smoke {
        (o.seconds.min(3.0), pages.min(2))
    } else {
        (o.seconds, pages)
    };
    let work = root.join("target/glass");
    println!(
        "\n## glass: capture -> display in headless Chromium through the NAT, {seconds} s each, \
         {pages} fresh pages each (busy 1280x720 30 fps 2.5 Mbit/s)"
    );
    let status = Command::new("bash")
        .arg(bench.join("glass/run.sh"))
        .env("PORTCAST_BIN", &daemon)
        .env("GLASS_PYTHON", &python)
        .env("GLASS_SECONDS", format!("{seconds}"))
        .env("GLASS_PAGES", pages.to_string())
        .env("GLASS_OUT", &work)
        .status()
        .map_err(|e| format!("benches/glass/run.sh: {e}"))?;
    if !status.success() {
        return Err(format!(
            "benches/glass/run.sh failed ({status}); logs in {}",
            work.display()
        ));
    }
    let mut servers = Vec::new();
    // aiortc third: the ratio below reads servers[1] and servers[2].
    for name in SERVERS {
        let path = work.join(format!("{name}.json"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        // The daemon's loop thread over the measurement (run.sh, portcast servers only).
        let cpu = work.join(format!("{name}.cpu.json"));
        if let Some(c) = std::fs::read_to_string(&cpu)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            let pct = match (c["loop_cpu_s"].as_f64(), c["wall_s"].as_f64()) {
                (Some(cpu), Some(wall)) if wall > 0.0 => Some((cpu / wall * 1000.0).round() / 10.0),
                _ => None,
            };
            v["daemon"]["loop_cpu_pct"] = json!(pct);
        }
        servers.push(v);
    }
    print_table(&servers);
    let ratio = |k: &str| {
        let a = servers[2]["glass"][k].as_f64()?;
        let p = servers[1]["glass"][k].as_f64()?;
        (p > 0.0).then(|| (a / p * 100.0).round() / 100.0)
    };
    println!(
        "aiortc / portcast-mute: p50 x{}, p99 x{}",
        fmt(ratio("p50")),
        fmt(ratio("p99"))
    );
    o.write(
        "glass",
        &json!({
            "seconds": seconds,
            "pages": pages,
            "content": "busy test pattern 1280x720 30 fps 2500 kbit/s",
            "servers": servers,
            "aiortc_over_portcast_mute": {"p50": ratio("p50"), "p99": ratio("p99")},
        }),
    )
}

/// The servers run.sh measures, in its order.
const SERVERS: [&str; 7] = [
    "portcast",
    "portcast-mute",
    "aiortc",
    "portcast-tcp",
    "portcast-capped",
    "portcast-capped-off",
    "portcast-lift",
];

/// The first-frame steps glass.js times, in order.
const STEPS: [&str; 6] = [
    "click_to_ws_open",
    "ws_open_to_offer_sent",
    "offer_to_answer",
    "answer_to_connected",
    "connected_to_first_frame",
    "ws_open_to_first_frame",
];

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x}"))
}

fn print_table(servers: &[Value]) {
    let f = |v: &Value| match v.as_f64() {
        Some(x) => format!("{x}"),
        None => "-".into(),
    };
    println!(
        "{:<19} {:>7} {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} {:>5} {:>6} {:>4} {:>5} | {:>6} {:>6} {:>5} {:>6}",
        "server",
        "frames",
        "p50",
        "p95",
        "p99",
        "max",
        "jb",
        "asm",
        "decode",
        "proc",
        "fps",
        "kbit/s",
        "frz",
        "lost",
        "encode",
        "f2p",
        "loop%",
        "enc kb"
    );
    for s in servers {
        let (g, i, d) = (&s["glass"], &s["inbound"], &s["daemon"]);
        println!(
            "{:<19} {:>7} {:>6} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} {:>5} {:>6} {:>4} {:>5} | {:>6} {:>6} {:>5} {:>6}",
            s["name"].as_str().unwrap_or("?"),
            format!("{}/{}", g["measured"], g["presented"]),
            f(&g["p50"]),
            f(&g["p95"]),
            f(&g["p99"]),
            f(&g["max"]),
            f(&i["jitter_buffer_ms"]),
            f(&i["assembly_ms"]),
            f(&i["decode_ms"]),
            f(&i["processing_ms"]),
            f(&i["fps"]),
            f(&i["kbit_s"]),
            f(&i["freezes"]),
            f(&i["packets_lost"]),
            f(&d["encode_ms"]),
            f(&d["frame_to_packet_ms"]),
            f(&d["loop_cpu_pct"]),
            f(&d["encoder_kbit_s_end"]),
        );
    }
    println!(
        "(ms; p50..max = capture -> display per shown frame; jb/asm/decode/proc = Chromium's \
         getStats means per frame, frz/lost = its freezeCount and packetsLost over the window; \
         encode/f2p = the daemon's own means; loop% = its event-loop thread's CPU over the \
         measurement, one steady viewer plus the fresh pages; enc kb = what its encoders aimed at \
         when the window ended, kbit/s; capped = the client's link at GLASS_CAP_KBIT kbit/s, \
         window from 5 s after the first frame)"
    );
    for s in servers {
        if let Some(t) = s.get("lift") {
            println!(
                "{}: cap lifted -> encoder back at {} kbit/s after {} s",
                s["name"].as_str().unwrap_or("?"),
                f(&t["top_bps"]).parse::<f64>().map_or(0.0, |b| b / 1000.0),
                f(&t["seconds_to_top"])
            );
        }
    }
    println!("first frame, p50 over the fresh pages (ms):");
    for s in servers {
        let p = &s["first_frame"]["p50"];
        let steps = STEPS
            .iter()
            .map(|k| format!("{k} {}", f(&p[*k])))
            .collect::<Vec<_>>()
            .join(", ");
        println!("  {:<19} {steps}", s["name"].as_str().unwrap_or("?"));
    }
}
