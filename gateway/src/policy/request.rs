//! One authorization question in Cedar's terms: the caller as a `User` entity (attributes
//! from the token's claims), the agent, the tool in its target, and the context (scopes, the
//! time, the arguments typed by the tool's input schema).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde_json::{Map, Value};

use super::schema::{MAX_DEPTH, json_type};
use crate::identity::Caller;

fn type_name(name: &str) -> EntityTypeName {
    EntityTypeName::from_str(name).expect("a valid Cedar type name")
}

static USER: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("User"));
static AGENT: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Agent"));
static TARGET: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Target"));
static TOOL: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Tool"));
static ACTION: LazyLock<EntityTypeName> = LazyLock::new(|| type_name("Action"));
static CALL_TOOL_UID: LazyLock<EntityUid> = LazyLock::new(|| uid(&ACTION, super::CALL_TOOL));

fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

/// The user and agent of one caller, built once and asked about many tools.
#[derive(Debug, Clone)]
pub struct Principal {
    user: Entity,
    agent: Entity,
    scopes: RestrictedExpression,
    /// Everything the user and agent entities are made of, to recognise the same caller
    /// (Cedar's `Entity` compares by uid only).
    key: PrincipalKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PrincipalKey {
    user: String,
    agent: String,
    /// The attributes as their JSON texts, in attribute order.
    attributes: Vec<(String, String)>,
}

/// Who is named when inbound authentication is off: there is no token to name anyone.
pub const ANONYMOUS: &str = "anonymous";

impl Principal {
    pub fn new(caller: Option<&Caller>, claims: &BTreeMap<String, String>) -> Self {
        let Some(caller) = caller else {
            let user = Entity::new_no_attrs(uid(&USER, ANONYMOUS), HashSet::new());
            return Self {
                user,
                agent: Entity::new_no_attrs(uid(&AGENT, ANONYMOUS), HashSet::new()),
                scopes: RestrictedExpression::new_set([]),
                key: PrincipalKey {
                    user: ANONYMOUS.into(),
                    agent: ANONYMOUS.into(),
                    attributes: Vec::new(),
                },
            };
        };
        let mut key = vec![
            ("issuer".to_string(), caller.issuer.clone()),
            // Debug renderings: quoted and escaped, so no two lists read the same.
            ("groups".to_string(), format!("{:?}", caller.groups)),
            ("tenant".to_string(), format!("{:?}", caller.tenant)),
            (
                "email".to_string(),
                caller
                    .claims
                    .get("email")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            ),
        ];
        let mut attrs = HashMap::from([
            (
                "issuer".to_string(),
                RestrictedExpression::new_string(caller.issuer.clone()),
            ),
            (
                "groups".to_string(),
                RestrictedExpression::new_set(
                    caller
                        .groups
                        .iter()
                        .map(|g| RestrictedExpression::new_string(g.clone())),
                ),
            ),
        ]);
        if let Some(tenant) = &caller.tenant {
            attrs.insert(
                "tenant".into(),
                RestrictedExpression::new_string(tenant.clone()),
            );
        }
        if let Some(Value::String(email)) = caller.claims.get("email") {
            attrs.insert(
                "email".into(),
                RestrictedExpression::new_string(email.clone()),
            );
        }
        for (attribute, claim) in claims {
            if let Some(value) = caller.claims.get(claim).and_then(|v| untyped(v, 0)) {
                attrs.insert(attribute.clone(), value);
                if let Some(v) = caller.claims.get(claim) {
                    key.push((attribute.clone(), v.to_string()));
                }
            }
        }
        let user = Entity::new(uid(&USER, &caller.user), attrs, HashSet::new())
            .unwrap_or_else(|_| Entity::new_no_attrs(uid(&USER, &caller.user), HashSet::new()));
        let agent = caller.agent.as_deref().unwrap_or(ANONYMOUS);
        Self {
            user,
            agent: Entity::new_no_attrs(uid(&AGENT, agent), HashSet::new()),
            key: PrincipalKey {
                user: caller.user.clone(),
                agent: agent.to_string(),
                attributes: key,
            },
            scopes: RestrictedExpression::new_set(
                caller
                    .scopes
                    .iter()
                    .map(|s| RestrictedExpression::new_string(s.clone())),
            ),
        }
    }
}

/// A tool as Cedar sees it.
pub struct ToolFacts<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub upstream_name: &'a str,
    pub annotations: Option<&'a rmcp::model::ToolAnnotations>,
}

