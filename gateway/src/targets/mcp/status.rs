//! A target's connection state, for `/readyz`, `portcullis check` and callers — and the log
//! lines about it: one line per change (down with its cause and the retry policy, still down
//! with a *different* cause, back up with its tool count and the time it took), never one
//! line per retry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cause::Cause;
use crate::words::{duration, elapsed, plural};

/// How a session is retried, said once when it goes down.
#[derive(Debug, Clone, Copy)]
pub(super) enum RetryPolicy {
    /// A shared session's supervisor (`supervise` in session.rs) waits `start`, doubling up
    /// to `max`.
    Backoff { start: Duration, max: Duration },
    /// A user's session has no supervisor: that user's next call connects again.
    NextCall,
}

impl RetryPolicy {
    fn after_failure(&self) -> String {
        match self {
            Self::Backoff { start, max } => format!(
                "Retrying in {}, then doubling the wait up to every {}",
                duration(*start),
                duration(*max)
            ),
            Self::NextCall => "The user's next call tries again".into(),
        }
    }

    /// After a live session ends the supervisor reconnects at once, then backs off.
    fn after_loss(&self) -> String {
        match self {
            Self::Backoff { start, max } => format!(
                "Reconnecting now; if that fails, retrying in {}, then doubling the wait up to every {}",
                duration(*start),
                duration(*max)
            ),
            Self::NextCall => "The user's next call reconnects".into(),
        }
    }
}

#[derive(Debug)]
pub(super) struct Status {
    /// How log lines name the session: `target `notes`` or `target `notes` (session of alice)`.
    name: String,
    /// The target's name, for the log's `target_name` field.
    target: String,
    policy: RetryPolicy,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    created: Instant,
    ever_connected: bool,
    up: bool,
    /// When the current outage began (or the first failed attempt).
    down_since: Option<Instant>,
    /// Why the target is not connected; `None` while the first attempt is still running.
    problem: Option<String>,
    /// The cause last said at WARN in this outage, so a retry failing the same way stays
    /// quiet.
    announced: Option<Cause>,
    failures: u32,
}

/// What connecting found, for the "up" line.
pub(super) struct Connected<'a> {
    pub server: Option<&'a str>,
    pub tools: usize,
    pub prompts: usize,
    pub resources: usize,
    pub took: Duration,
}

impl Status {
    /// `user`: the caller label of a per-user session, for its log lines.
    pub fn new(target: &str, user: Option<String>, policy: RetryPolicy) -> Self {
        let name = match user {
            Some(u) => format!("target `{target}` (session of {u})"),
            None => format!("target `{target}`"),
        };
        Self {
            name,
            target: target.to_string(),
            policy,
            state: Mutex::new(State {
                created: Instant::now(),
                ever_connected: false,
                up: false,
                down_since: None,
                problem: None,
                announced: None,
                failures: 0,
            }),
        }
    }

    /// Why the target is not connected, as `/readyz` and `check` show it.
    pub fn reason(&self) -> String {
        let Ok(s) = self.state.lock() else {
            return "state unknown (internal error)".into();
        };
        match &s.problem {
            Some(p) => p.clone(),
            None if !s.ever_connected => format!(
                "connecting (first attempt, started {} s ago)",
                s.created.elapsed().as_secs()
            ),
            None => "reconnecting".into(),
        }
    }

    /// Time since the target was created, while its first connection attempt is still
    /// running; `None` once it connected or failed once.
    pub fn first_attempt_running(&self) -> Option<Duration> {
        let s = self.state.lock().ok()?;
        (!s.ever_connected && s.problem.is_none()).then(|| s.created.elapsed())
    }

