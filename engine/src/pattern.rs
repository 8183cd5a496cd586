//! The built-in test-pattern avatar: a moving picture that proves video flows.
//!
//! Each frame has colour bars, a box that moves with the frame number, the frame
//! number and wall-clock time in large digits, and both again as bands of
//! black/white blocks that survive H.264 compression: the frame number along
//! the top, the capture clock (Unix milliseconds, modulo 2^24) along the
//! bottom. A test reads which frame arrived; a viewer on the same clock (the
//! viewer page) reads when it was made, so capture-to-display latency.

/// Number of blocks in the machine-readable band.
const CODE_BLOCKS: usize = 32;
/// Bits of the value in a band (frame counter or clock); the other 8 are a check byte.
const COUNTER_BITS: u32 = 24;
/// The capture clock band carries Unix milliseconds modulo this (~4.7 hours).
pub const CLOCK_MODULUS_MS: u64 = 1 << COUNTER_BITS;

/// Smallest picture the pattern (and its readable code) supports.
pub const MIN_WIDTH: usize = 128;
/// Smallest picture height the pattern supports.
pub const MIN_HEIGHT: usize = 64;

/// Renders frames of the test pattern into a reused I420 buffer.
#[derive(Debug, Clone)]
pub struct TestPattern {
    width: usize,
    height: usize,
    frame: Vec<u8>,
    busy: bool,
    flash: bool,
}

/// A planar 4:2:0 picture borrowed from a renderer or decoder.
#[derive(Debug, Clone, Copy)]
pub struct I420<'a> {
    /// Luma plane.
    pub y: &'a [u8],
    /// Blue-difference plane.
    pub u: &'a [u8],
    /// Red-difference plane.
    pub v: &'a [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes per row of (y, u, v).
    pub strides: (usize, usize, usize),
}

// (Y, U, V) of 75% colour bars: white, yellow, cyan, green, magenta, red, blue.
const BARS: [(u8, u8, u8); 7] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
];

impl TestPattern {
    /// A renderer for `width` x `height` (both even, at least 128x64).
    pub fn new(width: usize, height: usize) -> Option<Self> {
        if width < MIN_WIDTH || height < MIN_HEIGHT || width % 2 != 0 || height % 2 != 0 {
            return None;
        }
        Some(TestPattern {
            width,
            height,
            frame: vec![0; width * height * 3 / 2],
            busy: false,
            flash: false,
        })
    }

    /// With `busy`, a corner of the picture is fresh noise every frame, so the
    /// encoder spends about its whole bitrate as on real video (benchmarks);
    /// the plain pattern compresses to a few hundred kbit/s.
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    /// With `flash`, the next pictures show a white patch on their right
    /// quarter (see [`crate::audio::flashing`]: the source sets it in step
    /// with its beep).
    pub fn set_flash(&mut self, flash: bool) {
        self.flash = flash;
    }

