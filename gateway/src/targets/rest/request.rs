//! From a tool call's arguments to the HTTP request of its [`Operation`] (path templating with
//! each value escaped, query and header serialisation by OpenAPI `style`/`explode`, the JSON
//! body), and from the HTTP response to the tool's result. No I/O here.
//!
//! The serialisation rules are OpenAPI 3's (§ "Style Values"); no maintained crate implements
//! them for arbitrary JSON values, so this is small glue of our own.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use serde_json::{Map, Value};
use url::Url;

use crate::config::rest::{Location, Operation, Style};

/// Escaped in a path segment: everything but RFC 3986's unreserved characters, so a value
/// can never add a segment (`/`), a query (`?`) or a fragment (`#`), nor climb (`..` is
/// two unreserved dots inside one segment, which servers do not resolve).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How much of an error response's body the caller is shown.
const EXCERPT_CHARS: usize = 1_000;

/// One request, ready for its credential.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub method: String,
    pub url: Url,
    /// The operation's fixed headers and header parameters (not the credential's).
    pub headers: Vec<(String, String)>,
    /// `(content type, bytes)` of a JSON body.
    pub body: Option<(String, Vec<u8>)>,
}

/// The arguments do not fit the operation: the caller's to fix, so it is a tool error the
/// model can read and correct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadArguments(pub String);

/// Build the request of `op` at `base` from the call's `arguments`.
pub fn build(
    op: &Operation,
    base: &Url,
    arguments: Option<&JsonObject>,
) -> Result<Built, BadArguments> {
    let empty = Map::new();
    let args = arguments.unwrap_or(&empty);
    let arg = |name: &str| args.get(name).filter(|v| !v.is_null());
    let mut path = op.path.clone();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut headers = op.headers.clone();
    let mut taken: Vec<&str> = Vec::new();
    for p in &op.params {
        taken.push(&p.arg);
        let Some(value) = arg(&p.arg) else {
            if p.required {
                return Err(BadArguments(format!(
                    "argument `{}` is required (the {} parameter `{}`)",
                    p.arg,
                    p.location.as_str(),
                    p.name
                )));
            }
            if p.location == Location::Path {
                // An optional path parameter cannot be left out of a path: refuse too.
                return Err(BadArguments(format!("argument `{}` is required", p.arg)));
            }
            continue;
        };
        match p.location {
            Location::Path => {
                let text = simple(value, p.explode);
                let escaped = utf8_percent_encode(&text, SEGMENT).to_string();
                path = path.replace(&format!("{{{}}}", p.name), &escaped);
            }
            Location::Query => query.extend(query_pairs(&p.name, value, p.style, p.explode)),
            Location::Header => {
                let text = simple(value, p.explode);
                if http::HeaderValue::from_str(&text).is_err() {
                    return Err(BadArguments(format!(
                        "argument `{}` cannot be sent in header `{}`: it has line breaks or other characters a header may not carry",
                        p.arg, p.name
                    )));
                }
                headers.push((p.name.clone(), text));
            }
        }
    }
    let mut url = Url::parse(&format!("{}{path}", base.as_str().trim_end_matches('/')))
        .map_err(|e| BadArguments(format!("the arguments make an invalid URL: {e}")))?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(&query);
    }
    let body = match &op.body {
        None => None,
        Some(b) => {
            let value = match &b.arg {
                Some(name) => arg(name).cloned(),
                // The arguments no parameter took, as one object.
                None => Some(Value::Object(
                    args.iter()
                        .filter(|(k, _)| !taken.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )),
            };
            match value {
                Some(v) => Some((b.content_type.clone(), v.to_string().into_bytes())),
                None if b.required => {
                    return Err(BadArguments(format!(
                        "argument `{}` (the request body) is required",
                        b.arg.as_deref().unwrap_or("body")
                    )));
                }
                None => None,
            }
        }
    };
    Ok(Built {
        method: op.method.clone(),
        url,
        headers,
        body,
    })
}

/// A scalar as text; `null` never reaches here.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        // Numbers, booleans; a nested array or object is sent as its JSON.
        other => other.to_string(),
    }
}

