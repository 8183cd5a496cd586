//! The loop's signaling connections: accepting them, reading and writing them
//! when mio says they are ready, closing those that stall or are done, and
//! giving memory back after a burst of them closed.

use super::*;

impl Server {
    /// Accepts every pending connection of the signaling listener, or of the
    /// ICE-TCP-only one (`ice_tcp_only`: its connections carry frames only).
    pub(super) fn accept(&mut self, now: Instant, ice_tcp_only: bool) {
        let mut limits = self.config.limits;
        limits.ice_tcp_only = ice_tcp_only;
        loop {
            let accepted = match (ice_tcp_only, self.ice_tcp_listener.as_ref()) {
                (true, Some(l)) => l.accept(),
                (true, None) => return,
                (false, _) => self.listener.accept(),
            };
            match accepted {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.config.max_connections {
                        self.metrics.connection_dropped("too_many_connections");
                        log::warn!("refusing {peer}: {} connections open", self.conns.len());
                        continue; // dropping the stream closes it
                    }
                    let _ = stream.set_nodelay(true);
                    let token = Token(self.next_conn);
                    self.next_conn += 1;
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("cannot register {peer}: {e}");
                        continue;
                    }
                    self.conns.insert(token, Conn::new(stream, now, limits));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and wait for the next event.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn on_conn_ready(&mut self, now: Instant, token: Token, writable: bool) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let id = ConnId(token.0 as u64);
        if writable {
            conn.flush();
        }
        let mut events = Vec::new();
        conn.on_ready(&mut events);
        for e in events {
            match e {
                ConnEvent::Opened {
                    session_id,
                    token: ws_token,
                    origin,
                } => {
                    if !self.origin_allowed(origin.as_deref()) {
                        log::info!("{id}: origin {origin:?} is not allowed; closing");
                        self.metrics.connection_dropped("origin_not_allowed");
                        if let Some(c) = self.conns.get_mut(&token) {
                            c.send_and_close(portcast_engine::signaling::server_error(
                                "origin_not_allowed",
                                "this page's origin may not use this server; ask its operator to allow it",
                            ));
                        }
                        continue;
                    }
                    log::debug!("{id}: websocket open for session {session_id}");
                    let unix_time = SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let info = portcast_engine::ConnectInfo {
                        token: ws_token,
                        unix_time,
                    };
                    self.engine.open_connection_with(id, session_id, info);
                }
                ConnEvent::Text(text) => {
                    self.capture.on_text(&text);
                    self.engine.handle_signal(now, id, &text)
                }
                ConnEvent::Binary => {
                    if let Some(c) = self.conns.get_mut(&token) {
                        c.send_text(portcast_engine::signaling::server_error(
                            "binary_not_supported",
                            "send JSON text frames, not binary frames",
                        ));
                    }
                }
                ConnEvent::Request {
                    route,
                    head,
                    param,
                    body,
                } => {
                    let response = match routes::ROUTES.get(route).map(|r| r.answer) {
                        Some(routes::Answer::Respond(answer)) => Some(answer(self, &head)),
                        Some(routes::Answer::Act(act)) => {
                            let request = routes::Request {
                                now,
                                token,
                                head: &head,
                                param: &param,
                                body: &body,
                            };
                            act(self, &request)
                        }
                        _ => Some(crate::http::response(
                            "500 Internal Server Error",
                            "text/plain",
                            b"no answer\n",
                        )),
                    };
                    if let (Some(response), Some(c)) = (response, self.conns.get_mut(&token)) {
                        c.respond(response);
                    }
                }
                ConnEvent::TooLarge => {
                    self.metrics.connection_dropped("message_too_large");
                }
                ConnEvent::RateLimited => {
                    log::info!("{id}: over the message rate; closed");
                    self.metrics.connection_dropped("rate_limited");
                }
                ConnEvent::IceTcpOpened => self.ice_tcp_opened(token),
                ConnEvent::Frame(bytes) => self.ice_tcp_frame(now, token, &bytes),
                ConnEvent::BadFrame(len) => {
                    log::info!("{id}: ICE-TCP frame of {len} bytes; closed");
                    self.metrics.connection_dropped("ice_tcp_bad_frame");
                }
            }
        }
    }

    /// Closes connections that stall: slow request heads, and WebSockets that never offer.
    pub(super) fn expire_heads(&mut self, now: Instant) {
        let timeout = self.config.head_timeout;
        // A browser sends a consent check every few seconds on its selected pair.
        let ice_tcp_idle = self.config.engine.consent_timeout + Duration::from_secs(5);
        let idle = self.config.idle_timeout;
        for (token, c) in self.conns.iter_mut() {
            let frames_idle =
                c.is_ice_tcp() && c.last_frame.unwrap_or(c.accepted) + ice_tcp_idle < now;
            if frames_idle {
                log::info!("closing an ICE-TCP connection silent for {ice_tcp_idle:?}");
                self.metrics.connection_dropped("ice_tcp_idle");
                c.abort();
            } else if c.reading_head() && now.saturating_duration_since(c.accepted) > timeout {
                log::info!("closing a connection that sent no complete request in {timeout:?}");
                self.metrics.connection_dropped("head_timeout");
                c.abort();
            } else if c.is_websocket()
                && c.ws_opened
                    .is_some_and(|t| now.saturating_duration_since(t) > idle)
                && !self.engine.has_session(ConnId(token.0 as u64))
            {
                log::info!(
                    "conn#{}: no session {idle:?} after opening; closing",
                    token.0
                );
                self.metrics.connection_dropped("idle_websocket");
                c.send_and_close(portcast_engine::signaling::server_error(
                    "idle_timeout",
                    "no offer was accepted on this connection in time; it is closed",
                ));
                c.ws_opened = None;
            }
        }
    }

    pub(super) fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let allowed = &self.config.allowed_origins;
        allowed.is_empty() || origin.is_some_and(|o| allowed.iter().any(|a| a == o))
    }

    pub(super) fn reap_conns(&mut self, now: Instant) {
        let done: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_done())
            .map(|(t, _)| *t)
            .collect();
        for token in done {
            let mut c_peer = None;
            if let Some(mut c) = self.conns.remove(&token) {
                if let Some(s) = c.stream_mut() {
                    let _ = self.poll.registry().deregister(s);
                }
                c_peer = c.peer;
            }
            if let Some(peer) = c_peer {
                self.ice_tcp.remove(&peer);
            }
            self.engine.close_connection(now, ConnId(token.0 as u64));
            self.closed_since_trim += 1;
        }
        if !self.conns.is_empty() || self.engine.connection_count() > 0 {
            // Closing a connection may have produced output (DTLS close_notify).
            self.drain_engine();
        }
        self.release_memory(now);
    }

    /// After a burst of connections closed, gives their memory back to the system:
    /// the connection table shrinks when mostly empty, and glibc's allocator, which
    /// keeps freed small blocks in its arena, returns what it can (`malloc_trim`).
    /// At most once a second, only after 64 or more closes: a trim costs well under a
    /// millisecond of loop time here.
    fn release_memory(&mut self, now: Instant) {
        if self.closed_since_trim < 64
            || now.duration_since(self.last_trim) < Duration::from_secs(1)
        {
            return;
        }
        self.closed_since_trim = 0;
        self.last_trim = now;
        if self.conns.len() < self.conns.capacity() / 4 {
            self.conns.shrink_to_fit();
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only returns free memory to the system; no pointer is touched.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
