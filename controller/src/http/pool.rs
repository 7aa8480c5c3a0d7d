//! Management API of the pool of NFS servers (`[[nfs.servers]]`, `service/pool.rs`):
//! the servers with their nodes, the images on each, copying them, pins and moves.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::error::ApiErr;
use super::pi::parse_node_ref;
use super::{admin_blocking, AppState, IdParam};
use crate::service::pool::{ImageOnServer, Moved, PinTarget, ServerReport, Synced};

pub async fn servers(State(st): State<AppState>) -> Result<Json<Vec<ServerReport>>, ApiErr> {
    Ok(Json(admin_blocking(&st, |s| s.nfs_servers()).await?))
}

pub async fn image_status(State(st): State<AppState>) -> Result<Json<Vec<ImageOnServer>>, ApiErr> {
    Ok(Json(admin_blocking(&st, |s| s.image_status()).await?))
}

/// Copies what servers lack; large images are better copied with the CLI's `image sync`
/// (no request deadline).
pub async fn image_sync(State(st): State<AppState>) -> Result<Json<Vec<Synced>>, ApiErr> {
    Ok(Json(admin_blocking(&st, |s| s.image_sync()).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    /// A server's address; null clears the pin.
    server: Option<String>,
}

/// `PUT /api/v1/nodes/{id}/nfs-server`.
pub async fn pin_node(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    body: Result<Json<PinBody>, JsonRejection>,
) -> Result<Json<PinBodyOut>, ApiErr> {
    let target = PinTarget::Node(parse_node_ref(&id)?);
    pin(st, target, body?.0.server).await
}

/// `PUT /api/v1/groups/{id}/nfs-server`.
pub async fn pin_group(
    State(st): State<AppState>,
    IdParam(name): IdParam,
    body: Result<Json<PinBody>, JsonRejection>,
) -> Result<Json<PinBodyOut>, ApiErr> {
    pin(st, PinTarget::Group(name), body?.0.server).await
}

#[derive(Debug, serde::Serialize)]
pub struct PinBodyOut {
    server: Option<String>,
}

async fn pin(
    st: AppState,
    target: PinTarget,
    server: Option<String>,
) -> Result<Json<PinBodyOut>, ApiErr> {
    let s2 = server.clone();
    admin_blocking(&st, move |s| s.pin_nfs_server(&target, s2.as_deref())).await?;
    Ok(Json(PinBodyOut { server }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    server: String,
    /// The operator says the node is powered off.
    #[serde(default)]
    off: bool,
}

/// `POST /api/v1/nodes/{id}/move`.
pub async fn move_node(
    State(st): State<AppState>,
    IdParam(id): IdParam,
    body: Result<Json<MoveBody>, JsonRejection>,
) -> Result<Json<Moved>, ApiErr> {
    let r = parse_node_ref(&id)?;
    let b = body?.0;
    Ok(Json(
        admin_blocking(&st, move |s| s.move_node(&r, &b.server, b.off)).await?,
    ))
}
