//! WHEP (draft-ietf-wish-whep, the egress twin of WHIP, RFC 9725) on the
//! signaling port, for standard players.
//!
//! `POST /whep/{avatar_id}` with an `application/sdp` offer is the seed's
//! `webrtc_offer` by another road: the loop gives it a *virtual* connection (an
//! id no TCP connection has) and a session id (`?session=ID`, which a signaling
//! token is minted for, or else a fresh unguessable one), hands the
//! engine the same JSON message a page would send (so limits, tokens, metrics,
//! capture and replay are the WebSocket's), and turns the engine's reply into
//! `201 Created` with the answer and a `Location`, or into the error's HTTP
//! status. The session then outlives the POST's TCP connection; it ends on
//! `DELETE` of its `Location` (with the same `Authorization: Bearer` token when
//! tokens are required), on consent loss, or on a timeout. The server is
//! ICE-lite with a complete answer, so there is no trickle: `PATCH` gets 405.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use mio::Token;
use portcast_engine::{ConnId, ConnectInfo, EndReason, SessionId};
use serde_json::Value;

use crate::http::{response_with, Head};

use super::routes::Request;
use super::Server;

/// Virtual connection ids start here: far above any TCP connection's token.
const VIRTUAL_BASE: u64 = 1 << 40;

/// Where a session's resource lives (`Location`).
const SESSIONS_PATH: &str = "/whep/sessions/";

/// How long an ended session's id still answers a `DELETE` with 200: a player
/// that closes its peer connection before it deletes (whip-whep does) finds its
/// session already ended by the DTLS close, which is what it asked for.
const ENDED_MEMORY: Duration = Duration::from_secs(60);
/// Most ended ids remembered (each is ~50 bytes).
const ENDED_MAX: usize = 1024;

/// WHEP sessions and the offers waiting for the engine's reply.
#[derive(Debug, Default)]
pub(crate) struct Whep {
    next: u64,
    /// Offers the engine is answering: virtual connection -> the POST's
    /// connection, its CORS origin and the session id given to the offer.
    pending: HashMap<ConnId, (Token, Option<String>, String, String)>,
    /// Live sessions: id -> virtual connection and avatar, and back.
    sessions: HashMap<String, (ConnId, String)>,
    by_conn: HashMap<ConnId, String>,
    /// Sessions that ended without a DELETE, oldest first: id, when, why.
    ended: VecDeque<(String, Instant, &'static str)>,
}

impl Whep {
    /// Whether `conn` is one of WHEP's virtual connections.
    pub(crate) fn owns(conn: ConnId) -> bool {
        conn.0 >= VIRTUAL_BASE
    }

    /// Live WHEP sessions.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }
}

/// The HTTP status of each error code the engine can refuse an offer with.
fn status_of(code: &str) -> &'static str {
    match code {
        "unknown_avatar" => "404 Not Found",
        "token_required" => "401 Unauthorized",
        c if c.starts_with("token_") => "403 Forbidden",
        "origin_not_allowed" => "403 Forbidden",
        "sdp_too_large" => "413 Content Too Large",
        "too_many_sessions" | "too_many_viewers" => "503 Service Unavailable",
        "session_in_use" => "409 Conflict",
        "unsupported_media_type" => "415 Unsupported Media Type",
        "unknown_session" => "404 Not Found",
        "offer_rejected" => "422 Unprocessable Content",
        // invalid_sdp, no_video, no_h264, no_h264_profile, no_rtcp_mux, ...
        _ => "400 Bad Request",
    }
}

/// A fresh session id nobody can guess (it is the key to `DELETE`).
fn new_session_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("whep-{hex}"))
}

