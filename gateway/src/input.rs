//! Input a call needs from its caller on the way (phase 5): an upstream asks for sampling,
//! elicitation (form or URL) or roots. Each era asks differently, and the gateway bridges
//! any upstream to any caller (docs/clients.md):
//!
//! | upstream asks with | 2025-11-25 caller | 2026-07-28 caller |
//! |---|---|---|
//! | a server→client request (2025 upstream) | relayed as that request | `input_required`; the call is *held* here until the retry brings the answers ([`HeldCalls`]) |
//! | `input_required` (2026 upstream) | each input request sent as a server→client request, the answers handed back to the upstream in a retry | passed through, the upstream's `requestState` sealed inside the gateway's own |
//!
//! A caller that did not declare what an upstream asks for is never asked: the call ends with
//! a tool error naming the missing capability, and the upstream's request is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::ErrorData;
use rmcp::model::{
    ClientCapabilities, ClientResult, ElicitRequestParams, InputRequest, InputRequests,
    InputResponses, ServerRequest,
};
use tokio::sync::oneshot;

use crate::targets::PendingCall;

/// How many calls one caller may have held at once. A caller that starts more (or abandons
/// calls without retrying) loses its oldest held call, which is cancelled upstream.
pub const MAX_HELD_PER_CALLER: usize = 8;

/// What a caller must be able to do to answer an input request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Sampling,
    FormElicitation,
    UrlElicitation,
    Roots,
    /// An input kind newer than this gateway: no caller is asked it.
    Unknown,
}

impl Need {
    pub fn of(request: &InputRequest) -> Self {
        match request {
            InputRequest::CreateMessage(_) => Self::Sampling,
            InputRequest::Elicitation(r) => match r.params {
                ElicitRequestParams::UrlElicitationParams { .. } => Self::UrlElicitation,
                _ => Self::FormElicitation,
            },
            InputRequest::ListRoots(_) => Self::Roots,
            _ => Self::Unknown,
        }
    }

    /// Whether a client with `caps` declared it. An `elicitation` capability without modes
    /// means form elicitation (the spec's default).
    pub fn declared_by(self, caps: Option<&ClientCapabilities>) -> bool {
        let Some(caps) = caps else { return false };
        match self {
            Self::Sampling => caps.sampling.is_some(),
            Self::Roots => caps.roots.is_some(),
            Self::UrlElicitation => caps.elicitation.as_ref().is_some_and(|e| e.url.is_some()),
            Self::FormElicitation => caps
                .elicitation
                .as_ref()
                .is_some_and(|e| e.form.is_some() || e.url.is_none()),
            Self::Unknown => false,
        }
    }

    /// The capability in the words of the spec, for the caller's error.
    pub fn capability(self) -> &'static str {
        match self {
            Self::Sampling => "sampling",
            Self::FormElicitation => "elicitation (form mode)",
            Self::UrlElicitation => "elicitation.url (URL mode)",
            Self::Roots => "roots",
            Self::Unknown => "(a kind of input this gateway does not know)",
        }
    }

    /// What the upstream asked for, in words.
    pub fn asked(self) -> &'static str {
        match self {
            Self::Sampling => "to sample from its language model (sampling/createMessage)",
            Self::FormElicitation => "to ask its user for input (elicitation/create)",
            Self::UrlElicitation => "to send its user to a web page (URL elicitation)",
            Self::Roots => "for its roots (roots/list)",
            Self::Unknown => "for a kind of input this gateway does not know",
        }
    }
}

/// An upstream's server→client request as an input request of a 2026 `input_required`
/// answer; `None` for kinds a caller cannot be asked that way (ping, custom requests).
pub fn as_input_request(request: ServerRequest) -> Option<InputRequest> {
    match request {
        ServerRequest::CreateMessageRequest(r) => Some(InputRequest::CreateMessage(r)),
        ServerRequest::ElicitRequest(r) => Some(InputRequest::Elicitation(r)),
        ServerRequest::ListRootsRequest(r) => Some(InputRequest::ListRoots(r)),
        _ => None,
    }
}

/// A 2026 upstream's input request as the server→client request a 2025 caller answers.
pub fn as_server_request(request: InputRequest) -> Option<ServerRequest> {
    match request {
        InputRequest::CreateMessage(r) => Some(ServerRequest::CreateMessageRequest(r)),
        InputRequest::Elicitation(r) => Some(ServerRequest::ElicitRequest(r)),
        InputRequest::ListRoots(r) => Some(ServerRequest::ListRootsRequest(r)),
        _ => None,
    }
}

