//! The public-address rewrite.
//!
//! The daemon binds its UDP sockets on a private address, but announces the
//! forwarder's PUBLIC address in its ICE candidates. str0m only accepts STUN
//! addressed to a candidate it announced, and it names the candidate's address
//! as the source of everything it sends. So every datagram going into str0m
//! gets the socket's public address as its destination, and every transmit
//! coming out is mapped from that public address back to the local socket.
//! Both directions live here, in one table.

use std::net::SocketAddr;

use str0m::net::Protocol;

use crate::ids::SocketId;

/// One UDP socket of the daemon: where it is bound and what is announced for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketSpec {
    /// Address the socket is bound to on this machine.
    pub local: SocketAddr,
    /// Address announced to viewers (the forwarder's public ip and port).
    pub public: SocketAddr,
}

/// Errors in the socket table, found once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// No socket was configured.
    NoSockets,
    /// Two sockets announce the same public address, so replies could not be told apart.
    DuplicatePublic(SocketAddr),
    /// A public address is unspecified (0.0.0.0 or ::) or has port 0.
    NotRoutable(SocketAddr),
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressError::NoSockets => write!(f, "no UDP socket configured"),
            AddressError::DuplicatePublic(a) => {
                write!(f, "public address {a} is announced for two sockets")
            }
            AddressError::NotRoutable(a) => {
                write!(
                    f,
                    "public address {a} cannot be announced (unspecified ip or port 0)"
                )
            }
        }
    }
}

impl std::error::Error for AddressError {}

/// The daemon's UDP sockets with their public addresses, and the public
/// address of its ICE-TCP candidate, if it has one: that one is
/// `SocketId(len())`, one past the UDP sockets, and its "datagrams" are the
/// RFC 4571 frames of every ICE-TCP connection.
#[derive(Debug, Clone)]
pub struct SocketTable {
    specs: Vec<SocketSpec>,
    tcp: Option<SocketAddr>,
}

impl SocketTable {
    /// Validates and builds the table; `SocketId(i)` is `specs[i]`.
    pub fn new(specs: Vec<SocketSpec>) -> Result<Self, AddressError> {
        if specs.is_empty() {
            return Err(AddressError::NoSockets);
        }
        for (i, s) in specs.iter().enumerate() {
            if s.public.ip().is_unspecified() || s.public.port() == 0 {
                return Err(AddressError::NotRoutable(s.public));
            }
            if specs[..i].iter().any(|o| o.public == s.public) {
                return Err(AddressError::DuplicatePublic(s.public));
            }
        }
        Ok(SocketTable { specs, tcp: None })
    }

    /// Adds the passive ICE-TCP candidate's public address.
    pub fn with_ice_tcp(mut self, public: SocketAddr) -> Result<Self, AddressError> {
        if public.ip().is_unspecified() || public.port() == 0 {
            return Err(AddressError::NotRoutable(public));
        }
        self.tcp = Some(public);
        Ok(self)
    }

    /// The id ICE-TCP frames arrive on and leave by, when ICE-TCP is on.
    pub fn ice_tcp(&self) -> Option<(SocketId, SocketAddr)> {
        self.tcp.map(|a| (SocketId(self.specs.len()), a))
    }

    /// The protocol of socket `id`: TCP for the ICE-TCP id, UDP otherwise.
    pub fn protocol(&self, id: SocketId) -> Protocol {
        if self.ice_tcp().is_some_and(|(t, _)| t == id) {
            Protocol::Tcp
        } else {
            Protocol::Udp
        }
    }

    /// Number of sockets.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Always false: a table holds at least one socket.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// All sockets, indexed by `SocketId`.
    pub fn specs(&self) -> &[SocketSpec] {
        &self.specs
    }

    /// The spec of one socket, if the id is known.
    pub fn get(&self, id: SocketId) -> Option<&SocketSpec> {
        self.specs.get(id.0)
    }

