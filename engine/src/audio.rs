//! The avatar's voice: Opus encoding (libopus through the `opus` crate) and the
//! built-in test pattern's beep.
//!
//! The test pattern flashes a patch of its picture for [`FLASH`] at the start
//! of every second of its source clock and beeps for exactly that time, so
//! anyone can measure the offset between picture and sound at a viewer: both
//! start at the same instant of the one clock that drives the video and the
//! audio RTP timestamps.

use std::time::Duration;

/// Audio sample rate on the wire (Opus in WebRTC is always 48 kHz).
pub const SAMPLE_RATE: u32 = 48_000;
/// How often the test pattern flashes and beeps.
pub const FLASH_PERIOD: Duration = Duration::from_secs(1);
/// How long each flash and beep lasts.
pub const FLASH: Duration = Duration::from_millis(100);
/// Pitch of the beep.
const BEEP_HZ: f64 = 1000.0;
/// Peak of the beep: -12 dBFS.
const BEEP_AMPLITUDE: f64 = 8192.0;

/// Whether the test pattern shows its flash (and sounds its beep) at `at` on its source clock.
pub fn flashing(at: Duration) -> bool {
    at.as_nanos() % FLASH_PERIOD.as_nanos() < FLASH.as_nanos()
}

/// Fills `out` with the test pattern's sound from sample `first` of its
/// source clock on (48 kHz mono): a 1 kHz beep while [`flashing`], else silence.
pub fn beep(first: u64, out: &mut [i16]) {
    let period = u64::from(SAMPLE_RATE) * FLASH_PERIOD.as_millis() as u64 / 1000;
    let on = u64::from(SAMPLE_RATE) * FLASH.as_millis() as u64 / 1000;
    for (i, s) in out.iter_mut().enumerate() {
        let n = first + i as u64;
        *s = if n % period < on {
            let t = (n % period) as f64 / f64::from(SAMPLE_RATE);
            (BEEP_AMPLITUDE * (2.0 * std::f64::consts::PI * BEEP_HZ * t).sin()) as i16
        } else {
            0
        };
    }
}

/// Samples (at 48 kHz) an Opus packet decodes to, or `None` when it does not parse.
pub fn opus_packet_samples(packet: &[u8]) -> Option<usize> {
    opus::packet::get_nb_samples(packet, SAMPLE_RATE)
        .ok()
        .filter(|n| *n > 0)
}

/// How far ahead of its capture time a voice packet may go out, by default,
/// when it is ready that early (see [`AudioSettings::lead`]).
pub const DEFAULT_AUDIO_LEAD: Duration = Duration::from_millis(60);

/// How an avatar's voice is encoded and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSettings {
    /// Opus bitrate in bit/s.
    pub bitrate_bps: u32,
    /// Duration of one Opus frame (10 or 20 ms).
    pub frame: Duration,
    /// How far ahead of its capture time a packet goes out when its sound is
    /// ready that early (the test pattern's always is; a renderer's when it
    /// sends speech ahead). Its timestamps stay true, so a browser lip-syncs
    /// by delaying the early sound to meet its picture, instead of holding
    /// the picture back until the slower audio path catches up.
    pub lead: Duration,
}

impl Default for AudioSettings {
    fn default() -> Self {
        AudioSettings {
            bitrate_bps: 32_000,
            frame: Duration::from_millis(20),
            lead: DEFAULT_AUDIO_LEAD,
        }
    }
}

impl AudioSettings {
    /// Samples (48 kHz mono) in one frame.
    pub fn frame_samples(&self) -> usize {
        (u128::from(SAMPLE_RATE) * self.frame.as_micros() / 1_000_000) as usize
    }
}

/// A mono 48 kHz Opus encoder for speech, in-band FEC on.
pub struct OpusEncoder {
    inner: opus::Encoder,
    settings: AudioSettings,
    out: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("settings", &self.settings)
            .finish()
    }
}

