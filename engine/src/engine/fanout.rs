//! Fan-out: one encoded picture or Opus packet of an avatar to each of its
//! viewers, and what makes a viewer wait for a keyframe.

use super::*;

impl Engine {
    /// Fans one encoded picture of `avatar` out to its viewers.
    pub fn handle_access_unit(&mut self, now: Instant, avatar: &AvatarId, au: &AccessUnit) {
        self.touch(now);
        let Some(a) = self.avatars.get_mut(avatar) else {
            log::debug!("access unit for unknown avatar {avatar} dropped");
            return;
        };
        if usize::from(au.rendition) >= a.video[au.codec.index()].len() {
            log::debug!(
                "avatar {avatar}: access unit of unknown rendition {} dropped",
                au.rendition
            );
            return;
        }
        let track = a.track_at(au.codec, au.rendition);
        track.gop.push(au);
        track.count(now, au.data.len(), au.keyframe);
        if au.rendition == 0 {
            // Caps only lower it: the highest is the configured bitrate.
            track.bitrate_bps = track.bitrate_bps.max(au.bitrate_bps);
        }
        if au.keyframe && !track.joining.is_empty() {
            self.complete_switches(now, avatar, au.codec, au.rendition);
        }
        let Some(a) = self.avatars.get_mut(avatar) else {
            return;
        };
        let viewers = a.track_at(au.codec, au.rendition).viewers.clone();
        for key in viewers {
            let Some(s) = self.sessions.get_mut(&key) else {
                continue;
            };
            if s.phase != Phase::Streaming {
                continue;
            }
            if s.needs_keyframe && !au.keyframe {
                s.frames_held += 1;
                self.stats.frames_held.inc();
                continue;
            }
            self.write_picture(now, key, au);
        }
    }

    /// Fans one Opus packet of `avatar` out to its viewers that took its audio.
    ///
    /// Audio needs no keyframe: a viewer hears from the first packet after its
    /// connection is up. Each packet keeps its own RTP time and capture instant,
    /// so the Sender Reports put it on the video's NTP timeline.
    pub fn handle_audio(&mut self, now: Instant, avatar: &AvatarId, frame: &AudioFrame) {
        self.touch(now);
        let Some(a) = self.avatars.get(avatar) else {
            return;
        };
        let rtp_time = MediaTime::new(frame.rtp_time, Frequency::FORTY_EIGHT_KHZ);
        for key in a.viewers() {
            let live = self
                .sessions
                .get(&key)
                .is_some_and(|s| s.audio.is_some() && s.phase != Phase::Negotiated);
            if !live {
                continue;
            }
            self.guarded(now, key, |e| {
                let Some(s) = e.sessions.get_mut(&key) else {
                    return;
                };
                s.check_poison();
                let Some((mid, pt)) = s.audio else {
                    return;
                };
                let Some(writer) = s.rtc.writer(mid) else {
                    return;
                };
                match writer.write(pt, frame.captured_at, rtp_time, frame.data.clone()) {
                    Ok(()) => {
                        e.stats.audio_frames_written.inc();
                    }
                    Err(err) => log::debug!("session {}: audio write failed: {err}", s.id),
                }
                e.drain_session(now, key, None);
            });
        }
    }

    /// Writes one picture to one streaming session; a panic ends only that session.
    fn write_picture(&mut self, now: Instant, key: SessionKey, au: &AccessUnit) {
        self.guarded(now, key, |e| {
            let Some(s) = e.sessions.get_mut(&key) else {
                return;
            };
            s.check_poison();
            // A switch's keyframe is the picture this viewer just got in its
            // old rendition: one tick later, so its timestamps only rise. (A
            // source whose clock went back further restarted: as it is.)
            let rtp = match s.last_rtp {
                Some(last) if au.rtp_time <= last && last - au.rtp_time < 9_000 => last + 1,
                _ => au.rtp_time,
            };
            let rtp_time = MediaTime::new(rtp, Frequency::NINETY_KHZ);
            let (Some(mid), Some(pt)) = (s.mid, s.pt) else {
                return;
            };
            let Some(writer) = s.rtc.writer(mid) else {
                return;
            };
            let writer = match e.config.playout_delay {
                Some(d) => {
                    let d = if s.audio.is_some() {
                        d.with_lip_sync()
                    } else {
                        d
                    };
                    let (min, max) = d.media_times();
                    writer.playout_delay(min, max)
                }
                None => writer,
            };
            match writer.write(pt, au.captured_at, rtp_time, au.data.clone()) {
                Ok(()) => {
                    s.needs_keyframe = false;
                    s.last_rtp = Some(rtp);
                    if s.frames_sent == 0 {
                        s.first_frame_at = Some(now);
                        let waited = now.saturating_duration_since(s.created);
                        e.stats.first_frame.observe(waited.as_secs_f64());
                    }
                    s.frames_sent += 1;
                    e.stats.frames_written.inc();
                }
                Err(err) => log::debug!("session {}: write failed: {err}", s.id),
            }
            e.drain_session(now, key, None);
        });
    }

    /// Hands a session whose media just started its avatar's current GOP;
    /// true when it took it (no keyframe needs to be asked for).
    pub(super) fn replay_gop(
        &mut self,
        now: Instant,
        key: SessionKey,
        avatar: &AvatarId,
        codec: VideoCodec,
        rendition: u8,
    ) -> bool {
        let frames = match self
            .avatars
            .get_mut(avatar)
            .map(|a| &a.track_at(codec, rendition).gop)
        {
            Some(gop) if !gop.frames().is_empty() => gop.frames().to_vec(),
            _ => return false,
        };
        for au in &frames {
            self.write_picture(now, key, au);
        }
        self.sessions.get(&key).is_some_and(|s| !s.needs_keyframe)
    }

    /// The driver could not send a datagram to `to` on `socket` (a slow
    /// ICE-TCP viewer's queue was full): that viewer's picture is broken until
    /// a keyframe, so its session skips every picture until the next keyframe
    /// (newest wins: nothing more piles into a full pipe) and one is asked for.
    pub fn transmit_dropped(&mut self, now: Instant, socket: SocketId, to: SocketAddr) {
        self.touch(now);
        let Some(key) = self.demux.session_of(socket, to) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.phase != Phase::Streaming || s.needs_keyframe {
            return;
        }
        s.needs_keyframe = true;
        let (avatar, codec, rendition) = (s.avatar.clone(), s.codec, s.rendition);
        log::debug!(
            "session {}: a datagram to {to} was dropped; waiting for a keyframe",
            s.id
        );
        self.request_keyframe(now, &avatar, codec, rendition);
    }
}
