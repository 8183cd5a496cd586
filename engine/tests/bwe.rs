//! Each viewer's bandwidth estimate, against str0m viewers in memory: what it
//! asks of the avatar's encoder (`Output::VideoBitrate`) and when it must not.

mod util;

use std::time::Duration;

use portcast_engine::{EngineConfig, VideoCodec};
use util::*;

fn config() -> EngineConfig {
    EngineConfig {
        sockets: sockets("127.0.0.1", 10111),
        ..EngineConfig::default()
    }
}

/// The last cap the engine sent for the H.264 encoder (`None` inside: uncapped).
fn last_cap(w: &World) -> Option<Option<u32>> {
    w.bitrate_caps
        .iter()
        .rev()
        .find(|(c, _, _)| *c == VideoCodec::H264)
        .map(|(_, cap, _)| *cap)
}

#[test]
fn transport_cc_is_answered_only_with_estimation_on() {
    let mut w = World::new(config(), 256, 144);
    let v = w.add_viewer("on", addr("127.0.0.1:40000"));
    let answer = w.viewers[v].answer_sdp.clone().unwrap();
    assert!(answer.contains(" transport-cc"), "{answer}");
    assert!(answer.contains("transport-wide-cc"), "{answer}");

    let mut off = config();
    off.bandwidth_estimation = None;
    let mut w = World::new(off, 256, 144);
    let v = w.add_viewer("off", addr("127.0.0.1:40000"));
    let answer = w.viewers[v].answer_sdp.clone().unwrap();
    // str0m still echoes `a=rtcp-fb:* transport-cc`; without the header
    // extension no viewer sends feedback.
    assert!(!answer.contains("transport-wide-cc"), "{answer}");
    w.run(Duration::from_secs(3));
    assert!(!w.viewers[v].counters.is_empty(), "it still decodes");
    assert!(w.bitrate_caps.is_empty(), "{:?}", w.bitrate_caps);
}

#[test]
fn a_lone_viewer_caps_the_encoder_and_a_second_viewer_lifts_the_cap() {
    let mut w = World::new(config(), 256, 144);
    let a = w.add_viewer("first", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(3));
    let Some(Some(alone)) = last_cap(&w) else {
        panic!("no cap from the lone viewer: {:?}", w.bitrate_caps);
    };
    // The estimate starts at 1 Mbit/s; the cap leaves 15 % headroom under it.
    assert!(alone >= 100_000, "cap {alone}");

    let b = w.add_viewer("second", addr("127.0.0.1:40001"));
    w.run(Duration::from_secs(1));
    assert_eq!(last_cap(&w), Some(None), "two viewers: configured bitrate");
    assert!(
        !w.viewers[b].counters.is_empty(),
        "the second viewer decodes"
    );

    let conn = w.viewers[b].conn;
    w.engine.close_connection(w.now, conn);
    w.pump();
    assert!(
        matches!(last_cap(&w), Some(Some(_))),
        "alone again, the first viewer's estimate caps it: {:?}",
        w.bitrate_caps
    );
    let conn = w.viewers[a].conn;
    w.engine.close_connection(w.now, conn);
    w.pump();
    assert_eq!(last_cap(&w), Some(None), "nobody left: no cap");
}

#[test]
fn a_lossy_link_lowers_its_viewers_cap_below_a_clean_ones() {
    // The median of the cap in force, looked at every 100 ms of the run's
    // second half: str0m's loss controller takes a few seconds to act (the
    // estimate climbs first), and the estimate's last value alone swings with
    // a probe or a delay spike of the simulated link.
    let run = |drop_every: Option<u64>| {
        let mut w = World::new(config(), 256, 144);
        let v = w.add_viewer("viewer", addr("127.0.0.1:40000"));
        w.viewers[v].drop_every = drop_every;
        let start = w.now;
        w.run(Duration::from_secs(8));
        assert!(!w.viewers[v].counters.is_empty(), "it decodes");
        let mut caps: Vec<u32> = (40..80)
            .filter_map(|tenth| {
                let t = start + Duration::from_millis(100 * tenth);
                w.bitrate_caps
                    .iter()
                    .rev()
                    .find(|(c, _, at)| *c == VideoCodec::H264 && *at <= t)
                    .and_then(|(_, cap, _)| *cap)
            })
            .collect();
        assert!(caps.len() >= 30, "too few caps: {:?}", w.bitrate_caps);
        caps.sort_unstable();
        caps[caps.len() / 2]
    };
    let clean = run(None);
    // One media datagram in three lost: str0m's loss-based controller backs off.
    let lossy = run(Some(3));
    assert!(
        lossy < clean / 2,
        "median lossy cap {lossy} bit/s, clean {clean} bit/s"
    );
}

