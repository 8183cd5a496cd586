//! Which session a datagram belongs to.
//!
//! All sessions share the same few UDP ports, and behind FRP every viewer may
//! come from the forwarder's own address, so the remote ip says nothing. A STUN
//! binding request names its session in USERNAME (`server_ufrag:client_ufrag`);
//! everything else (DTLS, SRTP, SRTCP) is matched on the `(socket, remote)` pair
//! learned once str0m has answered a valid check from that pair.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::ids::SocketId;

/// Internal key of a session inside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub u64);

/// Most remote pairs one session may hold (a browser uses one; ICE may try a few).
pub const MAX_PAIRS_PER_SESSION: usize = 8;

/// Where a datagram should go, as far as its bytes and addresses tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A session owns it.
    Session(SessionKey),
    /// A STUN request naming a ufrag no session has.
    UnknownUfrag,
    /// Not STUN, from a pair no session has learned.
    UnknownSource,
    /// Not a datagram WebRTC uses (RFC 7983 first-byte ranges).
    NotWebRtc,
}

/// The two lookup tables, kept consistent with the sessions that own them.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<String, SessionKey>,
    by_pair: HashMap<(SocketId, SocketAddr), SessionKey>,
    pairs_of: HashMap<SessionKey, Vec<(SocketId, SocketAddr)>>,
}

impl Demux {
    /// Creates empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the local ufrag a session announced in its answer.
    pub fn add_session(&mut self, key: SessionKey, local_ufrag: &str) {
        self.by_ufrag.insert(local_ufrag.to_string(), key);
        self.pairs_of.entry(key).or_default();
    }

    /// Finds the owner of a datagram.
    pub fn route(&self, socket: SocketId, from: SocketAddr, bytes: &[u8]) -> Route {
        let Some(&first) = bytes.first() else {
            return Route::NotWebRtc;
        };
        match first {
            0..=3 => {
                if let Some(ufrag) = stun_local_ufrag(bytes) {
                    return match self.by_ufrag.get(ufrag) {
                        Some(k) => Route::Session(*k),
                        None => Route::UnknownUfrag,
                    };
                }
                // STUN without USERNAME (e.g. an indication): the pair decides.
                self.by_pair_route(socket, from)
            }
            20..=63 | 128..=191 => self.by_pair_route(socket, from),
            _ => Route::NotWebRtc,
        }
    }

    /// The session that talks to `remote` through `socket`, if one does.
    pub fn session_of(&self, socket: SocketId, remote: SocketAddr) -> Option<SessionKey> {
        self.by_pair.get(&(socket, remote)).copied()
    }

    fn by_pair_route(&self, socket: SocketId, from: SocketAddr) -> Route {
        match self.by_pair.get(&(socket, from)) {
            Some(k) => Route::Session(*k),
            None => Route::UnknownSource,
        }
    }

    /// Records that `key` talks to `to` through `socket` (called for each of its transmits).
    pub fn learn_pair(&mut self, key: SessionKey, socket: SocketId, to: SocketAddr) {
        let pair = (socket, to);
        if self.by_pair.get(&pair) == Some(&key) {
            return;
        }
        let Some(pairs) = self.pairs_of.get_mut(&key) else {
            return; // a session that was removed
        };
        if pairs.len() >= MAX_PAIRS_PER_SESSION {
            let oldest = pairs.remove(0);
            if self.by_pair.get(&oldest) == Some(&key) {
                self.by_pair.remove(&oldest);
            }
        }
        // A pair moves to the newest session that proved it owns it (a
        // forwarder may reuse a port after an old session died).
        if let Some(prev) = self.by_pair.insert(pair, key) {
            if let Some(p) = self.pairs_of.get_mut(&prev) {
                p.retain(|x| *x != pair);
            }
        }
        if let Some(pairs) = self.pairs_of.get_mut(&key) {
            pairs.push(pair);
        }
    }

    /// Forgets everything about a session.
    pub fn remove_session(&mut self, key: SessionKey, local_ufrag: &str) {
        if self.by_ufrag.get(local_ufrag) == Some(&key) {
            self.by_ufrag.remove(local_ufrag);
        }
        for pair in self.pairs_of.remove(&key).unwrap_or_default() {
            if self.by_pair.get(&pair) == Some(&key) {
                self.by_pair.remove(&pair);
            }
        }
    }

