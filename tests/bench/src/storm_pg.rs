//! The boot storm on PostgreSQL, beside the single controller on SQLite in the same run:
//! two `serve` daemons on one registry (a private cluster, tests/postgres), every Pi's boot
//! asked of one and its `installed` callback sent to the other (every boot id must be usable
//! on either). Then no node may be registered twice and no acknowledged event missing.
//! Last, a failover round: controller A is SIGKILLed once 30% of the nodes have started, and
//! each request that found no controller (or a reset, a 5xx) is sent to the other, as pi-init
//! does with several `pureboot.url=`. At least 99% of the boots must complete, none of the
//! acknowledged events may be lost; the survivor's latency after the kill is reported.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pureboot_harness::env::TestEnv;
use pureboot_harness::process::Daemon;
use pureboot_harness::workdir::WorkDir;
use pureboot_test_postgres::Cluster;

use crate::procfs::{proc_stats, tree_cpu_s};
use crate::stats::{cell, percentile};
use crate::storm::{self, Figures, Route, Tally};

/// Boots that must complete in the failover round, in percent of those attempted.
const MIN_COMPLETED_PERCENT: f64 = 99.0;
/// Controller A dies once this share of the failover round's nodes have started.
const KILL_AT_PERCENT: usize = 30;

/// The section: Markdown, and whether every figure met its bar.
pub fn run(env: &'static TestEnv, p: &storm::Params, bin: &Path) -> (String, bool) {
    let sqlite = storm::run(env, p, storm::DbPath::Disk, bin, "this build");
    let mut ok = true;
    let sqlite_rounds = match &sqlite {
        Ok(storm) => storm.rounds.as_slice(),
        Err(_) => &[],
    };
    let pg = two_controllers(env, p, bin);
    let pg_rounds = match &pg {
        Ok(o) => o.rounds.as_slice(),
        Err(_) => &[],
    };
    let mut s = side_by_side(sqlite_rounds, pg_rounds);
    match sqlite {
        Ok(storm) => s += &format!("\n{}", storm.text),
        Err(e) => {
            s += &format!("\nSQLite, one controller: FAILED:\n\n```\n{e}\n```\n");
            ok = false;
        }
    }
    match pg {
        Ok(o) => {
            s += &format!("\n{}", o.text);
            if !o.passed {
                s += "\n**FAILED** (see the checks above)\n";
                ok = false;
            }
        }
        Err(e) => {
            s += &format!("\nPostgreSQL, two controllers: FAILED:\n\n```\n{e}\n```\n");
            ok = false;
        }
    }
    let heading = format!(
        "## 3b. Boot storm on PostgreSQL: two controllers on one registry ({} nodes, {} \
         concurrent clients, {} rounds, then a failover round; one TCP connection per request; \
         clients, controllers and PostgreSQL share the machine){}\n\n",
        p.nodes,
        p.clients,
        p.rounds,
        if ok { "" } else { ": FAILED" }
    );
    (heading + &s, ok)
}

/// The PostgreSQL half's report, its rounds' figures, and whether every check passed.
struct Outcome {
    text: String,
    rounds: Vec<Figures>,
    passed: bool,
}

/// `| round | req/s | boot p50/p99 | callback p50/p99 |` for each engine, round by round.
fn side_by_side(sqlite: &[Figures], pg: &[Figures]) -> String {
    let mut s =
        "| round | SQLite, 1 controller: req/s | boot p50 / p99 ms | callback p50 / p99 ms \
                 | PostgreSQL, 2 controllers: req/s | boot p50 / p99 ms | callback p50 / p99 ms |\n\
                 |---|---|---|---|---|---|---|\n"
            .to_string();
    let half = |f: Option<&Figures>| match f {
        Some(f) => format!(
            "{:.0} | {} / {} | {} / {}",
            f.rate,
            cell(f.boot[0], 1),
            cell(f.boot[1], 1),
            cell(f.callback[0], 1),
            cell(f.callback[1], 1)
        ),
        None => "- | - | -".to_string(),
    };
    for round in 0..sqlite.len().max(pg.len()) {
        s += &format!(
            "| {} | {} | {} |\n",
            storm::round_label(round + 1),
            half(sqlite.get(round)),
            half(pg.get(round))
        );
    }
    s
}

/// Two addresses on 127.0.0.1 nothing listens on, not the same one.
fn two_free_ports() -> Result<[SocketAddr; 2], String> {
    let a = storm::free_port()?;
    loop {
        let b = storm::free_port()?;
        if b != a {
            return Ok([a, b]);
        }
    }
}

