//! The controller against hostile clients, on the real server (127.0.0.1, port 0): broken
//! HTTP on a raw socket, oversized requests, slowloris, path tricks in serials and image
//! names, and missing or wrong admin tokens. Every answer is a 4xx, never a 500, and carries
//! the JSON error, also hyper's own answers to bytes it cannot parse (before any route runs).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{post_from, report_path, spawn_app, spawn_app_with, TestApp, TOKEN};
use serde_json::{json, Value};

const SERIAL: &str = "d83add36";

fn addr(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

/// Sends raw bytes, reads until the server closes; (status, body). Bounded by 10 s.
fn raw(app: &TestApp, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr(app)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    // A reset after the answer (hyper closes with unread input) still leaves the answer.
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in answer {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn json_error(what: &str, body: &str) -> Value {
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {body:?}"));
    assert!(
        v["error"].is_string() && v["detail"].is_string(),
        "{what}: not an ApiError: {v}"
    );
    v
}

#[test]
fn malformed_http_is_refused_by_the_parser() {
    let app = spawn_app();
    let long_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
        (0..500)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), 400),
        ("no version", b"GET /healthz\r\n\r\n".to_vec(), 400),
        ("space in target", b"GET /a b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(), 400),
        ("NUL in target", b"GET /api/v1/boot/pi?serial=d83a\0dd36 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(), 400),
        ("bad header name", b"GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n".to_vec(), 400),
        ("bad content-length", b"POST /api/v1/nodes/register-pi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n".to_vec(), 400),
        ("two content-lengths", b"POST /api/v1/nodes/register-pi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(), 400),
        ("huge header", long_header.into_bytes(), 431),
        ("huge target", format!("GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "a".repeat(100 * 1024)).into_bytes(), 414),
        ("too many headers", many_headers.into_bytes(), 431),
    ];
    for (what, bytes, want) in cases {
        let (status, body) = raw(&app, &bytes);
        assert_eq!(status, want, "{what}");
        json_error(what, &body);
    }
    // Percent-encoding that is not UTF-8 in a path segment.
    for (method, path) in [
        ("GET", "/api/v1/nodes/%ff"),
        ("POST", "/api/v1/nodes/%ff/installed"),
        ("POST", "/api/v1/nodes/%ff/install-failed"),
    ] {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let (status, body) = raw(&app, req.as_bytes());
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert_eq!(json_error(path, &body)["error"], "bad_request");
    }
    assert_eq!(app.get("/healthz").0, 200, "server still answers");
}

#[test]
fn oversized_and_lying_bodies_get_json_errors() {
    let app = spawn_app(); // body limit 4096 bytes
    let path = "/api/v1/nodes/register-pi";
    let big = format!(
        "{{\"serial\": \"{SERIAL}\", \"pad\": \"{}\"}}",
        "x".repeat(100_000)
    );
    let declared = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000000\r\nConnection: close\r\n\r\n{{"
    );
    // Chunked, no length: the limit must hold while streaming.
    let chunk = "y".repeat(8192);
    let chunked = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let not_json = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let bad_utf8 = b"POST /api/v1/nodes/register-pi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"serial\":\"\xff\"}";
    // Deep nesting must not overflow the stack (serde stops at the first wrong type).
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let cases: Vec<(&str, (u16, String), u16)> = vec![
        ("big body", ureq_raw(&app, path, &big), 413),
        ("declared 1 GB", raw(&app, declared.as_bytes()), 413),
        ("chunked over limit", raw(&app, chunked.as_bytes()), 413),
        ("not json content type", raw(&app, not_json.as_bytes()), 415),
        ("invalid utf-8", raw(&app, bad_utf8), 400),
        ("deep nesting", ureq_raw(&app, path, &deep), 422),
    ];
    for (what, (status, body), want) in cases {
        assert_eq!(status, want, "{what}: {body}");
        json_error(what, &body);
    }
    assert_eq!(
        app.admin_get("/api/v1/nodes").1,
        json!([]),
        "nothing registered"
    );
}

/// (status, body text) of any answer; a transport error fails the test.
fn answer(what: &str, result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{what}: transport error {e}"),
    };
    (resp.status(), resp.into_string().unwrap())
}

fn ureq_raw(app: &TestApp, path: &str, body: &str) -> (u16, String) {
    let req = ureq::post(&app.url(path)).set("Content-Type", "application/json");
    answer(path, req.send_string(body))
}

fn admin_raw(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let req =
        ureq::request(method, &app.url(path)).set("Authorization", &format!("Bearer {TOKEN}"));
    let (status, text) = answer(
        path,
        match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        },
    );
    (status, json_error(path, &text))
}

#[test]
fn path_tricks_in_serials_and_image_names_are_refused() {
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL}));
    let long = "a".repeat(5000);
    let boot_queries = [
        "serial=..%2F..%2Fetc%2Fpasswd".to_string(),
        "serial=%2e%2e%2f%2e%2e".to_string(),
        "serial=d83add36%00".to_string(),
        "serial=d83a%00d36".to_string(),
        "serial=d83add36%2F..".to_string(),
        "serial=%c0%ae%c0%ae".to_string(), // overlong UTF-8 '.'
        format!("serial={long}"),
        format!("serial={SERIAL}&full_serial={long}"),
    ];
    for q in &boot_queries {
        let (status, body) = app.boot(q);
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["error"], "bad_request", "{q}: {body}");
    }
    let ids = [
        "..%2F..%2Fetc",
        "%2e%2e",
        "..",
        "d83add36%00",
        "%00",
        "d83add36%2F..%2F..",
        &long[..],
    ];
    for id in ids {
        for (method, path, body) in [
            ("GET", format!("/api/v1/nodes/{id}"), None),
            ("DELETE", format!("/api/v1/nodes/{id}"), None),
            (
                "POST",
                format!("/api/v1/nodes/{id}/assign"),
                Some(json!({"workflow_id": "pi-diskless-nfs"})),
            ),
        ] {
            let (status, e) = admin_raw(&app, method, &path, body);
            assert!(
                status == 400 || status == 404,
                "{method} {path}: {status} {e}"
            );
        }
        let (status, e) = app.post(
            &format!("/api/v1/nodes/{id}/installed"),
            &json!({"success": true, "mode": "nfs_boot"}),
        );
        assert!(
            status == 400 || status == 404,
            "installed {id}: {status} {e}"
        );
        assert_eq!(
            e["error"],
            if status == 400 {
                "bad_request"
            } else {
                "not_found"
            }
        );
    }
    // Fits the 4 KiB body limit, unlike `long`.
    let long_name = "n".repeat(1000);
    let image_names = [
        "..",
        "../etc",
        "%2e%2e",
        "a/b",
        "a\0b",
        ".hidden",
        "/abs",
        &long_name[..],
    ];
    for name in image_names {
        let (status, e) = admin_raw(
            &app,
            "POST",
            "/api/v1/nodes",
            Some(json!({"serial": "0000aaaa", "base_image": name})),
        );
        assert_eq!(status, 400, "add base_image {name:?}: {e}");
        assert_eq!(e["error"], "bad_request");
        let (status, e) = admin_raw(
            &app,
            "PATCH",
            &format!("/api/v1/nodes/{SERIAL}"),
            Some(json!({"base_image": name})),
        );
        assert_eq!(status, 400, "patch base_image {name:?}: {e}");
    }
    for serial in [
        "../../x",
        "d83a\0d36",
        "%2e%2e%2e%2e",
        "..",
        "D83ADD36/",
        &long_name[..],
    ] {
        let (status, e) = admin_raw(
            &app,
            "POST",
            "/api/v1/nodes",
            Some(json!({"serial": serial})),
        );
        assert_eq!(status, 400, "add serial {serial:?}: {e}");
    }
    let (status, e) = app.post(
        "/api/v1/nodes/register-pi",
        &json!({"serial": "../../../tmp", "mac": "b8:27:eb:00:00:01"}),
    );
    assert_eq!(status, 400, "register-pi: {e}");

    // Nothing was created beside the registry and the export, nor under the export but
    // the node the test added.
    let mut top: Vec<String> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("registry.db"))
        .collect();
    top.sort();
    assert_eq!(top, ["nfsroot"]);
    let nodes = app.nfs_root().join("nodes");
    if nodes.exists() {
        for e in std::fs::read_dir(&nodes).unwrap() {
            let name = e.unwrap().file_name();
            assert_eq!(name, SERIAL, "unexpected node folder {name:?}");
        }
    }
    assert_eq!(app.node(SERIAL)["state"], "discovered", "node untouched");
}

