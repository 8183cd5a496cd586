//! The daemon's UDP sockets. Sends are queued and handed to the kernel in
//! batches (`sendmmsg` on Linux, one call for up to [`BATCH`] datagrams), so a
//! frame's datagrams to every viewer cost a few system calls, not one each;
//! the queue also holds what the kernel refused for now, up to a bound.
//!
//! Where the kernel has UDP generic segmentation offload (`UDP_SEGMENT`,
//! Linux 4.18), a run of queued datagrams to one address, all of one size
//! but the last (which may be shorter), goes as one message of that batch: the
//! kernel builds one buffer and cuts it into the datagrams, instead of routing
//! and building each on its own. A viewer's packets of one H.264 picture are
//! such a run (FU-A fragments of one slice). A segmented message the kernel
//! refuses is sent again one datagram per message (a route whose MTU is below
//! the datagrams refuses it, where single datagrams would be fragmented), and
//! `EIO` (a device that cannot checksum) turns segmentation off for the socket.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;
use prometheus_client::metrics::counter::Counter;

/// Datagrams kept per socket while the kernel buffer is full; beyond this they are dropped.
pub const MAX_PENDING_DATAGRAMS: usize = 4096;

/// Datagrams handed to the kernel in one call; a queue this long is flushed at once.
pub const BATCH: usize = 64;

/// Most datagrams one segmented message carries (the kernel's
/// `UDP_MAX_SEGMENTS` is 64 before Linux 6.9).
pub const MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one segmented message: an IPv6 packet's 65 535 less
/// its UDP header, with room to spare.
const MAX_SEGMENTED_BYTES: usize = 65_000;

/// One UDP socket and its pending sends.
#[derive(Debug)]
pub struct UdpPort {
    /// The socket.
    pub socket: UdpSocket,
    /// The address it is bound to.
    pub local: SocketAddr,
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Whether runs of equal datagrams go as one segmented message (`UDP_SEGMENT`).
    gso: bool,
    /// How many datagrams at the front of the queue go one per message: those
    /// of a segmented message the kernel refused.
    solo: usize,
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
    /// Datagrams sent inside segmented (`UDP_SEGMENT`) messages.
    pub segmented: Counter,
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
        let gso = gso_supported(&socket);
        Ok(UdpPort {
            socket,
            local,
            pending: VecDeque::new(),
            gso,
            solo: 0,
            counters: UdpCounters::default(),
        })
    }

    /// Whether runs of equal datagrams to one address leave as one segmented
    /// message (the kernel has `UDP_SEGMENT` and has not refused it here).
    pub fn segments(&self) -> bool {
        self.gso
    }

    /// Sends each datagram as its own message from now on (tests; the send
    /// path turns segmentation off itself on `EIO`).
    #[cfg(test)]
    fn stop_segmenting(&mut self) {
        self.gso = false;
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
                    self.solo = self.solo.saturating_sub(n);
                    let bytes: usize = self.pending.drain(..n).map(|(_, b)| b.len()).sum();
                    self.counters.send_calls.inc();
                    self.counters.sent.inc_by(n as u64);
                    self.counters.sent_bytes.inc_by(bytes as u64);
                }
                Err((e, _)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err((e, _)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err((e, first)) if first > 1 => {
                    // A segmented message refused: its datagrams go again one
                    // per message (nothing is dropped for segmentation's sake).
                    // EIO: the device cannot checksum one; stop segmenting.
                    self.counters.send_calls.inc();
                    self.solo = first;
                    if e.raw_os_error() == Some(libc::EIO) {
                        log::warn!(
                            "udp {}: segmentation offload refused ({e}); sending datagrams one by one",
                            self.local
                        );
                        self.gso = false;
                    } else {
                        log::debug!("udp {}: a segmented message was refused ({e})", self.local);
                    }
                }
                Err((e, _)) => {
                    // The first datagram of the batch failed (an unreachable or
                    // unroutable address): drop it alone and go on. A viewer that
                    // went away is ended by its session's consent timer.
                    self.counters.send_calls.inc();
                    self.counters.send_errors.inc();
                    self.solo = self.solo.saturating_sub(1);
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

    /// Sends the front of the queue in one `sendmmsg`; returns how many
    /// datagrams went (at least one), or the error of the first message and
    /// how many datagrams that message held.
    #[cfg(target_os = "linux")]
    fn send_batch(&mut self) -> Result<usize, (io::Error, usize)> {
        use std::os::fd::AsRawFd;
        let count = self.pending.len().min(BATCH);
        // SAFETY: all of these are plain C structs (and integers) for which
        // all-zero bytes are valid.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        // One control message per message: UDP_SEGMENT and its u16 (u64s keep
        // the cmsghdr aligned).
        let mut controls: [[u64; 4]; BATCH] = [[0; 4]; BATCH];
        // How many datagrams each message carries.
        let mut runs = [0usize; BATCH];
        for (i, (_, bytes)) in self.pending.iter().take(count).enumerate() {
            iovs[i] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
        }
        // Those of a refused segmented message first, one per message.
        let solo = if self.gso {
            self.solo.min(count)
        } else {
            count
        };
        runs[..solo].fill(1);
        let segment_runs = solo
            + plan_runs(
                self.pending.iter().take(count).skip(solo),
                &mut runs[solo..],
            );
        let mut first = 0;
        for m in 0..segment_runs {
            let run = runs[m];
            let to = &self.pending[first].0;
            let addr_len = write_sockaddr(to, &mut addrs[m]);
            let h = &mut hdrs[m].msg_hdr;
            h.msg_name = &mut addrs[m] as *mut libc::sockaddr_storage as *mut libc::c_void;
            h.msg_namelen = addr_len;
            h.msg_iov = &mut iovs[first];
            h.msg_iovlen = run;
            if run > 1 {
                let size = self.pending[first].1.len() as u16;
                // SAFETY: controls[m] is 32 bytes, 8-aligned: room for
                // CMSG_SPACE(2) (24 bytes); the CMSG_* macros stay inside it.
                unsafe {
                    h.msg_control = controls[m].as_mut_ptr() as *mut libc::c_void;
                    h.msg_controllen = libc::CMSG_SPACE(2) as usize;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, size);
                }
            }
            first += run;
        }
        // SAFETY: hdrs[..segment_runs] point into addrs, iovs and controls
        // (alive on this frame) and into the queued byte buffers, which are not
        // touched until the call returns; the kernel only reads them and
        // writes msg_len.
        let n = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                segment_runs as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            Err((io::Error::last_os_error(), runs[0]))
        } else {
            // sendmmsg returns an error rather than 0 when nothing was sent.
            let sent = (n as usize).clamp(1, segment_runs);
            let segmented: usize = runs[..sent].iter().filter(|&&r| r > 1).sum();
            self.counters.segmented.inc_by(segmented as u64);
            Ok(runs[..sent].iter().sum())
        }
    }

    /// Sends the front of the queue (one datagram where `sendmmsg` is missing).
    #[cfg(not(target_os = "linux"))]
    fn send_batch(&mut self) -> Result<usize, (io::Error, usize)> {
        let (to, bytes) = self.pending.front().expect("called with a queue");
        self.socket
            .send_to(bytes, *to)
            .map(|_| 1)
            .map_err(|e| (e, 1))
    }
}

