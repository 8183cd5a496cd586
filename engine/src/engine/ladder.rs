//! The encoding ladder: which rendition of its avatar each viewer receives,
//! and switching a viewer between renditions at a keyframe.
//!
//! An avatar whose source has raw pictures has its own picture (rendition 0)
//! and the lower rungs of [`EngineConfig::ladder`]; each is encoded once, for
//! every viewer that receives it, and only while one does. A viewer alone on
//! its avatar stays on rendition 0, whose encoder its estimate caps
//! ([`Engine::update_video_cap`]). With others watching, each viewer gets the
//! highest rendition whose bitrate fits the share of its estimate video may
//! take: down at once when its estimate falls, up only after the estimate
//! has carried the higher one for [`UP_HOLD`].
//!
//! A switch waits for a keyframe of the target rendition (asked for, rate
//! limited per encoder); until then the viewer keeps its old one. The
//! viewer's RTP stream stays one stream: str0m numbers the packets of the
//! new rendition on from the old one's, and the new rendition's pictures
//! carry the same source clock, so sequence numbers and timestamps run on.

use super::*;

/// How long a viewer's estimate must carry a higher rendition before it
/// switches up: an estimate that just rose may be a probe's overshoot, and a
/// switch up costs a keyframe on a link that may not carry it.
pub(super) const UP_HOLD: Duration = Duration::from_secs(3);

/// How long a viewer's first estimates are not acted on (a viewer alone
/// excepted): the estimator starts from a guess (1 Mbit/s) and needs some
/// feedback before it says what the link carries. Without it a new viewer
/// of a 1.5 Mbit/s avatar moved down at once and took 10 s to come back
/// (e2e `r`).
const SETTLE: Duration = Duration::from_secs(2);

/// The share of a viewer's estimate its rendition may need before it moves
/// down: more than video's share of a new estimate ([`bitrate::video_cap`]),
/// so a viewer does not bounce between two renditions.
const STAY_SHARE: f64 = 0.9;

impl Engine {
    /// The rendition `key` should receive now, from its estimate and its
    /// avatar's viewers; `None` when it should keep what it has (no estimate yet).
    ///
    /// It stays while its rendition's need fits [`STAY_SHARE`] of its
    /// estimate (Google congestion control holds an estimate ~1.5x what an
    /// application-limited sender sends, so a rendition that fits once keeps
    /// fitting until the link congests); it goes down to the highest that
    /// fits that share when it does not; it goes one rendition up when that
    /// one fits the share video may take of a new estimate
    /// ([`bitrate::video_cap`]). A rendition not measured yet (it has not
    /// run lately) needs its encoder's target.
    fn wanted_rendition(&self, now: Instant, key: SessionKey) -> Option<u8> {
        let s = self.sessions.get(&key)?;
        let a = self.avatars.get(&s.avatar)?;
        if a.no_choice(s.codec) {
            return Some(0);
        }
        let estimate = s.estimate_bps?;
        if s.first_frame_at
            .is_none_or(|t| now.saturating_duration_since(t) < SETTLE)
        {
            return None;
        }
        let tracks = &a.video[s.codec.index()][..usize::from(a.renditions())];
        let current = usize::from(s.switch_to.unwrap_or(s.rendition)).min(tracks.len() - 1);
        let stay = (f64::from(estimate) * STAY_SHARE) as u32;
        // Until what its rendition sends is measured (its first second), it stays.
        if tracks[current].measured_bps(now)? > stay {
            let fits = (current + 1..tracks.len()).find(|r| tracks[*r].need_bps(now) <= stay);
            return Some(fits.unwrap_or(tracks.len() - 1) as u8);
        }
        let up = current.checked_sub(1)?;
        if tracks[up].need_bps(now) <= bitrate::video_cap(estimate) {
            return Some(up as u8);
        }
        Some(current as u8)
    }

    /// Moves `key` toward the rendition its estimate carries: down at once,
    /// up after [`UP_HOLD`]. A lone viewer goes back to rendition 0 at once.
    pub(super) fn choose_rendition(&mut self, now: Instant, key: SessionKey) {
        let streaming = self
            .sessions
            .get(&key)
            .is_some_and(|s| s.phase == Phase::Streaming);
        if !streaming {
            return;
        }
        let Some(target) = self.wanted_rendition(now, key) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let heading = s.switch_to.unwrap_or(s.rendition);
        if target == heading {
            s.up_since = None;
            return;
        }
        let alone = target == 0
            && self
                .avatars
                .get(&s.avatar)
                .is_some_and(|a| a.no_choice(s.codec));
        if target < heading && !alone {
            // Up: only once the estimate has carried it for a while.
            let since = *s.up_since.get_or_insert(now);
            if now.saturating_duration_since(since) < UP_HOLD {
                return;
            }
        }
        s.up_since = None;
        self.switch_rendition(now, key, target);
    }

    /// Re-chooses the rendition of every viewer of `avatar` in `codec` (its
    /// viewer count changed: a lone one goes back to rendition 0).
    pub(super) fn rechoose_renditions(
        &mut self,
        now: Instant,
        avatar: &AvatarId,
        codec: VideoCodec,
    ) {
        let Some(a) = self.avatars.get(avatar) else {
            return;
        };
        let keys: Vec<SessionKey> = a.video[codec.index()]
            .iter()
            .flat_map(|t| t.viewers.iter().copied())
            .collect();
        for key in keys {
            self.choose_rendition(now, key);
        }
    }

