//! The encoding ladder against str0m viewers in memory: a viewer whose link
//! thins moves to a lower rendition at one of its keyframes and back up when
//! the link recovers, one RTP stream throughout; the viewer beside it keeps
//! rendition 0; a viewer left alone goes back to rendition 0; an avatar's own
//! ladder replaces the daemon's.

mod util;

use std::time::Duration;

use std::collections::BTreeMap;

use portcast_engine::{AvatarId, EngineConfig, Ladders, Rung, VideoCodec};
use util::*;

/// The test source draws 256x144 at 500 kbit/s; its one lower rung is 72p.
const RUNG: Rung = Rung {
    height: 72,
    bitrate_bps: 100_000,
};
const TOP: (usize, usize) = (256, 144);
const LOW: (usize, usize) = (128, 72);

fn world() -> World {
    world_with(Ladders::same_for_all(vec![RUNG]))
}

/// The test source's avatar `test-pattern` with `ladder` instead of the daemon's `default`.
fn own_ladder(default: Vec<Rung>, ladder: Vec<Rung>) -> Ladders {
    Ladders {
        default,
        per_avatar: BTreeMap::from([(AvatarId::parse("test-pattern").unwrap(), ladder)]),
    }
}

fn world_with(ladders: Ladders) -> World {
    let config = EngineConfig {
        sockets: sockets("127.0.0.1", 10111),
        ladders,
        ..EngineConfig::default()
    };
    World::new(config, TOP.0 as u32, TOP.1 as u32)
}

/// Runs `w` a second at a time until `done` holds, for at most `limit` seconds.
fn run_until(w: &mut World, limit: u64, mut done: impl FnMut(&World) -> bool) -> bool {
    for _ in 0..limit {
        if done(w) {
            return true;
        }
        w.run(Duration::from_secs(1));
    }
    done(w)
}

/// The rendition the engine sends session `id`.
fn rendition_of(w: &World, id: &str) -> Option<u8> {
    w.engine
        .sessions()
        .iter()
        .find(|s| s.session_id == id)
        .map(|s| s.rendition)
}

/// Index of the first frame received at or after `from` that decoded to `size`.
fn first_frame_of(v: &Viewer, size: (usize, usize), from: usize) -> Option<usize> {
    (from..v.frames.len()).find(|i| v.frames[*i].3 == Some(size))
}

/// Asserts frame `k` (a switch's keyframe) continues frame `k - 1`'s RTP
/// sequence numbers and comes later in RTP time.
fn continues(v: &Viewer, k: usize, what: &str) {
    let (prev, next) = (v.frames[k - 1], v.frames[k]);
    assert_eq!(
        next.0,
        prev.1 + 1,
        "{what}: sequence numbers run on: {prev:?} then {next:?}"
    );
    assert!(
        next.2 > prev.2,
        "{what}: RTP time rises: {prev:?} then {next:?}"
    );
}

