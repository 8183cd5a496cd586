//! The seed's signaling protocol: JSON text frames on `/ws/{session_id}`.
//!
//! Client → server: `webrtc_offer` (and `client_stats` from the viewer page).
//! Server → client: `webrtc_answer`, `error`, `bye`.
//! Text becomes a typed [`ClientMessage`] here, at one boundary; anything else
//! becomes a [`SignalError`] whose code and message go back to the peer.

use serde_json::{Map, Value};

/// Longest session id accepted, in bytes.
pub const MAX_SESSION_ID_LEN: usize = crate::SessionId::MAX_LEN;
/// Longest avatar id or user id accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A parsed message from a viewer.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// An SDP offer asking for one avatar's video.
    Offer(Offer),
    /// Stats the viewer page reports every second (kept, logged at debug).
    ClientStats(Value),
}

/// The `webrtc_offer` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Session id named in the message (must equal the one in the URL).
    pub session_id: String,
    /// The seed's user id, a number or a string; only logged.
    pub user_id: Option<String>,
    /// Which avatar to watch.
    pub avatar_id: String,
    /// The SDP offer text.
    pub sdp: String,
}

/// Why a viewer's message was refused. Each maps to a stable snake_case `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalError {
    /// The text is not JSON, or not a JSON object.
    MalformedJson(String),
    /// `type` names a message this server does not know.
    UnknownType(String),
    /// A required field is absent.
    MissingField(&'static str),
    /// A field has the wrong JSON type or an unacceptable value.
    InvalidField(&'static str, String),
    /// The message's `session_id` differs from the one in the WebSocket URL.
    SessionIdMismatch {
        /// Id in the URL.
        url: String,
        /// Id in the message.
        message: String,
    },
    /// The SDP is larger than the configured bound.
    SdpTooLarge {
        /// Bytes received.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// The SDP could not be parsed.
    InvalidSdp(String),
    /// The offer has no video m-line the viewer receives on.
    NoVideo,
    /// The video m-line offers neither H.264 nor VP8.
    NoH264,
    /// The offer's video has VP8 but no H.264, and the avatar can only be sent
    /// as H.264 (its renderer sends its own H.264 stream).
    NoH264ForAvatar,
    /// H.264 is offered, but no profile/packetization the encoder can produce.
    NoH264Profile(String),
    /// An m-line the answer would take has no `a=rtcp-mux`: the server sends RTP and RTCP on
    /// one port and cannot answer an offer that did not allow it (RFC 5761, RFC 8843).
    NoRtcpMux {
        /// The m-line's position, from 1.
        mline: usize,
        /// Its kind (`video`, `audio`).
        kind: String,
    },
    /// This connection already has a negotiated session.
    AlreadyNegotiated,
    /// No avatar with that name is streaming here.
    UnknownAvatar {
        /// The name asked for.
        requested: String,
        /// The names configured.
        available: Vec<String>,
    },
    /// The session limit is reached.
    TooManySessions(usize),
    /// The per-avatar session limit is reached.
    TooManyViewers {
        /// The avatar.
        avatar: String,
        /// The limit.
        max: usize,
    },
    /// The signaling token is missing, malformed, expired or for another session.
    Token(crate::auth::TokenError),
    /// Another live connection uses the same session id.
    SessionInUse(String),
    /// The WebRTC stack refused the offer.
    OfferRejected(String),
}

impl SignalError {
    /// The stable machine-readable code sent as `"code"`.
    pub fn code(&self) -> &'static str {
        match self {
            SignalError::MalformedJson(_) => "malformed_json",
            SignalError::UnknownType(_) => "unknown_type",
            SignalError::MissingField(_) => "missing_field",
            SignalError::InvalidField(..) => "invalid_field",
            SignalError::SessionIdMismatch { .. } => "session_id_mismatch",
            SignalError::SdpTooLarge { .. } => "sdp_too_large",
            SignalError::InvalidSdp(_) => "invalid_sdp",
            SignalError::NoVideo => "no_video",
            SignalError::NoH264 | SignalError::NoH264ForAvatar => "no_h264",
            SignalError::NoH264Profile(_) => "no_h264_profile",
            SignalError::NoRtcpMux { .. } => "no_rtcp_mux",
            SignalError::AlreadyNegotiated => "already_negotiated",
            SignalError::UnknownAvatar { .. } => "unknown_avatar",
            SignalError::TooManySessions(_) => "too_many_sessions",
            SignalError::TooManyViewers { .. } => "too_many_viewers",
            SignalError::Token(e) => e.code(),
            SignalError::SessionInUse(_) => "session_in_use",
            SignalError::OfferRejected(_) => "offer_rejected",
        }
    }

    /// The `{"type":"error",...}` text for this error.
    pub fn to_json(&self) -> String {
        server_error(self.code(), &self.to_string())
    }
}

impl std::fmt::Display for SignalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignalError::MalformedJson(e) => {
                write!(f, "the message is not a JSON object ({e}); send {{\"type\":\"webrtc_offer\",...}}")
            }
            SignalError::UnknownType(t) => write!(
                f,
                "unknown message type '{t}'; this server understands 'webrtc_offer' and 'client_stats'"
            ),
            SignalError::MissingField(name) => {
                write!(f, "the message has no '{name}' field, which is required")
            }
            SignalError::InvalidField(name, why) => write!(f, "field '{name}' is invalid: {why}"),
            SignalError::SessionIdMismatch { url, message } => write!(
                f,
                "session_id '{message}' differs from the WebSocket URL's '/ws/{url}'; use the same id in both"
            ),
            SignalError::SdpTooLarge { size, max } => write!(
                f,
                "the SDP offer is {size} bytes, over the limit of {max} bytes"
            ),
            SignalError::InvalidSdp(e) => write!(f, "the SDP offer could not be parsed: {e}"),
            SignalError::NoVideo => write!(
                f,
                "the offer has no video m-line the viewer receives on (recvonly or sendrecv); add a recvonly video transceiver before createOffer"
            ),
            SignalError::NoH264 => write!(
                f,
                "the offer's video has neither H.264 nor VP8, the codecs this server sends; keep H.264 or VP8 in setCodecPreferences"
            ),
            SignalError::NoH264ForAvatar => write!(
                f,
                "the offer's video has VP8 but no H.264, and this avatar is sent only as H.264 (its renderer encodes it); use a browser with H.264 (Firefox needs the OpenH264 plugin)"
            ),
            SignalError::NoH264Profile(offered) => write!(
                f,
                "none of the offered H.264 formats ({offered}) is constrained baseline with packetization-mode=1, which is what this server encodes"
            ),
            SignalError::NoRtcpMux { mline, kind } => write!(
                f,
                "m-line {mline} ({kind}) has no a=rtcp-mux; this server sends RTP and RTCP on one port and cannot answer without it (offer a=rtcp-mux, as every WebRTC stack does by default)"
            ),
            SignalError::AlreadyNegotiated => write!(
                f,
                "this connection already has a session; renegotiation is not supported, open a new WebSocket to start again"
            ),
            SignalError::UnknownAvatar { requested, available } => write!(
                f,
                "no avatar named '{requested}' is streaming here; available: {}",
                available.join(", ")
            ),
            SignalError::TooManySessions(max) => write!(
                f,
                "the server is at its limit of {max} sessions; try again later"
            ),
            SignalError::TooManyViewers { avatar, max } => write!(
                f,
                "avatar '{avatar}' already has its limit of {max} viewers; try again later"
            ),
            SignalError::Token(e) => write!(f, "{e}"),
            SignalError::SessionInUse(id) => write!(
                f,
                "session id '{id}' is already in use by another connection; pick a new session id"
            ),
            SignalError::OfferRejected(e) => write!(f, "the offer was refused: {e}"),
        }
    }
}

