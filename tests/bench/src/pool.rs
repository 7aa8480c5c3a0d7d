//! The same crowd of Pis from a pool of two NFS servers and from one: what a second server
//! takes off the first. `pis` virtual Pis (1 vCPU, `memory_mb` each, tmpfs overlay, the
//! Debian root as a directory image) boot together twice in one run against the same two
//! servers (`pureboot_harness::nfs_pool`: A and B, each a ganesha in a namespace of its own):
//! first with weights 1:1 (the controller spreads the new nodes), then with B's weight 0
//! (every new node on A: one server). Each crowd's nodes are new (a node stays on the server
//! it was placed on), registered alike.
//!
//! Per server and crowd: the nodes placed there (pi-init's `booting <server>:<path>`), the
//! NFS calls it served (the guests' own counters, summed by the server each booted from),
//! the bytes it received and sent (its end of the veth pair: all it exchanges with the
//! guests, and nothing else crosses it), its ganesha's CPU seconds (/proc), and the time to
//! multi-user.target of the boots it served.

use std::path::Path;

use pureboot_harness::controller::NodeSpec;
use pureboot_harness::env::TestEnv;
use pureboot_harness::lab::{default_hostname, diskless_node, Lab, LabOptions};
use pureboot_harness::netns::PEER_LINK;
use pureboot_harness::nfs_pool::{Pool, PoolServer};
use pureboot_harness::{initramfs, serial};

use crate::crowd::{boot_at_once, crowd_pi, import_debian, sample};
use crate::procfs::{dev_bytes, proc_stats, DevBytes};
use crate::stats::{cell, median};

pub struct Params {
    /// Pis booting at once, in each crowd.
    pub pis: usize,
    pub memory_mb: u32,
}

const IMAGE: &str = "debian";
/// The goal: each server of two carries at most this share of one server's load.
const GOAL: f64 = 0.6;

/// One server's load over one crowd.
#[derive(Default)]
struct Load {
    nodes: usize,
    calls: u64,
    link: DevBytes,
    cpu_s: f64,
    usable_s: Vec<f64>,
}

/// One crowd: the load on A and on B, the boots that failed, and the nodes `nfs servers`
/// counts on each afterwards.
struct Crowd {
    load: [Load; 2],
    failures: Vec<String>,
    listed: [u64; 2],
}

/// A server's running totals: its ganesha's CPU seconds and its link's bytes.
struct Counters {
    cpu_s: f64,
    link: DevBytes,
}

fn counters(s: &PoolServer) -> Result<Counters, String> {
    let pid = s
        .nfs
        .ganesha_pid()
        .ok_or(format!("ganesha {} is not running", s.addr))?;
    Ok(Counters {
        cpu_s: proc_stats(pid)?.cpu_s,
        link: dev_bytes(s.host_pid(), PEER_LINK)?,
    })
}

fn node_serial(crowd: usize, slot: usize) -> String {
    serial(0x7000 + 0x100 * crowd as u32 + slot as u32)
}

pub fn run(env: &'static TestEnv, p: &Params) -> Result<String, String> {
    let initrd = initramfs::pi_init(env)?;
    let opts = LabOptions {
        serve: false,
        ..Default::default()
    };
    let mut lab = Lab::start("bench-pool", env, opts)?;
    let pool = Pool::start(&mut lab)?;
    let two = pool.toml([1, 1], ["active", "active"]);
    let one = pool.toml([1, 0], ["active", "active"]);
    lab.controller().edit_config(|t| t + &two)?;
    serve(&mut lab)?;
    import_debian(&lab, &[(IMAGE, "directory")])?;
    lab.controller().cli(&["image", "sync"])?;
    for crowd in 0..2 {
        for slot in 0..p.pis {
            let s = node_serial(crowd, slot);
            let spec = NodeSpec {
                base_image: Some(IMAGE.into()),
                ..diskless_node(&default_hostname(&s))
            };
            lab.add_node(&s, spec)?;
        }
    }
    // The pool first: its new nodes are spread by the weights from empty servers. Then B
    // takes no new node (weight 0, read at the controller's start) and the second crowd
    // all goes to A, whatever A already holds.
    let pooled = crowd(&lab, &pool, &initrd, 0, p)?;
    lab.controller_mut().stop();
    lab.controller().edit_config(|t| t.replace(&two, &one))?;
    serve(&mut lab)?;
    let single = crowd(&lab, &pool, &initrd, 1, p)?;
    Ok(report(p, &single, &pooled))
}

