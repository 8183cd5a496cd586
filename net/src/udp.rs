//! The daemon's UDP sockets, with a bounded queue for sends the kernel refused for now.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;

/// Datagrams kept per socket while the kernel buffer is full; beyond this they are dropped.
pub const MAX_PENDING_DATAGRAMS: usize = 4096;

/// One UDP socket and its pending sends.
#[derive(Debug)]
pub struct UdpPort {
    /// The socket.
    pub socket: UdpSocket,
    /// The address it is bound to.
    pub local: SocketAddr,
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Datagrams dropped because the queue was full.
    pub dropped_full: u64,
    /// Datagrams the kernel refused with an error other than WouldBlock.
    pub send_errors: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams received.
    pub received: u64,
    /// Bytes received.
    pub received_bytes: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
}

impl UdpPort {
    /// Binds a non-blocking socket at `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        let local = socket.local_addr()?;
        Ok(UdpPort {
            socket,
            local,
            pending: VecDeque::new(),
            dropped_full: 0,
            send_errors: 0,
            sent: 0,
            received: 0,
            received_bytes: 0,
            sent_bytes: 0,
        })
    }

    /// Sends now, or queues behind earlier datagrams the kernel has not taken yet.
    pub fn send(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.pending.is_empty() {
            match self.try_send(to, &bytes) {
                Ok(true) => return,
                Ok(false) => {}
                Err(()) => return,
            }
        }
        if self.pending.len() >= MAX_PENDING_DATAGRAMS {
            self.dropped_full += 1;
            return;
        }
        self.pending.push_back((to, bytes));
    }

    /// Sends queued datagrams until the kernel pushes back (on a writable event).
    pub fn flush(&mut self) {
        while let Some((to, bytes)) = self.pending.pop_front() {
            match self.try_send(to, &bytes) {
                Ok(true) | Err(()) => {}
                Ok(false) => {
                    self.pending.push_front((to, bytes));
                    return;
                }
            }
        }
    }

    /// Number of queued datagrams.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Ok(true) sent, Ok(false) would block, Err(()) dropped for good.
    fn try_send(&mut self, to: SocketAddr, bytes: &[u8]) -> Result<bool, ()> {
        loop {
            match self.socket.send_to(bytes, to) {
                Ok(_) => {
                    self.sent += 1;
                    self.sent_bytes += bytes.len() as u64;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors (a viewer that went away) surface here; the
                    // session's consent timer is what ends it.
                    self.send_errors += 1;
                    log::debug!("udp {}: send to {to} failed: {e}", self.local);
                    return Err(());
                }
            }
        }
    }
}
