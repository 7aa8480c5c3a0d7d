//! The append-only `boot_events` log (triggers refuse UPDATE and DELETE).

use super::db::{params, Row};
use serde::Serialize;

use super::{sql, StoreError, Tx, NOW};

pureboot_contract::named_enum! {
    /// The `kind` column of `boot_events`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum EventKind: "event kind" {
        /// `GET /boot/pi`, with the answer given.
        BootRequest = "boot_request",
        Registered = "registered",
        Installed = "installed",
        InstallFailed = "install_failed",
        StateChange = "state_change",
        /// A second machine claimed this short serial.
        Conflict = "conflict",
        /// An operator changed the node (assign, update).
        Admin = "admin",
        /// The node's persistent layer broke (or works again), and what was done about it.
        Degraded = "degraded",
        /// A post-boot step ended on the node (its outcome; the output is in its run).
        PostBootStep = "post_boot_step",
        /// The booted node reached its target (or gave up), with the steps' outcome.
        BootComplete = "boot_complete",
        /// The node's TFTP folder was written or removed, or could not be written (why).
        TftpFolder = "tftp_folder",
        /// The node was placed on an NFS server of the pool, or moved to another (why).
        NfsServer = "nfs_server",
    }
}

#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub node_id: Option<&'a str>,
    pub serial: &'a str,
    pub kind: EventKind,
    pub ip: Option<&'a str>,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: i64,
    pub node_id: Option<String>,
    pub serial: String,
    pub kind: String,
    pub at: String,
    pub ip: Option<String>,
    pub detail: serde_json::Value,
}

impl Tx<'_> {
    pub fn append_event(&self, e: &NewEvent<'_>) -> Result<i64, StoreError> {
        self.tx
            .prepare_cached(&format!("INSERT INTO boot_events (node_id, serial, kind, at, ip, detail) VALUES (?1, ?2, ?3, {NOW}, ?4, ?5) RETURNING id"))
            .and_then(|mut st| st.query_row(params![e.node_id, e.serial, e.kind.as_str(), e.ip, e.detail.to_string()], |r| r.get(0)))
            .map_err(sql("append event"))
    }

    /// The newest `limit` events of a serial (which survive the node's removal), oldest first.
    pub fn events_for_serial(&self, serial: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self
            .tx
            .prepare(
                "SELECT id, node_id, serial, kind, at, ip, detail FROM
                   (SELECT * FROM boot_events WHERE serial = ?1 ORDER BY id DESC LIMIT ?2) AS newest
                 ORDER BY id",
            )
            .map_err(sql("read events"))?;
        let rows = stmt
            .query_map(params![serial, limit], event_from_row)
            .map_err(sql("read events"))?;
        rows.map(|r| r.map_err(sql("read events"))).collect()
    }

    /// The newest `per_serial` events of each of `serials`, oldest first within each
    /// serial: one index lookup per serial (`boot_events_by_serial`), so the cost follows
    /// the nodes shown, never the size of the log.
    pub fn recent_events(
        &self,
        serials: &[&str],
        per_serial: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT id, node_id, serial, kind, at, ip, detail FROM boot_events
                 WHERE serial = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(sql("read recent events"))?;
        let mut out = Vec::new();
        for serial in serials {
            let rows = stmt
                .query_map(params![serial, per_serial], event_from_row)
                .map_err(sql("read recent events"))?;
            let mut newest_first = rows
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("read recent events"))?;
            newest_first.reverse();
            out.extend(newest_first);
        }
        Ok(out)
    }

    /// Events in the log (a full count: for tests and the operator, not the hot path).
    pub fn event_count(&self) -> Result<i64, StoreError> {
        self.tx
            .query_row("SELECT COUNT(*) FROM boot_events", [], |r| r.get(0))
            .map_err(sql("count events"))
    }

    /// Keeps the log under `max_events` (0 = no cap) at the end of a write transaction:
    /// once the events since the last prune mark pass the cap, the oldest hundredth of
    /// the cap (at most 10,000) goes with them, so a prune runs once per that many events
    /// and never for each insert. Two index lookups when under the cap (ids grow by one per
    /// event, so the newest id less the mark bounds the count). Returns the events dropped.
    pub fn keep_events_at_most(&self, max_events: u64) -> Result<u64, StoreError> {
        if max_events == 0 {
            return Ok(0);
        }
        let cap = i64::try_from(max_events).unwrap_or(i64::MAX);
        let last = self.last_event_id()?;
        let done = self.prune_mark()?;
        if last.saturating_sub(done) <= cap {
            return Ok(0);
        }
        let slack = (cap / 100).clamp(1, 10_000);
        self.prune_up_to(
            last - (cap - slack),
            done,
            &format!("max_events = {max_events} (continuous)"),
        )
    }

    fn last_event_id(&self) -> Result<i64, StoreError> {
        self.tx
            .query_row("SELECT COALESCE(MAX(id), 0) FROM boot_events", [], |r| {
                r.get(0)
            })
            .map_err(sql("prune events"))
    }

    /// The last prune mark (index-backed: `event_prunes_by_up_to`).
    fn prune_mark(&self) -> Result<i64, StoreError> {
        self.tx
            .query_row(
                "SELECT COALESCE(MAX(up_to), 0) FROM event_prunes",
                [],
                |r| r.get(0),
            )
            .map_err(sql("prune events"))
    }

    /// Records the mark `up_to` (past `done`, the last one) and deletes the events up to it.
    fn prune_up_to(&self, up_to: i64, done: i64, reason: &str) -> Result<u64, StoreError> {
        if up_to <= done {
            return Ok(0);
        }
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO event_prunes (up_to, at, reason) VALUES (?1, {NOW}, ?2)"
            ))
            .and_then(|mut st| st.execute(params![up_to, reason]))
            .map_err(sql("prune events"))?;
        let n = self
            .tx
            .prepare_cached("DELETE FROM boot_events WHERE id > ?1 AND id <= ?2")
            .and_then(|mut st| st.execute([done, up_to]))
            .map_err(sql("prune events"))?;
        Ok(n as u64)
    }

    /// Retention: drops the oldest events beyond `max_events` (0 = no cap) and those
    /// older than `max_age_days` (0 = any age), as one prefix of the log, after recording
    /// the mark (the triggers allow deleting nothing else). Returns the events dropped.
    pub fn prune_events(&self, max_events: u64, max_age_days: u64) -> Result<u64, StoreError> {
        let last = self.last_event_id()?;
        let by_count = if max_events > 0 {
            last - i64::try_from(max_events).unwrap_or(i64::MAX)
        } else {
            0
        };
        let by_age: i64 = if max_age_days > 0 {
            self.tx
                .query_row(
                    "SELECT COALESCE(MAX(id), 0) FROM boot_events
                     WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)",
                    [format!("-{max_age_days} days")],
                    |r| r.get(0),
                )
                .map_err(sql("prune events"))?
        } else {
            0
        };
        let done = self.prune_mark()?;
        self.prune_up_to(
            by_count.max(by_age),
            done,
            &format!("max_events = {max_events}, event_retention_days = {max_age_days}"),
        )
    }

    pub fn count_events(&self, serial: &str, kind: EventKind) -> Result<i64, StoreError> {
        self.tx
            .query_row(
                "SELECT COUNT(*) FROM boot_events WHERE serial = ?1 AND kind = ?2",
                params![serial, kind.as_str()],
                |r| r.get(0),
            )
            .map_err(sql("count events"))
    }
}

