//! `--capture-offers DIR`: every `webrtc_offer` message the daemon receives, kept as a file.
//!
//! A user whose browser gets a bad answer (or a refusal) in production can
//! replay that exact offer at home with `portcast replay DIR`. Each file holds
//! the message byte for byte as it arrived (session id and user id included,
//! nothing added), named `offer-<unix ms>-<seq>-<session id>.json`.
//!
//! Bounded: at most `max_files` capture files in the folder, counting those of
//! earlier runs, so the oldest are kept and capture stops (logged once) when
//! the bound is reached; a message over `max_bytes` is not written. The write
//! happens on the loop thread: it is one small write without fsync per offer
//! (offers come once per session), which lands in the page cache; a thread and
//! a queue would cost more than they save for a debugging aid that is off by
//! default.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where and how much to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Folder the files go to (created if missing).
    pub dir: PathBuf,
    /// Most capture files the folder may hold.
    pub max_files: usize,
    /// Largest message written, in bytes.
    pub max_bytes: usize,
}

impl CaptureConfig {
    /// A config for `dir` keeping `max_files` files, sized for SDP offers of up to `max_sdp_bytes`.
    pub fn new(dir: PathBuf, max_files: usize, max_sdp_bytes: usize) -> Self {
        CaptureConfig {
            dir,
            max_files,
            // JSON escaping turns each CRLF into four bytes, and the envelope
            // (type, ids, avatar) adds a few hundred; 1/8 of slack covers both.
            max_bytes: max_sdp_bytes + max_sdp_bytes / 8 + 4096,
        }
    }
}

/// The offer recorder; a disabled one ignores everything.
#[derive(Debug)]
pub struct OfferCapture {
    active: Option<Active>,
}

#[derive(Debug)]
struct Active {
    config: CaptureConfig,
    files: usize,
    seq: u64,
    full_logged: bool,
}

const PREFIX: &str = "offer-";
const SUFFIX: &str = ".json";
const MAX_ID_IN_NAME: usize = 64;

impl OfferCapture {
    /// Creates the folder and counts the capture files already in it; `None` disables capture.
    pub fn new(config: Option<CaptureConfig>) -> io::Result<Self> {
        let Some(config) = config else {
            return Ok(OfferCapture { active: None });
        };
        let named = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("capture folder {}: {e}", config.dir.display()),
            )
        };
        fs::create_dir_all(&config.dir).map_err(named)?;
        let files = count_captures(&config.dir).map_err(named)?;
        log::info!(
            "capturing offers to {} ({files} of at most {} files there)",
            config.dir.display(),
            config.max_files
        );
        Ok(OfferCapture {
            active: Some(Active {
                config,
                files,
                seq: 0,
                full_logged: false,
            }),
        })
    }

    /// Writes `text` if it is a `webrtc_offer` message within the bounds; returns the file.
    pub fn on_text(&mut self, text: &str) -> Option<PathBuf> {
        let a = self.active.as_mut()?;
        // Cheap pre-check: most text frames are the viewer page's client_stats.
        if !text.contains("webrtc_offer") {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        if v.get("type").and_then(|t| t.as_str()) != Some("webrtc_offer") {
            return None;
        }
        if text.len() > a.config.max_bytes {
            log::info!(
                "offer of {} bytes not captured (over {} bytes)",
                text.len(),
                a.config.max_bytes
            );
            return None;
        }
        if a.files >= a.config.max_files {
            if !a.full_logged {
                a.full_logged = true;
                log::warn!(
                    "offer capture stopped: {} holds {} files, the limit",
                    a.config.dir.display(),
                    a.files
                );
            }
            return None;
        }
        let session = v.get("session_id").and_then(|s| s.as_str()).unwrap_or("");
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        a.seq += 1;
        let name = format!(
            "{PREFIX}{ms:013}-{:06}-{}{SUFFIX}",
            a.seq,
            file_safe(session)
        );
        let path = a.config.dir.join(name);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        match written {
            Ok(()) => {
                a.files += 1;
                Some(path)
            }
            Err(e) => {
                log::warn!("offer not captured to {}: {e}", path.display());
                None
            }
        }
    }
}

fn count_captures(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
            n += 1;
        }
    }
    Ok(n)
}

/// A session id as a file-name part: `[A-Za-z0-9._-]`, others become `_`, at most 64 chars.
fn file_safe(id: &str) -> String {
    let s: String = id
        .chars()
        .take(MAX_ID_IN_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A name of dots alone ("." or "..") would read as a folder.
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "no-session".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir()
                .join(format!("portcast-capture-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn offer(session: &str) -> String {
        serde_json::json!({
            "type": "webrtc_offer", "session_id": session, "user_id": 5,
            "avatar_id": "test-pattern", "sdp": "v=0\r\n",
        })
        .to_string()
    }

    fn capture(dir: &TempDir, max_files: usize) -> OfferCapture {
        OfferCapture::new(Some(CaptureConfig {
            dir: dir.0.join("nested"),
            max_files,
            max_bytes: 1000,
        }))
        .unwrap()
    }

    #[test]
    fn an_offer_is_written_as_received_and_other_messages_are_not() {
        let dir = TempDir::new("written");
        let mut c = capture(&dir, 10);
        let text = offer("session-123");
        let path = c.on_text(&text).expect("captured");
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("offer-") && name.ends_with("-000001-session-123.json"),
            "{name}"
        );
        assert_eq!(
            c.on_text(r#"{"type":"client_stats","x":"webrtc_offer"}"#),
            None
        );
        assert_eq!(c.on_text(r#"{"type":"webrtc_offer""#), None, "not JSON");
        assert_eq!(c.on_text(&offer(&"x".repeat(2000))), None, "over max_bytes");
    }

    #[test]
    fn capture_stops_at_the_file_limit_counting_earlier_runs() {
        let dir = TempDir::new("limit");
        let mut first = capture(&dir, 3);
        assert!(first.on_text(&offer("a")).is_some());
        assert!(first.on_text(&offer("b")).is_some());
        let mut second = capture(&dir, 3);
        assert!(second.on_text(&offer("c")).is_some());
        assert_eq!(second.on_text(&offer("d")), None);
        assert_eq!(count_captures(&dir.0.join("nested")).unwrap(), 3);
    }

    #[test]
    fn session_ids_cannot_escape_the_folder() {
        assert_eq!(file_safe("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(file_safe(".."), "no-session");
        assert_eq!(file_safe(""), "no-session");
        assert_eq!(file_safe("é/\u{0}"), "___");
        assert_eq!(file_safe(&"z".repeat(500)).len(), 64);
    }

    #[test]
    fn a_disabled_capture_ignores_offers() {
        let mut c = OfferCapture::new(None).unwrap();
        assert_eq!(c.on_text(&offer("s")), None);
    }

    #[test]
    fn an_unusable_folder_is_an_error_naming_it() {
        let dir = TempDir::new("file");
        fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("plain");
        fs::write(&file, "x").unwrap();
        let e = OfferCapture::new(Some(CaptureConfig::new(file.clone(), 1, 100))).unwrap_err();
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    }
}
