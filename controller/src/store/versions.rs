//! Image versions, channels, rollouts and their event stream (migration 10). Rows become
//! typed values here; what they mean is `domain::versions` and `domain::rollout`.

use super::db::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{sql, StoreError, Tx, NOW};

/// One imported version: an immutable directory under `base/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub id: String,
    pub channel: String,
    pub seq: u32,
    pub dir: String,
    /// sha256 of the imported archive; none for a directory registered from an earlier
    /// release (it was never imported as a version).
    pub digest: Option<String>,
    /// File content written by the import (uncompressed), bytes.
    pub size: Option<u64>,
    pub imported_at: String,
    /// False while its import runs (or after one crashed): never answered.
    pub complete: bool,
    /// Why a rollout of it failed; a later rollout needs `--force`.
    pub bad: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    pub name: String,
    pub version: String,
    /// The version before the last move: what `image rollback` goes back to.
    pub previous: Option<String>,
    pub moved_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub id: i64,
    pub channel: String,
    pub version: String,
    pub from_version: String,
    /// The canaries' serials.
    pub canaries: Vec<String>,
    pub wait_secs: u64,
    pub min_healthy: u32,
    pub health: String,
    pub started_at: String,
    /// Unix seconds of `started_at`.
    pub started_unix: i64,
    /// `succeeded`, `failed`, `cancelled`; none while it runs.
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub ended_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageEvent {
    pub id: i64,
    pub channel: String,
    pub rollout: Option<i64>,
    pub kind: String,
    pub at: String,
    pub detail: serde_json::Value,
}

/// A canary's newest boot on a version since a time: its stages as the registry has them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CanaryBoot {
    pub installed: bool,
    pub complete: bool,
    pub healthy: Option<bool>,
    pub failed: Option<String>,
    /// A post-boot step of this boot that failed.
    pub failed_step: Option<String>,
}

const VERSION_COLUMNS: &str = "id, channel, seq, dir, digest, size, imported_at, complete, bad";

fn version_row(r: &Row<'_>) -> super::db::Result<Version> {
    Ok(Version {
        id: r.get(0)?,
        channel: r.get(1)?,
        seq: r.get(2)?,
        dir: r.get(3)?,
        digest: r.get(4)?,
        size: r.get::<Option<i64>>(5)?.map(|v| v.max(0) as u64),
        imported_at: r.get(6)?,
        complete: r.get(7)?,
        bad: r.get(8)?,
    })
}

const ROLLOUT_COLUMNS: &str = "id, channel, version, from_version, canaries, wait_secs,
    min_healthy, health, started_at, CAST(strftime('%s', started_at) AS INTEGER), outcome,
    reason, ended_at";

fn rollout_row(r: &Row<'_>) -> super::db::Result<Rollout> {
    let canaries: String = r.get(4)?;
    Ok(Rollout {
        id: r.get(0)?,
        channel: r.get(1)?,
        version: r.get(2)?,
        from_version: r.get(3)?,
        canaries: serde_json::from_str(&canaries).unwrap_or_default(),
        wait_secs: r.get::<i64>(5)?.max(0) as u64,
        min_healthy: r.get(6)?,
        health: r.get(7)?,
        started_at: r.get(8)?,
        started_unix: r.get(9)?,
        outcome: r.get(10)?,
        reason: r.get(11)?,
        ended_at: r.get(12)?,
    })
}

