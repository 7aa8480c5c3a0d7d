//! Boot storm: a release controller on 127.0.0.1, `nodes` registered nodes, `clients`
//! threads each taking the next node: `GET /api/v1/boot/pi` then `POST .../installed`, as a
//! Pi does. Run for `rounds` rounds (the first renders every node's tree; later ones find it
//! unchanged). Then the database must hold every node's events: none lost.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pureboot_contract::InstalledReport;
use pureboot_harness::controller::{Controller, Settings, TOKEN};
use pureboot_harness::env::TestEnv;
use pureboot_harness::guest_root;
use pureboot_harness::lab::{TINY, WORKFLOW};
use pureboot_harness::process::{self, Daemon};
use pureboot_harness::wait::wait_until;
use pureboot_harness::workdir::WorkDir;

use crate::http::request;
use crate::procfs::proc_stats;
use crate::stats::{cell, percentile};

pub struct Params {
    pub nodes: usize,
    pub clients: usize,
    pub rounds: usize,
    /// No round runs past this, whatever is left.
    pub round_limit: Duration,
}

/// Where the controller's SQLite file lives.
#[derive(Clone, Copy)]
pub enum DbPath {
    /// The scratch directory, on the machine's disk.
    Disk,
    /// An ext4 file system mounted `sync` on a loop device with direct I/O: every write
    /// reaches the host disk before it returns (device-mapper's dm-delay is not available
    /// in this kernel: no /dev/mapper/control).
    SlowLoop,
}

fn serial_of(i: usize) -> String {
    format!("b{:07x}", i)
}

/// One request's outcome as the client saw it.
#[derive(Default)]
struct Tally {
    boot_ms: Vec<f64>,
    callback_ms: Vec<f64>,
    /// Node indices whose boot request / callback the controller acknowledged.
    boot_ok: Vec<usize>,
    callback_ok: Vec<usize>,
    errors: usize,
    /// Registrations sent again after a 503 (the controller says "try again").
    retries: usize,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.boot_ms.extend(o.boot_ms);
        self.callback_ms.extend(o.callback_ms);
        self.boot_ok.extend(o.boot_ok);
        self.callback_ok.extend(o.callback_ok);
        self.errors += o.errors;
        self.retries += o.retries;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn requests(&self) -> usize {
        self.boot_ms.len() + self.callback_ms.len() + self.errors
    }

    /// A row of the storm table: requests, errors, wall time, rate, latency percentiles.
    fn row(&self, label: &str, wall: Duration) -> String {
        let p = |v: &[f64], q| cell(percentile(v, q), 1);
        format!(
            "| {label} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} |\n",
            self.requests(),
            self.errors,
            wall.as_secs_f64(),
            self.requests() as f64 / wall.as_secs_f64(),
            p(&self.boot_ms, 50.0),
            p(&self.boot_ms, 99.0),
            p(&self.callback_ms, 50.0),
            p(&self.callback_ms, 99.0),
        )
    }

