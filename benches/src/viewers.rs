//! The viewer process: many light str0m clients doing real ICE, DTLS and SRTP
//! over loopback, on one thread with one mio `Poll`. It records when each
//! frame completes at each client (wall clock, comparable across processes:
//! the kernel's receive time of the datagram that completed it, so this
//! process's own backlog under a burst does not count) and the RTP sequence
//! numbers it saw, and writes a JSON report.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tungstenite::{Message, WebSocket};

use crate::rxstamp;

/// What the viewer process is asked to do.
#[derive(Debug, Clone)]
pub struct ViewerJob {
    /// Daemon signaling address.
    pub signal: SocketAddr,
    /// Number of clients.
    pub count: usize,
    /// Avatars, assigned round-robin to clients.
    pub avatars: Vec<String>,
    /// How long to receive after the last client connected.
    pub seconds: f64,
    /// Frames per second of the sources (to turn RTP time into frame numbers).
    pub fps: u32,
    /// Session id prefix.
    pub prefix: String,
    /// Offer to receive audio too (counted apart from frames).
    pub audio: bool,
}

/// Per-client result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientReport {
    /// Avatar watched.
    pub avatar: String,
    /// Whether DTLS came up.
    pub connected: bool,
    /// Offer sent to DTLS connected, ms.
    pub connect_ms: Option<f64>,
    /// Offer sent to the answer received, ms.
    pub answer_ms: f64,
    /// Frames completed.
    pub frames: u64,
    /// RTP packets received (in completed frames).
    pub packets: u64,
    /// Bytes of the completed video frames (depacketized).
    #[serde(default)]
    pub frame_bytes: u64,
    /// RTP packets the sequence numbers say were sent in that span.
    pub expected_packets: u64,
    /// Audio packets received (when the job offered audio).
    #[serde(default)]
    pub audio_packets: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewerReport {
    /// One per client.
    pub clients: Vec<ClientReport>,
    /// Per (avatar, frame index): earliest and latest completion (ns since the epoch: the
    /// kernel's arrival time of the datagram that completed the frame, `rxstamp`) and how
    /// many clients.
    pub frames: Vec<(String, u64, u128, u128, u32)>,
    /// CPU seconds used by the viewer process.
    pub cpu_seconds: f64,
}

impl ViewerReport {
    /// Clients that connected, and packet loss at the viewers in percent
    /// (100 when no packet was expected at all).
    pub fn connected_and_loss(&self) -> (usize, f64) {
        let connected = self.clients.iter().filter(|c| c.connected).count();
        let (got, expected) = self.clients.iter().fold((0u64, 0u64), |a, c| {
            (a.0 + c.packets, a.1 + c.expected_packets)
        });
        let loss = if expected > 0 {
            100.0 * (1.0 - got as f64 / expected as f64)
        } else {
            100.0
        };
        (connected, loss)
    }

    /// When each (avatar, frame index) first completed at a viewer, ns since the epoch.
    pub fn first_arrivals(&self) -> std::collections::HashMap<(&str, u64), u128> {
        self.frames
            .iter()
            .map(|(a, idx, first, _, _)| ((a.as_str(), *idx), *first))
            .collect()
    }
}

struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    avatar: String,
    _ws: WebSocket<TcpStream>,
    offered: Instant,
    answer_ms: f64,
    connect_ms: Option<f64>,
    frames: u64,
    packets: u64,
    frame_bytes: u64,
    first_seq: Option<u64>,
    last_seq: u64,
    timeout: Instant,
    video_mid: Option<str0m::media::Mid>,
    audio_packets: u64,
}

