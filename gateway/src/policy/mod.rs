//! Authorization: may this caller call this tool, with these arguments? One answer, asked by
//! the call pipeline's authorize phase (`server/call.rs`), by `tools/list` (`server/mod.rs`,
//! "could some input be allowed?") and, for scopes only, by the HTTP step-up before the MCP
//! layer (`inbound/layer.rs`, which must answer 403 `insufficient_scope` at the HTTP level).
//!
//! Two inputs: the per-tool scopes of the targets' `[tools.NAME] scopes` (a missing scope is
//! a step-up, not a denial), then the Cedar policies of `policies/` (docs/policies.md). The
//! policies are part of the runtime: a reload swaps them with the rest, and a set that does
//! not check keeps the old one serving.

mod load;
mod request;
mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, Effect, EntityUid, PolicyId,
    PolicySet, ResourceConstraint,
};
use parking_lot::RwLock;
use serde_json::{Map, Value};

pub use load::{BASE_SCHEMA, SCHEMA_FILE};
pub use request::{ANONYMOUS, Principal};
pub use schema::{CALL_TOOL, Findings, GET_PROMPT, Governs, READ_RESOURCE, schema_text};

use crate::catalog::View;
use crate::config::{ConfigErrors, PolicyMode, PolicySettings};
use crate::identity::Caller;
use request::{KnownCallers, ToolEntities, ToolFacts};

/// The answer for one (caller, tool, arguments).
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
    /// The policies deny the call.
    Denied(Denial),
}

/// Why the policies deny a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The determining policies: the `forbid`s that matched (empty when no `permit` did).
    pub policies: Vec<String>,
    /// Whether the caller may be told the policy ids (`[policies] show_policy_ids`).
    pub show_ids: bool,
    /// What a person reads: "no policy permits it", "forbidden by policy", …
    pub reason: String,
}

/// A decision and what the audit trail records of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    /// `None` when no policies are configured.
    pub record: Option<Record>,
}

/// What the policies decided, for the audit event (never the arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub mode: PolicyMode,
    /// The policies' own answer; in `log_only` mode a `false` here was allowed anyway.
    pub allowed: bool,
    pub policies: Vec<String>,
}

/// The compiled policy set of one runtime.
#[derive(Debug)]
pub struct Policies {
    set: PolicySet,
    origins: HashMap<PolicyId, load::Origin>,
    /// The base schema's text and file (`None`: built in).
    schema: (String, Option<std::path::PathBuf>),
    dir: std::path::PathBuf,
    files: usize,
    mode: PolicyMode,
    show_ids: bool,
    claims: std::collections::BTreeMap<String, String>,
    /// Each policy's scope, to find the few that can apply to a tool.
    scopes: Vec<(PolicyId, Scope)>,
    /// Per (tool, target): the policies that can apply to calls of it. Filled as tools are
    /// asked about; a new runtime starts empty.
    slices: RwLock<HashMap<String, Arc<Slice>>>,
    /// Per target: the policies all its tools share.
    shared: RwLock<HashMap<String, Arc<Part>>>,
    /// Prompts and resources are governed only when a policy names their action.
    governs: Governs,
    /// The policies that can apply to `prompts/get` and `resources/read` (naming the action,
    /// or any action), when governed.
    prompt_policies: PolicySet,
    resource_policies: PolicySet,
    authorizer: Authorizer,
}

/// A prompt or a resource, which policies may govern besides tools.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    Prompt { name: &'a str, target: &'a str },
    Resource { uri: &'a str, target: &'a str },
}

/// The policies that can apply to one tool, in two parts: those every tool of its target
/// shares (the rules for any tool, or for the target: built once per target and shared by its
/// tools), and those that name this tool. Cedar's answer over both is their union's: a
/// matching `forbid` in either denies, else a matching `permit` in either allows.
#[derive(Debug)]
struct Slice {
    /// The target the tool was in when the slice was made (a reload may move an unprefixed
    /// tool to another target: then the slice is made again).
    target: String,
    entities: ToolEntities,
    /// The entities of this tool's recent callers (calls only: a listing asks about every
    /// tool once and would fill every slice).
    callers: KnownCallers,
    shared: Arc<Part>,
    own: Part,
}

