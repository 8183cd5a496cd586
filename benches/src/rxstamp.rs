//! Kernel receive timestamps for the load generator's UDP sockets.
//!
//! The generator is one thread serving hundreds of viewers: when a server sends a frame to
//! all of them in one burst, the generator reads the datagrams one after another, and the
//! time it read the last one says how busy the generator was, not when the datagram arrived.
//! With `SO_TIMESTAMPNS` the kernel stamps each datagram as it is queued on the viewer's
//! socket (over loopback: while the server's send call delivers it), so first-to-last spreads
//! measure the sender.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::SockAddr;

/// Asks the kernel to stamp each datagram `socket` receives (`SO_TIMESTAMPNS`).
pub fn enable(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram: its length, its sender, and when the kernel queued it (ns since the Unix
/// epoch, `CLOCK_REALTIME`), if the socket was stamped.
pub fn recv(
    socket: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<u128>)> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: all-zero bytes are valid for this plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: socket2 hands a zeroed address storage and its length, and reads back the
    // length the kernel wrote; msg points at it, iov (into buf) and control, all alive for
    // the call and sized as declared, and the kernel writes within those sizes.
    let (n, from) = unsafe {
        SockAddr::try_init(|storage, len| {
            msg.msg_name = storage as *mut libc::c_void;
            msg.msg_namelen = *len;
            let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, 0);
            *len = msg.msg_namelen;
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })?
    };
    let mut stamp = None;
    // SAFETY: the CMSG_* walk stays within msg_controllen bytes of `control`, which the
    // kernel filled; an SCM_TIMESTAMPNS message carries one timespec.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                stamp = Some(ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::other("datagram from no IP address"))?;
    Ok((n, from, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn a_stamped_datagram_carries_its_sender_and_an_arrival_time() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        tx.send_to(b"hello", rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from, stamp) = recv(&rx, &mut buf).unwrap();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, tx.local_addr().unwrap());
        let stamp = stamp.expect("a kernel timestamp");
        assert!(
            before <= stamp && stamp <= after,
            "{before} <= {stamp} <= {after}"
        );
    }

    #[test]
    fn an_unstamped_socket_gives_no_time() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        let (n, _, stamp) = recv(&rx, &mut buf).unwrap();
        assert_eq!((n, stamp), (1, None));
    }
}
