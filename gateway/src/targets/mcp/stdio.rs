//! Stdio upstreams: the child process, its stderr in the gateway's log, and how it ended.
//!
//! The gateway owns the child itself (rather than leaving it inside rmcp's transport) so it
//! can say *how* a child ended — "the process exited (status 1)" — instead of only that its
//! stdout closed. The child's stderr is the child's own log: each line is logged at the
//! level the line states (`INFO`, `WARN`, `ERROR`, …), or at DEBUG when it states none, and
//! without the child's own timestamp (the gateway's log line has one already). The last few
//! lines are kept, so a child that dies can be explained in one WARN line.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Level;

use crate::cause::{Cause, ExitStatus};
use crate::config::McpTransport;

/// How long a child may take to exit after its session ended (stdin closed) before it is
/// killed — the MCP stdio shutdown sequence.
const GRACE: Duration = Duration::from_secs(3);
/// Stderr lines kept to explain a child's death.
const TAIL_LINES: usize = 3;
/// How long an exited child's remaining stderr is awaited.
const STDERR_DRAIN: Duration = Duration::from_millis(500);
const TAIL_LINE_CHARS: usize = 200;
/// The longest stderr line logged whole. A child that writes without newlines must not grow
/// the gateway's memory, and must never stop being read (a full pipe blocks the child).
const MAX_LINE_BYTES: usize = 8 * 1024;

/// A started child: the pipes the MCP session runs on, and its exit status once known.
pub(super) struct Child {
    pub stdout: ChildStdout,
    pub stdin: ChildStdin,
    pub exit: watch::Receiver<Option<ExitStatus>>,
}

/// The last lines a target's children wrote on stderr, and whether to log them quietly.
#[derive(Debug, Default)]
pub(super) struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    /// Set while the target is down and that was said: a child that fails the same way on
    /// every retry then logs at DEBUG, not one ERROR per retry (the WARN that said the
    /// target is down quoted its last lines).
    quiet: AtomicBool,
}

impl StderrTail {
    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::Relaxed);
    }

    fn push(&self, line: &str) {
        if let Ok(mut t) = self.lines.lock() {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line.chars().take(TAIL_LINE_CHARS).collect());
        }
    }

    fn clear(&self) {
        if let Ok(mut t) = self.lines.lock() {
            t.clear();
        }
    }

    /// `; its last stderr lines: "…" | "…"`, or nothing when it wrote none.
    pub fn describe(&self) -> String {
        let lines: Vec<String> = self
            .lines
            .lock()
            .map(|t| t.iter().map(|l| format!("\"{l}\"")).collect())
            .unwrap_or_default();
        match lines.len() {
            0 => String::new(),
            1 => format!("; its last stderr line: {}", lines[0]),
            _ => format!("; its last stderr lines: {}", lines.join(" | ")),
        }
    }
}

