//! The avatars viewers may ask for: added by renderers at runtime, told what
//! they can be sent as, restarted when a new source takes one over.

use super::*;

impl Engine {
    /// The avatars viewers may ask for: configured ones and those added since.
    pub fn avatars(&self) -> Vec<AvatarId> {
        let mut v: Vec<AvatarId> = self.avatars.keys().cloned().collect();
        v.sort();
        v
    }

    /// Makes `avatar` available to offers (a renderer registered it at runtime); false if it already was.
    ///
    /// Avatars are never removed: a renderer that disconnects leaves its viewers
    /// connected, watching the last picture, until it comes back.
    pub fn add_avatar(&mut self, avatar: AvatarId) -> bool {
        if self.avatars.contains_key(&avatar) {
            return false;
        }
        // A renderer's avatar: H.264 only until it says it sends raw pictures
        // (`set_avatar_vp8`); its own H.264 cannot be sent as VP8.
        let a = Avatar::new(
            self.config.keyframe_interval,
            false,
            false,
            self.config.ladders.of(&avatar),
        );
        self.avatars.insert(avatar, a);
        true
    }

    /// Whether `avatar` speaks: offers from then on get its audio (or not).
    pub fn set_avatar_audio(&mut self, avatar: &AvatarId, audio: bool) {
        if let Some(a) = self.avatars.get_mut(avatar) {
            a.audio = audio;
        }
    }

    /// Whether `avatar`'s source has raw pictures: it can then be sent as
    /// VP8 (offers from then on) and has the lower renditions of the ladder.
    pub fn set_avatar_vp8(&mut self, avatar: &AvatarId, vp8: bool) {
        let Some(a) = self.avatars.get_mut(avatar) else {
            return;
        };
        a.vp8 = vp8;
        if !vp8 {
            // Its own H.264 has one rendition: everyone back on it.
            self.pin_to_top(avatar);
        }
    }

    /// A new source took over `avatar` (a renderer reconnected): its viewers wait for an IDR, and one is requested.
    ///
    /// The new source's P-frames reference pictures the viewers never saw, so
    /// they must not be written before its first IDR.
    pub fn restart_avatar(&mut self, now: Instant, avatar: &AvatarId) {
        self.touch(now);
        let Some(a) = self.avatars.get_mut(avatar) else {
            return;
        };
        let mut wanted = Vec::new();
        for codec in VideoCodec::ALL {
            for (r, t) in a.video[codec.index()].iter_mut().enumerate() {
                let r = r as u8;
                t.gop.clear();
                // The new source starts uncapped: say the cap again.
                t.cap_sent = None;
                t.bitrate_bps = 0;
                for key in t.viewers.iter().chain(&t.joining) {
                    if let Some(s) = self.sessions.get_mut(key) {
                        s.needs_keyframe = true;
                    }
                }
                if (codec == VideoCodec::H264 && r == 0) || t.watched() {
                    wanted.push((codec, r));
                }
                if t.watched() {
                    // The new source starts unwatched: say again who watches.
                    self.out.push_back(Output::Watched {
                        avatar: avatar.clone(),
                        codec,
                        rendition: r,
                        watched: true,
                    });
                }
            }
        }
        for codec in VideoCodec::ALL {
            self.update_video_cap(now, avatar, codec);
        }
        for (codec, r) in wanted {
            self.request_keyframe(now, avatar, codec, r);
        }
    }
}

/// How long a rendition's sending rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The viewers of one rendition of an avatar in one codec, and that encoder's state.
pub(super) struct Track {
    pub(super) viewers: Vec<SessionKey>,
    /// Sessions switching to this rendition: each is still sent its old one
    /// and moves here at this one's next keyframe.
    pub(super) joining: Vec<SessionKey>,
    pub(super) limiter: KeyframeLimiter,
    /// The current GOP, replayed to a viewer whose media starts (see [`crate::gop`]).
    pub(super) gop: JoinGop,
    /// The last [`Output::VideoBitrate`] cap sent for this encoder (rendition 0 only).
    pub(super) cap_sent: Option<u32>,
    /// When that cap last rose (each rise is bounded, see `CAP_RISE`).
    pub(super) cap_rose_at: Option<Instant>,
    /// The highest bitrate its encoder said it aims at (caps only lower it):
    /// what a viewer's estimate must carry for this rendition. 0: unknown.
    pub(super) bitrate_bps: u32,
    /// What it sent over its last whole measuring window, bits per second,
    /// and when that window ended.
    pub(super) rate: Option<(u32, Instant)>,
    /// The window being measured: its start and the bytes so far.
    window: Option<(Instant, u64)>,
    /// Keyframes it delivered.
    pub(super) keyframes: u64,
    /// Bytes of the pictures it delivered.
    pub(super) bytes: u64,
}

