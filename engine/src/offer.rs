//! A typed look at an SDP offer, taken before str0m sees it.
//!
//! str0m parses the full SDP. This pass only extracts what the engine decides
//! on (is there video, which H.264 or VP8 format can an encoder serve, are the
//! ICE and DTLS attributes there) so a refusal can say exactly what is wrong.

use crate::media::VideoCodec;
use crate::signaling::SignalError;

/// H.264 `profile_idc` of (constrained) baseline, which openh264 produces.
const PROFILE_IDC_BASELINE: u8 = 0x42;

/// One H.264 format offered on the video m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Format {
    /// Payload type.
    pub pt: u8,
    /// `profile-level-id` as a 24-bit number (0x42e01f), if given.
    pub profile_level_id: Option<u32>,
    /// `packetization-mode` (0 when absent, as RFC 6184 says).
    pub packetization_mode: u8,
    /// The RTX payload type whose `apt` points at `pt`, if any.
    pub rtx: Option<u8>,
}

impl H264Format {
    /// Whether openh264's constrained-baseline, packetization-mode 1 stream suits this format.
    pub fn servable(&self) -> bool {
        self.packetization_mode == 1
            && self
                .profile_level_id
                .is_some_and(|p| (p >> 16) as u8 == PROFILE_IDC_BASELINE)
    }

    fn describe(&self) -> String {
        match self.profile_level_id {
            Some(p) => format!("pt {} {:06x} mode {}", self.pt, p, self.packetization_mode),
            None => format!("pt {} no profile mode {}", self.pt, self.packetization_mode),
        }
    }
}

/// One m-line of the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video`, `application`, ...
    pub kind: String,
    /// The port field (0 means the offerer already rejected it).
    pub port: u16,
    /// `a=mid`, if present.
    pub mid: Option<String>,
    /// Payload types listed on the m= line, in the offerer's order of preference.
    pub formats: Vec<u8>,
    /// The offerer's direction (`recvonly`, ...): the m-line's, else the session's, else `sendrecv`.
    pub direction: String,
    /// H.264 formats in the offerer's order of preference (only listed payload types).
    pub h264: Vec<H264Format>,
    /// VP8 payload types in the offerer's order, each with its RTX payload type.
    pub vp8: Vec<(u8, Option<u8>)>,
    /// The first listed Opus payload type (`opus/48000/2`), on an audio m-line.
    pub opus: Option<u8>,
    /// Whether the m-line carries `a=rtcp-mux` (a media-level attribute, RFC 5761).
    pub rtcp_mux: bool,
    /// Port 0 with `a=bundle-only` and a mid in the offer's BUNDLE group: offered
    /// on the bundle's transport (RFC 8843 section 6; GStreamer's webrtcbin with
    /// max-bundle offers its second m-line so), not rejected.
    pub bundle_only: bool,
}

impl MediaSection {
    /// Whether the offerer proposes this m-line: a port, or bundle-only in the BUNDLE group.
    pub fn offered(&self) -> bool {
        self.port != 0 || self.bundle_only
    }

    /// Whether the offerer will receive media on this m-line (`recvonly` or `sendrecv`).
    pub fn viewer_receives(&self) -> bool {
        matches!(self.direction.as_str(), "recvonly" | "sendrecv")
    }
}

/// What the engine needs to know of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    /// The m-lines in order.
    pub media: Vec<MediaSection>,
}

/// The Opus format the engine will answer an audio m-line with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusChoice {
    /// Index of the audio m-line.
    pub mline: usize,
    /// Its mid.
    pub mid: Option<String>,
    /// The offer's Opus payload type.
    pub pt: u8,
}

/// The video format the engine will answer with, on which m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoChoice {
    /// Index of the video m-line.
    pub mline: usize,
    /// Its mid.
    pub mid: Option<String>,
    /// The codec.
    pub codec: VideoCodec,
    /// The offer's payload type for it.
    pub pt: u8,
    /// The RTX payload type whose `apt` points at `pt`, if any.
    pub rtx: Option<u8>,
    /// H.264's `profile-level-id` (`None` for VP8, or an H.264 format without one).
    pub profile_level_id: Option<u32>,
}

