//! ICE-TCP framing (RFC 4571: a 2-byte big-endian length, then one STUN, DTLS
//! or SRTP packet): reading frames off a connection and keeping its send
//! buffer bounded.

use std::io::{self, Read};

use mio::net::TcpStream;

use crate::conn::ConnEvent;

/// Largest RFC 4571 frame taken from an ICE-TCP peer: one STUN, DTLS or SRTP
/// packet, which browsers keep under their ~1200-byte MTU.
pub const MAX_ICE_TCP_FRAME: usize = 4096;

/// Bytes queued for a slow ICE-TCP viewer before further packets are dropped
/// (about half a second of a 2 Mbit/s stream): newest loses, the loop never blocks.
pub const MAX_ICE_TCP_QUEUE: usize = 128 * 1024;

/// Reads what is there and emits every complete RFC 4571 frame; false when
/// the connection is over (closed, failed, or a bad length).
pub(crate) fn read_frames_4571(
    stream: &mut TcpStream,
    rbuf: &mut Vec<u8>,
    out: &mut Vec<ConnEvent>,
) -> bool {
    let mut chunk = [0u8; 8192];
    loop {
        // Whole frames out first: rbuf never holds more than one partial frame plus a chunk.
        let mut at = 0;
        while rbuf.len() - at >= 2 {
            let len = usize::from(u16::from_be_bytes([rbuf[at], rbuf[at + 1]]));
            if len == 0 || len > MAX_ICE_TCP_FRAME {
                out.push(ConnEvent::BadFrame(len));
                return false;
            }
            if rbuf.len() - at < 2 + len {
                break;
            }
            out.push(ConnEvent::Frame(rbuf[at + 2..at + 2 + len].to_vec()));
            at += 2 + len;
        }
        rbuf.drain(..at);
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Drops the written prefix of an ICE-TCP send buffer: at once when all of it
/// is written, else once the prefix is a queue's worth (a copy of at most
/// [`MAX_ICE_TCP_QUEUE`] pending bytes, rarely), so a socket that never quite
/// drains cannot grow the buffer without bound.
pub(crate) fn compact(wbuf: &mut Vec<u8>, wpos: &mut usize) {
    if *wpos == wbuf.len() {
        wbuf.clear();
        *wpos = 0;
    } else if *wpos >= MAX_ICE_TCP_QUEUE {
        wbuf.drain(..*wpos);
        *wpos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ice_tcp_send_buffer_that_never_drains_stays_bounded() {
        let (mut wbuf, mut wpos) = (Vec::new(), 0);
        // A socket that always takes all but the last 100 bytes: never fully drained.
        for _ in 0..10_000 {
            compact(&mut wbuf, &mut wpos);
            wbuf.extend_from_slice(&[0u8; 1202]);
            wpos = wbuf.len() - 100;
        }
        assert!(
            wbuf.len() <= MAX_ICE_TCP_QUEUE + 1202,
            "{} bytes held",
            wbuf.len()
        );
        compact(&mut wbuf, &mut wpos);
        wpos = wbuf.len();
        compact(&mut wbuf, &mut wpos);
        assert!(wbuf.is_empty() && wpos == 0);
    }
}
