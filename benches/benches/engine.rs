//! Micro-benchmarks of the engine alone: one 720p P-frame and one IDR through
//! write + packetize + SRTP + drain for one viewer, and the demux lookup with
//! 1, 100 and 1000 sessions; and the P-frame again after 1, 5 and 33 ms of
//! wall time, the way the daemon meets it (one frame every 33 ms).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use portcast_engine::demux::{Demux, SessionKey};
use portcast_engine::encoder::{Encoded, EncoderSettings, H264Encoder};
use portcast_engine::pattern::TestPattern;
use portcast_engine::{
    AccessUnit, AvatarId, ConnId, Datagram, Engine, EngineConfig, Output, SessionId, SocketId,
    SocketSpec, VideoCodec,
};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output as RtcOutput, Rtc};

/// An engine with one viewer that completed ICE + DTLS and is streaming.
fn streaming_engine(now: &mut Instant) -> Engine {
    let public: SocketAddr = "127.0.0.1:10111".parse().unwrap();
    let mut engine = Engine::new(
        EngineConfig {
            sockets: vec![SocketSpec {
                local: public,
                public,
            }],
            ..EngineConfig::default()
        },
        *now,
    )
    .unwrap();
    let client_addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    // Offers playout-delay like Chromium, so each packet carries it as for a browser.
    let mut client = Rtc::builder()
        .set_extension(5, str0m::rtp::Extension::PlayoutDelay)
        .build(*now);
    client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    engine.open_connection(ConnId(1), SessionId::parse("bench").unwrap());
    let msg = serde_json::json!({"type":"webrtc_offer","session_id":"bench","avatar_id":"test-pattern","sdp":offer.to_sdp_string()});
    engine.handle_signal(*now, ConnId(1), &msg.to_string());
    let mut pending = Some(pending);
    for _ in 0..400 {
        *now += Duration::from_millis(5);
        engine.handle_timeout(*now);
        let _ = client.handle_input(Input::Timeout(*now));
        let mut to_engine = VecDeque::new();
        loop {
            match engine.poll_output() {
                Output::Timeout(_) => break,
                Output::Signal { text, .. } => {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if let (Some(sdp), Some(p)) = (v["sdp"].as_str(), pending.take()) {
                        client
                            .sdp_api()
                            .accept_answer(p, SdpAnswer::from_sdp_string(sdp).unwrap())
                            .unwrap();
                    }
                }
                Output::Transmit(t) => {
                    let r = Receive::new(Protocol::Udp, public, client_addr, &t.bytes).unwrap();
                    let _ = client.handle_input(Input::Receive(*now, r));
                }
                _ => {}
            }
        }
        while let Ok(o) = client.poll_output() {
            match o {
                RtcOutput::Timeout(_) => break,
                RtcOutput::Transmit(t) => to_engine.push_back(Vec::from(t.contents)),
                RtcOutput::Event(_) => {}
            }
        }
        for bytes in to_engine {
            engine.handle_datagram(
                *now,
                Datagram {
                    socket: SocketId(0),
                    from: client_addr,
                    bytes: &bytes,
                },
            );
        }
        if engine
            .sessions()
            .first()
            .is_some_and(|s| s.phase == portcast_engine::Phase::Streaming)
        {
            return engine;
        }
    }
    panic!("the viewer did not reach streaming");
}

fn encoded_720p() -> (AccessUnit, AccessUnit) {
    let mut pattern = TestPattern::new(1280, 720).unwrap();
    let mut enc = H264Encoder::new(EncoderSettings {
        bitrate_bps: 2_000_000,
        ..EncoderSettings::default()
    })
    .unwrap();
    let mut idr = None;
    let mut p = None;
    let now = Instant::now();
    for i in 0..10u64 {
        let mut buf = Vec::new();
        let kind = enc.encode(&pattern.render(i, 0), false, &mut buf).unwrap();
        let au = AccessUnit {
            codec: VideoCodec::H264,
            data: Arc::from(buf),
            rtp_time: i * 3000,
            keyframe: kind == Encoded::Keyframe,
            captured_at: now,
            encoded_at: now,
            frame_index: i,
            rendition: 0,
            bitrate_bps: 2_000_000,
        };
        match kind {
            Encoded::Keyframe if idr.is_none() => idr = Some(au),
            Encoded::Delta => p = Some(au),
            _ => {}
        }
    }
    (idr.unwrap(), p.unwrap())
}

