//! Group commit: the daemon's hot writes (boot commits, reports, registrations) go through
//! one writer thread that takes every request waiting (up to [`MAX_BATCH`]) and applies them
//! in one transaction, each in its own savepoint, then commits once. A commit on a slow
//! journal (tens of ms) then costs a batch one wait instead of each request its own, one
//! after another.
//!
//! A request that fails rolls back only its savepoint and gets its own error; a failed
//! commit fails every request of the batch. No request is answered before the commit that
//! holds it has returned. An idle writer starts on the first request at once (no timer).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::db::Conn;
use super::{sql, StoreError, Tx};

/// Requests per transaction at most: bounds how long the first of a batch waits.
pub const MAX_BATCH: usize = 256;

/// One queued request, its result kept until the batch's commit returns.
trait Job: Send {
    /// Runs the request in the open transaction; `false` when it failed (its savepoint is
    /// then rolled back).
    fn apply(&mut self, tx: &Tx<'_>) -> bool;
    /// Answers the waiter: its own result if the batch committed, else the commit's error.
    fn answer(self: Box<Self>, committed: Result<(), Arc<StoreError>>);
}

struct Request<F, T, E> {
    work: Option<F>,
    result: Option<Result<T, E>>,
    reply: tokio::sync::oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Job for Request<F, T, E>
where
    F: FnOnce(&Tx<'_>) -> Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn apply(&mut self, tx: &Tx<'_>) -> bool {
        let work = self.work.take().expect("a request is applied once");
        let result = work(tx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, committed: Result<(), Arc<StoreError>>) {
        let result = match (committed, self.result) {
            // Rolled back on its own: its error holds whatever became of the batch.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Err(e), Some(Ok(_))) => Err(StoreError::Batch(e).into()),
            (Err(e), None) => Err(StoreError::Batch(e).into()),
            (Ok(()), None) => Err(StoreError::RequestPanicked.into()),
        };
        // The waiter may be gone (its client hung up): nothing to tell.
        let _ = self.reply.send(result);
    }
}

/// A queued request's answer, given once the transaction holding it has committed (or
/// failed).
pub struct Ticket<T, E> {
    rx: Result<tokio::sync::oneshot::Receiver<Result<T, E>>, E>,
}

impl<T, E: From<StoreError>> Ticket<T, E> {
    /// A request refused before it was queued.
    pub(super) fn failed(e: E) -> Ticket<T, E> {
        Ticket { rx: Err(e) }
    }

    /// Waits without a thread.
    pub async fn answer(self) -> Result<T, E> {
        match self.rx {
            Ok(rx) => rx
                .await
                .unwrap_or_else(|_| Err(StoreError::WriterStopped.into())),
            Err(e) => Err(e),
        }
    }

    /// Waits on this thread (never from async code).
    pub fn wait(self) -> Result<T, E> {
        match self.rx {
            Ok(rx) => rx
                .blocking_recv()
                .unwrap_or_else(|_| Err(StoreError::WriterStopped.into())),
            Err(e) => Err(e),
        }
    }
}

/// What the writer has done so far (for tests and the curious).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupCounts {
    /// Transactions committed.
    pub commits: u64,
    /// Requests answered (committed, refused or failed).
    pub requests: u64,
    /// The largest batch so far.
    pub largest: u64,
}

#[derive(Debug, Default)]
struct GroupStats {
    commits: AtomicU64,
    requests: AtomicU64,
    largest: AtomicU64,
}

/// The writer thread and its queue; dropping it lets the thread finish what is queued,
/// then waits for it.
pub(super) struct GroupWriter {
    queue: Option<Mutex<Sender<Box<dyn Job>>>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<GroupStats>,
}

impl GroupWriter {
    /// `event_cap`: the store's `max_events` (0 = none), kept by every batch.
    pub(super) fn start(
        conn: Arc<Mutex<Conn>>,
        event_cap: Arc<AtomicU64>,
    ) -> Result<GroupWriter, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Job>>();
        let stats = Arc::new(GroupStats::default());
        let counters = stats.clone();
        let thread = std::thread::Builder::new()
            .name("registry-writer".into())
            .spawn(move || run(&conn, &rx, &counters, &event_cap))
            .map_err(|e| StoreError::Lock {
                lock: "registry writer thread".into(),
                source: e,
            })?;
        Ok(GroupWriter {
            queue: Some(Mutex::new(tx)),
            thread: Some(thread),
            stats,
        })
    }