impl Tx<'_> {
    fn versions_where(
        &self,
        filter: &str,
        arg: &str,
        what: &'static str,
    ) -> Result<Vec<Version>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM image_versions WHERE {filter}
                 ORDER BY channel, seq"
            ))
            .map_err(sql(what))?;
        let rows = st.query_map([arg], version_row).map_err(sql(what))?;
        rows.map(|r| r.map_err(sql(what))).collect()
    }

    /// Every version (of one channel with `Some`), by channel then age.
    pub fn versions(&self, channel: Option<&str>) -> Result<Vec<Version>, StoreError> {
        match channel {
            Some(c) => self.versions_where("channel = ?1", c, "read versions"),
            None => self.versions_where("?1 = ?1", "", "read versions"),
        }
    }

    pub fn version(&self, id: &str) -> Result<Option<Version>, StoreError> {
        Ok(self
            .versions_where("id = ?1", id, "read version")?
            .into_iter()
            .next())
    }

    pub fn version_by_dir(&self, dir: &str) -> Result<Option<Version>, StoreError> {
        Ok(self
            .versions_where("dir = ?1", dir, "read version")?
            .into_iter()
            .next())
    }

    /// Registers a version (incomplete until [`Tx::complete_version`] for an import).
    pub fn insert_version(&self, v: &Version) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO image_versions ({VERSION_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, {NOW}, ?7, NULL)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    v.id,
                    v.channel,
                    v.seq,
                    v.dir,
                    v.digest,
                    v.size.map(|s| s as i64),
                    v.complete
                ])
            })
            .map_err(sql("record version"))?;
        Ok(())
    }

    pub fn complete_version(&self, id: &str, digest: &str, size: u64) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE image_versions SET complete = 1, digest = ?2, size = ?3 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![id, digest, size as i64]))
            .map_err(sql("complete version"))?;
        Ok(())
    }

    pub fn delete_version(&self, id: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM image_versions WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(sql("remove version"))?;
        Ok(())
    }

    /// Marks a version bad (with why) or good again (`None`).
    pub fn set_version_bad(&self, id: &str, why: Option<&str>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE image_versions SET bad = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![id, why]))
            .map_err(sql("mark version"))?;
        Ok(())
    }

    pub fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT name, version, previous, moved_at FROM image_channels ORDER BY name",
            )
            .map_err(sql("read channels"))?;
        let rows = st
            .query_map([], |r| {
                Ok(Channel {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    previous: r.get(2)?,
                    moved_at: r.get(3)?,
                })
            })
            .map_err(sql("read channels"))?;
        rows.map(|r| r.map_err(sql("read channels"))).collect()
    }

    pub fn channel(&self, name: &str) -> Result<Option<Channel>, StoreError> {
        self.tx
            .prepare_cached(
                "SELECT name, version, previous, moved_at FROM image_channels WHERE name = ?1",
            )
            .and_then(|mut st| {
                st.query_row([name], |r| {
                    Ok(Channel {
                        name: r.get(0)?,
                        version: r.get(1)?,
                        previous: r.get(2)?,
                        moved_at: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(sql("read channel"))
    }

    /// Points `name` at `version` (creating the channel); the version it pointed at becomes
    /// its previous one.
    pub fn move_channel(&self, name: &str, version: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO image_channels (name, version, previous, moved_at)
                 VALUES (?1, ?2, NULL, {NOW})
                 ON CONFLICT (name) DO UPDATE SET previous = image_channels.version,
                   version = excluded.version, moved_at = excluded.moved_at
                 WHERE image_channels.version <> excluded.version"
            ))
            .and_then(|mut st| st.execute(params![name, version]))
            .map_err(sql("move channel"))?;
        Ok(())
    }

    pub fn delete_channel(&self, name: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM image_channels WHERE name = ?1")
            .and_then(|mut st| st.execute([name]))
            .map_err(sql("remove channel"))?;
        Ok(())
    }

    /// The version a rollout pinned this node to on `channel`, if any.
    pub fn pinned_version(
        &self,
        node_id: &str,
        channel: &str,
    ) -> Result<Option<String>, StoreError> {
        self.tx
            .prepare_cached("SELECT version FROM version_pins WHERE node_id = ?1 AND channel = ?2")
            .and_then(|mut st| st.query_row([node_id, channel], |r| r.get(0)).optional())
            .map_err(sql("read pin"))
    }

    pub fn pin_version(
        &self,
        node_id: &str,
        channel: &str,
        version: &str,
        rollout: i64,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO version_pins (node_id, channel, version, rollout)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (node_id) DO UPDATE SET channel = excluded.channel,
                   version = excluded.version, rollout = excluded.rollout",
            )
            .and_then(|mut st| st.execute(params![node_id, channel, version, rollout]))
            .map_err(sql("pin version"))?;
        Ok(())
    }

    pub fn unpin_rollout(&self, rollout: i64) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM version_pins WHERE rollout = ?1")
            .and_then(|mut st| st.execute([rollout]))
            .map_err(sql("unpin rollout"))?;
        Ok(())
    }

    pub fn start_rollout(&self, r: &Rollout) -> Result<i64, StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO rollouts (channel, version, from_version, canaries, wait_secs,
                   min_healthy, health, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, {NOW}) RETURNING id"
            ))
            .and_then(|mut st| {
                st.query_row(
                    params![
                        r.channel,
                        r.version,
                        r.from_version,
                        serde_json::to_string(&r.canaries).expect("serials serialise"),
                        r.wait_secs as i64,
                        r.min_healthy,
                        r.health
                    ],
                    |row| row.get(0),
                )
            })
            .map_err(sql("start rollout"))
    }

    fn rollouts_where(&self, filter: &str, arg: &str) -> Result<Vec<Rollout>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(&format!(
                "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE {filter} ORDER BY id"
            ))
            .map_err(sql("read rollouts"))?;
        let rows = st
            .query_map([arg], rollout_row)
            .map_err(sql("read rollouts"))?;
        rows.map(|r| r.map_err(sql("read rollouts"))).collect()
    }

    /// The rollouts still running, oldest first.
    pub fn running_rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        self.rollouts_where("outcome IS NULL AND ?1 = ?1", "")
    }

    /// The channel's newest rollout, running or ended.
    pub fn last_rollout(&self, channel: &str) -> Result<Option<Rollout>, StoreError> {
        Ok(self
            .rollouts_where(
                "id = (SELECT MAX(id) FROM rollouts WHERE channel = ?1)",
                channel,
            )?
            .pop())
    }

    /// Rollouts ended per outcome.
    pub fn rollout_outcomes(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT outcome, COUNT(*) FROM rollouts WHERE outcome IS NOT NULL
                 GROUP BY outcome ORDER BY outcome",
            )
            .map_err(sql("count rollouts"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("count rollouts"))?;
        rows.map(|r| r.map_err(sql("count rollouts"))).collect()
    }

    /// Ends a running rollout; false if it had already ended (another process did).
    pub fn end_rollout(&self, id: i64, outcome: &str, reason: &str) -> Result<bool, StoreError> {
        let n = self
            .tx
            .prepare_cached(&format!(
                "UPDATE rollouts SET outcome = ?2, reason = ?3, ended_at = {NOW}
                 WHERE id = ?1 AND outcome IS NULL"
            ))
            .and_then(|mut st| st.execute(params![id, outcome, reason]))
            .map_err(sql("end rollout"))?;
        Ok(n == 1)
    }

    pub fn image_event(
        &self,
        channel: &str,
        rollout: Option<i64>,
        kind: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO image_events (channel, rollout, kind, at, detail)
                 VALUES (?1, ?2, ?3, {NOW}, ?4)"
            ))
            .and_then(|mut st| st.execute(params![channel, rollout, kind, detail.to_string()]))
            .map_err(sql("record image event"))?;
        Ok(())
    }

    /// The state `serial` had in the newest `canary` event of rollout `rollout` (on
    /// `channel`): what a canary's next state is compared with, by every controller.
    pub fn last_canary_state(
        &self,
        channel: &str,
        rollout: i64,
        serial: &str,
    ) -> Result<Option<String>, StoreError> {
        let details = self
            .tx
            .prepare_cached(
                "SELECT detail FROM image_events
                 WHERE channel = ?1 AND rollout = ?2 AND kind = 'canary' ORDER BY id DESC",
            )
            .and_then(|mut st| st.query_map(params![channel, rollout], |r| r.get::<String>(0)))
            .map_err(sql("read canary events"))?;
        for detail in details {
            let detail = detail.map_err(sql("read canary events"))?;
            let v: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            if v["serial"] == serial {
                return Ok(v["state"].as_str().map(str::to_string));
            }
        }
        Ok(None)
    }

    /// The channel's newest `limit` events, oldest first.
    pub fn image_events(&self, channel: &str, limit: u32) -> Result<Vec<ImageEvent>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT id, channel, rollout, kind, at, detail FROM
                   (SELECT * FROM image_events WHERE channel = ?1 ORDER BY id DESC LIMIT ?2) AS newest
                 ORDER BY id",
            )
            .map_err(sql("read image events"))?;
        let rows = st
            .query_map(params![channel, limit], |r| {
                let detail: String = r.get(5)?;
                Ok(ImageEvent {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    rollout: r.get(2)?,
                    kind: r.get(3)?,
                    at: r.get(4)?,
                    detail: serde_json::from_str(&detail).unwrap_or_default(),
                })
            })
            .map_err(sql("read image events"))?;
        rows.map(|r| r.map_err(sql("read image events"))).collect()
    }

    /// The version a boot was answered (none: a directory the registry does not know).
    pub fn set_boot_version(&self, boot_id: &str, version: Option<&str>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE node_boots SET version = ?2, failed = NULL WHERE boot_id = ?1")
            .and_then(|mut st| st.execute(params![boot_id, version]))
            .map_err(sql("record the boot's version"))?;
        Ok(())
    }

    /// pi-init reported this boot failed.
    pub fn set_boot_failed(&self, boot_id: &str, why: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE node_boots SET failed = ?2 WHERE boot_id = ?1")
            .and_then(|mut st| st.execute(params![boot_id, why]))
            .map_err(sql("record the boot's failure"))?;
        Ok(())
    }

    /// The node reported booting this boot: its version is the one it runs now.
    pub fn set_running_version(&self, node_id: &str, boot_id: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE nodes SET running_version =
                   (SELECT version FROM node_boots WHERE boot_id = ?2) WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![node_id, boot_id]))
            .map_err(sql("record the running version"))?;
        Ok(())
    }

    /// The version the node last reported booting.
    pub fn running_version_of(&self, node_id: &str) -> Result<Option<String>, StoreError> {
        self.tx
            .prepare_cached("SELECT running_version FROM nodes WHERE id = ?1")
            .and_then(|mut st| {
                st.query_row([node_id], |r| r.get::<Option<String>>(0))
                    .optional()
            })
            .map(Option::flatten)
            .map_err(sql("read the running version"))
    }

    /// Every node's running version: `(node id, serial, version)`.
    pub fn running_versions(&self) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
        let mut st = self
            .tx
            .prepare_cached("SELECT id, serial, running_version FROM nodes ORDER BY serial")
            .map_err(sql("read running versions"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql("read running versions"))?;
        rows.map(|r| r.map_err(sql("read running versions")))
            .collect()
    }

    /// The node's newest boot answered `version` since `since_unix`.
    pub fn canary_boot(
        &self,
        node_id: &str,
        version: &str,
        since_unix: i64,
    ) -> Result<Option<CanaryBoot>, StoreError> {
        self.tx
            .prepare_cached(
                "SELECT installed_at IS NOT NULL, complete_at IS NOT NULL, healthy, failed,
                   (SELECT name FROM step_runs s WHERE s.boot_id = b.boot_id AND s.ok = 0
                    ORDER BY id LIMIT 1)
                 FROM node_boots b
                 WHERE node_id = ?1 AND version = ?2
                   AND CAST(strftime('%s', at) AS INTEGER) >= ?3
                 ORDER BY at DESC, rowid DESC LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row(params![node_id, version, since_unix], |r| {
                    Ok(CanaryBoot {
                        installed: r.get(0)?,
                        complete: r.get(1)?,
                        healthy: r.get(2)?,
                        failed: r.get(3)?,
                        failed_step: r.get(4)?,
                    })
                })
                .optional()
            })
            .map_err(sql("read the canary's boot"))
    }
}