/// `simple` style (path and header): `a,b,c`; an object `k,v,k2,v2`, exploded `k=v,k2=v2`.
fn simple(v: &Value, explode: bool) -> String {
    match v {
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| {
                if explode {
                    format!("{k}={}", scalar(v))
                } else {
                    format!("{k},{}", scalar(v))
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        other => scalar(other),
    }
}

/// The query pairs of one parameter by its style. The pairs are form-encoded when added to
/// the URL, so a value cannot add a parameter of its own.
fn query_pairs(name: &str, v: &Value, style: Style, explode: bool) -> Vec<(String, String)> {
    let one = |value: String| vec![(name.to_string(), value)];
    match (v, style) {
        (Value::Array(items), Style::SpaceDelimited) => {
            one(items.iter().map(scalar).collect::<Vec<_>>().join(" "))
        }
        (Value::Array(items), Style::PipeDelimited) => {
            one(items.iter().map(scalar).collect::<Vec<_>>().join("|"))
        }
        (Value::Array(items), _) if explode => items
            .iter()
            .map(|i| (name.to_string(), scalar(i)))
            .collect(),
        (Value::Array(items), _) => one(items.iter().map(scalar).collect::<Vec<_>>().join(",")),
        (Value::Object(fields), Style::DeepObject) => fields
            .iter()
            .map(|(k, v)| (format!("{name}[{k}]"), scalar(v)))
            .collect(),
        (Value::Object(fields), _) if explode => {
            fields.iter().map(|(k, v)| (k.clone(), scalar(v))).collect()
        }
        (Value::Object(_), _) => one(simple(v, false)),
        (other, _) => one(scalar(other)),
    }
}

/// What the API answered.
#[derive(Debug)]
pub struct Answer<'a> {
    pub status: http::StatusCode,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// The tool's result for an answer: a 2xx JSON answer is `structuredContent` (an object as
/// it is, anything else as `{"result": …}`) plus its text; other 2xx answers are text (an
/// image, an image block); a non-2xx answer is an error result with the status and an
/// excerpt of the body. `what` names the request (`GET /pets/7`) for the error text.
pub fn result(answer: &Answer<'_>, what: &str) -> CallToolResult {
    let kind = answer
        .content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !answer.status.is_success() {
        let text = String::from_utf8_lossy(answer.body);
        let text = text.trim();
        let mut message = format!("{what} answered HTTP {}", answer.status);
        if !text.is_empty() {
            let cut: String = text.chars().take(EXCERPT_CHARS).collect();
            let more = if cut.len() < text.len() { "…" } else { "" };
            message.push_str(&format!(": {cut}{more}"));
        }
        return CallToolResult::error(vec![ContentBlock::text(message)]);
    }
    if answer.body.is_empty() {
        return CallToolResult::success(vec![ContentBlock::text(format!(
            "{what} answered HTTP {} with no content",
            answer.status
        ))]);
    }
    let json_type = kind == "application/json" || kind.ends_with("+json");
    if (json_type || kind.is_empty())
        && let Ok(value) = serde_json::from_slice::<Value>(answer.body)
    {
        return structured(value);
    }
    if let Some(image) = kind.strip_prefix("image/").map(|_| kind.as_str()) {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(answer.body);
        return CallToolResult::success(vec![ContentBlock::image(data, image)]);
    }
    match std::str::from_utf8(answer.body) {
        Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
        Err(_) => CallToolResult::success(vec![ContentBlock::text(format!(
            "{what} answered {} bytes of {}",
            answer.body.len(),
            if kind.is_empty() {
                "binary data"
            } else {
                &kind
            }
        ))]),
    }
}

/// A JSON value as a tool result: `structuredContent` must be an object for 2025-11-25
/// clients, so other values are wrapped as `{"result": …}`.
pub fn structured(value: Value) -> CallToolResult {
    let object = match value {
        Value::Object(_) => value,
        other => Value::Object(Map::from_iter([("result".to_string(), other)])),
    };
    CallToolResult::structured(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rest::{Body, Param};
    use serde_json::json;

    fn op(method: &str, path: &str, params: Vec<Param>, body: Option<Body>) -> Operation {
        Operation {
            tool: "t".into(),
            operation_id: None,
            description: None,
            method: method.into(),
            path: path.into(),
            params,
            headers: vec![("x-fixed".into(), "1".into())],
            body,
            input_schema: std::sync::Arc::new(Map::new()),
            scopes: vec![],
            tags: vec![],
        }
    }

    fn param(name: &str, location: Location, style: Style, explode: bool) -> Param {
        Param {
            name: name.into(),
            arg: name.into(),
            location,
            required: location == Location::Path,
            style,
            explode,
        }
    }

    fn args(v: Value) -> JsonObject {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn path_values_are_escaped_so_they_stay_one_segment() {
        let o = op(
            "GET",
            "/users/{user}/files/{name}",
            vec![
                param("user", Location::Path, Style::Simple, false),
                param("name", Location::Path, Style::Simple, false),
            ],
            None,
        );
        let base = Url::parse("http://api.test/v1/").unwrap();
        let b = build(
            &o,
            &base,
            Some(&args(json!({"user": "a/../b?x=1#f", "name": "r é s.txt"}))),
        )
        .unwrap();
        assert_eq!(
            b.url.as_str(),
            "http://api.test/v1/users/a%2F..%2Fb%3Fx%3D1%23f/files/r%20%C3%A9%20s.txt"
        );
        assert_eq!(b.url.query(), None);
        let missing = build(&o, &base, Some(&args(json!({"user": "a"})))).unwrap_err();
        assert!(missing.0.contains("`name` is required"), "{missing}");
    }

    #[test]
    fn query_parameters_follow_their_style() {
        let o = op(
            "GET",
            "/search",
            vec![
                param("tags", Location::Query, Style::Form, true),
                param("ids", Location::Query, Style::Form, false),
                param("words", Location::Query, Style::SpaceDelimited, false),
                param("alts", Location::Query, Style::PipeDelimited, false),
                param("filter", Location::Query, Style::DeepObject, true),
                param("q", Location::Query, Style::Form, true),
                param("absent", Location::Query, Style::Form, true),
            ],
            None,
        );
        let b = build(
            &o,
            &Url::parse("http://api.test").unwrap(),
            Some(&args(json!({
                "tags": ["a", "b&c"], "ids": [1, 2], "words": ["x", "y"], "alts": ["p", "q"],
                "filter": {"color": "red", "size": 2}, "q": "x=1&admin=true", "absent": null
            }))),
        )
        .unwrap();
        let pairs: Vec<(String, String)> = b.url.query_pairs().into_owned().collect();
        let want: Vec<(String, String)> = [
            ("tags", "a"),
            ("tags", "b&c"),
            ("ids", "1,2"),
            ("words", "x y"),
            ("alts", "p|q"),
            ("filter[color]", "red"),
            ("filter[size]", "2"),
            ("q", "x=1&admin=true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(pairs, want);
    }

    #[test]
    fn headers_and_bodies_are_built_and_bad_header_values_refused() {
        let o = op(
            "POST",
            "/items",
            vec![param("X-Trace", Location::Header, Style::Simple, false)],
            Some(Body {
                arg: Some("body".into()),
                required: true,
                content_type: "application/json".into(),
            }),
        );
        let base = Url::parse("http://api.test").unwrap();
        let b = build(
            &o,
            &base,
            Some(&args(json!({"X-Trace": "t-1", "body": {"name": "x"}}))),
        )
        .unwrap();
        assert_eq!(
            b.headers,
            [
                ("x-fixed".into(), "1".into()),
                ("X-Trace".into(), "t-1".into())
            ]
        );
        assert_eq!(
            b.body,
            Some(("application/json".into(), br#"{"name":"x"}"#.to_vec()))
        );
        assert!(build(&o, &base, Some(&args(json!({"X-Trace": "t"})))).is_err());
        assert!(
            build(
                &o,
                &base,
                Some(&args(json!({"X-Trace": "a\r\nX-Admin: 1", "body": {}})))
            )
            .is_err()
        );
        // An [http] tool's body: the arguments no parameter takes.
        let mut rest = o.clone();
        rest.body = Some(Body {
            arg: None,
            required: false,
            content_type: "application/json".into(),
        });
        let b = build(
            &rest,
            &base,
            Some(&args(json!({"X-Trace": "t", "title": "x", "n": 2}))),
        )
        .unwrap();
        assert_eq!(b.body.unwrap().1, br#"{"title":"x","n":2}"#.to_vec());
    }

    #[test]
    fn answers_become_results() {
        let ok = |ct: Option<&str>, body: &[u8]| {
            result(
                &Answer {
                    status: http::StatusCode::OK,
                    content_type: ct,
                    body,
                },
                "GET /x",
            )
        };
        let r = ok(Some("application/json; charset=utf-8"), br#"{"a":1}"#);
        assert_eq!(r.structured_content, Some(json!({"a": 1})));
        assert_eq!(r.is_error, Some(false));
        let r = ok(Some("application/problem+json"), b"[1,2]");
        assert_eq!(r.structured_content, Some(json!({"result": [1, 2]})));
        let r = ok(Some("text/plain"), b"hello");
        assert_eq!(r.structured_content, None);
        assert_eq!(r.content[0].as_text().unwrap().text, "hello");
        let r = ok(Some("image/png"), b"\x89PNG");
        assert!(r.content[0].as_image().is_some());
        let r = result(
            &Answer {
                status: http::StatusCode::NOT_FOUND,
                content_type: Some("application/json"),
                body: "x".repeat(5_000).as_bytes(),
            },
            "GET /pets/9",
        );
        assert_eq!(r.is_error, Some(true));
        let text = &r.content[0].as_text().unwrap().text;
        assert!(
            text.starts_with("GET /pets/9 answered HTTP 404 Not Found: xxx"),
            "{text}"
        );
        assert!(text.len() < 1_100 && text.ends_with('…'), "{}", text.len());
    }
}
