//! The booted node's agent (`pureboot_contract::after_boot`): under its boot's own id, from
//! its boot's address, as pi-init's reports.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::Json;
use pureboot_contract::after_boot::{BootComplete, StepOutcome, StepsPlan};
use serde_json::{json, Value};

use super::error::ApiErr;
use super::{blocking, AppState, IdParam};

fn boot_id(id: &str) -> Result<String, ApiErr> {
    super::boot_id(
        id,
        "the agent's routes are under the boot answer's agent_url",
    )
}

pub async fn steps(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Json<StepsPlan>, ApiErr> {
    let boot = boot_id(&id)?;
    let ip = peer.ip().to_string();
    let plan = blocking(&st, move |s| s.steps_for_boot(&boot, Some(&ip))).await?;
    Ok(Json(plan))
}

pub async fn step(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<StepOutcome>, JsonRejection>,
) -> Result<Json<Value>, ApiErr> {
    let boot = boot_id(&id)?;
    let outcome = body?.0;
    let ok = st
        .services
        .step_outcome(boot, outcome, Some(peer.ip().to_string()))
        .await?;
    st.metrics.post_boot_step(ok);
    Ok(Json(json!({"recorded": true, "ok": ok})))
}

pub async fn complete(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<BootComplete>, JsonRejection>,
) -> Result<Json<Value>, ApiErr> {
    let boot = boot_id(&id)?;
    let report = body?.0;
    let healthy = st
        .services
        .boot_complete(boot, report, Some(peer.ip().to_string()))
        .await?;
    st.metrics.boot_complete(healthy);
    Ok(Json(json!({"recorded": true, "healthy": healthy})))
}