/// The arguments could not be given to Cedar as the tool's input schema types them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistyped(pub String);

/// The entities of one tool (its action, itself, its target), built once per tool and policy
/// set and reused by every question about it.
#[derive(Debug)]
pub struct ToolEntities {
    action: Entity,
    tool: Entity,
    target: Entity,
}

impl ToolEntities {
    pub fn new(tool: &ToolFacts<'_>) -> Self {
        let target = uid(&TARGET, tool.target);
        let hints = tool.annotations;
        let hint = |value: Option<bool>, default: bool| {
            RestrictedExpression::new_bool(value.unwrap_or(default))
        };
        let entity = Entity::new(
            uid(&TOOL, tool.name),
            HashMap::from([
                (
                    "name".into(),
                    RestrictedExpression::new_string(tool.upstream_name.into()),
                ),
                (
                    "target".into(),
                    RestrictedExpression::new_string(tool.target.into()),
                ),
                // MCP's defaults for a tool that says nothing.
                (
                    "read_only".into(),
                    hint(hints.and_then(|h| h.read_only_hint), false),
                ),
                (
                    "destructive".into(),
                    hint(hints.and_then(|h| h.destructive_hint), true),
                ),
                (
                    "idempotent".into(),
                    hint(hints.and_then(|h| h.idempotent_hint), false),
                ),
                (
                    "open_world".into(),
                    hint(hints.and_then(|h| h.open_world_hint), true),
                ),
            ]),
            HashSet::from([target.clone()]),
        )
        .expect("tool attributes are plain values");
        Self {
            // Without a schema at evaluation time, the action's membership of `CallTool` is
            // an entity of its own.
            action: Entity::new_no_attrs(
                uid(&ACTION, tool.name),
                HashSet::from([CALL_TOOL_UID.clone()]),
            ),
            tool: entity,
            target: Entity::new_no_attrs(target, HashSet::new()),
        }
    }
}

/// The request and entities for `principal` getting a prompt or reading a resource.
pub fn item_question(principal: &Principal, item: super::Item<'_>) -> (Request, Entities) {
    let (kind, id, target, attribute, action) = match item {
        super::Item::Prompt { name, target } => ("Prompt", name, target, "name", super::GET_PROMPT),
        super::Item::Resource { uri, target } => {
            ("Resource", uri, target, "uri", super::READ_RESOURCE)
        }
    };
    let target_uid = uid(&TARGET, target);
    let entity = Entity::new(
        uid(&type_name(kind), id),
        HashMap::from([
            (
                attribute.to_string(),
                RestrictedExpression::new_string(id.into()),
            ),
            (
                "target".into(),
                RestrictedExpression::new_string(target.into()),
            ),
        ]),
        HashSet::from([target_uid.clone()]),
    )
    .expect("plain attributes");
    let context = Context::from_pairs([
        (
            "agent".to_string(),
            RestrictedExpression::new_entity_uid(principal.agent.uid()),
        ),
        ("scopes".to_string(), principal.scopes.clone()),
        ("now".to_string(), now()),
    ])
    .expect("distinct context keys");
    let request = Request::new(
        principal.user.uid(),
        uid(&ACTION, action),
        entity.uid(),
        context,
        None,
    )
    .expect("no schema to disagree with");
    let entities = Entities::from_entities(
        [
            principal.user.clone(),
            principal.agent.clone(),
            Entity::new_no_attrs(target_uid, HashSet::new()),
            entity,
        ],
        None,
    )
    .expect("four distinct entities");
    (request, entities)
}

