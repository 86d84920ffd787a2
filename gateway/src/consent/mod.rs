//! The user-consent side of 3LO (DESIGN §6): what a call that needs a user's consent hands to
//! the agent, and (as it lands) the browser pages that bind the consent to that user. Grants
//! themselves live in `vault/`; the OAuth client that obtains them in `outbound/`.

pub mod pages;
pub mod request_state;
