//! The registry: the only place with SQL. SQLite by default (a file, nothing to set up);
//! PostgreSQL when `database` is a `postgres://` URL, for several controllers on one registry
//! (the two engines behind one interface: [`db`]).
//!
//! One writing connection per process behind a mutex, and a few read-only ones (in SQLite's
//! WAL mode, as in PostgreSQL, a reader sees the last commit without waiting for the writer);
//! WAL and a busy timeout let the CLI and the daemon share the file. Every write holds the
//! database's write lock from its first statement (SQLite `BEGIN IMMEDIATE`, a PostgreSQL
//! advisory lock), so a read-then-write (a boot's commit) and another for the same serial
//! cannot interleave, in this process or across processes and controllers.
//!
//! Operators' reads (the status page, the management API) never take the boot path's read
//! connections: a thread that entered [`Store::admin_reads`] reads on connections of its own,
//! each query cancelled (SQLite's progress handler) once its request's deadline has passed.
//! Every write keeps the event log under `max_events` (see [`Store::keep_events_at_most`]).

pub mod after_boot;
pub mod copy;
pub mod db;
pub mod events;
pub mod group;
pub mod groups;
mod migrations;
pub mod nodes;
pub mod pool;
#[doc(hidden)]
pub mod test_support;
pub mod versions;

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use db::{Conn, DbTx, PgConn};
use group::{GroupCounts, Ticket};
use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {op}: {source}")]
    Sql {
        op: &'static str,
        #[source]
        source: db::Error,
    },
    #[error("database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: db::Error,
    },
    #[error(
        "schema version {found}, newer than this controller knows ({known}): a newer \
         controller wrote it; run that one (or restore a backup)"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("database {path}: {source}")]
    Schema {
        path: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("database {path} is in use by another `pureboot-controller serve` (lock {lock})")]
    InUse { path: String, lock: String },
    #[error("database lock {lock}: {source}")]
    Lock {
        lock: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database holds an invalid {what}: {value:?}")]
    Corrupt { what: &'static str, value: String },
    /// The transaction a grouped request was part of did not commit.
    #[error("{0} (the request was not recorded)")]
    Batch(std::sync::Arc<StoreError>),
    #[error("the registry writer has stopped")]
    WriterStopped,
    #[error("the request failed inside the registry writer; see the controller log")]
    RequestPanicked,
    /// An operator's read reached its request's deadline and was stopped.
    #[error("database {op}: cancelled at the request's deadline")]
    Cancelled { op: &'static str },
}

pub(crate) fn sql<E: Into<db::Error>>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |source| {
        let source = source.into();
        // Only an operator's read past its deadline is interrupted (see `read_before`).
        if source.is_cancelled() {
            StoreError::Cancelled { op }
        } else {
            StoreError::Sql { op, source }
        }
    }
}

/// Where the registry lives: `database` in the config, a file or a `postgres://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Location {
    pub fn of(setting: &Path) -> Location {
        let text = setting.to_string_lossy();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.into_owned())
        } else {
            Location::Sqlite(setting.to_path_buf())
        }
    }
}

/// For messages and logs: the file, or the URL without its password.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                match rest.split_once('@') {
                    Some((user, host)) if user.contains(':') => {
                        let user = user.split(':').next().unwrap_or("");
                        write!(f, "{scheme}://{user}:***@{host}")
                    }
                    _ => write!(f, "{url}"),
                }
            }
        }
    }
}

/// SQL expression for "now" as RFC 3339 UTC with milliseconds.
pub(crate) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

pub struct Store {
    /// The writing connection: [`Store::write`] and the group writer's thread take turns.
    conn: Arc<Mutex<Conn>>,
    /// Started by the first [`Store::enqueue`] (the CLI never needs it).
    group: OnceLock<group::GroupWriter>,
    /// [`Store::read`]'s connections: a boot's first look at its node must not queue
    /// behind the writes of every other request.
    readers: Vec<Mutex<Conn>>,
    next_reader: std::sync::atomic::AtomicUsize,
    /// The operators' read connections (see [`Store::admin_reads`]): a status page over a
    /// large registry never holds a connection a boot waits for.
    admin_readers: Vec<Mutex<Conn>>,
    next_admin_reader: std::sync::atomic::AtomicUsize,
    /// Events kept at most, 0 = no cap: every write transaction prunes past it.
    event_cap: Arc<AtomicU64>,
    location: Location,
}

