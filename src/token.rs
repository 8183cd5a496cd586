//! `portcast token`: mints a signaling token, and the secret file both it and the daemon read.

use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use portcast_engine::auth::{TokenKey, MIN_SECRET_LEN};

/// Longest token lifetime `portcast token` mints: 31 days.
pub const MAX_TTL_SECS: u64 = 31 * 24 * 3600;

/// Reads a shared secret: the file's bytes without trailing CR/LF, at least [`MIN_SECRET_LEN`] long.
///
/// The error never contains the secret, only the path and what is wrong.
pub fn read_secret_file(path: &Path) -> Result<TokenKey, String> {
    let mut bytes = std::fs::read(path).map_err(|error| {
        // The "(os error N)" suffix means nothing to an operator fixing a path.
        let text = error.to_string();
        let text = text.split(" (os error").next().unwrap_or(&text).to_string();
        format!("cannot read the secret file {}: {text}", path.display())
    })?;
    while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!("the secret file {} is empty", path.display()));
    }
    TokenKey::new(&bytes).ok_or_else(|| {
        format!(
            "the secret in {} is {} bytes; at least {MIN_SECRET_LEN} are required \
             (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
            path.display(),
            bytes.len()
        )
    })
}

/// The token for `portcast token`, or the message explaining why there is none.
pub fn mint(
    secret_file: &Path,
    session: &str,
    avatar: &str,
    ttl_secs: &str,
    now_unix: u64,
) -> Result<String, String> {
    if let Err(e) = portcast_engine::SessionId::parse(session) {
        return Err(format!("--session: {e}"));
    }
    if let Err(e) = portcast_engine::AvatarId::parse(avatar) {
        return Err(format!("--avatar: {e}"));
    }
    let ttl = ttl_secs
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("--ttl-secs: '{ttl_secs}' is not a whole number of seconds"))?;
    let ttl = u64::try_from(ttl)
        .ok()
        .filter(|ttl| (1..=MAX_TTL_SECS).contains(ttl))
        .ok_or_else(|| {
            format!("--ttl-secs: {ttl} is out of range (1-{MAX_TTL_SECS} seconds, 31 days)")
        })?;
    let key = read_secret_file(secret_file).map_err(|e| format!("--secret-file: {e}"))?;
    Ok(key.mint(session, avatar, now_unix.saturating_add(ttl)))
}

/// Runs `portcast token`: the token on stdout and exit 0, or a message on stderr and exit 2.
pub fn run(secret_file: &Path, session: &str, avatar: &str, ttl_secs: &str) -> ExitCode {
    let now = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(_) => {
            eprintln!("portcast token: the system clock is before 1970; cannot set an expiry");
            return ExitCode::from(2);
        }
    };
    match mint(secret_file, session, avatar, ttl_secs, now) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("portcast token: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A secret file in the temp dir, removed when dropped.
    struct TempSecret(PathBuf);

    impl TempSecret {
        fn new(name: &str, bytes: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!(
                "portcast-token-{}-{name}.secret",
                std::process::id()
            ));
            std::fs::write(&path, bytes).expect("write temp secret");
            TempSecret(path)
        }
    }

    impl Drop for TempSecret {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn trailing_newlines_are_not_part_of_the_secret() {
        let plain = TempSecret::new("plain", b"0123456789abcdef-secret");
        let newline = TempSecret::new("newline", b"0123456789abcdef-secret\r\n");
        let a = read_secret_file(&plain.0).expect("plain secret");
        let b = read_secret_file(&newline.0).expect("secret with newline");
        let token = a.mint("s", "a", 100);
        assert_eq!(b.verify(&token, "s", "a", 99), Ok(()));
    }

    #[test]
    fn unusable_secret_files_are_explained_without_the_secret() {
        let short = TempSecret::new("short", b"tooshort-secret\n");
        let err = read_secret_file(&short.0).expect_err("15-byte secret");
        assert!(
            err.contains("is 15 bytes; at least 16 are required"),
            "{err}"
        );
        assert!(!err.contains("tooshort"), "{err}");
        let empty = TempSecret::new("empty", b"\n");
        let err = read_secret_file(&empty.0).expect_err("empty secret");
        assert!(err.ends_with("is empty"), "{err}");
        let err = read_secret_file(Path::new("/nonexistent-portcast/secret")).expect_err("missing");
        assert_eq!(
            err,
            "cannot read the secret file /nonexistent-portcast/secret: No such file or directory"
        );
    }

    #[test]
    fn mint_checks_its_arguments_and_sets_the_expiry() {
        let secret = TempSecret::new("mint", b"0123456789abcdef-secret");
        let token = mint(&secret.0, "abc", "test-pattern", "60", 1_000).expect("token");
        assert!(token.starts_with("v1.1060."), "{token}");
        let key = read_secret_file(&secret.0).expect("key");
        assert_eq!(key.verify(&token, "abc", "test-pattern", 1_059), Ok(()));
        let error = |session: &str, avatar: &str, ttl: &str| {
            mint(&secret.0, session, avatar, ttl, 1_000).expect_err("refused")
        };
        assert!(error("a b", "x", "60").starts_with("--session: 'a b' is not a valid session id"));
        assert!(error("", "x", "60").starts_with("--session: '' is not a valid session id"));
        assert!(error("s", "", "60").starts_with("--avatar: '' is not a valid avatar name"));
        assert_eq!(
            error("s", "x", "0"),
            "--ttl-secs: 0 is out of range (1-2678400 seconds, 31 days)"
        );
        assert_eq!(
            error("s", "x", "2678401"),
            "--ttl-secs: 2678401 is out of range (1-2678400 seconds, 31 days)"
        );
        assert_eq!(
            error("s", "x", "1h"),
            "--ttl-secs: '1h' is not a whole number of seconds"
        );
    }
}
