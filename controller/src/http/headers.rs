//! What every answer of both listeners carries and every request must name: security
//! headers (a browser may cache, frame or sniff none of it: the status page and /metrics
//! are read in browsers) and a `Host` check against DNS rebinding (a page on an attacker's
//! name that later resolves to the controller must not read `/metrics` or the status page
//! through the victim's browser). Pis and scripts name the controller by an address or by
//! the `public_url`'s host: any IP literal is accepted, as are `localhost`, that host and
//! `allowed_hosts`.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiErr;
use crate::config::Config;

/// The page is server-rendered with inline CSS only; no script, frame, form or plug-in.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Adds the security headers an answer lacks.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    resp
}

/// The host names a request's `Host` may carry (lowercase, no trailing dot).
#[derive(Debug, Clone)]
pub struct AllowedHosts(Arc<HashSet<String>>);

impl AllowedHosts {
    pub fn from_config(config: &Config) -> AllowedHosts {
        let mut names: HashSet<String> = config.allowed_hosts.iter().map(|h| normal(h)).collect();
        names.insert("localhost".into());
        if let Some(host) = url_host(&config.public_url()) {
            names.insert(host);
        }
        AllowedHosts(Arc::new(names))
    }

    /// Whether `host` (a `Host` header's value, port and all) may be served.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_part(host);
        name.parse::<std::net::IpAddr>().is_ok() || self.0.contains(&normal(name))
    }
}

fn normal(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `name` of `name:port`, `1.2.3.4` of `1.2.3.4:port`, `::1` of `[::1]:port`.
fn host_part(host: &str) -> &str {
    let host = host.trim();
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The host of `http(s)://host[:port]/…`, normalised.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let name = host_part(authority);
    (!name.is_empty()).then(|| normal(name))
}

/// Refuses (421) a request whose `Host` names a host this controller is not. A request
/// without one (HTTP/1.0) passes: browsers always send it.
pub async fn check_host(State(allowed): State<AllowedHosts>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().map_err(|_| ()));
    match host {
        None => next.run(req).await,
        Some(Ok(h)) if allowed.allows(h) => next.run(req).await,
        Some(h) => ApiErr::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            format!(
                "this controller does not answer for host {:?}: use its address, or add the \
                 name to allowed_hosts",
                h.unwrap_or("<not text>")
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_known_names_pass_others_do_not() {
        let config = Config {
            public_url: Some("http://Boot.Lab.:8080/".into()),
            allowed_hosts: vec!["pureboot.example.org".into()],
            ..Config::default()
        };
        let a = AllowedHosts::from_config(&config);
        for ok in [
            "10.0.2.2:8080",
            "127.0.0.1",
            "[::1]:8081",
            "[fe80::1]",
            "localhost:8080",
            "boot.lab",
            "BOOT.LAB.:8080",
            "pureboot.example.org",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "localhost.evil.example:8080",
            "boot.lab.evil",
            "",
        ] {
            assert!(!a.allows(refused), "{refused}");
        }
    }
}