impl Server {
    /// `POST /whep/{avatar_id}`: the offer goes to the engine on a virtual
    /// connection; the reply comes back through [`Server::whep_reply`].
    pub(crate) fn whep_offer(&mut self, r: &Request<'_>) -> Option<Vec<u8>> {
        let (now, token, head, avatar, body) = (r.now, r.token, r.head, r.param, r.body);
        let origin = head.header("origin").map(str::to_string);
        let fail = |code: &str, message: &str| Some(whep_error(code, message, origin.as_deref()));
        if !self.origin_allowed(origin.as_deref()) {
            return fail(
                "origin_not_allowed",
                "this page's origin may not use this server; ask its operator to allow it",
            );
        }
        let sdp_type = head
            .header("content-type")
            .and_then(|t| t.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"));
        if !sdp_type {
            return fail(
                "unsupported_media_type",
                "a WHEP offer is the SDP itself, sent with Content-Type: application/sdp",
            );
        }
        let Ok(sdp) = std::str::from_utf8(body) else {
            return fail("invalid_sdp", "the offer is not UTF-8 text");
        };
        let session_id = match head.query_param("session") {
            Some(id) => id.to_string(),
            None => match new_session_id() {
                Some(id) => id,
                None => return fail("offer_rejected", "no randomness for a session id"),
            },
        };
        let Ok(sid) = SessionId::parse(&session_id) else {
            return fail(
                "invalid_field",
                "?session= must be 1-128 characters of A-Z a-z 0-9 . _ ~ -",
            );
        };
        let conn = ConnId(VIRTUAL_BASE + self.whep.next);
        self.whep.next += 1;
        self.engine.open_connection_with(
            conn,
            sid,
            ConnectInfo {
                token: bearer(head).map(str::to_string),
                unix_time: unix_now(),
            },
        );
        let message = serde_json::json!({
            "type": "webrtc_offer", "session_id": session_id, "avatar_id": avatar, "sdp": sdp,
        })
        .to_string();
        self.whep.pending.insert(
            conn,
            (token, origin, session_id.clone(), avatar.to_string()),
        );
        self.capture.on_text(&message);
        self.engine.handle_signal(now, conn, &message);
        None
    }

    /// The engine's reply on a WHEP connection (true when `conn` was WHEP's):
    /// an answer or an error for a pending POST; nothing for a live session
    /// (a `bye` has no one to go to over HTTP).
    pub(crate) fn whep_reply(&mut self, conn: ConnId, text: &str) -> bool {
        if !Whep::owns(conn) {
            return false;
        }
        let Some((token, origin, session_id, avatar)) = self.whep.pending.remove(&conn) else {
            return true;
        };
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let response = match (v["type"].as_str(), v["sdp"].as_str()) {
            (Some("webrtc_answer"), Some(sdp)) => {
                log::info!("whep session {session_id}: answered");
                let location = format!("{SESSIONS_PATH}{session_id}");
                let etag = format!("\"{session_id}\"");
                self.whep
                    .sessions
                    .insert(session_id.clone(), (conn, avatar));
                self.whep.by_conn.insert(conn, session_id);
                let mut headers = vec![("Location", location.as_str()), ("ETag", etag.as_str())];
                headers.extend(cors(origin.as_deref()));
                response_with("201 Created", "application/sdp", &headers, sdp.as_bytes())
            }
            _ => {
                // Refused: the virtual connection holds no session; forget it.
                self.engine.close_connection(Instant::now(), conn);
                let code = v["code"].as_str().unwrap_or("offer_rejected");
                let message = v["message"].as_str().unwrap_or("the offer was refused");
                whep_error(code, message, origin.as_deref())
            }
        };
        if let Some(c) = self.conns.get_mut(&token) {
            c.respond(response);
        }
        true
    }

    /// A session on a WHEP connection ended for `reason` (true when `conn` was WHEP's).
    pub(crate) fn whep_closed(&mut self, now: Instant, conn: ConnId, reason: &'static str) -> bool {
        if !Whep::owns(conn) {
            return false;
        }
        if let Some(id) = self.whep.by_conn.remove(&conn) {
            self.whep.sessions.remove(&id);
            let ended = &mut self.whep.ended;
            while ended.len() >= ENDED_MAX
                || ended
                    .front()
                    .is_some_and(|(_, at, _)| now.saturating_duration_since(*at) > ENDED_MEMORY)
            {
                ended.pop_front();
            }
            ended.push_back((id, now, reason));
        }
        self.engine.close_connection(now, conn);
        true
    }

    /// `DELETE /whep/sessions/{session_id}`: ends the session (with the
    /// token its offer was let in with, when tokens are required).
    pub(crate) fn whep_delete(&mut self, r: &Request<'_>) -> Option<Vec<u8>> {
        let (now, head, session_id) = (r.now, r.head, r.param);
        let origin = head.header("origin");
        let Some((conn, avatar)) = self.whep.sessions.get(session_id) else {
            let recent = self.whep.ended.iter().find(|(id, at, _)| {
                id == session_id && now.saturating_duration_since(*at) <= ENDED_MEMORY
            });
            if let Some((_, _, reason)) = recent {
                let text = format!("session already ended ({reason})\n");
                return Some(response_with(
                    "200 OK",
                    "text/plain; charset=utf-8",
                    &cors(origin),
                    text.as_bytes(),
                ));
            }
            return Some(whep_error(
                "unknown_session",
                "no live WHEP session has this URL (it ended, or never existed)",
                origin,
            ));
        };
        let conn = *conn;
        if let Err(e) = self
            .engine
            .check_token(bearer(head), session_id, avatar, unix_now())
        {
            return Some(whep_error(e.code(), &e.to_string(), origin));
        }
        self.whep.sessions.remove(session_id);
        self.whep.by_conn.remove(&conn);
        log::info!("whep session {session_id}: DELETE");
        self.engine.end_connection(now, conn, EndReason::Deleted);
        Some(response_with(
            "200 OK",
            "text/plain; charset=utf-8",
            &cors(origin),
            b"session ended\n",
        ))
    }

    /// `PATCH /whep/sessions/{id}` (trickle or ICE restart): not offered by
    /// an ICE-lite server whose answer is complete; 405, readable cross-origin.
    pub(crate) fn whep_patch(&mut self, r: &Request<'_>) -> Option<Vec<u8>> {
        let origin = r.head.header("origin");
        let body = portcast_engine::signaling::server_error(
            "trickle_not_supported",
            "this server is ICE-lite and its answer is complete: no trickle candidates or ICE restarts",
        );
        let mut headers = vec![("Allow", "DELETE, OPTIONS")];
        headers.extend(cors(origin));
        Some(response_with(
            "405 Method Not Allowed",
            "application/json",
            &headers,
            body.as_bytes(),
        ))
    }

    /// `OPTIONS /whep/{avatar_id}`: CORS preflight for the POST.
    pub(crate) fn whep_preflight_endpoint(&self, head: &Head) -> Vec<u8> {
        self.preflight(head, "POST, OPTIONS")
    }

    /// `OPTIONS /whep/sessions/{id}`: CORS preflight for the DELETE (and the
    /// PATCH a trickling player sends, so it can read the 405).
    pub(crate) fn whep_preflight_session(&self, head: &Head) -> Vec<u8> {
        self.preflight(head, "DELETE, PATCH, OPTIONS")
    }

    fn preflight(&self, head: &Head, methods: &str) -> Vec<u8> {
        let origin = head.header("origin");
        if !self.origin_allowed(origin) {
            return whep_error(
                "origin_not_allowed",
                "this page's origin may not use this server; ask its operator to allow it",
                None,
            );
        }
        let mut headers = vec![
            ("Allow", methods),
            ("Access-Control-Allow-Methods", methods),
            (
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type, If-Match",
            ),
            ("Access-Control-Max-Age", "600"),
        ];
        if methods.starts_with("POST") {
            headers.push(("Accept-Post", "application/sdp"));
        }
        headers.extend(cors(origin));
        response_with("204 No Content", "", &headers, b"")
    }
}

/// The `Authorization: Bearer` token, if any.
fn bearer(head: &Head) -> Option<&str> {
    let a = head.header("authorization")?;
    let (scheme, token) = a.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// CORS headers for a response to a request from `origin` (already allowed):
/// the origin echoed, and the headers a WHEP player must read exposed.
fn cors(origin: Option<&str>) -> Vec<(&'static str, &str)> {
    match origin {
        Some(o) => vec![
            ("Access-Control-Allow-Origin", o),
            ("Access-Control-Expose-Headers", "Location, ETag, Link"),
            ("Vary", "Origin"),
        ],
        None => Vec::new(),
    }
}

/// An error as WHEP returns it: the HTTP status of its code and the same
/// `{"type":"error","code","message"}` body the WebSocket would carry.
fn whep_error(code: &str, message: &str, origin: Option<&str>) -> Vec<u8> {
    let body = portcast_engine::signaling::server_error(code, message);
    response_with(
        status_of(code),
        "application/json",
        &cors(origin),
        body.as_bytes(),
    )
}
