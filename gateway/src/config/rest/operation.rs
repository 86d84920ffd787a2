//! The HTTP operations behind the tools of the per-call REST kinds: an `[openapi]` target's
//! come from its specification (`openapi.rs`), an `[http]` target's are declared in its file
//! (`mod.rs`).
//! One [`Operation`] is everything a call needs to build its request from the caller's
//! arguments, and everything the listing needs to describe the tool.

use std::sync::Arc;

use serde_json::{Map, Value};

/// One tool of a REST target: an HTTP operation and how the tool's arguments fill it.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The tool's name at the target (before the target's prefix): the `operationId` made
    /// valid for MCP (letters, digits, `_`, `-`, `.`; at most 128), else `method_path`.
    pub tool: String,
    /// The `operationId` as written in the specification, if any (filters name it).
    pub operation_id: Option<String>,
    /// Summary and description, joined by a blank line when both are there.
    pub description: Option<String>,
    /// Upper case: `GET`, `POST`, …
    pub method: String,
    /// The path template, appended to the base URL: `/pets/{petId}`.
    pub path: String,
    pub params: Vec<Param>,
    /// Headers sent with every request of this operation (an `[http]` tool's fixed ones).
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
    /// The tool's input schema: an object whose properties are the parameters' and the
    /// body's arguments, `$ref`s resolved (recursive schemas cut at a bounded depth).
    /// Shared with the listed tool (an `Arc`, as rmcp's `Tool` holds it): one copy per tool.
    pub input_schema: Arc<Map<String, Value>>,
    /// OAuth scopes the operation's `security` requirement names (empty: none named).
    pub scopes: Vec<String>,
    pub tags: Vec<String>,
}

impl Operation {
    /// `readOnlyHint` for GET and HEAD.
    pub fn read_only(&self) -> bool {
        matches!(self.method.as_str(), "GET" | "HEAD")
    }

    /// `destructiveHint` for DELETE.
    pub fn destructive(&self) -> bool {
        self.method == "DELETE"
    }
}

/// Where a parameter goes in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Path,
    Query,
    Header,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Query => "query",
            Self::Header => "header",
        }
    }
}

/// How an array or object value is written (OpenAPI `style`; the defaults are `simple` for
/// path and header, `form` for query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Simple,
    Form,
    SpaceDelimited,
    PipeDelimited,
    DeepObject,
}

/// One parameter of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The name in the request (path placeholder, query key, header name).
    pub name: String,
    /// The property of the tool's arguments that holds its value: the name, unless two
    /// parameters in different places share it (then `path_id`, `query_id`, …).
    pub arg: String,
    pub location: Location,
    pub required: bool,
    pub style: Style,
    /// OpenAPI `explode` (default true for `form`, false otherwise).
    pub explode: bool,
}

/// The JSON request body of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    /// The property of the tool's arguments that holds the body: `body`, or `request_body`
    /// when a parameter is called `body`. `None` (an `[http]` tool): the arguments no
    /// parameter takes, as one object.
    pub arg: Option<String>,
    pub required: bool,
    /// `application/json`, or a `+json` media type the specification names.
    pub content_type: String,
}
