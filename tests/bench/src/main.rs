//! `pureboot-bench` (run by tests/bench/bench.sh): the benchmarks, each beside its baseline
//! in the same run — boot path (pi-init vs the busybox shell flow), sizes, a boot storm
//! against a release controller on 127.0.0.1, base image import vs GNU tar, and the time to a
//! usable Debian root with the NFS load of a boot (pi-init vs the same shell flow). Prints a
//! Markdown report and, with `--out <file>`, writes it there too.
//!
//! Options: `--boots <n>` (7), `--cpus <n,...>` (vCPUs of the virtual Pi, one series each; 1,2),
//! `--kernels <debian,pi>` (the kernels the boot path runs on, one set of series each; both),
//! `--log <level>` (pi-init's `pureboot.log=`; default info, as deployed),
//! `--pi-export <yes|no>` (no: pi-init's command line names only the controller, as
//! pureboot-image writes it; yes: also the export, `pureboot.nfs_server=`/`nfs_path=` as the
//! baseline's, so pi-init mounts it beside the controller's request), `--nodes <n>` (1000), `--clients <n>` (100), `--rounds <n>` (3),
//! `--import-mb <n>` (300), `--import-runs <n>` (5), `--usable-boots <n>` (5),
//! `--usable-variant <label>=<kernel parameters>` (one more pi-init variant; repeatable),
//! `--pis <n>` (4: virtual Pis booting the Debian root at once from one NFS server),
//! `--crowd-rounds <n>` (2), `--pi-memory <MiB>` (384, each of those Pis; `--pis` and it
//! also size the `pool` section: the same Pis at once from a pool of two NFS servers and
//! from one), `--only boot,sizes,storm,storm-pg,import,usable,crowd,pool` (storm-pg: the
//! storm on SQLite beside two controllers on one PostgreSQL, then one of them killed;
//! `--nodes`, `--clients`, `--rounds` as the storm's),
//! `--out <file>`, `--storm-baseline <controller binary>` (another build, e.g. of main, stormed
//! beside this one in the same run).

mod boot;
mod crowd;
mod http;
mod import;
mod machine;
mod pool;
mod procfs;
mod sizes;
mod stats;
mod storm;
mod storm_pg;
mod usable;
mod watch;

use std::time::{Duration, Instant};

use pureboot_harness::env::{KernelKind, TestEnv};