impl OpusEncoder {
    /// An encoder with `settings`; frames of 10 or 20 ms, 6-510 kbit/s.
    pub fn new(settings: AudioSettings) -> Result<Self, String> {
        let ms = settings.frame.as_millis();
        if settings.frame != Duration::from_millis(ms as u64) || !matches!(ms, 10 | 20) {
            return Err(format!(
                "Opus frames must be 10 or 20 ms, not {:?}",
                settings.frame
            ));
        }
        if !(6_000..=510_000).contains(&settings.bitrate_bps) {
            return Err(format!(
                "Opus bitrate must be 6-510 kbit/s, not {} bit/s",
                settings.bitrate_bps
            ));
        }
        let err = |e: opus::Error| format!("opus: {e}");
        let mut inner =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)
                .map_err(err)?;
        inner
            .set_bitrate(opus::Bitrate::Bits(settings.bitrate_bps as i32))
            .map_err(err)?;
        // In-band FEC only goes out when the encoder expects loss.
        inner.set_inband_fec(true).map_err(err)?;
        inner.set_packet_loss_perc(10).map_err(err)?;
        // Complexity 5 (libwebrtc's setting for mobile) rather than libopus's 10:
        // `portcast-bench ingest --audio` measured chunk-in to packet-sent p50
        // 0.44-0.57 ms at 10 and 0.22-0.40 ms at 5 on this 2-core machine.
        inner.set_complexity(5).map_err(err)?;
        Ok(OpusEncoder {
            inner,
            settings,
            out: vec![0; 1500],
        })
    }

    /// Its settings.
    pub fn settings(&self) -> AudioSettings {
        self.settings
    }

    /// Encodes one frame of `settings().frame_samples()` samples; returns the packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], String> {
        if pcm.len() != self.settings.frame_samples() {
            return Err(format!(
                "an Opus frame is {} samples, not {}",
                self.settings.frame_samples(),
                pcm.len()
            ));
        }
        let n = self
            .inner
            .encode(pcm, &mut self.out)
            .map_err(|e| format!("opus: {e}"))?;
        Ok(&self.out[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_beep_sounds_exactly_while_the_picture_flashes() {
        let mut pcm = vec![0i16; 48_000 * 2];
        beep(0, &mut pcm);
        for (n, s) in pcm.iter().enumerate() {
            let at = Duration::from_nanos(n as u64 * 1_000_000_000 / 48_000);
            if !flashing(at) {
                assert_eq!(*s, 0, "sample {n} sounds outside the flash");
            }
        }
        let loud = |from: usize, to: usize| pcm[from..to].iter().any(|s| s.unsigned_abs() > 4000);
        assert!(
            loud(0, 4800) && loud(48_000, 52_800),
            "beeps at 0 s and 1 s"
        );
        assert!(!loud(4800, 48_000), "silence between");
        // A later chunk continues the same clock.
        let mut chunk = vec![0i16; 960];
        beep(48_000, &mut chunk);
        assert_eq!(chunk, pcm[48_000..48_960]);
    }

    #[test]
    fn frames_encode_to_small_packets_and_bad_settings_are_refused() {
        let mut enc = OpusEncoder::new(AudioSettings::default()).unwrap();
        let mut pcm = vec![0i16; 960];
        beep(0, &mut pcm);
        let n = enc.encode(&pcm).unwrap().len();
        assert!(n > 2 && n < 400, "{n} bytes");
        assert!(enc.encode(&pcm[..100]).unwrap_err().contains("960 samples"));
        let bad = |frame_ms, bitrate_bps| {
            OpusEncoder::new(AudioSettings {
                bitrate_bps,
                frame: Duration::from_millis(frame_ms),
                ..AudioSettings::default()
            })
            .unwrap_err()
        };
        assert!(bad(15, 32_000).contains("10 or 20 ms"));
        assert!(bad(20, 1000).contains("6-510"));
        let ten = AudioSettings {
            frame: Duration::from_millis(10),
            ..AudioSettings::default()
        };
        assert_eq!(ten.frame_samples(), 480);
        assert!(OpusEncoder::new(ten).is_ok());
    }
}
