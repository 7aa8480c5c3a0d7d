//! Endpoints a Pi calls (upstream-compatible; no authentication, as upstream's Pi side).

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::Json;
use pureboot_contract::boot_query::BootQuery;
use pureboot_contract::{InstallFailedReport, InstalledReport, PiBootResponse, RegisterPiRequest};
use serde_json::Value;

use super::error::ApiErr;
use super::{blocking, AppState, IdParam};
use crate::domain::ids::NodeRef;
use crate::domain::node::Node;
use crate::service::boot::{BootRequest, Registered};
use crate::service::ServiceError;

/// The query's decoded pairs, parsed once into the contract's [`BootQuery`].
type QueryPairs = Vec<(String, String)>;

fn parse_boot(pairs: &QueryPairs, ip: String) -> Result<BootRequest, ApiErr> {
    let query = BootQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| ApiErr::bad_request(e.to_string()))?;
    Ok(BootRequest {
        query,
        ip: Some(ip),
    })
}

pub async fn boot_pi(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<QueryPairs>, QueryRejection>,
) -> Result<Json<PiBootResponse>, ApiErr> {
    let req = parse_boot(&query?.0, peer.ip().to_string())?;
    let metrics = st.metrics.clone();
    // The file work on the I/O pool, the transaction in the registry's group commit.
    let mut attempt = 1;
    let resp = loop {
        let r = req.clone();
        let prepared = blocking(&st, move |s| s.prepare_boot(&r, attempt)).await?;
        if let Some(resp) = st.services.commit_boot(&req, prepared).await? {
            break resp;
        }
        attempt += 1;
    };
    metrics.boot(
        resp.action
            .as_ref()
            .map_or("none", |a| a.name().unwrap_or("other")),
    );
    Ok(Json(resp))
}

pub async fn register_pi(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<RegisterPiRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Registered>), ApiErr> {
    let req = body?.0;
    let (node, created) = st
        .services
        .register_pi(&req, Some(&peer.ip().to_string()))
        .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(node),
    ))
}

/// `{id}` path segment: a node UUID or an 8-hex serial.
pub(super) fn parse_node_ref(id: &str) -> Result<NodeRef, ApiErr> {
    NodeRef::parse(id).map_err(|e| ApiErr::bad_request(e.to_string()))
}

/// Both callbacks: the body is kept whole in the event log; the reply is the node.
async fn callback(
    st: AppState,
    kind: &'static str,
    id: String,
    peer: SocketAddr,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Node>, ApiErr> {
    let boot_id = super::boot_id(&id, "reports go to the callback_url of the boot answer")?;
    let body = body?.0;
    let ip = peer.ip().to_string();
    let metrics = st.metrics.clone();
    let s = &st.services;
    let (outcome, metric_kind) = if kind == "installed" {
        let report: InstalledReport = serde_json::from_value(body.clone())
            .map_err(|e| ServiceError::Unprocessable(format!("installed report: {e}")))?;
        // Upstream reports a failure on the installed route: it counts as one.
        let metric_kind = match report.success {
            true => kind,
            false => "install_failed",
        };
        let outcome = s.installed(boot_id, body, report, Some(ip)).await;
        (outcome, metric_kind)
    } else {
        let report: InstallFailedReport = serde_json::from_value(body.clone())
            .map_err(|e| ServiceError::Unprocessable(format!("install-failed report: {e}")))?;
        let outcome = s.install_failed(boot_id, body, report, Some(ip)).await;
        (outcome.map(|node| (node, Default::default())), kind)
    };
    // Counted: reports taken, and those whose transition was refused (409; only counted,
    // their body is not stored). Not counted: no such boot (404), another address (403),
    // not a report (422), over a rate limit (429).
    match &outcome {
        Ok(_) => metrics.callback(metric_kind, "ok"),
        Err(ServiceError::Transition(_)) => metrics.callback(metric_kind, "rejected"),
        Err(_) => {}
    }
    let (node, repair) = outcome?;
    if !repair.is_empty() {
        // mkfs.ext4 and file moves: the I/O pool's, not the registry's.
        let n = node.clone();
        blocking(&st, move |s| {
            s.repair_images(&n, &repair);
            Ok(())
        })
        .await?;
    }
    Ok(Json(node))
}

pub async fn installed(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Node>, ApiErr> {
    callback(st, "installed", id, peer, body).await
}

pub async fn install_failed(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Node>, ApiErr> {
    callback(st, "install_failed", id, peer, body).await
}