fn two_controllers(
    env: &'static TestEnv,
    p: &storm::Params,
    bin: &Path,
) -> Result<Outcome, String> {
    let cluster = Cluster::start()?;
    let url = cluster.new_database("bench_storm")?;
    let db_name = url.rsplit('/').next().unwrap_or_default().to_string();
    let dir = WorkDir::new("bench-storm-pg").map_err(|e| e.to_string())?;
    storm::prepare(env, bin, dir.path(), PathBuf::from(&url))?;
    let addrs = two_free_ports()?;
    let a = storm::serve(bin, dir.path(), addrs[0], "controller-a")?;
    let mut b = storm::serve(bin, dir.path(), addrs[1], "controller-b")?;
    let pids = [
        a.pid().ok_or("controller A has no pid")?,
        b.pid().ok_or("controller B has no pid")?,
    ];

    let (reg, reg_wall) = storm::register_all(p, addrs[0])?;
    let before = [proc_stats(pids[0])?, proc_stats(pids[1])?];
    let pg_before = tree_cpu_s(cluster.pid())?;
    let mut s = format!(
        "### PostgreSQL {}, two controllers on one database\n\n\
         {} nodes registered through controller A in {:.2} s ({} retried after 503). Each \
         node's boot request goes to controller A or B (node index even or odd), its callback \
         to the other one.\n\n{}",
        server_version(&cluster, &db_name),
        p.nodes,
        reg_wall.as_secs_f64(),
        reg.retries,
        storm::TABLE_HEAD
    );
    let (rows, rounds, mut all) = storm::boot_rounds(p, "storm-pg", |i| crossed(&addrs, i, false));
    s += &rows;
    let after = [proc_stats(pids[0])?, proc_stats(pids[1])?];
    let cpu = [
        after[0].cpu_s - before[0].cpu_s,
        after[1].cpu_s - before[1].cpu_s,
        tree_cpu_s(cluster.pid())? - pg_before,
    ];
    let per_request = |x: f64| x * 1000.0 / all.requests().max(1) as f64;
    s += &format!(
        "\nCPU during the storm: controller A {:.2} s, B {:.2} s, PostgreSQL (postmaster and \
         backends) {:.2} s = {:.2} + {:.2} ms per request; peak RSS (VmHWM) A {:.1} MiB, \
         B {:.1} MiB\n",
        cpu[0],
        cpu[1],
        cpu[2],
        per_request(cpu[0] + cpu[1]),
        per_request(cpu[2]),
        after[0].hwm_kb as f64 / 1024.0,
        after[1].hwm_kb as f64 / 1024.0,
    );
    if let Some(e) = &all.first_error {
        s += &format!("first error: `{e}`\n");
    }
    let mut pg = cluster.connect(&db_name)?;
    let (nodes_text, nodes_ok) = nodes_check(&mut pg, p.nodes)?;
    s += &nodes_text;
    let (events_text, lost) = storm::events_verdict("postgres", p.nodes, &recorded(&mut pg)?, &all);
    s += &events_text;
    let mut passed = nodes_ok && lost == 0 && all.errors == 0;

    let (fo_text, fo_passed) = failover(p, &addrs, a, &mut pg, &mut all)?;
    s += &fo_text;
    passed &= fo_passed;
    b.stop(Duration::from_secs(5));
    s += &format!(
        "- logs: {}; {}\n",
        [
            ("controller-a.log", "controller A"),
            ("controller-b.log", "controller B")
        ]
        .map(|(log, who)| warnings(&dir.join(log), "listening on", CONTROLLER_MARKS, who))
        .join("; "),
        warnings(
            &cluster.log(),
            "ready to accept connections",
            PG_MARKS,
            "PostgreSQL"
        )
    );
    Ok(Outcome {
        text: s,
        rounds,
        passed,
    })
}

/// Node `i`'s route over the two controllers: its boot to controller `i % 2`, its callback
/// to the other; with `fail_over`, each request goes to the other one when its own fails.
fn crossed(addrs: &[SocketAddr; 2], i: usize, fail_over: bool) -> Route<'_> {
    Route {
        servers: addrs,
        boot: i % 2,
        callback_shift: 1,
        fail_over,
    }
}

