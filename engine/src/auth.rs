//! Signaling tokens: an HMAC-SHA256 over session id, avatar id and expiry.
//!
//! Browsers cannot set headers on a WebSocket, so a backend that decides who
//! may watch mints a token and the page passes it as `/ws/{id}?token=...`.
//! The token carries only a version, the expiry and the MAC; the session id
//! comes from the URL and the avatar id from the offer, so a token is useless
//! for any other session or avatar. Verification is constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// No token was given but the server requires one.
    Missing,
    /// The token is not `v1.EXPIRY.HEX`.
    Malformed,
    /// The token's expiry has passed.
    Expired,
    /// The MAC does not match this session and avatar.
    BadSignature,
}

impl TokenError {
    /// The stable code sent to the peer.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_required",
            TokenError::Malformed | TokenError::BadSignature => "token_invalid",
            TokenError::Expired => "token_expired",
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenError::Missing => {
                "this server requires a token: connect to /ws/{session_id}?token=..."
            }
            TokenError::Malformed => "the token is not of the form v1.EXPIRY.SIGNATURE",
            TokenError::Expired => "the token has expired; ask the backend for a new one",
            TokenError::BadSignature => {
                "the token was not issued for this session id and avatar id"
            }
        })
    }
}

impl std::error::Error for TokenError {}

/// Mints and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from a secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Option<TokenKey> {
        (secret.len() >= MIN_SECRET_LEN).then(|| TokenKey {
            secret: secret.to_vec(),
        })
    }

    /// Whether `other` holds the same secret (to tell a rotated key on reload).
    pub fn same_key(&self, other: &TokenKey) -> bool {
        self.secret == other.secret
    }

    /// A token for `session_id` watching `avatar_id`, valid until `expires_unix` (seconds).
    pub fn mint(&self, session_id: &str, avatar_id: &str, expires_unix: u64) -> String {
        let tag = self
            .mac(session_id, avatar_id, expires_unix)
            .finalize()
            .into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("v1.{expires_unix}.{hex}")
    }

    /// Checks a token for this session and avatar at time `now_unix` (seconds).
    pub fn verify(
        &self,
        token: &str,
        session_id: &str,
        avatar_id: &str,
        now_unix: u64,
    ) -> Result<(), TokenError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(exp), Some(hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let expires: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        let tag = decode_hex(hex).ok_or(TokenError::Malformed)?;
        // The MAC is checked before the expiry so a forged token learns nothing.
        self.mac(session_id, avatar_id, expires)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        if now_unix >= expires {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    fn mac(&self, session_id: &str, avatar_id: &str, expires: u64) -> HmacSha256 {
        // new_from_slice accepts any key length for HMAC; the length was checked in `new`.
        let mut mac = match HmacSha256::new_from_slice(&self.secret) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        // Length-prefixed fields: no two (session, avatar) pairs share an input.
        for field in [session_id.as_bytes(), avatar_id.as_bytes()] {
            mac.update(&(field.len() as u32).to_be_bytes());
            mac.update(field);
        }
        mac.update(&expires.to_be_bytes());
        mac
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC is defined for every key length (RFC 2104): this cannot happen.
    panic!("HMAC refused a key")
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef-secret").unwrap()
    }

    #[test]
    fn a_minted_token_verifies_only_for_its_session_avatar_and_time() {
        let k = key();
        let t = k.mint("session-1", "avatar_tutor_13", 1_000);
        assert_eq!(k.verify(&t, "session-1", "avatar_tutor_13", 999), Ok(()));
        assert_eq!(
            k.verify(&t, "session-2", "avatar_tutor_13", 999),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            k.verify(&t, "session-1", "test-pattern", 999),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            k.verify(&t, "session-1", "avatar_tutor_13", 1_000),
            Err(TokenError::Expired)
        );
        let other = TokenKey::new(b"another secret of 16+ bytes").unwrap();
        assert_eq!(
            other.verify(&t, "session-1", "avatar_tutor_13", 999),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_or_garbled_tokens_are_refused() {
        let k = key();
        let t = k.mint("s", "a", 5_000);
        let later = t.replacen("v1.5000.", "v1.9999.", 1);
        assert_eq!(k.verify(&later, "s", "a", 1), Err(TokenError::BadSignature));
        for junk in [
            "",
            "v1",
            "v1.5000",
            "v2.5000.00",
            "v1.x.00",
            "v1.5000.zz",
            "v1.5000.00.00",
        ] {
            assert_eq!(
                k.verify(junk, "s", "a", 1),
                Err(TokenError::Malformed),
                "{junk:?}"
            );
        }
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            k.verify(&flipped, "s", "a", 1),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenKey::new(b"short").is_none());
    }
}
