//! Directories of clusters whose test process is gone. A dropped [`crate::Cluster`] removes
//! its own, and the shared cluster's is removed at exit; a test process that is killed
//! (SIGKILL, a timeout) runs neither, so its server dies by the parent-death signal but its
//! `<temp>/pureboot-pg-<pid>-*` stays. The next start removes those whose pid is not running.

use std::path::Path;
use std::sync::Once;

/// Every cluster's directory is `<temp>/pureboot-pg-<pid>-<random>`: the pid says whose it is.
const DIR_PREFIX: &str = "pureboot-pg-";

/// The start of this process's cluster directories' names.
pub fn own_prefix() -> String {
    format!("{DIR_PREFIX}{}-", std::process::id())
}

pub fn sweep_once() {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| {
        sweep(&std::env::temp_dir(), |pid| {
            Path::new("/proc").join(pid.to_string()).exists()
        })
    });
}

fn sweep(temp: &Path, running: impl Fn(u32) -> bool) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !running(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_of_processes_not_running_are_removed() {
        let temp = tempfile::tempdir().unwrap();
        for name in [
            "pureboot-pg-10-a",
            "pureboot-pg-11-b",
            "pureboot-pg-x-c",
            "other-10",
        ] {
            std::fs::create_dir(temp.path().join(name)).unwrap();
        }
        let me = format!("pureboot-pg-{}-d", std::process::id());
        std::fs::create_dir(temp.path().join(&me)).unwrap();
        sweep(temp.path(), |pid| pid == 11);
        let mut left: Vec<String> = std::fs::read_dir(temp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            "other-10".to_string(),
            "pureboot-pg-11-b".into(),
            "pureboot-pg-x-c".into(),
            me,
        ];
        want.sort();
        assert_eq!(left, want);
    }
}
