//! The demo provider's sign-in and approval page: name any user (no password), then approve
//! or deny what the client asks for. The form token ties the page to its pending request
//! (single-use, short-lived; see `inbound::dev_idp::login`, whose form handling this reuses).

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;

use crate::inbound::dev_idp::login::{MAX_USER_CHARS, SUGGESTED_USER, escape, page_headers};

/// Where the page posts to.
pub const ACTION: &str = "/authorize";

/// What the page shows. Every string is escaped.
#[derive(Debug)]
pub struct Approval<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    pub form_token: &'a str,
}

pub fn render(a: &Approval) -> Response {
    let scopes: String = a
        .scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme Tasks — sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
.warn{{background:#fff3cd;border:2px solid #b58100;padding:.75rem 1rem;border-radius:6px}}
input[type=text]{{font-size:1.1rem;padding:.3rem;width:100%;box-sizing:border-box}}
button{{font-size:1rem;padding:.4rem 1rem;margin:.75rem .5rem 0 0}}
</style></head>
<body>
<h1>Acme Tasks — sign in as</h1>
<p class="warn"><strong>Demo only.</strong> Acme Tasks is the demo provider built into
Portcullis (<code>portcullis demo-provider</code>). It asks for no password: any user name is
accepted.</p>
<p><strong>{client}</strong> asks to use your Acme Tasks with these permissions:</p>
<ul>{scopes}</ul>
<p>You will be sent back to <code>{redirect}</code>.</p>
<form method="post" action="{action}">
<input type="hidden" name="form_token" value="{token}">
<label for="user">Sign in as user</label>
<input type="text" id="user" name="user" value="{user}" required maxlength="{max}" autofocus>
<button type="submit" name="decision" value="allow">Approve</button>
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
</form>
<p><small>This form works once and expires after a few minutes.</small></p>
</body></html>
"#,
        client = escape(a.client_id),
        redirect = escape(a.redirect_uri),
        action = ACTION,
        token = escape(a.form_token),
        user = SUGGESTED_USER,
        max = MAX_USER_CHARS,
    );
    (StatusCode::OK, page_headers(), Html(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn everything_shown_is_escaped() {
        let scopes = vec!["<b>x</b>".to_string()];
        let page = render(&Approval {
            client_id: "<script>",
            redirect_uri: "http://a/?x=\"y\"",
            scopes: &scopes,
            form_token: "t\"oken",
        });
        let body = axum::body::to_bytes(page.into_body(), 1 << 20)
            .await
            .unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<b>x"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;") && html.contains("t&quot;oken"));
    }
}
