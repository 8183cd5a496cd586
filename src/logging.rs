//! Log output: env_logger's text lines, or one JSON object per line (`--log-format json`).

use std::io::Write;

use serde::Serialize;

use crate::config::LogFormat;

/// One `--log-format json` line; fields in this order.
#[derive(Serialize)]
struct JsonLine<'a> {
    /// RFC 3339, UTC, milliseconds.
    ts: &'a str,
    level: &'a str,
    target: &'a str,
    msg: &'a str,
}

/// The JSON object for one record, without the newline; serde_json escapes everything.
fn json_line(ts: &str, level: &str, target: &str, msg: &str) -> String {
    let line = JsonLine {
        ts,
        level,
        target,
        msg,
    };
    // Serializing a struct of strings cannot fail; keep the message if it somehow did.
    serde_json::to_string(&line).unwrap_or_else(|_| format!("{{\"msg\":{msg:?}}}"))
}

/// Installs the logger on stderr; the level comes from `RUST_LOG`, else `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    // Milliseconds: a session's setup (answer, ICE, DTLS, first frame) takes tens of them.
    builder.format_timestamp_millis();
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let ts = buf.timestamp_millis().to_string();
            let msg = record.args().to_string();
            let line = json_line(&ts, record.level().as_str(), record.target(), &msg);
            writeln!(buf, "{line}")
        });
    }
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_keep_field_order_and_escape_the_message() {
        let line = json_line(
            "2026-01-02T03:04:05.678Z",
            "INFO",
            "portcast_net::server",
            "session \"a\"\nended\tok \u{1}",
        );
        assert_eq!(
            line,
            r#"{"ts":"2026-01-02T03:04:05.678Z","level":"INFO","target":"portcast_net::server","msg":"session \"a\"\nended\tok \u0001"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["msg"], "session \"a\"\nended\tok \u{1}");
    }
}
