//! What an engine is built with, and the rules that relate its settings.

use super::*;

/// How the engine behaves; validated by [`Engine::new`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The UDP sockets and the public address announced for each.
    pub sockets: Vec<SocketSpec>,
    /// The public address of a passive ICE-TCP candidate (RFC 6544) to
    /// announce beside the UDP one, for viewers whose network blocks UDP; its
    /// frames arrive as datagrams on `SocketTable::ice_tcp`'s id. `None`: UDP only.
    pub ice_tcp: Option<SocketAddr>,
    /// Avatars viewers may ask for.
    pub avatars: Vec<AvatarId>,
    /// Avatars with a voice: their viewers' offers get an Opus audio m-line accepted.
    pub audio_avatars: Vec<AvatarId>,
    /// Avatars whose source can also encode VP8 (it has raw pictures): offers
    /// without usable H.264 get VP8 from them. Others answer those `no_h264`.
    pub vp8_avatars: Vec<AvatarId>,
    /// Avatar served when an offer names an unknown one; `None` refuses with `unknown_avatar`.
    pub fallback_avatar: Option<AvatarId>,
    /// Most sessions alive at once.
    pub max_sessions: usize,
    /// Largest SDP offer accepted, in bytes.
    pub max_sdp_bytes: usize,
    /// A session ends after this long without a valid STUN check from its viewer.
    pub consent_timeout: Duration,
    /// A session ends if ICE + DTLS are not up this long after the answer.
    pub connect_timeout: Duration,
    /// Minimum time between two keyframe requests sent to one avatar's encoder.
    pub keyframe_interval: Duration,
    /// RTP packets kept per viewer for NACK resends.
    pub resend_buffer_packets: usize,
    /// Most sessions watching one avatar at once.
    pub max_sessions_per_avatar: usize,
    /// When set, every offer needs a token minted with this key (see [`crate::auth`]).
    pub token_key: Option<TokenKey>,
    /// Sent in the playout-delay header extension to viewers whose offer has it
    /// (see [`crate::playout_delay`]); `None` never negotiates the extension.
    pub playout_delay: Option<PlayoutDelay>,
    /// Per-viewer bandwidth estimation (transport-cc, and REMB from peers
    /// without it); `None` negotiates neither and leaves every encoder at its
    /// configured bitrate. See [`Output::VideoBitrate`].
    pub bandwidth_estimation: Option<BandwidthEstimation>,
    /// The lower renditions of every avatar whose source has raw pictures
    /// (those in `vp8_avatars`, and renderers that send raw pictures), highest
    /// first; each is encoded once for all its viewers, only while one
    /// watches it. A viewer of an avatar that others watch too gets the
    /// highest rendition its bandwidth estimate carries (needs
    /// `bandwidth_estimation`); a lone viewer always gets rendition 0, its
    /// encoder capped at its estimate instead. An empty ladder: one rendition.
    pub ladders: Ladders,
}

/// How each viewer's bandwidth estimator (str0m's Google congestion control) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandwidthEstimation {
    /// The estimate a new viewer starts from, bits per second. A viewer
    /// joining others of its avatar starts higher: at what their rendition 0
    /// needs, at most `max_bps` (`accept_offer`).
    pub start_bps: u32,
    /// The most any avatar sends, bits per second (its video plus its
    /// voice): probing aims at an estimate that lets a lone viewer's encoder
    /// run at this.
    pub max_bps: u32,
}