#[test]
fn missing_or_wrong_admin_tokens_get_401_json() {
    // Every shape of wrong token, from one address: not slowed here (hostile_bounded.rs is
    // about the slowing).
    let app = spawn_app_with(|c| c.admin_token_max_delay_ms = 0);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty bearer", Some("Bearer ".into())),
        ("wrong", Some("Bearer wrong-token".into())),
        (
            "prefix of the token",
            Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        ),
        ("token plus suffix", Some(format!("Bearer {TOKEN}x"))),
        ("basic scheme", Some(format!("Basic {TOKEN}"))),
        ("no scheme", Some(TOKEN.to_string())),
        ("lowercase scheme", Some(format!("bearer{TOKEN}"))),
        ("oversized", Some(format!("Bearer {}", "t".repeat(6000)))),
    ];
    for (what, header) in cases {
        for (method, path) in [
            ("GET", "/api/v1/nodes"),
            ("POST", "/api/v1/nodes"),
            ("DELETE", "/api/v1/nodes/d83add36"),
            ("GET", "/api/v1/images"),
        ] {
            let mut req = ureq::request(method, &app.url(path));
            if let Some(h) = &header {
                req = req.set("Authorization", h);
            }
            let resp = match req.send_json(json!({"serial": SERIAL})) {
                Ok(r) => panic!("{what} {method} {path}: accepted with {}", r.status()),
                Err(ureq::Error::Status(_, r)) => r,
                Err(e) => panic!("{what}: transport error {e}"),
            };
            assert_eq!(resp.status(), 401, "{what} {method} {path}");
            assert_eq!(resp.header("WWW-Authenticate"), Some("Bearer"), "{what}");
            let e = json_error(what, &resp.into_string().unwrap());
            assert_eq!(e["error"], "unauthorized", "{what}");
        }
    }
    assert_eq!(
        app.admin_get("/api/v1/nodes").1,
        json!([]),
        "nothing was added"
    );
}

