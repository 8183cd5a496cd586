//! Every HTTP route of the signaling port, in one table, and the answers
//! that need the loop's state.
//!
//! A new route is one line in [`ROUTES`] and the function that answers it.

use std::time::Instant;

use mio::Token;

use crate::http::{response, Head, Route};
use crate::metrics::Live;

use super::{Server, VIEWER_PAGE};

/// What answers a route.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    /// The connection upgrades to a WebSocket for the session named by the path.
    WebSocket,
    /// The loop answers with one response, then the connection closes.
    Respond(fn(&Server, &Head) -> Vec<u8>),
    /// The loop reads the body (to its `Content-Length`, bounded), acts on it
    /// with the route's `{parameter}`, and answers now (`Some`) or later (`None`:
    /// it calls `Conn::respond` itself, as a WHEP offer does once the engine answers).
    Act(fn(&mut Server, &Request<'_>) -> Option<Vec<u8>>),
}

/// A request an [`Answer::Act`] acts on.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// When the loop read it.
    pub now: Instant,
    /// The connection it came on (to answer later with `Conn::respond`).
    pub token: Token,
    /// Its head.
    pub head: &'a Head,
    /// The route's `{parameter}` segment.
    pub param: &'a str,
    /// Its body.
    pub body: &'a [u8],
}

/// The signaling port's routes.
pub(crate) const ROUTES: &[Route<Answer>] = &[
    Route {
        method: "GET",
        path: "/",
        answer: Answer::Respond(viewer_page),
    },
    Route {
        method: "GET",
        path: "/index.html",
        answer: Answer::Respond(viewer_page),
    },
    Route {
        method: "GET",
        path: "/ws/{session_id}",
        answer: Answer::WebSocket,
    },
    Route {
        method: "GET",
        path: "/healthz",
        answer: Answer::Respond(|_, _| response("200 OK", "text/plain", b"ok\n")),
    },
    Route {
        method: "GET",
        path: "/readyz",
        answer: Answer::Respond(Server::ready),
    },
    Route {
        method: "GET",
        path: "/metrics",
        answer: Answer::Respond(Server::metrics),
    },
    Route {
        method: "GET",
        path: "/avatars",
        answer: Answer::Respond(Server::avatars),
    },
    // WHEP (draft-ietf-wish-whep): see `whep.rs`.
    Route {
        method: "POST",
        path: "/whep/{avatar_id}",
        answer: Answer::Act(Server::whep_offer),
    },
    Route {
        method: "OPTIONS",
        path: "/whep/{avatar_id}",
        answer: Answer::Respond(Server::whep_preflight_endpoint),
    },
    Route {
        method: "DELETE",
        path: "/whep/sessions/{session_id}",
        answer: Answer::Act(Server::whep_delete),
    },
    Route {
        method: "PATCH",
        path: "/whep/sessions/{session_id}",
        answer: Answer::Act(Server::whep_patch),
    },
    Route {
        method: "OPTIONS",
        path: "/whep/sessions/{session_id}",
        answer: Answer::Respond(Server::whep_preflight_session),
    },
];

fn viewer_page(_: &Server, _: &Head) -> Vec<u8> {
    response("200 OK", "text/html; charset=utf-8", VIEWER_PAGE.as_bytes())
}

impl Server {
    /// `/metrics`: the registry, with the live-state gauges set now.
    fn metrics(&self, _: &Head) -> Vec<u8> {
        let sessions = self.engine.sessions();
        let renditions = self.engine.renditions();
        let body = self.metrics.render(Live {
            sessions: &sessions,
            renditions: &renditions,
            connections: self.conns.len(),
            whep_sessions: self.whep.len(),
            renderers: self.ingest.as_ref().map_or(0, |h| h.live_renderers()),
        });
        response(
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body.as_bytes(),
        )
    }

    /// `/avatars`: every avatar a viewer may name, what feeds it, whether it
    /// has pictures now and how many viewers it has (JSON).
    fn avatars(&self, _: &Head) -> Vec<u8> {
        let sessions = self.engine.sessions();
        let list: Vec<serde_json::Value> = self
            .engine
            .avatars()
            .iter()
            .map(|a| {
                let (source, live) = if self.config.avatars.iter().any(|s| &s.name == a) {
                    (
                        "test_pattern",
                        self.sources.get(a).is_some_and(|h| h.is_alive()),
                    )
                } else if self.config.file_sources.iter().any(|f| &f.name == a) {
                    ("file", self.sources.get(a).is_some_and(|h| h.is_alive()))
                } else {
                    (
                        "renderer",
                        self.ingest.as_ref().is_some_and(|h| h.is_live(a)),
                    )
                };
                serde_json::json!({
                    "id": a.as_str(),
                    "source": source,
                    "live": live,
                    "viewers": sessions.iter().filter(|s| &s.avatar == a).count(),
                })
            })
            .collect();
        let body = serde_json::json!({ "avatars": list }).to_string();
        response("200 OK", "application/json", body.as_bytes())
    }

    /// `/readyz`: 200 while every source thread runs.
    fn ready(&self, _: &Head) -> Vec<u8> {
        let dead: Vec<String> = self
            .sources
            .iter()
            .filter(|(_, h)| !h.is_alive())
            .map(|(a, _)| a.to_string())
            .collect();
        if dead.is_empty() {
            let body = format!(
                "ready: {} udp sockets bound, {} sources running\n",
                self.udp.len(),
                self.sources.len()
            );
            response("200 OK", "text/plain", body.as_bytes())
        } else {
            let body = format!("not ready: source threads stopped: {}\n", dead.join(", "));
            response("503 Service Unavailable", "text/plain", body.as_bytes())
        }
    }
}
