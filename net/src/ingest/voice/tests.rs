//! Tests of `voice.rs`.

use super::*;
use std::sync::mpsc::{sync_channel, Receiver};

use crate::source::SourceEvent;

fn voice(depth: usize) -> (Voice, Receiver<SourceEvent>, mio::Poll) {
    let (frames, rx) = sync_channel(depth);
    let (shared, poll) = Shared::for_test(frames);
    let voice = Voice::new(
        AvatarId::parse("v").unwrap(),
        Arc::new(shared),
        None,
        Arc::new(Timeline::default()),
    );
    (voice, rx, poll)
}

fn packet(rtp_time: u64) -> AudioFrame {
    let now = Instant::now();
    AudioFrame {
        data: Arc::from(&[0xf8u8, 0xff, 0xfe][..]),
        rtp_time,
        captured_at: now,
        ready_at: now,
    }
}

fn rtp_times(rx: &Receiver<SourceEvent>) -> Vec<u64> {
    rx.try_iter()
        .filter_map(|(_, m)| match m {
            Media::Audio(f) => Some(f.rtp_time),
            Media::Video(_) => None,
        })
        .collect()
}

#[test]
fn a_packet_waits_for_room_in_a_full_loop_channel_instead_of_being_dropped() {
    let (voice, rx, _poll) = voice(1);
    assert!(voice.forward(packet(0), 0));
    // The channel is full; the loop takes the first packet a little later.
    let rx = std::thread::scope(|s| {
        let taker = s.spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            let first = rx.recv().unwrap();
            (first, rx)
        });
        assert!(voice.forward(packet(960), 0));
        let (first, rx) = taker.join().unwrap();
        assert!(matches!(first.1, Media::Audio(ref f) if f.rtp_time == 0));
        rx
    });
    assert_eq!(rtp_times(&rx), vec![960]);
    let hub = &voice.shared.metrics.hub;
    assert_eq!(hub.audio_frames_forwarded.get(), 2);
    assert_eq!(hub.audio_dropped_loop_behind.get(), 0);
}

#[test]
fn a_loop_that_stays_behind_or_a_flush_drops_the_waiting_packet_and_counts_it() {
    let (voice, rx, _poll) = voice(1);
    assert!(voice.forward(packet(0), 0));
    // Nobody takes from the channel: the packet gives up after MAX_LOOP_WAIT.
    assert!(voice.forward(packet(960), 0));
    assert_eq!(voice.shared.metrics.hub.audio_dropped_loop_behind.get(), 1);
    // A FLUSH while it waits: the stale generation's packet is dropped.
    let generation = voice.queue.generation();
    voice.queue.flush();
    assert!(voice.forward(packet(1920), generation));
    assert_eq!(voice.shared.metrics.hub.audio_dropped_loop_behind.get(), 2);
    assert_eq!(rtp_times(&rx), vec![0]);
    // A loop that is gone stops the voice thread.
    drop(rx);
    assert!(!voice.forward(packet(2880), voice.queue.generation()));
}

/// 20 ms of a quiet 48 kHz mono sine at renderer time `pts_us`.
fn chunk(pts_us: u64) -> Chunk {
    let data = (0..960)
        .flat_map(|k| (((f64::from(k) * 0.05).sin() * 3000.0) as i16).to_le_bytes())
        .collect();
    Chunk {
        pts_us,
        format: AudioFormat {
            codec: AudioCodec::PcmS16le,
            channels: 1,
            sample_rate: 48_000,
            bitrate_kbps: 0,
            frame_ms: 0,
        },
        data,
        duration: Duration::from_millis(20),
        arrived_at: Instant::now(),
    }
}

#[test]
fn a_live_chunk_goes_out_on_the_readers_thread_and_chunks_sent_ahead_wait_in_order() {
    // No voice thread runs: whatever reaches the loop was sent by `offer` or `flush`.
    let (voice, rx, _poll) = voice(64);
    assert!(voice.offer(chunk(0)));
    let first = rtp_times(&rx);
    assert_eq!(first.len(), 1, "the live chunk's packet went out at once");
    // Speech sent a second ahead waits for its time in the queue.
    assert!(voice.offer(chunk(1_000_000)));
    // A chunk whose time has come does not overtake it.
    std::thread::sleep(Duration::from_millis(25));
    assert!(voice.offer(chunk(20_000)));
    assert!(rtp_times(&rx).is_empty());
    assert_eq!(lock(&voice.queue.state).chunks.len(), 2);
    // FLUSH drops both and, nobody holding the work, sends the silence at once,
    // right behind the last packet.
    assert_eq!(voice.flush(), 2);
    let r = first[0];
    assert_eq!(rtp_times(&rx), vec![r + 960, r + 1920, r + 2880]);
}

#[test]
fn speech_within_the_lead_of_its_time_goes_out_at_once_and_later_speech_waits() {
    for (lead_ms, sent_at_once) in [(60, 3), (0, 1)] {
        let (mut voice, rx, _poll) = voice(64);
        voice.defaults.lead = Duration::from_millis(lead_ms);
        // The live chunk anchors the timeline; the next two are 20 and 40 ms ahead.
        for pts_us in [0, 20_000, 40_000] {
            assert!(voice.offer(chunk(pts_us)));
        }
        let sent = rtp_times(&rx);
        assert_eq!(sent.len(), sent_at_once, "lead {lead_ms} ms: {sent:?}");
        let queued = lock(&voice.queue.state).chunks.len();
        assert_eq!(queued, 3 - sent_at_once, "lead {lead_ms} ms");
    }
}

#[test]
fn a_flush_while_the_voice_thread_works_is_caught_up_before_it_lets_go() {
    let (voice, rx, _poll) = voice(64);
    assert!(voice.offer(chunk(0)));
    let r = rtp_times(&rx)[0];
    // The voice thread holds the work (as while it paces a chunk)...
    let generation = voice.queue.claim_if_idle().expect("idle");
    // ...when the renderer interrupts: the reader cannot send the silence.
    assert_eq!(voice.flush(), 0);
    assert!(rtp_times(&rx).is_empty());
    // Done with its chunk, the voice thread lets go only after the silence.
    voice.hold(generation, None, true);
    assert_eq!(rtp_times(&rx), vec![r + 960, r + 1920, r + 2880]);
    assert!(!lock(&voice.queue.state).busy);
}