    /// Picture width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Picture height.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Draws frame `index`, stamped with `clock_ms` (milliseconds since midnight), and returns it.
    pub fn render(&mut self, index: u64, clock_ms: u64) -> I420<'_> {
        let (w, h) = (self.width, self.height);
        let (luma, chroma) = self.frame.split_at_mut(w * h);
        let (u, v) = chroma.split_at_mut(w * h / 4);
        let band = band_height(h);
        // Colour bars.
        for y in band..h {
            let row = &mut luma[y * w..(y + 1) * w];
            for (x, px) in row.iter_mut().enumerate() {
                *px = BARS[x * 7 / w].0;
            }
        }
        for cy in band / 2..h / 2 {
            for cx in 0..w / 2 {
                let bar = BARS[cx * 2 * 7 / w];
                u[cy * w / 2 + cx] = bar.1;
                v[cy * w / 2 + cx] = bar.2;
            }
        }
        // The moving box: crosses the picture in about four seconds at 30 fps.
        let size = (h / 4).max(8) & !1;
        let span = (w - size) as u64;
        let step = (span / 120).max(1);
        let pos = (index * step) % (2 * span);
        let bx = if pos < span { pos } else { 2 * span - pos } as usize & !1;
        let by = (h * 5 / 8).min(h - size) & !1;
        fill(luma, w, bx, by, size, size, 235);
        fill(
            luma,
            w,
            bx + size / 4,
            by + size / 4,
            size / 2,
            size / 2,
            16,
        );
        fill(u, w / 2, bx / 2, by / 2, size / 2, size / 2, 128);
        fill(v, w / 2, bx / 2, by / 2, size / 2, size / 2, 128);
        if self.busy {
            let mut seed = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            // Low-amplitude noise over a sixteenth of the picture: about what
            // a talking head costs an encoder at 1-3 Mbit/s, without making
            // rate control skip frames as full-range noise would.
            for y in h * 3 / 4..h {
                for px in &mut luma[y * w..y * w + w / 4] {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *px = 112 + (seed % 32) as u8;
                }
            }
        }
        if self.flash {
            let (x, y, pw, ph) = flash_patch(w, h);
            fill(luma, w, x, y, pw, ph, 235);
            fill(u, w / 2, x / 2, y / 2, pw / 2, ph / 2, 128);
            fill(v, w / 2, x / 2, y / 2, pw / 2, ph / 2, 128);
        }
        // The code bands: frame counter on top, capture clock at the bottom.
        draw_band(luma, u, v, w, 0, band, encode_code(index));
        draw_band(luma, u, v, w, h - band, band, encode_code(clock_ms));
        // Human-readable frame number and clock on a dark strip.
        let scale = (h / 120).max(1);
        let text_h = 7 * scale;
        let strip_y = band + 2 * scale;
        let strip_h = 2 * text_h + 6 * scale;
        if strip_y + strip_h < h {
            fill(luma, w, 0, strip_y, w, strip_h, 16);
            fill(u, w / 2, 0, strip_y / 2, w / 2, strip_h.div_ceil(2), 128);
            fill(v, w / 2, 0, strip_y / 2, w / 2, strip_h.div_ceil(2), 128);
            let frame_text = format!("FRAME {index:08}");
            draw_text(luma, w, 2 * scale, strip_y + 2 * scale, scale, &frame_text);
            let ms = clock_ms % 86_400_000;
            let clock = format!(
                "{:02}:{:02}:{:02}.{:03}",
                ms / 3_600_000,
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000
            );
            draw_text(
                luma,
                w,
                2 * scale,
                strip_y + 4 * scale + text_h,
                scale,
                &clock,
            );
        }
        I420 {
            y: luma,
            u,
            v,
            width: w,
            height: h,
            strides: (w, w / 2, w / 2),
        }
    }
}

/// Where the flash patch is: (x, y, width, height), all even: the right
/// quarter, from a third to a half of the height (clear of the text, the
/// bands and the moving box).
fn flash_patch(w: usize, h: usize) -> (usize, usize, usize, usize) {
    let x = (w * 3 / 4) & !1;
    let y = (h / 3) & !1;
    (x, y, (w - x) & !1, ((h / 2) & !1) - y)
}

/// Whether a decoded picture shows the flash patch (its middle is near white;
/// the colour bar under it is dark blue).
pub fn shows_flash(pic: &I420<'_>) -> bool {
    let (x, y, pw, ph) = flash_patch(pic.width, pic.height);
    let (mut sum, mut n) = (0u64, 0u64);
    for row in y + ph / 4..y + ph * 3 / 4 {
        let start = row * pic.strides.0;
        for px in &pic.y[start + x + pw / 4..start + x + pw * 3 / 4] {
            sum += u64::from(*px);
            n += 1;
        }
    }
    n > 0 && sum / n > 200
}

/// Reads the frame number from a decoded picture's code band; `None` if the band is not intact.
pub fn read_frame_counter(pic: &I420<'_>) -> Option<u64> {
    read_band(pic, false)
}

/// Reads the capture clock (Unix ms modulo [`CLOCK_MODULUS_MS`]) from the bottom band.
pub fn read_capture_clock(pic: &I420<'_>) -> Option<u64> {
    read_band(pic, true)
}

fn read_band(pic: &I420<'_>, bottom: bool) -> Option<u64> {
    let (w, h) = (pic.width, pic.height);
    if w < MIN_WIDTH || h < MIN_HEIGHT {
        return None;
    }
    let band = band_height(h);
    let top = if bottom { h - band } else { 0 };
    let bw = w / CODE_BLOCKS;
    let mut code: u32 = 0;
    for bit in 0..CODE_BLOCKS {
        // Average the middle half of the block, away from its edges.
        let (x0, x1) = (bit * bw + bw / 4, bit * bw + bw * 3 / 4);
        let (y0, y1) = (top + band / 4, top + band * 3 / 4);
        let mut sum = 0u32;
        let mut n = 0u32;
        for y in y0..y1 {
            let row = pic.y.get(y * pic.strides.0..)?;
            for x in x0..x1 {
                sum += u32::from(*row.get(x)?);
                n += 1;
            }
        }
        code = code << 1 | u32::from(n > 0 && sum / n > 128);
    }
    decode_code(code)
}