/// Start the child of a stdio target. It is killed when `ct` is cancelled and it has not
/// exited within [`GRACE`], and when the gateway exits.
pub(super) fn spawn(
    target: &str,
    transport: &McpTransport,
    ct: CancellationToken,
    tail: Arc<StderrTail>,
) -> Result<Child, Cause> {
    let McpTransport::Stdio {
        command,
        args,
        env,
        inherit,
        cwd,
    } = transport
    else {
        return Err(Cause::Plain("not a stdio target".into()));
    };
    let mut cmd = tokio::process::Command::new(command);
    // A clean environment: the child sees only what its registration grants, not other
    // targets' secrets or the gateway's cloud credentials.
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in inherit {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    for (k, v) in env {
        cmd.env(k, v.expose());
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| crate::cause::classify(&e))?;
    let (Some(stdout), Some(stdin), stderr) =
        (child.stdout.take(), child.stdin.take(), child.stderr.take())
    else {
        return Err(Cause::Plain("the child's pipes could not be opened".into()));
    };
    tail.clear();
    let stderr = stderr.map(|e| tokio::spawn(forward_stderr(target.to_string(), e, tail)));
    let (tx, exit) = watch::channel(None);
    tokio::spawn(async move {
        let status = tokio::select! {
            s = child.wait() => s.ok(),
            _ = ct.cancelled() => {
                // The session is over and rmcp closed the child's stdin: let it exit on its
                // own, then make sure it does.
                match tokio::time::timeout(GRACE, child.wait()).await {
                    Ok(s) => s.ok(),
                    Err(_) => {
                        let _ = child.kill().await;
                        child.wait().await.ok()
                    }
                }
            }
        };
        // Publish the exit only once its last stderr lines are read (bounded: a grandchild
        // may hold stderr open), so whoever explains the exit can quote them.
        if let Some(stderr) = stderr {
            let _ = tokio::time::timeout(STDERR_DRAIN, stderr).await;
        }
        let _ = tx.send(status.map(ExitStatus::from));
    });
    Ok(Child {
        stdout,
        stdin,
        exit,
    })
}

/// The exit status, waiting at most `within` for the OS to report it (a child's stdout
/// closes a moment before its exit is reaped).
pub(super) async fn exit_status(
    exit: &mut watch::Receiver<Option<ExitStatus>>,
    within: Duration,
) -> Option<ExitStatus> {
    tokio::time::timeout(within, exit.wait_for(Option::is_some))
        .await
        .ok()
        .and_then(|r| r.ok().and_then(|s| *s))
}

/// Log a child's stderr line by line until it closes. Bytes that are not UTF-8 are shown
/// as U+FFFD and over-long lines are cut: either way reading goes on, since a child whose
/// stderr is no longer read blocks once the pipe is full.
async fn forward_stderr(target: String, stderr: impl AsyncRead + Unpin, tail: Arc<StderrTail>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        let cut = match read_line_capped(&mut reader, &mut buf, MAX_LINE_BYTES).await {
            Ok(Some(cut)) => cut,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(target: "portcullis::upstream_stderr", target_name = %target, "target `{target}`: its stderr could not be read any more: {e}");
                return;
            }
        };
        let (level, mut line) = parse_line(&String::from_utf8_lossy(&buf));
        if line.is_empty() {
            continue;
        }
        if cut {
            line.push_str(&format!(
                " [cut: the line is longer than {} KiB]",
                MAX_LINE_BYTES / 1024
            ));
        }
        let level = if tail.quiet.load(Ordering::Relaxed) {
            Level::DEBUG
        } else {
            level
        };
        tail.push(&line);
        let t = target.as_str();
        // `tracing` needs the level at compile time.
        match level {
            Level::ERROR => {
                tracing::error!(target: "portcullis::upstream_stderr", target_name = %t, "target `{t}` (stderr): {line}")
            }
            Level::WARN => {
                tracing::warn!(target: "portcullis::upstream_stderr", target_name = %t, "target `{t}` (stderr): {line}")
            }
            Level::INFO => {
                tracing::info!(target: "portcullis::upstream_stderr", target_name = %t, "{line}")
            }
            Level::TRACE => {
                tracing::trace!(target: "portcullis::upstream_stderr", target_name = %t, "{line}")
            }
            _ => tracing::debug!(target: "portcullis::upstream_stderr", target_name = %t, "{line}"),
        }
    }
}

/// Read one line into `buf` (without its newline), keeping at most `cap` bytes of it; the
/// rest of a longer line is read and dropped. `Ok(None)` at the end of the input, else
/// whether the line was cut.
async fn read_line_capped(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let (mut cut, mut read_any) = (false, false);
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(read_any.then_some(cut));
        }
        read_any = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let chunk = &available[..newline.unwrap_or(available.len())];
        let room = cap.saturating_sub(buf.len());
        cut |= chunk.len() > room;
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = newline.map_or(available.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(cut));
        }
    }
}

