//! After the boot answer: the stages of each pending boot (`node_boots`: pi-init's report,
//! "boot complete"), the post-boot steps' runs (`step_runs`, a bounded history per node),
//! the last success of each step (`step_done`, what `first_boot` goes by) and the
//! operator's reruns (`step_reruns`).

use std::collections::BTreeMap;

use super::db::{params, OptionalExtension, Row};
use pureboot_contract::after_boot::{BootComplete, StepOutcome};
use serde::Serialize;

use super::{sql, StoreError, Tx, NOW};

/// Step runs kept per node (the newest); the last success of each step is kept apart.
pub const STEP_RUNS_PER_NODE: i64 = 64;
/// The name of a rerun that applies to every step.
pub const EVERY_STEP: &str = "";

/// One boot as the registry saw it, stage by stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootRecord {
    pub boot_id: String,
    pub ip: String,
    /// When the answer was sent.
    pub at: String,
    pub layer: String,
    /// pi-init's installed report: when, and its own time from start to callback.
    pub installed_at: Option<String>,
    pub installed_ms: Option<u64>,
    /// pi-init's steps, `[{"name", "ms"}]`.
    pub pi_init_steps: Option<serde_json::Value>,
    pub complete_at: Option<String>,
    /// From the answer to the complete report, ms.
    pub answer_to_complete_ms: Option<u64>,
    /// From the answer to pi-init's report, ms.
    pub answer_to_installed_ms: Option<u64>,
    pub complete: Option<BootComplete>,
    pub healthy: Option<bool>,
}

impl BootRecord {
    /// The last stage this boot reached.
    pub fn stage(&self) -> &'static str {
        if self.complete_at.is_some() {
            "boot complete"
        } else if self.installed_at.is_some() {
            "pi-init report"
        } else {
            "answer sent"
        }
    }
}

/// One run of a post-boot step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRun {
    pub id: i64,
    pub boot_id: String,
    pub name: String,
    pub digest: String,
    pub ok: bool,
    /// `exit 0`, `timed out`, ...
    pub summary: String,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// The tail of its output, control characters escaped.
    pub output: String,
    pub output_dropped: u64,
    pub at: String,
}

/// A step's last success: its content, the layer, the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDone {
    pub digest: String,
    pub layer: String,
    pub run_id: i64,
}

const BOOT_COLUMNS: &str = "boot_id, ip, at, layer, installed_at, installed_ms, pi_init_steps,
    complete_at, CAST((julianday(complete_at) - julianday(at)) * 86400000 AS INTEGER),
    complete, healthy,
    CAST((julianday(installed_at) - julianday(at)) * 86400000 AS INTEGER)";

fn boot_from_row(r: &Row<'_>) -> super::db::Result<BootRecord> {
    boot_at(r, 0)
}

/// The boot whose [`BOOT_COLUMNS`] start at column `o`.
fn boot_at(r: &Row<'_>, o: usize) -> super::db::Result<BootRecord> {
    let json = |i: usize| -> super::db::Result<Option<String>> { r.get(o + i) };
    let ms = |i: usize| -> super::db::Result<Option<u64>> {
        Ok(r.get::<Option<i64>>(o + i)?.map(|v| v.max(0) as u64))
    };
    Ok(BootRecord {
        boot_id: r.get(o)?,
        ip: r.get(o + 1)?,
        at: r.get(o + 2)?,
        layer: r.get(o + 3)?,
        installed_at: r.get(o + 4)?,
        installed_ms: ms(5)?,
        pi_init_steps: json(6)?.and_then(|t| serde_json::from_str(&t).ok()),
        complete_at: r.get(o + 7)?,
        answer_to_complete_ms: ms(8)?,
        complete: json(9)?.and_then(|t| serde_json::from_str(&t).ok()),
        healthy: r.get::<Option<bool>>(o + 10)?,
        answer_to_installed_ms: ms(11)?,
    })
}

/// Over `node_boots b`: no newer boot of the same node.
const NEWEST: &str = "NOT EXISTS (SELECT 1 FROM node_boots n WHERE n.node_id = b.node_id
                      AND (n.at > b.at OR (n.at = b.at AND n.rowid > b.rowid)))";