#[test]
fn a_lone_viewers_cap_follows_a_leap_of_its_estimate_in_bounded_steps() {
    // A clean link: str0m's start-up probes lift the estimate several-fold
    // within a second. The encoder's cap climbs at most 15 % each 400 ms.
    let mut w = World::new(config(), 256, 144);
    let v = w.add_viewer("viewer", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(10));
    assert!(!w.viewers[v].counters.is_empty(), "it decodes");
    let caps: Vec<_> = w
        .bitrate_caps
        .iter()
        .filter(|(c, _, _)| *c == VideoCodec::H264)
        .filter_map(|(_, cap, t)| cap.map(|c| (c, *t)))
        .collect();
    // The highest cap, not the last: in this world a probe can leave the
    // estimate lower (with a probe every 3 s and steps every 500 ms the cap
    // fell 1.41 -> 0.93 Mbit/s 150 ms after the probe at ~5 s; with probes
    // every 5 s, 1.78 -> 1.52). Not traced, and not seen in the glass bench,
    // where a lifted link's cap climbed after each probe that found room.
    let first = caps[0].0;
    let highest = caps.iter().map(|(c, _)| *c).max().unwrap_or(first);
    assert!(
        highest >= first * 2,
        "the cap never climbed: {first} -> at most {highest} bit/s ({caps:?})"
    );
    let mut rose_at = None;
    for pair in caps.windows(2) {
        let ((old, _), (new, at)) = (pair[0], pair[1]);
        if new <= old {
            continue;
        }
        assert!(
            f64::from(new) <= f64::from(old) * 1.15 + 1.0,
            "the cap leapt {old} -> {new} bit/s"
        );
        if let Some(before) = rose_at {
            assert!(
                at - before >= Duration::from_millis(400),
                "two rises {:?} apart ({old} -> {new} bit/s)",
                at - before
            );
        }
        rose_at = Some(at);
    }
}

#[test]
fn a_lone_viewer_short_of_its_encoders_bitrate_is_probed_every_3_s() {
    // One media datagram in three lost: the lone viewer's estimate stays far
    // under what its encoder could use, and no probe raises it. Probes keep
    // coming every 3 s (until stop 38 they backed off up to 30 s apart, and a
    // link lifted after a long thin spell then went unfound for 30 s; until
    // stop 39 they came every 5 s).
    let mut w = World::new(config(), 256, 144);
    let v = w.add_viewer("viewer", addr("127.0.0.1:40000"));
    w.viewers[v].drop_every = Some(3);
    w.run(Duration::from_secs(10));
    let early = w.engine.stats().bandwidth_probes.get();
    assert!(early >= 1, "the short estimate was never probed");
    w.run(Duration::from_secs(60));
    let late = w.engine.stats().bandwidth_probes.get() - early;
    assert!(!w.viewers[v].counters.is_empty(), "it decodes");
    assert!(
        (19..=21).contains(&late),
        "{late} probes in the 60 s after the first {early}"
    );
}

/// A payload type and its RTP datagrams: (delivered, dropped).
type PtCount = (u8, (u64, u64));

/// The video and RTX payload types' counts in `counts`: (video, rtx). The
/// video's payload type sends the most; the other one is its RTX.
fn video_and_rtx(counts: &std::collections::BTreeMap<u8, (u64, u64)>) -> (PtCount, PtCount) {
    let mut by_count: Vec<PtCount> = counts.iter().map(|(pt, c)| (*pt, *c)).collect();
    by_count.sort_by_key(|(_, c)| std::cmp::Reverse(c.0 + c.1));
    assert_eq!(by_count.len(), 2, "video and its RTX: {counts:?}");
    (by_count[0], by_count[1])
}

