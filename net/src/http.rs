//! HTTP/1.1 request heads, parsed with httparse; routing over a table of
//! [`Route`]s; the few responses the daemon gives.
//!
//! The daemon's routes are one table, `server::routes::ROUTES`: a method, a
//! path and what answers it. [`route`] finds a request's route or says
//! 404 / 405 from that table.

use portcast_engine::SessionId;

/// Most headers a request may carry.
const MAX_HEADERS: usize = 48;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without query or fragment.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Header names and values (values trimmed; non-UTF-8 values dropped).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw value of `name` in the query string.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_param(&self.query, name)
    }

    /// A WebSocket upgrade to `/ws/{session_id}`, checked.
    pub fn websocket(&self, session_id: &str) -> Result<WebSocketRequest, HttpError> {
        let Ok(session_id) = SessionId::parse(session_id) else {
            return Err(HttpError::BadSessionId);
        };
        let upgrade = self
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let connection = self.header("connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
        if !upgrade || !connection {
            return Err(HttpError::UpgradeRequired("missing Upgrade: websocket"));
        }
        if self.header("sec-websocket-version") != Some("13") {
            return Err(HttpError::UpgradeRequired(
                "Sec-WebSocket-Version must be 13",
            ));
        }
        let Some(key) = self.header("sec-websocket-key").filter(|k| !k.is_empty()) else {
            return Err(HttpError::UpgradeRequired("missing Sec-WebSocket-Key"));
        };
        Ok(WebSocketRequest {
            session_id,
            key: key.to_string(),
            token: self.query_param("token").map(str::to_string),
            origin: self.header("origin").map(str::to_string),
        })
    }
}

/// `GET /ws/{session_id}` with a valid WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketRequest {
    /// Session id from the path.
    pub session_id: SessionId,
    /// `Sec-WebSocket-Key`.
    pub key: String,
    /// `?token=` from the query string, if any.
    pub token: Option<String>,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
}

/// One route: a method, a path and what answers it. A path ending in a
/// `{name}` segment matches any one non-empty segment there (handed to the
/// answer as the route's parameter).
#[derive(Debug)]
pub struct Route<A: 'static> {
    /// The method, e.g. `GET`.
    pub method: &'static str,
    /// The path, e.g. `/metrics` or `/ws/{session_id}`.
    pub path: &'static str,
    /// What answers it.
    pub answer: A,
}

impl<A> Route<A> {
    /// The parameter when `path` matches this route's path.
    fn matches<'p>(&self, path: &'p str) -> Option<&'p str> {
        match self.path.find('{') {
            None => (self.path == path).then_some(""),
            Some(i) => path
                .strip_prefix(&self.path[..i])
                .filter(|p| !p.is_empty() && !p.contains('/')),
        }
    }
}

/// The route `head` asks for, as an index into `routes`, and its parameter;
/// or 404 (naming what is served) or 405 (naming the methods the path allows).
pub fn route<'h, A>(routes: &[Route<A>], head: &'h Head) -> Result<(usize, &'h str), HttpError> {
    let mut allow = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        if let Some(param) = r.matches(&head.path) {
            if r.method == head.method {
                return Ok((i, param));
            }
            if !allow.contains(&r.method) {
                allow.push(r.method);
            }
        }
    }
    if allow.is_empty() {
        let mut served: Vec<String> = Vec::new();
        for r in routes {
            let s = format!("{} {}", r.method, r.path);
            if !served.contains(&s) {
                served.push(s);
            }
        }
        Err(HttpError::NotFound(served.join(", ")))
    } else {
        Err(HttpError::MethodNotAllowed(allow.join(", ")))
    }
}

/// Why a request is refused; each maps to a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The bytes are not an HTTP/1.x request head.
    Malformed(String),
    /// The head is larger than allowed.
    HeadTooLarge,
    /// The path is served, but not with this method; the methods it allows.
    MethodNotAllowed(String),
    /// No such path; the routes that are served.
    NotFound(String),
    /// `/ws/` with an unusable session id.
    BadSessionId,
    /// `/ws/{id}` without a proper WebSocket upgrade.
    UpgradeRequired(&'static str),
    /// A request that carries a body without saying its `Content-Length`.
    LengthRequired,
    /// A body over the limit (the limit).
    PayloadTooLarge(usize),
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
            HttpError::MethodNotAllowed(allow) => {
                return response_with(
                    "405 Method Not Allowed",
                    "text/plain; charset=utf-8",
                    &[("Allow", allow)],
                    format!("this path answers {allow}\n").as_bytes(),
                );
            }
            HttpError::NotFound(served) => (
                "404 Not Found",
                format!("not found; this port serves {served}\n"),
            ),
            HttpError::BadSessionId => (
                "400 Bad Request",
                "session id must be 1-128 characters of A-Z a-z 0-9 . _ ~ -\n".into(),
            ),
            HttpError::UpgradeRequired(why) => (
                "426 Upgrade Required",
                format!("/ws/{{session_id}} is a WebSocket endpoint: {why}\n"),
            ),
            HttpError::LengthRequired => (
                "411 Length Required",
                "send the body with a Content-Length (chunked bodies are not read)\n".into(),
            ),
            HttpError::PayloadTooLarge(max) => (
                "413 Content Too Large",
                format!("the body is over the {max}-byte limit\n"),
            ),
        };
        response(status, "text/plain; charset=utf-8", body.as_bytes())
    }
}