fn serve(lab: &mut Lab) -> Result<(), String> {
    let ns = &lab.ns;
    lab.controller
        .as_mut()
        .ok_or("the bench's lab runs a controller")?
        .serve(ns)
}

/// Nodes on A and on B as `nfs servers` counts them.
fn listed(lab: &Lab) -> Result<[u64; 2], String> {
    let v = lab.controller().cli_json(&["nfs", "servers"]);
    let nodes = |i: usize| {
        v[i]["nodes"]
            .as_u64()
            .ok_or(format!("`nfs servers` without nodes: {v}"))
    };
    Ok([nodes(0)?, nodes(1)?])
}

/// Boots crowd `c`'s Pis at once; its load on each server.
fn crowd(lab: &Lab, pool: &Pool, initrd: &Path, c: usize, p: &Params) -> Result<Crowd, String> {
    let pis: Vec<_> = (0..p.pis)
        .map(|slot| {
            let label = format!("pool-{c}-{slot}");
            (
                label,
                crowd_pi(lab, initrd, &node_serial(c, slot), p.memory_mb, p.pis),
            )
        })
        .collect();
    let listed_before = listed(lab)?;
    let before = [counters(&pool.servers[0])?, counters(&pool.servers[1])?];
    let runs = boot_at_once(lab, &pis);
    let after = [counters(&pool.servers[0])?, counters(&pool.servers[1])?];
    let listed_after = listed(lab)?;
    let mut load: [Load; 2] = Default::default();
    for (l, (b, a)) in load.iter_mut().zip(before.iter().zip(&after)) {
        l.cpu_s = a.cpu_s - b.cpu_s;
        l.link = DevBytes {
            received: a.link.received.saturating_sub(b.link.received),
            sent: a.link.sent.saturating_sub(b.link.sent),
        };
    }
    let mut failures = Vec::new();
    for (label, got) in runs {
        let placed = got.as_ref().ok().and_then(|(run, _)| {
            let s = pool.server_of(&run.console)?;
            pool.servers.iter().position(|x| x.addr == s.addr)
        });
        let figures = got.and_then(|(run, arrival)| sample(&run, arrival));
        if let Some(i) = placed {
            load[i].nodes += 1;
        }
        match (placed, figures) {
            (Some(i), Ok(s)) => {
                eprintln!(
                    "bench: pool {label}: from {} in {:.1} s, {} NFS calls",
                    pool.servers[i].addr,
                    s.usable_s,
                    s.load.total_calls()
                );
                load[i].calls += s.load.total_calls();
                load[i].usable_s.push(s.usable_s);
            }
            (None, Ok(_)) => failures.push(format!("{label}: no `booting <server>:<path>` line")),
            (_, Err(e)) => {
                eprintln!("bench: pool {label}: {e}");
                failures.push(format!("{label}: {e}"));
            }
        }
    }
    Ok(Crowd {
        load,
        failures,
        listed: [0, 1].map(|i| listed_after[i] - listed_before[i]),
    })
}

/// A figure of one server's load in one crowd.
type Figure = fn(&Load) -> Option<f64>;

/// A row: what, the figure, its decimals, and whether A's and B's add up to a load (a
/// median time does not).
const ROWS: [(&str, Figure, usize, bool); 6] = [
    (
        "nodes placed (pi-init's `booting <server>:<path>`)",
        |l| Some(l.nodes as f64),
        0,
        true,
    ),
    (
        "NFS calls served (the guests' counters, summed by server)",
        |l| Some(l.calls as f64),
        0,
        true,
    ),
    (
        "MB it sent (its link)",
        |l| Some(l.link.sent as f64 / 1e6),
        1,
        true,
    ),
    (
        "MB it received (its link)",
        |l| Some(l.link.received as f64 / 1e6),
        1,
        true,
    ),
    ("ganesha CPU, s", |l| Some(l.cpu_s), 2, true),
    (
        "time to multi-user.target of its boots, median s",
        |l| median(&l.usable_s),
        1,
        false,
    ),
];