impl std::error::Error for SignalError {}

/// Parses one text frame from a viewer.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, SignalError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| SignalError::MalformedJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(SignalError::MalformedJson("not an object".into()));
    };
    let kind = match obj.get("type") {
        None => return Err(SignalError::MissingField("type")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(SignalError::InvalidField("type", "must be a string".into())),
    };
    match kind {
        "webrtc_offer" => parse_offer(&obj).map(ClientMessage::Offer),
        "client_stats" => Ok(ClientMessage::ClientStats(Value::Object(obj))),
        other => Err(SignalError::UnknownType(truncate(other, 64))),
    }
}

fn parse_offer(obj: &Map<String, Value>) -> Result<Offer, SignalError> {
    let session_id = required_str(obj, "session_id", MAX_SESSION_ID_LEN)?;
    let avatar_id = required_str(obj, "avatar_id", MAX_NAME_LEN)?;
    // The SDP's own bound is checked by the engine (it is configurable).
    let sdp = match obj.get("sdp") {
        None | Some(Value::Null) => return Err(SignalError::MissingField("sdp")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(SignalError::InvalidField("sdp", "must be a string".into())),
    };
    // The seed sends a number; other clients send a string. Both are fine.
    let user_id = match obj.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if s.len() <= MAX_NAME_LEN => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(SignalError::InvalidField(
                "user_id",
                format!("longer than {MAX_NAME_LEN} bytes"),
            ))
        }
        Some(_) => {
            return Err(SignalError::InvalidField(
                "user_id",
                "must be a number or a string".into(),
            ))
        }
    };
    Ok(Offer {
        session_id,
        user_id,
        avatar_id,
        sdp,
    })
}

