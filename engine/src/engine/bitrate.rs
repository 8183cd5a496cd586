//! Each viewer's bandwidth estimate, and what it asks of its avatar's encoder.
//!
//! str0m runs Google congestion control per session on the viewer's
//! transport-cc feedback (REMB stands in for a peer without it). One encoder
//! feeds every viewer of an avatar in a codec, so the estimate can drive it
//! only when that viewer is alone (the common one-student-one-tutor session):
//! then the encoder is capped at the estimate less headroom. With several
//! viewers the encoder keeps its configured bitrate, so one viewer's thin link
//! never lowers another's picture.

use super::*;

/// The share of a viewer's estimate the video may take. The rest is headroom
/// for audio (~32 kbit/s), RTX resends and packet overhead, and for Google
/// congestion control's sawtooth: with the encoder below the estimate the
/// estimator is application-limited and climbs ~20-40 % above the link before
/// queueing delay pulls it back. Measured on a 1 Mbit/s tbf link with busy
/// 720p (`portcast-bench glass`, portcast-capped): 0.85 gave glass-to-glass
/// p95 325-1079 ms with freezes; 0.7 gave 30 fps with p95 45-603 ms over four
/// runs (docs/design-notes.md, Bandwidth estimation).
const VIDEO_SHARE: f64 = 0.7;

/// A cap is re-sent only when it moves by this fraction or more: an encoder
/// retuned on every feedback packet would gain nothing.
const CAP_STEP: f64 = 0.05;

/// The most a lone viewer's encoder cap may rise at once, as a factor of
/// the cap sent, and how long after the last rise the next may come: the cap
/// falls with the estimate at once but climbs in steps of at most ~42 % a
/// second (2500 from 550 kbit/s in ~4.4 s; 500 ms until stop 39, when a
/// lifted link's climb from ~400 kbit/s took 6.5 s of its 10; with 400 ms,
/// 2 freezes in 10 capped minutes against 7 in 12: docs/design-notes.md).
/// A probe, or str0m's start-up probes, through a token bucket's burst lift
/// the estimate 2-3x within ~0.8 s (measured on a 1 Mbit/s tbf link: cap
/// 706 -> 1635 and 773 -> 1843 kbit/s, each a glass-to-glass spike of
/// 300-450 ms), and it stays there for seconds while the encoder sends less
/// than the link carries: only the encoder's own rate, climbing, finds the
/// limit again. Taking the estimate whole once it
/// held 1.5 s brought a lifted link back in 4.4-7.4 s instead of 10-11.8 s
/// but froze on the capped link (6 freezes in 10 min against 0 in 10:
/// docs/design-notes.md).
const CAP_RISE: f64 = 1.15;
const CAP_RISE_EVERY: Duration = Duration::from_millis(400);

/// How often one viewer's estimate is recorded in the histogram.
const OBSERVE_EVERY: Duration = Duration::from_secs(1);

/// How often a viewer whose estimate is below what it could use is probed
/// for more (see [`Engine::estimate_changed`]). 2 s brought a lifted cap back
/// sooner (3.6-5.1 s against 4.4 s to over 30 s) but, before the cap climbed
/// in steps, let a probe through a token bucket's burst lift the estimate 3x
/// above a 600 kbit/s link, with freezes (docs/design-notes.md). Until stop
/// 38 a lone viewer's probes that gained nothing came ever less often (up to
/// 30 s apart), from when each probe's leap of the estimate was a leap of the
/// encoder. Since the cap climbs in steps a probe moves the encoder by one
/// step at most, and the wait for the next probe is most of what a lifted
/// link waits before its climb: 3 s brought a lifted 1 Mbit/s tbf link back
/// to 2.5 Mbit/s within 10 s in 11 of 13 runs (4.1-10.2 s) against 4 of 7
/// (4.1-14.8 s) with 5 s, and the capped link's 60 s windows varied as much
/// as before (stop 39, docs/design-notes.md).
const PROBE_EVERY: Duration = Duration::from_secs(3);

