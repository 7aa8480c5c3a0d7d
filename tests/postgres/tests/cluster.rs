//! The private cluster against the real server: databases that hold data and are apart from
//! each other, and a server that is gone once its cluster is dropped or its process ends.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use pureboot_test_postgres::{available_or_skip, database_or_skip, Cluster};

fn client(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// `rows` into a new table `t` of `url`'s database, then what `t` holds.
fn write_and_read(url: &str, rows: &[&str]) -> Vec<String> {
    let mut c = client(url);
    c.batch_execute("CREATE TABLE t (id serial PRIMARY KEY, name text NOT NULL)")
        .unwrap();
    for name in rows {
        c.execute("INSERT INTO t (name) VALUES ($1)", &[name])
            .unwrap();
    }
    let rows = c.query("SELECT name FROM t ORDER BY id", &[]).unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[test]
fn the_shared_cluster_gives_each_caller_a_database_that_keeps_its_rows() {
    let start = Instant::now();
    let Some(a) = database_or_skip("keeps_rows") else {
        return;
    };
    let first = start.elapsed();
    let start = Instant::now();
    let b = database_or_skip("keeps_rows").unwrap();
    eprintln!(
        "first database (with the shared cluster's start, unless another test started it): \
         {first:?}; second: {:?}",
        start.elapsed()
    );
    assert_ne!(a, b);
    assert_eq!(write_and_read(&a, &["pi-1", "pi-2"]), ["pi-1", "pi-2"]);
    assert_eq!(write_and_read(&b, &["pi-3"]), ["pi-3"]);
    // A new connection sees what the first one committed.
    let n: i64 = client(&a)
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[test]
fn two_databases_do_not_see_each_other() {
    let Some(a) = database_or_skip("isolated") else {
        return;
    };
    let b = database_or_skip("isolated").unwrap();
    assert_eq!(write_and_read(&a, &["only in a"]), ["only in a"]);
    let err = client(&b)
        .query("SELECT name FROM t", &[])
        .expect_err("b has no table t");
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::UNDEFINED_TABLE),
        "{err}"
    );
    // b's own t, same name, its own rows; a's is untouched.
    assert_eq!(write_and_read(&b, &["only in b"]), ["only in b"]);
    let names: Vec<String> = client(&a)
        .query("SELECT name FROM t", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["only in a"]);
}

/// No process of that id, not even a zombie waiting to be reaped.
fn reaped(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Gone, or a zombie of a parent that is gone (reaped by whoever adopted it, or not: some
/// container inits never reap).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port))
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
}

fn eventually(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_dropped_cluster_is_gone_process_port_and_directory() {
    if !available_or_skip("dropped cluster") {
        return;
    }
    let start = Instant::now();
    let cluster = Cluster::start().unwrap();
    let started = start.elapsed();
    let start = Instant::now();
    let url = cluster.new_database("dropped").unwrap();
    eprintln!(
        "Cluster::start {started:?}, new_database {:?}",
        start.elapsed()
    );
    let (pid, port, dir) = (cluster.pid(), cluster.port(), cluster.dir().to_path_buf());
    // A client still connected: fast shutdown must not wait for it.
    let mut open = client(&url);
    open.batch_execute("SELECT 1").unwrap();
    assert!(!reaped(pid) && dir.join("data/postmaster.pid").exists());

    let start = Instant::now();
    drop(cluster);
    eprintln!("drop {:?}", start.elapsed());
    assert!(reaped(pid), "postgres {pid} still exists after drop");
    assert!(refuses(port), "127.0.0.1:{port} still answers");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(open.batch_execute("SELECT 1").is_err());
}

/// The holder binary with the shared cluster started: it, and the cluster's pid, port, dir.
fn holder() -> Option<(std::process::Child, u32, u16, PathBuf)> {
    if !available_or_skip("holder process") {
        return None;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_pureboot-pg-hold"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut words = line.split_whitespace();
    let (Some(pid), Some(port), Some(dir)) = (words.next(), words.next(), words.next()) else {
        panic!("pureboot-pg-hold said {line:?} (its error is above)");
    };
    let (pid, port, dir) = (
        pid.parse().unwrap(),
        port.parse().unwrap(),
        PathBuf::from(dir),
    );
    assert!(!refuses(port) && dir.is_dir(), "{line}");
    Some((child, pid, port, dir))
}

#[test]
fn the_shared_cluster_ends_with_its_process_that_exits() {
    let Some((mut child, pid, port, dir)) = holder() else {
        return;
    };
    writeln!(child.stdin.as_mut().unwrap(), "exit").unwrap();
    assert!(child.wait().unwrap().success());
    // Its own child, stopped and reaped at exit by the atexit handler, before the exit.
    assert!(dead(pid), "postgres {pid} outlived its process");
    assert!(refuses(port), "127.0.0.1:{port} still answers");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn the_shared_cluster_ends_with_its_process_that_is_killed() {
    let Some((mut child, pid, port, dir)) = holder() else {
        return;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // The parent-death signal: a fast shutdown of its own.
    eventually(
        &format!("postgres {pid} ends"),
        Duration::from_secs(10),
        || dead(pid),
    );
    assert!(refuses(port), "127.0.0.1:{port} still answers");
    // No handler ran: the directory stays for the next start's sweep; not this test's to wait for.
    remove(&dir);
}

fn remove(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
}
