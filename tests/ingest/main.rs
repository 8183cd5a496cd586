//! Frames pushed by renderers over the ingest socket, end to end: the daemon
//! as a process, renderers (the Python client, the Rust client, raw sockets)
//! on its Unix socket, and str0m viewers over loopback decoding what arrives.

#[path = "../common/mod.rs"]
mod common;
mod voice;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::*;
use portcast_engine::encoder::{Encoded, EncoderSettings, H264Encoder};
use portcast_engine::pattern::{TestPattern, I420};
use portcast_net::ingest::client::{ClientError, IngestClient};
use portcast_net::ingest::wire::{self, PixelFormat, StreamFormat};

const W: u32 = 320;
const H: u32 = 180;

fn python_client() -> String {
    format!(
        "{}/clients/python/portcast_ingest.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn format(format: PixelFormat) -> StreamFormat {
    StreamFormat {
        format,
        width: W,
        height: H,
        fps: 30,
        bitrate_kbps: 0,
    }
}

fn i420_bytes(pic: &I420<'_>) -> Vec<u8> {
    [pic.y, pic.u, pic.v].concat()
}

/// The picture as gray BGRA: the frame-number band is black and white, so it survives the round trip.
fn gray_bgra(pic: &I420<'_>) -> Vec<u8> {
    pic.y
        .iter()
        .flat_map(|&y| {
            let g = ((i32::from(y) - 16) * 255 / 219).clamp(0, 255) as u8;
            [g, g, g, 255]
        })
        .collect()
}

fn wait_for_log(d: &Daemon, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Rust renderer pushing the test pattern at 30 fps from frame `first` until stopped.
struct Renderer {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Renderer {
    fn start(path: &std::path::Path, avatar: &str, fmt: PixelFormat, first: u64) -> Renderer {
        let mut client = IngestClient::connect(path, avatar, format(fmt)).expect("registered");
        let (stop, sent) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut pattern = TestPattern::new(W as usize, H as usize).unwrap();
            let start = Instant::now();
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let pic = pattern.render(first + n, 0);
                let bytes = match fmt {
                    PixelFormat::Bgra => gray_bgra(&pic),
                    _ => i420_bytes(&pic),
                };
                client
                    .send_frame_at(first + n, 0, &bytes)
                    .map_err(|e| e.to_string())?;
                n += 1;
                sent2.store(n, Ordering::Relaxed);
                let due = start + Duration::from_millis(33) * n as u32;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            Ok(())
        });
        Renderer {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Stops pushing, closes the connection and returns the thread's outcome.
    fn finish(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(Ok(()), |t| t.join().unwrap())
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn python_renderer_frames_reach_a_viewer_in_order() {
    let d = Daemon::start(&[]);
    let dir = std::env::temp_dir();
    let frames_path = dir.join(format!("portcast-ingest-{}.i420", d.signal_port));
    let timing_path = dir.join(format!("portcast-ingest-{}.timing", d.signal_port));
    let mut pattern = TestPattern::new(W as usize, H as usize).unwrap();
    let mut file = Vec::new();
    for i in 0..240 {
        file.extend_from_slice(&i420_bytes(&pattern.render(i, 0)));
    }
    std::fs::write(&frames_path, file).unwrap();

    let mut python = Command::new("python3")
        .arg(python_client())
        .args([
            "push",
            "--avatar",
            "py-avatar",
            "--format",
            "i420",
            "--size",
            "320x180",
        ])
        .arg("--socket")
        .arg(&d.ingest_path)
        .arg("--timing-out")
        .arg(&timing_path)
        .arg(&frames_path)
        .spawn()
        .expect("python3 runs");
    wait_for_log(&d, "registered avatar py-avatar");
    let mut v = NetViewer::connect(d.signal_port, "py-1", "py-avatar").expect("answer");
    v.run_until_frames(90, Duration::from_secs(15));
    let status = python.wait().unwrap();
    assert!(status.success(), "python client failed; log:\n{}", d.log());
    assert!(
        v.counters.len() >= 90,
        "decoded {} frames; log:\n{}",
        v.counters.len(),
        d.log()
    );
    assert!(
        v.counters.windows(2).all(|w| w[1] > w[0]),
        "frames arrive in the order pushed: {:?}",
        v.counters
    );
    assert!(v.counters.iter().all(|c| *c < 240));
    // The ingest path shows in /metrics.
    let m = d.metrics();
    let received = metric(&m, "portcast_ingest_frames_received_total");
    assert!(
        received >= v.counters.len() as u64,
        "{received} received; {m}"
    );
    assert!(
        metric(&m, "portcast_ingest_frames_encoded_total") >= 90,
        "{m}"
    );
    assert_eq!(metric(&m, "portcast_ingest_registrations_total"), 1, "{m}");
    // ...and per avatar.
    let own = |stage: &str| {
        metric(
            &m,
            &format!(
                "portcast_ingest_avatar_frames_total{{avatar=\"py-avatar\",stage=\"{stage}\"}}"
            ),
        )
    };
    assert_eq!(own("received"), received, "{m}");
    assert!(own("forwarded") >= 90, "{m}");

    // Reported, not asserted: push (Python, after sendall) to decoded (viewer), wall clock.
    let sent: std::collections::HashMap<u64, u128> = std::fs::read_to_string(&timing_path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (i, t) = l.split_once(' ')?;
            Some((i.parse().ok()?, t.parse().ok()?))
        })
        .collect();
    let mut ms: Vec<f64> = v
        .counters
        .iter()
        .zip(&v.decoded_at)
        .filter_map(|(c, at)| {
            let sent = *sent.get(c)?;
            let at = at.duration_since(UNIX_EPOCH).ok()?.as_nanos();
            Some((at as f64 - sent as f64) / 1e6)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    if let Some(max) = ms.last() {
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        let p99 = ms[(ms.len() * 99 / 100).min(ms.len() - 1)];
        eprintln!(
            "python push -> viewer decoded, 320x180 i420, {} frames: mean {mean:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
            ms.len()
        );
    }
    let _ = std::fs::remove_file(frames_path);
    let _ = std::fs::remove_file(timing_path);
}

/// Splits an Annex-B access unit into its NAL units (start codes removed).
fn nal_units(au: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= au.len() {
        if au[i..].starts_with(&[0, 0, 1]) {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &(_, begin))| {
            let mut end = starts.get(k + 1).map_or(au.len(), |&(s, _)| s);
            // The leading zero of a 4-byte start code (or trailing zero bytes) are not part of the unit.
            while end > begin && au[end - 1] == 0 {
                end -= 1;
            }
            &au[begin..end]
        })
        .collect()
}

#[test]
fn h264_pass_through_arrives_byte_identical_and_keyframe_requests_reach_the_renderer() {
    // The stream is encoded before anything connects: the daemon only forwards it.
    let mut encoder = H264Encoder::new(EncoderSettings {
        width: W,
        height: H,
        fps: 30,
        bitrate_bps: 500_000,
        threads: 1,
    })
    .unwrap();
    let mut pattern = TestPattern::new(W as usize, H as usize).unwrap();
    let mut stream = Vec::new();
    for i in 0..180u64 {
        let mut out = Vec::new();
        let kind = encoder
            .encode(&pattern.render(i, 0), i % 15 == 0, &mut out)
            .unwrap();
        if kind != Encoded::Skipped {
            stream.push(out);
        }
    }

    let d = Daemon::start(&[]);
    let fmt = StreamFormat {
        width: 0,
        height: 0,
        ..format(PixelFormat::H264)
    };
    let mut client = IngestClient::connect(&d.ingest_path, "nvenc-like", fmt).expect("registered");
    let pushed = stream.clone();
    let requests = Arc::new(AtomicU64::new(0));
    let requests2 = requests.clone();
    let pusher = std::thread::spawn(move || {
        let start = Instant::now();
        for (n, au) in pushed.iter().enumerate() {
            client.send_frame(au).unwrap();
            if client.poll_keyframe_request().unwrap() {
                requests2.fetch_add(1, Ordering::Relaxed);
            }
            let due = start + Duration::from_millis(33) * (n as u32 + 1);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    });
    wait_for_log(&d, "registered avatar nvenc-like");
    let mut v = NetViewer::connect(d.signal_port, "pt-1", "nvenc-like").expect("answer");
    v.keep_media = true;
    v.run_until_frames(60, Duration::from_secs(15));
    pusher.join().unwrap();

    assert!(
        v.media.len() >= 60,
        "received {} access units; log:\n{}",
        v.media.len(),
        d.log()
    );
    let pushed_nals: Vec<Vec<&[u8]>> = stream.iter().map(|au| nal_units(au)).collect();
    let mut last = None;
    for (k, au) in v.media.iter().enumerate() {
        let nals = nal_units(au);
        let found = pushed_nals.iter().position(|p| *p == nals);
        let Some(i) = found else {
            panic!(
                "received access unit #{k} ({} bytes) matches no pushed one",
                au.len()
            );
        };
        assert!(last.is_none_or(|l| i > l), "access units arrive in order");
        last = Some(i);
    }
    assert!(v.counters.windows(2).all(|w| w[1] > w[0]));
    assert!(
        requests.load(Ordering::Relaxed) >= 1,
        "the joining viewer's keyframe request reached the renderer as a message"
    );
}

/// Reads what the daemon sends until it closes, and returns the REFUSED text.
fn refusal(mut s: UnixStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    // Skip an ACCEPTED (or anything else) before the REFUSED message.
    let mut at = 0;
    while at + wire::HEADER_LEN <= all.len() {
        let meta = usize::from(u16::from_le_bytes([all[at + 8], all[at + 9]]));
        let payload = u32::from_le_bytes(all[at + 12..at + 16].try_into().unwrap()) as usize;
        let end = (at + wire::HEADER_LEN + meta + payload).min(all.len());
        if all[at + 5] == 0x83 {
            return String::from_utf8_lossy(&all[at + wire::HEADER_LEN + meta..end]).into_owned();
        }
        at = end;
    }
    format!("<no REFUSED in {} bytes>", all.len())
}

fn connect(d: &Daemon) -> UnixStream {
    UnixStream::connect(&d.ingest_path).unwrap()
}

#[test]
fn bad_ingest_input_is_refused_and_other_avatars_keep_streaming() {
    let d = Daemon::start(&["--ingest-max-frame-mb", "1"]);
    let steady = Renderer::start(&d.ingest_path, "steady", PixelFormat::Bgra, 0);
    let mut v = NetViewer::connect(d.signal_port, "steady-1", "steady").expect("answer");
    v.run_until_frames(15, Duration::from_secs(15));
    assert!(
        v.counters.len() >= 15,
        "BGRA frames decoded; log:\n{}",
        d.log()
    );

    // Truncated header: the connection ends inside the first 16 bytes.
    let mut s = connect(&d);
    s.write_all(b"PCIN\x01\x01").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(refusal(s).starts_with("truncated: "));

    // Not a renderer at all.
    let mut s = connect(&d);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(refusal(s).starts_with("bad_magic: "));

    // Unknown pixel format.
    let mut reg = wire::register("odd", &format(PixelFormat::I420));
    reg[wire::HEADER_LEN] = 9;
    let mut s = connect(&d);
    s.write_all(&reg).unwrap();
    assert!(refusal(s).starts_with("unknown_format: "));

    // A frame before registering.
    let mut s = connect(&d);
    s.write_all(&wire::frame_head(0, 0, 10)).unwrap();
    assert!(refusal(s).starts_with("not_registered: "));

    // Lying length: the header promises a whole frame, a fraction arrives, the socket stays open.
    let mut s = connect(&d);
    s.write_all(&wire::register("liar", &format(PixelFormat::I420)))
        .unwrap();
    s.write_all(&wire::frame_head(0, 0, (W * H * 3 / 2) as usize))
        .unwrap();
    s.write_all(&[16u8; 1000]).unwrap();
    let asked = Instant::now();
    let text = refusal(s);
    assert!(text.starts_with("stalled: "), "{text}");
    assert!(asked.elapsed() < Duration::from_secs(8));

    // Oversized frame: over the 1 MiB limit set above, refused before it is read.
    let big = StreamFormat {
        width: 0,
        height: 0,
        ..format(PixelFormat::H264)
    };
    let mut s = connect(&d);
    s.write_all(&wire::register("big", &big)).unwrap();
    s.write_all(&wire::frame_head(0, 0, (1 << 20) + 1)).unwrap();
    assert!(refusal(s).starts_with("frame_too_large: "));
    // An announced raw size over the limit is refused at registration.
    let huge = StreamFormat {
        width: 1280,
        height: 720,
        ..format(PixelFormat::Bgra)
    };
    match IngestClient::connect(&d.ingest_path, "huge", huge) {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "frame_too_large"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // A second registration of a live id.
    match IngestClient::connect(&d.ingest_path, "steady", format(PixelFormat::I420)) {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, "avatar_live");
            assert!(message.contains("steady"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A built-in source's id is not for renderers.
    match IngestClient::connect(&d.ingest_path, "test-pattern", format(PixelFormat::I420)) {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "avatar_reserved"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Through all of that, the steady avatar kept streaming to its viewer.
    let before = v.counters.len();
    v.run_until_frames(before + 30, Duration::from_secs(10));
    assert!(v.counters.len() >= before + 30, "log:\n{}", d.log());
    assert!(v.counters.windows(2).all(|w| w[1] > w[0]));
    assert!(steady.sent.load(Ordering::Relaxed) > 0);
    // /metrics: every refusal counted, and the steady renderer the only one live
    // (a refused renderer's thread may take a moment to leave).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = d.metrics();
        let refused = metric(&m, "portcast_drops_total{reason=\"ingest_protocol_error\"}");
        let live = metric(&m, "portcast_ingest_renderers");
        if refused >= 7 && live == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{refused} refusals counted, {live} renderers live: {m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    steady
        .finish()
        .expect("the steady renderer was never disturbed");
    let log = d.log();
    for code in [
        "truncated",
        "bad_magic",
        "unknown_format",
        "stalled",
        "frame_too_large",
        "avatar_live",
    ] {
        assert!(
            log.contains(&format!("closed: {code}:")),
            "{code} logged:\n{log}"
        );
    }
}

#[test]
fn a_renderer_that_returns_under_the_same_id_resumes_its_viewers_with_an_idr() {
    let d = Daemon::start(&[]);
    // Before any renderer registered it, the id is unknown to viewers.
    let r = NetViewer::connect(d.signal_port, "early", "comeback")
        .err()
        .expect("refused");
    assert_eq!(r["code"], "unknown_avatar");

    let first = Renderer::start(&d.ingest_path, "comeback", PixelFormat::I420, 0);
    let mut v = NetViewer::connect(d.signal_port, "cb-1", "comeback").expect("answer");
    v.run_until_frames(10, Duration::from_secs(15));
    assert!(v.counters.len() >= 10, "log:\n{}", d.log());
    first.finish().unwrap();
    wait_for_log(&d, "avatar comeback: renderer gone");

    // While it is away the session stays up, and new offers for the id are still answered.
    v.run_until_frames(usize::MAX, Duration::from_millis(500));
    let second_viewer = NetViewer::connect(d.signal_port, "cb-2", "comeback");
    assert!(second_viewer.is_ok(), "the id stays known");

    let second = Renderer::start(&d.ingest_path, "comeback", PixelFormat::I420, 1000);
    let before = v.counters.len();
    let end = Instant::now() + Duration::from_secs(15);
    while v.counters.iter().filter(|c| **c >= 1000).count() < 10 && Instant::now() < end {
        v.run_until_frames(v.counters.len() + 1, Duration::from_millis(200));
    }
    let resumed: Vec<u64> = v.counters[before..].to_vec();
    assert!(
        resumed.iter().filter(|c| **c >= 1000).count() >= 10,
        "video resumed from the new renderer: {resumed:?}; log:\n{}",
        d.log()
    );
    assert!(
        !v.server_messages().iter().any(|m| m["type"] == "bye"),
        "the viewer's session was never ended"
    );
    second.finish().unwrap();
}

#[test]
fn a_raw_renderer_is_also_sent_as_vp8_and_a_pass_through_one_refuses_vp8() {
    let d = Daemon::start(&[]);
    let raw = Renderer::start(&d.ingest_path, "raw-vp8", PixelFormat::I420, 0);
    wait_for_log(&d, "registered avatar raw-vp8");
    let mut h = NetViewer::connect(d.signal_port, "rv-h264", "raw-vp8").expect("answer");
    let mut v = NetViewer::connect_vp8(d.signal_port, "rv-vp8", "raw-vp8").expect("VP8 answer");
    let sdp = v.answer["sdp"].as_str().unwrap().to_string();
    assert!(sdp.contains("VP8/90000") && !sdp.contains("H264"), "{sdp}");
    let end = Instant::now() + Duration::from_secs(10);
    while v.media.len() < 20 && Instant::now() < end {
        v.run_for(Duration::from_millis(100));
        h.run_for(Duration::from_millis(50));
    }
    assert!(
        v.media.len() >= 20,
        "{} VP8 frames; log:\n{}",
        v.media.len(),
        d.log()
    );
    // A VP8 keyframe (RFC 6386 9.1): frame-type bit clear, start code 9d 01 2a.
    let first = &v.media[0];
    assert!(
        first[0] & 1 == 0 && first[3..6] == [0x9d, 0x01, 0x2a],
        "first VP8 frame is a keyframe"
    );
    h.run_until_frames(10, Duration::from_secs(10));
    assert!(
        h.counters.len() >= 10,
        "the H.264 viewer of the same renderer decodes"
    );
    wait_for_log(&d, "ingest avatar raw-vp8: VP8 encoder started");
    // The VP8 viewer leaves: the renderer's encoder thread drops its VP8 encoder.
    drop(v);
    wait_for_log(&d, "ingest avatar raw-vp8: VP8 encoder stopped");
    raw.finish().unwrap();

    let fmt = StreamFormat {
        width: 0,
        height: 0,
        ..format(PixelFormat::H264)
    };
    let _pass = IngestClient::connect(&d.ingest_path, "own-h264", fmt).expect("registered");
    wait_for_log(&d, "registered avatar own-h264");
    let err = NetViewer::connect_vp8(d.signal_port, "pt-vp8", "own-h264")
        .err()
        .expect("a VP8-only offer for a pass-through avatar is refused");
    assert_eq!(err["code"], "no_h264", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("only as H.264"),
        "{err}"
    );
}

#[test]
fn a_renderers_avatar_gets_its_own_ladder_when_one_is_configured() {
    let d = Daemon::start(&["--avatar-renditions", "own-ladder=120p@100k"]);
    let own = IngestClient::connect(&d.ingest_path, "own-ladder", format(PixelFormat::I420))
        .expect("registered");
    let other = IngestClient::connect(&d.ingest_path, "default-ladder", format(PixelFormat::I420))
        .expect("registered");
    wait_for_log(&d, "registered avatar default-ladder");
    let metrics = d.metrics();
    let renditions = |avatar: &str| {
        let prefix =
            format!("portcast_rendition_viewers{{avatar=\"{avatar}\",codec=\"H264\",rendition=\"");
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    assert_eq!(renditions("own-ladder"), set(&["top", "120p"]), "{metrics}");
    assert_eq!(
        renditions("default-ladder"),
        set(&["top", "360p", "180p"]),
        "{metrics}"
    );
    assert!(
        d.log()
            .contains("renditions of avatar 'own-ladder': its own picture, then 120p@100k"),
        "{}",
        d.log()
    );
    drop((own, other));
}

#[test]
fn a_renderer_is_told_when_its_avatar_gains_its_first_viewer_and_loses_its_last() {
    let d = Daemon::start(&[]);
    let mut client = IngestClient::connect(&d.ingest_path, "told", format(PixelFormat::I420))
        .expect("registered");
    let mut pattern = TestPattern::new(W as usize, H as usize).unwrap();
    // Pushes frames (as a renderer does) until the daemon's WATCHED says `want`.
    let mut n = 0u64;
    let mut until = |client: &mut IngestClient, want: bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.watched() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "never told watched={want}: {}",
                d.log()
            );
            client
                .send_frame_at(n, 0, &i420_bytes(&pattern.render(n, 0)))
                .unwrap();
            n += 1;
            client.poll_keyframe_request().unwrap();
            std::thread::sleep(Duration::from_millis(33));
        }
    };
    until(&mut client, false);
    let mut v = NetViewer::connect(d.signal_port, "told-1", "told").expect("answer");
    until(&mut client, true);
    v.run_until_frames(5, Duration::from_secs(5));
    let mut vp8 = NetViewer::connect_vp8(d.signal_port, "told-2", "told").expect("answer");
    vp8.run_for(Duration::from_millis(300));
    // One of two viewers leaving changes nothing; the last one does.
    drop(v);
    std::thread::sleep(Duration::from_millis(500));
    client.poll_keyframe_request().unwrap();
    assert_eq!(client.watched(), Some(true), "a VP8 viewer still watches");
    drop(vp8);
    until(&mut client, false);
}

fn write_y4m(path: &std::path::Path, header: &str, frames: u64) {
    let mut bytes = format!("YUV4MPEG2 {header}\n").into_bytes();
    let mut p = TestPattern::new(W as usize, H as usize).unwrap();
    for i in 0..frames {
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend_from_slice(&i420_bytes(&p.render(i, 0)));
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_y4m_file_streams_as_an_avatar_in_a_loop() {
    let path = std::env::temp_dir().join(format!("portcast-clip-{}.y4m", std::process::id()));
    write_y4m(&path, "W320 H180 F30:1 Ip A1:1 C420jpeg", 20);
    let source = format!("y4m:{}", path.display());
    let d = Daemon::start(&["--source", &source, "--avatar", "clip"]);
    let mut v = NetViewer::connect(d.signal_port, "clip-1", "clip").expect("answer");
    v.run_until_frames(45, Duration::from_secs(15));
    assert!(v.counters.len() >= 45, "log:\n{}", d.log());
    assert!(
        v.counters.iter().all(|c| *c < 20),
        "only the file's frames: {:?}",
        v.counters
    );
    assert!(
        v.counters.windows(2).any(|w| w[1] < w[0]),
        "the file loops: {:?}",
        v.counters
    );

    // A colour space other than 4:2:0 stops the daemon at start, saying what to do.
    write_y4m(&path, "W320 H180 F30:1 C444", 1);
    let udp = free_udp_ports(1)[0].to_string();
    let tcp = free_tcp_port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_portcast"))
        .args([
            "--ingest-socket",
            "off",
            "--bind-ip",
            "127.0.0.1",
            "--signal-port",
            &tcp,
        ])
        .args(["--udp-ports", &udp, "--source", &source])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("C444") && err.contains("4:2:0"), "{err}");
    let _ = std::fs::remove_file(path);
}
