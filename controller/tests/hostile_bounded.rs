//! What an unauthenticated client may cost the controller, written as the attacks: template
//! bombs hidden behind a node's optional values, and (below) the event log, the status page,
//! the admin token, the Host header and idle connections.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use pureboot_controller::store::events::{EventKind, NewEvent};
use pureboot_controller::store::StoreError;

/// A template that is harmless for a node without a MAC and runs over the render limits
/// for one with a MAC (its work grows with the MAC's length).
const MAC_BOMB: &str = "id: mac-bomb\nname: Mac bomb\ninstall_method: nfs\nhostname: \"pi-{% for i in range((mac | default('')) | length) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}\"\n";

#[test]
fn a_template_bomb_behind_mac_fails_validate_and_is_left_out_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    std::fs::create_dir(&workflows).unwrap();
    let file = workflows.join("mac-bomb.yaml");
    std::fs::write(&file, MAC_BOMB).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pureboot-controller"))
        .arg("--config")
        .arg(&config)
        .args(["workflow", "validate"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "validate passed a MAC bomb: {text}");
    assert!(
        text.contains("mac-bomb.yaml") && text.contains("hostname") && text.contains("limits"),
        "{text}"
    );

    // The daemon's start (and every reload: the same function) leaves it out as broken.
    let app = common::spawn_app_with(|c| c.workflows_dir = workflows.clone());
    let (status, r) = app.admin("POST", "/api/v1/workflows/reload", None);
    assert_eq!(status, 200, "{r}");
    assert!(r["workflows"].as_array().unwrap().is_empty(), "{r}");
    let broken = r["broken"].to_string();
    assert!(
        broken.contains("mac-bomb") && broken.contains("limits"),
        "{r}"
    );
    assert!(Path::new(&file).exists());
}

/// `p`-th percentile of `v` (sorted here).
fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// `n` boot requests of registered serials, one after another: their latencies, and the
/// answers that were not 200.
fn boots(app: &common::TestApp, serials: &[String], n: usize) -> (Vec<Duration>, Vec<String>) {
    let (mut times, mut failed) = (Vec::new(), Vec::new());
    for i in 0..n {
        let serial = &serials[i % serials.len()];
        let t = Instant::now();
        let r = ureq::get(&app.url(&format!("/api/v1/boot/pi?serial={serial}")))
            .timeout(BOOT_TIMEOUT)
            .call();
        times.push(t.elapsed());
        match r {
            Ok(_) => {}
            Err(ureq::Error::Status(code, resp)) => failed.push(format!(
                "{code}: {}",
                resp.into_string().unwrap_or_default()
            )),
            Err(e) => failed.push(e.to_string()),
        }
    }
    (times, failed)
}

/// pi-init's timeout for the controller's answer.
const BOOT_TIMEOUT: Duration = Duration::from_secs(5);

fn status_page(app: &common::TestApp) -> (u16, Duration) {
    let t = Instant::now();
    let code = match ureq::get(&app.url("/status"))
        .set("Authorization", &format!("Bearer {}", common::TOKEN))
        .call()
    {
        Ok(r) => {
            let _ = r.into_string();
            200
        }
        Err(ureq::Error::Status(code, _)) => code,
        Err(_) => 0,
    };
    (code, t.elapsed())
}

