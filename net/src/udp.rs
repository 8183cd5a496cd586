//! The daemon's UDP sockets. Sends are queued and handed to the kernel in
//! batches (`sendmmsg` on Linux, one call for up to [`BATCH`] datagrams), so a
//! frame's datagrams to every viewer cost a few system calls, not one each;
//! the queue also holds what the kernel refused for now, up to a bound.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;
use prometheus_client::metrics::counter::Counter;

/// Datagrams kept per socket while the kernel buffer is full; beyond this they are dropped.
pub const MAX_PENDING_DATAGRAMS: usize = 4096;

/// Datagrams handed to the kernel in one call; a queue this long is flushed at once.
pub const BATCH: usize = 64;

/// One UDP socket and its pending sends.
#[derive(Debug)]
pub struct UdpPort {
    /// The socket.
    pub socket: UdpSocket,
    /// The address it is bound to.
    pub local: SocketAddr,
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Its counters (registered in `/metrics` by [`crate::metrics::Metrics::udp`]).
    pub counters: UdpCounters,
}

/// One UDP socket's counters.
#[derive(Debug, Clone, Default)]
pub struct UdpCounters {
    /// Datagrams dropped because the queue was full.
    pub dropped_full: Counter,
    /// Datagrams the kernel refused with an error other than WouldBlock.
    pub send_errors: Counter,
    /// Datagrams sent.
    pub sent: Counter,
    /// Send system calls made (each carries up to [`BATCH`] datagrams).
    pub send_calls: Counter,
    /// Datagrams received.
    pub received: Counter,
    /// Bytes received.
    pub received_bytes: Counter,
    /// Bytes sent.
    pub sent_bytes: Counter,
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
            counters: UdpCounters::default(),
        })
    }

    /// Queues a datagram; the queue goes to the kernel at [`flush`](Self::flush)
    /// or as soon as it holds a full batch. Dropped (and counted) when the kernel
    /// has pushed back for [`MAX_PENDING_DATAGRAMS`] datagrams already.
    pub fn send(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.pending.len() >= MAX_PENDING_DATAGRAMS {
            self.counters.dropped_full.inc();
            return;
        }
        self.pending.push_back((to, bytes));
        if self.pending.len() == BATCH {
            self.flush();
        }
    }

    /// Hands queued datagrams to the kernel until the queue is empty or the
    /// kernel pushes back (then the socket's writable event calls this again).
    pub fn flush(&mut self) {
        while !self.pending.is_empty() {
            match self.send_batch() {
                Ok(n) => {
                    let bytes: usize = self.pending.drain(..n).map(|(_, b)| b.len()).sum();
                    self.counters.send_calls.inc();
                    self.counters.sent.inc_by(n as u64);
                    self.counters.sent_bytes.inc_by(bytes as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The first datagram of the batch failed (an unreachable or
                    // unroutable address): drop it alone and go on. A viewer that
                    // went away is ended by its session's consent timer.
                    self.counters.send_calls.inc();
                    self.counters.send_errors.inc();
                    if let Some((to, _)) = self.pending.pop_front() {
                        log::debug!("udp {}: send to {to} failed: {e}", self.local);
                    }
                }
            }
        }
    }

    /// Number of queued datagrams.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sends the front of the queue in one `sendmmsg`; returns how many went
    /// (at least one), or the error of the first.
    #[cfg(target_os = "linux")]
    fn send_batch(&mut self) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let count = self.pending.len().min(BATCH);
        // SAFETY: all three are plain C structs for which all-zero bytes are valid.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (to, bytes)) in self.pending.iter().take(count).enumerate() {
            let addr_len = write_sockaddr(to, &mut addrs[i]);
            iovs[i] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = &mut addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            h.msg_namelen = addr_len;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: hdrs[..count] point into addrs and iovs (alive on this frame)
        // and into the queued byte buffers, which are not touched until the call
        // returns; the kernel only reads them and writes msg_len.
        let n = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                count as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            // sendmmsg returns an error rather than 0 when nothing was sent.
            Ok((n as usize).clamp(1, count))
        }
    }

    /// Sends the front of the queue (one datagram where `sendmmsg` is missing).
    #[cfg(not(target_os = "linux"))]
    fn send_batch(&mut self) -> io::Result<usize> {
        let (to, bytes) = self.pending.front().expect("called with a queue");
        self.socket.send_to(bytes, *to).map(|_| 1)
    }
}

/// Writes `addr` as a C socket address; returns its length.
#[cfg(target_os = "linux")]
fn write_sockaddr(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(out as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(out as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdSocket;
    use std::time::Duration;

    fn receiver() -> StdSocket {
        let r = StdSocket::bind("127.0.0.1:0").unwrap();
        r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        r
    }

    #[test]
    fn batches_reach_every_receiver_in_order() {
        let (a, b) = (receiver(), receiver());
        let mut port = UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let total = 3 * BATCH + 5;
        for i in 0..total {
            let to = if i % 2 == 0 { &a } else { &b };
            // Sizes differ per datagram so a mixed-up iovec would show.
            let bytes = vec![i as u8; 20 + i];
            port.send(to.local_addr().unwrap(), bytes);
        }
        // Full batches left at once; the tail waits for the flush.
        assert_eq!(port.pending(), total % BATCH);
        port.flush();
        assert_eq!(port.pending(), 0);
        assert_eq!(port.counters.sent.get(), total as u64);
        assert_eq!(port.counters.send_calls.get(), 4);
        assert_eq!(
            port.counters.sent_bytes.get(),
            (0..total).map(|i| 20 + i as u64).sum::<u64>()
        );
        let mut buf = [0u8; 2048];
        for i in 0..total {
            let from = if i % 2 == 0 { &a } else { &b };
            let (n, src) = from.recv_from(&mut buf).unwrap();
            assert_eq!(src, port.local);
            assert_eq!(n, 20 + i, "datagram {i}");
            assert!(buf[..n].iter().all(|&x| x == i as u8), "datagram {i}");
        }
    }

    #[test]
    fn a_refused_datagram_is_dropped_alone() {
        let r = receiver();
        let mut port = UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        port.send(r.local_addr().unwrap(), b"one".to_vec());
        // An IPv6 destination from an IPv4 socket: the kernel refuses it.
        port.send("[::1]:9".parse().unwrap(), b"bad".to_vec());
        port.send(r.local_addr().unwrap(), b"two".to_vec());
        port.flush();
        assert_eq!(
            (
                port.counters.sent.get(),
                port.counters.send_errors.get(),
                port.pending()
            ),
            (2, 1, 0)
        );
        let mut buf = [0u8; 16];
        let n = r.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = r.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
    }
}
