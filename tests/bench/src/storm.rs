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

pub(crate) fn serial_of(i: usize) -> String {
    format!("b{:07x}", i)
}

/// One request's outcome as the client saw it.
#[derive(Default)]
pub(crate) struct Tally {
    /// A Pi's wait, from its first attempt to the answer (failed attempts included).
    pub boot_ms: Vec<f64>,
    pub callback_ms: Vec<f64>,
    /// Node indices whose boot request / callback the controller acknowledged.
    pub boot_ok: Vec<usize>,
    pub callback_ok: Vec<usize>,
    /// Every acknowledged request: which controller answered, when, after how long.
    pub answers: Vec<Answer>,
    pub errors: usize,
    /// Registrations sent again after a 503 (the controller says "try again").
    pub retries: usize,
    /// Requests sent again to the next controller after a failure (see [`Route`]).
    pub failovers: usize,
    /// Attempts that reached a controller and got no answer from it (a reset, a cut reply,
    /// a 5xx), as against finding no controller at all.
    pub cut: usize,
    pub first_error: Option<String>,
}

/// One acknowledged request: the index of the controller that answered (in
/// [`Route::servers`]), when the answer came, and that attempt's own latency.
pub(crate) struct Answer {
    pub server: usize,
    pub at: Instant,
    pub ms: f64,
}

/// One round in brief: requests per second, p50 and p99 in ms of the boots and the callbacks.
pub(crate) struct Figures {
    pub rate: f64,
    pub boot: [Option<f64>; 2],
    pub callback: [Option<f64>; 2],
}

/// A storm's report and its rounds' figures.
pub(crate) struct Storm {
    pub text: String,
    pub rounds: Vec<Figures>,
}

/// The storm table's head, for [`Tally::row`]'s rows.
pub(crate) const TABLE_HEAD: &str = "| round | requests | errors | wall s | req/s | boot p50 ms | \
     boot p99 ms | callback p50 ms | callback p99 ms |\n|---|---|---|---|---|---|---|---|---|\n";