/// Opens `n` connections that each send a boot request's headers a byte at a time, every
/// `pace`, from one thread; returns the thread (it reports how many connections the server
/// closed before their headers were done).
fn slowloris(
    app: &TestApp,
    n: usize,
    pace: Duration,
    run_for: Duration,
) -> std::thread::JoinHandle<usize> {
    let addr = addr(app);
    let request = format!(
        "GET /api/v1/boot/pi?serial={SERIAL} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(200)
    );
    let mut socks: Vec<Option<TcpStream>> = (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            Some(s)
        })
        .collect();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut closed = 0;
        let mut i = 0;
        while start.elapsed() < run_for && i < request.len() {
            for slot in socks.iter_mut() {
                let Some(s) = slot else { continue };
                if s.write_all(&request.as_bytes()[i..=i]).is_err() {
                    closed += 1;
                    *slot = None;
                }
            }
            i += 1;
            std::thread::sleep(pace);
        }
        // A closed socket can still accept a write or two (the peer's RST arrives later):
        // a read tells for sure. Hyper may answer 408 first.
        for s in socks.iter_mut().flatten() {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // EOF, a reset, or hyper's 408 before closing.
                _ => closed += 1,
            }
        }
        closed
    })
}

fn timed_boot(app: &TestApp) -> Duration {
    let start = Instant::now();
    let (status, body) = app.boot(&format!("serial={SERIAL}"));
    assert_eq!(status, 200, "{body}");
    start.elapsed()
}

