//! The boot network is hostile: a virtual Pi boots through the whole set-up (pi-init, the
//! controller, nfs-ganesha) while a second machine on the same private network speaks for
//! it the whole time. The Pi reaches the controller through QEMU's user networking, so the
//! controller sees it as 127.0.0.1; the attacker is a thread of this test inside the lab's
//! namespace whose sockets are bound to 127.0.0.66 (all of 127/8 is loopback there). It
//! asks for the Pi's boot with the Pi's MAC, a wrong MAC and none (H1, H3), at 20 requests
//! a second (H2's flood), and posts forged `installed` / `install-failed` reports, with a
//! forged `ip_address` and MAC, to every callback it is handed and to the serial's own path.
//! The HTTP-level attacks one by one are `controller/tests/hostile_boot.rs`.
//!
//! The site does what the README's trust model asks of it: the operator confirmed the Pi's
//! MAC (`node set --mac`) and pins boots to the node's address (`pin_boot_address = true`),
//! and the Pi's address is on record from its previous boot. Without the pin a machine
//! sending the Pi's MAC from its own address is that node for the controller (the README's
//! "What spoofing both MAC and address still does"), and this scenario would fail.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pureboot_harness::controller::{mentions, objects, PORT};
use pureboot_harness::lab::{diskless_node, Lab, LabOptions, TINY};
use pureboot_harness::wait::poll;
use pureboot_harness::{pi_init_env, serial};
use serde_json::{json, Value};

/// Where the controller listens in the lab's namespace, and where the Pi comes from (slirp).
const CONTROLLER: Ipv4Addr = Ipv4Addr::LOCALHOST;
const PI_ADDRESS: &str = "127.0.0.1";
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);
const WRONG_MAC: &str = "52:54:00:66:66:66";
const FORGED_IP: &str = "10.6.6.6";
const BOOT_PATH: &str = "/api/v1/boot/pi";

/// The attacker's bounds: it stops by itself at whichever comes first, or when told.
const ATTACK_PACE: Duration = Duration::from_millis(50);
const ATTACK_MAX_REQUESTS: u32 = 4000;
const ATTACK_MAX_TIME: Duration = Duration::from_secs(180);