/// An `Event` from a row of `id, node_id, serial, kind, at, ip, detail`.
fn event_from_row(r: &Row<'_>) -> super::db::Result<Event> {
    let detail: String = r.get(6)?;
    Ok(Event {
        id: r.get(0)?,
        node_id: r.get(1)?,
        serial: r.get(2)?,
        kind: r.get(3)?,
        at: r.get(4)?,
        ip: r.get(5)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
    })
}

#[cfg(test)]
mod tests {
    use super::super::nodes::NewNode;
    use super::super::Store;
    use super::*;
    use crate::domain::ids::NodeRef;
    use crate::domain::state::NodeState;
    use pureboot_contract::ids::{Hostname, Serial};

    #[test]
    fn nodes_and_events_round_trip_and_events_are_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::test_support::database(dir.path(), "r.db")).unwrap();
        let node = store
            .write(|tx| {
                let n = tx.insert_node(&NewNode::new(Serial::parse("d83add36").unwrap()))?;
                tx.append_event(&NewEvent {
                    node_id: Some(&n.id),
                    serial: n.serial.as_str(),
                    kind: EventKind::BootRequest,
                    ip: Some("10.0.2.15"),
                    detail: serde_json::json!({"action": "wait"}),
                })?;
                Ok::<_, StoreError>(n)
            })
            .unwrap();
        assert_eq!(node.state, NodeState::Discovered);
        assert_eq!(node.machine_id.as_str().len(), 32);
        let by_serial = store
            .read(|tx| tx.find_node(&NodeRef::Serial(Serial::parse("D83ADD36").unwrap())))
            .unwrap()
            .unwrap();
        assert_eq!(by_serial, node);

        let mut changed = node.clone();
        changed.state = NodeState::Pending;
        changed.hostname = Some(Hostname::parse("kitchen").unwrap());
        let saved = store.write(|tx| tx.save_node(&changed)).unwrap();
        assert_eq!(
            (
                saved.state,
                saved.hostname.as_ref().map(Hostname::as_str),
                &saved.machine_id
            ),
            (NodeState::Pending, Some("kitchen"), &node.machine_id)
        );

        let events = store
            .read(|tx| tx.events_for_serial("d83add36", 10))
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].detail["action"], "wait");
        let err = store
            .write(|tx| {
                tx.tx
                    .execute("DELETE FROM boot_events", [])
                    .map_err(sql("delete"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");

        // Retention drops a prefix only; what is kept stays append-only.
        store
            .write(|tx| {
                for i in 0..9 {
                    tx.append_event(&NewEvent {
                        node_id: Some(&node.id),
                        serial: node.serial.as_str(),
                        kind: EventKind::BootRequest,
                        ip: None,
                        detail: serde_json::json!({"i": i}),
                    })?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        let dropped = store.write(|tx| tx.prune_events(4, 0)).unwrap();
        assert_eq!(dropped, 6);
        let kept = store
            .read(|tx| tx.events_for_serial("d83add36", 100))
            .unwrap();
        assert_eq!(kept.len(), 4);
        assert_eq!(kept[3].detail["i"], 8, "the newest kept");
        assert_eq!(store.write(|tx| tx.prune_events(4, 0)).unwrap(), 0);
        for sql_text in [
            "DELETE FROM boot_events",
            "UPDATE boot_events SET kind = 'x'",
            "DELETE FROM event_prunes",
            "INSERT INTO event_prunes (up_to, at, reason) VALUES (1, 'x', 'rewind')",
        ] {
            let err = store
                .write(|tx| tx.tx.execute(sql_text, []).map_err(sql("tamper")))
                .unwrap_err();
            assert!(
                err.to_string().contains("append-only") || err.to_string().contains("only grow"),
                "{sql_text}: {err}"
            );
        }
        let dup =
            store.write(|tx| tx.insert_node(&NewNode::new(Serial::parse("d83add36").unwrap())));
        assert!(dup.is_err(), "serial is unique");
    }
}
