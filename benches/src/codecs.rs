//! `codecs`: encode time and achieved bitrate of openh264 (H.264) beside
//! libvpx (VP8) on the same busy test-pattern pictures, interleaved frame by
//! frame so both see the same machine at the same moment.

use std::time::Instant;

use portcast_engine::encoder::{new_encoder, Encoded};
use portcast_engine::pattern::TestPattern;
use portcast_engine::VideoCodec;
use serde_json::json;

use crate::scenarios::{settings, Opts};
use crate::stats::{fmt_us, summarize, us};

/// Each rendition: (width, height, bitrate in bit/s), as an avatar would be configured.
const RENDITIONS: [(u32, u32, u32); 2] = [(1280, 720, 2_500_000), (640, 360, 800_000)];

pub fn codecs(o: &Opts) -> Result<(), String> {
    let frames = (o.secs() * 30.0).round().max(30.0) as u64;
    println!(
        "\n## codecs: {frames} frames of the busy test pattern at 30 fps, one thread each, interleaved"
    );
    println!(
        "{:<10} {:<5} {:>10} {:>10} {:>10} {:>10} {:>12} {:>8}",
        "size", "codec", "mean", "p50", "p99", "keyframe", "kbit/s", "skipped"
    );
    let mut rows = Vec::new();
    for (width, height, bitrate) in RENDITIONS {
        let s = settings(width, height, bitrate, 1);
        let mut pattern = TestPattern::new(width as usize, height as usize)
            .ok_or_else(|| format!("no test pattern at {width}x{height}"))?;
        pattern.set_busy(true);
        let mut encoders = Vec::new();
        for codec in VideoCodec::ALL {
            let enc = new_encoder(codec, s).map_err(|e| format!("{codec}: {e}"))?;
            encoders.push((enc, Vec::new(), 0u64, 0u64, None::<f64>));
        }
        let mut out = Vec::with_capacity(512 * 1024);
        for i in 0..frames {
            let pic = pattern.render(i, 0);
            for (enc, times, bytes, skipped, key_us) in encoders.iter_mut() {
                out.clear();
                let t = Instant::now();
                let kind = enc
                    .encode(&pic, false, &mut out)
                    .map_err(|e| format!("{}: {e}", enc.codec()))?;
                let spent = us(t.elapsed());
                match kind {
                    // The first frame is the keyframe: its cost is reported apart.
                    Encoded::Keyframe if key_us.is_none() => *key_us = Some(spent),
                    Encoded::Skipped => *skipped += 1,
                    _ => times.push(spent),
                }
                *bytes += out.len() as u64;
            }
        }
        for (enc, times, bytes, skipped, key_us) in &encoders {
            let sum = summarize(times);
            let kbps = *bytes as f64 * 8.0 / (frames as f64 / 30.0) / 1000.0;
            let size = format!("{width}x{height}");
            println!(
                "{:<10} {:<5} {:>10} {:>10} {:>10} {:>10} {:>12.0} {:>8}",
                size,
                enc.codec().name(),
                fmt_us(sum.mean),
                fmt_us(sum.p50),
                fmt_us(sum.p99),
                fmt_us(key_us.unwrap_or(0.0)),
                kbps,
                skipped
            );
            rows.push(json!({
                "width": width, "height": height, "target_bps": bitrate,
                "codec": enc.codec().name(), "frames": frames, "encode_us": sum,
                "keyframe_us": key_us, "kbit_s": kbps, "skipped": skipped,
            }));
        }
    }
    o.write(
        "codecs",
        &json!({"scenario": "codecs", "content": "busy test pattern", "rows": rows}),
    )
}
