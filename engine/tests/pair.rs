//! The engine against str0m viewers in memory: ICE, DTLS, SRTP and H.264, no sockets.

mod util;

use std::time::Duration;

use portcast_engine::pattern::CLOCK_MODULUS_MS;
use portcast_engine::{AvatarId, EndReason, EngineConfig, Phase};
use str0m::media::{Direction, MediaKind};
use util::*;

fn config(public_ip: &str, public_base: u16) -> EngineConfig {
    EngineConfig {
        sockets: sockets(public_ip, public_base),
        ..EngineConfig::default()
    }
}

fn candidate_lines(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate"))
        .map(str::to_string)
        .collect()
}

#[test]
fn viewer_decodes_advancing_frames_from_the_test_pattern() {
    let mut w = World::new(config("127.0.0.1", 10111), 320, 180);
    let v = w.add_viewer("session-1", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(3));
    let viewer = &w.viewers[v];
    assert!(viewer.connected, "ICE + DTLS completed");
    assert!(viewer.errors.is_empty(), "{:?}", viewer.errors);
    let answer = viewer.answer_sdp.as_deref().unwrap();
    assert!(answer.contains("a=ice-lite"), "answer is ICE-lite");
    assert!(answer.contains("a=sendonly"), "answer sends video");
    assert!(
        viewer.counters.len() >= 60,
        "decoded only {} frames",
        viewer.counters.len()
    );
    assert!(viewer.counters_advance(), "counters {:?}", viewer.counters);
    assert_eq!(viewer.decode_errors, 0);
    // The capture clock band survives H.264 and reads back on every picture.
    for (counter, clock) in viewer.counters.iter().zip(&viewer.clocks) {
        assert_eq!(
            *clock,
            Some(capture_clock_of(*counter) % CLOCK_MODULUS_MS),
            "frame {counter}"
        );
    }
    let info = &w.engine.sessions()[0];
    assert_eq!(info.phase, Phase::Streaming);
    assert_eq!(info.remote, Some(addr("127.0.0.1:40000")));
}

#[test]
fn viewer_decodes_when_the_public_address_differs_from_the_local_one() {
    let mut w = World::new(config("198.18.0.1", 20111), 320, 180);
    let v = w.add_viewer("session-nat", addr("198.18.7.7:40000"));
    let answer = w.viewers[v].answer_sdp.clone().unwrap();
    let cands = candidate_lines(&answer);
    assert_eq!(cands.len(), 1, "one host candidate: {cands:?}");
    assert!(
        cands[0].contains("198.18.0.1 20111 typ host"),
        "{}",
        cands[0]
    );
    assert!(
        !answer.contains("127.0.0.1"),
        "the bound address never leaks into the answer"
    );
    w.run(Duration::from_secs(2));
    let viewer = &w.viewers[v];
    assert!(viewer.connected);
    assert!(
        viewer.counters.len() >= 40,
        "decoded {}",
        viewer.counters.len()
    );
    assert!(viewer.counters_advance());
    // Every datagram reached the viewer from the announced public address.
    assert!(viewer
        .heard_from
        .iter()
        .all(|a| *a == addr("198.18.0.1:20111")));
}

#[test]
fn fifty_viewers_behind_one_forwarder_share_five_ports_and_one_encoder() {
    let mut w = World::new(config("198.18.0.1", 10111), 256, 144);
    // FRP hides the clients: all come from the forwarder's ip, each its own port.
    for i in 0..50u16 {
        w.add_viewer(
            &format!("s{i}"),
            std::net::SocketAddr::from(([198, 18, 0, 2], 40000 + i)),
        );
        w.run(Duration::from_millis(20));
    }
    let encodes_before = w.source.encodes;
    w.run(Duration::from_secs(2));
    // One encoder: one encode per frame time, whatever the number of viewers.
    let encodes = w.source.encodes - encodes_before;
    assert!((58..=62).contains(&encodes), "{encodes} encodes in 2 s");
    let mut per_port = std::collections::HashMap::new();
    for v in &w.viewers {
        assert!(v.connected, "{} connected", v.session_id);
        assert!(
            v.counters.len() >= 40,
            "{} decoded {}",
            v.session_id,
            v.counters.len()
        );
        assert!(v.counters_advance(), "{} in order", v.session_id);
        assert_eq!(v.decode_errors, 0, "{} decode errors", v.session_id);
        let port = v.heard_from[0];
        assert!(
            v.heard_from.iter().all(|a| *a == port),
            "{} heard from one port only",
            v.session_id
        );
        *per_port.entry(port).or_insert(0) += 1;
    }
    assert_eq!(per_port.len(), 5, "all five ports used");
    assert!(
        per_port.values().all(|n| *n == 10),
        "balanced: {per_port:?}"
    );
    let s = w.engine.stats();
    assert_eq!(
        (s.drop_unknown_source.get(), s.drop_unknown_ufrag.get()),
        (0, 0),
        "no datagram lost its way"
    );
    // Joining viewers were merged into far fewer IDRs than viewers.
    assert!(
        w.source.keyframes < 50,
        "{} keyframes for 50 joins",
        w.source.keyframes
    );
}

