//! Management API (bearer token): nodes, their events, workflows, base images.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
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

/// Byte-wise comparison that does not stop at the first difference.
pub(super) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn require_admin(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = st.services.config.admin_token.as_deref() else {
        return ApiErr::unauthorized("management API disabled: no admin_token configured")
            .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if same_secret(token.trim().as_bytes(), expected.as_bytes()) => {
            next.run(req).await
        }
        Some(_) => ApiErr::unauthorized("invalid bearer token").into_response(),
        None => ApiErr::unauthorized("missing Authorization: Bearer <admin_token>").into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    workflow: Option<String>,
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
