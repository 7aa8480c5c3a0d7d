//! The database a test runs on, for the store's tests and the controller's: an SQLite file by
//! default; with `PUREBOOT_TEST_DATABASE` set to a PostgreSQL server's URL (the test command
//! runs the suite a second time so, on a private server it starts: tests/postgres), a fresh
//! database of the test's own on that server. The same tests then pass on both engines.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable naming the PostgreSQL server the tests run on.
pub const SERVER_VARIABLE: &str = "PUREBOOT_TEST_DATABASE";

/// The PostgreSQL server the tests run on, if any.
pub fn postgres_server() -> Option<String> {
    std::env::var(SERVER_VARIABLE)
        .ok()
        .filter(|s| !s.is_empty())
}

/// The `database` setting for a test: `dir/file`, or a PostgreSQL database made for it. The
/// same for the same `dir` and `file` (a test that starts a controller again on its registry):
/// the database's URL is kept in `dir/file.postgres-url`.
pub fn database(dir: &Path, file: &str) -> PathBuf {
    let Some(server) = postgres_server() else {
        return dir.join(file);
    };
    let kept = dir.join(format!("{file}.postgres-url"));
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return PathBuf::from(url);
    }
    let url = fresh_postgres_database(&server);
    std::fs::write(&kept, &url).unwrap_or_else(|e| panic!("{}: {e}", kept.display()));
    PathBuf::from(url)
}

/// Creates an empty database on `server` (a URL whose path names a database to connect to,
/// e.g. `/postgres`) and returns the URL of the new one. Left behind: the server is the test
/// run's own and goes with its directory.
pub fn fresh_postgres_database(server: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut client = postgres::Client::connect(server, postgres::NoTls)
        .unwrap_or_else(|e| panic!("the test database server {server}: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {server}: {e}"));
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    format!("{base}/{name}")
}

/// For a test of what only SQLite has (its file, WAL, the serve lock): true (and says so)
/// when the suite runs on PostgreSQL.
pub fn sqlite_only(what: &str) -> bool {
    if postgres_server().is_some() {
        eprintln!("not on PostgreSQL: {what} is SQLite's alone");
        return true;
    }
    false
}