impl Track {
    fn new(keyframe_interval: Duration, bitrate_bps: u32) -> Self {
        Track {
            viewers: Vec::new(),
            joining: Vec::new(),
            limiter: KeyframeLimiter::new(keyframe_interval),
            gop: JoinGop::default(),
            cap_sent: None,
            cap_rose_at: None,
            bitrate_bps,
            rate: None,
            window: None,
            keyframes: 0,
            bytes: 0,
        }
    }

    /// Counts one picture of `bytes` delivered at `now`.
    pub(super) fn count(&mut self, now: Instant, bytes: usize, keyframe: bool) {
        self.bytes += bytes as u64;
        self.keyframes += u64::from(keyframe);
        let (start, sum) = self.window.get_or_insert((now, 0));
        *sum += bytes as u64;
        let span = now.saturating_duration_since(*start);
        if span >= RATE_WINDOW {
            let bps = (*sum as f64 * 8.0 / span.as_secs_f64()) as u32;
            self.rate = Some((bps, now));
            self.window = Some((now, 0));
        }
    }

    /// What a viewer's link must carry for this rendition at `now`: what it
    /// sent over its last window (content often spends far less than the
    /// encoder's target), no more than its target; its target when it has
    /// not run lately; 0 when neither is known.
    pub(super) fn need_bps(&self, now: Instant) -> u32 {
        self.measured_bps(now).unwrap_or(self.bitrate_bps)
    }

    /// What it sent over its last window, no more than its target, if it ran lately.
    pub(super) fn measured_bps(&self, now: Instant) -> Option<u32> {
        self.rate
            .filter(|(_, at)| now.saturating_duration_since(*at) <= RATE_WINDOW * 3)
            .map(|(bps, _)| match self.bitrate_bps {
                0 => bps,
                target => bps.min(target),
            })
    }

    /// Whether someone receives it or waits to.
    pub(super) fn watched(&self) -> bool {
        !self.viewers.is_empty() || !self.joining.is_empty()
    }
}

pub(super) struct Avatar {
    /// Per codec ([`VideoCodec::index`]), one track per rendition (0: the
    /// source's own picture; `i + 1`: rung `i` of the ladder).
    pub(super) video: [Vec<Track>; VideoCodec::ALL.len()],
    /// Whether it speaks: new viewers get its audio.
    pub(super) audio: bool,
    /// Whether its source has raw pictures: it can be sent as VP8 and has the ladder.
    pub(super) vp8: bool,
}

impl Avatar {
    pub(super) fn new(
        keyframe_interval: Duration,
        audio: bool,
        vp8: bool,
        ladder: &[Rung],
    ) -> Self {
        let tracks = || {
            std::iter::once(0)
                .chain(ladder.iter().map(|r| r.bitrate_bps))
                .map(|bps| Track::new(keyframe_interval, bps))
                .collect()
        };
        Avatar {
            video: [tracks(), tracks()],
            audio,
            vp8,
        }
    }

    /// Rendition 0 of `codec`.
    pub(super) fn track(&mut self, codec: VideoCodec) -> &mut Track {
        &mut self.video[codec.index()][0]
    }

    /// Rendition `rendition` of `codec` (rendition 0 if there is no such one).
    pub(super) fn track_at(&mut self, codec: VideoCodec, rendition: u8) -> &mut Track {
        let tracks = &mut self.video[codec.index()];
        let r = usize::from(rendition);
        if r < tracks.len() {
            &mut tracks[r]
        } else {
            &mut tracks[0]
        }
    }

    /// How many renditions its source makes: its own picture and, when it
    /// has raw pictures, every rung of the ladder.
    pub(super) fn renditions(&self) -> u8 {
        if self.vp8 {
            self.video[0].len() as u8
        } else {
            1
        }
    }

    /// Whether a viewer of `codec` has no rendition to choose: one
    /// rendition, or nobody else watching (a lone viewer's estimate caps
    /// rendition 0 instead).
    pub(super) fn no_choice(&self, codec: VideoCodec) -> bool {
        self.renditions() <= 1 || self.codec_viewers(codec) <= 1
    }

    pub(super) fn viewer_count(&self) -> usize {
        self.video.iter().flatten().map(|t| t.viewers.len()).sum()
    }

    /// Viewers of `codec`, whatever their rendition.
    pub(super) fn codec_viewers(&self, codec: VideoCodec) -> usize {
        self.video[codec.index()]
            .iter()
            .map(|t| t.viewers.len())
            .sum()
    }

    /// Every viewer, whatever its codec and rendition.
    pub(super) fn viewers(&self) -> Vec<SessionKey> {
        self.video
            .iter()
            .flatten()
            .flat_map(|t| t.viewers.iter().copied())
            .collect()
    }

    /// Every track: its codec, rendition and state.
    pub(super) fn tracks(&self) -> impl Iterator<Item = (VideoCodec, u8, &Track)> {
        VideoCodec::ALL.into_iter().flat_map(move |c| {
            self.video[c.index()]
                .iter()
                .enumerate()
                .map(move |(r, t)| (c, r as u8, t))
        })
    }
}