    /// Number of entries in (ufrag table, pair table): both drop to zero when no session is left.
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.by_ufrag.len(), self.by_pair.len())
    }
}

/// The server-side ufrag of a STUN binding request's USERNAME, without allocating.
///
/// Walks the attributes of the message (RFC 8489 §5, §14) with bounds checks;
/// returns `None` for anything that is not a well-formed STUN message with a
/// USERNAME of the form `local:remote`.
pub fn stun_local_ufrag(bytes: &[u8]) -> Option<&str> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    const USERNAME: u16 = 0x0006;
    if bytes.len() < 20 || bytes[4..8] != MAGIC {
        return None;
    }
    let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
    let body = bytes.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + alen)?;
        if typ == USERNAME {
            let s = std::str::from_utf8(value).ok()?;
            return s.split_once(':').map(|(local, _)| local);
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_with_username(user: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&0x0006u16.to_be_bytes());
        attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attr.extend_from_slice(user.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attr);
        m
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn stun_routes_by_ufrag_then_media_by_learned_pair() {
        let mut d = Demux::new();
        d.add_session(SessionKey(1), "srv1");
        d.add_session(SessionKey(2), "srv2");
        let from = a("198.18.0.9:4000");
        let stun = stun_with_username("srv2:cli");
        assert_eq!(
            d.route(SocketId(0), from, &stun),
            Route::Session(SessionKey(2))
        );
        let dtls = [22u8, 254, 253, 0, 0];
        assert_eq!(d.route(SocketId(0), from, &dtls), Route::UnknownSource);
        d.learn_pair(SessionKey(2), SocketId(0), from);
        assert_eq!(
            d.route(SocketId(0), from, &dtls),
            Route::Session(SessionKey(2))
        );
        // Same remote on another socket is another pair.
        assert_eq!(d.route(SocketId(1), from, &dtls), Route::UnknownSource);
        assert_eq!(
            d.route(SocketId(0), from, &stun_with_username("nope:cli")),
            Route::UnknownUfrag
        );
        assert_eq!(d.route(SocketId(0), from, &[70u8, 1, 2]), Route::NotWebRtc);
    }

    #[test]
    fn removing_a_session_clears_both_tables() {
        let mut d = Demux::new();
        d.add_session(SessionKey(1), "u1");
        d.learn_pair(SessionKey(1), SocketId(0), a("127.0.0.1:1"));
        d.learn_pair(SessionKey(1), SocketId(1), a("127.0.0.1:2"));
        assert_eq!(d.table_sizes(), (1, 2));
        d.remove_session(SessionKey(1), "u1");
        assert_eq!(d.table_sizes(), (0, 0));
    }

    #[test]
    fn pairs_per_session_are_bounded() {
        let mut d = Demux::new();
        d.add_session(SessionKey(1), "u1");
        for port in 1..100u16 {
            d.learn_pair(
                SessionKey(1),
                SocketId(0),
                SocketAddr::from(([127, 0, 0, 1], port)),
            );
        }
        assert_eq!(d.table_sizes(), (1, MAX_PAIRS_PER_SESSION));
    }

    #[test]
    fn a_pair_moves_to_the_session_that_proved_it() {
        let mut d = Demux::new();
        d.add_session(SessionKey(1), "u1");
        d.add_session(SessionKey(2), "u2");
        let p = a("198.18.0.1:5000");
        d.learn_pair(SessionKey(1), SocketId(0), p);
        d.learn_pair(SessionKey(2), SocketId(0), p);
        assert_eq!(
            d.route(SocketId(0), p, &[128, 96, 0]),
            Route::Session(SessionKey(2))
        );
        d.remove_session(SessionKey(1), "u1");
        assert_eq!(
            d.route(SocketId(0), p, &[128, 96, 0]),
            Route::Session(SessionKey(2))
        );
    }

    #[test]
    fn malformed_stun_never_panics_and_finds_nothing() {
        let good = stun_with_username("srv:cli");
        for cut in 0..good.len() {
            let _ = stun_local_ufrag(&good[..cut]);
        }
        let mut lying = good.clone();
        lying[2] = 0xff; // message length beyond the buffer
        assert_eq!(stun_local_ufrag(&lying), None);
        let mut attr_lie = good.clone();
        attr_lie[22] = 0xff; // attribute length beyond the body
        assert_eq!(stun_local_ufrag(&attr_lie), None);
        assert_eq!(stun_local_ufrag(&good), Some("srv"));
    }
}