impl VideoChoice {
    fn h264(mline: usize, m: &MediaSection, f: &H264Format) -> Self {
        VideoChoice {
            mline,
            mid: m.mid.clone(),
            codec: VideoCodec::H264,
            pt: f.pt,
            rtx: f.rtx,
            profile_level_id: f.profile_level_id,
        }
    }
}

impl OfferSummary {
    /// Reads an offer; refuses one that lacks what ICE and DTLS need.
    pub fn parse(sdp: &str) -> Result<Self, SignalError> {
        let mut media: Vec<MediaSection> = Vec::new();
        // Attributes are collected per section; index 0 is the session level.
        let mut sections: Vec<Vec<(&str, &str)>> = vec![Vec::new()];
        let mut saw_version = false;
        for (n, raw) in sdp.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' {
                return Err(SignalError::InvalidSdp(format!(
                    "line {} is not of the form x=...: {:?}",
                    n + 1,
                    short(line)
                )));
            }
            let value = &line[2..];
            match bytes[0] {
                b'v' => saw_version = true,
                b'm' => {
                    media.push(parse_mline(value, n + 1)?);
                    sections.push(Vec::new());
                }
                b'a' => {
                    let (name, val) = value.split_once(':').unwrap_or((value, ""));
                    if let Some(s) = sections.last_mut() {
                        s.push((name, val));
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(SignalError::InvalidSdp("no v= line".into()));
        }
        if media.is_empty() {
            return Err(SignalError::InvalidSdp("no m= line".into()));
        }
        let session = &sections[0];
        let bundle = crate::sdp_text::bundle_mids(session.iter().copied()).unwrap_or_default();
        for (i, m) in media.iter_mut().enumerate() {
            let attrs = &sections[i + 1];
            let has = |name: &str| {
                attrs.iter().any(|(n, _)| *n == name) || session.iter().any(|(n, _)| *n == name)
            };
            if m.port != 0 {
                for required in ["ice-ufrag", "ice-pwd"] {
                    if !has(required) {
                        return Err(SignalError::InvalidSdp(format!(
                            "m-line {} ({}) has no a={required}",
                            i + 1,
                            m.kind
                        )));
                    }
                }
                check_fingerprint(attrs, session, i + 1)?;
                check_setup(attrs, session, i + 1)?;
            }
            m.mid = attrs
                .iter()
                .find(|(n, _)| *n == "mid")
                .map(|(_, v)| v.to_string());
            m.direction = direction(attrs)
                .or_else(|| direction(session))
                .unwrap_or("sendrecv")
                .to_string();
            m.rtcp_mux = attrs.iter().any(|(n, _)| *n == "rtcp-mux");
            m.bundle_only = m.port == 0
                && attrs.iter().any(|(n, _)| *n == "bundle-only")
                && m.mid.as_deref().is_some_and(|mid| bundle.contains(&mid));
            if m.kind == "video" {
                m.h264 = h264_formats(attrs, &m.formats);
                m.vp8 = vp8_formats(attrs, &m.formats);
            }
            if m.kind == "audio" {
                m.opus = opus_format(attrs, &m.formats);
            }
        }
        Ok(OfferSummary { media })
    }

    /// Picks the video the server sends: on the first video m-line the viewer
    /// receives on that has one, the offerer's most preferred H.264 format the
    /// encoder can serve, else (when `vp8` says the avatar can be sent as VP8)
    /// VP8. H.264 wins even when listed after VP8 (Chromium lists VP8 first):
    /// most viewers share its encode.
    pub fn choose_video(&self, vp8: bool) -> Result<VideoChoice, SignalError> {
        let videos: Vec<(usize, &MediaSection)> = self
            .media
            .iter()
            .enumerate()
            .filter(|(_, m)| m.kind == "video" && m.offered() && m.viewer_receives())
            .collect();
        if videos.is_empty() {
            return Err(SignalError::NoVideo);
        }
        let mut offered = Vec::new();
        let mut vp8_offered = false;
        for (i, m) in &videos {
            if let Some(f) = m.h264.iter().find(|f| f.servable()) {
                return Ok(VideoChoice::h264(*i, m, f));
            }
            if let Some(&(pt, rtx)) = m.vp8.first() {
                vp8_offered = true;
                if vp8 {
                    return Ok(VideoChoice {
                        mline: *i,
                        mid: m.mid.clone(),
                        codec: VideoCodec::Vp8,
                        pt,
                        rtx,
                        profile_level_id: None,
                    });
                }
            }
            offered.extend(m.h264.iter().map(H264Format::describe));
        }
        if !offered.is_empty() {
            Err(SignalError::NoH264Profile(offered.join(", ")))
        } else if vp8_offered {
            Err(SignalError::NoH264ForAvatar)
        } else {
            Err(SignalError::NoH264)
        }
    }
}

impl OfferSummary {
    /// Refuses the offer when one of `mlines` (indices the answer takes) lacks
    /// `a=rtcp-mux`: the answer always multiplexes, and must not add what the
    /// offer did not allow.
    pub fn require_rtcp_mux(&self, mlines: &[usize]) -> Result<(), SignalError> {
        for &i in mlines {
            if let Some(m) = self.media.get(i).filter(|m| !m.rtcp_mux) {
                return Err(SignalError::NoRtcpMux {
                    mline: i + 1,
                    kind: m.kind.clone(),
                });
            }
        }
        Ok(())
    }

