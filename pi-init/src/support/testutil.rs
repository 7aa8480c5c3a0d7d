//! Test helpers shared by the modules' unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A self-removing temporary directory (no extra crate).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "pi-init-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Moves the calling test's thread (and the threads it starts) into a network namespace of
/// its own with loopback up, so it may bind any port; false, after a SKIP line, when not
/// root. Network namespaces are per thread: the other tests are not moved.
pub fn in_new_netns(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP {what}: needs root (a network namespace of its own)");
        return false;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    crate::steps::net::link::set_up("lo").expect("loopback up in the new namespace");
    true
}