/// Parses a request head from `buf`; `Ok(None)` means more bytes are needed.
/// On success returns the head and its length.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<(Head, usize)>, HttpError> {
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
    let target = req.path.unwrap_or("/");
    let target = target.split('#').next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let head = Head {
        method: req.method.unwrap_or("GET").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: req
            .headers
            .iter()
            .filter_map(|h| {
                let v = std::str::from_utf8(h.value).ok()?;
                Some((h.name.to_string(), v.trim().to_string()))
            })
            .collect(),
    };
    Ok(Some((head, len)))
}

impl Head {
    /// The body length the head announces: 0 without one; an error for a
    /// chunked body, a malformed length or one over `max`.
    pub fn body_len(&self, max: usize) -> Result<usize, HttpError> {
        if self.header("transfer-encoding").is_some() {
            return Err(HttpError::LengthRequired);
        }
        let Some(v) = self.header("content-length") else {
            return Ok(0);
        };
        let len: usize = v
            .parse()
            .map_err(|_| HttpError::Malformed(format!("Content-Length {v:?}")))?;
        if len > max {
            return Err(HttpError::PayloadTooLarge(max));
        }
        Ok(len)
    }
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
    response_with(status, content_type, &[], body)
}

/// A complete `Connection: close` response with extra headers (no
/// `Content-Type` when `content_type` is empty, as for a 204).
pub fn response_with(
    status: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    ));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
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

    const ROUTES: &[Route<&str>] = &[
        Route {
            method: "GET",
            path: "/",
            answer: "page",
        },
        Route {
            method: "GET",
            path: "/ws/{session_id}",
            answer: "ws",
        },
        Route {
            method: "DELETE",
            path: "/ws/{session_id}",
            answer: "end",
        },
    ];

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes(), MAX).unwrap().unwrap().0
    }

    fn ws_head(path: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    }

    #[test]
    fn websocket_upgrade_with_session_id_is_recognised() {
        let text = ws_head("/ws/session-123?token=abc");
        let (h, len) = parse_head(text.as_bytes(), MAX).unwrap().unwrap();
        assert_eq!(len, text.len());
        let (i, id) = route(ROUTES, &h).unwrap();
        assert_eq!((ROUTES[i].answer, id), ("ws", "session-123"));
        assert_eq!(
            h.websocket(id).unwrap(),
            WebSocketRequest {
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
        let text = ws_head("/ws/a");
        assert_eq!(parse_head(&text.as_bytes()[..20], MAX), Ok(None));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX));
        assert_eq!(
            parse_head(huge.as_bytes(), MAX),
            Err(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn routes_come_from_the_table() {
        let answer =
            |text: &str| route(ROUTES, &head(text)).map(|(i, p)| (ROUTES[i].answer, p.to_string()));
        assert_eq!(
            answer("GET /?x=1 HTTP/1.1\r\n\r\n"),
            Ok(("page", String::new()))
        );
        assert_eq!(
            answer("DELETE /ws/s1 HTTP/1.1\r\n\r\n"),
            Ok(("end", "s1".into()))
        );
        // A parameter is one non-empty segment.
        for path in ["/ws/", "/ws/a/b", "/nope", "/index"] {
            let err = answer(&format!("GET {path} HTTP/1.1\r\n\r\n")).unwrap_err();
            assert_eq!(
                err,
                HttpError::NotFound("GET /, GET /ws/{session_id}, DELETE /ws/{session_id}".into()),
                "{path}"
            );
        }
        let err = answer("POST /ws/s1 HTTP/1.1\r\n\r\n").unwrap_err();
        assert_eq!(err, HttpError::MethodNotAllowed("GET, DELETE".into()));
        let resp = String::from_utf8(err.response()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
        assert!(resp.contains("\r\nAllow: GET, DELETE\r\n"), "{resp}");
    }

    #[test]
    fn bad_requests_get_their_status() {
        let refused = |text: &str| match parse_head(text.as_bytes(), MAX) {
            Err(e) => e,
            Ok(h) => {
                let (h, _) = h.unwrap();
                match route(ROUTES, &h) {
                    Err(e) => e,
                    Ok((_, id)) => h.websocket(id).unwrap_err(),
                }
            }
        };
        let cases: [(&str, &str); 6] = [
            ("POST / HTTP/1.1\r\n\r\n", "405"),
            ("GET /nope HTTP/1.1\r\n\r\n", "404"),
            ("GET /ws/a%2Fb HTTP/1.1\r\n\r\n", "400"),
            ("GET /ws/abc HTTP/1.1\r\n\r\n", "426"),
            ("\x16\x03\x01\x02\x00\r\n\r\n", "400"),
            ("GET / HTTP/1.1\r\nbad header\r\n\r\n", "400"),
        ];
        for (text, status) in cases {
            let resp = String::from_utf8(refused(text).response()).unwrap();
            assert!(
                resp.starts_with(&format!("HTTP/1.1 {status}")),
                "{text:?} -> {resp}"
            );
        }
    }
}
