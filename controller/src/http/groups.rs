//! Management API for groups, their rules, and a node's effective settings (bearer token,
//! like the rest of `admin.rs`).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiErr;
use super::pi::parse_node_ref;
use super::{admin_blocking, AppState, IdParam};
use crate::domain::group::Group;
use crate::domain::group_rule::GroupRule;
use crate::service::groups::{EffectiveView, GroupDetail, GroupSummary, GroupUpdate};

pub async fn list_groups(State(st): State<AppState>) -> Result<Json<Vec<GroupSummary>>, ApiErr> {
    Ok(Json(admin_blocking(&st, |s| s.list_groups()).await?))
}

pub async fn show_group(
    State(st): State<AppState>,
    IdParam(name): IdParam,
) -> Result<Json<GroupDetail>, ApiErr> {
    Ok(Json(
        admin_blocking(&st, move |s| s.show_group(&name)).await?,
    ))
}

/// `POST /api/v1/groups/{name}`: creates the group with the body's settings.
pub async fn add_group(
    State(st): State<AppState>,
    IdParam(name): IdParam,
    body: Result<Json<GroupUpdate>, JsonRejection>,
) -> Result<(StatusCode, Json<Group>), ApiErr> {
    let upd = body?.0;
    Ok((
        StatusCode::CREATED,
        Json(admin_blocking(&st, move |s| s.save_group(&name, &upd, true)).await?),
    ))
}

pub async fn update_group(
    State(st): State<AppState>,
    IdParam(name): IdParam,
    body: Result<Json<GroupUpdate>, JsonRejection>,
) -> Result<Json<Group>, ApiErr> {
    let upd = body?.0;
    Ok(Json(
        admin_blocking(&st, move |s| s.save_group(&name, &upd, false)).await?,
    ))
}

pub async fn delete_group(
    State(st): State<AppState>,
    IdParam(name): IdParam,
) -> Result<Json<Value>, ApiErr> {
    let n = name.clone();
    admin_blocking(&st, move |s| s.remove_group(&n)).await?;
    Ok(Json(json!({"removed": name})))
}

pub async fn list_rules(State(st): State<AppState>) -> Result<Json<Vec<GroupRule>>, ApiErr> {
    Ok(Json(admin_blocking(&st, |s| s.list_group_rules()).await?))
}

pub async fn add_rule(
    State(st): State<AppState>,
    body: Result<Json<GroupRule>, JsonRejection>,
) -> Result<(StatusCode, Json<GroupRule>), ApiErr> {
    let rule = body?.0;
    Ok((
        StatusCode::CREATED,
        Json(admin_blocking(&st, move |s| s.add_group_rule(rule)).await?),
    ))
}

pub async fn delete_rule(
    State(st): State<AppState>,
    IdParam(priority): IdParam,
) -> Result<Json<Value>, ApiErr> {
    let p: i64 = priority
        .parse()
        .map_err(|_| ApiErr::bad_request(format!("priority {priority:?} is not an integer")))?;
    admin_blocking(&st, move |s| s.remove_group_rule(p)).await?;
    Ok(Json(json!({"removed": p})))
}

/// `GET /api/v1/nodes/{id}/effective`: every effective value with its source.
pub async fn node_effective(
    State(st): State<AppState>,
    IdParam(id): IdParam,
) -> Result<Json<EffectiveView>, ApiErr> {
    let r = parse_node_ref(&id)?;
    Ok(Json(
        admin_blocking(&st, move |s| s.node_effective(&r)).await?,
    ))
}
