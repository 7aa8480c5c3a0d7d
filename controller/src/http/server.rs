//! The accept loop: the axum router on hyper's HTTP/1 connection, with what `axum::serve`
//! does not offer. A client must send a request's headers within `header_timeout` (a
//! slowloris is dropped instead of holding a connection forever), and at most
//! `max_connections` are open at once (further clients wait in the listen backlog instead of
//! exhausting file descriptors). Shutdown stops accepting, lets in-flight requests finish
//! and closes idle keep-alive connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let (stream, peer, slot) = accepted;
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits.header_timeout,
            slot,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    // Every connection task watches this channel: sending asks them to finish gracefully.
    let _ = stop_tx.send(());
    // All slots back = every connection closed.
    let _ = slots.acquire_many(max as u32).await;
}

/// Waits for a free slot, then for a client. Accept errors (EMFILE, ECONNABORTED) are
/// logged and retried after a pause instead of ending the server.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    let slot = slots.clone().acquire_owned().await.expect("never closed");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (stream, peer, slot),
            Err(e) => {
                log::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    _slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<()>,
) {
    // Handlers read the peer address through axum's `ConnectInfo` extension.
    let service = router.map_request(move |req: Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and garbage from clients: theirs to fix, not an error here.
        log::debug!("connection from {peer}: {e}");
    }
}
