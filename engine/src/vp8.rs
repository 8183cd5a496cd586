//! VP8 encoding with libvpx (through `env-libvpx-sys`), for viewers whose
//! browser has no H.264 (Firefox without its OpenH264 plugin).
//!
//! Tuned as WebRTC's own libvpx wrapper is for real time: one pass, CBR, no
//! look-ahead, error resilient, keyframes only when asked (a viewer asks when
//! it needs one), speed -6. Pure computation: the caller decides the thread.

use std::fmt;
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_ulong};
use std::ptr;

use vpx_sys::vp8e_enc_control_id::{
    VP8E_SET_CPUUSED, VP8E_SET_MAX_INTRA_BITRATE_PCT, VP8E_SET_NOISE_SENSITIVITY,
    VP8E_SET_STATIC_THRESHOLD, VP8E_SET_TOKEN_PARTITIONS,
};
use vpx_sys::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT;
use vpx_sys::vpx_codec_err_t::VPX_CODEC_OK;
use vpx_sys::{
    vpx_codec_ctx_t, vpx_codec_destroy, vpx_codec_enc_cfg_t, vpx_codec_enc_config_default,
    vpx_codec_enc_config_set, vpx_codec_enc_init_ver, vpx_codec_encode, vpx_codec_err_t,
    vpx_codec_error_detail, vpx_codec_get_cx_data, vpx_codec_vp8_cx, vpx_enc_pass, vpx_image_t,
    vpx_img_fmt, vpx_img_wrap, vpx_kf_mode, vpx_rc_mode, VPX_DL_REALTIME, VPX_EFLAG_FORCE_KF,
    VPX_ENCODER_ABI_VERSION, VPX_ERROR_RESILIENT_DEFAULT, VPX_FRAME_IS_KEY,
};

use crate::encoder::{retuned_bitrate, Encoded, EncoderError, EncoderSettings};
use crate::pattern::I420;

/// libvpx's speed for real time: -6 is what WebRTC uses on desktop CPUs
/// (negative: a fixed speed, not one that adapts to a deadline).
const CPU_USED: c_int = -6;

/// A libvpx VP8 encoder for one source.
pub struct Vp8Encoder {
    settings: EncoderSettings,
    // Boxed: libvpx keeps a pointer to the context's address.
    ctx: Box<vpx_codec_ctx_t>,
    /// The configuration libvpx was given (retuned by `set_bitrate`).
    cfg: Box<vpx_codec_enc_cfg_t>,
    /// What rate control aims at now (the settings' until retuned).
    pub(crate) bitrate_bps: u32,
    frames: i64,
}

// SAFETY: the context is owned by this value alone and libvpx keeps no
// thread-local state for it; it is used from one thread at a time (&mut self).
unsafe impl Send for Vp8Encoder {}

