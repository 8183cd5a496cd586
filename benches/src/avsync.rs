//! `avsync`: does picture and sound stay in step over a long stream?
//!
//! The daemon's loop runs in this process with the test pattern speaking (its
//! beep sounds exactly while its picture flashes, once a second, from one
//! source clock). One str0m viewer in a thread of its own takes both tracks,
//! decodes them (openh264, libopus) and maps each flash and each beep onset
//! through its track's latest Sender Report to the sender's NTP timeline, as a
//! browser's sync does. Reported: the offset (beep - flash, ms) in the first
//! minute and in the last, and how much it moved.

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use portcast_engine::pattern::{shows_flash, I420};
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::SenderInfo;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tungstenite::Message;

use crate::daemon::Daemon;
use crate::scenarios::settings;
use crate::stats::summarize;

/// Seconds on the sender's NTP timeline of RTP time `rtp` (a `clock` Hz track).
fn ntp_secs(report: &SenderInfo, rtp: u64, clock: f64) -> f64 {
    let base = report
        .ntp_time
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let ticks = (rtp as u32).wrapping_sub(report.rtp_time.numer() as u32) as i32;
    base + f64::from(ticks) / clock
}

/// Streams for `seconds` and writes `avsync.json`.
pub fn avsync(seconds: f64, out: &Path) -> Result<(), String> {
    let avatars = vec![("avsync".to_string(), settings(640, 360, 800_000, 1))];
    let mut d = Daemon::start_voiced(&avatars, 4, false)?;
    let signal = d.signal;
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let mut api = rtc.sdp_api();
    let video_mid: Mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().ok_or("no offer")?;
    let stream = std::net::TcpStream::connect(signal).map_err(|e| e.to_string())?;
    let (mut ws, _) = tungstenite::client::client(format!("ws://{signal}/ws/avsync-1"), stream)
        .map_err(|e| format!("upgrade: {e}"))?;
    let msg = json!({"type": "webrtc_offer", "session_id": "avsync-1", "user_id": 1,
        "avatar_id": "avsync", "sdp": offer.to_sdp_string()});
    ws.send(Message::text(msg.to_string()))
        .map_err(|e| e.to_string())?;
    let answer: serde_json::Value = loop {
        if let Message::Text(t) = ws.read().map_err(|e| e.to_string())? {
            break serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
        }
    };
    let sdp = answer["sdp"]
        .as_str()
        .ok_or(format!("no answer: {answer}"))?;
    rtc.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;

    let mut decoder = Decoder::new().map_err(|e| e.to_string())?;
    let mut opus = opus::Decoder::new(48_000, opus::Channels::Mono).map_err(|e| e.to_string())?;
    let (mut was_lit, mut was_loud) = (false, false);
    let mut flashes: Vec<(f64, f64)> = Vec::new(); // (seconds since start, NTP seconds)
    let mut beeps: Vec<f64> = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut buf = vec![0u8; 2048];
    let mut pcm = vec![0i16; 5760];
    while Instant::now() < end {
        let timeout = loop {
            match rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::MediaData(m)) if m.mid == video_mid => {
                    // Every picture is decoded (a skipped one breaks the chain);
                    // onsets count once a Sender Report maps them.
                    if let Ok(Some(pic)) = decoder.decode(&m.data) {
                        let (width, height) = pic.dimensions();
                        let view = I420 {
                            y: pic.y(),
                            u: pic.u(),
                            v: pic.v(),
                            width,
                            height,
                            strides: pic.strides(),
                        };
                        let lit = shows_flash(&view);
                        if let (true, false, Some(report)) = (lit, was_lit, &m.last_sender_info) {
                            let at = start.elapsed().as_secs_f64();
                            flashes.push((at, ntp_secs(report, m.time.numer(), 90_000.0)));
                        }
                        was_lit = lit;
                    }
                }
                Output::Event(Event::MediaData(m)) => {
                    let Ok(n) = opus.decode(&m.data, &mut pcm, false) else {
                        continue;
                    };
                    let loud = pcm[..n].iter().position(|s| s.unsigned_abs() > 2000);
                    if let (Some(i), false, Some(report)) = (loud, was_loud, m.last_sender_info) {
                        beeps.push(ntp_secs(&report, m.time.numer() + i as u64, 48_000.0));
                    }
                    was_loud = loud.is_some();
                }
                Output::Event(_) => {}
            }
        };
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        socket
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Ok(r) = Receive::new(Protocol::Udp, from, local, &buf[..n]) {
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), r));
                }
            }
            Err(_) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
    d.stop();
    // Each flash with the beep nearest it on the NTP timeline (within half a period).
    let offsets: Vec<(f64, f64)> = flashes
        .iter()
        .filter_map(|(at, f)| {
            let b = beeps
                .iter()
                .min_by(|x, y| (*x - f).abs().total_cmp(&(*y - f).abs()))?;
            ((b - f).abs() < 0.5).then_some((*at, (b - f) * 1000.0))
        })
        .collect();
    let window = |from: f64, to: f64| {
        summarize(
            &offsets
                .iter()
                .filter(|(at, _)| *at >= from && *at < to)
                .map(|(_, ms)| *ms)
                .collect::<Vec<_>>(),
        )
    };
    let minute = 60.0_f64.min(seconds / 2.0);
    let (first, last) = (window(0.0, minute), window(seconds - minute, seconds + 1.0));
    println!("\n## avsync: beep - flash at a str0m viewer, through the Sender Reports ({seconds} s, 640x360 speaking test pattern)");
    println!(
        "pairs {} (flashes {}, beeps {}); first {minute:.0} s: mean {:.2} ms, p50 {:.2} ms (n {}); \
         last {minute:.0} s: mean {:.2} ms, p50 {:.2} ms (n {}); moved {:.2} ms",
        offsets.len(),
        flashes.len(),
        beeps.len(),
        first.mean,
        first.p50,
        first.n,
        last.mean,
        last.p50,
        last.n,
        last.mean - first.mean
    );
    let value = json!({
        "scenario": "avsync", "seconds": seconds, "pairs": offsets.len(),
        "first_window_ms": first, "last_window_ms": last, "moved_ms": last.mean - first.mean,
        "offsets": offsets,
    });
    crate::ingest::write_json(out, "avsync", &value)
}
