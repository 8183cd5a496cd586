//! Ingest scenarios: frames pushed by a renderer over the ingest socket, and
//! the RGB-to-I420 conversion the daemon runs on raw RGB frames.
//!
//! `ingest`: the daemon's loop runs in this process with its frame probe on
//! and the ingest socket open; a renderer thread pushes 1280x720 I420 test
//! pattern frames at 30 fps with the Rust client; one str0m viewer (the viewer
//! process) watches. Reported: arrival of a frame's last byte on the ingest
//! socket (t0) to its last RTP packet handed to the UDP socket (t2), split
//! into encode (t1-t0) and loop (t2-t1), and every drop counter.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use portcast_engine::pattern::TestPattern;
use portcast_engine::EngineConfig;
use portcast_net::ingest::client::IngestClient;
use portcast_net::ingest::convert::{packed_to_i420, rgb_to_i420_reference, I420Buffer};
use portcast_net::ingest::wire::{AudioCodec, AudioFormat, PixelFormat, StreamFormat};
use portcast_net::{FrameTiming, IngestConfig, Server, ServerConfig};
use serde_json::json;

use crate::daemon::{loopback_config, ViewerProcess};
use crate::stats::{fmt_us, summarize};

const AVATAR: &str = "bench-ingest";

/// Pushes 720p I420 at 30 fps (and with `audio`, 48 kHz mono PCM in 20 ms
/// chunks on the same clock) for `seconds` of viewing; reports latency and drops.
pub fn ingest(seconds: f64, audio: bool, out: &Path) -> Result<(), String> {
    let (w, h, fps) = (1280u32, 720u32, 30u32);
    let sock = std::env::temp_dir().join(format!("portcast-bench-{}.sock", std::process::id()));
    let (probe_tx, probe) = mpsc::sync_channel::<FrameTiming>(1 << 16);
    let config = ServerConfig {
        avatars: Vec::new(),
        engine: EngineConfig {
            avatars: Vec::new(),
            max_sessions: 16,
            ..EngineConfig::default()
        },
        ingest: Some(IngestConfig::new(&sock)),
        ..loopback_config(Some(probe_tx))
    };
    let server = Server::bind(config).map_err(|e| e.to_string())?;
    let signal = server.signal_addr();
    let shutdown = server.shutdown_handle();
    let counters = server.ingest_counters().ok_or("ingest is off")?;
    let loop_thread = std::thread::Builder::new()
        .name("loop".into())
        .spawn(move || server.run())
        .map_err(|e| e.to_string())?;

    // The renderer: pre-rendered pictures so its own CPU use stays small, as a GPU renderer's would.
    let mut pattern = TestPattern::new(w as usize, h as usize).ok_or("pattern size")?;
    let pictures: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            let p = pattern.render(i, 0);
            [p.y, p.u, p.v].concat()
        })
        .collect();
    let format = StreamFormat {
        format: PixelFormat::I420,
        width: w,
        height: h,
        fps,
        bitrate_kbps: 2500,
    };
    let mut client = if audio {
        let mut c = IngestClient::connect_v2(&sock, AVATAR, format).map_err(|e| e.to_string())?;
        c.set_audio_format(&AudioFormat {
            codec: AudioCodec::PcmS16le,
            channels: 1,
            sample_rate: 48_000,
            bitrate_kbps: 0,
            frame_ms: 0,
        })
        .map_err(|e| e.to_string())?;
        c
    } else {
        IngestClient::connect(&sock, AVATAR, format).map_err(|e| e.to_string())?
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let renderer = std::thread::spawn(move || -> Result<u64, String> {
        let start = Instant::now();
        let (mut n, mut chunks) = (0u64, 0u64);
        // 20 ms of a 440 Hz tone at 48 kHz: a speaking renderer's load.
        let tone: Vec<u8> = (0..960)
            .flat_map(|k| {
                let t = f64::from(k) / 48_000.0;
                ((6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16).to_le_bytes()
            })
            .collect();
        while !stop2.load(Ordering::Relaxed) {
            let pts = n * 1_000_000 / u64::from(fps);
            let pic = &pictures[(n % pictures.len() as u64) as usize];
            client
                .send_frame_at(n, pts, pic)
                .map_err(|e| e.to_string())?;
            n += 1;
            // Each chunk goes once its last sample is captured, stamped with its first's time.
            while audio && (chunks + 1) * 20_000 <= start.elapsed().as_micros() as u64 {
                client
                    .send_audio(chunks * 20_000, &tone)
                    .map_err(|e| e.to_string())?;
                chunks += 1;
            }
            let frame_due = start + Duration::from_secs(1) * n as u32 / fps;
            let chunk_due = start + Duration::from_micros((chunks + 1) * 20_000);
            let due = if audio {
                frame_due.min(chunk_due)
            } else {
                frame_due
            };
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if audio && Instant::now() < frame_due {
                // Woke for audio only: send it, then wait for the frame.
                while (chunks + 1) * 20_000 <= start.elapsed().as_micros() as u64 {
                    client
                        .send_audio(chunks * 20_000, &tone)
                        .map_err(|e| e.to_string())?;
                    chunks += 1;
                }
                std::thread::sleep(frame_due.saturating_duration_since(Instant::now()));
            }
        }
        Ok(n)
    });
    // Let the registration reach the engine before the viewer's offer names the avatar.
    std::thread::sleep(Duration::from_millis(200));
    let viewers = ViewerProcess::start(signal, 1, &[AVATAR.to_string()], seconds, fps, audio)?;
    let report = viewers.wait(Duration::from_secs_f64(seconds + 60.0));
    stop.store(true, Ordering::Relaxed);
    let pushed = renderer.join().map_err(|_| "renderer panicked")??;
    shutdown.shutdown();
    loop_thread
        .join()
        .map_err(|_| "loop panicked")?
        .map_err(|e| e.to_string())?;
    let report = report?;
    let (sounds, timings): (Vec<FrameTiming>, Vec<FrameTiming>) = probe
        .try_iter()
        .filter(|t| t.avatar == AVATAR && t.datagrams > 0)
        .partition(|t| t.audio);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let total = summarize(
        &timings
            .iter()
            .map(|t| us(t.sent_at - t.captured_at))
            .collect::<Vec<_>>(),
    );
    let encode = summarize(
        &timings
            .iter()
            .map(|t| us(t.encoded_at - t.captured_at))
            .collect::<Vec<_>>(),
    );
    let send = summarize(
        &timings
            .iter()
            .map(|t| us(t.sent_at - t.encoded_at))
            .collect::<Vec<_>>(),
    );
    let voice_span = |f: &dyn Fn(&FrameTiming) -> Duration| {
        summarize(&sounds.iter().map(|t| us(f(t))).collect::<Vec<_>>())
    };
    let voice = voice_span(&|t| t.sent_at - t.captured_at);
    let voice_thread = voice_span(&|t| t.dequeued_at.saturating_duration_since(t.captured_at));
    let voice_loop = voice_span(&|t| t.sent_at - t.dequeued_at);
    let load = |c: &portcast_net::metrics::Counter| c.get();
    let received = report.clients.first().map_or(0, |c| c.frames);
    let heard = report.clients.first().map_or(0, |c| c.audio_packets);
    println!(
        "\n## ingest: 1280x720 i420 pushed at {fps} fps over the ingest socket{}, one viewer, {seconds} s",
        if audio { ", with 48 kHz PCM audio" } else { "" }
    );
    println!(
        "{:<34} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "span", "n", "mean", "p50", "p99", "max"
    );
    for (label, s) in [
        ("arrival -> last RTP sent (t2-t0)", &total),
        ("  encode (t1-t0)", &encode),
        ("  loop: engine + send (t2-t1)", &send),
        ("audio: 20 ms chunk in -> Opus sent", &voice),
        ("  voice thread + channel", &voice_thread),
        ("  loop: engine + send", &voice_loop),
    ] {
        if s.n == 0 {
            continue;
        }
        println!(
            "{:<34} {:>6} {:>9} {:>9} {:>9} {:>9}",
            label,
            s.n,
            fmt_us(s.mean),
            fmt_us(s.p50),
            fmt_us(s.p99),
            fmt_us(s.max)
        );
    }
    println!(
        "frames pushed {pushed}, received by the daemon {}, encoded {}, encoder skips {}, \
         dropped: newest-wins {}, loop behind {}; viewer completed {received}",
        load(&counters.frames_received),
        load(&counters.frames_encoded),
        load(&counters.encoder_skips),
        load(&counters.dropped_newest_wins),
        load(&counters.dropped_loop_behind),
    );
    if audio {
        println!(
            "audio chunks received {}, Opus packets forwarded {}, dropped: queue full {}, \
             loop behind {}; viewer heard {heard} packets",
            load(&counters.audio_chunks_received),
            load(&counters.audio_frames_forwarded),
            load(&counters.audio_dropped_queue_full),
            load(&counters.audio_dropped_loop_behind),
        );
    }
    let value = json!({
        "scenario": if audio { "ingest_audio" } else { "ingest" },
        "seconds": seconds, "width": w, "height": h, "fps": fps,
        "arrival_to_last_rtp_us": total, "encode_us": encode, "loop_us": send,
        "audio_chunk_to_packet_us": voice, "audio_voice_thread_us": voice_thread,
        "audio_loop_us": voice_loop, "audio_packets_heard": heard,
        "frames_pushed": pushed, "frames_received": load(&counters.frames_received),
        "frames_encoded": load(&counters.frames_encoded),
        "encoder_skips": load(&counters.encoder_skips),
        "dropped_newest_wins": load(&counters.dropped_newest_wins),
        "dropped_loop_behind": load(&counters.dropped_loop_behind),
        "viewer_frames": received,
    });
    write_json(out, if audio { "ingest_audio" } else { "ingest" }, &value)
}

/// Times RGB24 and BGRA to I420 at 1280x720: the plain loop, openh264's converter and the `yuv` crate.
pub fn convert(out: &Path) -> Result<(), String> {
    let (w, h) = (1280usize, 720usize);
    let rounds = 200;
    println!("\n## convert: packed RGB to I420, {w}x{h}, mean of {rounds} frames");
    let mut rows = Vec::new();
    for (format, bpp) in [(PixelFormat::Rgb24, 3), (PixelFormat::Bgra, 4)] {
        let src: Vec<u8> = (0..w * h * bpp).map(|i| (i * 31 % 251) as u8).collect();
        let mut buf = I420Buffer::default();
        let time = |f: &mut dyn FnMut()| {
            f();
            let t = Instant::now();
            for _ in 0..rounds {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
        };
        let hand = time(&mut || rgb_to_i420_reference(format, &src, w, h, &mut buf));
        let crate_yuv = time(&mut || {
            let _ = packed_to_i420(format, &src, w, h, &mut buf);
        });
        let mut yuv = openh264::formats::YUVBuffer::new(w, h);
        let openh264 = time(&mut || match format {
            PixelFormat::Bgra => yuv.read_bgra8(openh264::formats::BgraSliceU8::new(&src, (w, h))),
            _ => yuv.read_rgb8(openh264::formats::RgbSliceU8::new(&src, (w, h))),
        });
        println!(
            "{:<6} hand loop {:>9}   openh264 {:>9}   yuv crate {:>9}",
            format.name(),
            fmt_us(hand),
            fmt_us(openh264),
            fmt_us(crate_yuv)
        );
        rows.push(json!({"format": format.name(), "hand_us": hand, "openh264_us": openh264, "yuv_crate_us": crate_yuv}));
    }
    write_json(
        out,
        "convert",
        &json!({"scenario": "convert", "width": w, "height": h, "rows": rows}),
    )
}

pub(crate) fn write_json(out: &Path, name: &str, value: &serde_json::Value) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let path = out.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