impl fmt::Debug for Vp8Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vp8Encoder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Vp8Encoder {
    /// Creates an encoder; the first frame it encodes is a keyframe.
    pub fn new(settings: EncoderSettings) -> Result<Self, EncoderError> {
        if settings.width == 0
            || settings.height == 0
            || settings.width % 2 + settings.height % 2 != 0
        {
            return Err(EncoderError::Libvpx(format!(
                "{}x{} is not a picture VP8 can encode (even sizes only)",
                settings.width, settings.height
            )));
        }
        // SAFETY: plain C calls on zeroed POD structs libvpx fills in; every
        // result is checked before the struct is used.
        unsafe {
            let iface = vpx_codec_vp8_cx();
            if iface.is_null() {
                return Err(EncoderError::Libvpx("libvpx has no VP8 encoder".into()));
            }
            let mut cfg: vpx_codec_enc_cfg_t = MaybeUninit::zeroed().assume_init();
            check(vpx_codec_enc_config_default(iface, &mut cfg, 0), None)?;
            cfg.g_w = settings.width;
            cfg.g_h = settings.height;
            cfg.g_timebase.num = 1;
            cfg.g_timebase.den = settings.fps.max(1) as c_int;
            cfg.g_threads = u32::from(settings.threads.max(1));
            cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
            cfg.g_pass = vpx_enc_pass::VPX_RC_ONE_PASS;
            cfg.g_lag_in_frames = 0;
            cfg.rc_end_usage = vpx_rc_mode::VPX_CBR;
            cfg.rc_target_bitrate = (settings.bitrate_bps / 1000).max(1);
            // WebRTC's values: quantizer 2..56, a 1 s buffer, under-shoot freely.
            cfg.rc_min_quantizer = 2;
            cfg.rc_max_quantizer = 56;
            cfg.rc_undershoot_pct = 100;
            cfg.rc_overshoot_pct = 15;
            cfg.rc_buf_initial_sz = 500;
            cfg.rc_buf_optimal_sz = 600;
            cfg.rc_buf_sz = 1000;
            // Drop a frame rather than blow the bitrate on costly content (as openh264 skips).
            cfg.rc_dropframe_thresh = 30;
            cfg.rc_resize_allowed = 0;
            cfg.kf_mode = vpx_kf_mode::VPX_KF_DISABLED;
            let mut ctx: Box<vpx_codec_ctx_t> = Box::new(MaybeUninit::zeroed().assume_init());
            check(
                vpx_codec_enc_init_ver(&mut *ctx, iface, &cfg, 0, VPX_ENCODER_ABI_VERSION as c_int),
                None,
            )?;
            let mut enc = Vp8Encoder {
                settings,
                ctx,
                cfg: Box::new(cfg),
                bitrate_bps: settings.bitrate_bps,
                frames: 0,
            };
            // An IDR of a 720p picture may take several times a frame's budget.
            let intra_pct = 300;
            for (id, value) in [
                (VP8E_SET_CPUUSED as c_int, CPU_USED),
                (VP8E_SET_NOISE_SENSITIVITY as c_int, 0),
                (VP8E_SET_STATIC_THRESHOLD as c_int, 1),
                (VP8E_SET_TOKEN_PARTITIONS as c_int, 0),
                (VP8E_SET_MAX_INTRA_BITRATE_PCT as c_int, intra_pct),
            ] {
                let err = vpx_sys::vpx_codec_control_(&mut *enc.ctx, id, value);
                check(err, Some(&mut enc.ctx))?;
            }
            Ok(enc)
        }
    }