/// A flood filled the log with a million events: the status page still answers within a
/// second (it looks up each node's last events instead of ranking every event), and boots
/// keep answering while ten status pages load in a loop (the page reads on connections
/// and slots of its own).
#[test]
fn a_million_events_neither_slow_the_status_page_nor_the_boots_beside_it() {
    let app = common::spawn_app_with(|c| {
        c.max_events = 0;
        c.node_requests_per_minute = 0;
        c.unknown_serials_per_minute = 0;
    });
    let serials: Vec<String> = (0..50).map(|i| format!("5{i:07x}")).collect();
    for s in &serials {
        app.add_node(serde_json::json!({ "serial": s }));
    }
    let t = Instant::now();
    // On PostgreSQL each append is a round trip to the server (a million took 7 minutes
    // here): the log there is a tenth, still past what a page or a boot may scan.
    let total = if pureboot_controller::store::test_support::postgres_server().is_some() {
        eprintln!("PostgreSQL: 100,000 events instead of a million (one round trip each)");
        100_000u32
    } else {
        1_000_000u32
    };
    app.services
        .store
        .write(|tx| {
            for i in 0..total {
                // Mostly serials no node has (a flood of unknown ones), some of the fleet's.
                let serial = if i % 10 == 0 {
                    serials[(i as usize / 10) % serials.len()].clone()
                } else {
                    format!("{:08x}", 0x7000_0000 + i % 100_000)
                };
                tx.append_event(&NewEvent {
                    node_id: None,
                    serial: &serial,
                    kind: EventKind::BootRequest,
                    ip: Some("10.0.0.66"),
                    detail: serde_json::json!({"action": "local_boot"}),
                })?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    eprintln!("{total} events inserted in {:?}", t.elapsed());

    let mut pages = Vec::new();
    for _ in 0..3 {
        let (code, took) = status_page(&app);
        assert_eq!(code, 200);
        pages.push(took);
    }
    eprintln!("status page over {total} events: {pages:?}");
    assert!(
        pages.iter().all(|t| *t < Duration::from_secs(1)),
        "status page took {pages:?}"
    );

    let (mut alone, failed) = boots(&app, &serials, 200);
    assert!(failed.is_empty(), "boots failed alone: {failed:?}");
    let stop = AtomicBool::new(false);
    let loaded = AtomicUsize::new(0);
    let (mut beside, failed, page_codes) = std::thread::scope(|scope| {
        let loops: Vec<_> = (0..10)
            .map(|_| {
                scope.spawn(|| {
                    let mut codes = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        codes.push(status_page(&app).0);
                        loaded.fetch_add(1, Ordering::Relaxed);
                    }
                    codes
                })
            })
            .collect();
        let result = boots(&app, &serials, 200);
        stop.store(true, Ordering::Relaxed);
        let codes: Vec<u16> = loops.into_iter().flat_map(|l| l.join().unwrap()).collect();
        (result.0, result.1, codes)
    });
    let (p50a, p99a, maxa) = (
        percentile(&mut alone, 0.5),
        percentile(&mut alone, 0.99),
        percentile(&mut alone, 1.0),
    );
    let (p50b, p99b, maxb) = (
        percentile(&mut beside, 0.5),
        percentile(&mut beside, 0.99),
        percentile(&mut beside, 1.0),
    );
    eprintln!(
        "boots alone: p50 {p50a:?} p99 {p99a:?} max {maxa:?}; beside 10 status loops \
         ({} pages loaded): p50 {p50b:?} p99 {p99b:?} max {maxb:?}",
        loaded.load(Ordering::Relaxed)
    );
    assert!(
        failed.is_empty(),
        "boots failed beside the status pages: {failed:?}"
    );
    assert!(maxb < BOOT_TIMEOUT, "a boot took {maxb:?}");
    assert!(
        page_codes.iter().all(|c| *c == 200),
        "status pages: {page_codes:?}"
    );
}

/// A flood of boot requests writes events far past `max_events`: the log stays under the
/// cap the whole time (each write transaction prunes), not only after the hourly prune.
#[test]
fn the_event_log_stays_under_its_cap_while_a_flood_writes() {
    let cap = 2_000u64;
    let app = common::spawn_app_with(|c| {
        c.max_events = cap;
        c.node_requests_per_minute = 0;
        c.unknown_serials_per_minute = 0;
    });
    let serials: Vec<String> = (0..20).map(|i| format!("6{i:07x}")).collect();
    for s in &serials {
        app.add_node(serde_json::json!({ "serial": s }));
    }
    // Every event of the flood is one of these serials' (the test's own too).
    let mut all_serials = serials.clone();
    all_serials.push("6fffffff".into());
    let count = || {
        app.services
            .store
            .read(|tx| {
                let mut n = 0;
                for s in &all_serials {
                    for kind in EventKind::ALL.iter().copied() {
                        n += tx.count_events(s, kind)?;
                    }
                }
                Ok::<_, StoreError>(n)
            })
            .unwrap()
    };
    let answered = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut seen = Vec::new();
    std::thread::scope(|scope| {
        let flood: Vec<_> = (0..4)
            .map(|t| {
                let (app, serials, answered) = (&app, &serials, &answered);
                scope.spawn(move || {
                    for i in 0..1_500 {
                        let serial = &serials[(t * 7 + i) % serials.len()];
                        if app.boot(&format!("serial={serial}")).0 == 200 {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let watcher = scope.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seen.push(count());
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        for f in flood {
            f.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        seen = watcher.join().unwrap();
    });
    seen.push(count());
    let answered = answered.into_inner();
    let most = *seen.iter().max().unwrap();
    eprintln!(
        "flood: {answered} boots answered (each records an event), {} looks at the log, \
         at most {most} events kept (cap {cap})",
        seen.len()
    );
    assert!(
        answered as u64 > 2 * cap,
        "the flood must write past the cap"
    );
    assert!(
        most <= cap as i64,
        "the log held {most} events, over its cap of {cap}"
    );

    // A write outside the group writer (the CLI, the operator's API) keeps it too.
    app.services
        .store
        .write(|tx| {
            for _ in 0..3 * cap {
                tx.append_event(&NewEvent {
                    node_id: None,
                    serial: "6fffffff",
                    kind: EventKind::Admin,
                    ip: None,
                    detail: serde_json::Value::Null,
                })?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert!(count() <= cap as i64, "{}", count());
}

/// One HTTP/1.1 request from the local address `from` (any of 127/8 reaches the test
/// server on 127.0.0.1): its status and the whole answer.
fn raw_http(from: &str, to: &str, request: &str) -> (u16, String) {
    let mut stream = connect_from(from, to);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, answer)
}

/// A blocking TCP connection from the local address `from` to `to` (`host:port`).
fn connect_from(from: &str, to: &str) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
        sock.connect(to.parse().unwrap()).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Log lines of this test binary's in-process servers.
fn captured_logs() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                captured_logs()
                    .lock()
                    .unwrap()
                    .push(format!("{} {}", r.level(), r.args()));
            }
        }
        fn flush(&self) {}
    }
    LINES.get_or_init(|| {
        let _ = log::set_boxed_logger(Box::new(Capture));
        log::set_max_level(log::LevelFilter::Warn);
        Mutex::new(Vec::new())
    })
}

#[test]
fn weak_admin_tokens_are_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for token in ["change-me", "Zq7vN4kP9xR2mW8", "aaaaaaaaaaaaaaaaaaaaaaaa"] {
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nadmin_token = \"{token}\"\n",
                dir.path().join("r.db").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pureboot-controller"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A daemon that accepted the token serves on: stopped, and the test fails.
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let refused = child.try_wait().unwrap().is_some_and(|s| !s.success());
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(refused, "{token:?} accepted: {err}");
        assert!(
            err.contains("admin_token") && err.contains("/dev/urandom"),
            "{token:?}: {err}"
        );
    }
    // A configuration made in code is checked too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = common::test_config(dir.path());
    config.admin_token = Some("change-me".into());
    let err = rt
        .block_on(pureboot_controller::app::App::build(config))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("admin_token"), "{err}");
}

/// Guessing the admin token from one address: after a few wrong tokens each answer comes
/// later (Bearer and Basic alike), attempts during a delay are refused unchecked, the
/// refusals are logged, and the operator's right token still works from another address.
#[test]
fn wrong_admin_tokens_get_slower_per_address_and_are_logged() {
    captured_logs();
    let app = common::spawn_app();
    let addr = app.base.trim_start_matches("http://").to_string();
    let wrong = |i: usize| {
        let t = Instant::now();
        let r = if i % 2 == 1 {
            // Basic, as a browser sends the status page's password.
            ureq::get(&app.url("/status"))
                .set("Authorization", "Basic YWRtaW46d3JvbmctZ3Vlc3M=")
                .call()
        } else {
            ureq::get(&app.url("/api/v1/nodes"))
                .set("Authorization", "Bearer wrong-guess-0123456789abcdef")
                .call()
        };
        let code = match r {
            Err(ureq::Error::Status(c, _)) => c,
            other => panic!("attempt {i}: {:?}", other.map(|r| r.status())),
        };
        (code, t.elapsed())
    };
    let mut times = Vec::new();
    for i in 0..7 {
        let (code, took) = wrong(i);
        assert_eq!(code, 401, "attempt {i}");
        times.push(took);
    }
    eprintln!("wrong tokens, one after another: {times:?}");
    assert!(
        times[..3].iter().all(|t| *t < Duration::from_millis(200)),
        "{times:?}"
    );
    assert!(times[3] >= Duration::from_millis(200), "{times:?}");
    for w in times[3..].windows(2) {
        assert!(w[1] >= w[0], "the delay grows: {times:?}");
    }
    assert!(times[6] >= Duration::from_millis(1500), "{times:?}");

    // Parallel guesses gain nothing: while one is being delayed, the others from the
    // address are refused unchecked, even with the right token.
    let (first, during) = std::thread::scope(|scope| {
        let first = scope.spawn(|| wrong(0));
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let r = ureq::get(&app.url("/api/v1/nodes"))
            .set("Authorization", &format!("Bearer {}", common::TOKEN))
            .call();
        let during = match r {
            Err(ureq::Error::Status(c, resp)) => {
                (c, resp.header("Retry-After").map(str::to_string))
            }
            other => panic!("{:?}", other.map(|r| r.status())),
        };
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        (first.join().unwrap(), during)
    });
    eprintln!("8th wrong token took {:?}; meanwhile {during:?}", first.1);
    assert_eq!(first.0, 401);
    assert!(first.1 >= Duration::from_millis(1500), "{:?}", first.1);
    assert_eq!(during.0, 429);
    assert!(during.1.is_some(), "Retry-After");

    // Another address: the right token works at once, over Bearer and Basic.
    let t = Instant::now();
    let (code, answer) = raw_http(
        "127.0.0.2",
        &addr,
        &format!(
            "GET /api/v1/nodes HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            common::TOKEN
        ),
    );
    assert_eq!(code, 200, "{answer}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("op:{}", common::TOKEN));
    let (code, answer) = raw_http(
        "127.0.0.2",
        &addr,
        &format!(
            "GET /status HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(code, 200, "{answer}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    let logs = captured_logs().lock().unwrap().clone();
    let refusals: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("admin token refused for 127.0.0.1"))
        .collect();
    // The 1st, 2nd, 4th and 8th failures: rate-limited, not one line per guess.
    assert_eq!(refusals.len(), 4, "{logs:#?}");
    assert!(
        refusals.iter().any(|l| l.contains("/status"))
            && refusals.iter().any(|l| l.contains("/api/v1/nodes")),
        "{refusals:#?}"
    );
}

/// The status page and every answer of both listeners tell a browser not to cache, frame
/// or sniff them; a `Host` naming another host (DNS rebinding) is refused on both
/// listeners, an IP literal and the configured names are served.
#[test]
fn security_headers_and_a_host_check_on_both_listeners() {
    let app = common::spawn_app_with(|c| {
        c.admin_listen = Some("127.0.0.1:0".into());
        c.allowed_hosts = vec!["pureboot.lab".into()];
    });
    let pi = app.base.trim_start_matches("http://").to_string();
    let admin = app
        .admin_base
        .as_deref()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let get = |to: &str, path: &str, host: &str| {
        raw_http(
            "127.0.0.1",
            to,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                common::TOKEN
            ),
        )
    };
    let (code, page) = get(&admin, "/status", &admin);
    assert_eq!(code, 200, "{page}");
    let head = page[..page.find("\r\n\r\n").unwrap()].to_ascii_lowercase();
    for h in [
        "content-security-policy: default-src 'none'",
        "frame-ancestors 'none'",
        "x-frame-options: deny",
        "cache-control: no-store",
        "x-content-type-options: nosniff",
    ] {
        assert!(head.contains(h), "{h} missing: {head}");
    }
    for (to, path) in [
        (&admin, "/metrics"),
        (&admin, "/api/v1/nodes"),
        (&pi, "/healthz"),
    ] {
        let (code, answer) = get(to, path, "rebound.attacker.example");
        assert_eq!(code, 421, "{path}: {answer}");
        assert!(answer
            .to_ascii_lowercase()
            .contains("x-frame-options: deny"));
        let (code, answer) = get(to, path, "rebound.attacker.example:8080");
        assert_eq!(code, 421, "{path}: {answer}");
        for host in [
            "127.0.0.1",
            "10.0.2.2:8080",
            "[::1]:9",
            "localhost",
            "pureboot.lab:80",
        ] {
            let (code, answer) = get(to, path, host);
            assert_eq!(code, 200, "{path} as {host}: {answer}");
        }
    }
    // A Pi asks with the host it was given (public_url's, here 10.0.2.2).
    let (code, answer) = get(&pi, "/api/v1/boot/pi?serial=d83add36", "10.0.2.2:8080");
    assert_eq!(code, 200, "{answer}");
}

/// One client opening many idle connections (never sending a request) cannot keep another
/// address's boots out: past its per-address cap its connections are closed at once.
#[test]
fn idle_connections_from_one_address_do_not_stop_anothers_boots() {
    let app = common::spawn_app_with(|c| {
        (c.max_connections, c.max_connections_per_address) = (64, 16);
        // The idle connections would be dropped after this: longer than the test.
        c.header_timeout_secs = 30;
    });
    let to = app.base.trim_start_matches("http://").to_string();
    // More idle connections than the whole server takes.
    let idle: Vec<_> = (0..100).map(|_| connect_from("127.0.0.2", &to)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (mut times, failed) = boots(&app, &["0000beef".to_string()], 20);
    eprintln!(
        "boots beside {} idle connections from another address: p50 {:?} max {:?}",
        idle.len(),
        percentile(&mut times, 0.5),
        percentile(&mut times, 1.0)
    );
    assert!(failed.is_empty(), "{failed:?}");
    drop(idle);
}

/// A connection that never sends a request is closed after `header_timeout_secs`, not
/// held until the client gives up.
#[test]
fn an_idle_connection_is_closed_after_the_header_timeout() {
    let app = common::spawn_app_with(|c| c.header_timeout_secs = 1);
    let to = app.base.trim_start_matches("http://").to_string();
    let mut idle = connect_from("127.0.0.2", &to);
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = idle.read_to_end(&mut buf);
    eprintln!(
        "idle connection closed after {:?} ({} bytes: {:?})",
        t.elapsed(),
        buf.len(),
        String::from_utf8_lossy(&buf)
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}