    /// Every viewer of `avatar` back on rendition 0 (its source has no lower ones now).
    pub(super) fn pin_to_top(&mut self, avatar: &AvatarId) {
        let now = self.last_now;
        let Some(a) = self.avatars.get(avatar) else {
            return;
        };
        let keys: Vec<SessionKey> = a
            .tracks()
            .filter(|(_, r, _)| *r > 0)
            .flat_map(|(_, _, t)| t.viewers.iter().chain(&t.joining).copied())
            .collect();
        for key in keys {
            self.switch_rendition(now, key, 0);
        }
    }

    /// Starts moving `key` to `target`: it joins that rendition's waiting
    /// list (starting its encoder if nobody watched it) and a keyframe is
    /// asked for. Switching to the rendition it has cancels a pending switch.
    fn switch_rendition(&mut self, now: Instant, key: SessionKey, target: u8) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let (avatar, codec, from) = (s.avatar.clone(), s.codec, s.rendition);
        if let Some(pending) = s.switch_to.take() {
            self.leave_track(&avatar, codec, pending, key);
        }
        if target == from {
            return;
        }
        let Some(a) = self.avatars.get_mut(&avatar) else {
            return;
        };
        if usize::from(target) >= a.video[codec.index()].len() {
            return;
        }
        let t = a.track_at(codec, target);
        let was_watched = t.watched();
        t.joining.push(key);
        if let Some(s) = self.sessions.get_mut(&key) {
            s.switch_to = Some(target);
            log::debug!(
                "session {}: switching from rendition {} to {} at its next keyframe (estimate {} kbit/s)",
                s.id,
                rendition_name(self.config.ladders.of(&avatar), from),
                rendition_name(self.config.ladders.of(&avatar), target),
                s.estimate_bps.unwrap_or(0) / 1000
            );
        }
        if !was_watched {
            // A newly started encoder's first picture is a keyframe.
            self.out.push_back(Output::Watched {
                avatar: avatar.clone(),
                codec,
                rendition: target,
                watched: true,
            });
        }
        self.request_keyframe(now, &avatar, codec, target);
    }

    /// A keyframe of `avatar`'s `codec` rendition `rendition` arrived: every
    /// viewer waiting for it moves onto that rendition (before the picture is
    /// written to its viewers).
    pub(super) fn complete_switches(
        &mut self,
        now: Instant,
        avatar: &AvatarId,
        codec: VideoCodec,
        rendition: u8,
    ) {
        let Some(a) = self.avatars.get_mut(avatar) else {
            return;
        };
        let joining = std::mem::take(&mut a.track_at(codec, rendition).joining);
        for key in joining {
            let Some(s) = self.sessions.get_mut(&key) else {
                continue;
            };
            let from = s.rendition;
            s.rendition = rendition;
            s.switch_to = None;
            let direction = if rendition > from { "down" } else { "up" };
            let name = rendition_name(self.config.ladders.of(avatar), rendition);
            log::debug!("session {}: now on rendition {name}", s.id);
            self.out.push_back(Output::Signal {
                conn: s.conn,
                text: signaling::server_rendition(&name),
            });
            self.stats
                .rendition_switches
                .get_or_create(&labels(&[("direction", direction)]))
                .inc();
            if let Some(a) = self.avatars.get_mut(avatar) {
                a.track_at(codec, rendition).viewers.push(key);
            }
            self.leave_track(avatar, codec, from, key);
        }
        // A survivor that just reached rendition 0 alone: its estimate caps
        // the encoder now, not at its next estimate event (one that holds
        // still sends none).
        self.update_video_cap(now, avatar, codec);
    }

    /// Takes `key` off `avatar`'s `codec` rendition `rendition` (as a viewer
    /// or as one waiting to switch to it); its encoder stops with the last.
    pub(super) fn leave_track(
        &mut self,
        avatar: &AvatarId,
        codec: VideoCodec,
        rendition: u8,
        key: SessionKey,
    ) {
        let Some(a) = self.avatars.get_mut(avatar) else {
            return;
        };
        if usize::from(rendition) >= a.video[codec.index()].len() {
            return;
        }
        let t = a.track_at(codec, rendition);
        let had = t.watched();
        t.viewers.retain(|k| *k != key);
        t.joining.retain(|k| *k != key);
        if had && !t.watched() {
            self.out.push_back(Output::Watched {
                avatar: avatar.clone(),
                codec,
                rendition,
                watched: false,
            });
        }
    }

    /// Per rendition of every avatar: what `/metrics` shows of it.
    pub fn renditions(&self) -> Vec<RenditionInfo> {
        let mut v = Vec::new();
        for (avatar, a) in &self.avatars {
            for (codec, r, t) in a.tracks() {
                if r >= a.renditions() && !t.watched() {
                    continue;
                }
                v.push(RenditionInfo {
                    avatar: avatar.clone(),
                    codec,
                    rendition: rendition_name(self.config.ladders.of(avatar), r),
                    viewers: t.viewers.len(),
                    bitrate_bps: t.bitrate_bps,
                    keyframes: t.keyframes,
                    bytes: t.bytes,
                });
            }
        }
        v.sort_by(|a, b| (&a.avatar, a.codec).cmp(&(&b.avatar, b.codec)));
        v
    }
}

/// One rendition of one avatar in one codec, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionInfo {
    /// The avatar.
    pub avatar: AvatarId,
    /// The codec.
    pub codec: VideoCodec,
    /// `top` (the source's own picture) or its rung's name (`360p`).
    pub rendition: String,
    /// Viewers receiving it now.
    pub viewers: usize,
    /// The bitrate its encoder aims at (rendition 0: the highest it said).
    pub bitrate_bps: u32,
    /// Keyframes it delivered since the daemon started.
    pub keyframes: u64,
    /// Encoded bytes it delivered since the daemon started.
    pub bytes: u64,
}