/// Splits `datagrams` into the messages they can go as: each a run to one
/// address whose datagrams all have the first's size but the last (which may
/// be shorter), at most [`MAX_SEGMENTS`] of them and [`MAX_SEGMENTED_BYTES`]
/// in all. Writes each run's length to `runs`; returns how many runs.
fn plan_runs<'a>(
    datagrams: impl Iterator<Item = &'a (SocketAddr, Vec<u8>)>,
    runs: &mut [usize],
) -> usize {
    let mut count = 0;
    // The open run: its address, segment size, length, bytes, and whether a
    // shorter datagram closed it.
    let mut open: Option<(&SocketAddr, usize, usize, usize)> = None;
    for (to, bytes) in datagrams {
        let len = bytes.len();
        if let Some((at, size, n, total)) = open.as_mut() {
            let fits = *at == to
                && len <= *size
                && *n < MAX_SEGMENTS
                && *total + len <= MAX_SEGMENTED_BYTES
                && *size > 0;
            if fits {
                *n += 1;
                *total += len;
                if len < *size {
                    // A shorter datagram ends the run.
                    runs[count] = *n;
                    count += 1;
                    open = None;
                }
                continue;
            }
            runs[count] = *n;
            count += 1;
        }
        open = Some((to, len, 1, len));
    }
    if let Some((_, _, n, _)) = open {
        runs[count] = n;
        count += 1;
    }
    count
}

/// Whether the kernel knows `UDP_SEGMENT` on this socket.
#[cfg(target_os = "linux")]
fn gso_supported(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for the kernel to write an int into.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    r == 0
}