/// How long str0m's desired bitrate stays lowered before it is raised again
/// (the rise starts the probe): str0m's probe controller must see the lower
/// value at one of its timeouts in between.
const PROBE_LOWERED_FOR: Duration = Duration::from_millis(100);

/// How often a viewer that needs no probe is looked at again.
const PROBE_RECHECK: Duration = Duration::from_secs(1);

impl Engine {
    /// A session's estimate changed: record it, and move its avatar's cap.
    pub(super) fn estimate_changed(&mut self, now: Instant, key: SessionKey) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if let Some(bps) = s.estimate_bps {
            if s.estimate_observed
                .is_none_or(|t| now.saturating_duration_since(t) >= OBSERVE_EVERY)
            {
                s.estimate_observed = Some(now);
                self.stats.viewer_estimates.observe(f64::from(bps));
            }
        }
        let (avatar, codec) = (s.avatar.clone(), s.codec);
        self.choose_rendition(now, key);
        self.probe_for_more(now, key);
        self.update_video_cap(now, &avatar, codec);
    }

    /// Asks str0m for an allocation probe when a lone viewer's estimate keeps
    /// its encoder under the most it could send, or one sharing its avatar
    /// short of the next rendition up, every [`PROBE_EVERY`].
    /// Called on each estimate event and, through `probe_check_at`, from any
    /// drain once its time comes: a loss-limited estimate can hold still for
    /// many seconds and send no event (measured: the lift bench then waited
    /// for str0m's own 15 s stagnation probe).
    ///
    /// An encoder capped at 70 % of the estimate is application-limited but
    /// above the 65 % where Google congestion control's periodic ALR probes
    /// start, and the rate controller grows the estimate by at most 1.5x what
    /// is sent, so a link that recovers from 1 to 5 Mbit/s would take tens of
    /// seconds to be used again (str0m's own stagnation probe waits 15 s).
    /// str0m probes when the desired bitrate rises above the estimate between
    /// two of its timeouts (congestion gates still apply), at up to twice the
    /// estimate, and a probe that succeeds chains into exponential probes: so
    /// the desired bitrate is lowered, and raised again [`PROBE_LOWERED_FOR`]
    /// later.
    pub(super) fn probe_for_more(&mut self, now: Instant, key: SessionKey) {
        let Some(b) = self.config.bandwidth_estimation else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        // What to probe for: a lone viewer, the most its encoder may send;
        // one sharing its avatar, the next rendition up, or on rendition 0
        // rendition 0 itself (an estimate whose start-up probes failed
        // climbs ~8 % a second: e2e `r` once moved its uncapped viewer off
        // rendition 0 at 1.2 Mbit/s, 2 s after it joined, for 10 s).
        let Some(a) = self.avatars.get(&s.avatar) else {
            return;
        };
        let alone = a.codec_viewers(s.codec) == 1;
        let aim = if alone {
            Some(b.max_bps)
        } else {
            let up = s.rendition.saturating_sub(1);
            Some(a.video[s.codec.index()][usize::from(up)].bitrate_bps).filter(|bps| *bps > 0)
        };
        let desired = estimate_for(aim.unwrap_or(b.max_bps));
        if s.probe_lowered {
            if s.probe_check_at.is_some_and(|t| now < t) {
                return;
            }
            s.probe_lowered = false;
            s.probe_check_at = Some(now + PROBE_RECHECK);
            s.rtc
                .bwe()
                .set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
            return;
        }
        let short = s.estimate_bps.is_some_and(|e| u64::from(e) < desired);
        let due = s
            .probe_asked
            .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_EVERY);
        if aim.is_some() && short && due && s.phase == Phase::Streaming {
            s.probe_asked = Some(now);
            self.stats.bandwidth_probes.inc();
            s.probe_lowered = true;
            s.probe_check_at = Some(now + PROBE_LOWERED_FOR);
            let lowered = desired * 9 / 10;
            s.rtc
                .bwe()
                .set_bitrate(Bitrate::ZERO, Bitrate::bps(lowered));
        } else {
            s.probe_check_at = Some(now + PROBE_RECHECK);
        }
    }

    /// Emits [`Output::VideoBitrate`] when the cap of `avatar`'s `codec` encoder
    /// moved: its one viewer's estimate less headroom, or none.
    ///
    /// The cap falls at once and rises by at most [`CAP_RISE`] each
    /// [`CAP_RISE_EVERY`]; while it is held below the estimate's, the viewer
    /// is looked at again when the next rise may come (`probe_check_at`).
    pub(super) fn update_video_cap(&mut self, now: Instant, avatar: &AvatarId, codec: VideoCodec) {
        let Some(a) = self.avatars.get_mut(avatar) else {
            return;
        };
        let alone = a.codec_viewers(codec) == 1;
        let t = a.track(codec);
        let only = match t.viewers.as_slice() {
            [only] if alone => Some(*only),
            _ => None,
        };
        let wanted = only
            .and_then(|k| self.sessions.get(&k))
            .and_then(|s| s.estimate_bps)
            .map(video_cap);
        let (cap, held) = match (t.cap_sent, wanted) {
            (Some(old), Some(new)) if new > old => {
                let may_rise = t
                    .cap_rose_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= CAP_RISE_EVERY);
                let most = if may_rise {
                    (f64::from(old) * CAP_RISE) as u32
                } else {
                    old
                };
                (Some(new.min(most)), new > most)
            }
            _ => (wanted, false),
        };
        if held {
            // Looked at again when the next step may come (a held estimate sends no event).
            let next = t
                .cap_rose_at
                .map(|at| at + CAP_RISE_EVERY)
                .filter(|at| *at > now)
                .unwrap_or(now + CAP_RISE_EVERY);
            // A probe's lowered desired bitrate keeps its own, earlier, check.
            if let Some(s) = only
                .and_then(|k| self.sessions.get_mut(&k))
                .filter(|s| !s.probe_lowered)
            {
                s.probe_check_at = Some(s.probe_check_at.map_or(next, |t| t.min(next)));
            }
        }
        let moved = match (t.cap_sent, cap) {
            (Some(old), Some(new)) => f64::from(old.abs_diff(new)) >= f64::from(old) * CAP_STEP,
            (old, new) => old != new,
        };
        if moved {
            if let (Some(old), Some(new)) = (t.cap_sent, cap) {
                if new > old {
                    t.cap_rose_at = Some(now);
                }
            }
            log::debug!(
                "avatar {avatar} {codec}: encoder cap {}",
                cap.map_or_else(|| "off".to_string(), |c| format!("{} kbit/s", c / 1000))
            );
            t.cap_sent = cap;
            self.out.push_back(Output::VideoBitrate {
                avatar: avatar.clone(),
                codec,
                cap_bps: cap,
            });
        }
    }
}

/// The estimate a viewer needs for its encoder to run at `video_bps`: what
/// probing aims at (str0m's "desired" bitrate).
pub(super) fn estimate_for(video_bps: u32) -> u64 {
    (f64::from(video_bps) / VIDEO_SHARE) as u64
}

/// The video bitrate a viewer estimated at `estimate_bps` can take.
pub(super) fn video_cap(estimate_bps: u32) -> u32 {
    (f64::from(estimate_bps) * VIDEO_SHARE) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_headroom_under_the_estimate() {
        assert_eq!(video_cap(1_000_000), 700_000);
        // Probing aims at an estimate whose cap is the whole configured bitrate.
        assert!(video_cap(estimate_for(2_500_000) as u32) >= 2_499_999);
        assert_eq!(video_cap(0), 0);
        assert!(video_cap(u32::MAX) < u32::MAX);
    }
}
