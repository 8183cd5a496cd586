//! Video encoders behind one interface ([`VideoEncoder`]), and H.264 encoding
//! with openh264, tuned for low-latency WebRTC (VP8 is in [`crate::vp8`]).
//!
//! Constrained baseline, rate control by bitrate, no scene-change or periodic
//! IDRs (an IDR only when asked, since a viewer asks when it needs one), one
//! slice per picture on one thread. str0m cuts that slice into FU-A fragments
//! of one size (the last shorter), so a viewer's datagrams of a picture leave
//! the loop as one segmented send (`portcast_net::udp`); slices capped near
//! one packet made every datagram a different size. A lost datagram costs the
//! picture until its resend arrives, as it did before for a browser, which
//! decodes only complete pictures. An encoder given several threads keeps
//! size-capped slices ([`THREADED_SLICE_BYTES`]): openh264 shares a picture
//! among its threads by slices.
//!
//! An encoder on one thread never skips a picture to hold its bitrate (it
//! raises the quantizer instead): with one slice, openh264's frame skipping
//! dropped 50 of 434 pictures of e2e `q`'s busy 360p at 1500 kbit/s (26.5 fps
//! at the viewer), where the sliced encoder dropped none.
//!
//! Pure computation: the caller decides which thread runs it.

use std::fmt;

use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, SpsPpsStrategy, UsageType,
};
use openh264::formats::YUVSlices;
use openh264::OpenH264API;

use crate::media::VideoCodec;
use crate::pattern::I420;
use crate::vp8::Vp8Encoder;

/// Largest slice an encoder with several threads is asked for, in bytes (fits a
/// 1200-byte RTP payload); one thread encodes one slice per picture.
pub const THREADED_SLICE_BYTES: u32 = 1100;

/// How an encoder is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    /// Picture width (even).
    pub width: u32,
    /// Picture height (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Encoder worker threads inside openh264 (1 = encode on the caller's thread only).
    pub threads: u16,
}

impl EncoderSettings {
    /// Refuses a picture whose size is not the configured one.
    pub fn check_size(&self, pic: &I420<'_>) -> Result<(), EncoderError> {
        let expected = (self.width, self.height);
        if (pic.width, pic.height) == (expected.0 as usize, expected.1 as usize) {
            return Ok(());
        }
        Err(EncoderError::WrongSize {
            expected,
            got: (pic.width, pic.height),
        })
    }
}

impl Default for EncoderSettings {
    fn default() -> Self {
        EncoderSettings {
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_bps: 2_000_000,
            threads: 1,
        }
    }
}

/// Why encoding failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum EncoderError {
    /// openh264 refused the configuration or a frame.
    OpenH264(String),
    /// libvpx refused the configuration or a frame.
    Libvpx(String),
    /// A frame's size differs from the configured one.
    WrongSize {
        /// Configured (width, height).
        expected: (u32, u32),
        /// The frame's (width, height).
        got: (usize, usize),
    },
    /// A picture could not be scaled to a lower rendition.
    Scale(String),
}

impl fmt::Display for EncoderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncoderError::OpenH264(e) => write!(f, "openh264: {e}"),
            EncoderError::Libvpx(e) => write!(f, "libvpx: {e}"),
            EncoderError::Scale(e) => write!(f, "scaling a picture: {e}"),
            EncoderError::WrongSize { expected, got } => write!(
                f,
                "frame is {}x{}, encoder is set up for {}x{}",
                got.0, got.1, expected.0, expected.1
            ),
        }
    }
}

impl std::error::Error for EncoderError {}

/// What one `encode` call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// An IDR picture (SPS + PPS + IDR slices) was appended to the output.
    Keyframe,
    /// A P picture was appended.
    Delta,
    /// Rate control skipped the frame: nothing was written, send nothing.
    Skipped,
}

