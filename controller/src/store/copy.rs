//! `database copy`: an SQLite registry into a new PostgreSQL one, for a site that moves to
//! several controllers. Every table, every row, every id kept (a boot id in a Pi's callback
//! URL, an event's number, a run id a rerun refers to), in one transaction on the target:
//! a copy that fails leaves the target as it was.

use super::db::{params, Params, Value, ValueRef};
use super::{sql, Store, StoreError, Tx};

/// The tables, parents before the rows that refer to them. `schema_migrations` is not
/// copied: source and target must be at the same version, and the target has its own.
const TABLES: &[&str] = &[
    "groups",
    "nodes",
    "boot_events",
    "event_prunes",
    "write_check",
    "node_boots",
    "step_runs",
    "step_done",
    "step_reruns",
    "group_rules",
    "image_versions",
    "image_channels",
    "rollouts",
    "version_pins",
    "image_events",
    "nfs_homes",
    "node_nfs_pins",
    "group_nfs_pins",
];

/// Tables whose `id` the target numbers itself after the copy (its identity columns).
const NUMBERED: &[&str] = &[
    "boot_events",
    "event_prunes",
    "step_runs",
    "rollouts",
    "image_events",
];

/// Rows between two progress reports within a table.
const PROGRESS_EVERY: u64 = 10_000;

/// Rows copied per table, in [`TABLES`]' order.
pub type Copied = Vec<(&'static str, u64)>;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the target registry is not new: it holds {0}; copy only into an empty database")]
    NotEmpty(String),
    #[error("schema versions differ: the source is at {source_version}, the target at {target}")]
    Versions { source_version: i64, target: i64 },
}

/// Copies every row of `from` into `to`, which must be empty; `progress(table, rows)` is
/// called every few thousand rows and at each table's end.
pub fn copy_registry(
    from: &Store,
    to: &Store,
    mut progress: impl FnMut(&str, u64),
) -> Result<Copied, CopyError> {
    let (source_version, target) = (from.schema_version()?, to.schema_version()?);
    if source_version != target {
        return Err(CopyError::Versions {
            source_version,
            target,
        });
    }
    let held = to.read(|tx| {
        let count = |table: &str| -> Result<i64, StoreError> {
            tx.tx
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .map_err(sql("count rows"))
        };
        let mut held = Vec::new();
        for table in ["nodes", "groups", "boot_events", "image_versions"] {
            let n = count(table)?;
            if n > 0 {
                held.push(format!("{n} rows in {table}"));
            }
        }
        Ok::<_, StoreError>(held)
    })?;
    if !held.is_empty() {
        return Err(CopyError::NotEmpty(held.join(", ")));
    }
    // One snapshot of the source, one transaction on the target.
    let copied = from.read(|source| {
        to.write(|target| {
            let mut copied = Copied::new();
            for table in TABLES {
                let n = copy_table(source, target, table, &mut progress)?;
                progress(table, n);
                copied.push((table, n));
            }
            for table in NUMBERED {
                target
                    .tx
                    .query_row(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                               COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                        ),
                        [],
                        |r| r.get::<i64>(0),
                    )
                    .map_err(sql("number ids after the copy"))?;
            }
            Ok::<_, StoreError>(copied)
        })
    })?;
    Ok(copied)
}

/// The column names of `table` in the source (SQLite's `rowid` is not one: the target's
/// node_boots numbers its own, in the source's order).
fn columns(tx: &Tx<'_>, table: &str) -> Result<Vec<String>, StoreError> {
    tx.tx
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .and_then(|mut st| st.query_map([], |r| r.get::<String>(0)))
        .and_then(|rows| rows.collect())
        .map_err(sql("read the source's columns"))
}

fn copy_table(
    source: &Tx<'_>,
    target: &Tx<'_>,
    table: &str,
    progress: &mut impl FnMut(&str, u64),
) -> Result<u64, StoreError> {
    let columns = columns(source, table)?;
    let list = columns.join(", ");
    // A group's parent may come after it: parents are set once every group is in.
    let parent_later = table == "groups";
    let parent = columns
        .iter()
        .position(|c| c == "parent")
        .filter(|_| parent_later);
    let placeholders = (1..=columns.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!("INSERT INTO {table} ({list}) VALUES ({placeholders})");
    let rows = source
        .tx
        .prepare(&format!("SELECT {list} FROM {table} ORDER BY rowid"))
        .and_then(|mut st| {
            st.query_map([], |r| {
                (0..columns.len())
                    .map(|i| r.get::<Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .map_err(sql("read the source"))?;
    let mut n = 0u64;
    let mut next_report = PROGRESS_EVERY;
    let mut parents = Vec::new();
    for row in rows {
        let mut row = row.map_err(sql("read the source"))?;
        if let Some(p) = parent {
            let name = columns
                .iter()
                .position(|c| c == "name")
                .map(|i| row[i].clone());
            let value = std::mem::replace(&mut row[p], Value::Null);
            if let (Some(name), Value::Text(_)) = (name, &value) {
                parents.push((name, value));
            }
        }
        target
            .tx
            .execute(&insert, RowParams(&row))
            .map_err(sql("write the target"))?;
        n += 1;
        if n == next_report {
            progress(table, n);
            next_report += PROGRESS_EVERY;
        }
    }
    for (name, parent) in parents {
        target
            .tx
            .execute(
                "UPDATE groups SET parent = ?2 WHERE name = ?1",
                params![name, parent],
            )
            .map_err(sql("write the target"))?;
    }
    Ok(n)
}

/// A row read from the source, as the target's parameters.
struct RowParams<'a>(&'a [Value]);

impl Params for RowParams<'_> {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.0.iter().map(Value::as_ref).collect()
    }
}
