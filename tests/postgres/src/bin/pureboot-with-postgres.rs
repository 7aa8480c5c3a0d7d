//! Runs a command against a private PostgreSQL: starts a cluster (as the tests do), sets
//! `PUREBOOT_TEST_DATABASE` to its server's URL, runs the command, stops the cluster, and
//! exits as the command did. tests/test.sh runs the controller's test suite a second time
//! so, to hold the store's tests on both engines:
//!
//!   pureboot-with-postgres cargo test -p pureboot-controller

use std::process::Command;

/// What the controller's tests read (controller/src/store/test_support.rs).
const SERVER_VARIABLE: &str = "PUREBOOT_TEST_DATABASE";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: pureboot-with-postgres <command> [args...]");
        std::process::exit(2);
    };
    let cluster = match pureboot_test_postgres::Cluster::start() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pureboot-with-postgres: {e}");
            std::process::exit(1);
        }
    };
    let server = cluster.url("postgres");
    eprintln!(
        "pureboot-with-postgres: PostgreSQL at {server} (pid {}, {})",
        cluster.pid(),
        cluster.dir().display()
    );
    let status = Command::new(program)
        .args(rest)
        .env(SERVER_VARIABLE, &server)
        .status();
    drop(cluster);
    match status {
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("pureboot-with-postgres: {program}: {e}");
            std::process::exit(1);
        }
    }
}