/// A child's stderr line → the level it states (DEBUG when none) and its text without ANSI
/// colours, its leading timestamp or its level word.
pub(crate) fn parse_line(raw: &str) -> (Level, String) {
    let clean = strip_ansi(raw);
    let rest = strip_timestamp(clean.trim_start()).trim_start();
    match strip_level(rest) {
        Some((level, text)) => (level, text.trim().to_string()),
        None => (Level::DEBUG, rest.trim_end().to_string()),
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Remove a leading RFC 3339 / ISO 8601 timestamp (`2026-11-23T16:14:05.08Z`,
/// `2026-11-23 16:14:05,123`, optionally in brackets).
fn strip_timestamp(s: &str) -> &str {
    let (inner, bracketed) = match s.strip_prefix('[') {
        Some(r) => (r, true),
        None => (s, false),
    };
    let b = inner.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let is_date = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b' '))
        && digits(11..13)
        && b.get(13) == Some(&b':');
    if !is_date {
        return s;
    }
    // Time, fraction and zone: digits and : . , + - Z until the first space or bracket.
    let end = inner[11..]
        .find(|c: char| {
            !(c.is_ascii_digit() || matches!(c, ':' | '.' | ',' | '+' | '-' | 'Z' | 'z'))
        })
        .map_or(inner.len(), |i| i + 11);
    let rest = &inner[end..];
    if bracketed {
        rest.strip_prefix(']').unwrap_or(rest)
    } else {
        rest
    }
}

/// A leading level word: `INFO`, `[warn]`, `ERROR:`, `level=info`; lower case only when
/// marked as a level (brackets, colon, `level=`), so prose is not mistaken for one.
fn strip_level(s: &str) -> Option<(Level, &str)> {
    let (word, marked, rest) = if let Some(r) = s.strip_prefix("level=") {
        let end = r.find(char::is_whitespace).unwrap_or(r.len());
        (&r[..end], true, &r[end..])
    } else if let Some(r) = s.strip_prefix('[') {
        let end = r.find(']')?;
        (&r[..end], true, &r[end + 1..])
    } else {
        let end = s
            .find(|c: char| c.is_whitespace() || c == ':')
            .unwrap_or(s.len());
        let colon = s[end..].starts_with(':');
        let rest = if colon { &s[end + 1..] } else { &s[end..] };
        (&s[..end], colon, rest)
    };
    let upper = word.to_ascii_uppercase();
    if !marked && word != upper {
        return None;
    }
    let level = match upper.as_str() {
        "TRACE" => Level::TRACE,
        "DEBUG" => Level::DEBUG,
        "INFO" | "NOTICE" => Level::INFO,
        "WARN" | "WARNING" => Level::WARN,
        "ERROR" | "ERR" | "FATAL" | "CRITICAL" | "PANIC" => Level::ERROR,
        _ => return None,
    };
    Some((level, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stated_level_is_used_and_the_childs_timestamp_dropped() {
        let cases = [
            (
                "2026-11-23T16:14:05.085936Z  INFO portcullis_demo: listening",
                Level::INFO,
                "portcullis_demo: listening",
            ),
            (
                "\u{1b}[2m2026-11-23T16:14:05.085936Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m slow disk",
                Level::WARN,
                "slow disk",
            ),
            ("[2026-11-23 16:14:05,123] ERROR boom", Level::ERROR, "boom"),
            ("ERROR:root:it failed", Level::ERROR, "root:it failed"),
            (
                "2026-11-23T16:14:05+02:00 [warn] low memory",
                Level::WARN,
                "low memory",
            ),
            ("level=info msg=started", Level::INFO, "msg=started"),
            ("CRITICAL disk full", Level::ERROR, "disk full"),
        ];
        for (raw, level, text) in cases {
            assert_eq!(parse_line(raw), (level, text.to_string()), "{raw:?}");
        }
    }

    #[test]
    fn lines_without_a_level_are_debug_and_prose_is_not_a_level() {
        assert_eq!(
            parse_line("Server running on stdio"),
            (Level::DEBUG, "Server running on stdio".to_string())
        );
        assert_eq!(
            parse_line("info about the weather follows"),
            (Level::DEBUG, "info about the weather follows".to_string())
        );
        assert_eq!(
            parse_line("2026-11-23T16:14:05Z listening"),
            (Level::DEBUG, "listening".to_string())
        );
    }

    #[test]
    fn the_tail_keeps_the_last_lines() {
        let tail = StderrTail::default();
        assert_eq!(tail.describe(), "");
        for l in ["a", "b", "c", "d"] {
            tail.push(l);
        }
        assert_eq!(
            tail.describe(),
            "; its last stderr lines: \"b\" | \"c\" | \"d\""
        );
    }

    #[tokio::test]
    async fn stderr_is_read_past_bytes_that_are_not_utf8() {
        let tail = Arc::new(StderrTail::default());
        let stderr: &[u8] = b"\xff\xfe broken\nsecond\nthird\n";
        forward_stderr("t".into(), stderr, tail.clone()).await;
        assert_eq!(
            tail.describe(),
            "; its last stderr lines: \"\u{FFFD}\u{FFFD} broken\" | \"second\" | \"third\""
        );
    }

    #[tokio::test]
    async fn an_over_long_line_is_cut_and_the_next_one_read() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 100];
        input.extend_from_slice(b"\nafter\nlast without newline");
        let mut reader = BufReader::with_capacity(64, &input[..]);
        let mut buf = Vec::new();
        let cut = read_line_capped(&mut reader, &mut buf, MAX_LINE_BYTES).await;
        assert_eq!(cut.unwrap(), Some(true));
        assert_eq!(buf.len(), MAX_LINE_BYTES);
        let cut = read_line_capped(&mut reader, &mut buf, MAX_LINE_BYTES).await;
        assert_eq!((cut.unwrap(), &buf[..]), (Some(false), &b"after"[..]));
        let cut = read_line_capped(&mut reader, &mut buf, MAX_LINE_BYTES).await;
        assert_eq!(
            (cut.unwrap(), &buf[..]),
            (Some(false), &b"last without newline"[..])
        );
        let end = read_line_capped(&mut reader, &mut buf, MAX_LINE_BYTES).await;
        assert_eq!(end.unwrap(), None);
    }
}
