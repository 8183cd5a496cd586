//! A renderer's voice over the ingest socket: PCM resampled to 48 kHz and
//! Opus-encoded in step with its frames, FLUSH (barge-in), bad audio, the
//! Python WAV example, pauses and a voice without frames.

use super::*;

/// A v2 renderer: I420 test-pattern frames at 30 fps and `audio` chunks, both
/// stamped on one clock starting at `epoch`, in real time from `start`.
fn push_av(
    client: &mut IngestClient,
    pattern: &mut TestPattern,
    epoch: Instant,
    frames: std::ops::Range<u64>,
    mut audio: impl FnMut(u64) -> Option<(u64, Vec<u8>)>,
) {
    let mut next_audio = 0u64;
    for i in frames {
        let pts = i * 1_000_000 / 30;
        let due = epoch + Duration::from_micros(pts);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        client
            .send_frame_at(i, pts, &i420_bytes(&pattern.render(i, 0)))
            .unwrap();
        // Every audio chunk whose samples are all captured by now.
        while let Some((chunk_pts, bytes)) = audio(next_audio).filter(|(p, _)| *p <= pts) {
            client.send_audio(chunk_pts, &bytes).unwrap();
            next_audio += 1;
        }
    }
}

/// A v2 renderer of I420 frames named `avatar` that speaks 16-bit PCM of
/// `channels` at `sample_rate` Hz.
fn pcm_renderer(d: &Daemon, avatar: &str, channels: u8, sample_rate: u32) -> IngestClient {
    let mut client =
        IngestClient::connect_v2(&d.ingest_path, avatar, format(PixelFormat::I420)).unwrap();
    client
        .set_audio_format(&wire::AudioFormat {
            codec: wire::AudioCodec::PcmS16le,
            channels,
            sample_rate,
            bitrate_kbps: 0,
            frame_ms: 0,
        })
        .unwrap();
    client
}