fn ratio(x: Option<f64>, of: Option<f64>) -> Option<f64> {
    x.zip(of.filter(|&o| o > 0.0)).map(|(x, o)| x / o)
}

fn report(p: &Params, single: &Crowd, pooled: &Crowd) -> String {
    let one = &single.load[0];
    let [a, b] = &pooled.load;
    let mut s = format!(
        "## 7. Pis at once from a pool of two NFS servers against one (QEMU virt, TCG, 1 vCPU \
         and {} MiB each; the Debian root as a directory, tmpfs overlay, to multi-user.target; \
         {} Pis at once in each crowd, new nodes each; the pool's crowd first)\n\n\
         | {} Pis at once | one server (A; B weight 0) | pool 1:1, A | pool 1:1, B | \
         A / one | B / one | (A + B) / one |\n|---|---|---|---|---|---|---|\n",
        p.memory_mb, p.pis, p.pis
    );
    for (what, f, decimals, sums) in ROWS {
        let sum = f(a).zip(f(b)).filter(|_| sums).map(|(x, y)| x + y);
        s += &format!(
            "| {what} | {} | {} | {} | {} | {} | {} |\n",
            cell(f(one), decimals),
            cell(f(a), decimals),
            cell(f(b), decimals),
            cell(ratio(f(a), f(one)), 2),
            cell(ratio(f(b), f(one)), 2),
            cell(ratio(sum, f(one)), 2),
        );
    }
    s += &format!(
        "| boots that failed (the crowd's, of {}) | {} | {} | | | | |\n\n",
        p.pis,
        single.failures.len(),
        pooled.failures.len()
    );
    // The load rows the goal is judged on: what a server does for the boots.
    let judged = &ROWS[1..5];
    let worst = judged
        .iter()
        .flat_map(|(_, f, _, _)| [ratio(f(a), f(one)), ratio(f(b), f(one))])
        .collect::<Option<Vec<f64>>>()
        .and_then(|v| v.into_iter().reduce(f64::max));
    s += &format!(
        "Goal, each server of the pool ≤ {GOAL}× one server's load (calls, bytes both ways, \
         CPU): **{}** (highest ratio {}).\n\n",
        match worst {
            Some(w) if w <= GOAL => "met",
            Some(_) => "not met",
            None => "not measured",
        },
        cell(worst, 2)
    );
    s += &format!(
        "`nfs servers`, nodes added by each crowd: one server A {} B {}; pool A {} B {}.\n",
        single.listed[0], single.listed[1], pooled.listed[0], pooled.listed[1]
    );
    for (who, c) in [("one server", single), ("pool", pooled)] {
        if let Some(f) = c.failures.first() {
            s += &format!("{who}: {} boots failed (first: {f})\n", c.failures.len());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(nodes: usize, calls: u64, mb: u64, cpu_s: f64) -> Load {
        Load {
            nodes,
            calls,
            link: DevBytes {
                received: mb * 100_000,
                sent: mb * 1_000_000,
            },
            cpu_s,
            usable_s: vec![100.0, 120.0],
        }
    }

    fn crowd(load: [Load; 2]) -> Crowd {
        Crowd {
            load,
            failures: vec![],
            listed: [0, 0],
        }
    }

    #[test]
    fn the_goal_is_judged_on_the_busiest_server_and_times_are_not_summed() {
        let p = Params {
            pis: 4,
            memory_mb: 384,
        };
        let single = crowd([load(4, 1000, 100, 8.0), Load::default()]);
        let even = crowd([load(2, 500, 50, 4.0), load(2, 500, 50, 4.0)]);
        let r = report(&p, &single, &even);
        assert!(r.contains("**met** (highest ratio 0.50)"), "{r}");
        assert!(
            r.contains("| NFS calls served (the guests' counters, summed by server) | 1000 | 500 | 500 | 0.50 | 0.50 | 1.00 |"),
            "{r}"
        );
        assert!(
            r.contains("| 100.0 | 100.0 | 100.0 | 1.00 | 1.00 | - |"),
            "no sum of times: {r}"
        );
        // One server's CPU above the goal is enough to miss it.
        let uneven = crowd([load(2, 500, 50, 5.0), load(2, 500, 50, 3.0)]);
        assert!(report(&p, &single, &uneven).contains("**not met** (highest ratio 0.62)"));
    }
}