/// A TCP connection to the controller from `src` (a loopback address of the namespace).
/// Must run on a thread that has joined the namespace ([`pureboot_harness::netns::Netns::enter`]).
fn connect_from(src: Ipv4Addr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket(2) has no preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns; the stream closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let local = sockaddr(SocketAddrV4::new(src, 0));
    let remote = sockaddr(SocketAddrV4::new(CONTROLLER, PORT));
    // SAFETY: valid sockaddr_in values of the length given, on an open socket.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// One HTTP/1.1 request from `src`; the status and the body as JSON (`Null` if not JSON).
fn http(
    src: Ipv4Addr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut s = connect_from(src).map_err(|e| format!("connect from {src}: {e}"))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {CONTROLLER}:{PORT}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// The path of a URL the controller handed out (it names the host as the guest sees it).
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/".into(), |i| rest[i..].to_string())
}

/// What the attacker saw.
#[derive(Debug, Default)]
struct Attack {
    elapsed: Duration,
    requests: u32,
    /// Boot requests answered 429 (its address's budget), `wait`, or anything else.
    limited: u32,
    waits: u32,
    errors: Vec<String>,
    /// Answers that carried anything that boots or identifies the node.
    booted: Vec<Value>,
    reports_posted: u32,
    /// Forged reports the controller took (2xx).
    reports_taken: Vec<(String, Value)>,
}

/// Whether a boot answer hands its asker anything of the node's.
fn boots_something(r: &Value, serial: &str) -> bool {
    let action = r["action"].as_str().unwrap_or("");
    matches!(action, "nfs_boot" | "deploy_image" | "local_boot")
        || [
            "callback_url",
            "failure_url",
            "machine_id",
            "image_url",
            "nfs_path",
            "hostname",
            "base_image",
        ]
        .iter()
        .any(|k| !r[k].is_null())
        || r.to_string().contains(&format!("nodes/{serial}"))
}

/// The attacker's loop, on a thread inside the namespace, until `stop` or its bounds.
/// `limited` counts its 429s as they come, for the test to see the flood's budget spent.
fn attack(
    serial: String,
    pi_mac: String,
    stop: Arc<AtomicBool>,
    limited: Arc<AtomicU32>,
) -> Attack {
    let queries = [
        format!("serial={serial}&mac={pi_mac}"),
        format!("serial={serial}&mac={WRONG_MAC}"),
        format!("serial={serial}&mac={pi_mac}&full_serial=10000000{serial}"),
        format!("serial={serial}"),
    ];
    let forged = |mac: &str| {
        [
            (
                "installed",
                json!({"success": true, "mode": "nfs_boot", "serial": serial, "mac": mac,
                       "ip_address": FORGED_IP, "overlay_mode": "tmpfs",
                       "degradations": ["overlay image unavailable; using tmpfs"]}),
            ),
            (
                "install-failed",
                json!({"error": "forged failure", "serial": serial, "mac": mac, "ip_address": FORGED_IP}),
            ),
        ]
    };
    let mut a = Attack::default();
    let start = Instant::now();
    for i in 0..ATTACK_MAX_REQUESTS {
        if stop.load(Ordering::Relaxed) || start.elapsed() > ATTACK_MAX_TIME {
            break;
        }
        let query = &queries[i as usize % queries.len()];
        a.requests += 1;
        let mut targets = Vec::new();
        match http(ATTACKER, "GET", &format!("{BOOT_PATH}?{query}"), None) {
            Ok((429, _)) => {
                a.limited += 1;
                limited.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, r)) => {
                if boots_something(&r, &serial) {
                    a.booted
                        .push(json!({"status": status, "query": query, "answer": r}));
                } else if status == 200 && r["action"] == "wait" {
                    a.waits += 1;
                }
                for key in ["callback_url", "failure_url"] {
                    if let Some(url) = r[key].as_str() {
                        targets.push(url_path(url));
                    }
                }
            }
            Err(e) => a.errors.push(e),
        }
        // What it was handed, and (every 10th round) the serial's own report paths, which
        // named the boot before boot ids did.
        if i % 10 == 0 {
            targets.push(format!("/api/v1/nodes/{serial}/installed"));
            targets.push(format!("/api/v1/nodes/{serial}/install-failed"));
        }
        for target in targets {
            for mac in [WRONG_MAC, pi_mac.as_str()] {
                for (kind, body) in forged(mac) {
                    let path = match target.rsplit_once('/') {
                        Some((base, last)) if last == "installed" || last == "install-failed" => {
                            format!("{base}/{kind}")
                        }
                        _ => target.clone(),
                    };
                    a.reports_posted += 1;
                    match http(ATTACKER, "POST", &path, Some(&body)) {
                        Ok((status, r)) if (200..300).contains(&status) => {
                            a.reports_taken.push((path, r))
                        }
                        Ok(_) => {}
                        Err(e) => a.errors.push(e),
                    }
                }
            }
        }
        let next = start + ATTACK_PACE * (i + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    a.elapsed = start.elapsed();
    a
}

#[test]
fn a_pi_boots_while_another_machine_speaks_for_it() {
    let name = "hostile-network";
    let env = pi_init_env!(name);
    let opts = LabOptions {
        serve: false,
        ..Default::default()
    };
    let mut lab =
        Lab::start(name, env, opts).unwrap_or_else(|e| panic!("{name}: starting the lab: {e}"));
    // The site pins boots to the node's address (README: "Who may do what").
    let config = lab.dir.join("controller.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    let toml = toml.replacen("[nfs]", "pin_boot_address = true\n\n[nfs]", 1);
    std::fs::write(&config, toml).unwrap();
    lab.import_tiny_root(TINY).unwrap_or_else(|e| {
        panic!(
            "{name}: importing the tiny root: {e}\n{}",
            lab.diagnostics()
        )
    });
    let ns = &lab.ns;
    lab.controller
        .as_mut()
        .expect("this lab runs a controller")
        .serve(ns)
        .unwrap_or_else(|e| panic!("{name}: starting the controller: {e}"));

    let s = serial(0x66);
    let pi = lab.pi(&s).unwrap();
    let pi_mac = pi.mac();
    lab.add_node(&s, diskless_node("pi-under-attack")).unwrap();
    // The operator confirms the Pi's MAC, as the README asks for nodes that matter.
    lab.controller()
        .cli(&["node", "set", &s, "--mac", &pi_mac])
        .unwrap();
    // The Pi's previous boot, from its address: the address pinned for the node.
    let query = format!("{BOOT_PATH}?serial={s}&mac={pi_mac}");
    let (status, previous) = lab
        .ns
        .enter(move || http(CONTROLLER, "GET", &query, None))
        .unwrap();
    assert_eq!(
        (status, previous["action"].as_str()),
        (200, Some("nfs_boot")),
        "{name}: the Pi's previous boot: {previous}\n{}",
        lab.diagnostics()
    );
    let before = lab.controller().node(&s).unwrap();
    assert_eq!(
        (
            before["mac"].as_str(),
            before["mac_confirmed"].as_bool(),
            before["last_ip"].as_str()
        ),
        (Some(pi_mac.as_str()), Some(true), Some(PI_ADDRESS)),
        "{name}: the node before the attack: {before:#}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let limited = Arc::new(AtomicU32::new(0));
    let (run, attacked) = std::thread::scope(|scope| {
        let attacker = {
            let (s, mac) = (s.clone(), pi_mac.clone());
            let (stop, limited) = (stop.clone(), limited.clone());
            scope.spawn(move || ns.enter(move || Ok(attack(s, mac, stop, limited))))
        };
        // The Pi powers on once the flood has spent its address's budget (429, after about
        // 6 s at the default node_requests_per_minute = 120): a limiter keyed by the serial
        // would now lock the Pi out (H2).
        let _ = poll(Duration::from_secs(30), Duration::from_millis(100), || {
            limited.load(Ordering::Relaxed) > 0
        });
        let run = lab.boot(&pi, "boot");
        stop.store(true, Ordering::Relaxed);
        let attacked = attacker
            .join()
            .expect("the attacker thread")
            .expect("the attacker in the namespace");
        (run.unwrap(), attacked)
    });
    eprintln!(
        "{name}: guest {:?} in {:.1}s; attacker: {} boot requests in {:.1}s ({:.1}/s), \
         {} answered 429, {} wait, {} booted something; {} forged reports posted, {} taken; \
         {} errors",
        run.outcome,
        run.elapsed.as_secs_f64(),
        attacked.requests,
        attacked.elapsed.as_secs_f64(),
        f64::from(attacked.requests) / attacked.elapsed.as_secs_f64(),
        attacked.limited,
        attacked.waits,
        attacked.booted.len(),
        attacked.reports_posted,
        attacked.reports_taken.len(),
        attacked.errors.len(),
    );

    // The real Pi booted, with its identity from the controller.
    let report = lab.expect_report(&run);
    lab.check(
        report.get("hostname") == "pi-under-attack",
        "hostname from the controller",
        &run,
    );
    let mid = before["machine_id"].as_str().unwrap_or("").to_string();
    lab.check(
        !mid.is_empty() && report.get("machine_id") == mid,
        "machine-id from the controller",
        &run,
    );
    lab.check(
        report.get("root_fs") == "overlay",
        "root is an overlay",
        &run,
    );

    // The attacker got nothing that boots or names the node, and was held back.
    assert!(
        attacked.booted.is_empty(),
        "{name}: answers that boot the node went to the attacker: {:#?}",
        attacked.booted
    );
    assert!(
        attacked.reports_taken.is_empty(),
        "{name}: forged reports were taken: {:#?}",
        attacked.reports_taken
    );
    assert!(
        attacked.errors.len() * 20 < attacked.requests as usize,
        "{name}: the attacker's requests failed: {:?}",
        attacked.errors
    );
    assert!(
        f64::from(attacked.requests) >= 10.0 * attacked.elapsed.as_secs_f64()
            && attacked.elapsed >= run.elapsed,
        "{name}: the flood ran at 10 requests/s or more for the whole boot: {attacked:?}"
    );
    assert!(
        attacked.limited > 0 && attacked.waits > 0,
        "{name}: the flooding address was limited (429) and refused (wait): {attacked:?}"
    );
    assert!(
        !attacked
            .booted
            .iter()
            .any(|b| mentions(b, &mid) || mentions(b, "deploy_image")),
        "{name}: machine-id or deployment handed out"
    );

    // The controller's record is the real boot's.
    let mut node = Value::Null;
    let _ = poll(Duration::from_secs(10), Duration::from_millis(300), || {
        node = lab.controller().node(&s).unwrap_or(Value::Null);
        node["state"] == "active"
    });
    let events: Vec<&serde_json::Map<String, Value>> = objects(&node["events"])
        .into_iter()
        .filter(|e| e.contains_key("kind"))
        .collect();
    let from = |ip: &str| {
        events
            .iter()
            .filter(|e| e.get("ip").and_then(Value::as_str) == Some(ip))
            .filter_map(|e| e.get("kind").and_then(Value::as_str))
            .collect::<Vec<_>>()
    };
    let attacker_events = from(&ATTACKER.to_string());
    let pi_events = from(PI_ADDRESS);
    let dump = format!("{node:#}\n{}", lab.diagnostics());
    assert_eq!(
        node["state"], "active",
        "{name}: the Pi's boot made the node active: {dump}"
    );
    assert_eq!(node["mac"], pi_mac.as_str(), "{name}: MAC: {dump}");
    assert_eq!(node["mac_confirmed"], true, "{name}: {dump}");
    assert_eq!(node["last_ip"], PI_ADDRESS, "{name}: last_ip: {dump}");
    assert_eq!(node["boot_ip"], PI_ADDRESS, "{name}: boot_ip: {dump}");
    assert_eq!(node["conflict"], Value::Null, "{name}: a flag set: {dump}");
    assert_eq!(node["degraded"], Value::Null, "{name}: a flag set: {dump}");
    assert_ne!(
        node["full_serial"],
        format!("10000000{s}").as_str(),
        "{name}: the attacker's full serial recorded: {dump}"
    );
    assert!(
        !mentions(&node, FORGED_IP),
        "{name}: a forged address recorded: {dump}"
    );
    assert!(
        pi_events.contains(&"installed"),
        "{name}: the Pi's own report was taken: {dump}"
    );
    assert!(
        !attacker_events.is_empty() && attacker_events.iter().all(|k| *k == "conflict"),
        "{name}: the attacker's requests are recorded as conflicts and nothing else: \
         {attacker_events:?}\n{dump}"
    );
}