    /// Destination to give str0m for a datagram that arrived on `id`: the public address.
    pub fn receive_destination(&self, id: SocketId) -> Option<SocketAddr> {
        match self.ice_tcp() {
            Some((t, public)) if t == id => Some(public),
            _ => self.get(id).map(|s| s.public),
        }
    }

    /// The socket that must send a transmit str0m sourced from `public` over `proto`.
    pub fn socket_for_transmit(&self, public: SocketAddr, proto: Protocol) -> Option<SocketId> {
        if proto == Protocol::Tcp {
            return self.ice_tcp().filter(|(_, a)| *a == public).map(|(t, _)| t);
        }
        self.specs
            .iter()
            .position(|s| s.public == public)
            .map(SocketId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn forwarded() -> SocketTable {
        SocketTable::new(vec![
            SocketSpec {
                local: addr("127.0.0.1:10111"),
                public: addr("198.18.0.1:20111"),
            },
            SocketSpec {
                local: addr("127.0.0.1:10112"),
                public: addr("198.18.0.1:20112"),
            },
        ])
        .unwrap()
    }

    #[test]
    fn datagram_into_str0m_is_addressed_to_the_public_address() {
        let t = forwarded();
        assert_eq!(
            t.receive_destination(SocketId(1)),
            Some(addr("198.18.0.1:20112"))
        );
        assert_eq!(t.receive_destination(SocketId(2)), None);
    }

    #[test]
    fn transmit_from_public_address_goes_out_of_its_local_socket() {
        let t = forwarded();
        let udp = Protocol::Udp;
        assert_eq!(
            t.socket_for_transmit(addr("198.18.0.1:20111"), udp),
            Some(SocketId(0))
        );
        assert_eq!(
            t.socket_for_transmit(addr("198.18.0.1:20112"), udp),
            Some(SocketId(1))
        );
        // The local address is never what str0m names as a source.
        assert_eq!(t.socket_for_transmit(addr("127.0.0.1:10111"), udp), None);
    }

    #[test]
    fn ice_tcp_is_one_more_socket_told_apart_by_protocol() {
        // The same public port on TCP and UDP: the protocol decides.
        let t = forwarded().with_ice_tcp(addr("198.18.0.1:20111")).unwrap();
        assert_eq!(t.ice_tcp(), Some((SocketId(2), addr("198.18.0.1:20111"))));
        assert_eq!(t.protocol(SocketId(2)), Protocol::Tcp);
        assert_eq!(t.protocol(SocketId(0)), Protocol::Udp);
        assert_eq!(
            t.socket_for_transmit(addr("198.18.0.1:20111"), Protocol::Tcp),
            Some(SocketId(2))
        );
        assert_eq!(
            t.socket_for_transmit(addr("198.18.0.1:20111"), Protocol::Udp),
            Some(SocketId(0))
        );
        assert_eq!(
            t.receive_destination(SocketId(2)),
            Some(addr("198.18.0.1:20111"))
        );
        assert!(forwarded().with_ice_tcp(addr("0.0.0.0:10110")).is_err());
    }

    #[test]
    fn duplicate_or_unroutable_public_addresses_are_refused() {
        let dup = SocketTable::new(vec![
            SocketSpec {
                local: addr("127.0.0.1:1"),
                public: addr("198.18.0.1:5"),
            },
            SocketSpec {
                local: addr("127.0.0.1:2"),
                public: addr("198.18.0.1:5"),
            },
        ]);
        assert_eq!(
            dup.unwrap_err(),
            AddressError::DuplicatePublic(addr("198.18.0.1:5"))
        );
        let unspec = SocketTable::new(vec![SocketSpec {
            local: addr("127.0.0.1:1"),
            public: addr("0.0.0.0:5"),
        }]);
        assert_eq!(
            unspec.unwrap_err(),
            AddressError::NotRoutable(addr("0.0.0.0:5"))
        );
        assert_eq!(
            SocketTable::new(vec![]).unwrap_err(),
            AddressError::NoSockets
        );
    }
}