#[test]
fn a_paced_frame_leaves_whole_at_the_instant_it_is_written() {
    // With estimation on, str0m's pacer asks for a timeout one microsecond
    // after each packet it releases. A drain that left those for the next
    // loop turn sent one packet per viewer per turn: a frame of ten packets
    // took ten turns, and every turn a full str0m timeout per viewer.
    let mut w = World::new(config(), 640, 360);
    let v = w.add_viewer("burst", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(3));
    assert!(w.viewers[v].connected);
    let frames_before = w.viewers[v].frames.len();
    let avatar = w.source.avatar.clone();
    w.source.force_idr = true;
    let au = w.source.next(w.now).expect("a keyframe");
    let now = w.now;
    w.engine.handle_access_unit(now, &avatar, &au);
    // Packets move, time does not.
    w.pump();
    let viewer = &w.viewers[v];
    assert_eq!(
        viewer.frames.len(),
        frames_before + 1,
        "the {}-byte keyframe did not arrive whole at the instant it was written",
        au.data.len()
    );
    let (first, last, _, picture) = *viewer.frames.last().unwrap();
    assert!(
        last >= first + 2,
        "a frame of {} packets proves nothing",
        last - first + 1
    );
    assert_eq!(picture, Some((640, 360)));
}

/// A world without estimation: no padding or probes on the RTX payload
/// type, so every RTX packet is a resend the viewer asked for.
fn world_without_probes() -> World {
    World::new(
        EngineConfig {
            bandwidth_estimation: None,
            ..config()
        },
        256,
        144,
    )
}

#[test]
fn each_nacked_video_packet_is_resent_three_times() {
    let mut w = world_without_probes();
    let v = w.add_viewer("lossy", addr("127.0.0.1:40000"));
    w.run(Duration::from_secs(1));
    w.viewers[v].rtp_by_pt.clear();
    // 10 % loss: the copies take 30 % of what is sent, over str0m's 15 %
    // resend cap unless the cap counts each copy as its share.
    w.viewers[v].drop_every = Some(10);
    w.run(Duration::from_secs(10));
    let counts = w.viewers[v].rtp_by_pt.clone();
    let ((_, video), (_, rtx)) = video_and_rtx(&counts);
    let lost = video.1;
    let resent = rtx.0 + rtx.1;
    assert!(lost >= 20, "{lost} video packets lost: {counts:?}");
    // Each lost packet is asked for (a lost resend may be asked for again).
    assert!(
        resent >= 3 * lost && resent <= 3 * (lost + rtx.1),
        "{lost} lost, {resent} resent: {counts:?}"
    );
}

#[test]
fn the_copies_of_packets_nacked_together_are_sent_apart() {
    // Two datagrams in a row lost: one NACK asks for both, and their copies
    // go a, b, a, b, a, b (a burst that takes two datagrams then takes one
    // copy of each, not two of one).
    let mut w = world_without_probes();
    let v = w.add_viewer_from(
        "bursty",
        addr("127.0.0.1:40000"),
        str0m::Rtc::builder().enable_raw_packets(true),
        |_| {},
    );
    w.run(Duration::from_secs(1));
    w.viewers[v].rtp_by_pt.clear();
    w.viewers[v].drop_every = Some(20);
    w.viewers[v].drop_run = 2;
    w.run(Duration::from_secs(10));
    let ((_, video), (rtx_pt, _)) = video_and_rtx(&w.viewers[v].rtp_by_pt);
    assert!(video.1 >= 20, "{} video packets lost", video.1);
    // The original sequence numbers of the resends, in the order they came.
    let resent: Vec<u16> = w.viewers[v]
        .raw_rtp
        .iter()
        .filter(|(pt, _)| *pt == rtx_pt)
        .filter_map(|(_, osn)| *osn)
        .collect();
    let apart = resent
        .windows(6)
        .filter(|s| s[0] != s[1] && s[0] == s[2] && s[0] == s[4] && s[1] == s[3] && s[1] == s[5])
        .count();
    assert!(
        apart >= 5,
        "{apart} pairs of resends sent apart: {resent:?}"
    );
}