/// Read-only connections per store, for the boot path (and the CLI).
const READERS: usize = 4;
/// Read-only connections for operators' requests.
const ADMIN_READERS: usize = 2;

thread_local! {
    /// The deadline of the operator's request this thread runs (see [`Store::admin_reads`]).
    static ADMIN_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// While alive, this thread's [`Store::read`]s are an operator's: on the operators'
/// connections, cancelled at the deadline. Not `Send`: it marks the thread that made it.
pub struct AdminReads {
    previous: Option<Instant>,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl Drop for AdminReads {
    fn drop(&mut self) {
        ADMIN_DEADLINE.with(|d| d.set(self.previous));
    }
}

/// The WAL size, in pages (about 40 MiB), past which a committing request checkpoints
/// itself even though the daemon's thread does the routine ones.
pub const WAL_BACKSTOP_PAGES: i64 = 10_000;

/// The WAL size, in pages (about 8 MiB), past which the daemon's checkpoint thread starts the
/// WAL over (see [`Store::checkpoint_in_background`]).
pub const WAL_RESTART_PAGES: i64 = 2_000;

/// One round of the daemon's checkpoint thread on its connection `conn`; `writer` is the
/// registry's writing connection (see [`Store::checkpoint_in_background`]).
fn checkpoint_round(conn: &Connection, writer: &Mutex<Conn>) {
    match checkpoint(conn, "PASSIVE") {
        Ok((_, frames)) if frames >= WAL_RESTART_PAGES => {
            // Another pass first copies what came during the first, so the writer is held
            // only for the last few commits' frames.
            let _ = checkpoint(conn, "PASSIVE");
            let _between_transactions = writer.lock().unwrap_or_else(|p| p.into_inner());
            match checkpoint(conn, "RESTART") {
                Ok((false, _)) => {}
                Ok((true, frames)) => log::warn!(
                    "WAL checkpoint (restart): readers still in the WAL after the busy timeout; \
                     it keeps its {frames} pages until a later round"
                ),
                Err(e) => log::warn!("WAL checkpoint (restart): {e}"),
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("WAL checkpoint: {e}"),
    }
}

/// One `PRAGMA wal_checkpoint(<mode>)`: whether it could not finish (SQLITE_BUSY: a writer or,
/// for RESTART, readers still in the WAL), and the frames in the WAL when it ran.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(bool, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(0)? != 0, r.get(1)?))
    })
}

/// The daemon's WAL checkpoints, on their own connection and thread (see
/// [`Store::checkpoint_in_background`]); dropping it stops them.
pub struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A write (or read) transaction; the registry operations live on it.
pub struct Tx<'a> {
    tx: DbTx<'a>,
}

impl Store {
    /// Opens the registry at `setting` (a file, or a `postgres://` URL: [`Location::of`]),
    /// brought to this controller's schema.
    pub fn open(setting: &Path) -> Result<Store, StoreError> {
        db::outside_async(|| Store::open_now(setting))
    }