/// A video encoder of one codec: what a source feeds its pictures to.
pub trait VideoEncoder: Send + fmt::Debug {
    /// The codec it produces.
    fn codec(&self) -> VideoCodec;
    /// The settings it was made with.
    fn settings(&self) -> EncoderSettings;
    /// Encodes one picture, appending it to `out`; `force_key` asks for a keyframe.
    fn encode(
        &mut self,
        pic: &I420<'_>,
        force_key: bool,
        out: &mut Vec<u8>,
    ) -> Result<Encoded, EncoderError>;
    /// Retunes rate control to `bps` from the next picture on (a viewer's
    /// bandwidth estimate moved); the settings keep the configured bitrate.
    fn set_bitrate(&mut self, bps: u32) -> Result<(), EncoderError>;
    /// The bitrate rate control aims at now.
    fn bitrate(&self) -> u32;
}

/// The lowest bitrate an encoder is retuned to: below it a 720p picture is mush anyway.
pub const MIN_BITRATE_BPS: u32 = 100_000;

/// The bitrate an encoder configured for `configured` bit/s runs at when
/// retuned to `bps`: at least [`MIN_BITRATE_BPS`] (or `configured` when that
/// is lower), at most `configured`.
pub fn retuned_bitrate(bps: u32, configured: u32) -> u32 {
    bps.clamp(MIN_BITRATE_BPS.min(configured), configured)
}

/// A new encoder of `codec`; its first picture is a keyframe.
pub fn new_encoder(
    codec: VideoCodec,
    settings: EncoderSettings,
) -> Result<Box<dyn VideoEncoder>, EncoderError> {
    Ok(match codec {
        VideoCodec::H264 => Box::new(H264Encoder::new(settings)?),
        VideoCodec::Vp8 => Box::new(Vp8Encoder::new(settings)?),
    })
}

/// Each encoder's inherent `settings` and `encode` are its `VideoEncoder`.
macro_rules! video_encoder {
    ($t:ty, $codec:expr) => {
        impl VideoEncoder for $t {
            fn codec(&self) -> VideoCodec {
                $codec
            }
            fn settings(&self) -> EncoderSettings {
                <$t>::settings(self)
            }
            fn encode(
                &mut self,
                pic: &I420<'_>,
                force_key: bool,
                out: &mut Vec<u8>,
            ) -> Result<Encoded, EncoderError> {
                <$t>::encode(self, pic, force_key, out)
            }
            fn set_bitrate(&mut self, bps: u32) -> Result<(), EncoderError> {
                <$t>::set_bitrate(self, bps)
            }
            fn bitrate(&self) -> u32 {
                self.bitrate_bps
            }
        }
    };
}

video_encoder!(H264Encoder, VideoCodec::H264);
video_encoder!(Vp8Encoder, VideoCodec::Vp8);

/// An openh264 encoder for one source.
pub struct H264Encoder {
    settings: EncoderSettings,
    /// What rate control aims at now (the settings' until retuned).
    bitrate_bps: u32,
    /// What openh264's rate control was last given (see `set_bitrate`).
    applied_bps: u32,
    inner: Encoder,
    frames: u64,
}

