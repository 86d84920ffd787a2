//! The upstream sessions of a target whose credential depends on the caller (token exchange
//! today, the user's own OAuth grant next): one [`Session`] per (issuer, user, agent), opened
//! on that user's first use, closed when idle, bounded in number.
//!
//! The rule this module keeps: a session is only ever handed to the caller it was opened for.
//! Its key is the caller's identity, so alice's session — and with it alice's exchanged token
//! on every request it sends — can never serve bob.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::session::{Session, Upstream};
use crate::identity::Caller;
use crate::outbound::{CredentialProvider, Principal};
use crate::targets::{Listing, TargetError};

/// At most this many user sessions per target: each holds an upstream connection (and an SSE
/// stream), so one busy gateway must not open unboundedly many. When full, the least
/// recently used idle session is closed to make room.
pub(super) const MAX_USER_SESSIONS: usize = 256;

/// A user session unused this long is closed; the user's next call opens a new one. Long
/// enough to keep a working conversation's session, short enough not to hold upstream
/// resources for people who left.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How often idle sessions are looked for, besides on every use.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Who a session acts for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UserKey {
    issuer: String,
    user: String,
    agent: Option<String>,
}

impl UserKey {
    fn of(caller: &Caller) -> Self {
        Self {
            issuer: caller.issuer.clone(),
            user: caller.user.clone(),
            agent: caller.agent.clone(),
        }
    }
}

#[derive(Debug)]
struct Slot {
    session: Arc<Session>,
    last_used: Instant,
}

impl Slot {
    /// In use: a call or request holds the session (the table holds one reference).
    fn busy(&self) -> bool {
        Arc::strong_count(&self.session) > 1
    }
}

#[derive(Debug)]
pub(super) struct UserSessions {
    upstream: Upstream,
    /// The target's listing, from (DESIGN §5, docs/targets.md "Per-user targets"): the
    /// listing session when `[listing_auth]` configures one, else the tools the target file
    /// declares until a user's session lists the upstream, else the first user session's
    /// listing. Every session writes here (the gateway assumes the upstream offers every user
    /// the same tools).
    listing: Arc<ArcSwap<Listing>>,
    /// The listing before any session listed the upstream (the declared tools, if any).
    unlisted: Arc<Listing>,
    /// A session of the gateway's own credential that only lists (`[listing_auth]`).
    lister: Option<Arc<Session>>,
    sessions: Mutex<HashMap<UserKey, Slot>>,
    /// [`MAX_USER_SESSIONS`]; smaller in tests.
    max: usize,
}

impl UserSessions {
    /// An empty table; a task closes idle sessions until the target is dropped or shut down.
    /// With `lister` (the `[listing_auth]` credential), a listing session connects now.
    pub(super) fn start(
        upstream: Upstream,
        lister: Option<Arc<dyn CredentialProvider>>,
    ) -> Arc<Self> {
        Self::start_with_limit(upstream, lister, MAX_USER_SESSIONS)
    }

    fn start_with_limit(
        upstream: Upstream,
        lister: Option<Arc<dyn CredentialProvider>>,
        max: usize,
    ) -> Arc<Self> {
        let shutdown = upstream.shutdown.clone();
        let unlisted = Arc::new(Listing {
            tools: upstream.spec.declared_tools.clone(),
            ..Listing::default()
        });
        let listing = Arc::new(ArcSwap::new(unlisted.clone()));
        let lister = lister.map(|credentials| {
            let up = Upstream {
                credentials,
                ..upstream.clone()
            };
            Session::supervised(&up, listing.clone())
        });
        let this = Arc::new(Self {
            upstream,
            listing,
            unlisted,
            lister,
            sessions: Mutex::new(HashMap::new()),
            max,
        });
        tokio::spawn(sweep(Arc::downgrade(&this), shutdown));
        this
    }

    /// The settings the sessions are opened with.
    pub(super) fn spec(&self) -> &crate::config::TargetSpec {
        &self.upstream.spec
    }

    pub(super) fn listing(&self) -> Arc<Listing> {
        self.listing.load_full()
    }