    fn open_now(setting: &Path) -> Result<Store, StoreError> {
        let location = Location::of(setting);
        let open_err = |source: db::Error| StoreError::Open {
            path: location.to_string(),
            source,
        };
        let connect = |writer: bool| -> Result<Conn, db::Error> {
            match &location {
                Location::Sqlite(path) => {
                    let c = Connection::open(path)?;
                    c.busy_timeout(Duration::from_secs(10))?;
                    if writer {
                        c.pragma_update(None, "journal_mode", "WAL")?;
                        c.pragma_update(None, "synchronous", "NORMAL")?;
                        c.pragma_update(None, "foreign_keys", "ON")?;
                    } else {
                        c.pragma_update(None, "query_only", true)?;
                    }
                    Ok(Conn::Lite(c))
                }
                Location::Postgres(url) => Ok(Conn::Pg(Box::new(PgConn::connect(url)?))),
            }
        };
        if let Location::Sqlite(path) = &location {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                // A missing folder would give SQLite's bare "unable to open database file".
                if !parent.is_dir() {
                    return Err(open_err(
                        rusqlite::Error::InvalidPath(parent.to_path_buf()).into(),
                    ));
                }
            }
        }
        let mut conn = connect(true).map_err(open_err)?;
        migrations::migrate(&mut conn).map_err(|e| StoreError::Schema {
            path: location.to_string(),
            source: Box::new(e),
        })?;
        let open_readers = |n: usize| {
            (0..n)
                .map(|_| connect(false).map(Mutex::new))
                .collect::<Result<Vec<_>, db::Error>>()
                .map_err(open_err)
        };
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            group: OnceLock::new(),
            readers: open_readers(READERS)?,
            next_reader: Default::default(),
            admin_readers: open_readers(ADMIN_READERS)?,
            next_admin_reader: Default::default(),
            event_cap: Arc::new(AtomicU64::new(0)),
            location,
        })
    }

    /// Where the registry lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// From now on every write transaction (the group writer's batches and [`Store::write`])
    /// ends by pruning the oldest events past `max` (0 = no cap): a flood of boot requests
    /// cannot grow the log between two hourly prunes. Cheap: two index lookups per
    /// transaction, and a delete of the oldest hundredth of the cap when it is reached.
    pub fn keep_events_at_most(&self, max: u64) {
        self.event_cap.store(max, Ordering::Relaxed);
    }

    /// Marks this thread's reads as an operator's until the guard drops: they run on the
    /// operators' connections and each stops with [`StoreError::Cancelled`] once `deadline`
    /// has passed (a request that timed out no longer holds a connection or a core).
    pub fn admin_reads(deadline: Instant) -> AdminReads {
        let previous = ADMIN_DEADLINE.with(|d| d.replace(Some(deadline)));
        AdminReads {
            previous,
            _this_thread: std::marker::PhantomData,
        }
    }

    /// Runs `f` in an immediate transaction; commits when it returns `Ok`.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.outside_async(|| self.write_now(f))
    }

    /// Runs `f` where the engine's client may block: PostgreSQL's client drives its own
    /// runtime and refuses to inside the daemon's (a request handler's read), so there it
    /// runs as blocking work ([`db::outside_async`]); SQLite's calls are plain syscalls.
    fn outside_async<T>(&self, f: impl FnOnce() -> T) -> T {
        match self.location {
            Location::Postgres(_) => db::outside_async(f),
            Location::Sqlite(_) => f(),
        }
    }

    fn write_now<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.begin_write().map_err(sql("begin transaction"))?;
        let tx = Tx { tx };
        let out = f(&tx)?;
        tx.keep_events_at_most(self.event_cap.load(Ordering::Relaxed))?;
        tx.tx.commit().map_err(sql("commit"))?;
        Ok(out)
    }

    /// Queues `f` for the group writer (see [`group`]): it runs in the writer's next
    /// transaction, in a savepoint of its own, and the ticket answers once that transaction
    /// has committed. For the daemon's frequent small writes; `f` must not block.
    pub fn enqueue<T, E>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Ticket<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let writer = match self.group_writer() {
            Ok(w) => w,
            Err(e) => return Ticket::failed(e.into()),
        };
        writer.enqueue(f)
    }

    /// The group writer, started on first use.
    fn group_writer(&self) -> Result<&group::GroupWriter, StoreError> {
        if let Some(w) = self.group.get() {
            return Ok(w);
        }
        let started = group::GroupWriter::start(self.conn.clone(), self.event_cap.clone())?;
        // Two first callers at once: the loser's writer is dropped (it stops at once).
        let _ = self.group.set(started);
        Ok(self.group.get().expect("just set"))
    }

    /// What the group writer has done (zero before its first request).
    pub fn group_counts(&self) -> GroupCounts {
        self.group.get().map(|w| w.counts()).unwrap_or_default()
    }

    /// Runs `f` in a deferred (read) transaction on a read-only connection: one consistent
    /// snapshot of the last commit.
    /// In a thread inside [`Store::admin_reads`], an operator's read (see there).
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.outside_async(|| self.read_now(f))
    }

    fn read_now<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(deadline) = ADMIN_DEADLINE.with(Cell::get) {
            return self.read_before(deadline, f);
        }
        let mut conn = self.reader(&self.readers, &self.next_reader);
        let tx = conn.begin_read(None).map_err(sql("begin transaction"))?;
        // Bound first: the transaction borrows `conn` and must drop before the guard.
        #[allow(clippy::let_and_return)]
        let out = f(&Tx { tx });
        out
    }

    /// An operator's read: its own connections, and every statement stopped once
    /// `deadline` has passed. Waiting for one of those connections is bounded too: each
    /// holder stops at its own deadline.
    fn read_before<T, E: From<StoreError>>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.reader(&self.admin_readers, &self.next_admin_reader);
        if Instant::now() >= deadline {
            return Err(StoreError::Cancelled { op: "read" }.into());
        }
        let out = match conn.begin_read(Some(deadline)) {
            Ok(tx) => {
                // Bound first: the transaction borrows `conn` and must drop before it is used.
                #[allow(clippy::let_and_return)]
                let out = f(&Tx { tx });
                out
            }
            Err(e) => Err(sql("begin transaction")(e).into()),
        };
        // The connection's next reader may be a boot's: no deadline left behind.
        conn.clear_deadline();
        out
    }

    /// A free connection of `pool`, or else the next one in turn.
    fn reader<'a>(
        &self,
        pool: &'a [Mutex<Conn>],
        next: &std::sync::atomic::AtomicUsize,
    ) -> std::sync::MutexGuard<'a, Conn> {
        use std::sync::TryLockError;
        for r in pool {
            match r.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        pool[i % pool.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Claims an SQLite database for one daemon: an exclusive lock on
    /// `<database>.serve-lock`, held as long as the returned file is open (the CLI does not
    /// take it; WAL lets it share the file with the daemon). A second daemon on the same file
    /// is refused. A PostgreSQL registry is made for several: no lock (`None`).
    pub fn lock_for_serving(path: &Path) -> Result<Option<std::fs::File>, StoreError> {
        if let Location::Postgres(_) = Location::of(path) {
            return Ok(None);
        }
        let mut lock = path.as_os_str().to_owned();
        lock.push(".serve-lock");
        let lock = std::path::PathBuf::from(lock);
        let in_use = || StoreError::InUse {
            path: path.display().to_string(),
            lock: lock.display().to_string(),
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|source| StoreError::Lock {
                lock: lock.display().to_string(),
                source,
            })?;
        // Held while the file is open; any refusal means another holder.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| in_use())?;
        Ok(Some(file))
    }

    /// Moves WAL checkpoints out of the requests: SQLite runs an automatic one inside
    /// whichever commit crosses 1000 pages, and that request waits for it (and every
    /// request queued behind the connection). The daemon raises that threshold to
    /// [`WAL_BACKSTOP_PAGES`] and checkpoints from a thread of its own every `every`
    /// (PASSIVE: never waits for writers). The backstop stays: on slow storage under a
    /// steady stream of writes the passive checkpoints never catch up, and without it the
    /// WAL grew until the disk was full (seen in the storm benchmark's `sync` path). The CLI
    /// keeps the automatic ones.
    ///
    /// Passive checkpoints alone never start the WAL over while reads keep coming: a writer
    /// reuses the file from its start only if it began when every frame had been copied and
    /// no reader still used the WAL. So under a boot storm the WAL grew by every commit
    /// (about 4 pages a boot), reached the backstop within a second, and the commits past it
    /// each checkpointed inside the writer: 40-50 ms stalls. Once the WAL holds
    /// [`WAL_RESTART_PAGES`], the thread therefore holds the writing connection between two
    /// transactions (no batch waits on SQLite's busy sleeps) and runs a RESTART checkpoint:
    /// it copies the few frames since a second passive pass, waits for readers to leave the WAL,
    /// and the next commit writes the WAL from its start again, over blocks the file already
    /// has. Readers never wait for the writer, so that wait ends when their reads do (at
    /// most the connection's 1 s busy timeout: then the round logs it and a later one tries
    /// again). Writer held 2-5 ms a round on the bench's disk, 4-27 ms on its `sync` path.
    ///
    /// PostgreSQL checkpoints itself: there the returned value does nothing.
    pub fn checkpoint_in_background(&self, every: Duration) -> Result<Checkpointer, StoreError> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let Location::Sqlite(path) = &self.location else {
            return Ok(Checkpointer { stop });
        };
        let open_err = |source: rusqlite::Error| StoreError::Open {
            path: path.display().to_string(),
            source: source.into(),
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(1))
            .map_err(open_err)?;
        if let Conn::Lite(writer) = &*self.conn.lock().unwrap_or_else(|p| p.into_inner()) {
            writer
                .pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)
                .map_err(open_err)?;
        }
        let writer = self.conn.clone();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(every);
                    checkpoint_round(&conn, &writer);
                }
            })
            .map_err(|e| StoreError::Lock {
                lock: "wal-checkpoint thread".into(),
                source: e,
            })?;
        Ok(Checkpointer { stop })
    }

    /// The WAL size (pages) past which a committing request checkpoints itself (SQLite;
    /// PostgreSQL has no such setting: `None`).
    pub fn wal_autocheckpoint(&self) -> Result<Option<i64>, StoreError> {
        match &*self.conn.lock().unwrap_or_else(|p| p.into_inner()) {
            Conn::Lite(c) => c
                .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                .map(Some)
                .map_err(sql("read wal_autocheckpoint")),
            Conn::Pg(_) => Ok(None),
        }
    }

    /// A real (tiny) write transaction, committed: fails when writes do not reach the disk.
    pub fn check_write(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.tx
                .execute(
                    &format!(
                        "INSERT INTO write_check (id, at) VALUES (1, {NOW})
                         ON CONFLICT (id) DO UPDATE SET at = excluded.at"
                    ),
                    [],
                )
                .map_err(sql("write check"))?;
            Ok::<_, StoreError>(())
        })
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(|tx| migrations::current_version(&tx.tx))
    }
}

