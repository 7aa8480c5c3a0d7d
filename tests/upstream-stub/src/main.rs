//! A stand-in for upstream PureBoot's controller, answering exactly in its shape: the boot
//! answer carries only upstream's `PiBootResponse` fields (no pureboot extensions), and the
//! callback demands authentication a Pi does not have (401), as upstream's real server does.
//! Every POST is appended to `--record` as one JSON line `{"path": …, "body": …}`, so a
//! scenario can check what pi-init reported.
//!
//!   pureboot-upstream-stub --listen 127.0.0.1:8090 --public http://10.0.2.2:8090 \
//!       --nfs-server 10.0.2.2 --nfs-path /srv/nfsroot/node1 --record posts.jsonl

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;

struct Args {
    listen: String,
    public: String,
    nfs_server: String,
    nfs_path: String,
    record: PathBuf,
}

/// The node id upstream puts in the callback URL (a UUID; never the serial).
const NODE_ID: &str = "5f0c1b2a-7d3e-4c55-9a10-2b6e8d4f0a11";

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut listen, mut public, mut server, mut path, mut record) = (None, None, None, None, None);
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--listen" => listen = Some(v),
            "--public" => public = Some(v),
            "--nfs-server" => server = Some(v),
            "--nfs-path" => path = Some(v),
            "--record" => record = Some(PathBuf::from(v)),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    let need = |v: Option<String>, n: &str| v.ok_or(format!("--{n} is required"));
    Ok(Args {
        listen: need(listen, "listen")?,
        public: need(public, "public")?,
        nfs_server: need(server, "nfs-server")?,
        nfs_path: need(path, "nfs-path")?,
        record: record.ok_or("--record is required")?,
    })
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pureboot-upstream-stub: {e}");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(&a.listen).unwrap_or_else(|e| {
        eprintln!("pureboot-upstream-stub: bind {}: {e}", a.listen);
        std::process::exit(1)
    });
    eprintln!("pureboot-upstream-stub: listening on {}", a.listen);
    for conn in listener.incoming().flatten() {
        if let Err(e) = serve(&a, conn) {
            eprintln!("pureboot-upstream-stub: {e}");
        }
    }
}

fn serve(a: &Args, mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0).min(1 << 20);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    eprintln!("pureboot-upstream-stub: {method} {target}");
    let (status, answer) = match (method, target.split('?').next().unwrap_or("")) {
        ("GET", "/api/v1/boot/pi") => (
            "200 OK",
            serde_json::json!({
                "state": "installing",
                "message": "Booting from NFS",
                "action": "nfs_boot",
                "image_url": null,
                "target_device": null,
                "callback_url": format!("{}/api/v1/nodes/{NODE_ID}/installed", a.public),
                "nfs_server": a.nfs_server,
                "nfs_path": a.nfs_path,
            }),
        ),
        ("POST", path) => {
            let body: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into());
            let line = serde_json::json!({ "path": path, "body": body });
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&a.record)?;
            writeln!(f, "{line}")?;
            (
                "401 Unauthorized",
                serde_json::json!({ "detail": "Not authenticated" }),
            )
        }
        _ => (
            "404 Not Found",
            serde_json::json!({ "detail": "Not Found" }),
        ),
    };
    let text = answer.to_string();
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )
}