/// Some policies, and the same without those that read the arguments.
#[derive(Debug, Default)]
struct Part {
    all: PolicySet,
    /// Those that do not read `context.input`: the listing decides with them alone.
    without_input: PolicySet,
    /// Whether a `permit` reads `context.input` (some input may satisfy it).
    input_permits: bool,
}

impl Part {
    fn add(&mut self, policy: &cedar_policy::Policy, reads_input: bool) {
        let _ = self.all.add(policy.clone());
        if !reads_input {
            let _ = self.without_input.add(policy.clone());
        } else if policy.effect() == Effect::Permit {
            self.input_permits = true;
        }
    }
}

/// What a policy's scope says about tools: which actions and resources it can match.
#[derive(Debug)]
struct Scope {
    /// `None`: every tool.
    tools: Option<Vec<String>>,
    resource: Resource,
    /// The policy's text mentions `input` (an over-approximation of "reads the arguments").
    reads_input: bool,
}

#[derive(Debug)]
enum Resource {
    Any,
    Tool(String),
    Target(String),
    /// Not a tool (`resource is Target`, `resource == Target::"…"`): matches no call.
    Nothing,
}

impl Policies {
    /// Read `settings.dir`. `Ok(None)`: there is no policy directory (every authenticated
    /// caller may call every tool). The set is not yet checked against the catalog's tools:
    /// [`check`](Self::check) does that once the catalog is known.
    pub fn load(settings: &PolicySettings) -> Result<Option<Self>, ConfigErrors> {
        let Some(parsed) = load::read(settings)? else {
            return Ok(None);
        };
        let scopes = parsed
            .set
            .policies()
            .map(|p| (p.id().clone(), scope_of(p)))
            .collect();
        let names = |p: &cedar_policy::Policy, action: &str| match p.action_constraint() {
            ActionConstraint::Any => None,
            ActionConstraint::Eq(uid) => Some(uid.id().unescaped() == action),
            ActionConstraint::In(uids) => Some(uids.iter().any(|u| u.id().unescaped() == action)),
        };
        let governs = Governs {
            prompts: parsed
                .set
                .policies()
                .any(|p| names(p, GET_PROMPT) == Some(true)),
            resources: parsed
                .set
                .policies()
                .any(|p| names(p, READ_RESOURCE) == Some(true)),
        };
        let about = |action: &str, governed: bool| {
            let mut set = PolicySet::new();
            for p in parsed.set.policies() {
                if governed && names(p, action) != Some(false) {
                    let _ = set.add(p.clone());
                }
            }
            set
        };
        let prompt_policies = about(GET_PROMPT, governs.prompts);
        let resource_policies = about(READ_RESOURCE, governs.resources);
        Ok(Some(Self {
            set: parsed.set,
            origins: parsed.origins,
            schema: parsed.schema,
            dir: settings.dir.clone(),
            files: parsed.files,
            mode: settings.mode,
            show_ids: settings.show_policy_ids,
            claims: settings.claims.clone(),
            scopes,
            slices: RwLock::new(HashMap::new()),
            shared: RwLock::new(HashMap::new()),
            governs,
            prompt_policies,
            resource_policies,
            authorizer: Authorizer::new(),
        }))
    }

    /// "12 policies from 3 files in policies/ (enforce)", for the startup log.
    pub fn summary(&self) -> String {
        let n = self.set.policies().count();
        format!(
            "{n} {} from {} in {} ({})",
            if n == 1 { "policy" } else { "policies" },
            crate::words::plural(self.files, "file"),
            self.dir.display(),
            self.mode.as_str()
        )
    }