    fn fail(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

fn free_port() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

/// Runs `work(i)` for i in 0..n on `clients` threads, each taking the next index, stopping
/// at `limit`. Returns the merged tally and the wall time.
fn fan_out(
    n: usize,
    clients: usize,
    limit: Duration,
    work: impl Fn(usize, &mut Tally) + Sync,
) -> (Tally, Duration) {
    let next = AtomicUsize::new(0);
    let all = Mutex::new(Tally::default());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let mut mine = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || t0.elapsed() > limit {
                        break;
                    }
                    work(i, &mut mine);
                }
                all.lock().unwrap().merge(mine);
            });
        }
    });
    (all.into_inner().unwrap(), t0.elapsed())
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// One Pi's boot: ask what to boot, then report it installed.
fn pi_boot(addr: SocketAddr, i: usize, t: &mut Tally) {
    let serial = serial_of(i);
    let mac = format!(
        "dc:a6:32:{:02x}:{:02x}:{:02x}",
        i >> 16 & 0xff,
        i >> 8 & 0xff,
        i & 0xff
    );
    let t0 = Instant::now();
    let path = format!("/api/v1/boot/pi?serial={serial}&mac={mac}");
    // Reports go to the boot's own callback URL (a per-boot id, not the serial).
    let callback = match request(addr, "GET", &path, None, None) {
        Ok(r) if r.status == 200 && r.body.contains("nfs_boot") => {
            t.boot_ms.push(ms_since(t0));
            t.boot_ok.push(i);
            let answer: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            match answer["callback_url"]
                .as_str()
                .and_then(|u| u.find("/api/").map(|at| u[at..].to_string()))
            {
                Some(p) => p,
                None => return t.fail(format!("GET {path}: no callback_url in {}", r.body)),
            }
        }
        Ok(r) => return t.fail(format!("GET {path}: {} {}", r.status, r.body)),
        Err(e) => return t.fail(e),
    };
    let report = InstalledReport {
        success: true,
        mode: "nfs_boot".into(),
        serial: Some(serial.clone()),
        mac: Some(mac),
        nfs_version: Some("4.2".into()),
        overlay_mode: Some("tmpfs".into()),
        base_image: Some(TINY.into()),
        ..Default::default()
    };
    let body = serde_json::to_string(&report).expect("report serialises");
    let path = callback;
    let t1 = Instant::now();
    match request(addr, "POST", &path, None, Some(&body)) {
        Ok(r) if r.status == 200 => {
            t.callback_ms.push(ms_since(t1));
            t.callback_ok.push(i);
        }
        Ok(r) => t.fail(format!("POST {path}: {} {}", r.status, r.body)),
        Err(e) => t.fail(e),
    }
}

fn register(addr: SocketAddr, i: usize, t: &mut Tally) {
    let body = serde_json::json!({
        "serial": serial_of(i),
        "workflow_id": WORKFLOW,
        "overlay_mode": "tmpfs",
    })
    .to_string();
    for attempt in 1..=3 {
        match request(addr, "POST", "/api/v1/nodes", Some(TOKEN), Some(&body)) {
            Ok(r) if r.status == 201 => return,
            // A timed-out request may still have committed: then the retry finds the node.
            Ok(r) if r.status == 409 && attempt > 1 => return,
            Ok(r) if r.status == 503 && attempt < 3 => t.retries += 1,
            Ok(r) => return t.fail(format!("POST /api/v1/nodes: {} {}", r.status, r.body)),
            Err(e) => return t.fail(e),
        }
    }
}

/// The slow file system, unmounted and detached on drop.
struct SlowMount {
    dev: String,
    mnt: PathBuf,
}

impl SlowMount {
    fn new(dir: &Path) -> Result<SlowMount, String> {
        let img = dir.join("slow.img");
        let mnt = dir.join("slow");
        std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        process::run(Command::new("truncate").arg("-s").arg("256M").arg(&img))?;
        process::run(Command::new("mkfs.ext4").arg("-q").arg(&img))?;
        let dev = process::run(
            Command::new("losetup")
                .args(["--direct-io=on", "-f", "--show"])
                .arg(&img),
        )?
        .trim()
        .to_string();
        let m = SlowMount { dev, mnt };
        process::run(
            Command::new("mount")
                .args(["-o", "sync"])
                .arg(&m.dev)
                .arg(&m.mnt),
        )?;
        Ok(m)
    }
}

impl Drop for SlowMount {
    fn drop(&mut self) {
        let _ = process::run(Command::new("umount").arg(&self.mnt));
        let _ = process::run(Command::new("losetup").arg("-d").arg(&self.dev));
    }
}

fn sql(db: &Path, query: &str) -> Result<String, String> {
    process::run(Command::new("sqlite3").arg(db).arg(query)).map(|s| s.trim().to_string())
}