fn drain(engine: &mut Engine) -> usize {
    let mut n = 0;
    loop {
        match engine.poll_output() {
            Output::Timeout(_) => return n,
            Output::Transmit(_) => n += 1,
            _ => {}
        }
    }
}

/// One streaming engine fed the same encoded frame again and again, each time
/// 33 ms and 3000 RTP ticks after the last, as a 30 fps source would.
struct Feed {
    engine: Engine,
    now: Instant,
    rtp: u64,
    avatar: AvatarId,
}

impl Feed {
    /// The frame after the last one, built from `template`.
    fn next(&mut self, template: &AccessUnit) -> AccessUnit {
        self.rtp += 3000;
        self.now += Duration::from_millis(33);
        AccessUnit {
            rtp_time: self.rtp,
            ..template.clone()
        }
    }

    /// Writes `au` to the viewer and drains the engine; returns the datagrams made.
    fn write(&mut self, au: &AccessUnit) -> usize {
        self.engine.handle_access_unit(self.now, &self.avatar, au);
        drain(&mut self.engine)
    }
}

fn frame_through_engine(c: &mut Criterion) {
    let mut now = Instant::now();
    let engine = streaming_engine(&mut now);
    let (idr, p) = encoded_720p();
    let mut feed = Feed {
        engine,
        now,
        rtp: 100,
        avatar: AvatarId::parse("test-pattern").unwrap(),
    };
    // The first write must be a keyframe for the viewer.
    feed.write(&idr);
    let mut group = c.benchmark_group("engine");
    for (kind, template) in [("P-frame", &p), ("IDR", &idr)] {
        group.bench_function(
            format!("720p {kind} {} B write+SRTP+drain", template.data.len()),
            |b| {
                b.iter(|| {
                    let au = feed.next(template);
                    feed.write(&au)
                })
            },
        );
    }
    group.finish();

    // The same P-frame as the daemon sees it: one frame after a gap of real
    // time. The thread spins through the gap (it never sleeps and reads no
    // clock inside the engine), so what grows with the gap is the state the
    // machine lost meanwhile (caches, TLB, branch predictors), not work.
    let mut group = c.benchmark_group("engine-after-gap");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    for gap_ms in [1u64, 5, 33] {
        group.bench_function(
            format!("720p P-frame {} B, {gap_ms} ms spin before", p.data.len()),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let gap = Instant::now();
                        while gap.elapsed() < Duration::from_millis(gap_ms) {
                            std::hint::spin_loop();
                        }
                        let au = feed.next(&p);
                        let t = Instant::now();
                        feed.write(&au);
                        total += t.elapsed();
                    }
                    total
                })
            },
        );
    }
    group.finish();
}

fn stun_request(ufrag: &str) -> Vec<u8> {
    let user = format!("{ufrag}:client");
    let mut attr = Vec::new();
    attr.extend_from_slice(&6u16.to_be_bytes());
    attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attr.extend_from_slice(user.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let mut m = vec![0, 1];
    m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&[9; 12]);
    m.extend_from_slice(&attr);
    m
}

fn demux_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("demux");
    for n in [1usize, 100, 1000] {
        let mut d = Demux::new();
        for i in 0..n {
            d.add_session(SessionKey(i as u64), &format!("ufrag{i:08}"));
            d.learn_pair(
                SessionKey(i as u64),
                SocketId(i % 5),
                SocketAddr::from(([198, 18, 0, 2], 1024 + i as u16)),
            );
        }
        let stun = stun_request(&format!("ufrag{:08}", n / 2));
        let srtp = [0x80u8, 0x66, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        let from = SocketAddr::from(([198, 18, 0, 2], 1024 + (n / 2) as u16));
        group.bench_function(format!("stun by ufrag, {n} sessions"), |b| {
            b.iter(|| d.route(SocketId(0), from, std::hint::black_box(&stun)))
        });
        group.bench_function(format!("srtp by pair, {n} sessions"), |b| {
            b.iter(|| d.route(SocketId((n / 2) % 5), from, std::hint::black_box(&srtp)))
        });
    }
    group.finish();
    let _ = BatchSize::SmallInput;
}

criterion_group!(benches, frame_through_engine, demux_lookup);
criterion_main!(benches);
