//! Taking an offer: checks in the order a refusal should name them, the
//! answer plan, the session's `Rtc`, and its place in the tables.

use super::*;

impl Engine {
    pub(super) fn accept_offer(
        &mut self,
        now: Instant,
        conn: ConnId,
        offer: Offer,
    ) -> Result<(), SignalError> {
        let Some(c) = self.conns.get(&conn) else {
            return Err(SignalError::OfferRejected("unknown connection".into()));
        };
        if c.session.is_some() {
            return Err(SignalError::AlreadyNegotiated);
        }
        if c.url_session_id.as_str() != offer.session_id {
            return Err(SignalError::SessionIdMismatch {
                url: c.url_session_id.to_string(),
                message: offer.session_id,
            });
        }
        if self.sessions.values().any(|s| s.id == offer.session_id) {
            return Err(SignalError::SessionInUse(offer.session_id));
        }
        if offer.sdp.len() > self.config.max_sdp_bytes {
            return Err(SignalError::SdpTooLarge {
                size: offer.sdp.len(),
                max: self.config.max_sdp_bytes,
            });
        }
        self.check_token(
            c.info.token.as_deref(),
            &offer.session_id,
            &offer.avatar_id,
            c.info.unix_time,
        )?;
        let avatar = self.resolve_avatar(&offer.avatar_id)?;
        if self.sessions.len() >= self.config.max_sessions {
            return Err(SignalError::TooManySessions(self.config.max_sessions));
        }
        let watching = self.avatars.get(&avatar).map_or(0, Avatar::viewer_count);
        if watching >= self.config.max_sessions_per_avatar {
            return Err(SignalError::TooManyViewers {
                avatar: avatar.to_string(),
                max: self.config.max_sessions_per_avatar,
            });
        }
        let summary = OfferSummary::parse(&offer.sdp)?;
        let vp8 = self.avatars.get(&avatar).is_some_and(|a| a.vp8);
        let choice = summary.choose_video(vp8)?;
        let speaks = self.avatars.get(&avatar).is_some_and(|a| a.audio);
        let audio = summary.choose_opus().filter(|_| speaks);
        let taken: Vec<usize> = std::iter::once(choice.mline)
            .chain(audio.as_ref().map(|a| a.mline))
            .collect();
        summary.require_rtcp_mux(&taken)?;
        // str0m negotiates the chosen video (and audio) m-line only; the plan rejects the others.
        let plan = AnswerPlan::with_audio(&offer.sdp, &choice, audio.as_ref())?;
        let opus_pt = audio.filter(|_| plan.has_audio()).map(|a| a.pt);
        let sdp_offer = SdpOffer::from_sdp_string(&plan.str0m_offer())
            .map_err(|e| SignalError::InvalidSdp(e.to_string()))?;
        // str0m's parser stops at the first session-level line it cannot read
        // and then sees no m-lines, though the offer has them (the plan found
        // them): say which part failed rather than str0m's "No m-lines in offer".
        if sdp_offer.media_lines.is_empty() {
            return Err(SignalError::OfferRejected(
                "the SDP's session section could not be parsed (a line before the first m=; check v=, o=, s=, t= and the session attributes)".into(),
            ));
        }

        let socket = self.pick_socket();
        let public = self
            .sockets
            .receive_destination(socket)
            .ok_or_else(|| SignalError::OfferRejected("no socket".into()))?;
        let creds = IceCreds::new();
        // A viewer joining others starts its estimator at what their rendition 0 needs (at most
        // the most any avatar sends): the ladder moves a shared viewer down whenever its estimate
        // is short of its rendition's need, and from the usual 1 Mbit/s start an estimate whose
        // start-up probes took nothing climbs ~8 % a second (e2e `r`: an uncapped second viewer
        // moved to 360p 2 s after it joined, at 978 kbit/s, for 8 s). A lone viewer keeps the
        // low start: its estimate caps its encoder at once, and a thin link is not flooded.
        let bwe = self.config.bandwidth_estimation.map(|b| {
            let top = self
                .avatars
                .get(&avatar)
                .filter(|a| a.codec_viewers(choice.codec) > 0)
                .and_then(|a| a.video[choice.codec.index()].first())
                .map_or(0, |t| t.bitrate_bps);
            let shared_start = u32::try_from(bitrate::estimate_for(top)).unwrap_or(u32::MAX);
            BandwidthEstimation {
                start_bps: b.start_bps.max(shared_start.min(b.max_bps)),
                ..b
            }
        });
        let mut rtc: Rtc = session::rtc_config(
            self.cert.clone(),
            creds.clone(),
            self.config.resend_buffer_packets,
            self.config.playout_delay.is_some(),
            bwe,
            &choice,
            opus_pt,
        )
        .build(now);
        if let Some(b) = self.config.bandwidth_estimation {
            // Probe toward an estimate whose cap is the most the source
            // sends; send no padding of our own.
            let desired = bitrate::estimate_for(b.max_bps);
            rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
        }
        let candidate = Candidate::host(public, "udp")
            .map_err(|e| SignalError::OfferRejected(format!("candidate {public}: {e}")))?;
        rtc.add_local_candidate(candidate);
        if let Some((_, tcp)) = self.sockets.ice_tcp() {
            // Passive: the viewer connects to it (RFC 6544); UDP's type
            // preference keeps it the lower-priority pair when both work.
            let candidate = Candidate::builder()
                .tcp()
                .host(tcp)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| SignalError::OfferRejected(format!("candidate {tcp}: {e}")))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp_offer)
            .map_err(|e| SignalError::OfferRejected(e.to_string()))?;
        let answer_sdp = plan.complete(&answer.to_sdp_string())?;