/// Events per (serial, kind) in the database.
fn recorded(db: &Path) -> Result<HashMap<(String, String), usize>, String> {
    let rows = sql(
        db,
        "SELECT serial, kind, COUNT(*) FROM boot_events \
         WHERE kind IN ('boot_request', 'installed') GROUP BY serial, kind;",
    )?;
    rows.lines()
        .map(|l| {
            let mut f = l.split('|');
            let (serial, kind, n) = (f.next(), f.next(), f.next().and_then(|n| n.parse().ok()));
            match (serial, kind, n) {
                (Some(s), Some(k), Some(n)) => Ok(((s.to_string(), k.to_string()), n)),
                _ => Err(format!("sqlite row {l:?}")),
            }
        })
        .collect()
}

/// What the database holds against what the clients were told: (nodes with every
/// acknowledged request recorded, acknowledged requests missing, requests recorded beyond
/// those acknowledged — a 503'd request the controller still completed).
fn reconcile(
    nodes: usize,
    db: &HashMap<(String, String), usize>,
    acked: &[(&str, &[usize])],
) -> (usize, usize, usize) {
    let mut want = vec![HashMap::<&str, usize>::new(); nodes];
    for (kind, idx) in acked {
        for &i in *idx {
            *want[i].entry(kind).or_default() += 1;
        }
    }
    let (mut complete, mut lost, mut extra) = (0, 0, 0);
    for (i, w) in want.iter().enumerate() {
        let mut node_lost = 0;
        for (kind, _) in acked {
            let a = w.get(kind).copied().unwrap_or(0);
            let d = db
                .get(&(serial_of(i), kind.to_string()))
                .copied()
                .unwrap_or(0);
            node_lost += a.saturating_sub(d);
            extra += d.saturating_sub(a);
        }
        lost += node_lost;
        complete += usize::from(node_lost == 0);
    }
    (complete, lost, extra)
}

