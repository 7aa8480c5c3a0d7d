//! A local root (`root=/dev/…`, or the controller's `local_boot`): wait for the block
//! device's node (its driver may still be probing), then mount it where the new root goes,
//! read-only unless the command line says `rw`, as the kernel mounts a root.

use crate::sys::{MountArgs, Sys};
use nix::errno::Errno;
use nix::mount::MsFlags;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the device's node may take to appear.
const DEVICE_WAIT: Duration = Duration::from_secs(10);

/// The root device and how to mount it.
#[derive(Debug, Clone)]
pub struct LocalRoot<'a> {
    /// As the command line names it (`/dev/vda2`).
    pub device: &'a str,
    /// Its node under the host's root (the same path on a Pi).
    pub node: PathBuf,
    pub fstype: &'a str,
    pub read_write: bool,
}

/// Why the local root could not be mounted.
#[derive(Debug)]
pub enum LocalError {
    Mkdir(io::Error),
    Mount(MountArgs, Errno),
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalError::Mkdir(e) => e.fmt(f),
            LocalError::Mount(m, e) => write!(f, "{m}: {e}"),
        }
    }
}

impl std::error::Error for LocalError {}

/// Mount `root` at `newroot`, waiting (with `sleep`) for its device node first.
pub fn mount(
    sys: &dyn Sys,
    root: &LocalRoot,
    newroot: &Path,
    sleep: fn(Duration),
) -> Result<(), LocalError> {
    let deadline = Instant::now() + DEVICE_WAIT;
    while !root.node.exists() && Instant::now() < deadline {
        sleep(Duration::from_millis(100));
    }
    std::fs::create_dir_all(newroot).map_err(LocalError::Mkdir)?;
    let flags = if root.read_write {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    let m = MountArgs::new(root.device, newroot, root.fstype, flags, "");
    sys.mount(&m).map_err(|e| LocalError::Mount(m, e))
}