    /// The caller as the policies see it (built once per request).
    pub fn principal(&self, caller: Option<&Caller>) -> Principal {
        Principal::new(caller, &self.claims)
    }

    /// The policies that can apply to calls of `tool`, and its entities.
    fn slice(&self, tool: &ToolFacts<'_>) -> Arc<Slice> {
        if let Some(s) = self.slices.read().get(tool.name)
            && s.target == tool.target
        {
            return s.clone();
        }
        let (name, target) = (tool.name, tool.target);
        let mut own = Part::default();
        for (id, scope) in &self.scopes {
            if scope.applies(name, target)
                && !scope.shared_by(target)
                && let Some(p) = self.set.policy(id)
            {
                own.add(p, scope.reads_input);
            }
        }
        let slice = Arc::new(Slice {
            target: target.to_string(),
            entities: ToolEntities::new(tool),
            callers: KnownCallers::default(),
            shared: self.shared_by(target),
            own,
        });
        self.slices.write().insert(name.to_string(), slice.clone());
        slice
    }

    /// The policies every tool of `target` shares.
    fn shared_by(&self, target: &str) -> Arc<Part> {
        if let Some(p) = self.shared.read().get(target) {
            return p.clone();
        }
        let mut part = Part::default();
        for (id, scope) in &self.scopes {
            if scope.shared_by(target)
                && let Some(p) = self.set.policy(id)
            {
                part.add(p, scope.reads_input);
            }
        }
        let part = Arc::new(part);
        self.shared.write().insert(target.to_string(), part.clone());
        part
    }

    /// The policies' answer for a call with these arguments.
    fn decide(
        &self,
        principal: &Principal,
        tool: &ToolFacts<'_>,
        schema: &Map<String, Value>,
        arguments: Option<&Map<String, Value>>,
    ) -> Judgement {
        let input = match request::input(schema, arguments) {
            Ok(input) => input,
            Err(mistyped) => {
                return Judgement {
                    allowed: false,
                    policies: vec![],
                    reason: format!("{}, so the policies cannot judge it", mistyped.0),
                    errors: vec![],
                };
            }
        };
        let slice = self.slice(tool);
        let request = request::request(principal, &slice.entities, input);
        let entities = slice.callers.entities(principal, &slice.entities);
        self.judge(&[&slice.shared.all, &slice.own.all], &request, &entities)
    }

    /// Cedar's answer over the union of `sets`, as the gateway takes it: a `forbid` that
    /// matched denies (they are the determining policies), else one that could not be
    /// evaluated denies, else a `permit` that matched allows, else Cedar's default deny.
    fn judge(
        &self,
        sets: &[&PolicySet],
        request: &cedar_policy::Request,
        entities: &cedar_policy::Entities,
    ) -> Judgement {
        let verdict = self.verdict(sets, request, entities);
        let errors = verdict.errors;
        // Sorted: the same call must read the same each time.
        if !verdict.forbids.is_empty() {
            return Judgement {
                allowed: false,
                policies: verdict.forbids.into_iter().collect(),
                reason: "a policy forbids it".into(),
                errors,
            };
        }
        if !verdict.broken_forbids.is_empty() {
            return Judgement {
                allowed: false,
                policies: verdict.broken_forbids.into_iter().collect(),
                reason: "a forbid policy could not be evaluated for these arguments".into(),
                errors,
            };
        }
        Judgement {
            allowed: verdict.permitted,
            reason: if verdict.permitted {
                String::new()
            } else {
                "no policy permits it".into()
            },
            policies: verdict.permits.into_iter().collect(),
            errors,
        }
    }

