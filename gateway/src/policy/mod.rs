//! Authorization: may this caller call this tool? One answer, asked by the call pipeline's
//! authorize phase (`server/call.rs`), by the HTTP step-up before the MCP layer
//! (`inbound/layer.rs`, which must answer 403 `insufficient_scope` at the HTTP level) and by
//! `tools/list` (`server/mod.rs`). Today the rule is the per-tool scopes of the targets'
//! `[tools.NAME] scopes`; Cedar policies are added here, behind the same [`Decision`].

use crate::catalog::View;
use crate::identity::Caller;

/// The answer for one (caller, tool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed once the caller's token carries these scopes: the tool stays listed, and a
    /// call is refused with the scopes to ask for (the MCP step-up).
    NeedsScopes {
        /// Every scope the tool needs (a step-up challenge names them all).
        needed: Vec<String>,
        /// Those the token lacks.
        missing: Vec<String>,
    },
}

/// May `caller` call the gateway tool `tool` of `view`? Without inbound authentication
/// (`caller` is `None`, loopback only) there is no identity to hold scopes against: allowed.
pub fn tool_call(view: &View, caller: Option<&Caller>, tool: &str) -> Decision {
    let (Some(caller), Some(needed)) = (caller, view.tool_scopes.get(tool)) else {
        return Decision::Allow;
    };
    let missing: Vec<String> = needed
        .iter()
        .filter(|s| !caller.scopes.contains(*s))
        .cloned()
        .collect();
    if missing.is_empty() {
        Decision::Allow
    } else {
        Decision::NeedsScopes {
            needed: needed.clone(),
            missing,
        }
    }
}

/// Whether `tools/list` shows `tool` to `caller`: every tool the caller may call now or after
/// a step-up (a client cannot ask for a scope of a tool it never saw).
pub fn listed(view: &View, caller: Option<&Caller>, tool: &str) -> bool {
    match tool_call(view, caller, tool) {
        Decision::Allow | Decision::NeedsScopes { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scopes: &[&str]) -> Caller {
        Caller {
            issuer: "https://idp.example".into(),
            user: "alice".into(),
            agent: Some("cli".into()),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            groups: vec![],
            tenant: None,
            claims: Default::default(),
            expires_at: std::time::SystemTime::now(),
        }
    }

    fn view() -> View {
        let mut v = View::default();
        v.tool_scopes.insert(
            "gh__push".into(),
            vec!["repo:write".into(), "repo:read".into()],
        );
        v
    }

    #[test]
    fn a_tool_without_scopes_is_allowed() {
        assert_eq!(
            tool_call(&view(), Some(&caller(&[])), "demo__echo"),
            Decision::Allow
        );
    }

    #[test]
    fn every_missing_scope_is_named() {
        assert_eq!(
            tool_call(&view(), Some(&caller(&["repo:read"])), "gh__push"),
            Decision::NeedsScopes {
                needed: vec!["repo:write".into(), "repo:read".into()],
                missing: vec!["repo:write".into()]
            }
        );
        assert_eq!(
            tool_call(
                &view(),
                Some(&caller(&["repo:read", "repo:write"])),
                "gh__push"
            ),
            Decision::Allow
        );
    }

    #[test]
    fn step_up_tools_stay_listed_and_unauthenticated_callers_are_not_held_to_scopes() {
        assert!(listed(&view(), Some(&caller(&[])), "gh__push"));
        assert_eq!(tool_call(&view(), None, "gh__push"), Decision::Allow);
    }
}
