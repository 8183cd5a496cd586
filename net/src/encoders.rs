//! The encoders of one source of pictures (a built-in source, a renderer):
//! one per codec its viewers receive, each made when it is needed and dropped
//! when it is not, each with its own "the next picture is a keyframe" flag, all
//! fed the same picture.

use std::time::Instant;

use portcast_engine::encoder::{
    new_encoder, retuned_bitrate, Encoded, EncoderError, EncoderSettings, VideoEncoder,
};
use portcast_engine::pattern::I420;
use portcast_engine::VideoCodec;

use crate::source::EncoderDemand;

/// A running encoder and whether its next picture must be a keyframe.
struct Running {
    encoder: Box<dyn VideoEncoder>,
    force_key: bool,
    /// A bitrate the encoder refused: not asked again until the wanted one moves.
    refused_bps: Option<u32>,
}

/// Per codec, its encoder while it runs.
#[derive(Default)]
pub struct Encoders {
    slots: [Option<Running>; VideoCodec::ALL.len()],
}

/// One encoder's result for one picture, handed to the caller's sink.
#[derive(Debug)]
pub struct Picture<'a> {
    /// The codec.
    pub codec: VideoCodec,
    /// Keyframe, delta, or skipped by rate control (then `data` is empty).
    pub kind: Encoded,
    /// The encoded picture.
    pub data: &'a [u8],
    /// When this encoder started on the picture.
    pub began: Instant,
    /// When it returned.
    pub encoded_at: Instant,
    /// The bitrate the encoder aimed at.
    pub bitrate_bps: u32,
}

impl Encoders {
    /// Makes `codec`'s encoder run with `settings`: a new one when none runs or
    /// the running one is set up otherwise (its first picture is a keyframe).
    /// True when a new one started.
    pub fn run(
        &mut self,
        codec: VideoCodec,
        settings: EncoderSettings,
    ) -> Result<bool, EncoderError> {
        let slot = &mut self.slots[codec.index()];
        if slot
            .as_ref()
            .is_some_and(|r| r.encoder.settings() == settings)
        {
            return Ok(false);
        }
        *slot = Some(Running {
            encoder: new_encoder(codec, settings)?,
            refused_bps: None,
            force_key: true,
        });
        Ok(true)
    }

    /// Drops `codec`'s encoder; true if one ran.
    pub fn stop(&mut self, codec: VideoCodec) -> bool {
        self.slots[codec.index()].take().is_some()
    }

    /// Makes the next picture of `codec`'s encoder, if it runs, a keyframe.
    pub fn force_keyframe(&mut self, codec: VideoCodec) {
        if let Some(r) = &mut self.slots[codec.index()] {
            r.force_key = true;
        }
    }