#[test]
fn slowloris_neither_delays_boots_nor_keeps_its_connections() {
    // The attacker and the booting client share 127.0.0.1 here: no per-address cap.
    let app = spawn_app_with(|c| {
        c.header_timeout_secs = 2;
        c.max_connections_per_address = 0;
    });
    app.add_node(json!({"serial": SERIAL}));
    let attack = slowloris(&app, 300, Duration::from_millis(20), Duration::from_secs(5));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        worst = worst.max(timed_boot(&app));
        std::thread::sleep(Duration::from_millis(100));
    }
    // pi-init gives up on a controller answer after 5 s (pureboot.timeout); 2 s leaves room
    // for a loaded CI machine while a blocked listener would still fail it.
    assert!(
        worst < Duration::from_secs(2),
        "a boot took {worst:?} during the slowloris"
    );
    let closed = attack.join().unwrap();
    assert_eq!(
        closed, 300,
        "every slow connection was cut at the header timeout"
    );
    eprintln!("slowloris: 300 slow connections cut, 20 boots, slowest {worst:?}");
}

#[test]
fn connection_cap_frees_slots_at_the_header_timeout() {
    let app = spawn_app_with(|c| {
        c.header_timeout_secs = 1;
        c.max_connections = 16;
    });
    app.add_node(json!({"serial": SERIAL}));
    // 64 connections that never finish their headers hold every slot.
    let attack = slowloris(&app, 64, Duration::from_millis(100), Duration::from_secs(6));
    std::thread::sleep(Duration::from_millis(300));
    let took = timed_boot(&app);
    // Each wave of 16 is cut after 1 s; the boot waits for at most a few waves.
    assert!(
        took < Duration::from_secs(6),
        "boot answered after {took:?}"
    );
    assert_eq!(attack.join().unwrap(), 64);
    eprintln!("capped: boot answered after {took:?} behind 64 slow connections");
}

// ---- who may change a node -----------------------------------------------------------

#[test]
fn reports_are_accepted_only_on_the_boot_id_and_from_the_address_that_booted() {
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    app.add_node(json!({"serial": "0000beef", "workflow_id": "pi-diskless-nfs"}));
    let (_, a) = app.boot(&format!("serial={SERIAL}"));
    let (_, b) = app.boot("serial=0000beef");
    let ok = json!({"success": true, "mode": "nfs_boot"});
    let node_id = app.node(SERIAL)["id"].as_str().unwrap().to_string();
    // The serial and the node id name no boot (the node id is visible to many).
    for id in [SERIAL, "D83ADD36", &node_id] {
        for route in ["installed", "install-failed"] {
            let (status, e) = app.post(
                &format!("/api/v1/nodes/{id}/{route}"),
                &json!({"success": true, "mode": "nfs_boot", "error": "x"}),
            );
            assert_eq!(status, 404, "{id}/{route}: {e}");
            assert_eq!(e["error"], "not_found");
        }
    }
    assert_eq!(app.node(SERIAL)["state"], "installing", "nothing moved it");
    // Node B's boot id reports for node B only.
    let (status, n) = app.post(&report_path(&b, false), &ok);
    assert_eq!((status, n["serial"].as_str()), (200, Some("0000beef")));
    assert_eq!(app.node(SERIAL)["state"], "installing");
    // Another address (another machine) with A's real boot id: refused, nothing recorded.
    let before = app.event_kinds(SERIAL).len();
    let (status, e) = post_from(&app, "127.0.0.2", &report_path(&a, false), &ok);
    assert_eq!(status, 403, "{e}");
    assert_eq!(e["error"], "forbidden");
    let (status, _) = post_from(
        &app,
        "127.0.0.2",
        &report_path(&a, true),
        &json!({"error": "x"}),
    );
    assert_eq!(status, 403);
    assert_eq!(app.event_kinds(SERIAL).len(), before);
    // The booting address itself.
    let (status, n) = post_from(&app, "127.0.0.1", &report_path(&a, false), &ok);
    assert_eq!((status, n["state"].as_str()), (200, Some("active")), "{n}");

    // With the address binding off, the id alone is the key.
    let open = spawn_app_with(|c| c.reports_from_boot_address = false);
    open.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let (_, a) = open.boot(&format!("serial={SERIAL}"));
    let (status, _) = post_from(&open, "127.0.0.2", &report_path(&a, false), &ok);
    assert_eq!(status, 200);
}