/// The failover round: controller A (`a`) is SIGKILLed once [`KILL_AT_PERCENT`] of the
/// nodes have started; `all` holds the earlier rounds' acknowledged requests, so the events
/// are reconciled over the whole run.
fn failover(
    p: &storm::Params,
    addrs: &[SocketAddr; 2],
    a: Daemon,
    pg: &mut postgres::Client,
    all: &mut Tally,
) -> Result<(String, bool), String> {
    let a = Mutex::new(a);
    let killed_at: OnceLock<Instant> = OnceLock::new();
    let kill_at = p.nodes * KILL_AT_PERCENT / 100;
    let started = Instant::now();
    let (t, wall) = storm::fan_out(p.nodes, p.clients, p.round_limit, |i, t| {
        if i == kill_at {
            a.lock().unwrap_or_else(|e| e.into_inner()).kill();
            let _ = killed_at.set(Instant::now());
        }
        storm::pi_boot(crossed(addrs, i, true), i, t)
    });
    let Some(&killed) = killed_at.get() else {
        return Err(format!(
            "failover round: node {kill_at} never started (round limit {:?}), so controller A \
             was never killed",
            p.round_limit
        ));
    };
    eprintln!(
        "bench: storm-pg failover: {} requests in {:.2} s, {} errors, {} sent to the other controller",
        t.requests(),
        wall.as_secs_f64(),
        t.errors,
        t.failovers
    );
    let attempted = t.callback_ok.len() + t.errors;
    let completed = t.callback_ok.len();
    let percent = completed as f64 * 100.0 / attempted.max(1) as f64;
    let survivor: Vec<f64> = t
        .answers
        .iter()
        .filter(|x| x.server == 1 && x.at >= killed)
        .map(|x| x.ms)
        .collect();
    let mut s = format!(
        "\n#### Failover: controller A SIGKILLed when node {kill_at} of {} started \
         ({:.2} s into the round)\n\n{}{}",
        p.nodes,
        killed.duration_since(started).as_secs_f64(),
        storm::TABLE_HEAD,
        t.row("failover", wall)
    );
    s += &format!(
        "\n- boots completed (boot and callback acknowledged) / attempted: **{completed} / \
         {attempted} = {percent:.2}%** (bar: ≥ {MIN_COMPLETED_PERCENT}%): **{}**\n\
         - requests sent again to the other controller: {} ({} of them after reaching a \
         controller that gave no answer: a reset, a cut reply, a 5xx; the rest found none)\n\
         - survivor (B) after the kill: {} requests answered, p50 {} ms, **p99 {} ms** (that \
         attempt's own latency); a Pi's boot wait over the round (failed attempts included): \
         p99 {} ms\n",
        if percent >= MIN_COMPLETED_PERCENT {
            "ok"
        } else {
            "TOO FEW"
        },
        t.failovers,
        t.cut,
        survivor.len(),
        cell(percentile(&survivor, 50.0), 1),
        cell(percentile(&survivor, 99.0), 1),
        cell(percentile(&t.boot_ms, 99.0), 1),
    );
    if let Some(e) = &t.first_error {
        s += &format!("- first error: `{e}`\n");
    }
    all.merge(t);
    let (nodes_text, nodes_ok) = nodes_check(pg, p.nodes)?;
    let (events_text, lost) = storm::events_verdict("postgres", p.nodes, &recorded(pg)?, all);
    s += &format!("- after the failover, over the whole run: {nodes_text}- {events_text}");
    Ok((s, percent >= MIN_COMPLETED_PERCENT && lost == 0 && nodes_ok))
}

/// The lines of a controller's log, and of PostgreSQL's, that say something went wrong.
const CONTROLLER_MARKS: &[&str] = &["[WARN", "[ERROR"];
const PG_MARKS: &[&str] = &["ERROR:", "FATAL:", "PANIC:", "deadlock"];

/// How many lines of the log at `path` hold any of `marks`, and the first of them; from the
/// first line holding `from` on (a controller warns of its config before it listens;
/// PostgreSQL turns away clients while it starts).
fn warnings(path: &Path, from: &str, marks: &[&str], who: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let hits: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains(from))
        .filter(|l| marks.iter().any(|m| l.contains(m)))
        .collect();
    match hits.first() {
        None => format!("{who}: no {} line", marks.join(" / ")),
        Some(first) => format!(
            "{who}: {} {} lines, the first: `{}`",
            hits.len(),
            marks.join(" / "),
            first
                .chars()
                .take(300)
                .collect::<String>()
                .replace('`', "'")
        ),
    }
}

/// No serial twice, and as many nodes as registered: the sentence and whether both hold.
fn nodes_check(pg: &mut postgres::Client, nodes: usize) -> Result<(String, bool), String> {
    let dups = pg
        .query(
            "SELECT serial, COUNT(*) FROM nodes GROUP BY serial HAVING COUNT(*) > 1",
            &[],
        )
        .map_err(|e| format!("postgres: duplicate serials: {e}"))?;
    let count: i64 = pg
        .query_one("SELECT COUNT(*) FROM nodes", &[])
        .and_then(|r| r.try_get(0))
        .map_err(|e| format!("postgres: counting nodes: {e}"))?;
    let ok = dups.is_empty() && count == nodes as i64;
    Ok((
        format!(
            "nodes in the registry: {count} (registered {nodes}), serials recorded twice: {}: **{}**\n",
            dups.len(),
            if ok { "no duplicate" } else { "NODES WRONG" }
        ),
        ok,
    ))
}

/// Events per (serial, kind), as storm.rs reads them from SQLite.
fn recorded(pg: &mut postgres::Client) -> Result<HashMap<(String, String), usize>, String> {
    let rows = pg
        .query(storm::EVENT_COUNTS, &[])
        .map_err(|e| format!("postgres: counting events: {e}"))?;
    rows.iter()
        .map(|r| {
            let serial: String = r.try_get(0).map_err(|e| e.to_string())?;
            let kind: String = r.try_get(1).map_err(|e| e.to_string())?;
            let n: i64 = r.try_get(2).map_err(|e| e.to_string())?;
            Ok(((serial, kind), n as usize))
        })
        .collect()
}

/// `SHOW server_version`, for the report ("?" if it cannot be read).
fn server_version(cluster: &Cluster, db: &str) -> String {
    cluster
        .connect(db)
        .and_then(|mut c| {
            c.query_one("SHOW server_version", &[])
                .and_then(|r| r.try_get::<_, String>(0))
                .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|_| "?".into())
}
