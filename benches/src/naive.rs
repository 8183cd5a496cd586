//! A naive str0m fan-out server: the baseline portcast's loop is measured
//! against (issue 17), driven by the same viewer process in the same run.
//!
//! What a first str0m server would look like: one thread, one UDP port,
//! blocking WebSocket signaling in portcast's protocol, canned frames (the
//! busy test pattern encoded once at start and played in a loop), and per
//! viewer per frame str0m's `write` (packetization and SRTP per viewer) and
//! one `send_to` per datagram. Datagrams find their session through a map
//! from the sender's address, learned from the first one `Rtc::accepts`.
//! No batching, no shared packetization, no pacing of its own.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use portcast_engine::encoder::{Encoded, EncoderSettings, H264Encoder};
use portcast_engine::pattern::TestPattern;
use str0m::bwe::Bitrate;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tungstenite::{Message, WebSocket};

use crate::daemon::current_tid;

/// The naive server, running on its own thread.
pub struct Naive {
    /// Where viewers open `ws://{signal}/ws/{session}`.
    pub signal: SocketAddr,
    /// Its one thread (for per-thread CPU time).
    pub loop_tid: u32,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// One viewer.
struct Peer {
    rtc: Rtc,
    video: Option<(Mid, Pt)>,
    timeout: Instant,
    /// Kept open for the session's life, as the viewers keep theirs.
    _ws: WebSocket<TcpStream>,
}

impl Naive {
    /// Encodes `canned` pictures of the busy test pattern with `settings`
    /// (an IDR every second) and starts serving them at `settings.fps`, with
    /// str0m's bandwidth estimation (and its pacer) when `estimation` is set.
    pub fn start(
        settings: EncoderSettings,
        canned: usize,
        estimation: bool,
    ) -> Result<Naive, String> {
        let mut pattern = TestPattern::new(settings.width as usize, settings.height as usize)
            .ok_or("no test pattern at that size")?;
        pattern.set_busy(true);
        let mut encoder = H264Encoder::new(settings).map_err(|e| e.to_string())?;
        let mut frames: Vec<Arc<[u8]>> = Vec::with_capacity(canned);
        let mut buf = Vec::new();
        for i in 0..canned as u64 {
            buf.clear();
            let idr = i % u64::from(settings.fps.max(1)) == 0;
            let kind = encoder
                .encode(&pattern.render(i, 0), idr, &mut buf)
                .map_err(|e| e.to_string())?;
            if kind != Encoded::Skipped {
                frames.push(Arc::from(&buf[..]));
            }
        }
        if frames.is_empty() {
            return Err("the encoder made no picture".into());
        }
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let signal = listener.local_addr().map_err(|e| e.to_string())?;
        let udp = UdpSocket::bind("127.0.0.1:0".parse().expect("an address"))
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = mpsc::channel();
        let frame = Duration::from_secs(1) / settings.fps.max(1);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("naive-loop".into())
            .spawn(move || {
                let _ = tid_tx.send(current_tid());
                if let Err(e) = serve(listener, udp, &frames, frame, estimation, &flag) {
                    eprintln!("naive server failed: {e}");
                }
            })
            .map_err(|e| e.to_string())?;
        let loop_tid = tid_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        Ok(Naive {
            signal,
            loop_tid,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Naive {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    listener: TcpListener,
    mut udp: UdpSocket,
    frames: &[Arc<[u8]>],
    frame: Duration,
    estimation: bool,
    stop: &AtomicBool,
) -> Result<(), String> {
    let local = udp.local_addr().map_err(|e| e.to_string())?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    poll.registry()
        .register(&mut udp, Token(0), Interest::READABLE)
        .map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(64);
    let mut peers: Vec<Peer> = Vec::new();
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut next_frame = Instant::now();
    let mut index: u64 = 0;
    let ticks = 90_000 * frame.as_micros() as u64 / 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        // Signaling: each new viewer is answered before anything else goes on.
        while let Ok((stream, _)) = listener.accept() {
            match answer(stream, local, estimation) {
                Ok(p) => peers.push(p),
                Err(e) => eprintln!("naive server: offer refused: {e}"),
            }
        }
        let now = Instant::now();
        let wake = peers
            .iter()
            .map(|p| p.timeout)
            .fold(next_frame, Instant::min)
            .min(now + Duration::from_millis(50));
        poll.poll(&mut events, Some(wake.saturating_duration_since(now)))
            .map_err(|e| e.to_string())?;
        loop {
            let (n, from) = match udp.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            };
            let now = Instant::now();
            let Ok(r) = Receive::new(Protocol::Udp, from, local, &buf[..n]) else {
                continue;
            };
            let input = Input::Receive(now, r);
            let found = by_addr
                .get(&from)
                .copied()
                .or_else(|| peers.iter().position(|p| p.rtc.accepts(&input)));
            if let Some(i) = found {
                by_addr.insert(from, i);
                let _ = peers[i].rtc.handle_input(input);
                drain(&mut peers[i], &udp);
            }
        }
        let now = Instant::now();
        if now >= next_frame {
            let data = &frames[(index % frames.len() as u64) as usize];
            let rtp = MediaTime::new(index * ticks, Frequency::NINETY_KHZ);
            for p in peers.iter_mut() {
                if let Some((mid, pt)) = p.video {
                    if let Some(w) = p.rtc.writer(mid) {
                        let _ = w.write(pt, now, rtp, data.clone());
                    }
                    drain(p, &udp);
                }
            }
            index += 1;
            next_frame += frame;
        }
        for p in peers.iter_mut().filter(|p| p.timeout <= now) {
            let _ = p.rtc.handle_input(Input::Timeout(now));
            drain(p, &udp);
        }
    }
    Ok(())
}

/// Answers one viewer's offer (blocking, as a naive server would).
fn answer(stream: TcpStream, local: SocketAddr, estimation: bool) -> Result<Peer, String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut ws = tungstenite::accept(stream).map_err(|e| e.to_string())?;
    let offer: serde_json::Value = loop {
        match ws.read().map_err(|e| e.to_string())? {
            Message::Text(t) => {
                break serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?
            }
            _ => continue,
        }
    };
    let sdp = offer["sdp"].as_str().ok_or("no sdp")?;
    let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
    let mut config = Rtc::builder();
    if estimation {
        config = config.enable_bwe(Some(Bitrate::kbps(1000)));
    }
    let now = Instant::now();
    let mut rtc = config.build(now);
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| e.to_string())?;
    let text = serde_json::json!({ "type": "webrtc_answer", "sdp": answer.to_sdp_string() });
    ws.send(Message::text(text.to_string()))
        .map_err(|e| e.to_string())?;
    ws.get_mut()
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    Ok(Peer {
        rtc,
        video: None,
        timeout: now,
        _ws: ws,
    })
}

/// Polls one viewer's `Rtc` until it waits: each datagram is one `send_to`.
fn drain(p: &mut Peer, udp: &UdpSocket) {
    loop {
        match p.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                p.timeout = t;
                return;
            }
            Ok(Output::Transmit(t)) => {
                let _ = udp.send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(Event::MediaAdded(m))) if m.kind == MediaKind::Video => {
                let pt = p.rtc.writer(m.mid).and_then(|w| {
                    w.payload_params()
                        .find(|x| x.spec().codec == Codec::H264)
                        .map(|x| x.pt())
                });
                p.video = pt.map(|pt| (m.mid, pt));
            }
            Ok(Output::Event(_)) => {}
            Err(_) => {
                // A broken session waits for nothing more.
                p.timeout = Instant::now() + Duration::from_secs(3600);
                p.video = None;
                return;
            }
        }
    }
}