/// The time as Cedar's `datetime`, to the second. Building one parses its text (and Cedar's
/// extension name) anew, which cost about a sixth of a decision: each thread keeps this
/// second's.
fn now() -> RestrictedExpression {
    thread_local! {
        static NOW: std::cell::RefCell<Option<(u64, RestrictedExpression)>> =
            const { std::cell::RefCell::new(None) };
    }
    let time = std::time::SystemTime::now();
    let second = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|cached| match cached {
        Some((at, value)) if *at == second => value.clone(),
        _ => {
            let value = RestrictedExpression::new_datetime(
                humantime::format_rfc3339_seconds(time).to_string(),
            );
            *cached = Some((second, value.clone()));
            value
        }
    })
}

/// The request and entities for `principal` calling the tool of `entities` with `input`.
pub fn question(
    principal: &Principal,
    entities: &ToolEntities,
    input: RestrictedExpression,
) -> (Request, Entities) {
    (
        request(principal, entities, input),
        principal_entities(principal, entities),
    )
}

/// The request for `principal` calling the tool of `entities` with `input`.
pub fn request(
    principal: &Principal,
    entities: &ToolEntities,
    input: RestrictedExpression,
) -> Request {
    let context = Context::from_pairs([
        (
            "agent".to_string(),
            RestrictedExpression::new_entity_uid(principal.agent.uid()),
        ),
        ("scopes".to_string(), principal.scopes.clone()),
        ("now".to_string(), now()),
        ("input".to_string(), input),
    ])
    .expect("distinct context keys");
    Request::new(
        principal.user.uid(),
        entities.action.uid(),
        entities.tool.uid(),
        context,
        None,
    )
    .expect("no schema to disagree with")
}

/// The entities of `principal` calling the tool of `entities`. Cedar computes their
/// hierarchy's closure each time it is given entities, most of a decision's cost: a caller's
/// repeated calls reuse them through [`KnownCallers`].
pub fn principal_entities(principal: &Principal, entities: &ToolEntities) -> Entities {
    Entities::from_entities(
        [
            entities.action.clone(),
            principal.user.clone(),
            principal.agent.clone(),
            entities.target.clone(),
            entities.tool.clone(),
        ],
        None,
    )
    .expect("five distinct entities")
}

/// The entities of one tool's recent callers, keyed by everything their user and agent
/// entities are made of, so a caller whose claims changed gets new ones.
#[derive(Debug, Default)]
pub struct KnownCallers {
    known: parking_lot::Mutex<HashMap<PrincipalKey, Entities>>,
}

/// How many callers of one tool keep their entities; past that the memory starts over.
const KNOWN_CALLERS: usize = 64;

impl KnownCallers {
    pub fn entities(&self, principal: &Principal, tool: &ToolEntities) -> Entities {
        if let Some(known) = self.known.lock().get(&principal.key) {
            return known.clone();
        }
        let entities = principal_entities(principal, tool);
        let mut known = self.known.lock();
        if known.len() >= KNOWN_CALLERS {
            known.clear();
        }
        known.insert(principal.key.clone(), entities.clone());
        entities
    }
}

/// The arguments as the `input` record, typed by the tool's input schema: what the schema
/// types is given (a value that does not fit its type is refused), what it does not is left
/// out (no policy can name it: the check refuses such a policy).
pub fn input(
    schema: &Map<String, Value>,
    arguments: Option<&Map<String, Value>>,
) -> Result<RestrictedExpression, Mistyped> {
    let empty = Map::new();
    record(schema, arguments.unwrap_or(&empty), "", 0)
}

fn record(
    schema: &Map<String, Value>,
    values: &Map<String, Value>,
    path: &str,
    depth: usize,
) -> Result<RestrictedExpression, Mistyped> {
    let mut fields = Vec::new();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let Some(value) = values.get(name).filter(|v| !v.is_null()) else {
                continue;
            };
            let here = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if let Some(v) = typed(property, value, &here, depth + 1)? {
                fields.push((name.clone(), v));
            }
        }
    }
    RestrictedExpression::new_record(fields).map_err(|e| Mistyped(format!("`{path}`: {e}")))
}

