//! `/metrics` and `/readyz`: the answers that need the loop's own state.

use crate::metrics::Live;

use super::Server;

impl Server {
    /// `/metrics` and `/readyz`, which need the loop's state.
    pub(super) fn dynamic_response(&self, request: &crate::http::Request) -> Vec<u8> {
        use crate::http::{response, Request};
        match request {
            Request::Metrics => {
                let sessions = self.engine.sessions();
                let body = self.metrics.render(Live {
                    sessions: &sessions,
                    connections: self.conns.len(),
                    renderers: self.ingest.as_ref().map_or(0, |h| h.live_renderers()),
                });
                response(
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body.as_bytes(),
                )
            }
            Request::Ready => {
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
            _ => response("404 Not Found", "text/plain", b"not found\n"),
        }
    }
}
