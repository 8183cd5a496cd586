//! No SCTP: DTLS application data from a viewer is removed before str0m sees it.
//!
//! The answer never accepts a data channel ([`crate::answer`]), so the engine's
//! str0m never starts SCTP itself. But str0m 0.25 feeds any DTLS application
//! data to its SCTP endpoint, which accepts a peer-initiated association even
//! when no `m=application` was negotiated; a client that ignores the rejected
//! m-line (str0m as an offerer does) would get data channels anyway. In WebRTC
//! DTLS carries nothing but SCTP as application data (SRTP is keyed by DTLS,
//! not carried by it), so those records are dropped here.

/// DTLS 1.2 record content types (RFC 6347 section 4.1, values of RFC 5246 and RFC 6520).
const CHANGE_CIPHER_SPEC: u8 = 20;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;
/// Content type, version, epoch, sequence number, length.
const RECORD_HEADER: usize = 13;

/// A datagram after the guard.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Guarded<'a> {
    /// Nothing to remove: pass it on as it is.
    Keep(&'a [u8]),
    /// Application data records removed; the other records remain, in order.
    Stripped(Vec<u8>),
    /// Only application data: nothing is left to pass on.
    Drop,
}

/// Removes DTLS 1.2 application data records from one datagram.
///
/// Anything that is not a well-formed run of DTLS 1.2 records (SRTP, STUN, a
/// DTLS 1.3 unified header, a truncated record) is kept untouched for str0m
/// to judge; only records it can delimit exactly are removed.
pub(crate) fn strip_application_data(bytes: &[u8]) -> Guarded<'_> {
    let mut records: Vec<(usize, usize, bool)> = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + RECORD_HEADER) else {
            return Guarded::Keep(bytes);
        };
        let (kind, len) = (
            header[0],
            usize::from(u16::from_be_bytes([header[11], header[12]])),
        );
        if !(CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&kind) {
            return Guarded::Keep(bytes);
        }
        let end = pos + RECORD_HEADER + len;
        if end > bytes.len() {
            return Guarded::Keep(bytes);
        }
        records.push((pos, end, kind == APPLICATION_DATA));
        pos = end;
    }
    match records.iter().filter(|r| r.2).count() {
        0 => Guarded::Keep(bytes),
        n if n == records.len() => Guarded::Drop,
        _ => Guarded::Stripped(
            records
                .iter()
                .filter(|r| !r.2)
                .flat_map(|(start, end, _)| bytes.get(*start..*end).unwrap_or_default())
                .copied()
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn application_data_alone_is_dropped() {
        assert_eq!(
            strip_application_data(&record(23, b"sctp init")),
            Guarded::Drop
        );
    }

    #[test]
    fn application_data_is_cut_out_of_a_flight_and_the_rest_kept_in_order() {
        let hs = record(22, b"finished");
        let alert = record(21, b"!");
        let datagram = [hs.clone(), record(23, b"sctp"), alert.clone()].concat();
        assert_eq!(
            strip_application_data(&datagram),
            Guarded::Stripped([hs, alert].concat())
        );
    }

    #[test]
    fn handshakes_srtp_stun_and_odd_bytes_pass_untouched() {
        let hs = [record(22, b"client hello"), record(20, b"\x01")].concat();
        let mut truncated = record(23, b"sctp");
        truncated.pop();
        let dtls13 = [0x2c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        let cases: [&[u8]; 6] = [
            &hs,
            &[0x80, 0x60, 0, 1],
            &[0, 1, 0, 0],
            &truncated,
            &dtls13,
            &[],
        ];
        for bytes in cases {
            assert_eq!(strip_application_data(bytes), Guarded::Keep(bytes));
        }
    }
}
