//! Management API (bearer token): nodes, their events, workflows, base images.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiErr;
use super::pi::parse_node_ref;
use super::{admin_blocking, AppState, IdParam};
use crate::domain::node::Node;
use crate::domain::state::NodeState;
use crate::domain::workflow::Workflow;
use crate::service::nodes::{NodeDetail, NodeSpec, NodeUpdate, RECENT_EVENTS};
use crate::service::{Reloaded, ServiceError};
use crate::store::events::Event;
use crate::store::nodes::NodeFilter;

/// Whether `given` is the admin token `expected`, in a time that depends on `given`'s
/// length only: it neither stops at the first difference nor at the end of `expected`, so
/// timing tells a guesser neither a prefix nor the token's length. (A digest comparison
/// would need a hash crate the controller does not otherwise carry.)
pub(super) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut diff = u8::from(given.len() != expected.len());
    for (i, g) in given.iter().enumerate() {
        diff |= g ^ expected[i % expected.len()];
    }
    std::hint::black_box(diff) == 0
}

/// Wrong tokens allowed from one address before each further one is slowed.
const FREE_FAILURES: u32 = 3;
/// The delay after the first slowed failure; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// An address's failures are forgotten after this long without one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked at most; past it only addresses still being slowed are kept.
const MAX_TRACKED: usize = 65_536;
/// Log lines about refused tokens per minute, all addresses together.
const LOG_LINES_PER_MINUTE: u32 = 20;

/// Refused admin tokens per client address: after [`FREE_FAILURES`], each failure is
/// answered only after an exponentially growing delay, and until that delay has passed the
/// address's further attempts are refused unchecked (429), so parallel guesses gain nothing.
/// Guessing drops from thousands of tries per second to one per `admin_token_max_delay_ms`
/// per address.
#[derive(Default)]
pub struct AuthFailures {
    by_addr: Mutex<HashMap<IpAddr, Failures>>,
    log: Mutex<LogBudget>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    /// Attempts before this are refused unchecked.
    not_before: Instant,
    last: Instant,
}

#[derive(Default)]
struct LogBudget {
    minute: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

/// What to do with one attempt.
#[derive(Debug, PartialEq)]
enum Verdict {
    Allowed,
    /// Wrong token: answer 401 after `delay`.
    Refused {
        failures: u32,
        delay: Duration,
    },
    /// Attempt during an earlier failure's delay: 429, unchecked.
    TooSoon(Duration),
}

impl AuthFailures {
    /// Checks `given` against `expected` for a client at `addr` (IPv6 by its /64: one
    /// machine usually holds all of it), recording a failure.
    fn check(&self, addr: IpAddr, given: &str, expected: &str, max_delay: Duration) -> Verdict {
        let addr = prefix_of(addr);
        let now = Instant::now();
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(&addr) {
            if now < f.not_before {
                return Verdict::TooSoon(f.not_before - now);
            }
        }
        if same_secret(given.as_bytes(), expected.as_bytes()) {
            map.remove(&addr);
            return Verdict::Allowed;
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, f| now < f.not_before);
            if map.len() >= MAX_TRACKED {
                // Every slot holds an address being slowed: a newcomer waits like them.
                return Verdict::TooSoon(max_delay);
            }
        }
        let f = map.entry(addr).or_insert(Failures {
            count: 0,
            not_before: now,
            last: now,
        });
        if now.duration_since(f.last) > FORGET_AFTER {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        let delay = delay_after(f.count, max_delay);
        f.not_before = now + delay;
        Verdict::Refused {
            failures: f.count,
            delay,
        }
    }

    /// Logs a refusal: each address's 1st, 2nd, 4th, 8th … failure, and at most
    /// [`LOG_LINES_PER_MINUTE`] lines a minute in all (then one line saying how many were
    /// left out), so a guessing storm cannot flood the log.
    fn log_refusal(&self, addr: IpAddr, route: &str, failures: u32, delay: Duration) {
        if !failures.is_power_of_two() {
            return;
        }
        let now = Instant::now();
        let mut budget = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if budget
            .minute
            .is_none_or(|m| now.duration_since(m) >= Duration::from_secs(60))
        {
            if budget.suppressed > 0 {
                log::warn!(
                    "admin token: {} more refusals not logged in the last minute",
                    budget.suppressed
                );
            }
            *budget = LogBudget {
                minute: Some(now),
                ..LogBudget::default()
            };
        }
        if budget.lines >= LOG_LINES_PER_MINUTE {
            budget.suppressed += 1;
            return;
        }
        budget.lines += 1;
        log::warn!(
            "admin token refused for {addr} on {route}: {failures} wrong token(s) from it; \
             its next attempt is checked after {delay:?}"
        );
    }
}

/// The delay after the `failures`-th wrong token.
fn delay_after(failures: u32, max: Duration) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES - 1).min(16);
    (FIRST_DELAY * 2u32.pow(doublings)).min(max)
}

