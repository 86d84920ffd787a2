//! The `requestState` the gateway gives a 2026-07-28 caller with an `input_required` answer;
//! the caller retries the call with the state echoed. Three things are resumed this way
//! ([`Resume`]): a call waiting for the user's consent (`consent/`), a call held while the
//! caller answers what its upstream asked (sampling, elicitation, roots: `input.rs`),
//! and a 2026 upstream's own `input_required` passed through (its state carried inside ours).
//!
//! The state is attacker-controlled input, so it is sealed (HMAC, rmcp's `RequestStateCodec`)
//! and bound — as associated data, never stored in it — to the caller (issuer, user, agent),
//! the tool and a digest of the arguments. A state replayed by another user, for another tool
//! or other arguments, tampered with, or older than its time to live does not open. It carries
//! ids and an upstream's own opaque state, never a token or user data: the codec signs, it
//! does not encrypt.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, RequestStateCodec, SealOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::Caller;

/// How long a consent's state may be echoed: long enough to log in and approve, short enough
/// that a leaked one is soon useless. Other states live as long as what they resume.
pub const STATE_TTL: Duration = Duration::from_secs(15 * 60);

/// Seconds since the Unix epoch; injectable so tests move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Seals and opens request states with one key. Every replica must hold the same key; a
/// gateway with a key of its own (generated at start) refuses states from before a restart,
/// and the client is asked to consent again, which is safe.
pub struct RequestStates {
    codec: RequestStateCodec,
    ttl: Duration,
    clock: Clock,
}

impl std::fmt::Debug for RequestStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestStates")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// What a retry resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resume", rename_all = "snake_case")]
pub enum Resume {
    /// A call waiting for the user's consent: the pending consent's id.
    Consent { consent: String },
    /// A call held by this process while its caller answers what the upstream asked.
    Held { call: String },
    /// A 2026 upstream answered `input_required` itself: its target and its own state,
    /// handed back to it (and to no other target) with the caller's answers.
    Upstream {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<String>,
    },
}

/// What the state holds.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    #[serde(flatten)]
    resume: Resume,
    expires_at: i64,
}

/// What a state is bound to: who called which tool with which arguments. `caller` is `None`
/// only when inbound authentication is off.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub caller: Option<&'a Caller>,
    pub tool: &'a str,
    pub arguments: Option<&'a JsonObject>,
}

impl Binding<'_> {
    /// Length-prefixed fields, then the digest of the arguments in canonical form (keys
    /// sorted at every level), so a retry with the same arguments in another key order
    /// still opens.
    fn associated_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let (issuer, user, agent) = self.caller.map_or(("", "", ""), |c| {
            (
                c.issuer.as_str(),
                c.user.as_str(),
                c.agent.as_deref().unwrap_or(""),
            )
        });
        for field in [
            "portcullis-request-state-v2",
            issuer,
            user,
            agent,
            self.tool,
        ] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        let args = self
            .arguments
            .map(|a| canonical(&serde_json::Value::Object(a.clone())))
            .unwrap_or_else(|| "null".into());
        out.extend_from_slice(&Sha256::digest(args.as_bytes()));
        out
    }
}

/// JSON with object keys sorted at every level.
fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(k.clone()),
                        canonical(&map[k])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// The key for request states could not be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot make the key that protects request states: the system's random number generator is unavailable; this is not a configuration problem: retry, and report it if it persists"
)]
pub struct NoStateKey;

/// Why an echoed state was not accepted. The caller hears one message for all of them (the
/// spec asks not to tell a forger which check failed); the log and audit say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateRefused {
    /// Forged, tampered with, or bound to another caller, tool or arguments.
    #[error("it was not issued for this caller, tool and arguments, or it was changed")]
    NotIssuedForThisCall,
    #[error("it has expired")]
    Expired,
    /// It opened, but what it resumes is gone: used already (a replay), or the held call
    /// ended (its time ran out, or its caller started too many others).
    #[error("it was already used, or the call it resumes has ended")]
    Used,
}

impl RequestStates {
    /// A codec over `key` (32 random bytes).
    pub fn new(key: [u8; 32], ttl: Duration, clock: Clock) -> Result<Self, NoStateKey> {
        Ok(Self {
            codec: RequestStateCodec::try_new(key.to_vec()).map_err(|_| NoStateKey)?,
            ttl,
            clock,
        })
    }