    /// What Cedar says of each of `sets`, gathered.
    fn verdict(
        &self,
        sets: &[&PolicySet],
        request: &cedar_policy::Request,
        entities: &cedar_policy::Entities,
    ) -> Verdicts {
        let mut v = Verdicts::default();
        for set in sets.iter().filter(|s| !s.is_empty()) {
            let response = self.authorizer.is_authorized(request, set, entities);
            for e in response.diagnostics().errors() {
                let id = policy_of(e);
                // A forbid that could not be evaluated denies: failing open would let a
                // malformed call past the rule meant to stop it.
                if set.policy(id).is_some_and(|p| p.effect() == Effect::Forbid) {
                    v.broken_forbids.insert(id.to_string());
                }
                v.errors.push(format!("policy `{id}`: {e}"));
            }
            let reasons = response.diagnostics().reason().map(ToString::to_string);
            match response.decision() {
                CedarDecision::Allow => {
                    v.permitted = true;
                    v.permits.extend(reasons);
                }
                // The reasons of a denial are the forbids that matched (none: no permit did).
                CedarDecision::Deny => v.forbids.extend(reasons),
            }
        }
        v
    }

    /// Whether some input could let `principal` call `tool`: `false` only when every input
    /// is denied. The policies that do not read the arguments decide what they can: a
    /// `forbid` among them that matches hides the tool, a `permit` that matches shows it;
    /// otherwise a `permit` that reads the arguments may match some input, and shows it.
    ///
    /// Cedar's partial evaluation (arguments unknown) was the first choice, but it leaves
    /// every `context.…` access unevaluated once one context member is unknown, so it could
    /// not tell `context.agent == Agent::"ci"` from a condition on the arguments.
    fn may_call(&self, principal: &Principal, tool: &ToolFacts<'_>) -> bool {
        let slice = self.slice(tool);
        let (request, entities) = request::question(
            principal,
            &slice.entities,
            cedar_policy::RestrictedExpression::new_record([]).expect("an empty record"),
        );
        let v = self.verdict(
            &[&slice.shared.without_input, &slice.own.without_input],
            &request,
            &entities,
        );
        // A forbid that matched, or could not be evaluated, does so whatever the input.
        if !v.forbids.is_empty() || !v.broken_forbids.is_empty() {
            return false;
        }
        v.permitted || slice.shared.input_permits || slice.own.input_permits
    }
}

/// Cedar's answers over several policy sets, gathered (sorted, without repeats).
#[derive(Debug, Default)]
struct Verdicts {
    permitted: bool,
    permits: std::collections::BTreeSet<String>,
    forbids: std::collections::BTreeSet<String>,
    broken_forbids: std::collections::BTreeSet<String>,
    errors: Vec<String>,
}

impl Policies {
    /// The policies' answer for reading a prompt or resource; `None` when they do not
    /// govern that kind (no policy names its action).
    fn judge_item(&self, principal: &Principal, item: Item<'_>) -> Option<Judgement> {
        let (set, governed) = match item {
            Item::Prompt { .. } => (&self.prompt_policies, self.governs.prompts),
            Item::Resource { .. } => (&self.resource_policies, self.governs.resources),
        };
        if !governed {
            return None;
        }
        let (request, entities) = request::item_question(principal, item);
        Some(self.judge(&[set], &request, &entities))
    }
}

/// May `caller` get this prompt or read this resource? Allowed unless a policy names the
/// action (`GetPrompt`, `ReadResource`) and the policies deny it; `log_only` allows. The
/// record is `Some` only when the policies govern the item (a decision to audit).
pub fn item(policies: Option<&Policies>, caller: Option<&Caller>, item: Item<'_>) -> Verdict {
    let Some(policies) = policies else {
        return Verdict::ALLOW;
    };
    match policies.judge_item(&policies.principal(caller), item) {
        Some(j) => policies.verdict_of(j),
        None => Verdict::ALLOW,
    }
}

impl Verdict {
    /// Allowed, and nothing the policies decided to record.
    const ALLOW: Self = Self {
        decision: Decision::Allow,
        record: None,
    };
}