/// An IPv6 address by its /64 (an IPv4 one as it is).
fn prefix_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// How the admin token was presented, for the answer to a refusal.
pub(super) enum Challenge {
    /// The management API's `WWW-Authenticate: Bearer`.
    Bearer,
    /// The status page's Basic challenge, so a browser asks for it.
    Basic,
}

/// Checks the admin token of one request (both listeners, both schemes): `Ok` to go on,
/// else the answer to give. Missing credentials are refused without counting as a failure
/// (a browser's first visit to the status page sends none).
/// (`client` and `route` are taken from the request by [`client_of`]: a request is not
/// `Sync`, so no reference to it may cross the delay's await.)
pub(super) async fn authorize(
    st: &AppState,
    (addr, route): (IpAddr, String),
    given: Option<&str>,
    challenge: Challenge,
) -> Result<(), Response> {
    let refuse = |detail: &str| {
        let mut resp = ApiErr::unauthorized(detail.to_string()).into_response();
        if let Challenge::Basic = challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"pureboot\", charset=\"UTF-8\""),
            );
        }
        resp
    };
    let Some(expected) = st.services.config.admin_token.as_deref() else {
        return Err(refuse("disabled: no admin_token configured"));
    };
    let Some(given) = given else {
        return Err(refuse(match challenge {
            Challenge::Bearer => "missing Authorization: Bearer <admin_token>",
            Challenge::Basic => "the admin token is the password (any user name)",
        }));
    };
    let config = &st.services.config;
    // At most half the request timeout, so the slowed answer still comes.
    let max_delay = Duration::from_millis(config.admin_token_max_delay_ms)
        .min(Duration::from_secs(config.request_timeout_secs) / 2);
    match st.auth_failures.check(addr, given, expected, max_delay) {
        Verdict::Allowed => Ok(()),
        Verdict::Refused { failures, delay } => {
            st.auth_failures.log_refusal(addr, &route, failures, delay);
            tokio::time::sleep(delay).await;
            Err(refuse("invalid admin token"))
        }
        Verdict::TooSoon(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut resp = ApiErr::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("too many wrong admin tokens from this address; retry in {secs} s"),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Err(resp)
        }
    }
}

/// The client's address (as the accept loop recorded it) and the path it asked for.
pub(super) fn client_of(req: &Request) -> (IpAddr, String) {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    (addr, req.uri().path().to_string())
}

