//! Tests of `wire.rs`.

use super::*;

fn head(bytes: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&bytes[..HEADER_LEN]);
    h
}

#[test]
fn register_round_trips_through_the_parser() {
    let f = StreamFormat {
        format: PixelFormat::Bgra,
        width: 640,
        height: 360,
        fps: 30,
        bitrate_kbps: 0,
    };
    let msg = register("avatar_tutor_13", &f);
    let h = Header::parse(&head(&msg), 1 << 20).unwrap();
    assert_eq!(
        (h.kind, h.meta_len, h.payload_len),
        (Kind::Register, 20, 15)
    );
    let meta = &msg[HEADER_LEN..HEADER_LEN + h.meta_len];
    assert_eq!(
        Message::parse(&h, meta, 1 << 20).unwrap(),
        Message::Register(f)
    );
    assert_eq!(
        parse_avatar_id(&msg[HEADER_LEN + 20..]).unwrap(),
        "avatar_tutor_13"
    );
}

#[test]
fn audio_messages_round_trip_and_bad_formats_are_named() {
    let f = AudioFormat {
        codec: AudioCodec::PcmS16le,
        channels: 2,
        sample_rate: 44_100,
        bitrate_kbps: 24,
        frame_ms: 10,
    };
    let msg = audio_format(&f);
    let h = Header::parse(&head(&msg), 100).unwrap();
    assert_eq!((h.version, h.kind), (VERSION_2, Kind::AudioFormat));
    assert_eq!(
        Message::parse(&h, &msg[HEADER_LEN..], 100).unwrap(),
        Message::AudioFormat(f)
    );
    assert_eq!(f.max_chunk_bytes(), 44_100 * 4);
    let msg = audio_head(123_456, 640);
    let h = Header::parse(&head(&msg), 1000).unwrap();
    assert_eq!(
        Message::parse(&h, &msg[HEADER_LEN..], 1000).unwrap(),
        Message::Audio { pts_us: 123_456 }
    );
    let bad = |g: AudioFormat| {
        let msg = audio_format(&g);
        let h = Header::parse(&head(&msg), 100).unwrap();
        Message::parse(&h, &msg[HEADER_LEN..], 100)
            .unwrap_err()
            .to_string()
    };
    assert!(bad(AudioFormat { channels: 3, ..f }).contains("3 channels"));
    assert!(bad(AudioFormat {
        sample_rate: 8000,
        ..f
    })
    .contains("8000 Hz"));
    assert!(bad(AudioFormat {
        codec: AudioCodec::Opus,
        ..f
    })
    .contains("Opus is 48000"));
    assert!(bad(AudioFormat {
        bitrate_kbps: 900,
        ..f
    })
    .contains("900 kbit/s"));
    assert!(bad(AudioFormat { frame_ms: 15, ..f }).contains("15 ms"));
}

#[test]
fn headers_with_wrong_magic_version_type_or_sizes_are_refused() {
    let good = head(&keyframe_request());
    let mut b = good;
    b[0] = b'X';
    assert_eq!(Header::parse(&b, 100).unwrap_err().code(), "bad_magic");
    let mut b = good;
    b[4] = 3;
    assert_eq!(
        Header::parse(&b, 100).unwrap_err().code(),
        "unsupported_version"
    );
    // Versions 1 and 2 are both spoken.
    b[4] = VERSION_2;
    assert_eq!(Header::parse(&b, 100).unwrap().version, VERSION_2);
    let mut b = good;
    b[5] = 0x7f;
    assert_eq!(Header::parse(&b, 100).unwrap_err().code(), "unknown_type");
    let frame = frame_head(1, 2, 101);
    assert_eq!(
        Header::parse(&head(&frame), 100).unwrap_err().code(),
        "frame_too_large"
    );
    let mut short = head(&frame);
    short[8] = 4;
    assert_eq!(
        Header::parse(&short, 1000).unwrap_err().code(),
        "meta_too_short"
    );
}

#[test]
fn formats_out_of_bounds_are_refused_with_their_reason() {
    let base = StreamFormat {
        format: PixelFormat::I420,
        width: 1280,
        height: 720,
        fps: 30,
        bitrate_kbps: 0,
    };
    let code = |f: StreamFormat, max: usize| f.check(max).err().map(|e| e.code());
    assert_eq!(code(base, 1 << 24), None);
    assert_eq!(
        code(StreamFormat { width: 641, ..base }, 1 << 24),
        Some("bad_dimensions")
    );
    assert_eq!(
        code(StreamFormat { fps: 0, ..base }, 1 << 24),
        Some("bad_fps")
    );
    assert_eq!(code(base, 1000), Some("frame_too_large"));
    let h264 = StreamFormat {
        format: PixelFormat::H264,
        width: 0,
        height: 0,
        ..base
    };
    assert_eq!(code(h264, 1000), None, "h264 may leave its size unknown");
    let mut meta = vec![9u8; 20];
    meta[0] = 9;
    assert_eq!(
        StreamFormat::parse(&meta).unwrap_err().code(),
        "unknown_format"
    );
}

#[test]
fn avatar_ids_follow_the_configured_name_rules() {
    assert!(parse_avatar_id(b"avatar_tutor_13").is_ok());
    assert!(parse_avatar_id(b"").is_err());
    assert!(parse_avatar_id(b"has space").is_err());
    assert!(parse_avatar_id(&[b'a'; 65]).is_err());
    assert!(parse_avatar_id(&[0xff, 0xfe]).is_err());
}

#[test]
fn refused_reason_is_cut_on_a_char_boundary() {
    let long = "é".repeat(2000);
    let msg = refused("avatar_live", &long);
    let text = std::str::from_utf8(&msg[HEADER_LEN..]).unwrap();
    assert!(text.starts_with("avatar_live: "));
    assert!(text.len() <= MAX_REASON_BYTES);
}