/// `Ok(None)`: the schema types nothing Cedar can hold here.
fn typed(
    schema: &Value,
    value: &Value,
    path: &str,
    depth: usize,
) -> Result<Option<RestrictedExpression>, Mistyped> {
    if depth > MAX_DEPTH {
        return Ok(None);
    }
    let Some((kind, _)) = json_type(schema) else {
        return Ok(None);
    };
    let wrong = || {
        let what = if kind == "number" {
            "a number of at most four decimal places (what policies compare)".to_string()
        } else {
            article(kind)
        };
        Mistyped(format!(
            "argument `{path}` is not {what} as the tool's input schema says"
        ))
    };
    Ok(Some(match kind {
        "string" => RestrictedExpression::new_string(value.as_str().ok_or_else(wrong)?.into()),
        "boolean" => RestrictedExpression::new_bool(value.as_bool().ok_or_else(wrong)?),
        "integer" => RestrictedExpression::new_long(integer(value).ok_or_else(wrong)?),
        "number" => RestrictedExpression::new_decimal(decimal(value).ok_or_else(wrong)?),
        "array" => {
            let Some(items) = schema.get("items") else {
                return Ok(None);
            };
            let mut set = Vec::new();
            for (i, item) in value.as_array().ok_or_else(wrong)?.iter().enumerate() {
                match typed(items, item, &format!("{path}[{i}]"), depth + 1)? {
                    Some(v) => set.push(v),
                    None => return Ok(None),
                }
            }
            RestrictedExpression::new_set(set)
        }
        "object" => match schema.as_object() {
            Some(object) if object.contains_key("properties") => {
                record(object, value.as_object().ok_or_else(wrong)?, path, depth)?
            }
            _ => return Ok(None),
        },
        _ => return Ok(None),
    }))
}

fn article(kind: &str) -> String {
    match kind {
        "integer" | "array" | "object" => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let f = value.as_f64()?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

/// Cedar's `decimal`: at most four places, about ±9.2e14. A number with more places is not
/// rounded (1000.00004 would become 1000.0000 and pass `greaterThan(decimal("1000.0"))`): it is
/// refused, as one the policies cannot compare exactly.
fn decimal(value: &Value) -> Option<String> {
    let Value::Number(n) = value else {
        return None;
    };
    let f = n.as_f64()?;
    if !f.is_finite() || f.abs() >= 9.2e14 {
        return None;
    }
    let text = n.to_string();
    if text.contains(['e', 'E']) {
        // Exponent notation: exact only when it is a whole number.
        return (f.fract() == 0.0).then(|| format!("{f:.1}"));
    }
    match text.split_once('.') {
        None => Some(format!("{text}.0")),
        Some((_, places)) if places.len() <= 4 => Some(text),
        Some(_) => None,
    }
}

/// A claim as a Cedar value, without a schema to type it: strings, booleans, integers, sets
/// and records of them. A number with a fraction or a `null` is left out.
fn untyped(value: &Value, depth: usize) -> Option<RestrictedExpression> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match value {
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => RestrictedExpression::new_long(n.as_i64()?),
        Value::Array(items) => {
            RestrictedExpression::new_set(items.iter().filter_map(|v| untyped(v, depth + 1)))
        }
        Value::Object(fields) => RestrictedExpression::new_record(
            fields
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), untyped(v, depth + 1)?))),
        )
        .ok()?,
        Value::Null => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn arguments_are_typed_by_the_schema_and_a_mistyped_one_is_refused() {
        let schema = obj(json!({"type": "object", "properties": {
            "n": {"type": "integer"}, "x": {"type": "number"}, "s": {"type": "string"},
            "free": {}
        }}));
        assert!(
            input(
                &schema,
                Some(&obj(json!({"n": 3, "x": 1.5, "s": "a", "free": [1]})))
            )
            .is_ok()
        );
        assert_eq!(
            input(&schema, Some(&obj(json!({"n": "3"})))).unwrap_err(),
            Mistyped("argument `n` is not an integer as the tool's input schema says".into())
        );
        // Never rounded past a limit: more than four places is refused.
        assert!(input(&schema, Some(&obj(json!({"x": 1000.0001})))).is_ok());
        assert!(input(&schema, Some(&obj(json!({"x": 1000.00004})))).is_err());
        assert!(input(&schema, Some(&obj(json!({"x": 1e3})))).is_ok());
        assert_eq!(decimal(&json!(7)), Some("7.0".into()));
        assert_eq!(decimal(&json!(-2.5)), Some("-2.5".into()));
    }
}