    /// The session acting for `caller`, created (not yet connected) if the user has none.
    /// The session's caller is refreshed to this one: the same person, possibly with a newer
    /// token to exchange.
    pub(super) fn session_for(&self, principal: &Principal) -> Result<Arc<Session>, TargetError> {
        let key = UserKey::of(&principal.caller);
        let now = Instant::now();
        // A panic while the table was held leaves it unusable: refuse rather than guess which
        // session belongs to whom.
        let mut table = self.sessions.lock().map_err(|_| {
            self.unavailable("its table of user sessions is unusable after an internal error; restart the gateway")
        })?;
        if let Some(slot) = table.get_mut(&key) {
            slot.last_used = now;
            slot.session.user.store(Some(Arc::new(principal.clone())));
            return Ok(slot.session.clone());
        }
        evict_idle(&mut table, now);
        if table.len() >= self.max {
            let lru = table
                .iter()
                .filter(|(_, s)| !s.busy())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            match lru {
                Some(k) => {
                    table.remove(&k);
                }
                None => {
                    return Err(self.unavailable(format!(
                        "all {} user sessions it may hold are busy with calls; try again when one finishes",
                        self.max
                    )));
                }
            }
        }
        // With a listing session, it alone says what the target offers: a user's session
        // (whose upstream may show that user more, or less) lists for nobody else.
        let listing = match &self.lister {
            Some(_) => Arc::new(ArcSwap::from_pointee(Listing::default())),
            None => self.listing.clone(),
        };
        let session = Arc::new(Session::for_user(&self.upstream, principal, listing));
        table.insert(
            key,
            Slot {
                session: session.clone(),
                last_used: now,
            },
        );
        Ok(session)
    }

    /// How many user sessions are connected now.
    pub(super) fn open(&self) -> usize {
        self.sessions
            .lock()
            .map(|t| t.values().filter(|s| s.session.is_open()).count())
            .unwrap_or(0)
    }

    /// Whether the target's tools are known: a session listed the upstream, or the target
    /// file declares them.
    pub(super) fn tools_known(&self) -> bool {
        !Arc::ptr_eq(&self.listing.load(), &self.unlisted) || !self.unlisted.tools.is_empty()
    }

    /// The listing session, when `[listing_auth]` configures one.
    pub(super) fn lister(&self) -> Option<&Arc<Session>> {
        self.lister.as_ref()
    }

    fn unavailable(&self, reason: impl Into<String>) -> TargetError {
        TargetError::Unavailable {
            target: self.upstream.spec.name.clone(),
            reason: reason.into(),
        }
    }
}

/// Close the sessions nobody used for [`IDLE_TIMEOUT`] (never one a call still holds).
fn evict_idle(table: &mut HashMap<UserKey, Slot>, now: Instant) {
    table.retain(|_, s| s.busy() || now.duration_since(s.last_used) < IDLE_TIMEOUT);
}

