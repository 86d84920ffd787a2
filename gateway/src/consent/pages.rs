//! The consent pages (interim rendering; replaced by the template-based pages).

use std::time::Duration;

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;

use crate::inbound::dev_idp::login::{escape, page_headers};

#[derive(Debug)]
pub struct ScopeLine<'a> {
    pub scope: &'a str,
    pub meaning: Option<&'a str>,
}
#[derive(Debug)]
pub struct ConsentView<'a> {
    pub agent: &'a str,
    pub user: &'a str,
    pub issuer: &'a str,
    pub target: &'a str,
    pub provider: &'a str,
    pub scopes: &'a [ScopeLine<'a>],
    pub action: &'a str,
    pub form_token: &'a str,
    pub expires_in: Duration,
}
#[derive(Debug)]
pub struct Problem<'a> {
    pub title: &'a str,
    pub what: &'a str,
    pub fix: &'a str,
}
#[derive(Debug)]
pub struct GrantRow<'a> {
    pub target: &'a str,
    pub agent: &'a str,
    pub scopes: &'a [String],
    pub since: &'a str,
    pub expires: &'a str,
}
#[derive(Debug)]
pub struct GrantsView<'a> {
    pub user: &'a str,
    pub issuer: &'a str,
    pub rows: &'a [GrantRow<'a>],
    pub action: &'a str,
    pub form_token: &'a str,
    pub notice: Option<&'a str>,
}

fn page(status: StatusCode, title: &str, outcome: &str, body: String) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head><body><main data-outcome=\"{outcome}\"><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    );
    (status, page_headers(), Html(html)).into_response()
}

pub fn consent(v: &ConsentView) -> Response {
    let scopes: String = v
        .scopes
        .iter()
        .map(|s| {
            format!(
                "<li>{} {}</li>",
                escape(s.scope),
                escape(s.meaning.unwrap_or(""))
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Allow access",
        "ask",
        format!(
            "<p>{} asks to act as you ({}) at {} through target {} ({})</p><ul>{scopes}</ul><form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"form_token\" value=\"{}\"><button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button><button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            escape(v.agent),
            escape(v.user),
            escape(v.provider),
            escape(v.target),
            escape(v.issuer),
            escape(v.action),
            escape(v.form_token)
        ),
    )
}
pub fn done(target: &str, provider: &str) -> Response {
    page(
        StatusCode::OK,
        "Done — return to your agent",
        "done",
        format!("<p>{} at {}</p>", escape(target), escape(provider)),
    )
}
pub fn denied(target: &str) -> Response {
    page(
        StatusCode::OK,
        "You denied access",
        "denied",
        escape(target),
    )
}
pub fn problem(status: StatusCode, p: &Problem) -> Response {
    page(
        status,
        p.title,
        "refused",
        format!("<p>{}</p><p>{}</p>", escape(p.what), escape(p.fix)),
    )
}
pub fn grants(v: &GrantsView) -> Response {
    let rows: String = v
        .rows
        .iter()
        .map(|r| {
            format!(
                "<li>{} {} {} {} {}<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"form_token\" value=\"{}\"><input type=\"hidden\" name=\"target\" value=\"{}\"><input type=\"hidden\" name=\"agent\" value=\"{}\"><button type=\"submit\" name=\"decision\" value=\"revoke\">Revoke</button></form></li>",
                escape(r.target),
                escape(r.agent),
                escape(&r.scopes.join(" ")),
                escape(r.since),
                escape(r.expires),
                escape(v.action),
                escape(v.form_token),
                escape(r.target),
                escape(r.agent)
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Your grants",
        "grants",
        format!(
            "<p>{} {}</p><p>{}</p><ul>{rows}</ul>",
            escape(v.user),
            escape(v.issuer),
            escape(v.notice.unwrap_or(""))
        ),
    )
}
pub fn scope_meaning(_provider: &str, _scope: &str) -> Option<&'static str> {
    None
}