impl Tx<'_> {
    /// The rollout pin of a node: `(channel, version, rollout)`.
    pub fn pin_of(&self, node_id: &str) -> Result<Option<(String, String, i64)>, StoreError> {
        self.tx
            .prepare_cached("SELECT channel, version, rollout FROM version_pins WHERE node_id = ?1")
            .and_then(|mut st| {
                st.query_row([node_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(sql("read pin"))
    }

    /// The version a boot was answered.
    pub fn boot_version(&self, boot_id: &str) -> Result<Option<String>, StoreError> {
        self.tx
            .prepare_cached("SELECT version FROM node_boots WHERE boot_id = ?1")
            .and_then(|mut st| st.query_row([boot_id], |r| r.get(0)).optional())
            .map(Option::flatten)
            .map_err(sql("read the boot's version"))
    }

    /// The version a node's writable layer was last prepared for.
    pub fn layer_version(&self, node_id: &str) -> Result<Option<String>, StoreError> {
        self.tx
            .prepare_cached("SELECT layer_version FROM nodes WHERE id = ?1")
            .and_then(|mut st| st.query_row([node_id], |r| r.get(0)).optional())
            .map(Option::flatten)
            .map_err(sql("read the layer's version"))
    }

    pub fn set_layer_version(&self, node_id: &str, version: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE nodes SET layer_version = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![node_id, version]))
            .map_err(sql("record the layer's version"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, StoreError};
    use serde_json::json;

    /// What a canary's next state is compared with is in the registry: another controller
    /// (or this one restarted) sees the state the first recorded.
    #[test]
    fn the_last_canary_state_is_read_back_per_rollout_and_serial() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::test_support::database(dir.path(), "v.db");
        let store = Store::open(&db).unwrap();
        store
            .write(|tx| {
                for (rollout, serial, state) in [
                    (1, "0000000a", "waiting"),
                    (1, "0000000b", "waiting"),
                    (1, "0000000a", "healthy"),
                    (2, "0000000a", "failed"),
                ] {
                    tx.image_event(
                        "tiny",
                        Some(rollout),
                        "canary",
                        &json!({"serial": serial, "state": state}),
                    )?;
                }
                tx.image_event("tiny", Some(1), "rollout_started", &json!({}))?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let other = Store::open(&db).unwrap();
        let state = |rollout, serial| {
            other
                .write(|tx| tx.last_canary_state("tiny", rollout, serial))
                .unwrap()
        };
        assert_eq!(state(1, "0000000a").as_deref(), Some("healthy"));
        assert_eq!(state(1, "0000000b").as_deref(), Some("waiting"));
        assert_eq!(state(2, "0000000a").as_deref(), Some("failed"));
        assert_eq!(state(2, "0000000b"), None);
    }
}
