//! Who opened each MCP session. A session id is not a credential (MCP security best
//! practices): a request that names a session is served only for the user who opened it.
//!
//! The table is the authority: a session it does not know — never opened here, ended, idle
//! for longer than [`SESSION_IDLE`], or forgotten — is refused like another user's (404,
//! which tells an MCP client to start a new session). So forgetting is always safe, and the
//! table stays bounded by forgetting:
//! - an entry expires after [`SESSION_IDLE`] without a request, the idle expiry the MCP
//!   layer is configured with (`server::http`), so both forget a session together; a request
//!   or stream still open keeps it alive;
//! - each user holds at most [`PER_USER`] sessions: opening one more forgets that user's
//!   least recently used idle session (its client gets 404 and starts over), so one client
//!   that opens sessions and abandons them only ever displaces its own; with every one of
//!   them busy, a new one is refused (429);
//! - the whole table holds at most [`TOTAL`] sessions (503 beyond, after expired ones are
//!   dropped).
//!
//! The lock is a std `Mutex` on purpose: after a panic while it was held, the table may be
//! half updated, so it is emptied rather than trusted — every session is then unknown and
//! refused, never served to the wrong user.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a session lives without requests: rmcp's own default (`SessionConfig`), set
/// explicitly on the MCP layer too so the two cannot drift apart.
pub const SESSION_IDLE: Duration = Duration::from_secs(300);
/// Live sessions one user (issuer and subject) may hold at once.
pub const PER_USER: usize = 100;
/// Live sessions the gateway tracks at once, all users together.
pub const TOTAL: usize = 100_000;

/// The user a session belongs to: issuer and subject.
pub type Owner = (String, String);

/// Why a session cannot be used or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, expired, or another user's: answered as an unknown session (404).
    NotYours,
    /// This user's sessions are all busy and there are [`PER_USER`] of them (429).
    UserFull,
    /// The gateway tracks [`TOTAL`] live sessions (503).
    GatewayFull,
}

#[derive(Debug)]
pub struct SessionOwners {
    table: Mutex<Table>,
    idle: Duration,
    per_user: usize,
    total: usize,
}

impl Default for SessionOwners {
    fn default() -> Self {
        Self::new(SESSION_IDLE, PER_USER, TOTAL)
    }
}

impl SessionOwners {
    pub fn new(idle: Duration, per_user: usize, total: usize) -> Self {
        Self {
            table: Mutex::new(Table::default()),
            idle,
            per_user,
            total,
        }
    }

    /// A request naming session `id`, by `owner`: admitted while the returned guard lives
    /// (drop it when the response has been sent, stream included).
    pub fn enter(self: &Arc<Self>, id: &str, owner: &Owner) -> Result<InUse, Refusal> {
        self.table().enter(id, owner, Instant::now(), self.idle)?;
        Ok(InUse {
            owners: self.clone(),
            id: id.to_string(),
        })
    }

    /// The MCP layer opened session `id` for `owner`: record it, or refuse it when there is
    /// no room (the caller then closes it). Checked once the session exists, in one step
    /// with recording it, so only requests that open a session can be refused and no race
    /// overshoots a cap. Returns the sessions forgotten to make room (that user's least
    /// recently used idle one), for the caller to close.
    pub fn opened(&self, id: &str, owner: Owner) -> Result<Vec<String>, Refusal> {
        let mut t = self.table();
        let now = Instant::now();
        let evicted = t.room_for(&owner, now, self.idle, self.per_user, self.total)?;
        t.insert(id, owner, now);
        Ok(evicted)
    }

    /// The session ended (DELETE) or the MCP layer no longer knows it (404).
    pub fn forget(&self, id: &str) {
        self.table().remove(id);
    }

    /// How many sessions are tracked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.table().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        match self.table.lock() {
            Ok(t) => t,
            Err(poisoned) => {
                // A panic while the table was held: it may be half updated. Forget every
                // session (each is then refused and its client starts over) rather than
                // judge ownership from a table that may be wrong.
                let mut t = poisoned.into_inner();
                *t = Table::default();
                self.table.clear_poison();
                tracing::error!(target: "portcullis::inbound",
                    "the table of MCP session owners was damaged by an internal error and has been emptied; clients start new sessions");
                t
            }
        }
    }

    #[cfg(test)]
    fn poison(&self) {
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = self.table.lock();
                panic!("a panic while the session table is held (expected by this test)");
            })
            .join()
        });
    }
}