#[test]
fn a_new_viewer_gets_a_keyframe_quickly_and_pli_asks_the_source_again() {
    let mut w = World::new(config("127.0.0.1", 10111), 320, 180);
    w.add_viewer("first", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(2));
    let idr_before = w.source.keyframes;
    let requests_before = w.keyframe_requests;
    let late = w.add_viewer("late", addr("127.0.0.1:40001"));
    w.run(Duration::from_millis(700));
    assert!(
        w.keyframe_requests > requests_before,
        "joining asks for a keyframe"
    );
    assert!(w.source.keyframes > idr_before, "the source made an IDR");
    assert!(
        !w.viewers[late].counters.is_empty(),
        "late viewer decodes within 0.7 s"
    );
    // A PLI from the viewer reaches the source.
    let requests = w.keyframe_requests;
    w.run(Duration::from_millis(600)); // leave the rate-limit window
    w.viewers[late].send_pli();
    w.run(Duration::from_millis(300));
    assert!(
        w.keyframe_requests > requests,
        "PLI became a keyframe request"
    );
}

#[test]
fn a_viewer_joining_soon_after_a_keyframe_decodes_the_moment_its_media_starts() {
    let mut w = World::new(config("127.0.0.1", 10111), 320, 180);
    w.add_viewer("first", addr("127.0.0.1:40000"));
    // The first viewer's IDR and a few pictures after it are the avatar's GOP.
    w.run(Duration::from_millis(150));
    let idr_before = w.source.keyframes;
    let late = w.add_viewer("late", addr("127.0.0.1:40001"));
    let streaming = |w: &World| {
        w.engine
            .sessions()
            .iter()
            .any(|s| s.session_id == "late" && s.phase == Phase::Streaming)
    };
    let mut waited = Duration::ZERO;
    while !streaming(&w) {
        assert!(
            waited < Duration::from_secs(2),
            "late viewer never streamed"
        );
        w.run(TICK);
        waited += TICK;
    }
    // Within one frame interval of its media starting (str0m paces the
    // replayed GOP at its bandwidth estimate), before a new IDR could come.
    let mut paced = Duration::ZERO;
    while w.viewers[late].counters.is_empty() {
        assert!(
            paced < Duration::from_millis(33),
            "the late viewer decodes at once from the replayed GOP"
        );
        w.run(TICK);
        paced += TICK;
    }
    assert_eq!(
        w.source.keyframes, idr_before,
        "no IDR was needed (the request at answer time merged into the first viewer's)"
    );
    w.run(Duration::from_secs(1));
    let v = &w.viewers[late];
    assert!(v.counters.len() >= 30, "decoded {}", v.counters.len());
    assert!(v.counters_advance(), "{:?}", v.counters);
    assert_eq!(
        v.decode_errors, 0,
        "the replayed GOP and live pictures join up"
    );
    // portcast_first_frame_seconds: one observation per viewer, its answer-to-first-frame wait.
    let first = &w.engine.stats().first_frame;
    assert_eq!(first.count(), 2, "one per viewer, not per frame");
    assert!(first.sum() > 0.0 && first.sum() < 2.5, "{}", first.sum());
}

#[test]
fn closing_the_websocket_frees_every_trace_of_the_session() {
    let mut w = World::new(config("127.0.0.1", 10111), 256, 144);
    let v = w.add_viewer("bye-now", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(1));
    assert_eq!(w.engine.session_count(), 1);
    assert_eq!(w.engine.demux_table_sizes(), (1, 1));
    let conn = w.viewers[v].conn;
    w.engine.close_connection(w.now, conn);
    w.pump();
    assert_eq!(w.engine.session_count(), 0);
    assert_eq!(w.engine.demux_table_sizes(), (0, 0));
    assert_eq!(w.engine.connection_count(), 0);
    assert_eq!(
        w.closed,
        vec![(conn, "bye-now".to_string(), EndReason::WebSocketClosed)]
    );
    // The session id is free again for a new connection.
    w.add_viewer("bye-now", addr("127.0.0.1:40001"));
    w.run(Duration::from_secs(1));
    assert!(!w.viewers[1].counters.is_empty());
}

