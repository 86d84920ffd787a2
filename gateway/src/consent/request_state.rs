//! The `requestState` of a call that needs the user's consent, for 2026-07-28 clients: the
//! gateway answers `input_required` with a URL to open and this state; the client retries the
//! call with the state echoed. The state is attacker-controlled input, so it is sealed
//! (HMAC, rmcp's `RequestStateCodec`) and bound — as associated data, never stored in it —
//! to the caller (issuer, user, agent), the tool and a digest of the arguments. A state
//! replayed by another user, for another tool or other arguments, tampered with, or older
//! than its time to live does not open. It carries only the consent's id (no token, no user
//! data: the codec signs, it does not encrypt).

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, RequestStateCodec, SealOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::Caller;

/// How long a state may be echoed: long enough to log in and approve, short enough that a
/// leaked one is soon useless.
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

/// What the state holds.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    /// The pending consent this call waits for.
    consent: String,
    expires_at: i64,
}

/// What a state is bound to: who called which tool with which arguments.
#[derive(Debug)]
pub struct Binding<'a> {
    pub caller: &'a Caller,
    pub tool: &'a str,
    pub arguments: Option<&'a JsonObject>,
}

impl Binding<'_> {
    /// Length-prefixed fields, then the digest of the arguments in canonical form (keys
    /// sorted at every level), so a retry with the same arguments in another key order
    /// still opens.
    fn associated_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for field in [
            "portcullis-consent-state-v1",
            self.caller.issuer.as_str(),
            self.caller.user.as_str(),
            self.caller.agent.as_deref().unwrap_or(""),
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
    "cannot make the key that protects consent request states: the system's random number generator is unavailable; this is not a configuration problem: retry, and report it if it persists"
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

    /// The state for a call waiting on consent `consent_id`.
    pub fn seal(&self, consent_id: &str, binding: &Binding<'_>) -> String {
        let sealed = Sealed {
            consent: consent_id.to_string(),
            expires_at: (self.clock)().saturating_add(self.ttl.as_secs() as i64),
        };
        let aad = binding.associated_data();
        // Serializing two plain fields cannot fail.
        let payload = serde_json::to_vec(&sealed).unwrap_or_default();
        self.codec
            .seal_with(&payload, &SealOptions::new().associated_data(&aad))
    }

    /// The consent id an echoed state waits for, if the state was sealed here for exactly
    /// this caller, tool and arguments and has not expired.
    pub fn open(&self, state: &str, binding: &Binding<'_>) -> Result<String, StateRefused> {
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
        Ok(sealed.consent)
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
            caller: &alice,
            tool: "github__list_issues",
            arguments: Some(&a),
        };
        let state = states.seal("consent-1", &bound);
        assert_eq!(states.open(&state, &bound), Ok("consent-1".into()));

        // The same arguments in another key order: the same call.
        let reordered =
            args(serde_json::json!({ "opts": { "y": [2, 3], "x": 1 }, "repo": "portcullis" }));
        let same = Binding {
            arguments: Some(&reordered),
            ..bound
        };
        assert_eq!(states.open(&state, &same), Ok("consent-1".into()));

        // Replayed by bob, for another tool, with other arguments, without arguments.
        let bob = caller("bob");
        let other_args = args(serde_json::json!({ "repo": "other" }));
        for wrong in [
            Binding {
                caller: &bob,
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
            caller: &alice,
            tool: "t",
            arguments: None,
        };
        let state = states.seal("consent-1", &bound);
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
}