async fn sweep(pool: Weak<UserSessions>, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(pool) = pool.upgrade() else { return };
        if let Ok(mut table) = pool.sessions.lock() {
            evict_idle(&mut table, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{McpTransport, TargetKind, TargetSpec};
    use crate::outbound::NoAuth;
    use std::collections::BTreeSet;
    use std::time::SystemTime;

    fn upstream() -> Upstream {
        let url = url::Url::parse("http://127.0.0.1:9/mcp").unwrap();
        let transport = McpTransport::Http { url };
        Upstream {
            spec: TargetSpec {
                name: "orders".into(),
                file: "targets/orders.toml".into(),
                description: None,
                prefix: "orders".into(),
                call_timeout: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(5),
                optional: false,
                audit_arguments: false,
                tool_scopes: Default::default(),
                declared_tools: vec![],
                kind: TargetKind::Mcp(transport.clone(), Default::default()),
                auth: crate::config::outbound::AuthSpec::None,
                listing_auth: None,
            },
            transport,
            http: reqwest::Client::new(),
            credentials: Arc::new(NoAuth),
            changed: tokio::sync::watch::channel(0).0,
            events: tokio::sync::broadcast::channel(4).0,
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    fn caller(user: &str, agent: &str, token: &str) -> Principal {
        let caller = Caller {
            issuer: "https://idp.example.test".into(),
            user: user.into(),
            agent: Some(agent.into()),
            scopes: BTreeSet::new(),
            groups: vec![],
            tenant: None,
            claims: Default::default(),
            expires_at: SystemTime::now() + Duration::from_secs(600),
        };
        Principal::new(caller, Some(crate::outbound::CallerToken::new(token)))
    }

    fn token_of(s: &Session) -> String {
        let user = s.user.load_full().unwrap();
        user.token_for_tests().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_session_serves_only_the_identity_it_was_opened_for() {
        let pool = UserSessions::start(upstream(), None);
        let alice = pool.session_for(&caller("alice", "cli", "a-1")).unwrap();
        let bob = pool.session_for(&caller("bob", "cli", "b-1")).unwrap();
        assert!(!Arc::ptr_eq(&alice, &bob));
        // Same person through another agent: another session (the key is user *and* agent).
        let alice_ide = pool.session_for(&caller("alice", "ide", "a-2")).unwrap();
        assert!(!Arc::ptr_eq(&alice, &alice_ide));
        // Same identity with a newer token: the same session, now exchanging the new token.
        let again = pool.session_for(&caller("alice", "cli", "a-3")).unwrap();
        assert!(Arc::ptr_eq(&alice, &again));
        assert_eq!(token_of(&alice), "a-3");
        assert_eq!(
            token_of(&bob),
            "b-1",
            "bob's session never sees alice's token"
        );
    }

    #[tokio::test]
    async fn a_full_table_closes_the_least_recently_used_idle_session_and_never_a_busy_one() {
        let pool = UserSessions::start_with_limit(upstream(), None, 2);
        let held = pool.session_for(&caller("alice", "cli", "a")).unwrap(); // a call in flight
        drop(pool.session_for(&caller("bob", "cli", "b")).unwrap());
        // Full: carol's session replaces bob's (idle), not alice's (busy).
        drop(pool.session_for(&caller("carol", "cli", "c")).unwrap());
        let alice = pool.session_for(&caller("alice", "cli", "a")).unwrap();
        assert!(Arc::ptr_eq(&held, &alice), "alice keeps her session");
        let keys: BTreeSet<String> = pool
            .sessions
            .lock()
            .unwrap()
            .keys()
            .map(|k| k.user.clone())
            .collect();
        assert_eq!(keys, BTreeSet::from(["alice".into(), "carol".into()]));

        // Every session busy: a new user is refused, with why and what to do.
        let _carol = pool.session_for(&caller("carol", "cli", "c")).unwrap();
        let err = pool
            .session_for(&caller("dave", "cli", "d"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("all 2 user sessions"), "{err}");
        assert!(err.contains("try again"), "{err}");
    }

    #[tokio::test]
    async fn idle_sessions_are_closed_after_the_timeout_and_busy_ones_are_kept() {
        let pool = UserSessions::start(upstream(), None);
        let busy = pool.session_for(&caller("alice", "cli", "a")).unwrap();
        drop(pool.session_for(&caller("bob", "cli", "b")).unwrap());
        let later = Instant::now() + IDLE_TIMEOUT + Duration::from_secs(1);
        let mut table = pool.sessions.lock().unwrap();
        evict_idle(&mut table, later);
        let users: Vec<&str> = table.keys().map(|k| k.user.as_str()).collect();
        assert_eq!(users, ["alice"]);
        drop(table);
        drop(busy);
    }

    #[tokio::test]
    async fn with_a_listing_session_user_sessions_do_not_write_the_targets_listing() {
        let without = UserSessions::start(upstream(), None);
        let alice = without.session_for(&caller("alice", "cli", "a")).unwrap();
        assert!(Arc::ptr_eq(&alice.listing, &without.listing));

        let with = UserSessions::start(upstream(), Some(Arc::new(NoAuth)));
        let alice = with.session_for(&caller("alice", "cli", "a")).unwrap();
        assert!(!Arc::ptr_eq(&alice.listing, &with.listing));
        let lister = with.lister().unwrap();
        assert!(Arc::ptr_eq(&lister.listing, &with.listing));
    }

    #[tokio::test]
    async fn a_poisoned_table_refuses_instead_of_guessing() {
        let pool = UserSessions::start(upstream(), None);
        let poison = std::panic::AssertUnwindSafe(|| {
            let _held = pool.sessions.lock();
            panic!("a bug while the table is held");
        });
        assert!(std::panic::catch_unwind(poison).is_err());
        let err = pool
            .session_for(&caller("alice", "cli", "a"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unusable after an internal error"), "{err}");
        assert!(!err.contains("::"), "{err}");
    }
}
