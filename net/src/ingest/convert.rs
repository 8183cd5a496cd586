//! Packed RGB24 / BGRA pictures to planar I420, on the renderer's encoder thread.
//!
//! BT.601 limited range, the colour space a decoder assumes for an H.264
//! stream without colour information (openh264 writes none). The conversion
//! is the `yuv` crate's (SIMD); `portcast-bench convert` measures it against
//! the plain loop kept below as [`rgb_to_i420_reference`], which the tests
//! also use as the oracle.

use yuv::{BufferStoreMut, YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix};

use super::wire::PixelFormat;

/// An I420 picture owned by the encoder thread, reused frame after frame.
#[derive(Debug, Default)]
pub struct I420Buffer {
    /// Y, then U, then V, tightly packed.
    pub data: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl I420Buffer {
    /// Sizes the buffer for a `width` x `height` picture and returns its Y, U
    /// and V planes to write into.
    fn planes_mut(&mut self, width: usize, height: usize) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = width * height;
        self.data.resize(luma + luma / 2, 0);
        self.width = width;
        self.height = height;
        let (y, chroma) = self.data.split_at_mut(luma);
        let (u, v) = chroma.split_at_mut(luma / 4);
        (y, u, v)
    }

    /// A borrowed view for the encoder.
    pub fn view(&self) -> portcast_engine::pattern::I420<'_> {
        i420_view(&self.data, self.width, self.height)
    }
}

/// Views tightly packed I420 bytes (`data` must hold `w*h*3/2`; shorter input gives empty planes).
pub fn i420_view(data: &[u8], width: usize, height: usize) -> portcast_engine::pattern::I420<'_> {
    let luma = width * height;
    let chroma = luma / 4;
    let y = data.get(..luma).unwrap_or(&[]);
    let u = data.get(luma..luma + chroma).unwrap_or(&[]);
    let v = data.get(luma + chroma..luma + 2 * chroma).unwrap_or(&[]);
    portcast_engine::pattern::I420 {
        y,
        u,
        v,
        width,
        height,
        strides: (width, width / 2, width / 2),
    }
}

/// Converts a packed RGB24 or BGRA picture (tightly packed rows) into `out`.
///
/// `width` and `height` are even and `src` holds exactly one picture: the
/// reader thread checked both against the announced format.
pub fn packed_to_i420(
    format: PixelFormat,
    src: &[u8],
    width: usize,
    height: usize,
    out: &mut I420Buffer,
) -> Result<(), String> {
    let (y, u, v) = out.planes_mut(width, height);
    let mut planar = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: width as u32,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: (width / 2) as u32,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: (width / 2) as u32,
        width: width as u32,
        height: height as u32,
    };
    let (range, matrix, mode) = (
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    );
    let result = match format {
        PixelFormat::Rgb24 => {
            yuv::rgb_to_yuv420(&mut planar, src, (width * 3) as u32, range, matrix, mode)
        }
        PixelFormat::Bgra => {
            yuv::bgra_to_yuv420(&mut planar, src, (width * 4) as u32, range, matrix, mode)
        }
        PixelFormat::I420 | PixelFormat::H264 => {
            return Err(format!("{} is not a packed RGB format", format.name()))
        }
    };
    result.map_err(|e| e.to_string())
}

/// The plain loop: BT.601 limited range in 8.8 fixed point, chroma from the 2x2 average.
///
/// Kept as the reference the crate's output is checked against, and as the
/// baseline `portcast-bench convert` measures.
pub fn rgb_to_i420_reference(
    format: PixelFormat,
    src: &[u8],
    width: usize,
    height: usize,
    out: &mut I420Buffer,
) {
    let (bpp, ri, gi, bi) = match format {
        PixelFormat::Bgra => (4, 2, 1, 0),
        _ => (3, 0, 1, 2),
    };
    let (y, u, v) = out.planes_mut(width, height);
    let px = |x: usize, row: usize| -> (i32, i32, i32) {
        let o = (row * width + x) * bpp;
        match src.get(o..o + bpp) {
            Some(p) => (i32::from(p[ri]), i32::from(p[gi]), i32::from(p[bi])),
            None => (0, 0, 0),
        }
    };
    for row in 0..height {
        for x in 0..width {
            let (r, g, b) = px(x, row);
            y[row * width + x] =
                ((66 * r + 129 * g + 25 * b + 128) >> 8).clamp(-16, 239) as u8 + 16;
        }
    }
    for cy in 0..height / 2 {
        for cx in 0..width / 2 {
            let (mut r, mut g, mut b) = (0, 0, 0);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = px(cx * 2 + dx, cy * 2 + dy);
                r += p.0;
                g += p.1;
                b += p.2;
            }
            let (r, g, b) = (r / 4, g / 4, b / 4);
            let i = cy * (width / 2) + cx;
            u[i] = (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128).clamp(0, 255) as u8;
            v[i] = (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128).clamp(0, 255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(width: usize, height: usize, bpp: usize) -> Vec<u8> {
        (0..width * height * bpp)
            .map(|i| ((i * 7 + i / (width * bpp) * 13) % 256) as u8)
            .collect()
    }

    #[test]
    fn crate_conversion_matches_the_reference_loop_within_rounding() {
        for format in [PixelFormat::Rgb24, PixelFormat::Bgra] {
            let bpp = if format == PixelFormat::Bgra { 4 } else { 3 };
            let src = picture(64, 32, bpp);
            let (mut a, mut b) = (I420Buffer::default(), I420Buffer::default());
            packed_to_i420(format, &src, 64, 32, &mut a).unwrap();
            rgb_to_i420_reference(format, &src, 64, 32, &mut b);
            let worst = a
                .data
                .iter()
                .zip(&b.data)
                .map(|(x, y)| x.abs_diff(*y))
                .max()
                .unwrap();
            assert!(worst <= 3, "{format:?}: differs by up to {worst}");
        }
    }

    #[test]
    fn pure_colours_land_on_their_bt601_values() {
        let mut out = I420Buffer::default();
        let white = vec![255u8; 16 * 16 * 3];
        packed_to_i420(PixelFormat::Rgb24, &white, 16, 16, &mut out).unwrap();
        assert!(out.data[..256].iter().all(|y| (234..=236).contains(y)));
        let red_bgra: Vec<u8> = [0u8, 0, 255, 255].repeat(16 * 16);
        packed_to_i420(PixelFormat::Bgra, &red_bgra, 16, 16, &mut out).unwrap();
        let v = out.view();
        assert!((80..=82).contains(&v.y[0]), "red Y {}", v.y[0]);
        assert!((239..=241).contains(&v.v[0]), "red V {}", v.v[0]);
    }
}