impl Policies {
    /// The gateway's verdict on the policies' judgement: in `log_only` mode a denial is
    /// recorded and allowed.
    fn verdict_of(&self, j: Judgement) -> Verdict {
        let record = Record {
            mode: self.mode,
            allowed: j.allowed,
            policies: j.policies.clone(),
        };
        let decision = if j.allowed || self.mode == PolicyMode::LogOnly {
            Decision::Allow
        } else {
            Decision::Denied(Denial {
                policies: j.policies,
                show_ids: self.show_ids,
                reason: j.reason,
            })
        };
        Verdict {
            decision,
            record: Some(record),
        }
    }
}

/// The result of evaluating the policies for one call.
#[derive(Debug)]
struct Judgement {
    allowed: bool,
    policies: Vec<String>,
    reason: String,
    /// Evaluation errors, for the log.
    errors: Vec<String>,
}

fn policy_of(e: &cedar_policy::AuthorizationError) -> &PolicyId {
    match e {
        cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id(),
    }
}

fn scope_of(policy: &cedar_policy::Policy) -> Scope {
    let is = |uid: &EntityUid, kind: &str| uid.type_name().to_string() == kind;
    let tools = match policy.action_constraint() {
        ActionConstraint::Any => None,
        ActionConstraint::Eq(uid) if uid.id().unescaped() == CALL_TOOL => Some(vec![]),
        ActionConstraint::Eq(uid) => Some(vec![uid.id().unescaped().to_string()]),
        ActionConstraint::In(uids) if uids.iter().any(|u| u.id().unescaped() == CALL_TOOL) => None,
        ActionConstraint::In(uids) => Some(
            uids.iter()
                .map(|u| u.id().unescaped().to_string())
                .collect(),
        ),
    };
    let within = |uid: &EntityUid| {
        if is(uid, "Tool") {
            Resource::Tool(uid.id().unescaped().to_string())
        } else if is(uid, "Target") {
            Resource::Target(uid.id().unescaped().to_string())
        } else {
            Resource::Nothing
        }
    };
    let resource = match policy.resource_constraint() {
        ResourceConstraint::Any => Resource::Any,
        ResourceConstraint::Is(kind) if kind.to_string() == "Tool" => Resource::Any,
        ResourceConstraint::Is(_) => Resource::Nothing,
        ResourceConstraint::Eq(uid) if is(&uid, "Tool") => {
            Resource::Tool(uid.id().unescaped().to_string())
        }
        ResourceConstraint::Eq(_) => Resource::Nothing,
        ResourceConstraint::In(uid) => within(&uid),
        ResourceConstraint::IsIn(kind, uid) if kind.to_string() == "Tool" => within(&uid),
        ResourceConstraint::IsIn(..) => Resource::Nothing,
    };
    Scope {
        tools,
        resource,
        reads_input: policy.to_string().contains("input"),
    }
}

impl Scope {
    /// Whether the policy applies to every tool of `target` alike (it names no tool).
    fn shared_by(&self, target: &str) -> bool {
        self.tools.is_none()
            && match &self.resource {
                Resource::Any => true,
                Resource::Target(t) => t == target,
                Resource::Tool(_) | Resource::Nothing => false,
            }
    }

    fn applies(&self, tool: &str, target: &str) -> bool {
        let action = self
            .tools
            .as_ref()
            .is_none_or(|tools| tools.iter().any(|t| t == tool));
        action
            && match &self.resource {
                Resource::Any => true,
                Resource::Tool(t) => t == tool,
                Resource::Target(t) => t == target,
                Resource::Nothing => false,
            }
    }
}

/// The scopes `tool` needs that `caller` lacks (the step-up), if any. Without inbound
/// authentication (`caller` is `None`, loopback only) there is no identity to hold scopes
/// against.
pub fn missing_scopes(view: &View, caller: Option<&Caller>, tool: &str) -> Option<Decision> {
    let (Some(caller), Some(needed)) = (caller, view.tool_scopes.get(tool)) else {
        return None;
    };
    let missing: Vec<String> = needed
        .iter()
        .filter(|s| !caller.scopes.contains(*s))
        .cloned()
        .collect();
    (!missing.is_empty()).then(|| Decision::NeedsScopes {
        needed: needed.clone(),
        missing,
    })
}