#[test]
fn register_pi_cannot_rewrite_another_node_nor_flag_it() {
    let app = spawn_app();
    let mine = json!({"serial": SERIAL, "mac": "dc:a6:32:01:02:03", "model": "pi4", "ip_address": "10.0.2.15"});
    assert_eq!(app.post("/api/v1/nodes/register-pi", &mine).0, 201);
    let before = app.node(SERIAL);
    let hostile = json!({"serial": SERIAL, "mac": "dc:a6:32:66:66:66", "model": "evil", "ip_address": "10.6.6.6"});
    let (status, e) = app.post("/api/v1/nodes/register-pi", &hostile);
    assert_eq!(status, 409, "{e}");
    let same_mac = json!({"serial": SERIAL, "mac": "dc:a6:32:01:02:03", "model": "evil", "ip_address": "10.6.6.6"});
    assert_eq!(app.post("/api/v1/nodes/register-pi", &same_mac).0, 200);
    let after = app.node(SERIAL);
    for field in ["mac", "model", "last_ip", "conflict", "state"] {
        assert_eq!(after[field], before[field], "{field} unchanged");
    }
    assert_eq!(after["conflict"], Value::Null);
    assert!(!app.event_kinds(SERIAL).contains(&"conflict".to_string()));
}

#[test]
fn auto_register_off_is_not_bypassed_by_register_pi() {
    let app = spawn_app_with(|c| c.auto_register = false);
    let (status, e) = app.post(
        "/api/v1/nodes/register-pi",
        &json!({"serial": "feedf00d", "mac": "dc:a6:32:00:00:01"}),
    );
    assert_eq!(status, 403, "{e}");
    assert_eq!(e["error"], "forbidden");
    assert_eq!(app.admin_get("/api/v1/nodes").1, json!([]));
    assert_eq!(app.admin_get("/api/v1/nodes/feedf00d").0, 404);
}

#[test]
fn addresses_are_checked_as_addresses() {
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let (_, r) = app.boot(&format!("serial={SERIAL}"));
    for bad in [
        "\u{1b}[31mPWNED\u{1b}[0m",
        "10.0.2.15\n",
        "{{ 7*7 }}",
        "10.0.2.256",
        "",
    ] {
        let (status, e) = app.post(
            &report_path(&r, false),
            &json!({"success": true, "mode": "nfs_boot", "ip_address": bad}),
        );
        assert_eq!(status, 422, "{bad:?}: {e}");
        let (status, _) = app.post(
            "/api/v1/nodes/register-pi",
            &json!({"serial": "0000aaaa", "mac": "dc:a6:32:00:00:01", "ip_address": bad}),
        );
        assert_eq!(status, 422, "register {bad:?}");
    }
    let (status, _) = app.post(
        "/api/v1/nodes/register-pi",
        &json!({"serial": "0000aaaa", "mac": "dc:a6:32:00:00:01", "model": "\u{1b}]0;owned\u{7}"}),
    );
    assert_eq!(status, 422, "model with escapes");
    let node = app.node(SERIAL);
    assert_eq!(node["state"], "installing", "no bad report was taken");
    assert_eq!(node["last_ip"], "127.0.0.1");
    let (status, n) = app.post(
        &report_path(&r, false),
        &json!({"success": true, "mode": "nfs_boot", "ip_address": "fe80::1"}),
    );
    // The node's address is its boot's, not what a report says.
    assert_eq!((status, n["last_ip"].as_str()), (200, Some("127.0.0.1")));
}

