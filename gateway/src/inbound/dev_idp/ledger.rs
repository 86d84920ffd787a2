//! The dev IdP's codes and refresh tokens, and the rule that keeps them single-use: using
//! one, remembering it as used and storing its successor happen in one step under one lock,
//! and so does revoking a login when a used one comes back (OAuth 2.1 §4.3.1, §6.1). No
//! order of concurrent requests can slip a replay between those steps, or leave a refresh
//! token alive for a login that was revoked.
//!
//! The token endpoint works in two phases: [`Ledger::look_up`] (nothing is used; the request
//! is checked and the access token signed), then [`Ledger::redeem`], which uses the token
//! only if it is still live at that moment. A request refused in between costs nothing.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::OAuthError;
use super::store::Entries;
use super::token::Grant;

/// The SHA-256 of a code or refresh token: secrets are never stored as such.
pub type Key = [u8; 32];

/// Which kind of secret was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Code,
    Refresh,
}

/// What a presented code or refresh token stands for.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Unused: this grant.
    Live(Grant),
    /// Used before and presented again, a sign of theft: its login was revoked just now.
    Reused(Grant),
    /// A refresh token of a login revoked earlier (another of its tokens was reused).
    Revoked,
    /// Never issued, expired, or forgotten in a restart.
    Unknown,
}

/// How many entries each kind may hold, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub codes: (usize, Duration),
    pub refresh_tokens: (usize, Duration),
}

#[derive(Debug)]
pub struct Ledger {
    books: Mutex<Books>,
}

#[derive(Debug)]
struct Books {
    codes: Entries<Key, Grant>,
    refresh_tokens: Entries<Key, Grant>,
    /// Codes and refresh tokens already used, naming their grant.
    spent: Entries<Key, Grant>,
    /// Refresh tokens taken away from a revoked login, so their holder learns why.
    revoked: Entries<Key, ()>,
}

impl Ledger {
    pub fn new(limits: Limits) -> Self {
        let (n, ttl) = limits.refresh_tokens;
        Self {
            books: Mutex::new(Books {
                codes: Entries::new(limits.codes.0, limits.codes.1),
                refresh_tokens: Entries::new(n, ttl),
                spent: Entries::new(n * 2, ttl),
                revoked: Entries::new(n, ttl),
            }),
        }
    }

    /// Store a fresh authorization code.
    pub fn add_code(&self, code: Key, grant: Grant) -> Result<(), OAuthError> {
        self.lock()?.codes.insert(code, grant);
        Ok(())
    }

    /// What `presented` stands for, leaving it unused. A used one presented again revokes
    /// its login here, in the same step.
    pub fn look_up(&self, kind: Kind, presented: &Key) -> Result<Lookup, OAuthError> {
        let mut books = self.lock()?;
        if let Some(grant) = books.live(kind).get(presented) {
            return Ok(Lookup::Live(grant.clone()));
        }
        Ok(books.not_live(presented))
    }

    /// Use `presented` and, in the same step, store `next` as a refresh token of its grant
    /// (scopes as granted at login). `Live` if it was still unused; otherwise what it is now
    /// (a concurrent request used it first: `Reused`, and the login is revoked).
    pub fn redeem(
        &self,
        kind: Kind,
        presented: &Key,
        next: Option<Key>,
    ) -> Result<Lookup, OAuthError> {
        let mut books = self.lock()?;
        let Some(grant) = books.live(kind).take(presented) else {
            return Ok(books.not_live(presented));
        };
        books.spent.insert(*presented, grant.clone());
        if let Some(next) = next {
            books.refresh_tokens.insert(next, grant.clone());
        }
        Ok(Lookup::Live(grant))
    }

    /// End every refresh token of a login (its access tokens live until they expire).
    pub fn revoke(&self, grant_id: &str) -> Result<(), OAuthError> {
        self.lock()?.revoke(grant_id);
        Ok(())
    }

    /// A std lock on purpose: a poisoned one means a panic in the middle of an operation,
    /// which may have left a token used but not recorded as such: refuse every token
    /// request rather than risk a replay (fail closed; a restart clears it, and people log
    /// in again).
    fn lock(&self) -> Result<MutexGuard<'_, Books>, OAuthError> {
        self.books.lock().map_err(|_| {
            OAuthError::unavailable(
                "the development identity provider's token store failed after an internal error; restart the gateway and log in again",
            )
        })
    }
}

impl Books {
    fn live(&mut self, kind: Kind) -> &mut Entries<Key, Grant> {
        match kind {
            Kind::Code => &mut self.codes,
            Kind::Refresh => &mut self.refresh_tokens,
        }
    }

    /// A key that is not live: a used one revokes its login now.
    fn not_live(&mut self, presented: &Key) -> Lookup {
        if let Some(grant) = self.spent.get(presented).cloned() {
            self.revoke(&grant.id);
            return Lookup::Reused(grant);
        }
        if self.revoked.get(presented).is_some() {
            return Lookup::Revoked;
        }
        Lookup::Unknown
    }

    fn revoke(&mut self, grant_id: &str) {
        for (key, _) in self.refresh_tokens.take_where(|g| g.id == grant_id) {
            self.revoked.insert(key, ());
        }
    }
}