pub async fn require_admin(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    match authorize(&st, client_of(&req), given.as_deref(), Challenge::Bearer).await {
        Ok(()) => next.run(req).await,
        Err(refused) => refused,
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    workflow: Option<String>,
    /// Members of this group only.
    group: Option<String>,
    /// Page size: default [`PAGE_DEFAULT`], at most [`PAGE_MAX`].
    limit: Option<u32>,
    /// The last serial of the previous page.
    after: Option<String>,
}

pub const PAGE_DEFAULT: u32 = 500;
pub const PAGE_MAX: u32 = 5000;

/// Nodes by serial, a page at a time: a full page carries `Link: <…>; rel="next"`.
pub async fn list_nodes(
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiErr> {
    let q = q?.0;
    let state = q
        .state
        .map(|s| {
            NodeState::parse(&s).ok_or_else(|| ApiErr::bad_request(format!("unknown state {s:?}")))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX);
    let after = q
        .after
        .map(|a| pureboot_contract::ids::Serial::parse(&a))
        .transpose()
        .map_err(|e| ApiErr::bad_request(e.to_string()))?;
    let filter = NodeFilter {
        state,
        workflow_id: q.workflow.clone(),
        after,
        limit: Some(limit),
        group: q.group.clone(),
    };
    let nodes = admin_blocking(&st, move |s| s.list_nodes(&filter)).await?;
    let next = (nodes.len() == limit as usize)
        .then(|| nodes.last().map(|n| n.serial.clone()))
        .flatten();
    let mut resp = Json(nodes).into_response();
    if let Some(last) = next {
        let mut link = format!("/api/v1/nodes?limit={limit}&after={last}");
        if let Some(s) = state {
            link += &format!("&state={s}");
        }
        if let Some(w) = q.workflow.as_deref().filter(|w| {
            w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        }) {
            link += &format!("&workflow={w}");
        }
        if let Some(g) = q
            .group
            .as_deref()
            .filter(|g| crate::domain::group::check_name(g).is_ok())
        {
            link += &format!("&group={g}");
        }
        if let Ok(v) = header::HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

pub async fn add_node(
    State(st): State<AppState>,
    body: Result<Json<NodeSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<Node>), ApiErr> {
    let spec = body?.0;
    Ok((
        StatusCode::CREATED,
        Json(admin_blocking(&st, move |s| s.add_node(&spec)).await?),
    ))
}

pub async fn show_node(
    State(st): State<AppState>,
    IdParam(id): IdParam,
) -> Result<Json<NodeDetail>, ApiErr> {
    let r = parse_node_ref(&id)?;
    Ok(Json(
        admin_blocking(&st, move |s| s.node_detail(&r, RECENT_EVENTS)).await?,
    ))
}

pub async fn update_node(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    body: Result<Json<NodeUpdate>, JsonRejection>,
) -> Result<Json<Node>, ApiErr> {
    let r = parse_node_ref(&id)?;
    let upd = body?.0;
    Ok(Json(
        admin_blocking(&st, move |s| s.update_node(&r, &upd)).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    workflow_id: String,
}

pub async fn assign(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> Result<Json<Node>, ApiErr> {
    let r = parse_node_ref(&id)?;
    let wf = body?.0.workflow_id;
    Ok(Json(admin_blocking(&st, move |s| s.assign(&r, &wf)).await?))
}

#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    keep_tree: bool,
}

pub async fn delete_node(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiErr> {
    let r = parse_node_ref(&id)?;
    let keep = q?.0.keep_tree;
    let (node, tree_removed) = admin_blocking(&st, move |s| s.remove_node(&r, keep)).await?;
    Ok(Json(json!({"removed": node, "tree_removed": tree_removed})))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    limit: Option<u32>,
}

pub async fn node_events(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Vec<Event>>, ApiErr> {
    let r = parse_node_ref(&id)?;
    let limit = q?.0.limit.unwrap_or(RECENT_EVENTS).clamp(1, 10_000);
    Ok(Json(
        admin_blocking(&st, move |s| s.node_detail(&r, limit).map(|d| d.events)).await?,
    ))
}

#[derive(Debug, Serialize)]
pub struct WorkflowList {
    workflows: Vec<Workflow>,
    /// Files that failed to load, with file and field.
    errors: Vec<String>,
}

pub async fn list_workflows(State(st): State<AppState>) -> Json<WorkflowList> {
    let w = st.services.workflows();
    Json(WorkflowList {
        workflows: w.iter().map(|(_, wf)| wf.clone()).collect(),
        errors: w.errors().map(|e| e.to_string()).collect(),
    })
}

/// Reads the workflows directory again, as SIGHUP does: new and edited files are served from
/// now on, broken ones are listed and left out. (So `reload` cannot be a workflow's id here.)
pub async fn reload_workflows(State(st): State<AppState>) -> Result<Json<Reloaded>, ApiErr> {
    Ok(Json(admin_blocking(&st, |s| s.reload_workflows()).await?))
}

pub async fn list_images(State(st): State<AppState>) -> Result<Json<Value>, ApiErr> {
    let images = admin_blocking(&st, |s| s.base_images()).await?;
    let default = st.services.config.nfs.default_base_image.clone();
    Ok(Json(json!({"images": images, "default": default})))
}

pub async fn show_workflow(
    State(st): State<AppState>,
    IdParam(id): IdParam,
) -> Result<Json<Workflow>, ApiErr> {
    match st.services.workflows().get(&id) {
        crate::workflows::Lookup::Found(wf) => Ok(Json(wf.clone())),
        crate::workflows::Lookup::Broken(e) => Err(ServiceError::Invalid(e.to_string()).into()),
        crate::workflows::Lookup::Missing => {
            Err(ServiceError::NotFound(format!("no workflow {id:?}")).into())
        }
    }
}

pub async fn node_steps(
    State(st): State<AppState>,
    IdParam(id): IdParam,
) -> Result<Json<crate::service::after_boot::NodeSteps>, ApiErr> {
    let r = parse_node_ref(&id)?;
    Ok(Json(admin_blocking(&st, move |s| s.node_steps(&r)).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    /// One step's name; none: every step.
    #[serde(default)]
    step: Option<String>,
}

pub async fn rerun_steps(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    body: Result<Json<RerunBody>, JsonRejection>,
) -> Result<Json<Node>, ApiErr> {
    let r = parse_node_ref(&id)?;
    let step = body?.0.step;
    Ok(Json(
        admin_blocking(&st, move |s| s.rerun_steps(&r, step.as_deref())).await?,
    ))
}