/// A caller's answer (one value of `inputResponses`) as the result the upstream waits for.
pub fn as_client_result(
    request: &InputRequest,
    answer: serde_json::Value,
) -> Result<ClientResult, String> {
    let parsed = match request {
        InputRequest::CreateMessage(_) => {
            serde_json::from_value(answer).map(|r| ClientResult::CreateMessageResult(Box::new(r)))
        }
        InputRequest::Elicitation(_) => {
            serde_json::from_value(answer).map(ClientResult::ElicitResult)
        }
        InputRequest::ListRoots(_) => {
            serde_json::from_value(answer).map(ClientResult::ListRootsResult)
        }
        _ => return Err("the gateway does not know this kind of input request".into()),
    };
    parsed.map_err(|e| e.to_string())
}

/// One thing the upstream asked, waiting for the caller's answer.
#[derive(Debug)]
pub struct Asked {
    /// The key of the input request in the caller's `inputRequests`.
    pub key: String,
    pub request: InputRequest,
    /// Where the upstream waits for the answer.
    pub reply: oneshot::Sender<Result<ClientResult, ErrorData>>,
}

/// An upstream call stopped at the question(s) it asked, until the caller answers.
#[derive(Debug)]
pub struct Waiting {
    pub pending: PendingCall<rmcp::model::CallToolResponse>,
    pub asked: Vec<Asked>,
    /// The target it runs on: a retry must resolve to the same one.
    pub target: String,
}

impl Waiting {
    /// The questions, as a 2026 caller receives them.
    pub fn input_requests(&self) -> InputRequests {
        self.asked
            .iter()
            .map(|a| (a.key.clone(), a.request.clone()))
            .collect()
    }

    /// Hand the caller's answers to the upstream. Questions the retry did not answer stay
    /// asked (`Err(self)` with only those); an answer of the wrong shape is the caller's
    /// error, and the call ends (the upstream hears that its question was refused).
    pub fn answer(mut self, answers: Option<InputResponses>) -> Result<Answered, BadAnswer> {
        let mut answers = answers.unwrap_or_default();
        let mut unanswered = Vec::new();
        for asked in std::mem::take(&mut self.asked) {
            let Some(value) = answers.remove(&asked.key) else {
                unanswered.push(asked);
                continue;
            };
            match as_client_result(&asked.request, value) {
                Ok(result) => {
                    let _ = asked.reply.send(Ok(result));
                }
                Err(why) => {
                    let _ = asked.reply.send(Err(ErrorData::invalid_params(
                        "the gateway's caller answered with a malformed result",
                        None,
                    )));
                    return Err(BadAnswer {
                        key: asked.key,
                        method: method(&asked.request),
                        why,
                    });
                }
            }
        }
        if unanswered.is_empty() {
            Ok(Answered::All(self.pending))
        } else {
            self.asked = unanswered;
            Ok(Answered::Partly(self))
        }
    }
}

/// What answering did.
#[derive(Debug)]
pub enum Answered {
    /// Every question answered: the call goes on.
    All(PendingCall<rmcp::model::CallToolResponse>),
    /// Some questions are still open: ask them again.
    Partly(Waiting),
}

/// An answer that is not a result of the kind asked for.
#[derive(Debug, thiserror::Error)]
#[error("inputResponses.{key} is not a valid answer to {method}: {why}")]
pub struct BadAnswer {
    pub key: String,
    pub method: &'static str,
    pub why: String,
}

fn method(request: &InputRequest) -> &'static str {
    match request {
        InputRequest::CreateMessage(_) => "sampling/createMessage",
        InputRequest::Elicitation(_) => "elicitation/create",
        InputRequest::ListRoots(_) => "roots/list",
        _ => "this input request",
    }
}

/// Calls held for their 2026-07-28 callers' answers, by an unguessable id that only a sealed
/// `requestState` carries. A held call is taken once (a replayed state finds nothing), and
/// dropped — cancelled upstream — when its time is up or its caller holds too many.
#[derive(Debug, Default, Clone)]
pub struct HeldCalls {
    calls: Arc<Mutex<HashMap<String, Held>>>,
}

#[derive(Debug)]
struct Held {
    owner: String,
    seq: u64,
    waiting: Waiting,
}