fn required_str(
    obj: &Map<String, Value>,
    name: &'static str,
    max: usize,
) -> Result<String, SignalError> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(SignalError::MissingField(name)),
        Some(Value::String(s)) if s.is_empty() => {
            Err(SignalError::InvalidField(name, "must not be empty".into()))
        }
        Some(Value::String(s)) if s.len() > max => Err(SignalError::InvalidField(
            name,
            format!("longer than {max} bytes"),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(SignalError::InvalidField(name, "must be a string".into())),
    }
}

/// The `{"type":"webrtc_answer","sdp":...}` text.
pub fn server_answer(sdp: &str) -> String {
    serde_json::json!({ "type": "webrtc_answer", "sdp": sdp }).to_string()
}

/// A `{"type":"error","code":...,"message":...}` text.
pub fn server_error(code: &str, message: &str) -> String {
    serde_json::json!({ "type": "error", "code": code, "message": message }).to_string()
}

/// The `{"type":"rendition","rendition":...}` text telling a viewer it now
/// receives another rendition of its avatar (`top`, `360p`).
pub fn server_rendition(name: &str) -> String {
    serde_json::json!({ "type": "rendition", "rendition": name }).to_string()
}

/// The `{"type":"bye","reason":...}` text sent when the server ends a session.
pub fn server_bye(reason: &str) -> String {
    serde_json::json!({ "type": "bye", "reason": reason }).to_string()
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer_json(extra: &str) -> String {
        format!(r#"{{"type":"webrtc_offer","session_id":"s1","avatar_id":"a","sdp":"v=0"{extra}}}"#)
    }

    #[test]
    fn seed_offer_with_numeric_user_id_parses() {
        let m = parse_client_message(&offer_json(r#","user_id":5,"extra":[1,2]"#)).unwrap();
        let ClientMessage::Offer(o) = m else {
            panic!("not an offer")
        };
        assert_eq!(o.user_id.as_deref(), Some("5"));
        assert_eq!(o.session_id, "s1");
        assert_eq!(o.avatar_id, "a");
    }

    #[test]
    fn string_user_id_is_accepted_and_absent_user_id_is_none() {
        let ClientMessage::Offer(o) =
            parse_client_message(&offer_json(r#","user_id":"u-9""#)).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.user_id.as_deref(), Some("u-9"));
        let ClientMessage::Offer(o) = parse_client_message(&offer_json("")).unwrap() else {
            panic!()
        };
        assert_eq!(o.user_id, None);
    }

    #[test]
    fn bad_messages_get_their_codes() {
        let cases = [
            ("not json", "malformed_json"),
            ("[1,2]", "malformed_json"),
            (r#"{"sdp":"x"}"#, "missing_field"),
            (r#"{"type":7}"#, "invalid_field"),
            (r#"{"type":"hello"}"#, "unknown_type"),
            (
                r#"{"type":"webrtc_offer","avatar_id":"a","sdp":"x"}"#,
                "missing_field",
            ),
            (
                r#"{"type":"webrtc_offer","session_id":"s","sdp":"x"}"#,
                "missing_field",
            ),
            (
                r#"{"type":"webrtc_offer","session_id":"s","avatar_id":"a"}"#,
                "missing_field",
            ),
            (
                r#"{"type":"webrtc_offer","session_id":"s","avatar_id":"a","sdp":1}"#,
                "invalid_field",
            ),
            (
                r#"{"type":"webrtc_offer","session_id":"","avatar_id":"a","sdp":"x"}"#,
                "invalid_field",
            ),
            (
                r#"{"type":"webrtc_offer","session_id":"s","avatar_id":"a","sdp":"x","user_id":[]}"#,
                "invalid_field",
            ),
        ];
        for (text, code) in cases {
            let err = parse_client_message(text).unwrap_err();
            assert_eq!(err.code(), code, "for {text}: {err}");
            let v: Value = serde_json::from_str(&err.to_json()).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["code"], code);
            assert!(!v["message"].as_str().unwrap().is_empty());
        }
    }

    #[test]
    fn unknown_type_is_truncated_in_the_message() {
        let long = "z".repeat(1000);
        let err = parse_client_message(&format!(r#"{{"type":"{long}"}}"#)).unwrap_err();
        assert!(err.to_string().len() < 200);
    }
}