#[test]
fn a_thin_viewer_switches_down_and_back_up_at_keyframes_on_one_rtp_stream() {
    let mut w = world();
    let wide = w.add_viewer("wide", addr("127.0.0.1:40000"));
    let thin = w.add_viewer("thin", addr("127.0.0.1:40001"));
    w.run(Duration::from_secs(2));
    assert!(
        w.viewers[thin].sizes.iter().all(|s| *s == TOP),
        "a clean link stays on rendition 0"
    );
    assert!(w.watched_rungs.is_empty(), "{:?}", w.watched_rungs);

    // Half of what the engine sends the thin viewer is lost until its
    // estimate falls under what rendition 0 needs and the engine starts the
    // rung's encoder for it; the switch itself then happens on a clean link.
    w.viewers[thin].drop_every = Some(2);
    for _ in 0..3000 {
        if !w.watched_rungs.is_empty() {
            break;
        }
        w.run(TICK);
    }
    assert_eq!(
        w.watched_rungs.first(),
        Some(&(VideoCodec::H264, 1, true)),
        "no switch down within 15 s of loss"
    );
    w.viewers[thin].drop_every = None;
    let from = w.viewers[thin].frames.len();
    w.run(Duration::from_secs(1));
    assert_eq!(rendition_of(&w, "thin"), Some(1));
    assert_eq!(rendition_of(&w, "wide"), Some(0));
    let v = &w.viewers[thin];
    let down = first_frame_of(v, LOW, from).expect("a 72p picture decodes");
    // The rung's keyframe is the same picture the viewer just had from
    // rendition 0: it still comes later in RTP time.
    continues(v, down, "down");
    let errors = v.decode_errors;

    // The link stays clean: after probing and the hold, back on rendition 0.
    let up = run_until(&mut w, 30, |w| {
        first_frame_of(&w.viewers[thin], TOP, down).is_some()
    });
    assert!(up, "still on 72p 30 s after the loss ended");
    w.run(Duration::from_secs(1));
    let v = &w.viewers[thin];
    let up = first_frame_of(v, TOP, down).unwrap();
    continues(v, up, "up");
    assert!(
        v.frames[up..].iter().all(|f| f.3 == Some(TOP)),
        "it stays there"
    );
    assert!(
        v.frames[down..]
            .windows(2)
            .all(|f| f[1].0 == f[0].1 + 1 && f[1].2 > f[0].2),
        "one unbroken stream from the switch down on"
    );
    assert_eq!(v.decode_errors, errors, "no picture broken since the loss");
    // Nobody receives the rung now: its encoder stopped.
    assert_eq!(
        w.watched_rungs.last(),
        Some(&(VideoCodec::H264, 1, false)),
        "{:?}",
        w.watched_rungs
    );

    // The thin viewer was told each switch (its page shows the rendition).
    assert_eq!(w.viewers[thin].renditions, ["72p", "top"]);

    // The wide viewer never left rendition 0.
    let wv = &w.viewers[wide];
    assert!(wv.renditions.is_empty(), "{:?}", wv.renditions);
    assert!(wv.sizes.len() > 100, "it decoded {}", wv.sizes.len());
    assert!(wv.sizes.iter().all(|s| *s == TOP));
    assert!(
        wv.frames.windows(2).all(|f| f[1].0 == f[0].1 + 1),
        "its stream had no gap"
    );
}

#[test]
fn a_viewer_on_a_lower_rendition_left_alone_goes_back_to_rendition_0() {
    // The daemon's ladder is empty: the rung is the avatar's own.
    let mut w = world_with(own_ladder(Vec::new(), vec![RUNG]));
    let other = w.add_viewer("other", addr("127.0.0.1:40000"));
    let thin = w.add_viewer("thin", addr("127.0.0.1:40001"));
    w.run(Duration::from_secs(1));
    w.viewers[thin].drop_every = Some(2);
    let down = run_until(&mut w, 15, |w| rendition_of(w, "thin") == Some(1));
    assert!(down, "still on rendition 0 after 15 s of loss");

    // The other viewer leaves: the thin one is alone, and a lone viewer gets
    // rendition 0 with the encoder capped at its estimate instead.
    let conn = w.viewers[other].conn;
    w.engine.close_connection(w.now, conn);
    w.pump();
    let low_at = w.viewers[thin].frames.len();
    w.viewers[thin].drop_every = None;
    let up = run_until(&mut w, 3, |w| {
        first_frame_of(&w.viewers[thin], TOP, low_at).is_some()
    });
    assert!(up, "a lone viewer stays on 72p");
    assert_eq!(
        w.watched_rungs.last(),
        Some(&(VideoCodec::H264, 1, false)),
        "{:?}",
        w.watched_rungs
    );
    assert!(
        w.bitrate_caps
            .iter()
            .any(|(c, cap, _)| *c == VideoCodec::H264 && cap.is_some()),
        "its estimate caps rendition 0: {:?}",
        w.bitrate_caps
    );
}

#[test]
fn an_avatar_with_an_empty_ladder_of_its_own_has_one_rendition() {
    // The daemon's ladder has the rung; this avatar's own has none.
    let mut w = world_with(own_ladder(vec![RUNG], Vec::new()));
    let wide = w.add_viewer("wide", addr("127.0.0.1:40000"));
    let thin = w.add_viewer("thin", addr("127.0.0.1:40001"));
    w.run(Duration::from_secs(1));
    w.viewers[thin].drop_every = Some(2);
    // The same loss moves a viewer of an avatar with the rung within 15 s.
    w.run(Duration::from_secs(15));
    assert!(
        w.watched_rungs.is_empty(),
        "no rung encoder started: {:?}",
        w.watched_rungs
    );
    assert_eq!(rendition_of(&w, "thin"), Some(0));
    assert!(w.viewers[thin].renditions.is_empty());
    assert!(w.viewers[wide].sizes.iter().all(|s| *s == TOP));
}
