//! The HTTP API: every route in [`router`], handlers by audience (`pi`, `admin`), errors
//! as JSON (`error`), plus health, metrics and the request limits.

mod admin;
mod agent;
pub mod error;
mod groups;
mod headers;
mod pi;
mod pool;
pub mod server;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{BoxError, Json, Router};
use serde_json::json;
use tower::ServiceBuilder;

use crate::metrics::Metrics;
use crate::service::{ServiceError, Services};
use error::ApiErr;

/// The `{id}` of a route; a segment that is not valid UTF-8 after percent-decoding is a
/// JSON 400 like every other error (axum's own rejection is plain text).
pub struct IdParam(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdParam {
    type Rejection = ApiErr;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiErr> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        Ok(IdParam(id))
    }
}

/// A report route's `{id}`: only a boot id (UUID-shaped) names a boot; a serial or anything
/// else names none (404, with `hint`: where the boot's routes are).
pub(super) fn boot_id(id: &str, hint: &str) -> Result<String, ApiErr> {
    match crate::domain::ids::NodeRef::parse(id) {
        Ok(crate::domain::ids::NodeRef::Id(boot_id)) => Ok(boot_id),
        _ => Err(ServiceError::NotFound(format!("no boot with this id: {hint}")).into()),
    }
}

#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    pub metrics: Arc<Metrics>,
    /// Requests running blocking code at once (see [`BLOCKING_SLOTS`]).
    pub blocking_slots: Arc<tokio::sync::Semaphore>,
    /// Operators' requests running blocking code at once (see [`ADMIN_SLOTS`]).
    pub admin_slots: Arc<tokio::sync::Semaphore>,
    /// Wrong admin tokens per client address (both listeners, both schemes).
    pub auth_failures: Arc<admin::AuthFailures>,
}

impl AppState {
    pub fn new(services: Arc<Services>, metrics: Arc<Metrics>) -> AppState {
        AppState {
            services,
            metrics,
            blocking_slots: Arc::new(tokio::sync::Semaphore::new(BLOCKING_SLOTS)),
            admin_slots: Arc::new(tokio::sync::Semaphore::new(ADMIN_SLOTS)),
            auth_failures: Arc::default(),
        }
    }
}

/// Blocking work that may wait on the disk (a boot's node tree, its fsyncs overlapping
/// across serials; a persist.img repair; admin requests) of at most this many requests at
/// once; the others wait on the async side.
pub const BLOCKING_SLOTS: usize = 32;

/// Operators' requests (management API, status page, metrics) running blocking code at
/// once: their own slots, so ten status pages loading in a loop never take one a boot
/// waits for.
pub const ADMIN_SLOTS: usize = 4;

// Registry work of the boot path (boot commits, reports, registrations) takes no pool:
// its requests wait without a thread for the store's group commit (`Services::grouped`).

/// Runs blocking service code (SQLite, filesystem) off the async workers, on the I/O pool.
async fn blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&Services) -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiErr> {
    on_pool(st, &st.blocking_slots, None, f).await
}

/// As [`blocking`], for an operator's request: on the operators' slots, its registry reads
/// on the operators' connections and cancelled once the request's time is up (see
/// [`crate::store::Store::admin_reads`]).
async fn admin_blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&Services) -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiErr> {
    let deadline = Instant::now() + Duration::from_secs(st.services.config.request_timeout_secs);
    on_pool(st, &st.admin_slots, Some(deadline), f).await
}

/// `f` on the I/O pool once one of `slots` is free; with a `deadline`, as an operator's.
async fn on_pool<T: Send + 'static>(
    st: &AppState,
    slots: &Arc<tokio::sync::Semaphore>,
    deadline: Option<Instant>,
    f: impl FnOnce(&Services) -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiErr> {
    let _slot = slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiErr::internal("shutting down"))?;
    let services = st.services.clone();
    let work = move || {
        let _operator = deadline.map(crate::store::Store::admin_reads);
        f(&services)
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(ApiErr::from),
        Err(join) => {
            log::error!("request handler panicked: {join}");
            Err(ApiErr::internal(
                "request handler failed; see the controller log",
            ))
        }
    }
}

/// Every route on one listener (no `admin_listen`).
pub fn router(state: AppState) -> Router {
    finish(
        Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .merge(pi_routes())
            .merge(admin_routes(&state))
            .merge(status_routes(&state)),
        state,
    )
}

/// The boot network's listener when the management API has its own: the Pi routes and
/// `/healthz` only.
pub fn pi_router(state: AppState) -> Router {
    finish(
        Router::new()
            .route("/healthz", get(healthz))
            .merge(pi_routes()),
        state,
    )
}

/// The `admin_listen` listener: management API, the status page, `/metrics`, `/healthz`.
pub fn admin_router(state: AppState) -> Router {
    finish(
        Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .merge(admin_routes(&state))
            .merge(status_routes(&state)),
        state,
    )
}

/// The fleet's status page, for a browser (HTTP Basic with the admin token).
fn status_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/status", get(status::page))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            status::require_admin_page,
        ))
}

fn pi_routes() -> Router<AppState> {
    Router::new()
        .route(pureboot_contract::boot_query::PATH, get(pi::boot_pi))
        .route("/api/v1/nodes/register-pi", post(pi::register_pi))
        .route("/api/v1/nodes/{id}/installed", post(pi::installed))
        .route(
            "/api/v1/nodes/{id}/install-failed",
            post(pi::install_failed),
        )
        .route("/api/v1/nodes/{id}/agent/steps", get(agent::steps))
        .route("/api/v1/nodes/{id}/agent/step", post(agent::step))
        .route("/api/v1/nodes/{id}/agent/complete", post(agent::complete))
}

