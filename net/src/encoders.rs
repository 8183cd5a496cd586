//! The encoders of one source of pictures (a built-in source, a renderer):
//! one per codec and rendition its viewers receive, each made when it is
//! needed and dropped when it is not, each with its own "the next picture is
//! a keyframe" flag, all fed the same picture: rendition 0 as it comes, each
//! lower rung of the avatar's ladder scaled once per picture (whatever the
//! number of codecs encoding it) with `fast_image_resize`.

use std::time::Instant;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use portcast_engine::encoder::{
    new_encoder, retuned_bitrate, Encoded, EncoderError, EncoderSettings, VideoEncoder,
};
use portcast_engine::pattern::I420;
use portcast_engine::{rendition_name, Rung, VideoCodec, MAX_RENDITIONS};

use crate::source::{slot, EncoderDemand};

/// A running encoder and whether its next picture must be a keyframe.
struct Running {
    encoder: Box<dyn VideoEncoder>,
    force_key: bool,
    /// A bitrate the encoder refused: not asked again until the wanted one moves.
    refused_bps: Option<u32>,
}

/// Per codec and rendition, its encoder while it runs; the ladder's rungs
/// and the scaled picture of each.
pub struct Encoders {
    slots: Vec<Option<Running>>,
    ladder: Vec<Rung>,
    scaler: Scaler,
}

impl Default for Encoders {
    /// Encoders of one rendition (no ladder).
    fn default() -> Self {
        Encoders::with_ladder(Vec::new())
    }
}

/// An encoder [`Encoders::sync`] started or stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// Its codec.
    pub codec: VideoCodec,
    /// Its rendition.
    pub rendition: u8,
    /// True: started (its first picture is a keyframe); false: stopped.
    pub started: bool,
    /// How logs name it ([`Encoders::label`]).
    pub label: String,
}

/// One encoder's result for one picture, handed to the caller's sink.
#[derive(Debug)]
pub struct Picture<'a> {
    /// The codec.
    pub codec: VideoCodec,
    /// The rendition (0: the source's own picture; `i + 1`: rung `i`).
    pub rendition: u8,
    /// Keyframe, delta, or skipped by rate control (then `data` is empty).
    pub kind: Encoded,
    /// The encoded picture.
    pub data: &'a [u8],
    /// When this encoder started on the picture (after any scaling).
    pub began: Instant,
    /// When it returned.
    pub encoded_at: Instant,
    /// The bitrate the encoder aimed at.
    pub bitrate_bps: u32,
}

impl Encoders {
    /// Encoders of rendition 0 and each rung of `ladder` (at most
    /// [`MAX_RENDITIONS`] - 1 are used).
    pub fn with_ladder(mut ladder: Vec<Rung>) -> Self {
        ladder.truncate(MAX_RENDITIONS - 1);
        Encoders {
            slots: (0..VideoCodec::ALL.len() * MAX_RENDITIONS)
                .map(|_| None)
                .collect(),
            scaler: Scaler::new(ladder.len()),
            ladder,
        }
    }

    /// How logs name `codec`'s encoder of `rendition`: `VP8` (rendition 0), `H264 360p`.
    pub fn label(&self, codec: VideoCodec, rendition: u8) -> String {
        match rendition {
            0 => codec.to_string(),
            r => format!("{codec} {}", rendition_name(&self.ladder, r)),
        }
    }

    /// How many renditions it can encode: 1 plus the ladder's rungs.
    pub fn renditions(&self) -> u8 {
        1 + self.ladder.len() as u8
    }

    /// What rendition `rendition` of a source set up as `settings` is encoded
    /// with: a rung's size and bitrate; rendition 0 (or one out of range) as is.
    pub fn settings_for(&self, settings: EncoderSettings, rendition: u8) -> EncoderSettings {
        let Some(rung) = usize::from(rendition)
            .checked_sub(1)
            .and_then(|i| self.ladder.get(i))
        else {
            return settings;
        };
        let (w, h) = rung.size_for(settings.width as usize, settings.height as usize);
        EncoderSettings {
            width: w as u32,
            height: h as u32,
            bitrate_bps: rung.bitrate_bps,
            ..settings
        }
    }

