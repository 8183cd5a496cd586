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
        self.avatars.insert(
            avatar,
            Avatar::new(self.config.keyframe_interval, false, false),
        );
        true
    }

    /// Whether `avatar` speaks: offers from then on get its audio (or not).
    pub fn set_avatar_audio(&mut self, avatar: &AvatarId, audio: bool) {
        if let Some(a) = self.avatars.get_mut(avatar) {
            a.audio = audio;
        }
    }

    /// Whether `avatar` can be sent as VP8 (its source has raw pictures): offers from then on.
    pub fn set_avatar_vp8(&mut self, avatar: &AvatarId, vp8: bool) {
        if let Some(a) = self.avatars.get_mut(avatar) {
            a.vp8 = vp8;
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
        let mut codecs = Vec::new();
        for codec in VideoCodec::ALL {
            let t = a.track(codec);
            t.gop.clear();
            // The new source starts uncapped: say the cap again.
            t.cap_sent = None;
            for key in &t.viewers {
                if let Some(s) = self.sessions.get_mut(key) {
                    s.needs_keyframe = true;
                }
            }
            if codec == VideoCodec::H264 || !t.viewers.is_empty() {
                codecs.push(codec);
            }
            if !t.viewers.is_empty() {
                // The new source starts unwatched: say again who watches.
                self.out.push_back(Output::Watched {
                    avatar: avatar.clone(),
                    codec,
                    watched: true,
                });
            }
        }
        for codec in VideoCodec::ALL {
            self.update_video_cap(avatar, codec);
        }
        for codec in codecs {
            self.request_keyframe(now, avatar, codec);
        }
    }
}

/// The viewers of one avatar in one codec, and that encoder's state.
pub(super) struct Track {
    pub(super) viewers: Vec<SessionKey>,
    pub(super) limiter: KeyframeLimiter,
    /// The current GOP, replayed to a viewer whose media starts (see [`crate::gop`]).
    pub(super) gop: JoinGop,
    /// The last [`Output::VideoBitrate`] cap sent for this encoder.
    pub(super) cap_sent: Option<u32>,
}

pub(super) struct Avatar {
    /// One track per codec, indexed by [`VideoCodec::index`].
    pub(super) video: [Track; VideoCodec::ALL.len()],
    /// Whether it speaks: new viewers get its audio.
    pub(super) audio: bool,
    /// Whether it can be sent as VP8.
    pub(super) vp8: bool,
}

impl Avatar {
    pub(super) fn new(keyframe_interval: Duration, audio: bool, vp8: bool) -> Self {
        Avatar {
            video: VideoCodec::ALL.map(|_| Track {
                viewers: Vec::new(),
                limiter: KeyframeLimiter::new(keyframe_interval),
                gop: JoinGop::default(),
                cap_sent: None,
            }),
            audio,
            vp8,
        }
    }

    pub(super) fn track(&mut self, codec: VideoCodec) -> &mut Track {
        &mut self.video[codec.index()]
    }

    pub(super) fn viewer_count(&self) -> usize {
        self.video.iter().map(|t| t.viewers.len()).sum()
    }

    /// Every viewer, whatever its codec.
    pub(super) fn viewers(&self) -> Vec<SessionKey> {
        self.video
            .iter()
            .flat_map(|t| t.viewers.iter().copied())
            .collect()
    }
}