impl fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H264Encoder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl H264Encoder {
    /// Creates an encoder; the first frame it encodes is an IDR.
    pub fn new(settings: EncoderSettings) -> Result<Self, EncoderError> {
        // Several threads: sliced pictures, frames skipped to hold the bitrate
        // (as before stop 37); one thread: one slice, nothing skipped.
        let threaded = settings.threads > 1;
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .complexity(Complexity::Low)
            .bitrate(BitRate::from_bps(settings.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(settings.fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(threaded)
            .debug(false)
            .scene_change_detect(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .num_threads(settings.threads.max(1));
        let config = if threaded {
            config.max_slice_len(THREADED_SLICE_BYTES)
        } else {
            config
        };
        let inner = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| EncoderError::OpenH264(e.to_string()))?;
        Ok(H264Encoder {
            settings,
            bitrate_bps: settings.bitrate_bps,
            applied_bps: settings.bitrate_bps,
            inner,
            frames: 0,
        })
    }

    /// The settings this encoder was made with.
    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Retunes rate control to `bps` (at least [`MIN_BITRATE_BPS`], at most
    /// the configured bitrate, which openh264 keeps as its maximum), as
    /// libwebrtc's `H264EncoderImpl::SetRates` does.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), EncoderError> {
        self.bitrate_bps = retuned_bitrate(bps, self.settings.bitrate_bps);
        // The openh264 crate initialises the codec at the first picture (it
        // needs the size); SetOption fails before that, so the first picture
        // runs at the configured bitrate and `encode` retunes from the next.
        if self.frames > 0 {
            self.apply_bitrate()?;
        }
        Ok(())
    }

    /// Hands `bitrate_bps` to openh264's rate control if it runs at another.
    fn apply_bitrate(&mut self) -> Result<(), EncoderError> {
        let bps = self.bitrate_bps;
        if bps == self.applied_bps {
            return Ok(());
        }
        let mut info = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: i32::try_from(bps).unwrap_or(i32::MAX),
        };
        // SAFETY: the codec is initialised (a picture was encoded) and SetOption
        // reads an SBitrateInfo for ENCODER_OPTION_BITRATE; `info` outlives the call.
        let rc = unsafe {
            self.inner.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_BITRATE,
                std::ptr::addr_of_mut!(info).cast(),
            )
        };
        if rc != 0 {
            return Err(EncoderError::OpenH264(format!(
                "setting the bitrate to {bps} bit/s failed ({rc})"
            )));
        }
        self.applied_bps = bps;
        Ok(())
    }

    /// Encodes one picture, appending Annex-B NAL units to `out`; `force_idr` asks for a keyframe.
    pub fn encode(
        &mut self,
        pic: &I420<'_>,
        force_idr: bool,
        out: &mut Vec<u8>,
    ) -> Result<Encoded, EncoderError> {
        self.settings.check_size(pic)?;
        if force_idr {
            self.inner.force_intra_frame();
        }
        if self.frames > 0 {
            self.apply_bitrate()?;
        }
        let src = YUVSlices::new((pic.y, pic.u, pic.v), (pic.width, pic.height), pic.strides);
        // Timestamps drive openh264's rate control: feed it the nominal frame time.
        let ts_ms = self.frames * 1000 / u64::from(self.settings.fps.max(1));
        self.frames += 1;
        let bits = self
            .inner
            .encode_at(&src, openh264::Timestamp::from_millis(ts_ms))
            .map_err(|e| EncoderError::OpenH264(e.to_string()))?;
        let kind = match bits.frame_type() {
            FrameType::Skip | FrameType::Invalid => return Ok(Encoded::Skipped),
            FrameType::IDR => Encoded::Keyframe,
            _ => Encoded::Delta,
        };
        let before = out.len();
        bits.write_vec(out);
        if out.len() == before {
            return Ok(Encoded::Skipped);
        }
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pixel fresh noise: far more than the bitrate carries.
    fn noise(seed: &mut u64, w: usize, h: usize) -> Vec<u8> {
        (0..w * h * 3 / 2)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*seed >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn one_thread_encodes_every_picture_of_content_beyond_its_bitrate() {
        let (w, h) = (320, 180);
        let settings = EncoderSettings {
            width: w as u32,
            height: h as u32,
            fps: 30,
            bitrate_bps: 100_000,
            threads: 1,
        };
        let mut encoder = H264Encoder::new(settings).unwrap();
        let (mut seed, mut out) = (7, Vec::new());
        let mut skipped = 0;
        for i in 0..30 {
            let buf = noise(&mut seed, w, h);
            let pic = I420 {
                y: &buf[..w * h],
                u: &buf[w * h..w * h * 5 / 4],
                v: &buf[w * h * 5 / 4..],
                width: w,
                height: h,
                strides: (w, w / 2, w / 2),
            };
            out.clear();
            if encoder.encode(&pic, i == 0, &mut out).unwrap() == Encoded::Skipped {
                skipped += 1;
            }
        }
        assert_eq!(skipped, 0, "pictures skipped of 30");
    }
}
