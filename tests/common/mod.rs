//! A real-network viewer for daemon tests: a WebSocket for signaling and a
//! str0m `Rtc` on a loopback UDP socket, decoding what arrives with openh264.

#![allow(dead_code)] // each test file uses a different part

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use portcast_engine::pattern::{read_frame_counter, I420};
use serde_json::Value;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tungstenite::{Message, WebSocket};

/// Ports that were free a moment ago (bind to 0, read, release).
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    loop {
        let first = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first > 60000 {
            continue;
        }
        let range: Vec<u16> = (first..first + n as u16).collect();
        if range
            .iter()
            .all(|p| UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        {
            return range;
        }
    }
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the signaling port; the whole response, head and body.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// `GET path`, or why the request could not be made.
pub fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    http_request(addr, "GET", path, &[], b"")
}

/// A file of `fixtures/offers/`.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/offers/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One HTTP/1.1 request (with a `Content-Length` when `body` is not empty);
/// the whole response as text.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Ok(out)
}

/// A response's status code, the value of header `name` (case-insensitive) and its body.
pub fn http_parts<'a>(response: &'a str, name: &str) -> (u16, Option<&'a str>, &'a str) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let header = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    });
    (status, header, body)
}

/// The value of the first `/metrics` line starting with `name_and_labels` (0 if none).
pub fn metric(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The daemon binary running as a child process; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub signal_port: u16,
    pub udp_ports: Vec<u16>,
    pub log_path: std::path::PathBuf,
    /// The renderers' ingest socket: one per daemon, so tests can run side by side.
    pub ingest_path: std::path::PathBuf,
}

impl Daemon {
    /// Starts the daemon and waits until it is ready.
    pub fn start(extra: &[&str]) -> Daemon {
        let mut d = Daemon::spawn(extra);
        d.wait_ready();
        d
    }