/// Over `node_boots b`, `?1` = seconds: answered that long ago and never complete.
const STUCK: &str = "(b.complete_at IS NULL AND julianday(b.at) < julianday('now') - ?1 / 86400.0)";

impl Tx<'_> {
    /// The boot with this id, whatever its stage.
    pub fn boot_record(&self, boot_id: &str) -> Result<Option<BootRecord>, StoreError> {
        self.tx
            .prepare_cached(&format!(
                "SELECT {BOOT_COLUMNS} FROM node_boots WHERE boot_id = ?1"
            ))
            .and_then(|mut st| st.query_row([boot_id], boot_from_row).optional())
            .map_err(sql("read boot"))
    }

    /// The node's newest boot (of any address).
    pub fn last_boot(&self, node_id: &str) -> Result<Option<BootRecord>, StoreError> {
        self.tx
            .prepare_cached(&format!(
                "SELECT {BOOT_COLUMNS} FROM node_boots WHERE node_id = ?1
                 ORDER BY at DESC, rowid DESC LIMIT 1"
            ))
            .and_then(|mut st| st.query_row([node_id], boot_from_row).optional())
            .map_err(sql("read last boot"))
    }

    /// Each node's newest boot: `(node id, boot, stuck)`; stuck = its answer is older than
    /// `stuck_after_secs` and it never reported complete.
    pub fn last_boots(
        &self,
        stuck_after_secs: u64,
    ) -> Result<Vec<(String, BootRecord, bool)>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(&format!(
                "SELECT node_id, {STUCK}, {BOOT_COLUMNS} FROM node_boots b WHERE {NEWEST} ORDER BY at"
            ))
            .map_err(sql("read the newest boots"))?;
        let rows = st
            // The boot's columns follow the node id and the stuck flag.
            .query_map([stuck_after_secs as i64], |r| {
                Ok((r.get(0)?, boot_at(r, 2)?, r.get(1)?))
            })
            .map_err(sql("read the newest boots"))?;
        rows.map(|r| r.map_err(sql("read the newest boots")))
            .collect()
    }

    /// How many nodes' newest boot is stuck (as in [`Self::last_boots`]).
    pub fn count_stuck(&self, stuck_after_secs: u64) -> Result<i64, StoreError> {
        self.tx
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM node_boots b WHERE {NEWEST} AND {STUCK}"
            ))
            .and_then(|mut st| st.query_row([stuck_after_secs as i64], |r| r.get(0)))
            .map_err(sql("count stuck boots"))
    }

    /// pi-init's report of this boot.
    pub fn boot_installed(
        &self,
        boot_id: &str,
        elapsed_ms: Option<u64>,
        steps: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "UPDATE node_boots SET installed_at = {NOW}, installed_ms = ?2, pi_init_steps = ?3
                 WHERE boot_id = ?1"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    boot_id,
                    elapsed_ms.map(|v| v as i64),
                    steps.to_string()
                ])
            })
            .map_err(sql("record pi-init's report"))?;
        Ok(())
    }

    /// The layer this boot really runs on, when pi-init's report says it is not the planned.
    pub fn set_boot_layer(&self, boot_id: &str, layer: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE node_boots SET layer = ?2 WHERE boot_id = ?1")
            .and_then(|mut st| st.execute(params![boot_id, layer]))
            .map_err(sql("record the boot's layer"))?;
        Ok(())
    }

    /// "Boot complete" of this boot (the first one counts; a second is refused upstream).
    pub fn boot_completed(
        &self,
        boot_id: &str,
        report: &BootComplete,
        healthy: bool,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(report).expect("a report serialises");
        self.tx
            .prepare_cached(&format!(
                "UPDATE node_boots SET complete_at = {NOW}, complete = ?2, healthy = ?3
                 WHERE boot_id = ?1"
            ))
            .and_then(|mut st| st.execute(params![boot_id, text, healthy]))
            .map_err(sql("record boot complete"))?;
        Ok(())
    }

    /// Records one step run (its output already bounded and escaped by the caller); a
    /// success becomes the step's last success. Older runs beyond the bound go.
    pub fn record_step_run(
        &self,
        node_id: &str,
        boot_id: &str,
        layer: &str,
        o: &StepOutcome,
        output: &str,
    ) -> Result<i64, StoreError> {
        let ok = o.succeeded();
        let id = self
            .tx
            .prepare_cached(&format!(
                "INSERT INTO step_runs (node_id, boot_id, name, digest, layer, ok, summary,
                   exit_code, timed_out, duration_ms, output, output_dropped, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, {NOW})
                 RETURNING id"
            ))
            .and_then(|mut st| {
                st.query_row(
                    params![
                        node_id,
                        boot_id,
                        o.name,
                        o.digest,
                        layer,
                        ok,
                        o.summary(),
                        o.exit_code,
                        o.timed_out,
                        o.duration_ms as i64,
                        output,
                        o.output_dropped as i64
                    ],
                    |r| r.get::<i64>(0),
                )
            })
            .map_err(sql("record step run"))?;
        if ok {
            self.tx
                .prepare_cached(
                    "INSERT INTO step_done (node_id, name, digest, layer, run_id)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (node_id, name) DO UPDATE SET digest = excluded.digest,
                       layer = excluded.layer, run_id = excluded.run_id",
                )
                .and_then(|mut st| st.execute(params![node_id, o.name, o.digest, layer, id]))
                .map_err(sql("record step success"))?;
        }
        self.tx
            .prepare_cached(
                "DELETE FROM step_runs WHERE node_id = ?1 AND id <=
                   (SELECT id FROM step_runs WHERE node_id = ?1 ORDER BY id DESC
                    LIMIT 1 OFFSET ?2)",
            )
            .and_then(|mut st| st.execute(params![node_id, STEP_RUNS_PER_NODE]))
            .map_err(sql("drop old step runs"))?;
        Ok(id)
    }

    /// The node's newest step runs, newest first.
    pub fn step_runs(&self, node_id: &str, limit: u32) -> Result<Vec<StepRun>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT id, boot_id, name, digest, ok, summary, exit_code, timed_out,
                   duration_ms, output, output_dropped, at
                 FROM step_runs WHERE node_id = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(sql("read step runs"))?;
        let rows = st
            .query_map(params![node_id, limit], |r| {
                Ok(StepRun {
                    id: r.get(0)?,
                    boot_id: r.get(1)?,
                    name: r.get(2)?,
                    digest: r.get(3)?,
                    ok: r.get(4)?,
                    summary: r.get(5)?,
                    exit_code: r.get(6)?,
                    timed_out: r.get(7)?,
                    duration_ms: r.get::<i64>(8)?.max(0) as u64,
                    output: r.get(9)?,
                    output_dropped: r.get::<i64>(10)?.max(0) as u64,
                    at: r.get(11)?,
                })
            })
            .map_err(sql("read step runs"))?;
        rows.map(|r| r.map_err(sql("read step runs"))).collect()
    }

    /// Each step's last success, by name.
    pub fn steps_done(&self, node_id: &str) -> Result<BTreeMap<String, StepDone>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached("SELECT name, digest, layer, run_id FROM step_done WHERE node_id = ?1")
            .map_err(sql("read step successes"))?;
        let rows = st
            .query_map([node_id], |r| {
                Ok((
                    r.get::<String>(0)?,
                    StepDone {
                        digest: r.get(1)?,
                        layer: r.get(2)?,
                        run_id: r.get(3)?,
                    },
                ))
            })
            .map_err(sql("read step successes"))?;
        rows.map(|r| r.map_err(sql("read step successes")))
            .collect()
    }

    /// The reruns asked for, by step name ([`EVERY_STEP`] for all): a success counts only
    /// if its run id is above the one recorded.
    pub fn step_reruns(&self, node_id: &str) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached("SELECT name, after_id FROM step_reruns WHERE node_id = ?1")
            .map_err(sql("read reruns"))?;
        let rows = st
            .query_map([node_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("read reruns"))?;
        rows.map(|r| r.map_err(sql("read reruns"))).collect()
    }

    /// Asks for `name` (or every step) to run again at the node's next boot.
    pub fn rerun_steps(&self, node_id: &str, name: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO step_reruns (node_id, name, after_id)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(id), 0) FROM step_runs))
                 ON CONFLICT (node_id, name) DO UPDATE SET after_id = excluded.after_id",
            )
            .and_then(|mut st| st.execute(params![node_id, name]))
            .map_err(sql("record rerun"))?;
        Ok(())
    }
}