/// A random version-4 UUID in its text form (lowercase, hyphenated).
pub(crate) fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::events::{EventKind, NewEvent};
    use super::nodes::{NewNode, NodeFilter};
    use super::*;
    use crate::domain::ids::NodeRef;

    /// A reader that began before the checkpoint and is still reading when the next commit
    /// comes (under a boot storm there always is one) kept the WAL from starting over: it
    /// grew by every commit to the backstop, where each commit past it checkpointed inside
    /// the writer (the storm's 40-50 ms stalls). Past [`WAL_RESTART_PAGES`] a round waits
    /// for such readers, and the next commit writes the WAL from its start.
    #[test]
    fn a_checkpoint_round_past_the_restart_size_starts_the_wal_over() {
        if crate::store::test_support::sqlite_only("WAL checkpoints and the file's folder") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let store = Store::open(&db).unwrap();
        // The daemon's settings (the backstop instead of SQLite's 1000 pages); its thread's
        // first round would come in an hour: this test runs the rounds itself.
        let _daemon = store
            .checkpoint_in_background(Duration::from_secs(3600))
            .unwrap();
        let conn = Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let insert = |n: usize| {
            for _ in 0..n {
                store
                    .write(|tx| {
                        tx.tx
                            .execute("INSERT INTO blobs VALUES (zeroblob(60000))", [])
                            .map_err(sql("insert"))
                    })
                    .unwrap();
            }
        };
        store
            .write(|tx| {
                tx.tx
                    .execute_batch("CREATE TABLE blobs (b BLOB)")
                    .map_err(sql("create"))
            })
            .unwrap();
        let frames = |conn: &Connection| checkpoint(conn, "PASSIVE").unwrap().1;
        // (commits of 15 pages, whether the WAL then holds the restart size)
        let mut written = 0;
        for (commits, restarts) in [(10, false), (150, true)] {
            insert(commits);
            written += commits as i64 * 15;
            assert_eq!(written >= WAL_RESTART_PAGES, restarts);
            // A reader in the middle of a read, finishing 200 ms from now.
            let (began, reading) = std::sync::mpsc::channel();
            std::thread::scope(|s| {
                s.spawn(|| {
                    store
                        .read(|tx| {
                            let n: i64 = tx
                                .tx
                                .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
                                .map_err(sql("count"))?;
                            began.send(n).unwrap();
                            std::thread::sleep(Duration::from_millis(200));
                            Ok::<_, StoreError>(())
                        })
                        .unwrap()
                });
                reading.recv().unwrap();
                checkpoint_round(&conn, &store.conn);
                insert(1);
            });
            // Counted only now: a passive checkpoint before the reader began would let it
            // read the database file alone, out of the WAL's way.
            let after = frames(&conn);
            if restarts {
                assert!(
                    after < 100,
                    "{after} frames after the round: not started over"
                );
            } else {
                assert!(
                    after > written,
                    "{after} frames: a small WAL is left as it is"
                );
            }
        }
    }

    /// The daemon's checkpoint thread leaves a backstop, so the WAL cannot grow without
    /// bound when the thread's passive checkpoints never catch up.
    #[test]
    fn background_checkpoints_keep_a_backstop() {
        if crate::store::test_support::sqlite_only("WAL checkpoints and the file's folder") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::test_support::database(dir.path(), "t.db")).unwrap();
        let _checkpoints = store
            .checkpoint_in_background(Duration::from_secs(3600))
            .unwrap();
        let pages = store
            .wal_autocheckpoint()
            .unwrap()
            .expect("a file is SQLite");
        assert_eq!(pages, WAL_BACKSTOP_PAGES);
        assert!(pages > 0, "0 would turn the automatic checkpoint off");
    }

    /// A read does not queue behind a write transaction in progress: it sees the last
    /// commit at once, and the write once committed.
    #[test]
    fn reads_do_not_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::test_support::database(dir.path(), "t.db")).unwrap();
        let serial = pureboot_contract::ids::Serial::parse("0000abcd").unwrap();
        let node = NodeRef::Serial(serial.clone());
        let (inside, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                store
                    .write(|tx| {
                        tx.insert_node(&NewNode::new(serial.clone()))?;
                        inside.wait();
                        release.wait();
                        Ok::<_, StoreError>(())
                    })
                    .unwrap();
            });
            inside.wait();
            let t = std::time::Instant::now();
            let seen = store.read(|tx| tx.find_node(&node)).unwrap();
            assert!(seen.is_none(), "the open transaction is not visible");
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            release.wait();
        });
        assert!(store.read(|tx| tx.find_node(&node)).unwrap().is_some());
    }

    /// An operator's read stops at its deadline (its request has been answered 503 by
    /// then) instead of running on; the boot path's reads have no deadline.
    #[test]
    fn an_operators_read_is_cancelled_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::test_support::database(dir.path(), "t.db")).unwrap();
        let endless = |tx: &Tx<'_>| {
            tx.tx
                .query_row(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
                     SELECT COUNT(*) FROM n",
                    [],
                    |r| r.get::<i64>(0),
                )
                .map_err(sql("endless read"))
        };
        let t = std::time::Instant::now();
        let result = {
            let _operator = Store::admin_reads(Instant::now() + Duration::from_millis(100));
            store.read(endless)
        };
        assert!(
            matches!(result, Err(StoreError::Cancelled { op: "endless read" })),
            "{result:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // The scope is over: the next read is a plain one, on the boot path's connections.
        assert!(store
            .read(|tx| tx.find_node(&NodeRef::Id("x".into())))
            .is_ok());
        let _late = Store::admin_reads(Instant::now());
        assert!(matches!(
            store.read(|tx| tx.find_node(&NodeRef::Id("x".into()))),
            Err(StoreError::Cancelled { .. })
        ));
    }

    #[test]
    fn uuids_parse_as_node_refs() {
        let id = new_uuid();
        assert_eq!(id.as_bytes()[14], b'4');
        assert_eq!(NodeRef::parse(&id).unwrap(), NodeRef::Id(id.clone()));
        assert_ne!(id, new_uuid());
    }

    /// Two connections stand in for the daemon and the CLI: read-then-insert of one serial
    /// must serialise. Each round all threads race on a fresh serial; with a deferred
    /// transaction the loser's upgrade fails (SQLITE_BUSY_SNAPSHOT) or hits UNIQUE.
    #[test]
    fn two_connections_register_one_serial_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::store::test_support::database(dir.path(), "r.db");
        let stores = [Store::open(&path).unwrap(), Store::open(&path).unwrap()];
        let (rounds, per_store) = (30u32, 2);
        let barrier = std::sync::Barrier::new(stores.len() * per_store);
        let failures = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for store in &stores {
                for _ in 0..per_store {
                    let (barrier, failures) = (&barrier, &failures);
                    scope.spawn(move || {
                        for round in 0..rounds {
                            let serial =
                                pureboot_contract::ids::Serial::parse(&format!("{round:08x}"))
                                    .unwrap();
                            barrier.wait();
                            let result = store.write(|tx| {
                                let node = match tx.find_node(&NodeRef::Serial(serial.clone()))? {
                                    Some(n) => n,
                                    None => tx.insert_node(&NewNode::new(serial.clone()))?,
                                };
                                tx.append_event(&NewEvent {
                                    node_id: Some(&node.id),
                                    serial: node.serial.as_str(),
                                    kind: EventKind::BootRequest,
                                    ip: None,
                                    detail: serde_json::Value::Null,
                                })?;
                                Ok::<_, StoreError>(())
                            });
                            if let Err(e) = result {
                                eprintln!("round {round}: {e}");
                                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    });
                }
            }
        });
        assert_eq!(failures.into_inner(), 0, "no request may fail");
        let nodes = stores[0]
            .read(|tx| tx.list_nodes(&NodeFilter::default()))
            .unwrap();
        assert_eq!(nodes.len(), rounds as usize, "one node per serial");
        let events = stores[1]
            .read(|tx| tx.count_events("00000007", EventKind::BootRequest))
            .unwrap();
        assert_eq!(events, (stores.len() * per_store) as i64);
    }

    /// PostgreSQL restarted (here: every connection of the store ended by the server): the
    /// transaction that meets the closed connection fails, the next one connects again.
    #[test]
    fn a_closed_postgres_connection_is_opened_again() {
        let Some(server) = crate::store::test_support::postgres_server() else {
            eprintln!(
                "SQLite only here: the reconnection is PostgreSQL's (PUREBOOT_TEST_DATABASE)"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::test_support::database(dir.path(), "t.db");
        let store = Store::open(&url).unwrap();
        let add = |serial: &str| {
            let serial = pureboot_contract::ids::Serial::parse(serial).unwrap();
            store.write(|tx| tx.insert_node(&NewNode::new(serial)).map(drop))
        };
        add("0000000a").unwrap();
        let name = url
            .to_string_lossy()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let mut admin = postgres::Client::connect(&server, postgres::NoTls).unwrap();
        let ended = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )
            .unwrap()
            .len();
        assert!(ended > READERS + ADMIN_READERS, "{ended} connections ended");
        let first = add("0000000b");
        assert!(first.is_err(), "the closed connection is met: {first:?}");
        add("0000000c").unwrap();
        let nodes = store
            .read(|tx| tx.list_nodes(&NodeFilter::default()))
            .or_else(|_| store.read(|tx| tx.list_nodes(&NodeFilter::default())))
            .unwrap();
        assert_eq!(nodes.len(), 2, "a and c: b's transaction failed");
    }

    #[test]
    fn missing_folder_is_named() {
        if crate::store::test_support::sqlite_only("WAL checkpoints and the file's folder") {
            return;
        }
        let err = Store::open(Path::new("/nonexistent-dir/x.db"))
            .err()
            .expect("must fail");
        assert!(err.to_string().contains("/nonexistent-dir"), "{err}");
    }
}