fn admin_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/nodes",
            get(admin::list_nodes).post(admin::add_node),
        )
        .route(
            "/api/v1/nodes/{id}",
            get(admin::show_node)
                .patch(admin::update_node)
                .delete(admin::delete_node),
        )
        .route("/api/v1/nodes/{id}/assign", post(admin::assign))
        .route("/api/v1/nodes/{id}/events", get(admin::node_events))
        .route("/api/v1/nodes/{id}/steps", get(admin::node_steps))
        .route("/api/v1/nodes/{id}/rerun", post(admin::rerun_steps))
        .route("/api/v1/nodes/{id}/effective", get(groups::node_effective))
        .route("/api/v1/groups", get(groups::list_groups))
        .route(
            "/api/v1/groups/{id}",
            get(groups::show_group)
                .post(groups::add_group)
                .patch(groups::update_group)
                .delete(groups::delete_group),
        )
        .route(
            "/api/v1/group-rules",
            get(groups::list_rules).post(groups::add_rule),
        )
        .route("/api/v1/group-rules/{id}", delete(groups::delete_rule))
        .route("/api/v1/workflows", get(admin::list_workflows))
        .route("/api/v1/workflows/reload", post(admin::reload_workflows))
        .route("/api/v1/workflows/{id}", get(admin::show_workflow))
        .route("/api/v1/images", get(admin::list_images))
        .route("/api/v1/nfs/servers", get(pool::servers))
        .route("/api/v1/nfs/images", get(pool::image_status))
        .route("/api/v1/nfs/images/sync", post(pool::image_sync))
        .route("/api/v1/nodes/{id}/nfs-server", put(pool::pin_node))
        .route("/api/v1/groups/{id}/nfs-server", put(pool::pin_group))
        .route("/api/v1/nodes/{id}/move", post(pool::move_node))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ))
}

/// The layers every listener has: JSON fallbacks, body limit, timeout, latency metric.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let config = &state.services.config;
    let timeout = Duration::from_secs(config.request_timeout_secs);
    let body_limit = usize::try_from(config.body_limit_bytes).unwrap_or(usize::MAX);
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            body_limit,
            refuse_declared_oversize,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(state.clone(), track_latency))
                .layer(HandleErrorLayer::new(on_timeout))
                .timeout(timeout),
        )
        .layer(middleware::from_fn_with_state(
            headers::AllowedHosts::from_config(config),
            headers::check_host,
        ))
        .layer(middleware::from_fn(headers::security_headers))
        .with_state(state)
}

/// 200 when the registry and the export take writes, 503 naming the part that does not.
async fn healthz(State(st): State<AppState>) -> Response {
    match blocking(&st, |s| Ok(s.health())).await {
        Ok(h) => {
            let status = if h.ok { "ok" } else { "error" };
            let mut body = serde_json::to_value(&h).unwrap_or_default();
            body["status"] = json!(status);
            if !h.ok {
                body["error"] = json!("write_check_failed");
            }
            let code = if h.ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, Json(body)).into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "error": e.body})),
        )
            .into_response(),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    let mut text = st.metrics.render();
    // From the registry, so the CLI's changes and a restart show too: one read.
    let within = st.services.config.boot_complete_within_secs;
    if let Ok((degraded, stuck)) = admin_blocking(&st, move |s| {
        Ok(s.store.read(|tx| {
            Ok::<_, crate::store::StoreError>((tx.count_degraded()?, tx.count_stuck(within)?))
        })?)
    })
    .await
    {
        text.push_str(&format!(
            "# HELP pureboot_nodes_degraded Nodes whose persistent layer broke (see node list).\n\
             # TYPE pureboot_nodes_degraded gauge\npureboot_nodes_degraded {degraded}\n\
             # HELP pureboot_nodes_stuck Nodes whose last boot got an answer but no boot \
             complete within boot_complete_within_secs ({within} s).\n\
             # TYPE pureboot_nodes_stuck gauge\npureboot_nodes_stuck {stuck}\n"
        ));
    }
    // Nodes per version, rollouts by outcome (service/versions.rs).
    if let Ok(v) = admin_blocking(&st, |s| s.version_metrics()).await {
        text.push_str(&v);
    }
    // Nodes per NFS server of the pool (service/pool.rs).
    if let Ok(v) = admin_blocking(&st, |s| s.pool_metrics()).await {
        text.push_str(&v);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn track_latency(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .request(start.elapsed(), resp.status().is_server_error());
    resp
}

/// A request announcing a body over the limit is refused before its body is awaited:
/// `DefaultBodyLimit` only counts bytes as they arrive, so a client declaring 1 GB and
/// sending nothing would hold the request until the timeout.
async fn refuse_declared_oversize(
    State(limit): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => {
            // Closing with the body unread resets the connection, and a client still sending
            // sees "broken pipe" instead of this answer: read and drop a body of modest size
            // first (bounded by the request timeout). A huge one is refused at once.
            if n <= DRAIN_MAX {
                let _ = axum::body::to_bytes(req.into_body(), DRAIN_MAX as usize).await;
            }
            ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body of {n} bytes is over the limit of {limit} bytes"),
            )
            .into_response()
        }
        _ => next.run(req).await,
    }
}

/// Largest refused body still read (and dropped) so that its sender gets the 413.
const DRAIN_MAX: u64 = 1 << 20;

async fn on_timeout(err: BoxError) -> ApiErr {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiErr::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "request took too long; try again",
        )
    } else {
        ApiErr::internal(format!("unhandled error: {err}"))
    }
}

async fn not_found() -> ApiErr {
    ApiErr::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiErr {
    ApiErr::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