#[test]
fn the_failure_metric_counts_recorded_failures_only() {
    let app = spawn_app();
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let failures = || app.metric("pureboot_node_failures_total");
    for _ in 0..5 {
        // 404: no such boot; 422: not a report.
        app.post(
            &format!("/api/v1/nodes/{SERIAL}/install-failed"),
            &json!({"error": "x"}),
        );
        app.post(
            "/api/v1/nodes/5f0c1b2a-0000-4000-8000-00000000abcd/install-failed",
            &json!({"error": "x"}),
        );
        app.post(
            "/api/v1/nodes/5f0c1b2a-0000-4000-8000-00000000abcd/install-failed",
            &json!({"nope": 1}),
        );
    }
    assert_eq!(failures(), "0");
    let (_, r) = app.boot(&format!("serial={SERIAL}"));
    assert_eq!(app.post(&report_path(&r, true), &json!({"nope": 1})).0, 422);
    assert_eq!(
        failures(),
        "0",
        "a malformed report on a real boot is no failure"
    );
    assert_eq!(
        app.post(&report_path(&r, true), &json!({"error": "disk"}))
            .0,
        200
    );
    assert_eq!(failures(), "1");
    assert_eq!(
        app.post(&report_path(&r, true), &json!({"error": "again"}))
            .0,
        409
    );
    assert_eq!(failures(), "1", "a refused transition is no new failure");
}