/// Runs the job and returns the report.
pub fn run(job: &ViewerJob) -> Result<ViewerReport, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .ok_or("no DTLS certificate")?;
    let mut clients = Vec::with_capacity(job.count);
    for i in 0..job.count {
        let avatar = job.avatars[i % job.avatars.len()].clone();
        let session = format!("{}-{i}", job.prefix);
        let mut c = connect(job.signal, &session, &avatar, cert.clone(), job.audio)?;
        poll.registry()
            .register(&mut c.socket, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        clients.push(c);
    }
    let cpu_start = process_cpu_seconds();
    let end = Instant::now() + Duration::from_secs_f64(job.seconds);
    let mut frames: HashMap<(usize, u64), (u128, u128, u32)> = HashMap::new();
    let mut avatar_index: Vec<String> = job.avatars.clone();
    avatar_index.dedup();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 2048];
    let ticks_per_frame = u64::from(90_000 / job.fps.max(1));
    // Drain once so every client sends its first checks.
    for c in clients.iter_mut() {
        drain(c, &mut frames, &job.avatars, ticks_per_frame, None);
    }
    while Instant::now() < end {
        let next = clients.iter().map(|c| c.timeout).min().unwrap_or(end);
        let wait = next
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_micros(200), Duration::from_millis(20));
        poll.poll(&mut events, Some(wait))
            .map_err(|e| e.to_string())?;
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = clients.get_mut(i) else {
                continue;
            };
            loop {
                match rxstamp::recv(&c.socket, &mut buf) {
                    Ok((n, from, arrived)) => {
                        let now = Instant::now();
                        if let Ok(r) = Receive::new(Protocol::Udp, from, c.local, &buf[..n]) {
                            let _ = c.rtc.handle_input(Input::Receive(now, r));
                        }
                        // A frame this datagram completes arrived when it did.
                        drain(c, &mut frames, &job.avatars, ticks_per_frame, arrived);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        let now = Instant::now();
        for c in clients.iter_mut() {
            if c.timeout <= now {
                let _ = c.rtc.handle_input(Input::Timeout(now));
                drain(c, &mut frames, &job.avatars, ticks_per_frame, None);
            }
        }
    }
    let cpu_seconds = process_cpu_seconds() - cpu_start;
    let reports = clients
        .iter()
        .map(|c| ClientReport {
            avatar: c.avatar.clone(),
            connected: c.connect_ms.is_some(),
            connect_ms: c.connect_ms,
            answer_ms: c.answer_ms,
            frames: c.frames,
            packets: c.packets,
            frame_bytes: c.frame_bytes,
            expected_packets: c.first_seq.map_or(0, |f| c.last_seq.saturating_sub(f) + 1),
            audio_packets: c.audio_packets,
        })
        .collect();
    let names: Vec<String> = job.avatars.clone();
    let frames = frames
        .into_iter()
        .map(|((a, idx), (first, last, n))| (names[a].clone(), idx, first, last, n))
        .collect();
    Ok(ViewerReport {
        clients: reports,
        frames,
        cpu_seconds,
    })
}

fn connect(
    signal: SocketAddr,
    session: &str,
    avatar: &str,
    cert: str0m::config::DtlsCert,
    audio: bool,
) -> Result<Client, String> {
    let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    std_socket
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let local = std_socket.local_addr().map_err(|e| e.to_string())?;
    rxstamp::enable(&std_socket).map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
    let socket = UdpSocket::from_std(std_socket);
    let now = Instant::now();
    // Offer the playout-delay extension as Chromium does (its id 5), so the
    // daemon writes it on every packet as it would for a browser.
    let mut rtc = RtcConfig::new()
        .set_dtls_cert(cert)
        .set_extension(5, str0m::rtp::Extension::PlayoutDelay)
        .build(now);
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let mut api = rtc.sdp_api();
    let video_mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    if audio {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = api.apply().ok_or("no offer")?;
    let stream = TcpStream::connect(signal).map_err(|e| format!("connect {signal}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let url = format!("ws://{signal}/ws/{session}");
    let (mut ws, _) =
        tungstenite::client::client(url.as_str(), stream).map_err(|e| format!("upgrade: {e}"))?;
    let offered = Instant::now();
    let msg = serde_json::json!({
        "type": "webrtc_offer", "session_id": session, "user_id": 5,
        "avatar_id": avatar, "sdp": offer.to_sdp_string(),
    });
    ws.send(Message::text(msg.to_string()))
        .map_err(|e| e.to_string())?;
    let answer: serde_json::Value = loop {
        match ws.read().map_err(|e| format!("answer: {e}"))? {
            Message::Text(t) => {
                break serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?
            }
            _ => continue,
        }
    };
    let answer_ms = offered.elapsed().as_secs_f64() * 1000.0;
    let Some(sdp) = answer["sdp"].as_str() else {
        return Err(format!("session {session}: no answer: {answer}"));
    };
    let sdp = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
    rtc.sdp_api()
        .accept_answer(pending, sdp)
        .map_err(|e| e.to_string())?;
    let _ = ws.get_mut().set_nonblocking(true);
    Ok(Client {
        rtc,
        socket,
        local,
        avatar: avatar.to_string(),
        _ws: ws,
        offered,
        answer_ms,
        connect_ms: None,
        frames: 0,
        packets: 0,
        frame_bytes: 0,
        first_seq: None,
        last_seq: 0,
        timeout: now,
        video_mid: Some(video_mid),
        audio_packets: 0,
    })
}

/// Polls a client until its next timeout. A frame it completes is stamped
/// `arrived` (the kernel's receive time of the datagram just handled), else now.
fn drain(
    c: &mut Client,
    frames: &mut HashMap<(usize, u64), (u128, u128, u32)>,
    avatars: &[String],
    ticks_per_frame: u64,
    arrived: Option<u128>,
) {
    loop {
        match c.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                c.timeout = t;
                return;
            }
            Ok(Output::Transmit(t)) => {
                let _ = c.socket.send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(Event::Connected)) => {
                c.connect_ms = Some(c.offered.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(Output::Event(Event::MediaData(m))) if Some(m.mid) != c.video_mid => {
                c.audio_packets += 1;
            }
            Ok(Output::Event(Event::MediaData(m))) => {
                let wall = arrived.unwrap_or_else(|| {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos())
                });
                c.frames += 1;
                let (first, last) = (**m.seq_range.start(), **m.seq_range.end());
                c.packets += last.saturating_sub(first) + 1;
                c.frame_bytes += m.data.len() as u64;
                c.first_seq.get_or_insert(first);
                c.last_seq = c.last_seq.max(last);
                let index = m.time.numer() / ticks_per_frame.max(1);
                let a = avatars.iter().position(|x| *x == c.avatar).unwrap_or(0);
                let e = frames.entry((a, index)).or_insert((wall, wall, 0));
                e.0 = e.0.min(wall);
                e.1 = e.1.max(wall);
                e.2 += 1;
            }
            Ok(Output::Event(_)) => {}
            Err(_) => return,
        }
    }
}

/// CPU time (user + system) of this process, in seconds.
pub fn process_cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat").unwrap_or(0.0)
}

/// CPU time of one thread of this process, in seconds.
pub fn thread_cpu_seconds(tid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/self/task/{tid}/stat")).unwrap_or(0.0)
}

fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

pub use portcast_net::metrics::rss_bytes;