#[test]
fn an_avatar_is_watched_from_its_first_viewer_to_its_last() {
    let mut w = World::new(config("127.0.0.1", 10111), 256, 144);
    let a = w.add_viewer("first", addr("127.0.0.1:40000"));
    w.run(Duration::from_millis(500));
    assert_eq!(w.watched, [true], "the first viewer starts the source");
    let b = w.add_viewer("second", addr("127.0.0.1:40001"));
    w.run(Duration::from_millis(500));
    let (ca, cb) = (w.viewers[a].conn, w.viewers[b].conn);
    w.engine.close_connection(w.now, ca);
    w.pump();
    assert_eq!(
        w.watched,
        [true],
        "a second viewer or one of two leaving changes nothing"
    );
    w.engine.close_connection(w.now, cb);
    w.pump();
    assert_eq!(
        w.watched,
        [true, false],
        "the last viewer leaving pauses it"
    );
    w.add_viewer("again", addr("127.0.0.1:40002"));
    w.run(Duration::from_millis(500));
    assert_eq!(w.watched, [true, false, true]);
    assert!(!w.viewers[2].counters.is_empty(), "the next viewer decodes");
}

#[test]
fn a_viewer_without_h264_gets_vp8_from_its_own_encoder_beside_h264_viewers() {
    let mut w = World::new(config("127.0.0.1", 10111), 256, 144);
    let h = w.add_viewer("h264", addr("127.0.0.1:40000"));
    let v = w.add_vp8_viewer("vp8", addr("127.0.0.1:40001"));
    w.run(Duration::from_secs(1));
    let answer = w.viewers[v].answer_sdp.clone().expect("answered");
    assert!(answer.contains("VP8/90000"), "{answer}");
    assert!(!answer.contains("H264"), "{answer}");
    assert_eq!(w.watched, [true]);
    assert_eq!(
        w.watched_vp8,
        [true],
        "the VP8 viewer starts the VP8 encoder"
    );
    let frames = w.viewers[v].vp8.clone().unwrap();
    assert!(frames.len() >= 20, "{} VP8 frames in 1 s", frames.len());
    // VP8 frame tag (RFC 6386 9.1): bit 0 clear and the start code 9d 01 2a on a keyframe.
    let is_key = |f: &Vec<u8>| f.len() > 6 && f[0] & 1 == 0 && f[3..6] == [0x9d, 0x01, 0x2a];
    assert!(is_key(&frames[0]), "the first VP8 frame is a keyframe");
    assert!(w.viewers[h].counters_advance() && w.viewers[h].counters.len() >= 20);
    assert_eq!(w.viewers[h].decode_errors, 0);

    // The VP8 viewer leaves: its encoder stops; the H.264 viewer goes on.
    let conn = w.viewers[v].conn;
    w.engine.close_connection(w.now, conn);
    w.pump();
    assert_eq!(w.watched_vp8, [true, false]);
    assert!(w.source.vp8.is_none());
    let before = w.viewers[h].counters.len();
    w.run(Duration::from_millis(500));
    assert!(w.viewers[h].counters.len() > before);
    assert_eq!(w.watched, [true], "H.264 was watched throughout");
}

#[test]
fn a_vp8_viewer_joining_late_starts_on_a_keyframe_of_its_own_codec() {
    let mut w = World::new(config("127.0.0.1", 10111), 256, 144);
    w.add_viewer("h264", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(1));
    let v = w.add_vp8_viewer("vp8-late", addr("127.0.0.1:40001"));
    w.run(Duration::from_millis(700));
    let frames = w.viewers[v].vp8.clone().unwrap();
    assert!(!frames.is_empty(), "the late VP8 viewer got no frame");
    assert!(frames[0][0] & 1 == 0, "its first frame is a VP8 keyframe");
    let keys = |w: &World| {
        let f = w.viewers[v].vp8.as_ref().unwrap();
        f.iter().filter(|f| f[0] & 1 == 0).count()
    };
    // A PLI from the VP8 viewer makes the VP8 encoder send a keyframe.
    w.run(Duration::from_millis(600)); // leave the rate-limit window
    let before = keys(&w);
    w.viewers[v].send_pli();
    w.run(Duration::from_millis(300));
    assert!(keys(&w) > before, "PLI brought a VP8 keyframe");
}