/// `n`-th 20 ms chunk of a `hz` sine at `rate` Hz, `channels` interleaved, and its pts (µs).
fn sine_chunk(n: u64, hz: f64, rate: u32, channels: usize) -> (u64, Vec<u8>) {
    let per = rate as u64 / 50;
    let mut out = Vec::with_capacity(per as usize * channels * 2);
    for k in 0..per {
        let t = (n * per + k) as f64 / f64::from(rate);
        let s = (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
        for _ in 0..channels {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
    (n * 20_000, out)
}

/// Decodes a viewer's Opus packets to 48 kHz mono PCM.
fn decode_opus(packets: &[(u64, Instant, Vec<u8>)]) -> Vec<i16> {
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    for (_, _, p) in packets {
        let mut buf = [0i16; 5760];
        let n = decoder.decode(p, &mut buf, false).unwrap();
        pcm.extend_from_slice(&buf[..n]);
    }
    pcm
}

#[test]
fn a_renderers_pcm_voice_is_resampled_to_48k_and_reaches_the_viewer_in_step() {
    let d = Daemon::start(&[]);
    // 24 kHz stereo, as some TTS engines emit: resampled and mixed down by the daemon.
    let mut client = pcm_renderer(&d, "speaker", 2, 24_000);
    let mut pattern = TestPattern::new(W as usize, H as usize).unwrap();
    let epoch = Instant::now();
    push_av(&mut client, &mut pattern, epoch, 0..15, |n| {
        Some(sine_chunk(n, 600.0, 24_000, 2))
    });
    wait_for_log(&d, "avatar speaker speaks");
    let mut v = NetViewer::connect_with_audio(d.signal_port, "hears", "speaker").expect("answer");
    let answer = v.answer["sdp"].as_str().unwrap().to_string();
    assert!(answer.contains("m=audio 9 "), "audio accepted: {answer}");
    let pusher = std::thread::spawn(move || {
        push_av(&mut client, &mut pattern, epoch, 15..120, |n| {
            Some(sine_chunk(n, 600.0, 24_000, 2))
        });
        client
    });
    v.run_for(Duration::from_millis(3500));
    let _client = pusher.join().unwrap();
    assert!(v.counters.len() >= 30, "video decoded {}", v.counters.len());
    assert!(
        v.audio.len() >= 60,
        "{} audio packets; log:\n{}",
        v.audio.len(),
        d.log()
    );
    // 20 ms Opus frames: RTP time advances by 960 at 48 kHz, packet after packet.
    let steps: Vec<u64> = v.audio.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(steps.iter().all(|s| *s == 960), "{steps:?}");
    // The pitch survives 24 -> 48 kHz: 600 Hz is 1200 zero crossings a second.
    let pcm = decode_opus(&v.audio[10..]);
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let hz = crossings as f64 / 2.0 / (pcm.len() as f64 / 48_000.0);
    assert!((hz - 600.0).abs() < 15.0, "decoded tone at {hz:.1} Hz");
    let m = d.metrics();
    assert!(
        metric(&m, "portcast_ingest_audio_chunks_received_total") >= 100,
        "{m}"
    );
    assert!(
        metric(&m, "portcast_ingest_audio_frames_forwarded_total") >= 100,
        "{m}"
    );
}

#[test]
fn flush_drops_the_queued_utterance_at_once() {
    let d = Daemon::start(&[]);
    let mut client = pcm_renderer(&d, "talker", 1, 16_000);
    let mut pattern = TestPattern::new(W as usize, H as usize).unwrap();
    let epoch = Instant::now();
    push_av(&mut client, &mut pattern, epoch, 0..10, |_| None);
    wait_for_log(&d, "avatar talker speaks");
    let mut v = NetViewer::connect_with_audio(d.signal_port, "listens", "talker").expect("answer");
    v.run_until_frames(3, Duration::from_secs(5));
    // A TTS engine hands over 4 s of speech at once, stamped from now on.
    let start = (epoch.elapsed().as_micros() as u64 / 20_000 + 1) * 20_000;
    for n in 0..200 {
        let (pts, bytes) = sine_chunk(n, 440.0, 16_000, 1);
        client.send_audio(start + pts, &bytes).unwrap();
    }
    v.run_for(Duration::from_millis(600));
    let before = v.audio.len();
    // The viewer interrupts: the renderer flushes.
    client.flush().unwrap();
    let flushed_at = Instant::now();
    v.run_for(Duration::from_millis(1500));
    let late: Vec<Duration> = v.audio[before..]
        .iter()
        .map(|(_, at, _)| at.saturating_duration_since(flushed_at))
        .collect();
    // Each packet's loudest sample, decoded in order (the decoder keeps state).
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let peaks: Vec<u16> = v
        .audio
        .iter()
        .map(|(_, _, p)| {
            let mut buf = [0i16; 5760];
            let n = decoder.decode(p, &mut buf, false).unwrap();
            buf[..n].iter().map(|s| s.unsigned_abs()).max().unwrap_or(0)
        })
        .collect();
    let tone_after = peaks[before..].iter().filter(|p| **p > 2000).count();
    // Without the flush ~3.4 s more tone would come; with it, at most the packet
    // in flight, then a few frames of real silence (so browsers stop concealing).
    assert!(before >= 20, "{before} packets before the flush");
    assert!(
        tone_after <= 2,
        "{tone_after} tone packets after the flush: {late:?}"
    );
    assert!(
        late.len() <= 2 + 3 && late.len() > tone_after,
        "{} packets after the flush (peaks {:?}): {late:?}",
        late.len(),
        &peaks[before..]
    );
    let m = d.metrics();
    assert_eq!(metric(&m, "portcast_ingest_flushes_total"), 1, "{m}");
    assert!(
        metric(&m, "portcast_drops_total{reason=\"ingest_flushed\"}") >= 100,
        "{m}"
    );
}

#[test]
fn bad_audio_is_refused_or_dropped_and_the_avatar_keeps_streaming() {
    let d = Daemon::start(&[]);
    let pcm16 = wire::AudioFormat {
        codec: wire::AudioCodec::PcmS16le,
        channels: 1,
        sample_rate: 16_000,
        bitrate_kbps: 0,
        frame_ms: 0,
    };
    let with = |f: &wire::AudioFormat| wire::audio_format(f);
    let chunk = |len: usize| [wire::audio_head(0, len), vec![0u8; len]].concat();
    let reg = |id: &str, v2: bool| {
        let f = format(PixelFormat::I420);
        if v2 {
            wire::register_v2(id, &f)
        } else {
            wire::register(id, &f)
        }
    };
    // (avatar, messages after REGISTER, version 2, the refusal's code)
    let cases: [(&str, Vec<u8>, bool, &str); 5] = [
        ("v1", with(&pcm16), false, "audio_needs_version_2"),
        ("no-format", chunk(640), true, "no_audio_format"),
        (
            "11k",
            with(&wire::AudioFormat {
                sample_rate: 11_025,
                ..pcm16
            }),
            true,
            "bad_audio_format",
        ),
        (
            "odd-bytes",
            [with(&pcm16), chunk(641)].concat(),
            true,
            "bad_pcm_length",
        ),
        // One second of 16 kHz mono is 32000 bytes.
        (
            "huge",
            [with(&pcm16), chunk(32_002)].concat(),
            true,
            "audio_chunk_too_large",
        ),
    ];
    for (id, messages, v2, code) in cases {
        let mut s = connect(&d);
        s.write_all(&reg(id, v2)).unwrap();
        s.write_all(&messages).unwrap();
        let why = refusal(s);
        assert!(why.starts_with(&format!("{code}: ")), "{id}: {why}");
    }
    // Audio that cannot be used but does not break the stream is dropped and
    // counted; then a fresh viewer hears and sees the avatar.
    let mut c =
        IngestClient::connect_v2(&d.ingest_path, "survivor", format(PixelFormat::I420)).unwrap();
    c.set_audio_format(&wire::AudioFormat {
        codec: wire::AudioCodec::Opus,
        sample_rate: 48_000,
        ..pcm16
    })
    .unwrap();
    c.send_audio(0, &[0xff, 0xff, 0xff]).unwrap(); // not an Opus packet
    let mut encoder =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let packets: Vec<Vec<u8>> = (0..50)
        .map(|n| {
            let (_, bytes) = sine_chunk(n, 440.0, 48_000, 1);
            let pcm: Vec<i16> = bytes
                .chunks(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            encoder.encode_vec(&pcm, 1500).unwrap()
        })
        .collect();
    let opus_at = move |n: u64| Some((n * 20_000, packets[n as usize % 50].clone()));
    let mut pattern = TestPattern::new(W as usize, H as usize).unwrap();
    let epoch = Instant::now();
    push_av(&mut c, &mut pattern, epoch, 0..10, opus_at.clone());
    // Time going back: that chunk is dropped and counted.
    c.send_audio(0, &opus_at(0).unwrap().1).unwrap();
    let mut v = NetViewer::connect_with_audio(d.signal_port, "still", "survivor").expect("answer");
    let pusher = std::thread::spawn(move || {
        // Chunks continue after the 10 frames (330 ms) already sent.
        push_av(&mut c, &mut pattern, epoch, 10..60, move |n| {
            opus_at(n + 17)
        });
    });
    v.run_for(Duration::from_millis(2000));
    pusher.join().unwrap();
    assert!(
        v.counters.len() >= 20,
        "the avatar still streams; log:\n{}",
        d.log()
    );
    assert!(v.audio.len() >= 20, "{} audio packets heard", v.audio.len());
    let m = d.metrics();
    assert_eq!(
        metric(&m, "portcast_drops_total{reason=\"ingest_audio_bad_opus\"}"),
        1,
        "{m}"
    );
    assert!(
        metric(&m, "portcast_drops_total{reason=\"ingest_timestamp_back\"}") >= 1,
        "{m}"
    );
    assert_eq!(metric(&m, "portcast_ingest_registrations_total"), 6, "{m}");
}

/// A 16-bit mono WAV file of a `hz` sine at `rate` Hz lasting `secs`.
fn write_wav(path: &std::path::Path, rate: u32, hz: f64, secs: f64) {
    let n = (f64::from(rate) * secs) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + n * 2).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(n * 2).to_le_bytes());
    for k in 0..n {
        let t = f64::from(k) / f64::from(rate);
        let s = (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn the_python_wav_example_speaks_through_the_daemon() {
    let d = Daemon::start(&[]);
    let wav = std::env::temp_dir().join(format!("portcast-{}.wav", d.signal_port));
    write_wav(&wav, 22_050, 500.0, 3.0);
    let example = format!(
        "{}/clients/python/examples/push_wav.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut python = Command::new("python3")
        .arg(example)
        .arg(&wav)
        .args(["--avatar", "wav-py", "--socket"])
        .arg(&d.ingest_path)
        .spawn()
        .expect("python3 runs");
    wait_for_log(&d, "avatar wav-py speaks");
    let mut v = NetViewer::connect_with_audio(d.signal_port, "wav-1", "wav-py").expect("answer");
    v.keep_media = true;
    v.run_for(Duration::from_millis(1500));
    let status = python.wait().unwrap();
    let _ = std::fs::remove_file(&wav);
    assert!(status.success(), "the example failed; log:\n{}", d.log());
    assert!(!v.media.is_empty(), "video arrives too");
    assert!(
        v.audio.len() >= 40,
        "{} audio packets; log:\n{}",
        v.audio.len(),
        d.log()
    );
    let pcm = decode_opus(&v.audio[5..]);
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let hz = crossings as f64 / 2.0 / (pcm.len() as f64 / 48_000.0);
    assert!((hz - 500.0).abs() < 15.0, "decoded tone at {hz:.1} Hz");
}

#[test]
fn a_renderer_that_pauses_its_voice_resumes_on_the_same_timeline() {
    let d = Daemon::start(&[]);
    let mut client = pcm_renderer(&d, "pauser", 1, 48_000);
    let mut pattern = TestPattern::new(W as usize, H as usize).unwrap();
    let epoch = Instant::now();
    push_av(&mut client, &mut pattern, epoch, 0..10, |_| None);
    wait_for_log(&d, "avatar pauser speaks");
    let mut v = NetViewer::connect_with_audio(d.signal_port, "p-1", "pauser").expect("answer");
    // Speech for 0.6 s of frames, silence (no AUDIO at all) for 0.6 s, speech again:
    // chunk n is stamped n * 20 ms, and chunks 46..75 are never sent.
    let pusher = std::thread::spawn(move || {
        push_av(&mut client, &mut pattern, epoch, 10..75, |n| {
            let n = if n < 46 { n } else { n + 30 };
            Some(sine_chunk(n, 440.0, 48_000, 1))
        });
        client
    });
    v.run_for(Duration::from_millis(2800));
    let _client = pusher.join().unwrap();
    assert!(v.audio.len() >= 40, "{} audio packets", v.audio.len());
    let steps: Vec<u64> = v.audio.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let gaps: Vec<u64> = steps.iter().copied().filter(|s| *s != 960).collect();
    // One jump, of the pause's length on the renderer's clock: 31 frames of 960
    // ticks (the 30 never sent and the one before them), give or take the
    // resampler-free rounding of the new stretch's start. (A packet lost on the
    // way shows as a second gap; the daemon's own drops say whether it was there.)
    let drops: Vec<String> = d
        .metrics()
        .lines()
        .filter(|l| l.contains("reason=\"ingest_audio") && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(gaps.len(), 1, "{steps:?}\ndaemon: {drops:?}");
    assert!(
        (gaps[0] as i64 - 31 * 960).abs() <= 2,
        "jump of {} ticks",
        gaps[0]
    );
}

#[test]
fn a_renderer_that_only_speaks_is_heard() {
    let d = Daemon::start(&[]);
    let mut client = pcm_renderer(&d, "voice-only", 1, 16_000);
    wait_for_log(&d, "avatar voice-only speaks");
    let mut v = NetViewer::connect_with_audio(d.signal_port, "vo-1", "voice-only").expect("answer");
    // No FRAME at all: 2 s of speech in real time, on the renderer's clock.
    let epoch = Instant::now();
    let speaker = std::thread::spawn(move || {
        for n in 0..100u64 {
            let due = epoch + Duration::from_millis(20 * (n + 1));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let (pts, bytes) = sine_chunk(n, 300.0, 16_000, 1);
            client.send_audio(pts, &bytes).unwrap();
        }
        client
    });
    v.run_for(Duration::from_millis(2500));
    let _client = speaker.join().unwrap();
    assert!(v.counters.is_empty(), "no picture was ever pushed");
    assert!(
        v.audio.len() >= 60,
        "{} audio packets; log:\n{}",
        v.audio.len(),
        d.log()
    );
    let pcm = decode_opus(&v.audio[5..]);
    let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let hz = crossings as f64 / 2.0 / (pcm.len() as f64 / 48_000.0);
    assert!((hz - 300.0).abs() < 10.0, "decoded tone at {hz:.1} Hz");
}