    /// Starts the daemon without waiting for anything.
    pub fn spawn(extra: &[&str]) -> Daemon {
        let signal_port = free_tcp_port();
        let udp_ports = free_udp_ports(5);
        let log_path = std::env::temp_dir().join(format!("portcast-test-{signal_port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let ingest_path = std::env::temp_dir().join(format!("portcast-test-{signal_port}.sock"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcast"));
        cmd.args([
            "--bind-ip",
            "127.0.0.1",
            "--public-ip",
            "127.0.0.1",
            "--signal-port",
            &signal_port.to_string(),
            "--udp-ports",
            &format!("{}-{}", udp_ports[0], udp_ports[4]),
            "--width",
            "320",
            "--height",
            "180",
            "--ingest-socket",
        ])
        .arg(&ingest_path)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
        for (k, _) in std::env::vars() {
            if k.starts_with("PORTCAST_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd.spawn().expect("daemon starts");
        Daemon {
            child,
            signal_port,
            udp_ports,
            log_path,
            ingest_path,
        }
    }

    /// Waits (bounded) for `/readyz` to answer 200: the daemon's documented
    /// readiness, given only when every socket is bound and every source runs.
    pub fn wait_ready(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.signal_port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match try_http_get(addr, "/readyz") {
                Ok(r) if r.starts_with("HTTP/1.1 200") => return,
                Ok(r) => r,
                Err(e) => e.to_string(),
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "daemon exited ({status}) before it was ready: {}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready after 30 s (last /readyz: {last}): {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(
            SocketAddr::from(([127, 0, 0, 1], self.signal_port)),
            "/metrics",
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn connect_ws(port: u16, session: &str) -> WebSocket<TcpStream> {
    connect_ws_query(port, session, "")
}

/// Opens `/ws/{session}{query}` (query like `?token=...`, or empty).
pub fn connect_ws_query(port: u16, session: &str, query: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}/ws/{session}{query}");
    let (ws, _) = tungstenite::client::client(url.as_str(), stream).expect("websocket upgrade");
    ws
}

pub fn send_recv(ws: &mut WebSocket<TcpStream>, text: &str) -> Value {
    ws.send(Message::text(text)).unwrap();
    loop {
        match ws.read().expect("reply") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            _ => continue,
        }
    }
}

/// A viewer over real sockets.
pub struct NetViewer {
    /// Its signaling WebSocket (none for a WHEP viewer).
    pub ws: Option<WebSocket<TcpStream>>,
    /// The session's resource URL, for a WHEP viewer.
    pub whep_location: Option<String>,
    pub rtc: Rtc,
    pub udp: UdpSocket,
    pub local: SocketAddr,
    pub answer: Value,
    pub counters: Vec<u64>,
    /// Wall-clock time each of `counters` was decoded (comparable with another process's clock).
    pub decoded_at: Vec<SystemTime>,
    /// When set, every depacketized access unit is kept in `media`, as str0m handed it over.
    pub keep_media: bool,
    pub media: Vec<Vec<u8>>,
    pub connected_at: Option<Instant>,
    pub first_frame_at: Option<Instant>,
    pub started: Instant,
    decoder: Decoder,
    pub remote_addrs: Vec<SocketAddr>,
    video_mid: Option<str0m::media::Mid>,
    /// Audio packets received (when the offer had audio): RTP time, arrival, payload.
    pub audio: Vec<(u64, Instant, Vec<u8>)>,
}

impl NetViewer {
    /// Connects, offers and applies the answer (or returns the error reply).
    pub fn connect(port: u16, session: &str, avatar: &str) -> Result<NetViewer, Value> {
        Self::connect_query(port, session, avatar, "")
    }

    /// Like `connect`, offering to receive audio as well.
    pub fn connect_with_audio(port: u16, session: &str, avatar: &str) -> Result<NetViewer, Value> {
        Self::connect_offering(port, session, avatar, "", true)
    }

    /// Like `connect`, as a browser with VP8 and no H.264 (Firefox without
    /// OpenH264): what arrives is kept in `media` (not decoded).
    pub fn connect_vp8(port: u16, session: &str, avatar: &str) -> Result<NetViewer, Value> {
        let mut config = Rtc::builder().clear_codecs();
        config.codec_config().enable_vp8(true);
        let signal = |offer: &str| ws_signal(port, session, avatar, "", offer);
        let mut v = Self::connect_built(false, config, signal)?;
        v.keep_media = true;
        Ok(v)
    }

    /// Connects over WHEP: `POST /whep/{avatar}` with the offer; the error is
    /// the response's status and body.
    pub fn connect_whep(
        port: u16,
        avatar: &str,
        headers: &[(&str, &str)],
    ) -> Result<NetViewer, (u16, String)> {
        let mut location = None;
        let signal = |offer: &str| {
            let mut all = vec![("Content-Type", "application/sdp")];
            all.extend_from_slice(headers);
            let path = format!("/whep/{avatar}");
            let addr = ([127, 0, 0, 1], port).into();
            let r = http_request(addr, "POST", &path, &all, offer.as_bytes()).unwrap();
            let (status, loc, body) = http_parts(&r, "location");
            if status != 201 {
                return Err((status, body.to_string()));
            }
            location = loc.map(str::to_string);
            let answer = serde_json::json!({"type": "webrtc_answer", "sdp": body});
            Ok((answer, None))
        };
        let mut v = Self::connect_built(true, Rtc::builder(), signal)?;
        v.whep_location = location;
        Ok(v)
    }

    /// Like `connect`, with a query string on the WebSocket URL (e.g. `?token=...`).
    pub fn connect_query(
        port: u16,
        session: &str,
        avatar: &str,
        query: &str,
    ) -> Result<NetViewer, Value> {
        Self::connect_offering(port, session, avatar, query, false)
    }

    fn connect_offering(
        port: u16,
        session: &str,
        avatar: &str,
        query: &str,
        audio: bool,
    ) -> Result<NetViewer, Value> {
        let signal = |offer: &str| ws_signal(port, session, avatar, query, offer);
        Self::connect_built(audio, Rtc::builder(), signal)
    }

    /// Builds the `Rtc`, has `signal` carry its offer to the daemon and applies the answer.
    fn connect_built<E>(
        audio: bool,
        config: str0m::RtcConfig,
        signal: impl FnOnce(&str) -> Result<(Value, Option<WebSocket<TcpStream>>), E>,
    ) -> Result<NetViewer, E> {
        let started = Instant::now();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = udp.local_addr().unwrap();
        let mut rtc = config.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let video_mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        if audio {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().unwrap();
        let (answer, ws) = signal(&offer.to_sdp_string())?;
        let sdp = SdpAnswer::from_sdp_string(answer["sdp"].as_str().unwrap()).unwrap();
        rtc.sdp_api().accept_answer(pending, sdp).unwrap();
        Ok(NetViewer {
            ws,
            whep_location: None,
            rtc,
            udp,
            local,
            answer,
            counters: Vec::new(),
            decoded_at: Vec::new(),
            keep_media: false,
            media: Vec::new(),
            connected_at: None,
            first_frame_at: None,
            started,
            decoder: Decoder::new().unwrap(),
            remote_addrs: Vec::new(),
            video_mid: Some(video_mid),
            audio: Vec::new(),
        })
    }

    /// Runs the client for `d`, whatever arrives.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until_frames(usize::MAX, d);
    }

    /// Runs the client until `frames` pictures decoded or `limit` passed.
    pub fn run_until_frames(&mut self, frames: usize, limit: Duration) {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 2048];
        while Instant::now() < end && self.counters.len() < frames {
            let timeout = self.drain();
            let wait = timeout
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(20));
            self.udp.set_read_timeout(Some(wait)).unwrap();
            match self.udp.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if !self.remote_addrs.contains(&from) {
                        self.remote_addrs.push(from);
                    }
                    if let Ok(r) = Receive::new(Protocol::Udp, from, self.local, &buf[..n]) {
                        let _ = self.rtc.handle_input(Input::Receive(Instant::now(), r));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
                Err(e) => panic!("udp: {e}"),
            }
        }
    }

    fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    let _ = self.udp.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => self.connected_at = Some(Instant::now()),
                Output::Event(Event::MediaData(m)) if Some(m.mid) != self.video_mid => {
                    self.audio
                        .push((m.time.numer(), Instant::now(), m.data.to_vec()));
                }
                Output::Event(Event::MediaData(m)) => {
                    if self.keep_media {
                        self.media.push(m.data.to_vec());
                    }
                    if let Ok(Some(pic)) = self.decoder.decode(&m.data) {
                        let (width, height) = pic.dimensions();
                        let view = I420 {
                            y: pic.y(),
                            u: pic.u(),
                            v: pic.v(),
                            width,
                            height,
                            strides: pic.strides(),
                        };
                        if let Some(c) = read_frame_counter(&view) {
                            self.first_frame_at.get_or_insert_with(Instant::now);
                            self.counters.push(c);
                            self.decoded_at.push(SystemTime::now());
                        }
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Server messages received on the WebSocket so far (non-blocking).
    pub fn server_messages(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        let Some(ws) = self.ws.as_mut() else {
            return out;
        };
        while let Ok(m) = ws.read() {
            if let Message::Text(t) = m {
                if let Ok(v) = serde_json::from_str(t.as_str()) {
                    out.push(v);
                }
            }
        }
        out
    }
}

/// The seed signaling: opens `/ws/{session}` (with `query`), sends the offer,
/// returns the answer message and the WebSocket (or the error message).
fn ws_signal(
    port: u16,
    session: &str,
    avatar: &str,
    query: &str,
    offer: &str,
) -> Result<(Value, Option<WebSocket<TcpStream>>), Value> {
    let mut ws = connect_ws_query(port, session, query);
    let msg = serde_json::json!({
        "type": "webrtc_offer", "session_id": session, "user_id": 5,
        "avatar_id": avatar, "sdp": offer,
    });
    let answer = send_recv(&mut ws, &msg.to_string());
    if answer["type"] != "webrtc_answer" {
        return Err(answer);
    }
    // Reads never block the WebSocket: we only watch for server messages between UDP polls.
    ws.get_mut().set_nonblocking(true).unwrap();
    Ok((answer, Some(ws)))
}
