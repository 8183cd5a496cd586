//! SDP as lines grouped into the session part and one part per m-line.
//!
//! The answer rewrite ([`crate::answer`]) and the answer checks
//! ([`crate::answer_check`]) work on SDP text that str0m either has not seen
//! yet or has already written, and str0m exposes no SDP model. This view never
//! fails: it splits on `\n`, drops a trailing `\r` (RFC 8866 asks parsers to
//! accept bare LF, and libwebrtc does) and skips empty lines; deciding whether
//! the text is acceptable is left to the reader.

/// An SDP split into its session lines and its media sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SdpText<'a> {
    /// Lines before the first `m=` line, verbatim (`v=0`, `a=group:BUNDLE 0`, ...).
    pub session: Vec<&'a str>,
    /// One entry per `m=` line, in order.
    pub media: Vec<MediaText<'a>>,
}

/// One media section: its `m=` line and the lines up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaText<'a> {
    /// The `m=` line without `m=`: `video 9 UDP/TLS/RTP/SAVPF 96 97`.
    pub mline: &'a str,
    /// The section's other lines, verbatim (`c=...`, `a=...`).
    pub lines: Vec<&'a str>,
}

impl<'a> SdpText<'a> {
    /// Splits `sdp` into lines and sections.
    pub fn parse(sdp: &'a str) -> Self {
        let mut text = SdpText {
            session: Vec::new(),
            media: Vec::new(),
        };
        for raw in sdp.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            if let Some(mline) = line.strip_prefix("m=") {
                text.media.push(MediaText {
                    mline,
                    lines: Vec::new(),
                });
            } else if let Some(m) = text.media.last_mut() {
                m.lines.push(line);
            } else {
                text.session.push(line);
            }
        }
        text
    }

    /// Session-level attributes as `(name, value)`; `a=ice-lite` gives `("ice-lite", "")`.
    pub fn session_attrs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        attrs(&self.session)
    }

    /// The mids of every session-level `a=group:BUNDLE` line, in order, all groups joined.
    pub fn bundle_mids(&self) -> Option<Vec<&'a str>> {
        bundle_mids(self.session_attrs())
    }
}

/// The mids of every `a=group:BUNDLE` among session attributes `(name, value)`, in
/// order, all groups joined; `None` when there is no such group.
pub fn bundle_mids<'a>(
    session_attrs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Vec<&'a str>> {
    let mut found = None;
    for (name, value) in session_attrs {
        if name != "group" {
            continue;
        }
        let mut tokens = value.split(' ').filter(|t| !t.is_empty());
        if tokens.next() == Some("BUNDLE") {
            found.get_or_insert_with(Vec::new).extend(tokens);
        }
    }
    found
}

impl<'a> MediaText<'a> {
    /// The media type: `audio`, `video`, `application`, ...
    pub fn kind(&self) -> &'a str {
        self.mline.split(' ').next().unwrap_or("")
    }

    /// The port field (without a `/count` suffix), if it is a number.
    pub fn port(&self) -> Option<u16> {
        self.mline
            .split(' ')
            .nth(1)
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
    }

    /// The transport protocol: `UDP/TLS/RTP/SAVPF`, `UDP/DTLS/SCTP`, ...
    pub fn proto(&self) -> &'a str {
        self.mline.split(' ').nth(2).unwrap_or("")
    }

    /// The format list: payload types for RTP, `webrtc-datachannel` for SCTP.
    pub fn formats(&self) -> impl Iterator<Item = &'a str> {
        self.mline.split(' ').skip(3).filter(|t| !t.is_empty())
    }

    /// Whether the section carries RTP (its direction and payload types then mean something).
    pub fn is_rtp(&self) -> bool {
        self.proto().split('/').any(|p| p == "RTP")
    }

    /// The section's attributes as `(name, value)`.
    pub fn attrs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        attrs(&self.lines)
    }

    /// The value of the first attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&'a str> {
        self.attrs().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// `a=mid`, if present.
    pub fn mid(&self) -> Option<&'a str> {
        self.attr("mid")
    }

    /// The direction attribute (`sendonly`, ...), if present.
    pub fn direction(&self) -> Option<&'a str> {
        self.attrs()
            .map(|(n, _)| n)
            .find(|n| matches!(*n, "sendrecv" | "sendonly" | "recvonly" | "inactive"))
    }
}

fn attrs<'a, 'b>(lines: &'b [&'a str]) -> impl Iterator<Item = (&'a str, &'a str)> + 'b {
    lines.iter().filter_map(|l| {
        let value = l.strip_prefix("a=")?;
        Some(value.split_once(':').unwrap_or((value, "")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\na=ice-lite\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n\
        m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n";

    #[test]
    fn sections_split_at_m_lines() {
        let t = SdpText::parse(SDP);
        assert_eq!(t.session.len(), 6);
        assert_eq!(t.media.len(), 2);
        assert_eq!(t.media[0].kind(), "video");
        assert_eq!(t.media[0].port(), Some(9));
        assert_eq!(t.media[0].proto(), "UDP/TLS/RTP/SAVPF");
        assert_eq!(t.media[0].formats().collect::<Vec<_>>(), ["96", "97"]);
        assert_eq!(t.media[0].mid(), Some("0"));
        assert_eq!(t.media[0].direction(), Some("recvonly"));
        assert!(t.media[0].is_rtp());
        assert_eq!(t.media[1].port(), Some(0));
        assert!(!t.media[1].is_rtp());
        assert_eq!(t.bundle_mids(), Some(vec!["0", "1"]));
        assert!(t.session_attrs().any(|(n, _)| n == "ice-lite"));
    }

    #[test]
    fn lf_only_text_splits_like_crlf() {
        assert_eq!(
            SdpText::parse(SDP),
            SdpText::parse(&SDP.replace("\r\n", "\n"))
        );
    }

    #[test]
    fn no_bundle_group_is_none_and_junk_does_not_panic() {
        let t = SdpText::parse("v=0\nm=\nm=video x\na=\n\u{0}\n");
        assert_eq!(t.bundle_mids(), None);
        assert_eq!(t.media.len(), 2);
        assert_eq!(t.media[0].kind(), "");
        assert_eq!(t.media[1].port(), None);
        assert_eq!(t.media[1].proto(), "");
        assert_eq!(t.media[1].attr(""), Some(""));
    }
}
