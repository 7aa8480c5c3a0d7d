//! A scratch directory per scenario under /tmp/pureboot-e2e. Removed when the scenario
//! passes; kept (and its path printed) when it fails, so logs and consoles can be read.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct WorkDir {
    path: PathBuf,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl WorkDir {
    pub fn new(label: &str) -> io::Result<WorkDir> {
        let base = std::env::var_os("PUREBOOT_E2E_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/pureboot-e2e"));
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("{label}-{}-{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("PUREBOOT_KEEP").is_some() {
            eprintln!("e2e: kept {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