    /// The offer's first audio m-line, when the viewer receives on it and it
    /// offers Opus; `None` otherwise (the audio m-lines are then rejected).
    pub fn choose_opus(&self) -> Option<OpusChoice> {
        let (mline, m) = self
            .media
            .iter()
            .enumerate()
            .find(|(_, m)| m.kind == "audio")?;
        if !m.offered() || !m.viewer_receives() {
            return None;
        }
        Some(OpusChoice {
            mline,
            mid: m.mid.clone(),
            pt: m.opus?,
        })
    }
}

/// The first listed payload type whose `a=rtpmap` is `opus/48000/2` (RFC 7587).
fn opus_format(attrs: &[(&str, &str)], listed: &[u8]) -> Option<u8> {
    let mapped: Vec<u8> = attrs
        .iter()
        .filter(|(n, _)| *n == "rtpmap")
        .filter_map(|(_, v)| {
            let (pt, enc) = v.split_once(' ')?;
            let pt = pt.parse::<u8>().ok()?;
            enc.eq_ignore_ascii_case("opus/48000/2").then_some(pt)
        })
        .collect();
    listed.iter().copied().find(|pt| mapped.contains(pt))
}

fn parse_mline(value: &str, line_no: usize) -> Result<MediaSection, SignalError> {
    let mut parts = value.split(' ');
    let kind = parts.next().unwrap_or("");
    let port = parts
        .next()
        .and_then(|p| p.split('/').next()?.parse::<u16>().ok());
    let proto = parts.next();
    // Non-numeric formats (`webrtc-datachannel`) are not payload types.
    let formats = parts.filter_map(|f| f.parse::<u8>().ok()).collect();
    match (kind.is_empty(), port, proto) {
        (false, Some(port), Some(_)) => Ok(MediaSection {
            kind: kind.to_string(),
            port,
            mid: None,
            formats,
            direction: String::new(),
            h264: Vec::new(),
            vp8: Vec::new(),
            opus: None,
            rtcp_mux: false,
            bundle_only: false,
        }),
        _ => Err(SignalError::InvalidSdp(format!(
            "line {line_no}: malformed m= line {:?}",
            short(value)
        ))),
    }
}

fn check_fingerprint(
    attrs: &[(&str, &str)],
    session: &[(&str, &str)],
    mline: usize,
) -> Result<(), SignalError> {
    let found = attrs
        .iter()
        .chain(session.iter())
        .filter(|(n, _)| *n == "fingerprint")
        .map(|(_, v)| *v)
        .collect::<Vec<_>>();
    if found.is_empty() {
        return Err(SignalError::InvalidSdp(format!(
            "m-line {mline} has no a=fingerprint (DTLS needs it)"
        )));
    }
    for fp in found {
        let (hash, hex) = fp.split_once(' ').unwrap_or((fp, ""));
        let want = match hash.to_ascii_lowercase().as_str() {
            "sha-1" => 20,
            "sha-224" => 28,
            "sha-256" => 32,
            "sha-384" => 48,
            "sha-512" => 64,
            _ => {
                return Err(SignalError::InvalidSdp(format!(
                    "a=fingerprint uses unknown hash {:?}",
                    short(hash)
                )))
            }
        };
        let bytes: Vec<&str> = hex.trim().split(':').collect();
        let ok = bytes.len() == want
            && bytes
                .iter()
                .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return Err(SignalError::InvalidSdp(format!(
                "a=fingerprint:{} is not a complete {hash} digest",
                short(fp)
            )));
        }
    }
    Ok(())
}