/// One band of [`CODE_BLOCKS`] black/white blocks carrying `code`, rows `top..top + band`.
fn draw_band(
    luma: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
    w: usize,
    top: usize,
    band: usize,
    code: u32,
) {
    let bw = w / CODE_BLOCKS;
    for bit in 0..CODE_BLOCKS {
        let on = code >> (CODE_BLOCKS - 1 - bit) & 1 == 1;
        fill(luma, w, bit * bw, top, bw, band, if on { 235 } else { 16 });
    }
    fill(
        luma,
        w,
        CODE_BLOCKS * bw,
        top,
        w - CODE_BLOCKS * bw,
        band,
        16,
    );
    fill(u, w / 2, 0, top / 2, w / 2, band / 2, 128);
    fill(v, w / 2, 0, top / 2, w / 2, band / 2, 128);
}

fn band_height(h: usize) -> usize {
    ((h / 22) & !1).max(8)
}

fn check_byte(counter: u32) -> u32 {
    (counter ^ counter >> 8 ^ counter >> 16 ^ 0xA5) & 0xFF
}

fn encode_code(value: u64) -> u32 {
    let c = (value % (1 << COUNTER_BITS)) as u32;
    c << 8 | check_byte(c)
}

fn decode_code(code: u32) -> Option<u64> {
    let c = code >> 8;
    (check_byte(c) == code & 0xFF).then_some(u64::from(c))
}

fn fill(plane: &mut [u8], stride: usize, x: usize, y: usize, w: usize, h: usize, value: u8) {
    let rows = plane.len() / stride.max(1);
    for row in y..(y + h).min(rows) {
        let start = row * stride + x.min(stride);
        let end = row * stride + (x + w).min(stride);
        plane[start..end].fill(value);
    }
}

fn draw_text(luma: &mut [u8], stride: usize, x: usize, y: usize, scale: usize, text: &str) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = glyph(ch);
        let gx = x + i * 6 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..5 {
                if bits >> (4 - col) & 1 == 1 {
                    fill(
                        luma,
                        stride,
                        gx + col * scale,
                        y + row * scale,
                        scale,
                        scale,
                        235,
                    );
                }
            }
        }
    }
}

fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        _ => [0; 7],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_reads_back_from_the_rendered_picture() {
        for (w, h) in [(1280, 720), (640, 360), (128, 64)] {
            let mut p = TestPattern::new(w, h).unwrap();
            for index in [0u64, 1, 29, 12345, (1 << 24) + 7] {
                let pic = p.render(index, 45_296_789);
                assert_eq!(
                    read_frame_counter(&pic),
                    Some(index % (1 << 24)),
                    "{w}x{h} #{index}"
                );
            }
        }
    }

    #[test]
    fn capture_clock_reads_back_from_the_bottom_band() {
        for (w, h) in [(1280, 720), (640, 360), (128, 64)] {
            let mut p = TestPattern::new(w, h).unwrap();
            p.set_busy(true); // the noise corner reaches the bottom rows
            for clock in [0u64, 999, 1_764_806_400_123] {
                let pic = p.render(42, clock);
                assert_eq!(
                    read_capture_clock(&pic),
                    Some(clock % CLOCK_MODULUS_MS),
                    "{w}x{h} at {clock}"
                );
                assert_eq!(read_frame_counter(&pic), Some(42));
            }
        }
    }

    #[test]
    fn damaged_band_is_not_misread() {
        let mut p = TestPattern::new(640, 360).unwrap();
        let pic = p.render(777, 0);
        let mut y = pic.y.to_vec();
        // Invert the whole first block of the band (16 rows at 360p).
        for row in 0..band_height(360) {
            for x in 0..20 {
                y[row * 640 + x] = 255 - y[row * 640 + x];
            }
        }
        let damaged = I420 { y: &y, ..pic };
        assert_eq!(read_frame_counter(&damaged), None);
    }

    #[test]
    fn the_box_moves_between_frames() {
        let mut p = TestPattern::new(640, 360).unwrap();
        let a = p.render(0, 0).y.to_vec();
        let b = p.render(10, 0).y.to_vec();
        let band_end = band_height(360) * 640;
        let differing = a[band_end..]
            .iter()
            .zip(&b[band_end..])
            .filter(|(x, y)| x != y)
            .count();
        assert!(differing > 1000, "only {differing} pixels changed");
    }

    #[test]
    fn the_flash_patch_shows_only_when_set() {
        let mut p = TestPattern::new(320, 180).unwrap();
        assert!(!shows_flash(&p.render(0, 0)));
        p.set_flash(true);
        let pic = p.render(1, 0);
        assert!(shows_flash(&pic));
        // The code bands survive the patch.
        assert_eq!(read_frame_counter(&pic), Some(1));
        // The moving box never reaches it.
        p.set_flash(false);
        assert!((0..240).all(|i| !shows_flash(&p.render(i, 0))));
    }

    #[test]
    fn odd_or_tiny_sizes_are_refused() {
        assert!(TestPattern::new(641, 360).is_none());
        assert!(TestPattern::new(64, 64).is_none());
    }
}