#[test]
fn a_datagram_the_driver_drops_makes_its_viewer_skip_to_a_keyframe_it_asks_for() {
    // A slow ICE-TCP viewer's queue overflowed: its picture is broken until a keyframe.
    let mut w = World::new(config("127.0.0.1", 10111), 256, 144);
    let slow = w.add_viewer("slow", addr("127.0.0.1:40000"));
    let other = w.add_viewer("other", addr("127.0.0.1:40001"));
    w.run(Duration::from_secs(1));
    w.run(Duration::from_millis(600)); // leave the keyframe rate-limit window
    let info = w
        .engine
        .sessions()
        .into_iter()
        .find(|s| s.session_id == "slow")
        .unwrap();
    let (requests, keyframes) = (w.keyframe_requests, w.source.keyframes);
    w.engine
        .transmit_dropped(w.now, info.socket, info.remote.expect("a learned remote"));
    w.pump();
    assert_eq!(w.keyframe_requests, requests + 1, "a keyframe is asked for");
    let before = (
        w.viewers[slow].counters.len(),
        w.viewers[other].counters.len(),
    );
    w.run(Duration::from_millis(500));
    assert!(w.source.keyframes > keyframes, "the source made it");
    assert!(
        w.viewers[slow].counters.len() > before.0,
        "and decodes from it"
    );
    assert!(
        w.viewers[other].counters.len() > before.1,
        "the other viewer never stopped"
    );
    assert_eq!(w.viewers[slow].decode_errors, 0);
}

#[test]
fn a_silent_viewer_loses_its_session_after_the_consent_timeout() {
    let cfg = EngineConfig {
        consent_timeout: Duration::from_secs(3),
        ..config("127.0.0.1", 10111)
    };
    let mut w = World::new(cfg, 256, 144);
    let v = w.add_viewer("gone", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(1));
    assert!(w.viewers[v].connected);
    w.viewers[v].online = false; // its datagrams stop reaching the daemon
    w.run(Duration::from_millis(2500));
    assert_eq!(w.engine.session_count(), 1, "still inside the timeout");
    w.run(Duration::from_secs(2));
    assert_eq!(w.engine.session_count(), 0);
    assert_eq!(w.engine.demux_table_sizes(), (0, 0));
    assert_eq!(w.closed[0].2, EndReason::ConsentExpired);
    assert_eq!(
        w.viewers[v].byes.len(),
        1,
        "the page is told: {:?}",
        w.viewers[v].byes
    );
    assert_eq!(w.viewers[v].byes[0]["reason"], "consent_expired");
    assert_eq!(w.engine.stats().ended_count("consent_expired"), 1);
}

#[test]
fn a_viewer_that_never_connects_is_dropped_after_the_connect_timeout() {
    let cfg = EngineConfig {
        connect_timeout: Duration::from_secs(2),
        ..config("127.0.0.1", 10111)
    };
    let mut w = World::new(cfg, 256, 144);
    let mut v = Viewer::new(1, "never", addr("127.0.0.1:40000"), w.now);
    let sdp = v.make_offer();
    w.engine
        .open_connection(v.conn, portcast_engine::SessionId::parse("never").unwrap());
    w.engine
        .handle_signal(w.now, v.conn, &offer_message("never", "test-pattern", &sdp));
    // The answer is sent, but the viewer never sends a single check.
    w.pump();
    w.run(Duration::from_millis(2100));
    assert_eq!(w.engine.session_count(), 0);
    assert_eq!(w.closed[0].2, EndReason::ConnectTimeout);
}