/// May `caller` call the gateway tool `tool` of `view` with `arguments`? First the tool's
/// scopes (a step-up), then the policies; in `log_only` mode a denial is recorded and
/// allowed.
pub fn tool_call(
    policies: Option<&Policies>,
    view: &View,
    caller: Option<&Caller>,
    tool: &str,
    arguments: Option<&Map<String, Value>>,
) -> Verdict {
    if let Some(step_up) = missing_scopes(view, caller, tool) {
        return Verdict {
            decision: step_up,
            record: None,
        };
    }
    let Some(policies) = policies else {
        return Verdict {
            decision: Decision::Allow,
            record: None,
        };
    };
    let Some((facts, schema)) = facts(view, tool) else {
        // Not in this view: the pipeline's resolve phase refused it before asking.
        return Verdict::ALLOW;
    };
    let judgement = policies.decide(&policies.principal(caller), &facts, schema, arguments);
    for e in &judgement.errors {
        tracing::warn!(target: "portcullis::policy", tool, "a policy could not be evaluated for a call: {e}");
    }
    policies.verdict_of(judgement)
}

/// The tool as the policies see it, and its input schema (one lookup of each).
fn facts<'v>(view: &'v View, tool: &'v str) -> Option<(ToolFacts<'v>, &'v Map<String, Value>)> {
    let route = view.tool_routes.get(tool)?;
    let listed = view.tool(tool)?;
    let facts = ToolFacts {
        name: tool,
        target: &route.target,
        upstream_name: &route.upstream_name,
        annotations: listed.annotations.as_ref(),
    };
    Some((facts, &listed.input_schema))
}

/// Decides which tools `tools/list` shows one caller: every tool they may call now, after a
/// step-up, or with some input. In `log_only` mode every tool is shown.
#[derive(Debug)]
pub struct Lister<'a> {
    policies: Option<&'a Policies>,
    principal: Option<Principal>,
    view: &'a View,
}

impl<'a> Lister<'a> {
    pub fn new(policies: Option<&'a Policies>, view: &'a View, caller: Option<&Caller>) -> Self {
        let policies = policies.filter(|p| p.mode == PolicyMode::Enforce);
        Self {
            principal: policies.map(|p| p.principal(caller)),
            policies,
            view,
        }
    }

    /// Whether the prompts or resources listing shows `item`.
    pub fn shows_item(&self, item: Item<'_>) -> bool {
        let (Some(policies), Some(principal)) = (self.policies, &self.principal) else {
            return true;
        };
        policies
            .judge_item(principal, item)
            .is_none_or(|j| j.allowed)
    }

    pub fn shows(&self, tool: &str) -> bool {
        let (Some(policies), Some(principal)) = (self.policies, &self.principal) else {
            return true;
        };
        facts(self.view, tool).is_none_or(|(facts, _)| policies.may_call(principal, &facts))
    }
}

/// What `portcullis policy explain` prints: the decision for one call, decided as the gateway
/// decides it, with the place of each determining policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub decision: Decision,
    pub record: Option<Record>,
    /// `id (file:line)` of each determining policy.
    pub determining: Vec<String>,
}

impl Policies {
    /// Decide as [`tool_call`] does, and say where each determining policy is written.
    pub fn explain(
        &self,
        view: &View,
        caller: Option<&Caller>,
        tool: &str,
        arguments: Option<&Map<String, Value>>,
    ) -> Explanation {
        let verdict = tool_call(Some(self), view, caller, tool, arguments);
        let determining = verdict
            .record
            .iter()
            .flat_map(|r| &r.policies)
            .map(|id| format!("{id} ({})", self.place(&PolicyId::new(id))))
            .collect();
        Explanation {
            decision: verdict.decision,
            record: verdict.record,
            determining,
        }
    }
}

#[cfg(test)]
mod tests;
