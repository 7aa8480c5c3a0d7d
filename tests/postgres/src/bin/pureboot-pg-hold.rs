//! Holds the shared cluster in a process of its own, for the tests of what happens to the
//! server when its test process ends (tests/cluster.rs): prints `<pid> <port> <dir>` of the
//! cluster, then ends when stdin says `exit` or closes. Killing it is the other way to end.

use std::io::BufRead;

fn main() {
    let cluster = match pureboot_test_postgres::shared() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pureboot-pg-hold: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "{} {} {}",
        cluster.pid(),
        cluster.port(),
        cluster.dir().display()
    );
    for line in std::io::stdin().lock().lines() {
        if line.map_or(true, |l| l.trim() == "exit") {
            break;
        }
    }
}
