//! Value types whose parse errors explain themselves: socket addresses and URLs. Their
//! messages end in "; fix: …", which the error report splits into the message and the fix.

use std::net::{IpAddr, SocketAddr};

use serde::de::{Deserialize, Deserializer, Error};
use url::Url;

/// `listen = "127.0.0.1:8787"`.
pub fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen(&s).map(Some).map_err(D::Error::custom)
}

pub fn url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let s = String::deserialize(d)?;
    parse_url(&s).map_err(D::Error::custom)
}

pub fn opt_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    url(d).map(Some)
}

/// An IP address and port. Host names are refused rather than resolved: the address bound
/// must not depend on what DNS (or /etc/hosts) says today.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = |h: &str| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
    };
    if ip(s).is_ok() {
        let shown = if s.contains(':') && !s.starts_with('[') {
            format!("[{s}]:8787")
        } else {
            format!("{s}:8787")
        };
        return Err(format!(
            "`{s}` has no port; fix: write the address with a port, e.g. \"{shown}\""
        ));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p),
        _ => {
            return Err(format!(
                "`{s}` is not an IP address and port; fix: write e.g. \"127.0.0.1:8787\" (this machine only) or \"0.0.0.0:8787\" (every interface)"
            ));
        }
    };
    let suggestion = match host {
        "localhost" | "" => {
            format!("use \"127.0.0.1:{port}\" (or \"[::1]:{port}\") for this machine")
        }
        _ => format!(
            "use the IP address of the interface to listen on, e.g. \"127.0.0.1:{port}\" (this machine only) or \"0.0.0.0:{port}\" (every interface)"
        ),
    };
    Err(format!(
        "`listen` takes an IP address and a port, but `{host}` is a host name (host names are not resolved); fix: {suggestion}"
    ))
}

/// An absolute URL. The usual slip, a missing `http://`, gets the corrected URL as its fix.
pub fn parse_url(s: &str) -> Result<Url, String> {
    match Url::parse(s) {
        Ok(u) => Ok(u),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let rest = s.trim_start_matches('/');
            let (first, other) = schemes_for(rest);
            Err(format!(
                "`{s}` is not a full URL: it does not start with a scheme such as http://; fix: write \"{first}{rest}\" (or {other})"
            ))
        }
        Err(e) => Err(format!(
            "`{s}` is not a valid URL: {e}; fix: write a full URL such as \"https://example.com/mcp\""
        )),
    }
}

/// `localhost:8080/mcp` parses as a URL whose scheme is `localhost`: when a URL has no
/// `//` after its scheme, it was most likely meant as `http://` + the text. Returns the
/// URL to write instead, ready for a fix line.
pub fn missing_http(u: &Url) -> Option<String> {
    (u.cannot_be_a_base() && !matches!(u.scheme(), "http" | "https")).then(|| {
        let (first, other) = schemes_for(u.as_str());
        format!("\"{first}{}\" (or {other})", u.as_str())
    })
}

/// The scheme to suggest first for a URL written without one: plain http on this machine
/// (where upstreams and test servers run without TLS), https anywhere else.
fn schemes_for(rest: &str) -> (&'static str, &'static str) {
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    if super::is_loopback_host(host) {
        ("http://", "https://")
    } else {
        ("https://", "http://")
    }
}

/// Whether secrets may travel to `url`: https, or http on a loopback host (local
/// development and tests). Applied at load to OAuth endpoints and by the OAuth client itself.
pub fn secure_transport(url: &Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_in_listen_get_the_ip_to_write_instead() {
        let e = parse_listen("localhost:8790").unwrap_err();
        assert!(e.contains("host names are not resolved"), "{e}");
        assert!(e.contains("fix: use \"127.0.0.1:8790\""), "{e}");
        let e = parse_listen("127.0.0.1").unwrap_err();
        assert!(e.contains("\"127.0.0.1:8787\""), "{e}");
        let e = parse_listen("::1").unwrap_err();
        assert!(e.contains("\"[::1]:8787\""), "{e}");
        assert_eq!(parse_listen("[::1]:0").unwrap().port(), 0);
    }

    #[test]
    fn a_url_without_scheme_gets_the_full_url_as_fix() {
        let e = parse_url("127.0.0.1:1/mcp").unwrap_err();
        assert!(
            e.ends_with("fix: write \"http://127.0.0.1:1/mcp\" (or https://)"),
            "{e}"
        );
        let e = parse_url("api.example.com/mcp").unwrap_err();
        assert!(
            e.ends_with("fix: write \"https://api.example.com/mcp\" (or http://)"),
            "{e}"
        );
        let u = parse_url("localhost:8080/mcp").unwrap();
        assert_eq!(
            missing_http(&u).as_deref(),
            Some("\"http://localhost:8080/mcp\" (or https://)")
        );
        assert_eq!(missing_http(&parse_url("ws://h/mcp").unwrap()), None);
    }
}