struct Args {
    boots: usize,
    cpus: Vec<u32>,
    kernels: Vec<KernelKind>,
    log: Option<String>,
    pi_export: bool,
    nodes: usize,
    clients: usize,
    rounds: usize,
    import_mb: u64,
    import_runs: usize,
    usable_boots: usize,
    usable_variants: Vec<String>,
    pis: usize,
    crowd_rounds: usize,
    pi_memory: u32,
    only: Vec<String>,
    out: Option<String>,
    storm_baseline: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        boots: 7,
        cpus: vec![1, 2],
        kernels: KernelKind::ALL.to_vec(),
        log: None,
        pi_export: false,
        nodes: 1000,
        clients: 100,
        rounds: 3,
        import_mb: 300,
        import_runs: 5,
        usable_boots: 5,
        pis: 4,
        crowd_rounds: 2,
        pi_memory: 384,
        usable_variants: vec![],
        only: vec![],
        out: None,
        storm_baseline: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--boots" => a.boots = num(&value)?.clamp(1, 50),
            "--cpus" => {
                a.cpus = value
                    .split(',')
                    .map(|v| num(v).map(|n| n.clamp(1, 8) as u32))
                    .collect::<Result<_, _>>()?
            }
            "--kernels" => {
                a.kernels = value
                    .split(',')
                    .map(|k| k.parse().map_err(|e| format!("{flag}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--log" => a.log = Some(value),
            "--pi-export" => {
                a.pi_export = match value.as_str() {
                    "yes" => true,
                    "no" => false,
                    v => return Err(format!("{flag} {v}: yes or no")),
                }
            }
            "--nodes" => a.nodes = num(&value)?.clamp(1, 100_000),
            "--clients" => a.clients = num(&value)?.clamp(1, 1000),
            "--rounds" => a.rounds = num(&value)?.clamp(1, 20),
            "--import-mb" => a.import_mb = num(&value)?.clamp(1, 4096) as u64,
            "--import-runs" => a.import_runs = num(&value)?.clamp(1, 10),
            "--usable-boots" => a.usable_boots = num(&value)?.clamp(1, 50),
            "--usable-variant" => a.usable_variants.push(value),
            "--pis" => a.pis = num(&value)?.clamp(1, 32),
            "--crowd-rounds" => a.crowd_rounds = num(&value)?.clamp(1, 20),
            "--pi-memory" => a.pi_memory = num(&value)?.clamp(192, 4096) as u32,
            "--only" => a.only = value.split(',').map(str::to_string).collect(),
            "--out" => a.out = Some(value),
            "--storm-baseline" => a.storm_baseline = Some(value.into()),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("pureboot-bench: {e}");
        std::process::exit(2)
    });
    let env = TestEnv::get().unwrap_or_else(|e| {
        eprintln!("pureboot-bench: {e}");
        std::process::exit(1)
    });
    let wanted = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let mut report = format!("# pureboot benchmarks\n\n{}\n", machine::describe());
    let mut failed = false;
    // Each section gives its Markdown and whether everything in it ran.
    type Section<'a> = Box<dyn Fn() -> (String, bool) + 'a>;
    let sections: [(&str, Section); 8] = [
        (
            "boot",
            Box::new(|| {
                boot::run(
                    env,
                    &boot::Params {
                        kernels: &args.kernels,
                        boots: args.boots,
                        cpus: &args.cpus,
                        log: args.log.as_deref(),
                        pi_export: args.pi_export,
                    },
                )
            }),
        ),
        ("sizes", Box::new(|| whole("sizes", sizes::run(env)))),
        ("storm", Box::new(|| storm_run(env, &args))),
        ("storm-pg", Box::new(|| storm_pg_run(env, &args))),
        (
            "import",
            Box::new(|| whole("import", import::run(env, args.import_mb, args.import_runs))),
        ),
        (
            "usable",
            Box::new(|| {
                whole(
                    "usable",
                    usable::run(env, args.usable_boots, &args.usable_variants),
                )
            }),
        ),
        (
            "crowd",
            Box::new(|| {
                let p = crowd::Params {
                    pis: args.pis,
                    rounds: args.crowd_rounds,
                    memory_mb: args.pi_memory,
                };
                whole("crowd", crowd::run(env, &p))
            }),
        ),
        (
            "pool",
            Box::new(|| {
                let p = pool::Params {
                    pis: args.pis,
                    memory_mb: args.pi_memory,
                };
                whole("pool", pool::run(env, &p))
            }),
        ),
    ];
    for (name, section) in sections {
        if !wanted(name) {
            continue;
        }
        let t0 = Instant::now();
        eprintln!("bench: {name} (load {})", machine::load());
        let (text, ok) = section();
        failed |= !ok;
        println!("{text}");
        report += &text;
        report += &format!(
            "\n_({name}: {:.0} s, load average after: {})_\n\n",
            t0.elapsed().as_secs_f64(),
            machine::load()
        );
    }
    if let Some(out) = &args.out {
        if let Err(e) = std::fs::write(out, &report) {
            eprintln!("pureboot-bench: {out}: {e}");
            failed = true;
        }
    }
    std::process::exit(i32::from(failed));
}

/// A section that either ran or failed as a whole.
fn whole(name: &str, r: Result<String, String>) -> (String, bool) {
    match r {
        Ok(text) => (text, true),
        Err(e) => (format!("## {name}: FAILED\n\n```\n{e}\n```\n"), false),
    }
}

/// The storm on SQLite (the machine's disk) and on PostgreSQL with two controllers, then
/// with one of them killed (see storm_pg.rs).
fn storm_pg_run(env: &'static TestEnv, a: &Args) -> (String, bool) {
    match env.binary("pureboot-controller") {
        Ok(bin) => storm_pg::run(env, &storm_params(a), &bin),
        Err(e) => (
            format!("## 3b. Boot storm on PostgreSQL: FAILED\n\n{e}\n"),
            false,
        ),
    }
}

fn storm_params(a: &Args) -> storm::Params {
    storm::Params {
        nodes: a.nodes,
        clients: a.clients,
        rounds: a.rounds,
        round_limit: Duration::from_secs(300),
    }
}

/// The storm twice: the database on the machine's disk, then on the slow path. One
/// placement failing does not hide the other's figures.
fn storm_run(env: &'static TestEnv, a: &Args) -> (String, bool) {
    let p = storm_params(a);
    let mut s = format!(
        "## 3. Boot storm ({} nodes, {} concurrent clients, {} rounds; one TCP connection per \
         request; client and controller share the machine)\n\n",
        a.nodes, a.clients, a.rounds
    );
    let mut ok = true;
    let this = match env.binary("pureboot-controller") {
        Ok(b) => b,
        Err(e) => return (format!("{s}FAILED: {e}\n"), false),
    };
    let mut builds = Vec::new();
    if let Some(base) = &a.storm_baseline {
        builds.push((base.clone(), format!("baseline {}", base.display())));
    }
    builds.push((this, "this build".to_string()));
    for db in [storm::DbPath::Disk, storm::DbPath::SlowLoop] {
        for (bin, who) in &builds {
            match storm::run(env, &p, db, bin, who) {
                Ok(storm) => s += &storm.text,
                Err(e) => {
                    s += &format!("{who}: FAILED:\n\n```\n{e}\n```\n");
                    ok = false;
                }
            }
            s += "\n";
        }
    }
    (s, ok)
}