impl HeldCalls {
    /// Hold `waiting` for `owner` for `ttl`. Returns its id.
    pub fn hold(&self, owner: &str, waiting: Waiting, ttl: Duration) -> String {
        let id = random_id();
        let evicted = {
            let mut calls = self.calls.lock();
            let seq = calls.values().map(|h| h.seq).max().unwrap_or(0) + 1;
            let mut theirs: Vec<(u64, String)> = calls
                .iter()
                .filter(|(_, h)| h.owner == owner)
                .map(|(id, h)| (h.seq, id.clone()))
                .collect();
            theirs.sort();
            let excess = (theirs.len() + 1).saturating_sub(MAX_HELD_PER_CALLER);
            let evicted: Vec<Held> = theirs
                .into_iter()
                .take(excess)
                .filter_map(|(_, id)| calls.remove(&id))
                .collect();
            calls.insert(
                id.clone(),
                Held {
                    owner: owner.to_string(),
                    seq,
                    waiting,
                },
            );
            evicted
        };
        for old in evicted {
            tracing::info!(target: "portcullis::calls", "{owner} has {MAX_HELD_PER_CALLER} calls waiting for answers; the oldest (on target `{}`) was cancelled", old.waiting.target);
        }
        // The hold ends at its deadline whether or not anyone comes back.
        let calls = Arc::downgrade(&self.calls);
        let expiring = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            let gone = calls.upgrade().and_then(|c| c.lock().remove(&expiring));
            if let Some(held) = gone {
                tracing::info!(target: "portcullis::calls", "a call of {} on target `{}` waited {} for its caller's answers and was cancelled", held.owner, held.waiting.target, crate::words::duration(ttl));
            }
        });
        id
    }

    /// The held call `id`, once.
    pub fn take(&self, id: &str) -> Option<Waiting> {
        self.calls.lock().remove(id).map(|h| h.waiting)
    }

    /// How many calls are held (for tests and `/readyz`-style reporting).
    pub fn len(&self) -> usize {
        self.calls.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 122 random bits from the OS: the id is only ever carried inside a sealed state, so it
/// needs to be unique and unguessable, nothing more.
fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The URLs of a 2025 upstream's `-32042` error (`data.elicitations[]`), as the URL
/// elicitations of a 2026 `input_required` answer. Malformed entries are skipped.
pub fn url_elicitations(data: Option<&serde_json::Value>) -> InputRequests {
    let entries = data
        .and_then(|d| d.get("elicitations"))
        .and_then(|e| e.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| {
            let url = e.get("url")?.as_str()?.to_string();
            let message = e
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("Open this link to continue")
                .to_string();
            Some(InputRequest::Elicitation(rmcp::model::ElicitRequest::new(
                ElicitRequestParams::UrlElicitationParams {
                    meta: None,
                    message,
                    url,
                    elicitation_id: String::new(),
                },
            )))
        })
        .enumerate()
        .map(|(i, r)| (format!("url-{}", i + 1), r))
        .collect()
}

/// Ask a 2025-11-25 caller one question of a 2026 upstream, as a server→client request on the
/// caller's current response stream.
pub async fn ask_now(
    peer: &rmcp::Peer<rmcp::RoleServer>,
    request: InputRequest,
) -> Result<ClientResult, ErrorData> {
    let Some(request) = as_server_request(request) else {
        return Err(ErrorData::internal_error(
            "the upstream asked for a kind of input the gateway does not know",
            None,
        ));
    };
    peer.send_request(request).await.map_err(|e| match e {
        rmcp::service::ServiceError::McpError(e) => e,
        _ => ErrorData::internal_error(
            "the gateway's caller could not answer: its connection ended",
            None,
        ),
    })
}

/// Keys for questions from a 2025 upstream (which names none).
pub fn key_for(n: usize, request: &InputRequest) -> String {
    let kind = match Need::of(request) {
        Need::Sampling => "sampling",
        Need::FormElicitation | Need::UrlElicitation => "elicitation",
        Need::Roots => "roots",
        Need::Unknown => "input",
    };
    format!("{kind}-{n}")
}

/// Results of a 2025 caller's answers, as a 2026 upstream's `inputResponses`.
pub fn as_input_responses(answers: BTreeMap<String, ClientResult>) -> InputResponses {
    answers
        .into_iter()
        .map(|(k, r)| {
            (
                k,
                serde_json::to_value(r).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect()
}

#[cfg(test)]
#[allow(deprecated)] // sampling: what 2025-era upstreams ask for
mod tests {
    use super::*;
    use rmcp::model::{CallToolResponse, CreateMessageRequest, CreateMessageRequestParams};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A held call whose upstream side counts, in `dropped`, being dropped unanswered (the
    /// session then tells the upstream it was cancelled).
    fn waiting(
        dropped: &Arc<AtomicUsize>,
    ) -> (Waiting, oneshot::Receiver<Result<ClientResult, ErrorData>>) {
        struct Count(Arc<AtomicUsize>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Count(dropped.clone());
        let response = Box::pin(async move {
            let _count = count;
            std::future::pending::<Result<CallToolResponse, crate::targets::TargetError>>().await
        });
        let (_tx, relays) = tokio::sync::mpsc::channel(1);
        let (reply, answer) = oneshot::channel();
        let request = InputRequest::CreateMessage(CreateMessageRequest::new(
            CreateMessageRequestParams::new(vec![], 10),
        ));
        (
            Waiting {
                pending: PendingCall::unregistered(response, relays),
                asked: vec![Asked {
                    key: "sampling-1".into(),
                    request,
                    reply,
                }],
                target: "t".into(),
            },
            answer,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_call_is_taken_once_and_dropped_when_its_time_is_up() {
        let held = HeldCalls::default();
        let dropped = Arc::new(AtomicUsize::new(0));
        let (w, _answer) = waiting(&dropped);
        let id = held.hold("alice", w, Duration::from_secs(30));
        let taken = held.take(&id).expect("held");
        assert!(
            held.take(&id).is_none(),
            "a second take (a replay) finds nothing"
        );
        drop(taken);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);

        let (w, _answer) = waiting(&dropped);
        let id = held.hold("alice", w, Duration::from_secs(30));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(held.len(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(held.take(&id).is_none(), "expired");
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            2,
            "the expired call was dropped"
        );
    }

    #[tokio::test]
    async fn a_caller_holding_too_many_loses_its_oldest_and_others_are_untouched() {
        let held = HeldCalls::default();
        let dropped = Arc::new(AtomicUsize::new(0));
        let ttl = Duration::from_secs(600);
        let (w, _a) = waiting(&dropped);
        let bobs = held.hold("bob", w, ttl);
        let mut alices = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..MAX_HELD_PER_CALLER + 2 {
            let (w, a) = waiting(&dropped);
            answers.push(a);
            alices.push(held.hold("alice", w, ttl));
        }
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            2,
            "alice's two oldest were cancelled"
        );
        assert!(held.take(&alices[0]).is_none() && held.take(&alices[1]).is_none());
        assert!(held.take(&alices[2]).is_some());
        assert!(
            held.take(&bobs).is_some(),
            "bob's call is not alice's to lose"
        );
    }

    #[test]
    fn answers_go_to_the_upstream_and_unanswered_questions_stay_asked() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (w, mut answer) = waiting(&dropped);
        // No answer for `sampling-1`: still asked.
        let Ok(Answered::Partly(w)) = w.answer(None) else {
            panic!("expected the question to stay asked")
        };
        assert!(answer.try_recv().is_err());
        // A malformed answer: the caller's error, and the upstream hears a refusal.
        let bad = [(
            "sampling-1".to_string(),
            serde_json::json!({"action": "accept"}),
        )];
        let err = w.answer(Some(bad.into_iter().collect())).unwrap_err();
        assert_eq!(err.key, "sampling-1");
        assert!(matches!(answer.try_recv(), Ok(Err(_))));

        let (w, mut answer) = waiting(&dropped);
        let good = serde_json::json!({
            "role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"
        });
        let Ok(Answered::All(_)) = w.answer(Some(
            [("sampling-1".to_string(), good)].into_iter().collect(),
        )) else {
            panic!("expected every question answered")
        };
        assert!(matches!(
            answer.try_recv(),
            Ok(Ok(ClientResult::CreateMessageResult(_)))
        ));
    }

    #[test]
    fn a_declared_capability_is_required_for_each_kind_of_question() {
        let mut caps = ClientCapabilities::default();
        assert!(!Need::Sampling.declared_by(Some(&caps)));
        assert!(!Need::FormElicitation.declared_by(None));
        caps.elicitation = Some(Default::default());
        // An elicitation capability without modes is form only.
        assert!(Need::FormElicitation.declared_by(Some(&caps)));
        assert!(!Need::UrlElicitation.declared_by(Some(&caps)));
        caps.elicitation =
            Some(rmcp::model::ElicitationCapability::new().with_url(Default::default()));
        assert!(Need::UrlElicitation.declared_by(Some(&caps)));
        assert!(!Need::FormElicitation.declared_by(Some(&caps)), "url only");
        caps.roots = Some(Default::default());
        assert!(Need::Roots.declared_by(Some(&caps)));
    }

    #[test]
    fn a_2025_upstreams_url_error_becomes_url_elicitations() {
        let data = serde_json::json!({ "elicitations": [
            { "mode": "url", "url": "https://example.com/a", "message": "Sign in", "elicitationId": "x" },
            { "mode": "url", "message": "no url: skipped" },
        ]});
        let asked = url_elicitations(Some(&data));
        assert_eq!(asked.len(), 1);
        let v = serde_json::to_value(&asked["url-1"]).unwrap();
        assert_eq!(v["params"]["url"], "https://example.com/a");
        assert_eq!(v["params"]["message"], "Sign in");
        assert!(url_elicitations(None).is_empty());
    }
}