        let key = SessionKey(self.next_key);
        self.next_key += 1;
        let session = Session::new(
            SessionSeed {
                key,
                conn,
                id: offer.session_id.clone(),
                user: offer.user_id.clone(),
                avatar: avatar.clone(),
                codec: choice.codec,
                rtc,
                socket,
                local_ufrag: creds.ufrag.clone(),
            },
            now,
        );
        self.demux.add_session(key, &creds.ufrag);
        self.socket_load[socket.0] += 1;
        if let Some(a) = self.avatars.get_mut(&avatar) {
            let track = a.track(choice.codec);
            track.viewers.push(key);
            if track.viewers.len() == 1 {
                self.out.push_back(Output::Watched {
                    avatar: avatar.clone(),
                    codec: choice.codec,
                    rendition: 0,
                    watched: true,
                });
            }
        }
        // A second viewer lifts the first one's cap (one link never sets
        // another's picture); from then on each gets the rendition it carries.
        self.update_video_cap(now, &avatar, choice.codec);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(key);
        }
        self.sessions.insert(key, Box::new(session));
        self.stats.answers.inc();
        log::info!(
            "session {} started: user={} avatar={} codec={} pt={} profile={} port={} public={} {conn}",
            offer.session_id,
            offer.user_id.as_deref().unwrap_or("-"),
            avatar,
            choice.codec,
            choice.pt,
            choice
                .profile_level_id
                .map_or_else(|| "-".to_string(), |p| format!("{p:06x}")),
            socket,
            public,
        );
        self.out.push_back(Output::Signal {
            conn,
            text: signaling::server_answer(&answer_sdp),
        });
        // Ask for the keyframe now rather than when DTLS completes: the IDR
        // is then waiting in the avatar's GOP when this viewer's media starts.
        self.request_keyframe(now, &avatar, choice.codec, 0);
        self.drain_session(now, key, None);
        Ok(())
    }

    pub(super) fn resolve_avatar(&self, requested: &str) -> Result<AvatarId, SignalError> {
        // A name that breaks the rule cannot be configured, so it is simply unknown.
        if let Some(id) = AvatarId::parse(requested)
            .ok()
            .filter(|id| self.avatars.contains_key(id))
        {
            return Ok(id);
        }
        match &self.config.fallback_avatar {
            Some(f) => Ok(f.clone()),
            None => Err(SignalError::UnknownAvatar {
                requested: requested.to_string(),
                available: self
                    .avatars()
                    .into_iter()
                    .map(|a| a.as_str().to_string())
                    .collect(),
            }),
        }
    }

    /// The socket with the fewest sessions, lowest index first.
    pub(super) fn pick_socket(&self) -> SocketId {
        let best = (0..self.socket_load.len())
            .min_by_key(|i| (self.socket_load[*i], *i))
            .unwrap_or(0);
        SocketId(best)
    }
}