/// The first direction attribute among `attrs`.
fn direction<'a>(attrs: &[(&'a str, &str)]) -> Option<&'a str> {
    attrs
        .iter()
        .map(|(n, _)| *n)
        .find(|n| matches!(*n, "sendrecv" | "sendonly" | "recvonly" | "inactive"))
}

/// `a=setup` (RFC 8842), when given, must name a role DTLS can take.
fn check_setup(
    attrs: &[(&str, &str)],
    session: &[(&str, &str)],
    mline: usize,
) -> Result<(), SignalError> {
    let setup = attrs
        .iter()
        .chain(session.iter())
        .find(|(n, _)| *n == "setup")
        .map(|(_, v)| *v);
    match setup {
        None | Some("actpass" | "active" | "passive") => Ok(()),
        Some(other) => Err(SignalError::InvalidSdp(format!(
            "m-line {mline} has a=setup:{}; expected actpass, active or passive",
            short(other)
        ))),
    }
}

/// H.264 formats among the payload types the m= line lists (an a=rtpmap alone offers nothing).
fn h264_formats(attrs: &[(&str, &str)], listed: &[u8]) -> Vec<H264Format> {
    let mut out = Vec::new();
    let mut rtx_apt: Vec<(u8, u8)> = Vec::new();
    for (name, val) in attrs {
        if *name != "rtpmap" {
            continue;
        }
        let Some((pt, enc)) = val.split_once(' ') else {
            continue;
        };
        let Ok(pt) = pt.parse::<u8>() else { continue };
        let codec = enc.split('/').next().unwrap_or("");
        if codec.eq_ignore_ascii_case("H264") && listed.contains(&pt) {
            out.push(H264Format {
                pt,
                profile_level_id: None,
                packetization_mode: 0,
                rtx: None,
            });
        }
    }
    for (name, val) in attrs {
        if *name != "fmtp" {
            continue;
        }
        let Some((pt, params)) = val.split_once(' ') else {
            continue;
        };
        let Ok(pt) = pt.parse::<u8>() else { continue };
        for kv in params.split(';') {
            let (k, v) = kv.trim().split_once('=').unwrap_or((kv.trim(), ""));
            match k {
                "apt" => {
                    if let Ok(apt) = v.parse::<u8>() {
                        rtx_apt.push((pt, apt));
                    }
                }
                "profile-level-id" => {
                    if let Some(f) = out.iter_mut().find(|f| f.pt == pt) {
                        f.profile_level_id = u32::from_str_radix(v, 16)
                            .ok()
                            .filter(|p| *p <= 0xFF_FFFF && v.len() == 6);
                    }
                }
                "packetization-mode" => {
                    if let Some(f) = out.iter_mut().find(|f| f.pt == pt) {
                        f.packetization_mode = v.parse().unwrap_or(u8::MAX);
                    }
                }
                _ => {}
            }
        }
    }
    for (rtx, apt) in rtx_apt.into_iter().filter(|(rtx, _)| listed.contains(rtx)) {
        if let Some(f) = out.iter_mut().find(|f| f.pt == apt) {
            f.rtx = Some(rtx);
        }
    }
    out
}

/// VP8 payload types among those the m= line lists, each with its RTX (`apt`) payload type.
fn vp8_formats(attrs: &[(&str, &str)], listed: &[u8]) -> Vec<(u8, Option<u8>)> {
    let rtpmaps = attrs.iter().filter(|(n, _)| *n == "rtpmap");
    let mut vp8: Vec<u8> = rtpmaps
        .filter_map(|(_, v)| {
            let (pt, enc) = v.split_once(' ')?;
            let pt = pt.parse::<u8>().ok()?;
            let codec = enc.split('/').next().unwrap_or("");
            (codec.eq_ignore_ascii_case("VP8") && listed.contains(&pt)).then_some(pt)
        })
        .collect();
    // The offerer's order of preference is the m= line's.
    vp8.sort_by_key(|pt| listed.iter().position(|l| l == pt));
    vp8.into_iter()
        .map(|pt| (pt, rtx_of(attrs, listed, pt)))
        .collect()
}