#[cfg(test)]
mod tests {
    //! The interleavings of two requests presenting the same token, driven step by step.
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new(Limits {
            codes: (10, Duration::from_secs(60)),
            refresh_tokens: (10, Duration::from_secs(600)),
        })
    }

    fn grant(id: &str) -> Grant {
        Grant {
            id: id.into(),
            client_id: "dev-client".into(),
            agent: "tester".into(),
            user: "alice".into(),
            scopes: vec!["mcp:read".into()],
            refresh: true,
            redirect_uri: "http://127.0.0.1:1/cb".into(),
            code_challenge: String::new(),
        }
    }

    fn key(n: u8) -> Key {
        [n; 32]
    }

    fn live(l: Lookup) -> Grant {
        match l {
            Lookup::Live(g) => g,
            other => panic!("expected a live token, got {other:?}"),
        }
    }

    /// A login with one live refresh token, `key(1)`.
    fn logged_in() -> Ledger {
        let l = ledger();
        l.add_code(key(0), grant("g")).unwrap();
        live(l.redeem(Kind::Code, &key(0), Some(key(1))).unwrap());
        l
    }

    #[test]
    fn a_replay_racing_the_rotation_revokes_the_winners_new_token() {
        // Both requests look the token up before either uses it: both see it live.
        for first_wins in [true, false] {
            let l = logged_in();
            live(l.look_up(Kind::Refresh, &key(1)).unwrap());
            live(l.look_up(Kind::Refresh, &key(1)).unwrap());
            let (winner, loser) = if first_wins { (2, 3) } else { (3, 2) };
            live(l.redeem(Kind::Refresh, &key(1), Some(key(winner))).unwrap());
            assert!(
                matches!(
                    l.redeem(Kind::Refresh, &key(1), Some(key(loser))).unwrap(),
                    Lookup::Reused(_)
                ),
                "the second use of one token is a reuse"
            );
            assert!(
                matches!(
                    l.look_up(Kind::Refresh, &key(winner)).unwrap(),
                    Lookup::Revoked
                ),
                "the token the first use got is revoked with its login"
            );
            assert!(
                matches!(
                    l.look_up(Kind::Refresh, &key(loser)).unwrap(),
                    Lookup::Unknown
                ),
                "the loser's token was never stored"
            );
        }
    }

    #[test]
    fn a_replay_after_the_rotation_revokes_the_new_token() {
        let l = logged_in();
        live(l.redeem(Kind::Refresh, &key(1), Some(key(2))).unwrap());
        assert!(matches!(
            l.look_up(Kind::Refresh, &key(1)).unwrap(),
            Lookup::Reused(_)
        ));
        assert!(matches!(
            l.redeem(Kind::Refresh, &key(2), Some(key(3))).unwrap(),
            Lookup::Revoked
        ));
        assert!(matches!(
            l.look_up(Kind::Refresh, &key(3)).unwrap(),
            Lookup::Unknown
        ));
    }

    #[test]
    fn a_request_checked_before_a_revocation_cannot_store_a_successor() {
        // A looks its token up; the old token is replayed (revoking the login); then A
        // tries to use its token: refused, and no successor is stored.
        let l = logged_in();
        live(l.redeem(Kind::Refresh, &key(1), Some(key(2))).unwrap());
        live(l.look_up(Kind::Refresh, &key(2)).unwrap());
        assert!(matches!(
            l.look_up(Kind::Refresh, &key(1)).unwrap(),
            Lookup::Reused(_)
        ));
        assert!(matches!(
            l.redeem(Kind::Refresh, &key(2), Some(key(3))).unwrap(),
            Lookup::Revoked
        ));
        assert!(matches!(
            l.look_up(Kind::Refresh, &key(3)).unwrap(),
            Lookup::Unknown
        ));
    }

    #[test]
    fn a_replayed_code_revokes_the_refresh_tokens_of_its_login_only() {
        let l = logged_in();
        l.add_code(key(10), grant("other")).unwrap();
        live(l.redeem(Kind::Code, &key(10), Some(key(11))).unwrap());
        assert!(matches!(
            l.redeem(Kind::Code, &key(0), Some(key(5))).unwrap(),
            Lookup::Reused(_)
        ));
        assert!(matches!(
            l.look_up(Kind::Refresh, &key(1)).unwrap(),
            Lookup::Revoked
        ));
        live(l.look_up(Kind::Refresh, &key(11)).unwrap());
    }

    #[test]
    fn a_ledger_poisoned_by_a_panic_refuses_every_token_request() {
        let l = logged_in();
        // A panic while the books are held, as if in the middle of a redemption.
        let panicked = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = l.books.lock();
                panic!("a panic while the ledger is held (expected by this test)");
            })
            .join()
        });
        assert!(panicked.is_err());
        // Nothing is trusted any more: the live refresh token is not accepted, not even
        // looked up, and no new code is stored.
        assert!(l.look_up(Kind::Refresh, &key(1)).is_err());
        assert!(l.redeem(Kind::Refresh, &key(1), Some(key(2))).is_err());
        assert!(l.add_code(key(9), grant("after")).is_err());
        assert!(l.revoke("g").is_err());
    }

    #[test]
    fn a_successor_keeps_the_grant_as_stored() {
        let l = logged_in();
        let g = live(l.redeem(Kind::Refresh, &key(1), Some(key(2))).unwrap());
        assert_eq!(g.scopes, ["mcp:read"]);
        assert_eq!(
            live(l.look_up(Kind::Refresh, &key(2)).unwrap()).scopes,
            ["mcp:read"]
        );
    }
}