    pub(super) fn enqueue<T, E>(
        &self,
        work: impl FnOnce(&Tx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Ticket<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Box::new(Request {
            work: Some(work),
            result: None,
            reply,
        });
        let sent = self
            .queue
            .as_ref()
            .map(|q| q.lock().unwrap_or_else(|p| p.into_inner()).send(job));
        match sent {
            Some(Ok(())) => Ticket { rx: Ok(rx) },
            _ => Ticket::failed(StoreError::WriterStopped.into()),
        }
    }
}

impl GroupWriter {
    pub(super) fn counts(&self) -> GroupCounts {
        let s = &self.stats;
        GroupCounts {
            commits: s.commits.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            largest: s.largest.load(Ordering::Relaxed),
        }
    }
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            // The last owner of the store may be a request the writer just ran: it must
            // not wait for itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// The writer's loop: blocks for a first request, then takes the connection and whatever
/// else is queued by then.
fn run(
    conn: &Mutex<Conn>,
    queue: &Receiver<Box<dyn Job>>,
    stats: &GroupStats,
    event_cap: &AtomicU64,
) {
    while let Ok(first) = queue.recv() {
        let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let cap = event_cap.load(Ordering::Relaxed);
        let committed = apply_batch(&mut conn, &mut batch, cap).map_err(Arc::new);
        drop(conn);
        if committed.is_ok() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
        }
        stats.requests.fetch_add(n, Ordering::Relaxed);
        stats.largest.fetch_max(n, Ordering::Relaxed);
        for job in batch {
            job.answer(committed.clone());
        }
    }
}

/// One transaction: each job in a savepoint, then the event log pruned back under
/// `event_cap` (0 = no cap), one commit.
fn apply_batch(
    conn: &mut Conn,
    batch: &mut [Box<dyn Job>],
    event_cap: u64,
) -> Result<(), StoreError> {
    let tx = Tx {
        tx: conn.begin_write().map_err(sql("begin transaction"))?,
    };
    for job in batch.iter_mut() {
        tx.tx
            .execute_batch("SAVEPOINT request")
            .map_err(sql("savepoint"))?;
        // A panicking request is a failed one; the others still commit.
        let ok = std::panic::catch_unwind(AssertUnwindSafe(|| job.apply(&tx))).unwrap_or(false);
        let end = if ok {
            "RELEASE request"
        } else {
            "ROLLBACK TO request; RELEASE request"
        };
        // Fails when SQLite rolled the whole transaction back itself (disk full, I/O
        // error; the savepoint is gone with it): the batch is lost, every request told so.
        tx.tx.execute_batch(end).map_err(sql("end savepoint"))?;
    }
    // In a savepoint of its own: a prune that fails must not lose the batch's requests.
    tx.tx
        .execute_batch("SAVEPOINT prune")
        .map_err(sql("savepoint"))?;
    let end = match tx.keep_events_at_most(event_cap) {
        Ok(_) => "RELEASE prune",
        Err(e) => {
            log::error!("keeping the event log under max_events = {event_cap}: {e}");
            "ROLLBACK TO prune; RELEASE prune"
        }
    };
    tx.tx.execute_batch(end).map_err(sql("end savepoint"))?;
    tx.tx.commit().map_err(sql("commit"))
}

#[cfg(test)]
mod tests {
    use super::super::nodes::NewNode;
    use super::super::Store;
    use super::*;
    use crate::domain::ids::NodeRef;
    use pureboot_contract::ids::Serial;

    fn insert(serial: &str) -> impl FnOnce(&Tx<'_>) -> Result<String, StoreError> + Send {
        let serial = serial.to_string();
        move |tx| {
            tx.insert_node(&NewNode::new(Serial::parse(&serial).unwrap()))
                .map(|n| n.serial.to_string())
        }
    }

    fn exists(store: &Store, serial: &str) -> bool {
        let node = NodeRef::Serial(Serial::parse(serial).unwrap());
        store.read(|tx| tx.find_node(&node)).unwrap().is_some()
    }

    type TestJob<T> = Box<dyn FnOnce(&Tx<'_>) -> Result<T, StoreError> + Send>;

    /// Queues `jobs` while the writing connection is held, so the writer finds them all
    /// waiting when it gets the connection: one batch, deterministically.
    fn in_one_batch<T: Send + 'static>(
        store: &Store,
        jobs: Vec<TestJob<T>>,
    ) -> Vec<Result<T, StoreError>> {
        let held = store.conn.lock().unwrap();
        let tickets: Vec<_> = jobs.into_iter().map(|j| store.enqueue(j)).collect();
        drop(held);
        tickets.into_iter().map(Ticket::wait).collect()
    }

