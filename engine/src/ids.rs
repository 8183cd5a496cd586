//! Small typed identifiers shared by the engine and its driver.

use std::fmt;

/// Index of one of the daemon's UDP sockets, in the order they were configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub usize);

/// A signaling connection (one WebSocket), numbered by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Name of an avatar (a video source) viewers can ask for, e.g. `test-pattern`:
/// 1-64 characters of `A-Z a-z 0-9 _ . -`, checked once by [`AvatarId::parse`]
/// wherever a name comes in (config, renderer, token), so holders never re-check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AvatarId(String);

impl AvatarId {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 64;

    /// Checks `name` against the avatar-name rule.
    pub fn parse(name: &str) -> Result<AvatarId, InvalidAvatarId> {
        if is_id(name, Self::MAX_LEN, b"_.-") {
            Ok(AvatarId(name.to_string()))
        } else {
            Err(InvalidAvatarId {
                name: name.chars().take(80).collect(),
            })
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for AvatarId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for AvatarId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for AvatarId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A name that breaks the avatar-name rule (its first 80 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAvatarId {
    /// The name as given, cut to 80 characters.
    pub name: String,
}

impl fmt::Display for InvalidAvatarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a valid avatar name (1-64 characters from A-Z a-z 0-9 _ . -)",
            self.name
        )
    }
}

impl std::error::Error for InvalidAvatarId {}

/// A viewer's session id, from the URL `/ws/{session_id}`: 1-128 characters of
/// `A-Z a-z 0-9 . _ ~ -`, checked once by [`SessionId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 128;

    /// Checks `id` against the session-id rule.
    pub fn parse(id: &str) -> Result<SessionId, InvalidSessionId> {
        if is_id(id, Self::MAX_LEN, b"-_.~") {
            Ok(SessionId(id.to_string()))
        } else {
            Err(InvalidSessionId {
                id: id.chars().take(140).collect(),
            })
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An id that breaks the session-id rule (its first 140 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSessionId {
    /// The id as given, cut to 140 characters.
    pub id: String,
}

impl fmt::Display for InvalidSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a valid session id (1-128 characters from A-Z a-z 0-9 . _ ~ -)",
            self.id
        )
    }
}

impl std::error::Error for InvalidSessionId {}

/// Whether `s` is 1 to `max` bytes of ASCII letters, digits and `extra`.
fn is_id(s: &str, max: usize, extra: &[u8]) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "udp#{}", self.0)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

impl fmt::Display for AvatarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_follow_the_url_rule() {
        for ok in ["session-123", "a.b_c~d", &"x".repeat(128)] {
            assert_eq!(SessionId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "a/b", "a%20b", "a b", &"x".repeat(129)] {
            let e = SessionId::parse(bad).unwrap_err();
            assert!(e.to_string().contains("is not a valid session id"), "{e}");
        }
    }

    #[test]
    fn avatar_ids_follow_the_name_rule() {
        for ok in ["test-pattern", "hd.main_1", "A", &"a".repeat(64)] {
            assert_eq!(AvatarId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "a b", "tutor/13", "é", &"a".repeat(65)] {
            let e = AvatarId::parse(bad).unwrap_err();
            assert!(e.to_string().contains("is not a valid avatar name"), "{e}");
        }
    }
}
