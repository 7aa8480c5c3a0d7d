//! The recording fake of the seam, for host tests: every call the boot makes is kept with
//! its arguments ([`Call`]) so a test asserts the exact mounts, moves and exec; mounts and
//! module loads fail when a test says so, and the reads (`device_of`, `fs_magic`, `mounts`)
//! answer from tables. Nothing here touches the machine.

use super::{parse_mountinfo, LoopDevice, MountArgs, MountPoint, Sys};
use nix::errno::Errno;
use nix::mount::MntFlags;
use nix::sys::reboot::RebootMode;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the fake `exec` answers: it never replaces the test process.
pub const FAKE_EXEC_ERROR: Errno = Errno::ENOTRECOVERABLE;

/// One recorded call, with its arguments. Reads (`device_of`, `fs_magic`, `mounts`) are
/// answered from tables and not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount(MountArgs),
    Umount(PathBuf),
    FinitModule(PathBuf, String),
    LoopAttach(PathBuf, bool),
    PivotRoot(PathBuf, PathBuf),
    Chroot(PathBuf),
    Chdir(PathBuf),
    SetHostname(String),
    SetClock(std::time::Duration),
    Reboot(RebootMode),
    DeleteTree(PathBuf, u64),
    ConsoleOnStdio(PathBuf),
    Exec(Vec<String>),
    WatchdogTimeout(i32),
}

/// Records every call; mounts answer from a script (default success), modules from a
/// table; `device_of` and `fs_magic` from tables (ENOENT when absent), with `.` the
/// directory the last `chdir`s lead to.
pub struct FakeSys {
    pub calls: Mutex<Vec<Call>>,
    mount_results: Mutex<VecDeque<Result<(), Errno>>>,
    /// Mounts that fail whatever the script says: (source, start of the data, error).
    mount_errors: Mutex<Vec<(String, String, Errno)>>,
    module_errors: Mutex<HashMap<PathBuf, Errno>>,
    devices: Mutex<HashMap<PathBuf, u64>>,
    magics: Mutex<HashMap<PathBuf, i64>>,
    mount_table: Mutex<Vec<MountPoint>>,
    cwd: Mutex<PathBuf>,
}

impl Default for FakeSys {
    fn default() -> Self {
        FakeSys {
            calls: Mutex::default(),
            mount_results: Mutex::default(),
            mount_errors: Mutex::default(),
            module_errors: Mutex::default(),
            devices: Mutex::default(),
            magics: Mutex::default(),
            mount_table: Mutex::default(),
            cwd: Mutex::new(PathBuf::from("/")),
        }
    }
}

impl FakeSys {
    pub fn new() -> Self {
        Self::default()
    }
    /// The next mounts answer these results, in order; then success.
    pub fn script_mounts(&self, results: impl IntoIterator<Item = Result<(), Errno>>) {
        self.mount_results.lock().unwrap().extend(results);
    }
    /// Every mount of `source` whose data starts with `data` fails with `e` (for mounts
    /// made on several threads at once, where a script's order would be a race).
    pub fn fail_mount(&self, source: &str, data: &str, e: Errno) {
        let m = (source.to_string(), data.to_string(), e);
        self.mount_errors.lock().unwrap().push(m);
    }
    pub fn fail_module(&self, path: &str, e: Errno) {
        self.module_errors.lock().unwrap().insert(path.into(), e);
    }
    /// `path` is on device `dev` (for `device_of`).
    pub fn set_device(&self, path: &Path, dev: u64) {
        self.devices.lock().unwrap().insert(path.into(), dev);
    }
    /// The filesystem holding `path` has type `magic` (for `fs_magic`).
    pub fn set_fs_magic(&self, path: &Path, magic: i64) {
        self.magics.lock().unwrap().insert(path.into(), magic);
    }
    /// What `mounts` answers, as /proc/self/mountinfo text.
    pub fn set_mountinfo(&self, text: &str) {
        *self.mount_table.lock().unwrap() = parse_mountinfo(text);
    }
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    pub fn mounts(&self) -> Vec<MountArgs> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Mount(m) => Some(m),
                _ => None,
            })
            .collect()
    }
    fn record(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }
    /// `path` as the fake's current directory sees it.
    fn resolve(&self, path: &Path) -> PathBuf {
        let cwd = self.cwd.lock().unwrap().clone();
        if path == Path::new(".") {
            cwd
        } else {
            cwd.join(path)
        }
    }
}

impl Sys for FakeSys {
    fn mount(&self, m: &MountArgs) -> Result<(), Errno> {
        self.record(Call::Mount(m.clone()));
        let matches = |(src, data, _): &&(String, String, Errno)| {
            m.source.as_deref() == Some(src.as_str())
                && m.data.as_deref().unwrap_or("").starts_with(data.as_str())
        };
        if let Some((_, _, e)) = self.mount_errors.lock().unwrap().iter().find(matches) {
            return Err(*e);
        }
        self.mount_results
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(()))
    }
    fn umount(&self, target: &Path, _flags: MntFlags) -> Result<(), Errno> {
        self.record(Call::Umount(target.into()));
        Ok(())
    }
    fn finit_module(&self, path: &Path, params: &str) -> Result<(), Errno> {
        self.record(Call::FinitModule(path.into(), params.into()));
        match self.module_errors.lock().unwrap().get(path) {
            Some(e) => Err(*e),
            None => Ok(()),
        }
    }
    fn loop_attach(&self, file: &Path, read_only: bool) -> Result<LoopDevice, Errno> {
        self.record(Call::LoopAttach(file.into(), read_only));
        Ok(LoopDevice {
            path: "/dev/loop7".into(),
            _held: None,
        })
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        self.record(Call::PivotRoot(new_root.into(), put_old.into()));
        Ok(())
    }
    fn chroot(&self, path: &Path) -> Result<(), Errno> {
        self.record(Call::Chroot(path.into()));
        Ok(())
    }
    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        self.record(Call::Chdir(path.into()));
        let to = self.resolve(path);
        *self.cwd.lock().unwrap() = to;
        Ok(())
    }
    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        self.record(Call::SetHostname(name.into()));
        Ok(())
    }
    fn set_clock(&self, since_epoch: std::time::Duration) -> Result<(), Errno> {
        self.record(Call::SetClock(since_epoch));
        Ok(())
    }
    fn reboot(&self, mode: RebootMode) -> Errno {
        self.record(Call::Reboot(mode));
        Errno::EPERM
    }
    fn device_of(&self, path: &Path) -> Result<u64, Errno> {
        let p = self.resolve(path);
        self.devices
            .lock()
            .unwrap()
            .get(&p)
            .copied()
            .ok_or(Errno::ENOENT)
    }
    fn fs_magic(&self, path: &Path) -> Result<i64, Errno> {
        let p = self.resolve(path);
        self.magics
            .lock()
            .unwrap()
            .get(&p)
            .copied()
            .ok_or(Errno::ENOENT)
    }
    fn delete_tree(&self, dir: &Path, dev: u64) {
        self.record(Call::DeleteTree(dir.into(), dev));
    }
    fn mounts(&self) -> Vec<MountPoint> {
        self.mount_table.lock().unwrap().clone()
    }
    fn console_on_stdio(&self, console: &Path) {
        self.record(Call::ConsoleOnStdio(console.into()));
    }
    fn exec(&self, argv: &[String]) -> Errno {
        self.record(Call::Exec(argv.to_vec()));
        FAKE_EXEC_ERROR
    }
    fn watchdog_timeout(&self, _dev: &File, secs: i32) -> Result<i32, Errno> {
        self.record(Call::WatchdogTimeout(secs));
        Ok(secs)
    }
}