#[test]
fn the_management_api_can_have_its_own_listener() {
    let app = spawn_app_with(|c| c.admin_listen = Some("127.0.0.1:0".into()));
    let admin = app.admin_base.clone().expect("admin listener");
    // The boot network's listener: Pi routes and health only.
    for path in [
        "/api/v1/nodes",
        "/api/v1/workflows",
        "/api/v1/images",
        "/metrics",
    ] {
        let resp = ureq::get(&app.url(path))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call();
        match resp {
            Err(ureq::Error::Status(404, r)) => {
                json_error(path, &r.into_string().unwrap());
            }
            other => panic!("{path} on the Pi listener: {other:?}"),
        }
    }
    assert_eq!(app.get("/healthz").0, 200);
    assert_eq!(app.boot(&format!("serial={SERIAL}")).0, 200);
    // The admin listener: management API with the token, no Pi routes.
    let nodes: Value = ureq::get(&format!("{admin}/api/v1/nodes"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(nodes[0]["serial"], SERIAL);
    assert!(ureq::get(&format!("{admin}/metrics")).call().is_ok());
    let boot = ureq::get(&format!("{admin}/api/v1/boot/pi?serial={SERIAL}")).call();
    assert!(matches!(boot, Err(ureq::Error::Status(404, _))));
}

// ---- bounds --------------------------------------------------------------------------

#[test]
fn discovered_nodes_are_capped() {
    let app = spawn_app_with(|c| c.max_discovered_nodes = 5);
    for i in 0..5 {
        assert_eq!(app.boot(&format!("serial=0000000{i}")).0, 200);
    }
    let (status, e) = app.boot("serial=00000009");
    assert_eq!(status, 429, "{e}");
    assert_eq!(e["error"], "too_many_requests");
    let (status, _) = app.post(
        "/api/v1/nodes/register-pi",
        &json!({"serial": "0000000a", "mac": "dc:a6:32:00:00:0a"}),
    );
    assert_eq!(status, 429);
    assert_eq!(
        app.admin_get("/api/v1/nodes").1.as_array().unwrap().len(),
        5
    );
    // Known nodes still boot; an operator's node add is not a discovery.
    assert_eq!(app.boot("serial=00000001").0, 200);
    app.add_node(json!({"serial": "0000000b", "workflow_id": "pi-diskless-nfs"}));
}

#[test]
fn unknown_serials_and_chatty_nodes_are_rate_limited() {
    let app = spawn_app_with(|c| {
        c.auto_register = false;
        c.unknown_serials_per_minute = 10;
        c.node_requests_per_minute = 10;
    });
    // One unknown serial, hammered: every answer given, few events written.
    for _ in 0..200 {
        let (status, r) = app.boot("serial=feedf00d");
        assert_eq!((status, r["action"].as_str()), (200, Some("local_boot")));
    }
    // Distinct unknown serials share the budget.
    for i in 0..50 {
        app.boot(&format!("serial=fee{i:05x}"));
    }
    let unknown_events: i64 = app
        .services
        .store
        .read(|tx| {
            let mut n = tx.count_events(
                "feedf00d",
                pureboot_controller::store::events::EventKind::BootRequest,
            )?;
            for i in 0..50 {
                n += tx.count_events(
                    &format!("fee{i:05x}"),
                    pureboot_controller::store::events::EventKind::BootRequest,
                )?;
            }
            Ok::<_, pureboot_controller::store::StoreError>(n)
        })
        .unwrap();
    assert!(
        unknown_events <= 11,
        "{unknown_events} events for unknown serials"
    );

    // A registered node asking in a loop: 429 past its budget, nothing recorded then.
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    let statuses: Vec<u16> = (0..30)
        .map(|_| app.boot(&format!("serial={SERIAL}")).0)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    let boots = app
        .event_kinds(SERIAL)
        .iter()
        .filter(|k| *k == "boot_request")
        .count();
    assert_eq!(boots, 10);
}

#[test]
fn node_list_is_paginated() {
    let app = spawn_app();
    for i in 0..7 {
        app.add_node(json!({"serial": format!("0000000{i}")}));
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/nodes?limit=3".to_string();
    loop {
        let resp = ureq::get(&app.url(&path))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap();
        let next = resp.header("Link").map(str::to_string);
        let page: Value = resp.into_json().unwrap();
        let page = page.as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(
            page.iter()
                .map(|n| n["serial"].as_str().unwrap().to_string()),
        );
        match next {
            Some(link) => {
                assert!(link.ends_with("; rel=\"next\""), "{link}");
                path = link[1..link.find('>').unwrap()].to_string();
            }
            None => break,
        }
    }
    let want: Vec<String> = (0..7).map(|i| format!("0000000{i}")).collect();
    assert_eq!(seen, want);
    // The default page is bounded, and a page size past the maximum is clamped.
    let (status, all) = app.admin_get("/api/v1/nodes?limit=1000000");
    assert_eq!((status, all.as_array().unwrap().len()), (200, 7));
    let (status, e) = app.admin_get("/api/v1/nodes?after=..%2F");
    assert_eq!((status, e["error"].as_str()), (400, Some("bad_request")));
}

#[test]
fn events_are_pruned_by_count_keeping_the_newest() {
    let app = spawn_app_with(|c| {
        c.max_events = 20;
        c.node_requests_per_minute = 0;
    });
    app.add_node(json!({"serial": SERIAL, "workflow_id": "pi-diskless-nfs"}));
    for _ in 0..30 {
        assert_eq!(app.boot(&format!("serial={SERIAL}")).0, 200);
    }
    // Every write already kept the log under the cap; the hourly prune finds nothing more.
    assert_eq!(app.services.prune_events().unwrap(), 0);
    let (_, events) = app.admin_get(&format!("/api/v1/nodes/{SERIAL}/events?limit=1000"));
    let events = events.as_array().unwrap();
    assert!(events.len() <= 20, "{}", events.len());
    assert_eq!(
        events.last().unwrap()["kind"],
        "boot_request",
        "newest kept"
    );
    // Booting on appends after the pruned prefix.
    assert_eq!(app.boot(&format!("serial={SERIAL}")).0, 200);
}