    /// Makes `codec`'s rendition-0 encoder run with `settings` (see [`Encoders::run_at`]).
    pub fn run(
        &mut self,
        codec: VideoCodec,
        settings: EncoderSettings,
    ) -> Result<bool, EncoderError> {
        self.run_at(codec, 0, settings)
    }

    /// Makes `codec`'s encoder of rendition `rendition` run for a source set
    /// up as `settings` (scaled for a rung): a new one when none runs or the
    /// running one is set up otherwise (its first picture is a keyframe).
    /// True when a new one started.
    pub fn run_at(
        &mut self,
        codec: VideoCodec,
        rendition: u8,
        settings: EncoderSettings,
    ) -> Result<bool, EncoderError> {
        if rendition >= self.renditions() {
            return Ok(false);
        }
        let settings = self.settings_for(settings, rendition);
        let slot = &mut self.slots[slot(codec, rendition)];
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

    /// Runs the encoder of each codec and rendition `wanted` says is wanted,
    /// for a source set up as `settings` (see [`Encoders::run_at`]), and
    /// drops the others; says which it started or stopped. The error names
    /// the encoder that could not start.
    pub fn sync(
        &mut self,
        settings: EncoderSettings,
        wanted: impl Fn(VideoCodec, u8) -> bool,
    ) -> Result<Vec<Switched>, String> {
        let mut switched = Vec::new();
        for codec in VideoCodec::ALL {
            for rendition in 0..self.renditions() {
                let started = if wanted(codec, rendition) {
                    let started = self.run_at(codec, rendition, settings).map_err(|e| {
                        let label = self.label(codec, rendition);
                        format!("cannot start its {label} encoder: {e}")
                    })?;
                    if !started {
                        continue;
                    }
                    true
                } else if self.stop_at(codec, rendition) {
                    false
                } else {
                    continue;
                };
                switched.push(Switched {
                    codec,
                    rendition,
                    started,
                    label: self.label(codec, rendition),
                });
            }
        }
        Ok(switched)
    }

    /// Drops `codec`'s rendition-0 encoder; true if one ran.
    pub fn stop(&mut self, codec: VideoCodec) -> bool {
        self.stop_at(codec, 0)
    }

    /// Drops `codec`'s encoder of rendition `rendition`; true if one ran.
    pub fn stop_at(&mut self, codec: VideoCodec, rendition: u8) -> bool {
        rendition < self.renditions() && self.slots[slot(codec, rendition)].take().is_some()
    }

    /// Makes the next picture of every running encoder of `codec` a keyframe.
    pub fn force_keyframe(&mut self, codec: VideoCodec) {
        for r in 0..self.renditions() {
            if let Some(run) = &mut self.slots[slot(codec, r)] {
                run.force_key = true;
            }
        }
    }

    /// Encodes `pic` with every running encoder, codec by codec, rendition 0
    /// first, into `buf` (cleared for each): rendition 0 first retuned to
    /// the bitrate `demand` caps it at (its configured bitrate when
    /// uncapped), a rung from `pic` scaled to its size. Each result goes to
    /// `sink`, which returns whether the picture reached the viewers: when it
    /// did not, that encoder's next picture is a keyframe (a lost picture
    /// breaks the chain). A keyframe `demand` asks for is made; a skipped
    /// picture leaves a pending keyframe pending.
    pub fn encode_each(
        &mut self,
        pic: &I420<'_>,
        demand: &EncoderDemand,
        buf: &mut Vec<u8>,
        mut sink: impl FnMut(Picture<'_>) -> bool,
    ) -> Result<(), (VideoCodec, EncoderError)> {
        self.scaler.new_picture();
        for codec in VideoCodec::ALL {
            for rendition in 0..self.renditions() {
                let Some(r) = &mut self.slots[slot(codec, rendition)] else {
                    continue;
                };
                let configured = r.encoder.settings().bitrate_bps;
                if rendition == 0 {
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
                }
                if demand.take_keyframe(codec, rendition) {
                    r.force_key = true;
                }
                let input = match rendition {
                    0 => *pic,
                    n => {
                        let s = r.encoder.settings();
                        self.scaler
                            .scaled(usize::from(n) - 1, pic, s.width as usize, s.height as usize)
                            .map_err(|e| (codec, e))?
                    }
                };
                buf.clear();
                let began = Instant::now();
                let kind = r
                    .encoder
                    .encode(&input, r.force_key, buf)
                    .map_err(|e| (codec, e))?;
                let picture = Picture {
                    codec,
                    rendition,
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
        }
        Ok(())
    }
}

/// Scales a picture to each rung once per picture, whatever the number of
/// codecs that encode that rung.
struct Scaler {
    resizer: Resizer,
    /// Per rung: its I420 bytes (Y, U, V tightly packed), its size, and
    /// whether it holds the current picture.
    rungs: Vec<(Vec<u8>, usize, usize, bool)>,
    /// A tightly packed copy of a plane whose rows have padding.
    packed: Vec<u8>,
}

impl Scaler {
    fn new(rungs: usize) -> Self {
        Scaler {
            resizer: Resizer::new(),
            rungs: (0..rungs).map(|_| (Vec::new(), 0, 0, false)).collect(),
            packed: Vec::new(),
        }
    }

    /// A new picture comes: every rung's scaled copy is stale.
    fn new_picture(&mut self) {
        for r in &mut self.rungs {
            r.3 = false;
        }
    }

    /// `pic` scaled to `width` x `height` for rung `rung` (made once per picture).
    fn scaled(
        &mut self,
        rung: usize,
        pic: &I420<'_>,
        width: usize,
        height: usize,
    ) -> Result<I420<'_>, EncoderError> {
        let fresh =
            self.rungs[rung].3 && self.rungs[rung].1 == width && self.rungs[rung].2 == height;
        if !fresh {
            let luma = width * height;
            let (cw, ch) = (width / 2, height / 2);
            let (pcw, pch) = (pic.width.div_ceil(2), pic.height.div_ceil(2));
            let out = &mut self.rungs[rung];
            out.0.resize(luma + 2 * cw * ch, 0);
            let (y, chroma) = out.0.split_at_mut(luma);
            let (u, v) = chroma.split_at_mut(cw * ch);
            let planes = [
                (
                    pic.y,
                    pic.strides.0,
                    pic.width,
                    pic.height,
                    y,
                    width,
                    height,
                ),
                (pic.u, pic.strides.1, pcw, pch, u, cw, ch),
                (pic.v, pic.strides.2, pcw, pch, v, cw, ch),
            ];
            for (src, stride, sw, sh, dst, dw, dh) in planes {
                scale_plane(
                    &mut self.resizer,
                    &mut self.packed,
                    src,
                    stride,
                    sw,
                    sh,
                    dst,
                    dw,
                    dh,
                )?;
            }
            out.1 = width;
            out.2 = height;
            out.3 = true;
        }
        let (data, w, h, _) = &self.rungs[rung];
        let luma = w * h;
        let c = (w / 2) * (h / 2);
        Ok(I420 {
            y: &data[..luma],
            u: &data[luma..luma + c],
            v: &data[luma + c..luma + 2 * c],
            width: *w,
            height: *h,
            strides: (*w, w / 2, w / 2),
        })
    }
}

/// Scales one plane (`sw` x `sh` at `stride` bytes a row) into `dst` (`dw` x `dh`, packed).
#[allow(clippy::too_many_arguments)]
fn scale_plane(
    resizer: &mut Resizer,
    packed: &mut Vec<u8>,
    src: &[u8],
    stride: usize,
    sw: usize,
    sh: usize,
    dst: &mut [u8],
    dw: usize,
    dh: usize,
) -> Result<(), EncoderError> {
    let bad = EncoderError::Scale;
    let rows = if stride == sw {
        src
    } else {
        packed.clear();
        for row in src.chunks(stride.max(1)).take(sh) {
            packed.extend_from_slice(row.get(..sw).ok_or_else(|| bad("short row".into()))?);
        }
        packed.as_slice()
    };
    let from =
        ImageRef::new(sw as u32, sh as u32, rows, PixelType::U8).map_err(|e| bad(e.to_string()))?;
    let mut to = Image::from_slice_u8(dw as u32, dh as u32, dst, PixelType::U8)
        .map_err(|e| bad(e.to_string()))?;
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    resizer
        .resize(&from, &mut to, &options)
        .map_err(|e| bad(e.to_string()))
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
    fn sync_runs_what_is_wanted_stops_the_rest_and_says_which() {
        let mut e = Encoders::with_ladder(vec![Rung {
            height: 72,
            bitrate_bps: 100_000,
        }]);
        let switched = |e: &mut Encoders, wanted: &[(VideoCodec, u8)]| {
            let s = e
                .sync(settings(256), |c, r| wanted.contains(&(c, r)))
                .unwrap();
            s.into_iter()
                .map(|s| (s.label, s.started))
                .collect::<Vec<_>>()
        };
        let both = [(VideoCodec::H264, 0), (VideoCodec::H264, 1)];
        assert_eq!(
            switched(&mut e, &both),
            [("H264".to_string(), true), ("H264 72p".to_string(), true)]
        );
        assert!(switched(&mut e, &both).is_empty(), "already running");
        assert_eq!(
            switched(&mut e, &[(VideoCodec::H264, 0), (VideoCodec::Vp8, 1)]),
            [
                ("H264 72p".to_string(), false),
                ("VP8 72p".to_string(), true)
            ]
        );
        assert!(!e.stop_at(VideoCodec::H264, 1), "it was dropped");
        // A rendition the ladder does not have is never started.
        assert!(switched(
            &mut e,
            &[
                (VideoCodec::H264, 0),
                (VideoCodec::Vp8, 1),
                (VideoCodec::H264, 2)
            ]
        )
        .is_empty());
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
    fn a_rung_encodes_the_picture_scaled_and_takes_its_own_keyframe_requests() {
        let ladder = vec![
            Rung {
                height: 72,
                bitrate_bps: 120_000,
            },
            Rung {
                height: 36,
                bitrate_bps: 60_000,
            },
        ];
        let mut pattern = TestPattern::new(256, 144).unwrap();
        let mut e = Encoders::with_ladder(ladder);
        assert_eq!(e.renditions(), 3);
        let demand = EncoderDemand::default();
        e.run(VideoCodec::H264, settings(256)).unwrap();
        assert!(e.run_at(VideoCodec::H264, 1, settings(256)).unwrap());
        assert!(e.run_at(VideoCodec::Vp8, 1, settings(256)).unwrap());
        assert!(
            !e.run_at(VideoCodec::H264, 3, settings(256)).unwrap(),
            "no such rung"
        );
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        let mut decoder = openh264::decoder::Decoder::new().unwrap();
        let mut sizes = Vec::new();
        for i in 0..3 {
            if i == 2 {
                demand.request_keyframe(VideoCodec::H264, 1);
            }
            e.encode_each(&pattern.render(i, 0), &demand, &mut buf, |p| {
                seen.push((i, p.codec, p.rendition, p.kind, p.bitrate_bps));
                if p.codec == VideoCodec::H264 && p.rendition == 1 {
                    let pic = decoder.decode(p.data).unwrap().expect("a picture");
                    sizes.push(openh264::formats::YUVSource::dimensions(&pic));
                }
                true
            })
            .unwrap();
        }
        let at = |i| {
            seen.iter()
                .filter(move |s| s.0 == i)
                .map(|s| (s.1, s.2, s.3))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(0),
            [
                (VideoCodec::H264, 0, Encoded::Keyframe),
                (VideoCodec::H264, 1, Encoded::Keyframe),
                (VideoCodec::Vp8, 1, Encoded::Keyframe)
            ],
            "rendition 0 first, codec by codec"
        );
        assert_eq!(
            at(2),
            [
                (VideoCodec::H264, 0, Encoded::Delta),
                (VideoCodec::H264, 1, Encoded::Keyframe),
                (VideoCodec::Vp8, 1, Encoded::Delta)
            ],
            "only the rung asked for makes a keyframe"
        );
        assert!(
            seen.iter().filter(|s| s.2 == 1).all(|s| s.4 == 120_000),
            "the rung's bitrate"
        );
        assert_eq!(sizes, [(128, 72); 3], "the picture scaled to the rung");
        assert!(e.stop_at(VideoCodec::Vp8, 1) && !e.stop_at(VideoCodec::Vp8, 1));
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