/// The listed RTX payload type whose `a=fmtp:... apt=` names `pt`.
fn rtx_of(attrs: &[(&str, &str)], listed: &[u8], pt: u8) -> Option<u8> {
    attrs
        .iter()
        .filter(|(n, _)| *n == "fmtp")
        .filter_map(|(_, v)| {
            let (rtx, params) = v.split_once(' ')?;
            let rtx = rtx.parse::<u8>().ok().filter(|r| listed.contains(r))?;
            params
                .split(';')
                .any(|kv| kv.trim() == format!("apt={pt}"))
                .then_some(rtx)
        })
        .next()
}

fn short(s: &str) -> String {
    let mut end = s.len().min(60);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99";

    fn offer(video_fmts: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99\r\nc=IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=fingerprint:{FP}\r\n\
             a=setup:actpass\r\na=mid:0\r\na=recvonly\r\n{video_fmts}"
        )
    }

    #[test]
    fn picks_first_constrained_baseline_mode_1_and_its_rtx() {
        let sdp = offer(
            "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 H264/90000\r\n\
             a=fmtp:97 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
             a=rtpmap:98 H264/90000\r\n\
             a=fmtp:98 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
             a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\n",
        );
        // VP8 listed first (as Chromium lists it) does not win over servable H.264.
        let c = OfferSummary::parse(&sdp)
            .unwrap()
            .choose_video(true)
            .unwrap();
        assert_eq!(c.codec, VideoCodec::H264);
        assert_eq!(c.pt, 98);
        assert_eq!(c.rtx, Some(99));
        assert_eq!(c.profile_level_id, Some(0x42e01f));
        assert_eq!(c.mid.as_deref(), Some("0"));
    }

    #[test]
    fn an_mline_without_rtcp_mux_is_refused_only_when_taken() {
        let fmts = "a=rtpmap:98 H264/90000\r\n\
                    a=fmtp:98 packetization-mode=1;profile-level-id=42e01f\r\n";
        let bare = OfferSummary::parse(&offer(fmts)).unwrap();
        let err = bare.require_rtcp_mux(&[0]).unwrap_err();
        assert_eq!(err.code(), "no_rtcp_mux");
        assert!(err.to_string().contains("m-line 1 (video)"), "{err}");
        // Not taken (e.g. rejected with port 0): no objection.
        assert_eq!(bare.require_rtcp_mux(&[]), Ok(()));
        let muxed = OfferSummary::parse(&offer(&format!("a=rtcp-mux\r\n{fmts}"))).unwrap();
        assert_eq!(muxed.require_rtcp_mux(&[0]), Ok(()));
    }

    #[test]
    fn vp8_only_is_answered_vp8_where_the_avatar_can_be() {
        let vp8 = offer(
            "a=rtpmap:97 VP8/90000\r\na=rtpmap:96 VP8/90000\r\n\
             a=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=96\r\n",
        );
        let o = OfferSummary::parse(&vp8).unwrap();
        // The m= line lists 96 before 97: that is the offerer's preference.
        let c = o.choose_video(true).unwrap();
        assert_eq!((c.codec, c.pt, c.rtx), (VideoCodec::Vp8, 96, Some(98)));
        // An avatar that can only be sent as H.264 (a renderer's pass-through).
        let err = o.choose_video(false).unwrap_err();
        assert_eq!(err, SignalError::NoH264ForAvatar);
        assert_eq!(err.code(), "no_h264");
        let neither = offer("a=rtpmap:99 AV1/90000\r\n");
        assert_eq!(
            OfferSummary::parse(&neither).unwrap().choose_video(true),
            Err(SignalError::NoH264)
        );
    }

    #[test]
    fn high_profile_only_is_no_profile_unless_vp8_is_there_too() {
        let high =
            "a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1;profile-level-id=64001f\r\n";
        let err = OfferSummary::parse(&offer(high))
            .unwrap()
            .choose_video(true)
            .unwrap_err();
        assert_eq!(err.code(), "no_h264_profile");
        assert!(err.to_string().contains("64001f"), "{err}");
        let with_vp8 = offer(&format!("{high}a=rtpmap:96 VP8/90000\r\n"));
        let o = OfferSummary::parse(&with_vp8).unwrap();
        assert_eq!(o.choose_video(true).unwrap().codec, VideoCodec::Vp8);
        assert_eq!(o.choose_video(false).unwrap_err().code(), "no_h264_profile");
    }

    #[test]
    fn missing_ice_or_dtls_attributes_are_named() {
        let sdp = offer("a=rtpmap:97 H264/90000\r\n");
        let no_ufrag = sdp.replace("a=ice-ufrag:abcd\r\n", "");
        let e = OfferSummary::parse(&no_ufrag).unwrap_err();
        assert!(e.to_string().contains("ice-ufrag"), "{e}");
        let cut_fp = sdp.replace(FP, "sha-256 AA:BB:C");
        let e = OfferSummary::parse(&cut_fp).unwrap_err();
        assert!(e.to_string().contains("fingerprint"), "{e}");
    }

    #[test]
    fn a_format_missing_from_the_m_line_is_not_offered() {
        let sdp = offer(
            "a=rtpmap:98 H264/90000\r\n\
             a=fmtp:98 packetization-mode=1;profile-level-id=42e01f\r\n\
             a=rtpmap:100 rtx/90000\r\na=fmtp:100 apt=98\r\n\
             a=rtpmap:101 H264/90000\r\n\
             a=fmtp:101 packetization-mode=1;profile-level-id=42001f\r\n",
        );
        let c = OfferSummary::parse(&sdp)
            .unwrap()
            .choose_video(true)
            .unwrap();
        assert_eq!((c.pt, c.rtx), (98, None), "100 and 101 are not listed");
    }

    #[test]
    fn video_the_viewer_does_not_receive_is_no_video() {
        let sdp = offer(
            "a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1;profile-level-id=42e01f\r\n",
        );
        for dir in ["sendonly", "inactive"] {
            let o = OfferSummary::parse(&sdp.replace("a=recvonly", &format!("a={dir}"))).unwrap();
            assert_eq!(o.choose_video(true), Err(SignalError::NoVideo), "{dir}");
        }
        for dir in ["a=sendrecv", ""] {
            let o = OfferSummary::parse(&sdp.replace("a=recvonly", dir)).unwrap();
            assert_eq!(o.media[0].direction, "sendrecv");
            assert!(o.choose_video(true).is_ok(), "{dir:?}");
        }
        let session_level = sdp
            .replace("a=recvonly\r\n", "")
            .replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
        let o = OfferSummary::parse(&session_level).unwrap();
        assert_eq!(
            o.choose_video(true),
            Err(SignalError::NoVideo),
            "session-level sendonly"
        );
    }

    #[test]
    fn an_unknown_setup_role_is_invalid_sdp() {
        let sdp = offer("a=rtpmap:97 H264/90000\r\n");
        assert!(OfferSummary::parse(&sdp.replace("setup:actpass", "setup:passive")).is_ok());
        assert!(OfferSummary::parse(&sdp.replace("a=setup:actpass\r\n", "")).is_ok());
        for bad in ["Actpass", "", "holdconn"] {
            let e = OfferSummary::parse(&sdp.replace("actpass", bad)).unwrap_err();
            assert!(e.to_string().contains("a=setup"), "{e}");
        }
    }

    #[test]
    fn lf_only_line_endings_parse_like_crlf() {
        let sdp = offer(
            "a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1;profile-level-id=42001f\r\n",
        );
        let lf = sdp.replace("\r\n", "\n");
        assert_eq!(
            OfferSummary::parse(&sdp).unwrap(),
            OfferSummary::parse(&lf).unwrap()
        );
    }

    #[test]
    fn garbage_is_invalid_sdp() {
        for junk in ["", "hello", "v=0\r\n", "v=0\r\nm=video\r\n", "\u{0}\u{1}"] {
            let e = OfferSummary::parse(junk).unwrap_err();
            assert_eq!(e.code(), "invalid_sdp", "{junk:?}");
        }
    }
}