#[test]
fn playout_delay_is_answered_and_sent_only_to_viewers_that_offer_it() {
    let mut w = World::new(config("127.0.0.1", 10111), 320, 180);
    // Chromium offers the extension (its id 5); str0m's default offer, like aiortc's, does not.
    let offering = str0m::Rtc::builder().set_extension(5, str0m::rtp::Extension::PlayoutDelay);
    let a = w.add_viewer_from("wants-delay", addr("127.0.0.1:40001"), offering, |_| {});
    let b = w.add_viewer("plain", addr("127.0.0.1:40002"));
    w.run(Duration::from_secs(2));
    let uri = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
    let answer_a = w.viewers[a].answer_sdp.clone().unwrap();
    let answer_b = w.viewers[b].answer_sdp.clone().unwrap();
    assert!(
        answer_a.contains(&format!("a=extmap:5 {uri}")),
        "{answer_a}"
    );
    assert!(!answer_b.contains(uri), "{answer_b}");
    // The default asks for rendering at once on every frame: min 0, max 10 ms.
    let zero = str0m::media::MediaTime::from_hundredths(0);
    let ten_ms = str0m::media::MediaTime::from_hundredths(1);
    let delays = &w.viewers[a].playout_delays;
    assert!(delays.len() >= 30, "{} frames", delays.len());
    assert!(
        delays.iter().all(|d| *d == Some((zero, ten_ms))),
        "{delays:?}"
    );
    assert!(w.viewers[b].playout_delays.iter().all(Option::is_none));
    assert!(
        w.viewers[b].counters.len() >= 30,
        "the plain viewer still plays"
    );
}

#[test]
fn no_playout_delay_is_negotiated_when_it_is_turned_off() {
    let mut w = World::new(
        EngineConfig {
            playout_delay: None,
            ..config("127.0.0.1", 10111)
        },
        320,
        180,
    );
    let offering = str0m::Rtc::builder().set_extension(5, str0m::rtp::Extension::PlayoutDelay);
    let a = w.add_viewer_from("no-delay", addr("127.0.0.1:40001"), offering, |_| {});
    w.run(Duration::from_secs(1));
    let answer = w.viewers[a].answer_sdp.clone().unwrap();
    assert!(!answer.contains("playout-delay"), "{answer}");
    assert!(w.viewers[a].playout_delays.iter().all(Option::is_none));
}

#[test]
fn a_reloaded_playout_delay_reaches_the_next_frames() {
    let mut w = World::new(config("127.0.0.1", 10111), 320, 180);
    let offering = str0m::Rtc::builder().set_extension(5, str0m::rtp::Extension::PlayoutDelay);
    let a = w.add_viewer_from("wants-delay", addr("127.0.0.1:40001"), offering, |_| {});
    w.run(Duration::from_secs(1));
    let before = w.viewers[a].playout_delays.len();
    let hundredths = str0m::media::MediaTime::from_hundredths;
    assert!(before >= 10, "{before} frames");
    // playout_delay_max_ms = 120: min stays 0, max goes on the wire in 10 ms units.
    let relaxed = EngineConfig {
        playout_delay: Some(portcast_engine::PlayoutDelay {
            min: Duration::ZERO,
            max: Duration::from_millis(120),
        }),
        ..config("127.0.0.1", 10111)
    };
    let changed = w.engine.reload_limits(&relaxed).unwrap();
    assert_eq!(changed, vec!["playout_delay"]);
    w.run(Duration::from_secs(1));
    let delays = &w.viewers[a].playout_delays;
    assert!(delays.len() >= before + 10, "{} frames", delays.len());
    // Frames already in str0m's pacer at the reload keep the old value; from
    // the first frame with the new one on, every frame has it.
    let new = Some((hundredths(0), hundredths(12)));
    let first_new = delays[before..]
        .iter()
        .position(|d| *d == new)
        .expect("no frame with the new playout delay");
    assert!(first_new <= 3, "{first_new} frames kept the old value");
    assert!(
        delays[before + first_new..].iter().all(|d| *d == new),
        "{delays:?}"
    );
}

/// Seconds on the sender's NTP timeline of RTP time `rtp` (in `clock` Hz), through a Sender Report.
fn ntp_secs(report: &str0m::rtp::rtcp::SenderInfo, rtp: u64, clock: f64) -> f64 {
    let base = report
        .ntp_time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // RTP timestamps are 32 bits on the wire: compare them modulo 2^32.
    let ticks = (rtp as u32).wrapping_sub(report.rtp_time.numer() as u32) as i32;
    base + f64::from(ticks) / clock
}

