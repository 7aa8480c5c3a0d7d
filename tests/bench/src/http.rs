//! A minimal HTTP/1.1 client for the boot storm: one connection per request
//! (`Connection: close`), as each Pi opens its own, bounded by connect/read timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(15);

pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Sends one request to `addr` and reads the whole reply.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Result<Response, String> {
    let what = || format!("{method} {path}");
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("{}: {}{e}", what(), connect_failed(addr)))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req += &format!("Authorization: Bearer {t}\r\n");
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    req += "\r\n";
    req += body;
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{}: send: {e}", what()))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{}: read: {e}", what()))?;
    parse(&raw).ok_or_else(|| format!("{}: malformed reply ({} bytes)", what(), raw.len()))
}

/// What an error of [`request`] says when it found no server at `addr` (the request never
/// reached one), as against a reset or a cut reply after it did.
pub fn connect_failed(addr: SocketAddr) -> String {
    format!("connect {addr}: ")
}

fn parse(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Response {
        status,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_says_so() {
        // Nothing listens on a port just closed.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = request(addr, "GET", "/", None, None).err().unwrap();
        assert!(e.contains(&connect_failed(addr)), "{e}");
    }

    #[test]
    fn status_and_body_are_split_at_the_blank_line() {
        let r = parse(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (201, "{}"));
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_none());
        assert!(parse(b"garbage\r\n\r\n").is_none());
    }
}
