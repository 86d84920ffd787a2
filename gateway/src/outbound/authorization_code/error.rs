//! What can go wrong when the gateway talks to a provider as a user's OAuth client, sorted by
//! what the caller must do next: a dead grant is deleted and consent asked again; anything
//! else keeps the grant. Provider-supplied text is bounded and stripped of control characters
//! before it enters a message, and no message ever holds a token.

/// Longest provider `error_description` kept in a message.
const MAX_DESCRIPTION_CHARS: usize = 200;
/// Longest provider `error` code kept in a message.
const MAX_CODE_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthCodeError {
    /// The provider says the grant (authorization code or refresh token) is no longer valid:
    /// revoked, expired, already used, or the PKCE verifier does not match. The caller deletes
    /// the stored grant and asks the user to consent again.
    #[error(
        "the provider no longer accepts this grant (invalid_grant{}): it was revoked, expired or already used; the gateway drops the grant and the user is asked to consent again on their next call",
        describe(.description)
    )]
    InvalidGrant { description: Option<String> },

    /// The provider refused with another OAuth error. The grant is kept.
    #[error(
        "the provider refused the request: {code}{}. Check the client registration at the provider (client id, secret, redirect URI, allowed scopes)",
        describe(.description)
    )]
    Refused {
        code: String,
        description: Option<String>,
    },

    /// The provider could not be reached or answered with a server error. The grant is kept.
    #[error(
        "cannot reach the provider: {0}. Check that the provider is up and reachable from the gateway, then try again; a stored grant is kept"
    )]
    Unreachable(String),

    /// The provider answered something that is not what OAuth prescribes.
    #[error(
        "the provider's answer was not understood: {0}. Check that the configured endpoints belong to an OAuth 2.0 authorization server"
    )]
    BadResponse(String),

    /// Revocation was asked of a provider that offers no revocation endpoint (RFC 7009).
    #[error(
        "this provider has no token revocation endpoint, so the gateway cannot revoke the grant there. Remove the gateway's access in the user's account settings at the provider"
    )]
    RevocationUnsupported,

    /// The client cannot be set up as configured (our configuration is at fault).
    #[error("{0}")]
    Misconfigured(String),
}

impl AuthCodeError {
    /// Classify an OAuth error response (`error`, `error_description`) from the provider.
    ///
    /// `invalid_grant` is RFC 6749's "the grant is dead". GitHub answers its own
    /// `bad_refresh_token` and `bad_verification_code` for the same condition (with HTTP 200),
    /// and Slack `invalid_code` and `invalid_refresh_token`, so those count too.
    pub(super) fn from_oauth(code: &str, description: Option<&str>) -> Self {
        let description = description.map(clean_description).filter(|d| !d.is_empty());
        match code {
            "invalid_grant"
            | "bad_refresh_token"
            | "bad_verification_code"
            | "invalid_code"
            | "invalid_refresh_token" => Self::InvalidGrant { description },
            other => Self::Refused {
                code: clean(other, MAX_CODE_CHARS),
                description,
            },
        }
    }

    /// True when the grant is dead and must be deleted (the caller then asks consent again).
    pub fn grant_is_dead(&self) -> bool {
        matches!(self, Self::InvalidGrant { .. })
    }
}

fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": \"{d}\""))
        .unwrap_or_default()
}

/// A provider's `error_description`, safe to put in a message and a log line.
pub(super) fn clean_description(text: &str) -> String {
    clean(text, MAX_DESCRIPTION_CHARS)
}

/// At most `max` characters, control characters (newlines, escape sequences) replaced by a
/// space, trimmed; an ellipsis marks a cut.
fn clean(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_grant_and_its_github_spellings_mean_the_grant_is_dead() {
        for code in [
            "invalid_grant",
            "bad_refresh_token",
            "bad_verification_code",
        ] {
            assert!(
                AuthCodeError::from_oauth(code, None).grant_is_dead(),
                "{code}"
            );
        }
        for code in ["invalid_client", "invalid_request", "unauthorized_client"] {
            let e = AuthCodeError::from_oauth(code, Some("no"));
            assert!(!e.grant_is_dead(), "{code}");
            assert!(e.to_string().contains(code), "{e}");
        }
    }

    #[test]
    fn provider_text_is_bounded_and_has_no_control_characters() {
        let long = format!("line one\nline two\u{1b}[31m{}", "x".repeat(500));
        let e = AuthCodeError::from_oauth("invalid_grant", Some(&long));
        let AuthCodeError::InvalidGrant {
            description: Some(d),
        } = &e
        else {
            panic!("{e:?}");
        };
        assert!(d.chars().count() <= MAX_DESCRIPTION_CHARS + 1, "{d}");
        assert!(d.ends_with('…'), "{d}");
        assert!(!d.chars().any(char::is_control), "{d:?}");
        assert!(!e.to_string().contains('\n'), "{e}");

        let code = format!("weird\r\n{}", "y".repeat(100));
        let AuthCodeError::Refused { code, .. } = AuthCodeError::from_oauth(&code, None) else {
            panic!("not refused");
        };
        assert!(!code.chars().any(char::is_control), "{code:?}");
        assert!(code.chars().count() <= MAX_CODE_CHARS + 1, "{code}");
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = AuthCodeError::from_oauth("invalid_grant", Some("Refresh token reused"));
        assert_eq!(
            e.to_string(),
            "the provider no longer accepts this grant (invalid_grant: \"Refresh token reused\"): it was revoked, expired or already used; the gateway drops the grant and the user is asked to consent again on their next call"
        );
        assert!(
            AuthCodeError::RevocationUnsupported
                .to_string()
                .contains("account settings")
        );
    }
}