impl BandwidthEstimation {
    /// What a viewer's estimator starts from when the source sends `max_bps`:
    /// 1 Mbit/s (or `max_bps` when lower). Lower costs a blurry first second
    /// on a good link, higher floods a thin one before the first feedback.
    pub fn for_max(max_bps: u32) -> Self {
        BandwidthEstimation {
            start_bps: max_bps.min(1_000_000),
            max_bps,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            sockets: Vec::new(),
            ice_tcp: None,
            avatars: vec![AvatarId::parse("test-pattern").expect("a valid literal name")],
            // The built-in test pattern speaks (it beeps with its flash), as in the daemon.
            audio_avatars: vec![AvatarId::parse("test-pattern").expect("a valid literal name")],
            vp8_avatars: vec![AvatarId::parse("test-pattern").expect("a valid literal name")],
            fallback_avatar: None,
            max_sessions: 200,
            max_sdp_bytes: 64 * 1024,
            consent_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(20),
            keyframe_interval: DEFAULT_KEYFRAME_INTERVAL,
            resend_buffer_packets: 300,
            max_sessions_per_avatar: 200,
            token_key: None,
            playout_delay: Some(PlayoutDelay::DEFAULT),
            bandwidth_estimation: Some(BandwidthEstimation::for_max(2_500_000)),
            ladders: Ladders::same_for_all(Rung::DEFAULT_LADDER.to_vec()),
        }
    }
}

impl EngineConfig {
    /// The rules that relate settings; `known` says whether an avatar can be served.
    pub(super) fn check(&self, known: impl Fn(&AvatarId) -> bool) -> Result<(), EngineError> {
        if self.max_sessions == 0 {
            return Err(EngineError::Config(
                "max_sessions must be at least 1".into(),
            ));
        }
        if let Some(f) = self.fallback_avatar.as_ref().filter(|f| !known(f)) {
            return Err(EngineError::Config(format!(
                "fallback avatar '{f}' is not a configured avatar"
            )));
        }
        if let Some(b) = self.bandwidth_estimation {
            if b.start_bps < 30_000 || b.start_bps > b.max_bps {
                return Err(EngineError::Config(format!(
                    "bandwidth estimation: start {} bit/s must be at least 30000 and at most the maximum {} bit/s",
                    b.start_bps, b.max_bps
                )));
            }
        }
        if let Some(d) = self.playout_delay {
            PlayoutDelay::new(d.min, d.max).map_err(EngineError::Config)?;
        }
        check_ladder(&self.ladders.default).map_err(EngineError::Config)?;
        for (avatar, ladder) in &self.ladders.per_avatar {
            check_ladder(ladder)
                .map_err(|e| EngineError::Config(format!("avatar '{avatar}': {e}")))?;
        }
        Ok(())
    }
}

/// A ladder's rules: at most [`MAX_RENDITIONS`] - 1 rungs, each 16-4320
/// lines and 30 kbit/s - 50 Mbit/s, heights and bitrates strictly falling.
pub fn check_ladder(ladder: &[Rung]) -> Result<(), String> {
    if ladder.len() > MAX_RENDITIONS - 1 {
        return Err(format!(
            "renditions: at most {} lower renditions, not {}",
            MAX_RENDITIONS - 1,
            ladder.len()
        ));
    }
    for (i, r) in ladder.iter().enumerate() {
        if !(16..=4320).contains(&r.height) || !(30_000..=50_000_000).contains(&r.bitrate_bps) {
            return Err(format!(
                "renditions: {}p at {} kbit/s is out of range (16-4320 lines, 30-50000 kbit/s)",
                r.height,
                r.bitrate_bps / 1000
            ));
        }
        if let Some(prev) = i.checked_sub(1).map(|p| ladder[p]) {
            if r.height >= prev.height || r.bitrate_bps >= prev.bitrate_bps {
                return Err(format!(
                    "renditions: {}p at {} kbit/s must be smaller and cheaper than the {}p at {} kbit/s before it",
                    r.height,
                    r.bitrate_bps / 1000,
                    prev.height,
                    prev.bitrate_bps / 1000
                ));
            }
        }
    }
    Ok(())
}

/// Errors building an engine.
#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// The socket table is unusable.
    Address(AddressError),
    /// The DTLS certificate could not be generated.
    Certificate,
    /// A setting is out of range.
    Config(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Address(e) => write!(f, "sockets: {e}"),
            EngineError::Certificate => write!(f, "could not generate the DTLS certificate"),
            EngineError::Config(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for EngineError {}