/// A request in progress on a session: the session is not idle while one exists.
#[derive(Debug)]
pub struct InUse {
    owners: Arc<SessionOwners>,
    id: String,
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.owners.table().leave(&self.id, Instant::now());
    }
}

#[derive(Debug, Default)]
struct Table {
    sessions: HashMap<String, Entry>,
    by_owner: HashMap<Owner, HashSet<String>>,
    last_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    owner: Owner,
    last_used: Instant,
    /// Requests (and response streams) open on this session right now.
    in_use: usize,
}

impl Entry {
    fn expired(&self, now: Instant, idle: Duration) -> bool {
        self.in_use == 0 && now.saturating_duration_since(self.last_used) >= idle
    }
}

impl Table {
    fn enter(
        &mut self,
        id: &str,
        owner: &Owner,
        now: Instant,
        idle: Duration,
    ) -> Result<(), Refusal> {
        let Some(e) = self.sessions.get_mut(id) else {
            return Err(Refusal::NotYours);
        };
        if e.expired(now, idle) {
            self.remove(id);
            return Err(Refusal::NotYours);
        }
        if e.owner != *owner {
            return Err(Refusal::NotYours);
        }
        e.in_use += 1;
        e.last_used = now;
        Ok(())
    }

    fn leave(&mut self, id: &str, now: Instant) {
        if let Some(e) = self.sessions.get_mut(id) {
            e.in_use = e.in_use.saturating_sub(1);
            e.last_used = now;
        }
    }