    /// The settings this encoder was made with.
    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Retunes rate control to `bps`, within [`retuned_bitrate`]'s bounds.
    pub fn set_bitrate(&mut self, bps: u32) -> Result<(), EncoderError> {
        let bps = retuned_bitrate(bps, self.settings.bitrate_bps);
        if bps == self.bitrate_bps {
            return Ok(());
        }
        self.cfg.rc_target_bitrate = (bps / 1000).max(1);
        // SAFETY: the context was initialised by `new`; libvpx copies the
        // configuration it is given, which lives in `self` anyway.
        unsafe {
            check(
                vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg),
                Some(&mut self.ctx),
            )?;
        }
        self.bitrate_bps = bps;
        Ok(())
    }

    /// Encodes one picture, appending one VP8 frame to `out`; `force_key` asks for a keyframe.
    pub fn encode(
        &mut self,
        pic: &I420<'_>,
        force_key: bool,
        out: &mut Vec<u8>,
    ) -> Result<Encoded, EncoderError> {
        self.settings.check_size(pic)?;
        let (cw, ch) = (pic.width.div_ceil(2), pic.height.div_ceil(2));
        let fits = |plane: &[u8], stride: usize, w: usize, h: usize| {
            stride >= w && plane.len() >= stride * (h - 1) + w
        };
        if !(fits(pic.y, pic.strides.0, pic.width, pic.height)
            && fits(pic.u, pic.strides.1, cw, ch)
            && fits(pic.v, pic.strides.2, cw, ch))
        {
            return Err(EncoderError::Libvpx(
                "a plane is shorter than its stride and size say".into(),
            ));
        }
        let flags = if force_key {
            VPX_EFLAG_FORCE_KF as vpx_sys::vpx_enc_frame_flags_t
        } else {
            0
        };
        let pts = self.frames;
        self.frames += 1;
        let mut key = false;
        let mut wrote = false;
        // SAFETY: the image only borrows the planes for this call (libvpx
        // copies what it keeps: no look-ahead, g_lag_in_frames = 0); their
        // sizes were checked against the strides above. Output packets are
        // copied out before the next libvpx call on this context.
        unsafe {
            let mut img: vpx_image_t = MaybeUninit::zeroed().assume_init();
            let wrapped = vpx_img_wrap(
                &mut img,
                vpx_img_fmt::VPX_IMG_FMT_I420,
                self.settings.width,
                self.settings.height,
                1,
                // Any non-null pointer: the planes are set one by one below.
                pic.y.as_ptr() as *mut u8,
            );
            if wrapped.is_null() {
                return Err(EncoderError::Libvpx("vpx_img_wrap failed".into()));
            }
            img.planes[0] = pic.y.as_ptr() as *mut u8;
            img.planes[1] = pic.u.as_ptr() as *mut u8;
            img.planes[2] = pic.v.as_ptr() as *mut u8;
            img.stride[0] = pic.strides.0 as c_int;
            img.stride[1] = pic.strides.1 as c_int;
            img.stride[2] = pic.strides.2 as c_int;
            let err = vpx_codec_encode(
                &mut *self.ctx,
                &img,
                pts,
                1,
                flags,
                VPX_DL_REALTIME as c_ulong,
            );
            check(err, Some(&mut self.ctx))?;
            let mut iter = ptr::null();
            loop {
                let pkt = vpx_codec_get_cx_data(&mut *self.ctx, &mut iter);
                if pkt.is_null() {
                    break;
                }
                if (*pkt).kind != VPX_CODEC_CX_FRAME_PKT {
                    continue;
                }
                let f = &(*pkt).data.frame;
                if f.sz > 0 && !f.buf.is_null() {
                    out.extend_from_slice(std::slice::from_raw_parts(
                        f.buf as *const u8,
                        f.sz as usize,
                    ));
                    wrote = true;
                    key |= f.flags & VPX_FRAME_IS_KEY != 0;
                }
            }
        }
        Ok(match (wrote, key) {
            (false, _) => Encoded::Skipped,
            (true, true) => Encoded::Keyframe,
            (true, false) => Encoded::Delta,
        })
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed once.
        unsafe {
            vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

/// libvpx's result as an error naming what it said.
///
/// SAFETY: `ctx`, when given, is an initialised context.
unsafe fn check(
    err: vpx_codec_err_t,
    ctx: Option<&mut Box<vpx_codec_ctx_t>>,
) -> Result<(), EncoderError> {
    if err == VPX_CODEC_OK {
        return Ok(());
    }
    let detail = ctx
        .map(|c| vpx_codec_error_detail(&mut **c))
        .filter(|p| !p.is_null())
        .map(|p| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned());
    Err(EncoderError::Libvpx(match detail {
        Some(d) => format!("{err:?}: {d}"),
        None => format!("{err:?}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::TestPattern;

    fn settings(width: u32, height: u32) -> EncoderSettings {
        EncoderSettings {
            width,
            height,
            fps: 30,
            bitrate_bps: 600_000,
            threads: 1,
        }
    }

    #[test]
    fn first_frame_is_a_keyframe_and_forced_keyframes_come_on_demand() {
        let mut pattern = TestPattern::new(320, 180).unwrap();
        let mut enc = Vp8Encoder::new(settings(320, 180)).unwrap();
        let mut kinds = Vec::new();
        for i in 0..10 {
            let mut out = Vec::new();
            let kind = enc.encode(&pattern.render(i, 0), i == 6, &mut out).unwrap();
            if kind != Encoded::Skipped {
                // A VP8 frame tag: bit 0 clear on a keyframe, whose start code follows at 3..6.
                let is_key = out[0] & 1 == 0;
                assert_eq!(is_key, kind == Encoded::Keyframe, "frame {i}");
                if is_key {
                    assert_eq!(&out[3..6], &[0x9d, 0x01, 0x2a], "frame {i}");
                }
            }
            kinds.push(kind);
        }
        assert_eq!(kinds[0], Encoded::Keyframe);
        assert_eq!(kinds[6], Encoded::Keyframe);
        let keys = kinds.iter().filter(|k| **k == Encoded::Keyframe).count();
        assert_eq!(keys, 2, "{kinds:?}");
    }

    #[test]
    fn a_picture_of_the_wrong_size_is_an_error() {
        let mut pattern = TestPattern::new(320, 180).unwrap();
        let mut enc = Vp8Encoder::new(settings(640, 360)).unwrap();
        let err = enc
            .encode(&pattern.render(0, 0), false, &mut Vec::new())
            .unwrap_err();
        assert!(matches!(err, EncoderError::WrongSize { .. }), "{err}");
        assert!(Vp8Encoder::new(settings(321, 180)).is_err());
    }
}
