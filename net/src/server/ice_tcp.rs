//! ICE-TCP connections of the signaling listener (or of a listener of their
//! own): their RFC 4571 frames go to the engine as datagrams of the ICE-TCP
//! socket id, and the engine's transmits to a TCP peer come back as frames.

use std::time::Instant;

use mio::Token;
use portcast_engine::{Datagram, Transmit};

use super::Server;

/// SO_SNDBUF asked for on an ICE-TCP connection (the kernel doubles it).
const KERNEL_SEND_BUFFER: usize = 64 * 1024;

impl Server {
    /// A connection turned out to be ICE-TCP: the engine knows it by its peer address.
    pub(super) fn ice_tcp_opened(&mut self, token: Token) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        match c.stream_mut().and_then(|s| s.peer_addr().ok()) {
            Some(peer) => {
                log::debug!("conn#{}: ICE-TCP from {peer}", token.0);
                // A small kernel send buffer (Linux doubles it: 128 KiB, ~0.4 s at
                // 2.5 Mbit/s, far above a path's bandwidth-delay product) keeps a
                // slow viewer's backlog in our bounded queue, where a full queue
                // skips that viewer to a keyframe, instead of seconds of stale
                // video in an autotuned multi-megabyte kernel buffer.
                if let Some(s) = c.stream_mut() {
                    if let Err(e) =
                        socket2::SockRef::from(&*s).set_send_buffer_size(KERNEL_SEND_BUFFER)
                    {
                        log::debug!("conn#{}: SO_SNDBUF: {e}", token.0);
                    }
                }
                c.peer = Some(peer);
                self.ice_tcp.insert(peer, token);
            }
            None => c.abort(),
        }
    }

    /// One frame from an ICE-TCP peer, for the engine.
    pub(super) fn ice_tcp_frame(&mut self, now: Instant, token: Token, bytes: &[u8]) {
        let socket = self.engine.sockets().ice_tcp().map(|(id, _)| id);
        let peer = self.conns.get(&token).and_then(|c| c.peer);
        if let (Some(socket), Some(from)) = (socket, peer) {
            self.engine.handle_datagram(
                now,
                Datagram {
                    socket,
                    from,
                    bytes,
                },
            );
            self.drain_engine();
        }
    }

    /// Sends `t` as a frame when it is for an ICE-TCP peer (true), bounded per
    /// viewer: a packet the queue cannot take is dropped, and that viewer skips
    /// to the next keyframe, which is asked for.
    pub(super) fn ice_tcp_send(&mut self, t: &Transmit) -> bool {
        if self.engine.sockets().ice_tcp().map(|(id, _)| id) != Some(t.socket) {
            return false;
        }
        let Some(c) = self
            .ice_tcp
            .get(&t.to)
            .and_then(|tok| self.conns.get_mut(tok))
        else {
            return true;
        };
        // The engine answered this peer: a session owns the connection.
        c.bound = true;
        if !c.send_frame(&t.bytes) {
            self.metrics.connection_dropped("ice_tcp_queue_full");
            self.engine.transmit_dropped(Instant::now(), t.socket, t.to);
        }
        true
    }
}
