//! When a line arrives: a boot whose console file is watched while QEMU runs, so a mark is
//! timed on the host's clock from QEMU's spawn to the moment the mark reached the console.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pureboot_harness::lab::Lab;
use pureboot_harness::qemu::{BootRun, VirtualPi};

/// How often the console file is read: the resolution of the figures.
const POLL: Duration = Duration::from_millis(20);

/// Boots `pi` to the end; also gives the time from QEMU's spawn to the first appearance of
/// `mark` on its console (`None` when it never appeared).
pub fn boot(
    lab: &Lab,
    pi: &VirtualPi,
    label: &str,
    mark: &str,
) -> Result<(BootRun, Option<Duration>), String> {
    let path = lab.dir.join(&format!("console-{label}.log"));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let running = pi.start(&lab.ns, &path)?;
    let watcher = {
        let (done, mark, path) = (done.clone(), mark.as_bytes().to_vec(), path.clone());
        std::thread::spawn(move || first_arrival(&path, &mark, t0, &done))
    };
    let run = running.wait();
    done.store(true, Ordering::SeqCst);
    let arrival = watcher
        .join()
        .map_err(|_| format!("{label}: the console watcher panicked"))?;
    Ok((run, arrival))
}

/// Reads what `path` gained since the last look, every [`POLL`], until `mark` shows or `done`
/// is set (one last read after it, so a mark written just before QEMU exited still counts).
fn first_arrival(path: &Path, mark: &[u8], t0: Instant, done: &AtomicBool) -> Option<Duration> {
    let mut seen: Vec<u8> = Vec::new();
    loop {
        let last = done.load(Ordering::SeqCst);
        let scanned = seen.len().saturating_sub(mark.len());
        append_new(path, &mut seen);
        if seen[scanned..].windows(mark.len()).any(|w| w == mark) {
            return Some(t0.elapsed());
        }
        if last {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

fn append_new(path: &Path, seen: &mut Vec<u8>) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    if f.seek(SeekFrom::Start(seen.len() as u64)).is_ok() {
        let _ = f.read_to_end(seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_found_across_reads_and_after_done() {
        let dir = pureboot_harness::workdir::WorkDir::new("bench-watch").unwrap();
        let path = dir.join("console.log");
        std::fs::write(&path, "boot noise PUREBOOT-US").unwrap();
        let done = AtomicBool::new(false);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            let h = s.spawn(|| first_arrival(&path, b"PUREBOOT-USABLE", t0, &done));
            std::thread::sleep(POLL * 3);
            let mut text = std::fs::read(&path).unwrap();
            text.extend_from_slice(b"ABLE target\n");
            std::fs::write(&path, text).unwrap();
            assert!(h.join().unwrap().is_some());
        });
        done.store(true, Ordering::SeqCst);
        assert_eq!(first_arrival(&path, b"NEVER", t0, &done), None);
    }
}