    /// Make room for one more session of `owner`: drop expired entries, then that user's
    /// least recently used idle one if the user is at the cap. Returns what was dropped for
    /// the cap (expired ones the MCP layer ends by itself).
    fn room_for(
        &mut self,
        owner: &Owner,
        now: Instant,
        idle: Duration,
        per_user: usize,
        total: usize,
    ) -> Result<Vec<String>, Refusal> {
        self.drop_expired_of(owner, now, idle);
        let mut evicted = Vec::new();
        let mine = self.by_owner.get(owner).map_or(0, HashSet::len);
        if mine >= per_user {
            let lru = self.by_owner.get(owner).and_then(|ids| {
                ids.iter()
                    .filter_map(|id| self.sessions.get(id).map(|e| (id, e)))
                    .filter(|(_, e)| e.in_use == 0)
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(id, _)| id.clone())
            });
            let Some(id) = lru else {
                return Err(Refusal::UserFull);
            };
            self.remove(&id);
            evicted.push(id);
        }
        if self.sessions.len() >= total {
            self.sweep(now, idle, true);
            if self.sessions.len() >= total {
                return Err(Refusal::GatewayFull);
            }
        } else {
            self.sweep(now, idle, false);
        }
        Ok(evicted)
    }

    fn insert(&mut self, id: &str, owner: Owner, now: Instant) {
        self.remove(id);
        self.by_owner
            .entry(owner.clone())
            .or_default()
            .insert(id.to_string());
        self.sessions.insert(
            id.to_string(),
            Entry {
                owner,
                last_used: now,
                in_use: 0,
            },
        );
    }

    fn remove(&mut self, id: &str) {
        let Some(e) = self.sessions.remove(id) else {
            return;
        };
        if let Some(ids) = self.by_owner.get_mut(&e.owner) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_owner.remove(&e.owner);
            }
        }
    }

    fn drop_expired_of(&mut self, owner: &Owner, now: Instant, idle: Duration) {
        let expired: Vec<String> = self
            .by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .filter(|id| self.sessions.get(*id).is_some_and(|e| e.expired(now, idle)))
            .cloned()
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }

    /// Drop every expired entry: when forced, or at most once per quarter of the idle time
    /// (a pass over the whole table).
    fn sweep(&mut self, now: Instant, idle: Duration, force: bool) {
        let due = self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= idle / 4);
        if !force && !due {
            return;
        }
        self.last_sweep = Some(now);
        let expired: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.expired(now, idle))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(300);

    fn user(name: &str) -> Owner {
        ("https://idp.example".into(), name.into())
    }

    #[test]
    fn a_session_is_served_to_its_owner_only() {
        let owners = Arc::new(SessionOwners::default());
        owners.opened("s1", user("alice")).unwrap();
        assert!(owners.enter("s1", &user("alice")).is_ok());
        assert_eq!(
            owners.enter("s1", &user("bob")).err(),
            Some(Refusal::NotYours)
        );
        assert_eq!(
            owners.enter("never-opened", &user("alice")).err(),
            Some(Refusal::NotYours),
            "an unknown session is refused, not waved through"
        );
    }

    #[test]
    fn a_poisoned_table_refuses_every_session_and_then_recovers() {
        let owners = Arc::new(SessionOwners::default());
        owners.opened("s1", user("alice")).unwrap();
        owners.poison();
        // Nothing the damaged table said is trusted: bob cannot use alice's session (the
        // old fail-open path let him through), and neither can alice.
        assert_eq!(
            owners.enter("s1", &user("bob")).err(),
            Some(Refusal::NotYours)
        );
        assert_eq!(
            owners.enter("s1", &user("alice")).err(),
            Some(Refusal::NotYours)
        );
        // New sessions work again.
        owners.opened("s2", user("alice")).unwrap();
        assert!(owners.enter("s2", &user("alice")).is_ok());
    }

    #[test]
    fn an_idle_session_expires_and_a_busy_one_does_not() {
        let t0 = Instant::now();
        let mut t = Table::default();
        t.insert("idle", user("alice"), t0);
        t.insert("busy", user("alice"), t0);
        t.enter("busy", &user("alice"), t0, IDLE).unwrap();
        let later = t0 + IDLE + Duration::from_secs(1);
        assert_eq!(
            t.enter("idle", &user("alice"), later, IDLE),
            Err(Refusal::NotYours)
        );
        assert!(
            !t.sessions.contains_key("idle"),
            "forgotten when found expired"
        );
        assert!(t.enter("busy", &user("alice"), later, IDLE).is_ok());
        // A request refreshes the clock: used just before the deadline, it lives on.
        t.insert("used", user("alice"), t0);
        let almost = t0 + IDLE - Duration::from_secs(1);
        t.enter("used", &user("alice"), almost, IDLE).unwrap();
        t.leave("used", almost);
        assert!(
            t.enter("used", &user("alice"), later, IDLE).is_ok(),
            "idle time counts from the last request"
        );
    }

    #[test]
    fn a_user_at_the_cap_displaces_their_own_least_recently_used_idle_session() {
        let t0 = Instant::now();
        let mut t = Table::default();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            t.insert(id, user("alice"), t0 + Duration::from_secs(i as u64));
        }
        t.insert("bob's", user("bob"), t0);
        let now = t0 + Duration::from_secs(10);
        let evicted = t.room_for(&user("alice"), now, IDLE, 3, 100).unwrap();
        assert_eq!(evicted, ["a"]);
        assert!(
            t.sessions.contains_key("bob's"),
            "another user's is untouched"
        );
        // With all of a user's sessions busy, a new one is refused.
        t.insert("d", user("alice"), now);
        for id in ["b", "c", "d"] {
            t.enter(id, &user("alice"), now, IDLE).unwrap();
        }
        assert_eq!(
            t.room_for(&user("alice"), now, IDLE, 3, 100),
            Err(Refusal::UserFull)
        );
        assert_eq!(t.room_for(&user("bob"), now, IDLE, 3, 100), Ok(vec![]));
    }

    #[test]
    fn a_full_gateway_drops_expired_sessions_before_refusing() {
        let t0 = Instant::now();
        let mut t = Table::default();
        t.insert("old", user("alice"), t0);
        t.insert("new", user("bob"), t0 + IDLE);
        let now = t0 + IDLE + Duration::from_secs(1);
        assert_eq!(t.room_for(&user("carol"), now, IDLE, 10, 2), Ok(vec![]));
        assert!(!t.sessions.contains_key("old"));
        t.insert("carol's", user("carol"), now);
        assert_eq!(
            t.room_for(&user("dave"), now, IDLE, 10, 2),
            Err(Refusal::GatewayFull)
        );
    }
}
