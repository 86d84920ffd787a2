//! The demo provider's memory of what it handed out: authorization codes, and the access and
//! refresh tokens of each grant (one grant per approval). Everything is kept by the SHA-256
//! of the secret, in bounded maps whose entries expire, under one lock so that "use this
//! refresh token and issue the next" or "revoke the whole grant" happen at once.
//!
//! Rules it keeps: a code works once, and a second use revokes what the first one got
//! (RFC 6749 §4.1.2); a refresh token works once (rotation), and presenting a rotated-out one
//! again revokes the whole grant, since either its holder or a thief is replaying it (OAuth
//! 2.0 Security BCP §4.14.2).

use std::time::Duration;

use parking_lot::Mutex;

use crate::inbound::dev_idp::store::{Entries, Unavailable, digest, random_token};

const MAX_ENTRIES: usize = 10_000;
const CODE_TTL: Duration = Duration::from_secs(60);
const REFRESH_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// What an approval granted: who approved, and which scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    pub scopes: Vec<String>,
}

/// What a code is bound to, checked at the token endpoint.
#[derive(Debug, Clone)]
pub struct CodeBinding {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub grant: Grant,
}

#[derive(Debug, Clone)]
enum Code {
    Fresh(CodeBinding),
    /// Exchanged already, for this grant.
    Used(u64),
}

#[derive(Debug, Clone)]
struct Held {
    grant_id: u64,
    grant: Grant,
}

#[derive(Debug, Clone)]
struct Refresh {
    held: Held,
    /// Rotated out: presenting it again revokes the grant.
    used: bool,
}

/// An access and refresh token pair, just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub grant: Grant,
}

/// Why a code or refresh token was not accepted; the grant is dead either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Unknown or expired.
    Unknown,
    /// Used before; the grant it produced is revoked now.
    Replayed,
    /// The RNG failed.
    Unavailable,
}

impl From<Unavailable> for Refused {
    fn from(_: Unavailable) -> Self {
        Self::Unavailable
    }
}

#[derive(Debug)]
struct Books {
    codes: Entries<[u8; 32], Code>,
    access: Entries<[u8; 32], Held>,
    refresh: Entries<[u8; 32], Refresh>,
    next_grant: u64,
}

#[derive(Debug)]
pub struct Ledger {
    books: Mutex<Books>,
}

impl Ledger {
    pub fn new(access_ttl: Duration) -> Self {
        Self {
            books: Mutex::new(Books {
                codes: Entries::new(MAX_ENTRIES, CODE_TTL),
                access: Entries::new(MAX_ENTRIES, access_ttl),
                refresh: Entries::new(MAX_ENTRIES, REFRESH_TTL),
                next_grant: 0,
            }),
        }
    }

    pub fn access_ttl(&self) -> Duration {
        self.books.lock().access.ttl()
    }

    /// A new single-use code for an approval.
    pub fn issue_code(&self, binding: CodeBinding) -> Result<String, Unavailable> {
        let code = random_token()?;
        self.books
            .lock()
            .codes
            .insert(digest(&code), Code::Fresh(binding));
        Ok(code)
    }

    /// Use `code` once: `check` decides whether the request matches its binding (client,
    /// redirect URI, PKCE); the code is spent whatever it decides, so it cannot be guessed
    /// at. `Ok(None)`: `check` refused it.
    pub fn redeem_code(
        &self,
        code: &str,
        check: impl FnOnce(&CodeBinding) -> bool,
    ) -> Result<Option<Issued>, Refused> {
        let key = digest(code);
        let mut books = self.books.lock();
        match books.codes.take(&key) {
            None => Err(Refused::Unknown),
            Some(Code::Used(grant_id)) => {
                books.revoke_grant(grant_id);
                Err(Refused::Replayed)
            }
            Some(Code::Fresh(binding)) => {
                if !check(&binding) {
                    return Ok(None);
                }
                let grant_id = books.next_grant;
                books.next_grant += 1;
                books.codes.insert(key, Code::Used(grant_id));
                let held = Held {
                    grant_id,
                    grant: binding.grant,
                };
                Ok(Some(books.issue(held)?))
            }
        }
    }

    /// Rotate `refresh_token`: the next pair of the same grant, with `narrow` scopes if
    /// given (which `check` has found to be a subset). A rotated-out token kills the grant.
    pub fn refresh(
        &self,
        refresh_token: &str,
        narrow: Option<Vec<String>>,
    ) -> Result<Issued, Refused> {
        let key = digest(refresh_token);
        let mut books = self.books.lock();
        let Some(current) = books.refresh.take(&key) else {
            return Err(Refused::Unknown);
        };
        if current.used {
            books.revoke_grant(current.held.grant_id);
            return Err(Refused::Replayed);
        }
        let mut held = current.held.clone();
        books.refresh.insert(
            key,
            Refresh {
                held: current.held,
                used: true,
            },
        );
        if let Some(scopes) = narrow {
            held.grant.scopes = scopes;
        }
        Ok(books.issue(held)?)
    }

    /// The scopes the grant of `refresh_token` holds, if it is live and unused.
    pub fn refresh_scopes(&self, refresh_token: &str) -> Option<Vec<String>> {
        let books = self.books.lock();
        books
            .refresh
            .get(&digest(refresh_token))
            .filter(|r| !r.used)
            .map(|r| r.held.grant.scopes.clone())
    }

    /// Who a live access token speaks for.
    pub fn access(&self, access_token: &str) -> Option<Grant> {
        let books = self.books.lock();
        books
            .access
            .get(&digest(access_token))
            .map(|h| h.grant.clone())
    }

    /// RFC 7009: an access token ends alone; a refresh token ends its whole grant. Unknown
    /// tokens are ignored.
    pub fn revoke(&self, token: &str) {
        let key = digest(token);
        let mut books = self.books.lock();
        if books.access.take(&key).is_some() {
            return;
        }
        if let Some(r) = books.refresh.take(&key) {
            books.revoke_grant(r.held.grant_id);
        }
    }
}

impl Books {
    fn issue(&mut self, held: Held) -> Result<Issued, Unavailable> {
        let access_token = random_token()?;
        let refresh_token = random_token()?;
        let grant = held.grant.clone();
        self.access.insert(digest(&access_token), held.clone());
        self.refresh
            .insert(digest(&refresh_token), Refresh { held, used: false });
        Ok(Issued {
            access_token,
            refresh_token,
            grant,
        })
    }

    fn revoke_grant(&mut self, grant_id: u64) {
        self.access.take_where(|h| h.grant_id == grant_id);
        self.refresh.take_where(|r| r.held.grant_id == grant_id);
    }
}
