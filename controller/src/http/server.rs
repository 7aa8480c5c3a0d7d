//! The accept loop: the axum router on hyper's HTTP/1 connection, with what `axum::serve`
//! does not offer. A client must send a request's headers within `header_timeout` (a
//! slowloris is dropped instead of holding a connection forever), and at most
//! `max_connections` are open at once (further clients wait in the listen backlog instead of
//! exhausting file descriptors). One client address holds at most `per_address` of them:
//! past that its new connections are closed at once, so a client opening idle connections
//! cannot take the slots every Pi needs (1,100 half-open connections from one machine
//! once made 100 of 244 boots fail). Shutdown stops accepting, lets in-flight requests
//! finish and closes idle keep-alive connections.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
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
    /// Open connections from one address at most (0 = no cap).
    pub per_address: usize,
    /// After shutdown is asked, how long open requests may still take; connections
    /// still open then are dropped.
    pub shutdown_grace: Duration,
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
    let per_address = PerAddress::new(limits.per_address);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let (stream, peer, slot) = accepted;
        let Some(held) = per_address.take(peer.ip()) else {
            // Closed before a byte is read; the global slot goes back to the next client.
            log::debug!("connection from {peer} closed: over max_connections_per_address");
            drop(stream);
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits.header_timeout,
            (slot, held),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    // Every connection task watches this channel: sending asks them to finish gracefully.
    let _ = stop_tx.send(());
    // All slots back = every connection closed; bounded, so a stuck client cannot hold
    // the process.
    let all_closed = slots.acquire_many(max as u32);
    if tokio::time::timeout(limits.shutdown_grace, all_closed)
        .await
        .is_err()
    {
        log::warn!(
            "shutdown: connections still open after {:?}; dropping them",
            limits.shutdown_grace
        );
    }
}

/// Open connections per client address.
#[derive(Clone)]
struct PerAddress {
    cap: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection of an address; dropping it gives the place back.
struct AddressSlot {
    addr: IpAddr,
    table: Option<PerAddress>,
}

impl PerAddress {
    fn new(cap: usize) -> PerAddress {
        PerAddress {
            cap,
            open: Arc::default(),
        }
    }

    /// A place for one more connection of `addr`, or `None` when it holds `cap` already.
    fn take(&self, addr: IpAddr) -> Option<AddressSlot> {
        if self.cap == 0 {
            return Some(AddressSlot { addr, table: None });
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(addr).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            addr,
            table: Some(self.clone()),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some(t) = &self.table {
            let mut open = t.open.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = open.get_mut(&self.addr) {
                *n -= 1;
                if *n == 0 {
                    // The table holds only addresses with connections open.
                    open.remove(&self.addr);
                }
            }
        }
    }
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
    _slots: (OwnedSemaphorePermit, AddressSlot),
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
    let conn = builder.serve_connection(
        TokioIo::new(JsonErrors::new(stream)),
        TowerToHyperService::new(service),
    );
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

/// The connection's stream, with hyper's own error answers (400, 408, 414, 431 for bytes
/// it cannot parse, written before any route runs, with an empty body) given the JSON body
/// every other error has. Recognised by their exact head: a 4xx/5xx status line, then
/// `connection: close` and `content-length: 0`, and nothing after the head; the router's
/// answers always carry a JSON body.
struct JsonErrors {
    inner: TcpStream,
    /// A replacement being written: (bytes, written so far, length of hyper's original).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl JsonErrors {
    fn new(inner: TcpStream) -> Self {
        JsonErrors {
            inner,
            pending: None,
        }
    }
}

/// The JSON version of one of hyper's bare error answers, or `None` for anything else.
fn json_error_answer(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let (status_line, fields) = rest.split_once("\r\n")?;
    let code: u16 = status_line.get(..3)?.parse().ok()?;
    if !(400..600).contains(&code)
        || !fields.starts_with("connection: close\r\ncontent-length: 0\r\n")
        || !fields.ends_with("\r\n\r\n")
        || fields.contains("content-type")
    {
        return None;
    }
    let (error, detail) = match code {
        408 => ("timeout", "request headers not received in time"),
        414 => ("uri_too_long", "request target too long"),
        431 => ("headers_too_large", "request headers too large or too many"),
        c if c >= 500 => ("internal", "the server could not answer this request"),
        _ => ("bad_request", "malformed HTTP request"),
    };
    let body = serde_json::json!({"error": error, "detail": detail}).to_string();
    let fields = fields.replacen(
        "content-length: 0\r\n",
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ),
        1,
    );
    Some(format!("HTTP/1.1 {status_line}\r\n{fields}{body}").into_bytes())
}

impl tokio::io::AsyncRead for JsonErrors {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for JsonErrors {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.pending.is_none() {
            match json_error_answer(buf) {
                Some(answer) => this.pending = Some((answer, 0, buf.len())),
                None => return std::pin::Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        let (answer, done, original) = this.pending.as_mut().expect("set above");
        while *done < answer.len() {
            match std::pin::Pin::new(&mut this.inner).poll_write(cx, &answer[*done..]) {
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => {
                    this.pending = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = *original;
        this.pending = None;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then hands each answer over in one buffer, which is what the
    // check above looks at.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{json_error_answer, PerAddress};

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_places_back() {
        let table = PerAddress::new(2);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = table.take(a).unwrap();
        let _second = table.take(a).unwrap();
        assert!(table.take(a).is_none(), "third of one address");
        assert!(table.take(b).is_some(), "another address");
        drop(first);
        assert!(table.take(a).is_some(), "a place given back");
        let unlimited = PerAddress::new(0);
        let held: Vec<_> = (0..1000).map_while(|_| unlimited.take(a)).collect();
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn hypers_bare_errors_get_a_json_body() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 26 Nov 2026 11:20:30 GMT\r\n\r\n";
        let out = String::from_utf8(json_error_answer(bare).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{out}");
        assert!(head.contains("content-type: application/json"), "{out}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{out}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "headers_too_large");
        // The router's own answers pass untouched.
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(json_error_answer(ours).is_none());
        assert!(json_error_answer(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        )
        .is_none());
    }
}
