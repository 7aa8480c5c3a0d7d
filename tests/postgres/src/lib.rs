//! A real PostgreSQL for tests, started and stopped by the tests themselves: Debian's server
//! programs (`postgresql-15`, named in tests/setup.sh), a private cluster in a temporary
//! directory, listening on a free port of 127.0.0.1, the server a child of the test process.
//!
//! Most tests want [`database_or_skip`]: a fresh database of their own on the cluster
//! [`shared`] by the whole test process (one `initdb` per process, not per test), or a loud
//! skip when PostgreSQL is not installed, which `PUREBOOT_E2E_STRICT=1` (tests/test.sh, CI)
//! turns into a failure. A test about the server's life starts its own [`Cluster`].

mod cluster;
mod install;
mod leftovers;
mod server;

use std::sync::OnceLock;

pub use cluster::{database_name, Cluster, SUPERUSER};
pub use install::BIN_ENV;

/// Whether this machine can run a cluster: the server programs exist and, when this
/// process is root, the `postgres` user to run them as. The error says what is missing.
pub fn available() -> Result<(), String> {
    install::Install::find().map(|_| ())
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The test process's one cluster, started on first use (a failed start is kept: every later
/// call gets the same error). It is never dropped: at exit an `atexit` handler stops the
/// server and removes its directory. A process that is killed runs no handler: the server
/// still dies (the parent-death signal, see `server.rs`), and the next start removes the
/// directory left in the temporary folder (`leftovers.rs`).
pub fn shared() -> Result<&'static Cluster, String> {
    SHARED
        .get_or_init(|| {
            let cluster = Cluster::start()?;
            // SAFETY: registers a plain function; it runs once, at exit.
            unsafe { libc::atexit(close_shared) };
            Ok(cluster)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// At exit, thread-locals may already be gone: nothing here uses them or can panic.
extern "C" fn close_shared() {
    if let Some(Ok(cluster)) = SHARED.get() {
        cluster.close();
    }
}

/// Whether a missing prerequisite must fail the test instead of skipping it (tests/test.sh
/// and CI set `PUREBOOT_E2E_STRICT=1`).
pub fn strict() -> bool {
    std::env::var("PUREBOOT_E2E_STRICT").is_ok_and(|v| v == "1")
}

/// `true` when PostgreSQL is installed; else says so on the real stderr as `SKIPPED postgres
/// (<what>): <why>` (tests/test.sh counts lines starting `SKIPPED ` as skips) and returns
/// `false`, or panics under `PUREBOOT_E2E_STRICT=1`.
pub fn available_or_skip(what: &str) -> bool {
    let Err(why) = available() else {
        return true;
    };
    if strict() {
        panic!("postgres ({what}): prerequisite missing (PUREBOOT_E2E_STRICT=1): {why}");
    }
    use std::io::Write;
    // Around the test harness's capture, which would hide the line on success.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED postgres ({what}): {why}");
    false
}

/// A new database on the shared cluster, as a URL; `None` when PostgreSQL is not installed
/// (see [`available_or_skip`]: a loud skip, or a failure under `PUREBOOT_E2E_STRICT=1`).
/// Panics when PostgreSQL is installed but does not start: that is a fault, not a missing
/// prerequisite.
pub fn database_or_skip(prefix: &str) -> Option<String> {
    if !available_or_skip(prefix) {
        return None;
    }
    let url = shared()
        .and_then(|c| c.new_database(prefix))
        .unwrap_or_else(|e| panic!("postgres ({prefix}): {e}"));
    Some(url)
}