    pub fn ever_connected(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.ever_connected)
    }

    /// A connection attempt failed. `detail` goes to the log only (e.g. a dead child's last
    /// stderr lines, which callers must not see).
    pub fn failed(&self, problem: &str, cause: &Cause, detail: &str) {
        let Ok(mut s) = self.state.lock() else { return };
        s.failures += 1;
        s.down_since.get_or_insert_with(Instant::now);
        let plan = self.policy.after_failure();
        self.down(&mut s, problem, cause, detail, &plan);
    }

    /// A live session ended (or a call found it broken): a new outage begins.
    pub fn lost(&self, problem: &str, cause: &Cause, detail: &str) {
        let Ok(mut s) = self.state.lock() else { return };
        if !s.up {
            return;
        }
        s.announced = None;
        s.failures = 0;
        s.down_since = Some(Instant::now());
        let plan = self.policy.after_loss();
        self.down(&mut s, problem, cause, detail, &plan);
    }

    /// Record the problem; say it at WARN when the outage is new (with `plan`, what happens
    /// next) or its cause changed.
    fn down(&self, s: &mut State, problem: &str, cause: &Cause, detail: &str, plan: &str) {
        let name = &self.name;
        match &s.announced {
            None => tracing::warn!(
                target: "portcullis::targets", target_name = %self.target,
                "{name} is down: {problem}{detail}. {plan}; a line will say when it is back"
            ),
            Some(before) if before != cause => tracing::warn!(
                target: "portcullis::targets", target_name = %self.target,
                "{name} is still down, now: {problem}{detail}"
            ),
            Some(_) => tracing::debug!(
                target: "portcullis::targets", target_name = %self.target,
                "{name}: attempt {} failed the same way", s.failures
            ),
        }
        s.announced = Some(cause.clone());
        s.problem = Some(problem.to_string());
        s.up = false;
    }

    pub fn connected(&self, c: Connected<'_>) {
        let Ok(mut s) = self.state.lock() else { return };
        let name = &self.name;
        let server = c.server.unwrap_or("an unnamed server");
        let offers = offers(c.tools, c.prompts, c.resources);
        let took = duration(c.took);
        match (s.ever_connected, s.down_since) {
            (true, Some(since)) => tracing::info!(
                target: "portcullis::targets", target_name = %self.target,
                "{name} is back after {} down: {server}, {offers} (connected in {took})",
                elapsed(since.elapsed())
            ),
            (false, Some(since)) => tracing::info!(
                target: "portcullis::targets", target_name = %self.target,
                "{name} connected after {} of failed attempts: {server}, {offers} (connected in {took})",
                elapsed(since.elapsed())
            ),
            _ => tracing::info!(
                target: "portcullis::targets", target_name = %self.target,
                "{name} connected: {server}, {offers} (in {took})"
            ),
        }
        s.ever_connected = true;
        s.up = true;
        s.problem = None;
        s.announced = None;
        s.down_since = None;
        s.failures = 0;
    }
}

fn offers(tools: usize, prompts: usize, resources: usize) -> String {
    let mut parts = vec![plural(tools, "tool")];
    if prompts > 0 {
        parts.push(plural(prompts, "prompt"));
    }
    if resources > 0 {
        parts.push(plural(resources, "resource"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy::Backoff {
        start: Duration::from_millis(250),
        max: Duration::from_secs(30),
    };

    #[test]
    fn connecting_until_the_first_attempt_ends() {
        let s = Status::new("demo", None, POLICY);
        assert!(
            s.reason()
                .starts_with("connecting (first attempt, started 0 s ago)")
        );
        assert!(s.first_attempt_running().is_some());
        s.failed(
            "cannot connect: connection refused",
            &Cause::ConnectionRefused,
            "",
        );
        assert_eq!(s.reason(), "cannot connect: connection refused");
        assert!(s.first_attempt_running().is_none());
        s.connected(Connected {
            server: Some("demo 1"),
            tools: 1,
            prompts: 0,
            resources: 0,
            took: Duration::from_millis(5),
        });
        assert!(s.ever_connected());
        let exited = Cause::Exited { status: None };
        s.lost("the session ended: the process exited", &exited, "");
        assert_eq!(s.reason(), "the session ended: the process exited");
    }

    #[test]
    fn the_down_line_says_what_the_supervisor_will_do() {
        let s = Status::new("demo", None, POLICY);
        let failed = warnings(|| {
            s.failed(
                "cannot connect: connection refused",
                &Cause::ConnectionRefused,
                "",
            )
        });
        assert!(
            failed.contains("is down: cannot connect: connection refused. Retrying in 250 ms, then doubling the wait up to every 30 s;"),
            "{failed}"
        );
        s.connected(Connected {
            server: None,
            tools: 0,
            prompts: 0,
            resources: 0,
            took: Duration::ZERO,
        });
        // A lost session is reconnected at once, not after the first backoff step.
        let lost = warnings(|| {
            s.lost(
                "the session ended: the process exited",
                &Cause::Exited { status: None },
                "",
            )
        });
        assert!(
            lost.contains("is down: the session ended: the process exited. Reconnecting now; if that fails, retrying in 250 ms, then doubling the wait up to every 30 s;"),
            "{lost}"
        );
    }

    /// The WARN lines `f` logs.
    fn warnings(f: impl FnOnce()) -> String {
        crate::telemetry::captured(tracing_subscriber::filter::LevelFilter::WARN, f)
    }

    #[test]
    fn offers_read_plainly() {
        assert_eq!(offers(1, 0, 0), "1 tool");
        assert_eq!(offers(5, 1, 2), "5 tools, 1 prompt, 2 resources");
    }
}