pub fn run(
    env: &'static TestEnv,
    p: &Params,
    where_db: DbPath,
    bin: &Path,
    who: &str,
) -> Result<String, String> {
    let label = match where_db {
        DbPath::Disk => "database on the machine's disk (ext4 on virtio, WAL, synchronous=NORMAL)",
        DbPath::SlowLoop => "database on a slow path: loop ext4, direct I/O, mounted `sync`",
    };
    let dir = WorkDir::new("bench-storm").map_err(|e| e.to_string())?;
    let slow = match where_db {
        DbPath::Disk => None,
        DbPath::SlowLoop => Some(SlowMount::new(dir.path())?),
    };
    let db = slow
        .as_ref()
        .map_or(dir.join("controller.db"), |m| m.mnt.join("controller.db"));
    let export = dir.join("nfs");
    let bin = bin.to_path_buf();
    let settings = Settings {
        nfs_root: export.clone(),
        database: db.clone(),
        workflows_dir: env.repo.join("workflows"),
        auto_register: true,
        default_base_image: TINY.into(),
    };
    let ctl = Controller::new(&bin, dir.path(), &settings)?;
    let root = dir.join("tiny-root");
    guest_root::build_tiny_root(&env.busybox, &root)?;
    ctl.import_image(&guest_root::tarball(&root, &dir.join("tiny.tar"))?, TINY)?;

    let addr = free_port()?;
    let mut serve = Command::new(&bin);
    serve
        .arg("--config")
        .arg(dir.join("controller.toml"))
        .arg("serve")
        .env("PUREBOOT_LISTEN", addr.to_string())
        // Every client of the storm is one address (127.0.0.1): the per-address and the
        // global request budgets would measure the limiter, not the boot path.
        .env("PUREBOOT_NODE_REQUESTS_PER_MINUTE", "0")
        .env("PUREBOOT_BOOT_REQUESTS_PER_MINUTE", "0")
        // Nor may the per-address connection cap refuse the storm's own clients.
        .env("PUREBOOT_MAX_CONNECTIONS_PER_ADDRESS", "0")
        .env("RUST_LOG", "info");
    let mut daemon = Daemon::spawn("controller", serve, &dir.join("controller.log"))
        .map_err(|e| e.to_string())?;
    let pid = daemon.pid().ok_or("controller has no pid")?;
    if wait_until(Duration::from_secs(20), || TcpStream::connect(addr).is_ok()).is_err() {
        return Err(format!(
            "controller did not listen on {addr}:\n{}",
            daemon.log_tail(20)
        ));
    }

    let (reg, reg_wall) = fan_out(p.nodes, p.clients, p.round_limit, |i, t| {
        register(addr, i, t)
    });
    if reg.errors > 0 {
        return Err(format!(
            "registering {} nodes: {} errors, first: {}",
            p.nodes,
            reg.errors,
            reg.first_error.unwrap_or_default()
        ));
    }
    let before = proc_stats(pid)?;
    let mut s = format!(
        "### {label} ({who})\n\n{} nodes registered through the API in {:.2} s ({} retried after 503); \
         controller RSS then {} MiB\n\n\
         | round | requests | errors | wall s | req/s | boot p50 ms | boot p99 ms | callback p50 ms | callback p99 ms |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        p.nodes,
        reg_wall.as_secs_f64(),
        reg.retries,
        before.rss_kb / 1024
    );
    let mut all = Tally::default();
    let mut wall_all = Duration::ZERO;
    for round in 1..=p.rounds {
        let (t, wall) = fan_out(p.nodes, p.clients, p.round_limit, |i, t| {
            pi_boot(addr, i, t)
        });
        eprintln!(
            "bench: storm round {round}: {} requests in {:.2} s",
            t.requests(),
            wall.as_secs_f64()
        );
        let label = if round == 1 {
            "1 (first boots)".to_string()
        } else {
            round.to_string()
        };
        s += &t.row(&label, wall);
        wall_all += wall;
        all.merge(t);
    }
    let after = proc_stats(pid)?;
    let requests = all.requests();
    s += &all.row("**all**", wall_all);
    s += &format!(
        "\ncontroller peak RSS (VmHWM): **{:.1} MiB**; CPU during the storm {:.2} s = {:.2} ms per request\n",
        after.hwm_kb as f64 / 1024.0,
        after.cpu_s - before.cpu_s,
        (after.cpu_s - before.cpu_s) * 1000.0 / requests.max(1) as f64
    );
    if let Some(e) = &all.first_error {
        s += &format!("first error: `{e}`\n");
    }
    // Stop the daemon before counting, so every write it acknowledged is in the file.
    daemon.stop(Duration::from_secs(5));
    let db_counts = recorded(&db)?;
    let (complete, lost, extra) = reconcile(
        p.nodes,
        &db_counts,
        &[
            ("boot_request", &all.boot_ok),
            ("installed", &all.callback_ok),
        ],
    );
    let rows: usize = db_counts.values().sum();
    s +=
        &format!(
        "events recorded (sqlite, {rows} boot_request + installed rows) against the {} boots and \
         {} callbacks the clients saw acknowledged: {complete}/{} nodes complete, {lost} lost, \
         {extra} recorded beyond those acknowledged: **{}**\n",
        all.boot_ok.len(),
        all.callback_ok.len(),
        p.nodes,
        if lost == 0 { "none lost" } else { "EVENTS LOST" },
    );
    drop(slow);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_counts_lost_and_extra_events_per_node() {
        let db: HashMap<(String, String), usize> = [
            ((serial_of(0), "boot_request".to_string()), 2),
            ((serial_of(0), "installed".to_string()), 1),
            ((serial_of(1), "boot_request".to_string()), 1),
        ]
        .into_iter()
        .collect();
        // Node 0: two boots acknowledged, one callback; node 1: one boot and one callback
        // acknowledged but the callback is missing.
        let boots = [0, 0, 1];
        let callbacks = [0, 1];
        let r = reconcile(
            2,
            &db,
            &[("boot_request", &boots), ("installed", &callbacks)],
        );
        assert_eq!(r, (1, 1, 0));
        // A boot the client saw fail (not acknowledged) but the database holds: extra.
        let r = reconcile(
            2,
            &db,
            &[("boot_request", &[0, 1]), ("installed", &callbacks)],
        );
        assert_eq!(r, (1, 1, 1));
    }
}