    /// A codec with a key of its own, for one gateway process.
    pub fn generate() -> Result<Self, NoStateKey> {
        use aws_lc_rs::rand::SecureRandom;
        let mut key = [0u8; 32];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| NoStateKey)?;
        let clock: Clock = Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
        Self::new(key, STATE_TTL, clock)
    }

    /// The state for a retry of the call `binding` names, usable for `ttl` (`None`: the
    /// consent's [`STATE_TTL`]).
    pub fn seal(&self, resume: Resume, binding: &Binding<'_>, ttl: Option<Duration>) -> String {
        let ttl = ttl.unwrap_or(self.ttl);
        let sealed = Sealed {
            resume,
            expires_at: (self.clock)().saturating_add(ttl.as_secs().max(1) as i64),
        };
        let aad = binding.associated_data();
        // Serializing strings and a number cannot fail.
        let payload = serde_json::to_vec(&sealed).unwrap_or_default();
        self.codec
            .seal_with(&payload, &SealOptions::new().associated_data(&aad))
    }

    /// What an echoed state resumes, if the state was sealed here for exactly this caller,
    /// tool and arguments and has not expired.
    pub fn open(&self, state: &str, binding: &Binding<'_>) -> Result<Resume, StateRefused> {
        let aad = binding.associated_data();
        let payload = self
            .codec
            .open_with(state, &aad)
            .map_err(|_| StateRefused::NotIssuedForThisCall)?;
        let sealed: Sealed =
            serde_json::from_slice(&payload).map_err(|_| StateRefused::NotIssuedForThisCall)?;
        if (self.clock)() >= sealed.expires_at {
            return Err(StateRefused::Expired);
        }
        Ok(sealed.resume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn caller(user: &str) -> Caller {
        Caller {
            issuer: "https://idp.example.test".into(),
            user: user.into(),
            agent: Some("claude".into()),
            scopes: Default::default(),
            groups: vec![],
            tenant: None,
            claims: Default::default(),
            expires_at: std::time::SystemTime::now(),
        }
    }

    fn args(v: serde_json::Value) -> JsonObject {
        v.as_object().cloned().unwrap_or_default()
    }

    fn consent(id: &str) -> Resume {
        Resume::Consent { consent: id.into() }
    }

    fn states() -> (RequestStates, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(1_800_000_000));
        let t = now.clone();
        let clock: Clock = Arc::new(move || t.load(Ordering::Relaxed));
        (RequestStates::new([7; 32], STATE_TTL, clock).unwrap(), now)
    }

    #[test]
    fn a_state_opens_only_for_the_caller_tool_and_arguments_it_was_issued_for() {
        let (states, _) = states();
        let alice = caller("alice");
        let a = args(serde_json::json!({ "repo": "portcullis", "opts": { "x": 1, "y": [2, 3] } }));
        let bound = Binding {
            caller: Some(&alice),
            tool: "github__list_issues",
            arguments: Some(&a),
        };
        let state = states.seal(consent("consent-1"), &bound, None);
        assert_eq!(states.open(&state, &bound), Ok(consent("consent-1")));

        // The same arguments in another key order: the same call.
        let reordered =
            args(serde_json::json!({ "opts": { "y": [2, 3], "x": 1 }, "repo": "portcullis" }));
        let same = Binding {
            arguments: Some(&reordered),
            ..bound
        };
        assert_eq!(states.open(&state, &same), Ok(consent("consent-1")));

        // Replayed by bob, for another tool, with other arguments, without arguments.
        let bob = caller("bob");
        let other_args = args(serde_json::json!({ "repo": "other" }));
        for wrong in [
            Binding {
                caller: Some(&bob),
                ..bound
            },
            Binding {
                tool: "github__delete_repo",
                ..bound
            },
            Binding {
                arguments: Some(&other_args),
                ..bound
            },
            Binding {
                arguments: None,
                ..bound
            },
            Binding {
                caller: None,
                ..bound
            },
        ] {
            assert_eq!(
                states.open(&state, &wrong),
                Err(StateRefused::NotIssuedForThisCall),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn a_tampered_forged_or_expired_state_does_not_open() {
        let (states, now) = states();
        let alice = caller("alice");
        let bound = Binding {
            caller: Some(&alice),
            tool: "t",
            arguments: None,
        };
        let state = states.seal(consent("consent-1"), &bound, None);
        // Flip one character of the payload.
        let mut bytes = state.clone().into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            states.open(&tampered, &bound),
            Err(StateRefused::NotIssuedForThisCall)
        );
        // Sealed with another key.
        let (mut other, _) = self::states();
        other.codec = RequestStateCodec::try_new(vec![9; 32]).unwrap();
        assert_eq!(
            other.open(&state, &bound),
            Err(StateRefused::NotIssuedForThisCall)
        );
        assert_eq!(
            states.open("not a state", &bound),
            Err(StateRefused::NotIssuedForThisCall)
        );
        // Past its time to live.
        now.fetch_add(STATE_TTL.as_secs() as i64, Ordering::Relaxed);
        assert_eq!(states.open(&state, &bound), Err(StateRefused::Expired));
    }

    #[test]
    fn every_kind_of_resume_round_trips_and_keeps_its_own_time_to_live() {
        let (states, now) = states();
        let alice = caller("alice");
        let bound = Binding {
            caller: Some(&alice),
            tool: "t",
            arguments: None,
        };
        let anonymous = Binding {
            caller: None,
            ..bound
        };
        let held = Resume::Held { call: "h1".into() };
        let upstream = Resume::Upstream {
            target: "docs".into(),
            state: Some("the upstream's own opaque state".into()),
        };
        let short = Some(Duration::from_secs(30));
        let s_held = states.seal(held.clone(), &bound, short);
        let s_up = states.seal(upstream.clone(), &anonymous, short);
        assert_eq!(states.open(&s_held, &bound), Ok(held));
        assert_eq!(states.open(&s_up, &anonymous), Ok(upstream));
        // Sealed without a caller (inbound authentication off): not a state for alice.
        assert_eq!(
            states.open(&s_up, &bound),
            Err(StateRefused::NotIssuedForThisCall)
        );
        now.fetch_add(30, Ordering::Relaxed);
        assert_eq!(states.open(&s_held, &bound), Err(StateRefused::Expired));
    }
}