impl Tally {
    pub fn merge(&mut self, o: Tally) {
        self.boot_ms.extend(o.boot_ms);
        self.callback_ms.extend(o.callback_ms);
        self.boot_ok.extend(o.boot_ok);
        self.callback_ok.extend(o.callback_ok);
        self.answers.extend(o.answers);
        self.errors += o.errors;
        self.retries += o.retries;
        self.failovers += o.failovers;
        self.cut += o.cut;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    pub fn requests(&self) -> usize {
        self.boot_ms.len() + self.callback_ms.len() + self.errors
    }

    /// A row of the storm table: requests, errors, wall time, rate, latency percentiles.
    pub fn row(&self, label: &str, wall: Duration) -> String {
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

    /// A round's figures, for a table beside another storm's.
    pub fn figures(&self, wall: Duration) -> Figures {
        let p = |v: &[f64], q| percentile(v, q);
        Figures {
            rate: self.requests() as f64 / wall.as_secs_f64(),
            boot: [p(&self.boot_ms, 50.0), p(&self.boot_ms, 99.0)],
            callback: [p(&self.callback_ms, 50.0), p(&self.callback_ms, 99.0)],
        }
    }

    fn fail(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

pub(crate) fn free_port() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

/// Runs `work(i)` for i in 0..n on `clients` threads, each taking the next index, stopping
/// at `limit`. Returns the merged tally and the wall time.
pub(crate) fn fan_out(
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

/// Which controllers one Pi's requests go to. A request goes first to its controller, then,
/// with `fail_over`, to the next ones in turn after a failure another controller may not
/// share (no connection, a reset, a 5xx), as pi-init tries its `pureboot.url=` list.
#[derive(Clone, Copy)]
pub(crate) struct Route<'a> {
    pub servers: &'a [SocketAddr],
    /// The index in `servers` the boot request goes to first.
    pub boot: usize,
    /// The callback goes first to the controller this many places after the one that
    /// answered the boot (0: the same one; 1 with two controllers: the other one).
    pub callback_shift: usize,
    pub fail_over: bool,
}

impl<'a> Route<'a> {
    /// Every request to the one controller, never elsewhere.
    pub fn one(addr: &'a [SocketAddr; 1]) -> Route<'a> {
        Route {
            servers: addr,
            boot: 0,
            callback_shift: 0,
            fail_over: false,
        }
    }

    /// Sends one request starting at server `first`; the answering server's index and its
    /// reply, or the last failure.
    fn send(
        &self,
        first: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
        t: &mut Tally,
    ) -> Result<(usize, Instant, crate::http::Response), String> {
        let tries = if self.fail_over {
            self.servers.len()
        } else {
            1
        };
        let mut last = String::new();
        for k in 0..tries {
            let server = (first + k) % self.servers.len();
            if k > 0 {
                t.failovers += 1;
            }
            let t0 = Instant::now();
            let addr = self.servers[server];
            match request(addr, method, path, None, body) {
                Ok(r) if r.status >= 500 => {
                    t.cut += 1;
                    last = format!("{method} {path} on {addr}: {} {}", r.status, r.body)
                }
                Ok(r) => return Ok((server, t0, r)),
                Err(e) => {
                    t.cut += usize::from(!e.contains(&crate::http::connect_failed(addr)));
                    last = e
                }
            }
        }
        Err(last)
    }
}

/// `p.rounds` rounds of every node's boot, node `i`'s requests over `route(i)`: the table's
/// rows (each round's, then all's), each round's figures, and the rounds' tallies merged.
pub(crate) fn boot_rounds<'r>(
    p: &Params,
    what: &str,
    route: impl Fn(usize) -> Route<'r> + Sync,
) -> (String, Vec<Figures>, Tally) {
    let (mut rows, mut rounds, mut all) = (String::new(), Vec::new(), Tally::default());
    let mut wall_all = Duration::ZERO;
    for round in 1..=p.rounds {
        let (t, wall) = fan_out(p.nodes, p.clients, p.round_limit, |i, t| {
            pi_boot(route(i), i, t)
        });
        eprintln!(
            "bench: {what} round {round}: {} requests in {:.2} s, {} errors",
            t.requests(),
            wall.as_secs_f64(),
            t.errors
        );
        rows += &t.row(&round_label(round), wall);
        rounds.push(t.figures(wall));
        wall_all += wall;
        all.merge(t);
    }
    rows += &all.row("**all**", wall_all);
    (rows, rounds, all)
}

/// Round `n` (from 1) as the tables name it: the first renders every node's tree.
pub(crate) fn round_label(n: usize) -> String {
    if n == 1 {
        "1 (first boots)".to_string()
    } else {
        n.to_string()
    }
}

fn answered(t: &mut Tally, server: usize, t0: Instant) {
    t.answers.push(Answer {
        server,
        at: Instant::now(),
        ms: ms_since(t0),
    });
}

/// One Pi's boot: ask what to boot, then report it installed.
pub(crate) fn pi_boot(route: Route, i: usize, t: &mut Tally) {
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
    let (booted_on, callback) = match route.send(route.boot, "GET", &path, None, t) {
        Ok((server, sent, r)) if r.status == 200 && r.body.contains("nfs_boot") => {
            t.boot_ms.push(ms_since(t0));
            t.boot_ok.push(i);
            answered(t, server, sent);
            let answer: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            match answer["callback_url"]
                .as_str()
                .and_then(|u| u.find("/api/").map(|at| u[at..].to_string()))
            {
                Some(p) => (server, p),
                None => return t.fail(format!("GET {path}: no callback_url in {}", r.body)),
            }
        }
        Ok((_, _, r)) => return t.fail(format!("GET {path}: {} {}", r.status, r.body)),
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
    let first = booted_on + route.callback_shift;
    match route.send(first, "POST", &path, Some(&body), t) {
        Ok((server, sent, r)) if r.status == 200 => {
            t.callback_ms.push(ms_since(t1));
            t.callback_ok.push(i);
            answered(t, server, sent);
        }
        Ok((_, _, r)) => t.fail(format!("POST {path}: {} {}", r.status, r.body)),
        Err(e) => t.fail(e),
    }
}

/// Registers the `p.nodes` nodes through the API of the controller at `addr`, `p.clients`
/// at a time; the tally (for its 503 retries) and the wall time, or the first error.
pub(crate) fn register_all(p: &Params, addr: SocketAddr) -> Result<(Tally, Duration), String> {
    let (reg, wall) = fan_out(p.nodes, p.clients, p.round_limit, |i, t| {
        register(addr, i, t)
    });
    match reg.first_error {
        Some(e) => Err(format!(
            "registering {} nodes on {addr}: {} errors, first: {e}",
            p.nodes, reg.errors
        )),
        None => Ok((reg, wall)),
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

/// The storm's events per serial and kind (`boot_request`, `installed`), in SQL either engine runs.
pub(crate) const EVENT_COUNTS: &str = "SELECT serial, kind, COUNT(*) FROM boot_events \
     WHERE kind IN ('boot_request', 'installed') GROUP BY serial, kind";

/// Events per (serial, kind) in the database.
fn recorded(db: &Path) -> Result<HashMap<(String, String), usize>, String> {
    let rows = sql(db, EVENT_COUNTS)?;
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

/// The sentence on the events `db` holds (per serial and kind, read from `engine`) against
/// the requests `all` saw acknowledged, for `nodes` nodes; and how many of those are lost.
pub(crate) fn events_verdict(
    engine: &str,
    nodes: usize,
    db: &HashMap<(String, String), usize>,
    all: &Tally,
) -> (String, usize) {
    let (complete, lost, extra) = reconcile(
        nodes,
        db,
        &[
            ("boot_request", &all.boot_ok),
            ("installed", &all.callback_ok),
        ],
    );
    let rows: usize = db.values().sum();
    let text = format!(
        "events recorded ({engine}, {rows} boot_request + installed rows) against the {} boots and \
         {} callbacks the clients saw acknowledged: {complete}/{nodes} nodes complete, {lost} lost, \
         {extra} recorded beyond those acknowledged: **{}**\n",
        all.boot_ok.len(),
        all.callback_ok.len(),
        if lost == 0 { "none lost" } else { "EVENTS LOST" },
    );
    (text, lost)
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

/// Writes the controller's config into `dir` (its registry at `database`: a file or a
/// `postgres://` URL) and imports the tiny image through the CLI.
pub(crate) fn prepare(
    env: &'static TestEnv,
    bin: &Path,
    dir: &Path,
    database: PathBuf,
) -> Result<(), String> {
    let settings = Settings {
        nfs_root: dir.join("nfs"),
        database,
        workflows_dir: env.repo.join("workflows"),
        auto_register: true,
        default_base_image: TINY.into(),
    };
    let ctl = Controller::new(bin, dir, &settings)?;
    let root = dir.join("tiny-root");
    guest_root::build_tiny_root(&env.busybox, &root)?;
    ctl.import_image(&guest_root::tarball(&root, &dir.join("tiny.tar"))?, TINY)
}

/// `serve` on `addr` with the config [`prepare`] wrote into `dir`, its log `<name>.log`;
/// returned once it accepts connections.
pub(crate) fn serve(
    bin: &Path,
    dir: &Path,
    addr: SocketAddr,
    name: &str,
) -> Result<Daemon, String> {
    let mut serve = Command::new(bin);
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
    let mut daemon =
        Daemon::spawn(name, serve, &dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
    if wait_until(Duration::from_secs(20), || TcpStream::connect(addr).is_ok()).is_err() {
        return Err(format!(
            "{name} did not listen on {addr}:\n{}",
            daemon.log_tail(20)
        ));
    }
    if let Some(status) = daemon.exited() {
        return Err(format!(
            "{name} exited ({status}):\n{}",
            daemon.log_tail(20)
        ));
    }
    Ok(daemon)
}

pub fn run(
    env: &'static TestEnv,
    p: &Params,
    where_db: DbPath,
    bin: &Path,
    who: &str,
) -> Result<Storm, String> {
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
    prepare(env, bin, dir.path(), db.clone())?;
    let addr = free_port()?;
    let mut daemon = serve(bin, dir.path(), addr, "controller")?;
    let pid = daemon.pid().ok_or("controller has no pid")?;

    let (reg, reg_wall) = register_all(p, addr)?;
    let before = proc_stats(pid)?;
    let mut s = format!(
        "### {label} ({who})\n\n{} nodes registered through the API in {:.2} s ({} retried after 503); \
         controller RSS then {} MiB\n\n{TABLE_HEAD}",
        p.nodes,
        reg_wall.as_secs_f64(),
        reg.retries,
        before.rss_kb / 1024
    );
    let one = [addr];
    let (rows, rounds, all) = boot_rounds(p, "storm", |_| Route::one(&one));
    s += &rows;
    let after = proc_stats(pid)?;
    let requests = all.requests();
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
    s += &events_verdict("sqlite", p.nodes, &db_counts, &all).0;
    drop(slow);
    Ok(Storm { text: s, rounds })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on 127.0.0.1 that answers `status` to `n` requests, one connection each.
    fn answering(status: u16, n: usize) -> SocketAddr {
        use std::io::{Read, Write};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut c in l.incoming().take(n).flatten() {
                let mut head = Vec::new();
                let mut byte = [0u8];
                while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = write!(c, "HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}");
            }
        });
        addr
    }

    #[test]
    fn a_failed_request_goes_to_the_next_controller_only_when_failing_over() {
        // Nothing listens on `dead` (its probe listener is closed again).
        let dead = free_port().unwrap();
        let (busy, live) = (answering(503, 2), answering(200, 2));
        let servers = [dead, busy, live];
        let route = Route {
            servers: &servers,
            boot: 0,
            callback_shift: 1,
            fail_over: true,
        };
        let mut t = Tally::default();
        // Refused, then a 5xx: on to the third.
        let (server, _, r) = route.send(0, "GET", "/x", None, &mut t).unwrap();
        assert_eq!((server, r.status, t.failovers, t.cut), (2, 200, 2, 1));
        // Without failing over, the first failure is the answer, and it names the server.
        let alone = Route {
            fail_over: false,
            ..route
        };
        let Err(e) = alone.send(1, "GET", "/x", None, &mut t) else {
            panic!("a 503 without failing over is a failure")
        };
        assert!(e.contains("503") && e.contains(&busy.to_string()), "{e}");
        assert!(alone.send(0, "GET", "/x", None, &mut t).is_err());
        assert_eq!(t.failovers, 2);
        // Starting at the last one wraps around to the first only after it failed.
        assert_eq!(route.send(2, "GET", "/x", None, &mut t).unwrap().0, 2);
    }

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