#[cfg(not(target_os = "linux"))]
fn gso_supported(_: &UdpSocket) -> bool {
    false
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
    fn runs_of_equal_datagrams_to_one_address_go_as_one_segmented_message() {
        let (a, b) = (receiver(), receiver());
        let mut port = UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        if !port.segments() {
            eprintln!("this kernel has no UDP_SEGMENT: nothing to check");
            return;
        }
        // One picture to a: five of 1200 bytes and a shorter last; one to b:
        // three of 1200; then a's next picture: two of 1200.
        let mut sent = Vec::new();
        let mut queue = |to: &StdSocket, len: usize| {
            let tag = sent.len() as u8;
            sent.push((to.local_addr().unwrap(), len, tag));
            port.send(to.local_addr().unwrap(), vec![tag; len]);
        };
        for len in [1200, 1200, 1200, 1200, 1200, 700] {
            queue(&a, len);
        }
        for _ in 0..3 {
            queue(&b, 1200);
        }
        for _ in 0..2 {
            queue(&a, 1200);
        }
        port.flush();
        assert_eq!(port.counters.sent.get(), 11);
        assert_eq!(port.counters.segmented.get(), 11);
        assert_eq!(port.counters.send_calls.get(), 1);
        // Each arrives as its own datagram, in order, whole.
        let mut buf = [0u8; 2048];
        for (to, len, tag) in sent {
            let from = if to == a.local_addr().unwrap() {
                &a
            } else {
                &b
            };
            let (n, src) = from.recv_from(&mut buf).unwrap();
            assert_eq!((src, n), (port.local, len), "datagram {tag}");
            assert!(buf[..n].iter().all(|&x| x == tag), "datagram {tag}");
        }
        // Without segmentation the same goes one datagram per message.
        port.stop_segmenting();
        for _ in 0..3 {
            port.send(b.local_addr().unwrap(), vec![9; 1200]);
        }
        port.flush();
        assert_eq!(port.counters.segmented.get(), 11);
        for _ in 0..3 {
            assert_eq!(b.recv(&mut buf).unwrap(), 1200);
        }
    }

    #[test]
    fn a_refused_segmented_message_goes_again_one_datagram_per_message() {
        let r = receiver();
        let mut port = UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        if !port.segments() {
            eprintln!("this kernel has no UDP_SEGMENT: nothing to check");
            return;
        }
        // Without UDP checksums the kernel refuses a segmented message
        // (EINVAL) but sends single datagrams.
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and an int option value.
        let set = unsafe {
            use std::os::fd::AsRawFd;
            libc::setsockopt(
                port.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0);
        for i in 0..3u8 {
            port.send(r.local_addr().unwrap(), vec![i; 1000]);
        }
        port.flush();
        assert_eq!(
            (
                port.counters.sent.get(),
                port.counters.segmented.get(),
                port.counters.send_errors.get(),
                port.pending()
            ),
            (3, 0, 0, 0)
        );
        assert!(port.segments(), "EINVAL does not turn segmentation off");
        let mut buf = [0u8; 2048];
        for i in 0..3u8 {
            let n = r.recv(&mut buf).unwrap();
            assert_eq!(n, 1000);
            assert!(buf[..n].iter().all(|&x| x == i), "datagram {i}");
        }
    }

    #[test]
    fn a_run_ends_at_a_new_address_a_larger_or_shorter_datagram_and_its_bounds() {
        let (x, y): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let plan = |d: &[(SocketAddr, usize)]| {
            let q: Vec<(SocketAddr, Vec<u8>)> = d.iter().map(|&(a, n)| (a, vec![0; n])).collect();
            let mut runs = vec![0; q.len()];
            let n = plan_runs(q.iter(), &mut runs);
            runs.truncate(n);
            runs
        };
        assert_eq!(plan(&[(x, 100), (x, 100), (x, 50), (x, 100)]), [3, 1]);
        assert_eq!(plan(&[(x, 100), (x, 100), (y, 100), (x, 100)]), [2, 1, 1]);
        assert_eq!(plan(&[(x, 100), (x, 200), (x, 200)]), [1, 2]);
        assert_eq!(plan(&[(x, 0), (x, 0)]), [1, 1]);
        assert_eq!(plan(&[(x, 10); 70]), [MAX_SEGMENTS, 70 - MAX_SEGMENTS]);
        let big = MAX_SEGMENTED_BYTES / 10_000;
        assert_eq!(plan(&[(x, 10_000); 8]), [big, 8 - big]);
        assert_eq!(plan(&[]), Vec::<usize>::new());
    }

    #[test]
    fn a_refused_datagram_is_dropped_alone() {
        let r = receiver();
        let mut port = UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        port.send(r.local_addr().unwrap(), b"one".to_vec());
        // An IPv6 destination from an IPv4 socket: the kernel refuses it
        // (two of one size: one segmented message, refused, then each alone).
        port.send("[::1]:9".parse().unwrap(), b"bad".to_vec());
        port.send("[::1]:9".parse().unwrap(), b"bad".to_vec());
        port.send(r.local_addr().unwrap(), b"two".to_vec());
        port.flush();
        assert_eq!(
            (
                port.counters.sent.get(),
                port.counters.send_errors.get(),
                port.pending()
            ),
            (2, 2, 0)
        );
        let mut buf = [0u8; 16];
        let n = r.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = r.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
    }
}