    #[test]
    fn a_failing_request_rolls_back_alone_and_gets_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::test_support::database(dir.path(), "g.db")).unwrap();
        let before = store.group_counts();
        let results = in_one_batch(
            &store,
            vec![
                Box::new(insert("00000001")),
                // Writes, then fails (the serial is unique): its first insert goes too.
                Box::new(|tx: &Tx<'_>| {
                    insert("00000002")(tx)?;
                    insert("00000001")(tx)
                }),
                Box::new(insert("00000003")),
            ],
        );
        assert_eq!(results[0].as_deref().unwrap(), "00000001");
        let err = results[1].as_ref().unwrap_err().to_string();
        // SQLite: "UNIQUE constraint failed"; PostgreSQL: "duplicate key value violates
        // unique constraint".
        assert!(err.to_lowercase().contains("unique"), "{err}");
        assert_eq!(results[2].as_deref().unwrap(), "00000003");
        assert!(exists(&store, "00000001") && exists(&store, "00000003"));
        assert!(
            !exists(&store, "00000002"),
            "the failed request's own writes roll back"
        );
        let after = store.group_counts();
        assert_eq!((after.commits - before.commits, after.requests), (1, 3));
    }

    #[test]
    fn a_batch_of_requests_is_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::test_support::database(dir.path(), "g.db")).unwrap();
        let n = 100;
        let jobs = (0..n)
            .map(|i| Box::new(insert(&format!("{i:08x}"))) as TestJob<_>)
            .collect();
        let results = in_one_batch(&store, jobs);
        assert!(results.iter().all(Result::is_ok));
        let counts = store.group_counts();
        assert_eq!((counts.commits, counts.requests, counts.largest), (1, n, n));
        // Past the bound, more than one.
        let jobs = (0..MAX_BATCH + 1)
            .map(|i| Box::new(insert(&format!("1{i:07x}"))) as TestJob<_>)
            .collect();
        assert!(in_one_batch(&store, jobs).iter().all(Result::is_ok));
        let counts = store.group_counts();
        assert_eq!((counts.commits, counts.largest), (3, MAX_BATCH as u64));
    }

    /// An answer comes after the commit: another connection sees the write the moment the
    /// answer arrives; and a commit that fails answers every request of its batch with the
    /// error, none with success.
    #[test]
    fn requests_are_answered_only_after_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::test_support::database(dir.path(), "g.db")).unwrap();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..50 {
                        let serial = format!("{t:04x}{i:04x}");
                        store.enqueue(insert(&serial)).wait().unwrap();
                        assert!(
                            exists(store, &serial),
                            "{serial} answered before its commit"
                        );
                    }
                });
            }
        });
        let counts = store.group_counts();
        assert_eq!(counts.requests, 200);
        assert!(counts.commits <= 200);

        // A deferred foreign key fails at COMMIT, after every request applied cleanly.
        let results = in_one_batch(
            &store,
            vec![
                Box::new(insert("0000aaaa")),
                Box::new(|tx: &Tx<'_>| {
                    tx.tx
                        .execute_batch(
                            "CREATE TEMP TABLE IF NOT EXISTS p (id INTEGER PRIMARY KEY);
                             CREATE TEMP TABLE IF NOT EXISTS c (p INTEGER
                               REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);
                             INSERT INTO c VALUES (1);",
                        )
                        .map_err(sql("test"))?;
                    Ok("deferred".to_string())
                }),
            ],
        );
        for r in &results {
            let err = r.as_ref().unwrap_err().to_string();
            assert!(err.contains("not recorded"), "{err}");
        }
        assert!(
            !exists(&store, "0000aaaa"),
            "nothing of the failed batch committed"
        );
        // The writer goes on.
        assert!(store.enqueue(insert("0000bbbb")).wait().is_ok());
        assert!(exists(&store, "0000bbbb"));
    }

    /// A panicking request fails alone; the writer and the rest of its batch go on.
    #[test]
    fn a_panicking_request_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::test_support::database(dir.path(), "g.db")).unwrap();
        let results = in_one_batch(
            &store,
            vec![
                Box::new(|tx: &Tx<'_>| {
                    insert("00000001")(tx)?;
                    panic!("test panic")
                }),
                Box::new(insert("00000002")),
            ],
        );
        assert!(matches!(results[0], Err(StoreError::RequestPanicked)));
        assert!(results[1].is_ok());
        assert!(!exists(&store, "00000001") && exists(&store, "00000002"));
    }

    /// Dropping the store lets the writer finish what was queued, then stops it.
    #[test]
    fn dropping_the_store_finishes_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::store::test_support::database(dir.path(), "g.db");
        let store = Store::open(&path).unwrap();
        let tickets: Vec<_> = (0..20)
            .map(|i| store.enqueue(insert(&format!("{i:08x}"))))
            .collect();
        drop(store);
        assert!(tickets.into_iter().all(|t| t.wait().is_ok()));
        let store = Store::open(&path).unwrap();
        assert!(exists(&store, "00000013"));
    }
}
