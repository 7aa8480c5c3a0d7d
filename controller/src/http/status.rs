//! The status page: one server-rendered HTML page of the fleet (`GET /status`), for a
//! browser. Behind the admin token like the management API, but as HTTP Basic
//! authentication (any user name, the token as password) so a browser can ask for it.

use std::sync::OnceLock;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use minijinja::Environment;
use serde::Deserialize;

use super::admin::{authorize, client_of, Challenge};
use super::error::ApiErr;
use super::{admin_blocking, AppState};
use crate::domain::state::NodeState;

/// Seconds between the page's own reloads.
const REFRESH_SECS: u32 = 10;

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        // The `.html` name turns HTML escaping on for every value (serials, host names,
        // reasons: text that came from Pis).
        let mut env = Environment::new();
        env.add_template("status.html", include_str!("status.html"))
            .expect("the status template parses (a unit test renders it)");
        env
    })
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    state: Option<String>,
}

pub async fn page(
    State(st): State<AppState>,
    q: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<Response, ApiErr> {
    let state = q?
        .0
        .state
        .filter(|s| !s.is_empty())
        .map(|s| {
            NodeState::parse(&s).ok_or_else(|| ApiErr::bad_request(format!("unknown state {s:?}")))
        })
        .transpose()?;
    // Rendered off the async workers too: a large fleet's page is work.
    let html = admin_blocking(&st, move |s| {
        let view = s.status(state)?;
        let ctx = minijinja::context! {
            refresh => REFRESH_SECS,
            ..minijinja::Value::from_serialize(&view)
        };
        Ok(templates()
            .get_template("status.html")
            .and_then(|t| t.render(ctx)))
    })
    .await?
    .map_err(|e| ApiErr::internal(format!("rendering the status page: {e}")))?;
    Ok(Html(html).into_response())
}

/// The admin token as a Bearer token or as the password of HTTP Basic authentication;
/// without either, a 401 that makes a browser ask. Refusals are slowed and logged as the
/// management API's are (see [`super::admin::authorize`]).
pub async fn require_admin_page(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_of);
    match authorize(&st, client_of(&req), given.as_deref(), Challenge::Basic).await {
        Ok(()) => next.run(req).await,
        Err(refused) => refused,
    }
}

/// The secret of `Bearer <token>` or of `Basic base64(<user>:<token>)`.
fn token_of(authorization: &str) -> Option<String> {
    if let Some(t) = authorization.strip_prefix("Bearer ") {
        return Some(t.trim().to_string());
    }
    let encoded = authorization.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::status::StatusView;

    #[test]
    fn basic_and_bearer_carry_the_token() {
        assert_eq!(token_of("Bearer abc").as_deref(), Some("abc"));
        // "admin:s3cret:x" -> the password may hold ':'.
        let b = base64::engine::general_purpose::STANDARD.encode("admin:s3cret:x");
        assert_eq!(token_of(&format!("Basic {b}")).as_deref(), Some("s3cret:x"));
        assert_eq!(token_of("Basic !!notbase64"), None);
        let no_colon = base64::engine::general_purpose::STANDARD.encode("admin");
        assert_eq!(token_of(&format!("Basic {no_colon}")), None);
        assert_eq!(token_of("Digest x"), None);
    }

    #[test]
    fn the_template_renders_and_escapes_what_pis_sent() {
        let view = StatusView {
            nodes: Vec::new(),
            counts: vec![("active".into(), 0)],
            total: 0,
            state: Some("<script>".into()),
            degraded: 0,
            conflicts: 0,
            stuck: 0,
            stuck_after_secs: 900,
            rollouts: Vec::new(),
            nfs_servers: Vec::new(),
        };
        let ctx = minijinja::context! { refresh => 10, ..minijinja::Value::from_serialize(&view) };
        let html = templates()
            .get_template("status.html")
            .unwrap()
            .render(ctx)
            .unwrap();
        assert!(html.contains("no nodes in state &lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
    }
}
