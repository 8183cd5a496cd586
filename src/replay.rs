//! `portcast replay PATH... [--expect FILE] [--json]`: files in, one report line per offer out.
//!
//! Only wiring: what a file is, how an offer is answered and checked, and how
//! outcomes compare with the expected ones live in `portcast_engine::replay`.
//! Files are named in reports and expectations by their file name; folders
//! are walked recursively in name order, taking `.sdp` and `.json` files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use portcast_engine::replay::{Expectations, FileKind, ReplayOutcome, Replayer};

use crate::config::Config;

/// Runs the subcommand; exit 0 if every answer holds its invariants and matches, 1 if not, 2 on usage errors.
pub fn run(config: &Config, paths: &[PathBuf], expect: Option<&Path>, json: bool) -> ExitCode {
    let expectations = match expect.map(read_expectations).transpose() {
        Ok(e) => e,
        Err(message) => {
            eprintln!("portcast replay: {message}");
            return ExitCode::from(2);
        }
    };
    let mut replayer = match Replayer::new(crate::engine_config(config), std::time::Instant::now) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcast replay: cannot build the engine: {e}");
            return ExitCode::from(2);
        }
    };
    let mut report = Report::default();
    for path in paths {
        let files = match offer_files(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("portcast replay: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        for file in files {
            report.replay_file(&mut replayer, &file, expectations.as_ref(), json);
        }
    }
    report.summary(expectations.as_ref());
    if report.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Default)]
struct Report {
    failed: bool,
    answered: usize,
    refused: usize,
    skipped: Vec<String>,
    replayed: Vec<String>,
    slowest: Option<(String, Duration)>,
}

impl Report {
    fn replay_file(
        &mut self,
        replayer: &mut Replayer,
        path: &Path,
        expectations: Option<&Expectations>,
        json: bool,
    ) {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                self.unusable(&name, &format!("cannot read: {e}"), json);
                return;
            }
        };
        let input = match FileKind::classify(&name, &bytes) {
            FileKind::Offer(input) => input,
            FileKind::Skipped(_) => {
                self.skipped.push(name);
                return;
            }
            FileKind::Unusable(why) => {
                self.unusable(&name, &why, json);
                return;
            }
        };
        let replay = replayer.replay(&input);
        self.replayed.push(name.clone());
        match replay.outcome {
            ReplayOutcome::Answered { .. } => self.answered += 1,
            _ => self.refused += 1,
        }
        if self
            .slowest
            .as_ref()
            .is_none_or(|(_, t)| replay.engine_time > *t)
        {
            self.slowest = Some((name.clone(), replay.engine_time));
        }
        let differences = expectations.map_or_else(Vec::new, |e| e.compare(&name, &replay));
        self.failed |= !differences.is_empty() || !replay.violations().is_empty();
        if json {
            let mut v = replay.to_json(&name);
            if expectations.is_some() {
                v["differences"] = differences.into();
            }
            println!("{v}");
        } else {
            println!("{}", replay.line(&name));
            for d in differences {
                println!("{name}: DIFFERENCE {d}");
            }
        }
    }

    fn unusable(&mut self, name: &str, why: &str, json: bool) {
        self.failed = true;
        if json {
            let v = serde_json::json!({"file": name, "outcome": "unusable", "reason": why});
            println!("{v}");
        } else {
            println!("{name}: unusable: {why}");
        }
    }

    fn summary(&self, expectations: Option<&Expectations>) {
        if !self.skipped.is_empty() {
            eprintln!(
                "skipped {} files holding no webrtc_offer message (e.g. fixture metadata): {}",
                self.skipped.len(),
                self.skipped.join(", ")
            );
        }
        if let Some(e) = expectations {
            let unused: Vec<&str> = e
                .files()
                .filter(|f| !self.replayed.iter().any(|r| r == f))
                .collect();
            if !unused.is_empty() {
                eprintln!(
                    "note: {} expected outcomes name files not replayed this time",
                    unused.len()
                );
            }
        }
        let slowest = self.slowest.as_ref().map_or_else(String::new, |(f, t)| {
            format!("; slowest {f} in {:.2} ms", t.as_secs_f64() * 1e3)
        });
        eprintln!(
            "replayed {} offers: {} answered, {} refused{slowest}; {}",
            self.replayed.len(),
            self.answered,
            self.refused,
            if self.failed { "FAILED" } else { "ok" }
        );
    }
}

fn read_expectations(path: &Path) -> Result<Expectations, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Expectations::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `path` itself if it is a file, else the `.sdp` and `.json` files under it, in name order.
fn offer_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        if fs::metadata(&entry)?.is_dir() {
            files.extend(offer_files(&entry)?);
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("sdp" | "json")
        ) {
            files.push(entry);
        }
    }
    Ok(files)
}
