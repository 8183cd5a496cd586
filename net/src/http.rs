//! HTTP/1.1 request heads, parsed with httparse, and the few responses the daemon gives.
//!
//! The signaling port serves the viewer page at `/`, a liveness probe at
//! `/healthz`, and WebSocket upgrades at `/ws/{session_id}`. Nothing else.

use portcast_engine::SessionId;

/// Most headers a request may carry.
const MAX_HEADERS: usize = 48;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `GET /`: the embedded viewer page.
    ViewerPage,
    /// `GET /healthz`: the process answers.
    Health,
    /// `GET /readyz`: sockets bound and sources alive.
    Ready,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /ws/{session_id}` with a valid WebSocket upgrade.
    WebSocket {
        /// Session id from the path.
        session_id: SessionId,
        /// `Sec-WebSocket-Key`.
        key: String,
        /// `?token=` from the query string, if any.
        token: Option<String>,
        /// The `Origin` header, if any.
        origin: Option<String>,
    },
}

/// Why a request is refused; each maps to a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The bytes are not an HTTP/1.x request head.
    Malformed(String),
    /// The head is larger than allowed.
    HeadTooLarge,
    /// A method other than GET.
    MethodNotAllowed,
    /// No such path.
    NotFound,
    /// `/ws/` with an unusable session id.
    BadSessionId,
    /// `/ws/{id}` without a proper WebSocket upgrade.
    UpgradeRequired(&'static str),
}

impl HttpError {
    /// The response to send before closing.
    pub fn response(&self) -> Vec<u8> {
        let (status, body) = match self {
            HttpError::Malformed(e) => ("400 Bad Request", format!("malformed request: {e}\n")),
            HttpError::HeadTooLarge => (
                "431 Request Header Fields Too Large",
                "request head too large\n".to_string(),
            ),
            HttpError::MethodNotAllowed => {
                ("405 Method Not Allowed", "only GET is served\n".into())
            }
            HttpError::NotFound => (
                "404 Not Found",
                "not found; the viewer is at / and signaling at /ws/{session_id}\n".into(),
            ),
            HttpError::BadSessionId => (
                "400 Bad Request",
                "session id must be 1-128 characters of A-Z a-z 0-9 . _ ~ -\n".into(),
            ),
            HttpError::UpgradeRequired(why) => (
                "426 Upgrade Required",
                format!("/ws/{{session_id}} is a WebSocket endpoint: {why}\n"),
            ),
        };
        response(status, "text/plain; charset=utf-8", body.as_bytes())
    }
}

/// Parses a request head from `buf`; `Ok(None)` means more bytes are needed.
/// On success returns the request and the length of the head.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_head {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if len > max_head {
        return Err(HttpError::HeadTooLarge);
    }
    if req.method != Some("GET") {
        return Err(HttpError::MethodNotAllowed);
    }
    let target = req.path.unwrap_or("/");
    let target = target.split('#').next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let request = match path {
        "/" | "/index.html" => Request::ViewerPage,
        "/healthz" => Request::Health,
        "/readyz" => Request::Ready,
        "/metrics" => Request::Metrics,
        p if p.starts_with("/ws/") => {
            let Ok(session_id) = SessionId::parse(&p[4..]) else {
                return Err(HttpError::BadSessionId);
            };
            let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            let connection = header("connection").is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            });
            if !upgrade || !connection {
                return Err(HttpError::UpgradeRequired("missing Upgrade: websocket"));
            }
            if header("sec-websocket-version") != Some("13") {
                return Err(HttpError::UpgradeRequired(
                    "Sec-WebSocket-Version must be 13",
                ));
            }
            let Some(key) = header("sec-websocket-key").filter(|k| !k.is_empty()) else {
                return Err(HttpError::UpgradeRequired("missing Sec-WebSocket-Key"));
            };
            Request::WebSocket {
                session_id,
                key: key.to_string(),
                token: query_param(query, "token").map(str::to_string),
                origin: header("origin").map(str::to_string),
            }
        }
        _ => return Err(HttpError::NotFound),
    };
    Ok(Some((request, len)))
}

/// The raw value of `name` in a query string (tokens need no percent-decoding).
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A complete `Connection: close` response.
pub fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The `101 Switching Protocols` response for a WebSocket key.
pub fn upgrade_response(key: &str) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8192;

    fn ws_head(path: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    }

    #[test]
    fn websocket_upgrade_with_session_id_is_recognised() {
        let head = ws_head("/ws/session-123?token=abc");
        let (req, len) = parse_head(head.as_bytes(), MAX).unwrap().unwrap();
        assert_eq!(len, head.len());
        assert_eq!(
            req,
            Request::WebSocket {
                session_id: SessionId::parse("session-123").unwrap(),
                key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
                token: Some("abc".into()),
                origin: None,
            }
        );
        // RFC 6455's own example key and accept value.
        let resp = String::from_utf8(upgrade_response("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn partial_heads_wait_and_oversized_heads_are_refused() {
        let head = ws_head("/ws/a");
        assert_eq!(parse_head(&head.as_bytes()[..20], MAX), Ok(None));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX));
        assert_eq!(
            parse_head(huge.as_bytes(), MAX),
            Err(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn bad_requests_get_their_status() {
        let cases: [(&str, &str); 6] = [
            ("POST / HTTP/1.1\r\n\r\n", "405"),
            ("GET /nope HTTP/1.1\r\n\r\n", "404"),
            ("GET /ws/a%2Fb HTTP/1.1\r\n\r\n", "400"),
            ("GET /ws/abc HTTP/1.1\r\n\r\n", "426"),
            ("\x16\x03\x01\x02\x00\r\n\r\n", "400"),
            ("GET / HTTP/1.1\r\nbad header\r\n\r\n", "400"),
        ];
        for (head, status) in cases {
            let err = parse_head(head.as_bytes(), MAX).unwrap_err();
            let resp = String::from_utf8(err.response()).unwrap();
            assert!(
                resp.starts_with(&format!("HTTP/1.1 {status}")),
                "{head:?} -> {resp}"
            );
        }
        assert_eq!(
            parse_head(b"GET /?x=1 HTTP/1.1\r\n\r\n", MAX)
                .unwrap()
                .unwrap()
                .0,
            Request::ViewerPage
        );
    }
}