#[test]
fn the_beep_and_the_flash_reach_the_viewer_on_one_timeline() {
    let avatar = AvatarId::parse("test-pattern").unwrap();
    let mut w = World::new(
        EngineConfig {
            audio_avatars: vec![avatar],
            ..config("127.0.0.1", 10111)
        },
        320,
        180,
    );
    w.voice = Some(util::Voice::new(w.epoch));
    let audio_offer = |api: &mut str0m::change::SdpApi<'_>| {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    };
    // Offering playout-delay as Chromium does (its id 5).
    let chromium = str0m::Rtc::builder().set_extension(5, str0m::rtp::Extension::PlayoutDelay);
    let a = w.add_viewer_from("speaks", addr("127.0.0.1:40001"), chromium, audio_offer);
    let silent = w.add_viewer("video-only", addr("127.0.0.1:40002"));
    w.run(Duration::from_secs(4));

    // The answer accepts the audio beside the video: sending, bundled, one msid stream.
    let answer = w.viewers[a].answer_sdp.clone().unwrap();
    let sections: Vec<&str> = answer.split("\r\nm=").skip(1).collect();
    assert_eq!(sections.len(), 2, "{answer}");
    let audio = sections.iter().find(|s| s.starts_with("audio ")).unwrap();
    assert!(!audio.starts_with("audio 0 "), "audio accepted: {answer}");
    assert!(
        audio.contains("a=sendonly") && audio.contains(" opus/48000/2"),
        "{answer}"
    );
    let bundle = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=group:BUNDLE "));
    assert_eq!(bundle.map(|b| b.split(' ').count()), Some(2), "{answer}");
    let streams: Vec<&str> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=msid:"))
        .map(|m| m.split(' ').next().unwrap())
        .collect();
    assert_eq!(streams.len(), 2, "{answer}");
    assert_eq!(
        streams[0], streams[1],
        "one stream, so the browser syncs them"
    );
    // A viewer that hears the avatar lets its browser hold video up to 200 ms
    // to lip-sync; the default for video alone is to render at once.
    let hundredths = str0m::media::MediaTime::from_hundredths;
    let delays = &w.viewers[a].playout_delays;
    assert!(
        !delays.is_empty()
            && delays
                .iter()
                .all(|d| *d == Some((hundredths(0), hundredths(20)))),
        "{delays:?}"
    );
    // A viewer that offered no audio hears nothing and still sees.
    assert!(w.viewers[silent].audio.is_empty());
    assert!(w.viewers[silent].counters.len() >= 60);

    let v = &w.viewers[a];
    assert!(
        v.audio.len() >= 150,
        "{} audio packets in 4 s",
        v.audio.len()
    );
    assert!(w.engine.stats().audio_frames_written.get() >= 150);
    // Sender Reports on both tracks from the first second.
    let first_audio_report = v.audio.iter().position(|x| x.1.is_some()).unwrap();
    assert!(
        first_audio_report <= 75,
        "audio SR after {first_audio_report} packets"
    );

    // Beep onsets, decoded, on the audio track's NTP timeline.
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut beeps = Vec::new();
    let mut was_loud = false;
    for (time, report, data) in &v.audio {
        let mut pcm = [0i16; 5760];
        let n = decoder.decode(data, &mut pcm, false).unwrap();
        let loud = pcm[..n].iter().position(|s| s.unsigned_abs() > 2000);
        if let (Some(i), false, Some(r)) = (loud, was_loud, report) {
            beeps.push(ntp_secs(r, time.numer() + i as u64, 48_000.0));
        }
        was_loud = loud.is_some();
    }
    // Flash onsets, decoded, on the video track's NTP timeline.
    let mut flashes = Vec::new();
    let mut was_lit = false;
    for (time, report, lit) in &v.pictures {
        if let (true, false, Some(r)) = (*lit, was_lit, report) {
            flashes.push(ntp_secs(r, time.numer(), 90_000.0));
        }
        was_lit = *lit;
    }
    // The run ends mid-second: a flash whose beep packet was not sent yet has no partner.
    let last_beep = beeps.last().copied().unwrap_or(0.0);
    let paired: Vec<f64> = flashes
        .into_iter()
        .filter(|f| *f < last_beep + 0.5)
        .collect();
    assert!(paired.len() >= 2, "{paired:?} {beeps:?}");
    for f in &paired {
        let offset = beeps
            .iter()
            .map(|b| b - f)
            .min_by(|x, y| x.abs().total_cmp(&y.abs()))
            .unwrap();
        // Within one audio frame (Opus's own look-ahead is 6.5 ms of it).
        assert!(
            offset.abs() < 0.020,
            "beep {:.1} ms after the flash",
            offset * 1e3
        );
    }
}
