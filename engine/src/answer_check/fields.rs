//! Readers of the SDP fields the answer checks look at: an m-line's payload
//! formats, host candidates, fingerprints. Written apart from the engine's own
//! SDP code on purpose (see the parent module).

use std::net::SocketAddr;

use crate::sdp_text::MediaText;

/// The payload formats of an RTP m-line: its format list with rtpmap and fmtp.
pub(super) struct Formats<'a> {
    pub(super) list: Vec<Format<'a>>,
}

/// One payload format of an m-line.
pub(super) struct Format<'a> {
    pub(super) pt: u8,
    pub(super) codec: &'a str,
    /// What follows the codec name in `a=rtpmap`: `90000`, `48000/2`.
    pub(super) clock: &'a str,
    pub(super) params: Vec<(&'a str, &'a str)>,
}

impl<'a> Formats<'a> {
    pub(super) fn of(m: &MediaText<'a>) -> Self {
        let list = m
            .formats()
            .filter_map(|f| f.parse::<u8>().ok())
            .map(|pt| {
                let rtpmap = attr_for_pt(m, "rtpmap", pt).unwrap_or("");
                let (codec, clock) = rtpmap.split_once('/').unwrap_or((rtpmap, ""));
                let params = attr_for_pt(m, "fmtp", pt)
                    .map(|v| {
                        v.split(';')
                            .map(|kv| {
                                let kv = kv.trim();
                                kv.split_once('=').unwrap_or((kv, ""))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Format {
                    pt,
                    codec,
                    clock,
                    params,
                }
            })
            .collect();
        Formats { list }
    }

    pub(super) fn get(&self, pt: u8) -> Option<&Format<'a>> {
        self.list.iter().find(|f| f.pt == pt)
    }
}

impl Format<'_> {
    pub(super) fn is(&self, codec: &str) -> bool {
        self.codec.eq_ignore_ascii_case(codec)
    }

    pub(super) fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }
}

/// The value after `<pt> ` of the first `a=<name>:<pt> ...` line.
fn attr_for_pt<'a>(m: &MediaText<'a>, name: &str, pt: u8) -> Option<&'a str> {
    let pt = pt.to_string();
    m.attrs().filter(|(n, _)| *n == name).find_map(|(_, v)| {
        v.split_once(' ')
            .filter(|(p, _)| *p == pt)
            .map(|(_, rest)| rest)
    })
}

/// The address of a UDP host candidate, or of a passive TCP host candidate
/// (RFC 6544: the only TCP kind an ICE-lite server can offer).
pub(super) fn host_candidate(value: &str) -> Option<SocketAddr> {
    let f: Vec<&str> = value.split(' ').collect();
    let addr = |ip: &str, port: &str| Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?));
    match f[..] {
        [_, _, transport, _, ip, port, "typ", "host", ..]
            if transport.eq_ignore_ascii_case("udp") =>
        {
            addr(ip, port)
        }
        [_, _, transport, _, ip, port, "typ", "host", ref rest @ ..]
            if transport.eq_ignore_ascii_case("tcp")
                && rest.windows(2).any(|w| w == ["tcptype", "passive"]) =>
        {
            addr(ip, port)
        }
        _ => None,
    }
}

/// Whether `<hash> XX:XX:...` names a known hash and carries its full digest.
pub(super) fn complete_fingerprint(value: &str) -> bool {
    let Some((hash, hex)) = value.split_once(' ') else {
        return false;
    };
    let len = match hash.to_ascii_lowercase().as_str() {
        "sha-1" => 20,
        "sha-224" => 28,
        "sha-256" => 32,
        "sha-384" => 48,
        "sha-512" => 64,
        _ => return false,
    };
    let bytes: Vec<&str> = hex.split(':').collect();
    bytes.len() == len
        && bytes
            .iter()
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()))
}