    /// Encodes `pic` with every running encoder, in codec order, into `buf`
    /// (cleared for each), each first retuned to the bitrate `demand` caps it
    /// at (its configured bitrate when uncapped), and hands each result to
    /// `sink`, which returns whether the picture reached the viewers: when it
    /// did not, that encoder's next picture is a keyframe (a lost picture
    /// breaks the chain). A skipped picture leaves a pending keyframe pending.
    pub fn encode_each(
        &mut self,
        pic: &I420<'_>,
        demand: &EncoderDemand,
        buf: &mut Vec<u8>,
        mut sink: impl FnMut(Picture<'_>) -> bool,
    ) -> Result<(), (VideoCodec, EncoderError)> {
        for r in self.slots.iter_mut().flatten() {
            let codec = r.encoder.codec();
            let configured = r.encoder.settings().bitrate_bps;
            // What the encoder will hold (floor included), so a cap under the
            // floor does not retune it on every picture.
            let wanted = demand
                .cap(codec)
                .map_or(configured, |c| retuned_bitrate(c, configured));
            // A refused retune is not worth the picture: the encoder keeps
            // its bitrate, and the refusal is logged once per wanted value.
            if wanted != r.encoder.bitrate() && r.refused_bps != Some(wanted) {
                if let Err(e) = r.encoder.set_bitrate(wanted) {
                    log::warn!(
                        "{codec} encoder refused {wanted} bit/s ({e}); it keeps {} bit/s",
                        r.encoder.bitrate()
                    );
                    r.refused_bps = Some(wanted);
                }
            }
            buf.clear();
            let began = Instant::now();
            let kind = r
                .encoder
                .encode(pic, r.force_key, buf)
                .map_err(|e| (codec, e))?;
            let picture = Picture {
                codec,
                kind,
                data: buf.as_slice(),
                began,
                encoded_at: Instant::now(),
                bitrate_bps: r.encoder.bitrate(),
            };
            let delivered = sink(picture);
            if kind != Encoded::Skipped {
                r.force_key = !delivered;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcast_engine::pattern::TestPattern;

    fn settings(width: u32) -> EncoderSettings {
        EncoderSettings {
            width,
            height: 144,
            fps: 30,
            bitrate_bps: 300_000,
            threads: 1,
        }
    }

    #[test]
    fn each_running_codec_encodes_and_a_lost_picture_brings_a_keyframe() {
        let mut pattern = TestPattern::new(256, 144).unwrap();
        let mut e = Encoders::default();
        let demand = EncoderDemand::default();
        assert!(e.run(VideoCodec::H264, settings(256)).unwrap());
        assert!(
            !e.run(VideoCodec::H264, settings(256)).unwrap(),
            "already running"
        );
        assert!(e.run(VideoCodec::Vp8, settings(256)).unwrap());
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        for i in 0..4 {
            // The H.264 picture of frame 1 is lost (the sink says so).
            e.encode_each(&pattern.render(i, 0), &demand, &mut buf, |p| {
                seen.push((i, p.codec, p.kind));
                !(i == 1 && p.codec == VideoCodec::H264)
            })
            .unwrap();
        }
        let kind = |i, c| seen.iter().find(|s| s.0 == i && s.1 == c).unwrap().2;
        assert_eq!(kind(0, VideoCodec::H264), Encoded::Keyframe);
        assert_eq!(kind(0, VideoCodec::Vp8), Encoded::Keyframe);
        assert_eq!(
            kind(2, VideoCodec::H264),
            Encoded::Keyframe,
            "after the loss"
        );
        assert_eq!(kind(2, VideoCodec::Vp8), Encoded::Delta);
        e.force_keyframe(VideoCodec::Vp8);
        assert!(e.stop(VideoCodec::H264) && !e.stop(VideoCodec::H264));
        seen.clear();
        e.encode_each(&pattern.render(4, 0), &demand, &mut buf, |p| {
            seen.push((4, p.codec, p.kind));
            true
        })
        .unwrap();
        assert_eq!(seen, [(4, VideoCodec::Vp8, Encoded::Keyframe)]);
        // New settings: a new encoder.
        assert!(e.run(VideoCodec::Vp8, settings(320)).unwrap());
    }

    #[test]
    fn a_cap_retunes_the_running_encoder_and_lifting_it_restores_the_configured_bitrate() {
        let mut pattern = TestPattern::new(256, 144).unwrap();
        let mut e = Encoders::default();
        let demand = EncoderDemand::default();
        let mut buf = Vec::new();
        let mut rates = Vec::new();
        let mut step = |e: &mut Encoders, i: u64, rates: &mut Vec<(VideoCodec, u32)>| {
            e.encode_each(&pattern.render(i, 0), &demand, &mut buf, |p| {
                rates.push((p.codec, p.bitrate_bps));
                true
            })
            .unwrap();
        };
        e.run(VideoCodec::H264, settings(256)).unwrap();
        e.run(VideoCodec::Vp8, settings(256)).unwrap();
        step(&mut e, 0, &mut rates);
        assert_eq!(
            rates,
            [(VideoCodec::H264, 300_000), (VideoCodec::Vp8, 300_000)]
        );
        // Capped below the configured bitrate: both retuned; above it: the configured one.
        demand.set_cap(VideoCodec::H264, Some(150_000));
        demand.set_cap(VideoCodec::Vp8, Some(5_000_000));
        rates.clear();
        step(&mut e, 1, &mut rates);
        assert_eq!(
            rates,
            [(VideoCodec::H264, 150_000), (VideoCodec::Vp8, 300_000)]
        );
        // Never below the floor.
        demand.set_cap(VideoCodec::H264, Some(1_000));
        rates.clear();
        step(&mut e, 2, &mut rates);
        assert_eq!(rates[0], (VideoCodec::H264, 100_000));
        demand.set_cap(VideoCodec::H264, None);
        rates.clear();
        step(&mut e, 3, &mut rates);
        assert_eq!(rates[0], (VideoCodec::H264, 300_000));
    }

    #[test]
    fn a_cap_that_arrives_before_the_first_picture_does_not_stop_the_encoder() {
        // The cap of a viewer's first estimate often lands before the encoder
        // has seen a picture (openh264 sets itself up at the first one).
        let mut pattern = TestPattern::new(256, 144).unwrap();
        let mut e = Encoders::default();
        let demand = EncoderDemand::default();
        demand.set_cap(VideoCodec::H264, Some(150_000));
        demand.set_cap(VideoCodec::Vp8, Some(150_000));
        e.run(VideoCodec::H264, settings(256)).unwrap();
        e.run(VideoCodec::Vp8, settings(256)).unwrap();
        let mut buf = Vec::new();
        for i in 0..3 {
            let mut rates = Vec::new();
            e.encode_each(&pattern.render(i, 0), &demand, &mut buf, |p| {
                rates.push((p.codec, p.bitrate_bps, p.kind));
                true
            })
            .unwrap();
            assert_eq!(rates.len(), 2, "picture {i}: {rates:?}");
            assert!(
                rates.iter().all(|r| r.1 == 150_000),
                "picture {i}: {rates:?}"
            );
        }
    }
}
