//! Entering the new root, in klibc `run_init`'s order: check first (init resolved inside the
//! new root), move /dev /proc /sys /run across, then the point of no return. From the
//! initramfs (rootfs cannot be pivoted: EINVAL) delete its contents without crossing mounts,
//! MS_MOVE the new root onto `/`, chroot; from a real mount (a test's namespace) pivot_root.

use crate::sys::{MountArgs, MountPoint, Sys};
use nix::errno::Errno;
use nix::mount::MntFlags;
use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Mounts carried into the new root.
pub const MOVED_MOUNTS: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];
/// Tried in order when `init=` names none.
pub const DEFAULT_INITS: [&str; 2] = ["/sbin/init", "/lib/systemd/systemd"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// `/` is the kernel's rootfs (initramfs).
    Initramfs,
    /// `/` is an ordinary mount: pivot_root works.
    RealMount,
}

/// Why no init can be run in the new root.
#[derive(Debug)]
pub enum InitError {
    /// `(path asked, where inside the new root, why)`.
    Lookup(String, PathBuf, io::Error),
    /// `path` goes round in symbolic links.
    Loop(String),
    Readlink(PathBuf, io::Error),
    /// `(name, what it resolves to, why)`.
    Stat(String, PathBuf, io::Error),
    NotExecutable(String, PathBuf),
    /// Every candidate, each with why not.
    NoInit(Vec<InitError>),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Lookup(path, inside, e) => {
                write!(f, "{path}: /{} in the new root: {e}", inside.display())
            }
            InitError::Loop(path) => write!(f, "{path}: too many symbolic links in the new root"),
            InitError::Readlink(p, e) => write!(f, "readlink {}: {e}", p.display()),
            InitError::Stat(name, r, e) => write!(f, "{name} -> {}: {e}", r.display()),
            InitError::NotExecutable(name, r) => {
                write!(f, "{name} -> {} is not an executable file", r.display())
            }
            InitError::NoInit(why) => {
                f.write_str("no init in the new root: ")?;
                for (i, e) in why.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for InitError {}

/// Why the new root could not be entered (nothing is destroyed before the checks pass).
#[derive(Debug)]
pub enum SwitchError {
    Mkdir(PathBuf, io::Error),
    /// Moving an early mount into the new root.
    Move(MountArgs, Errno),
    /// A call on the way in: `(the call, its error)`.
    Call(String, Errno),
    NotOwnMount(PathBuf),
    NotRamfs(PathBuf, i64),
    NotInitramfs(PathBuf),
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchError::Mkdir(p, e) => write!(f, "mkdir {}: {e}", p.display()),
            SwitchError::Move(args, e) => write!(f, "{args}: {e}"),
            SwitchError::Call(what, e) => write!(f, "{what}: {e} ({})", e.desc()),
            SwitchError::NotOwnMount(p) => write!(f, "{} is not a mount of its own", p.display()),
            SwitchError::NotRamfs(root, magic) => write!(
                f,
                "{} is not ramfs/tmpfs (magic {magic:#x}): refusing to delete it",
                root.display()
            ),
            SwitchError::NotInitramfs(root) => {
                let shown = root.display();
                write!(
                    f,
                    "{shown}init is not a file: not in an initramfs, refusing to delete {shown}"
                )
            }
        }
    }
}

impl std::error::Error for SwitchError {}

/// execv(2) of init failed: `(init, errno)`.
#[derive(Debug)]
pub struct ExecError(pub String, pub Errno);

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exec {}: {} ({})", self.0, self.1, self.1.desc())
    }
}

impl std::error::Error for ExecError {}

pub fn root_kind(mounts: &[MountPoint]) -> RootKind {
    match crate::sys::mounted_fstype(mounts, "/").as_deref() {
        Some("rootfs") => RootKind::Initramfs,
        _ => RootKind::RealMount,
    }
}

/// Resolve `path` inside `root` the way the kernel will once `root` is `/`: absolute symlink
/// targets start again at `root`, relative ones at the link's directory, `..` stops at `root`.
/// Returns the resolved path relative to `root` (starting with `/`).
pub fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, InitError> {
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => cur.push(c),
        }
        let inside: PathBuf = cur.iter().collect();
        let on_disk = root.join(&inside);
        let meta = match std::fs::symlink_metadata(&on_disk) {
            Ok(m) => m,
            Err(e) => return Err(InitError::Lookup(path.into(), inside, e)),
        };
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return Err(InitError::Loop(path.into()));
            }
            let target =
                std::fs::read_link(&on_disk).map_err(|e| InitError::Readlink(on_disk, e))?;
            let target = target.to_string_lossy().into_owned();
            cur.pop();
            if target.starts_with('/') {
                cur.clear();
            }
            todo.extend(components(&target).into_iter().rev());
        }
    }
    Ok(Path::new("/").join(cur.iter().collect::<PathBuf>()))
}

fn components(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// The init to exec: `init=` (which must work, as the kernel insists), else the defaults.
/// Returns (the path to exec, what it resolves to inside the new root).
pub fn find_init(root: &Path, requested: Option<&str>) -> Result<(String, PathBuf), InitError> {
    let candidates: Vec<&str> = match requested {
        Some(r) => vec![r],
        None => DEFAULT_INITS.to_vec(),
    };
    let mut why = Vec::new();
    for c in &candidates {
        match resolve_in_root(root, c).and_then(|r| executable(root, c, r)) {
            Ok(r) => return Ok((c.to_string(), r)),
            Err(e) => why.push(e),
        }
    }
    Err(InitError::NoInit(why))
}

fn executable(root: &Path, name: &str, resolved: PathBuf) -> Result<PathBuf, InitError> {
    let on_disk = root.join(resolved.strip_prefix("/").unwrap_or(&resolved));
    let m = match std::fs::metadata(&on_disk) {
        Ok(m) => m,
        Err(e) => return Err(InitError::Stat(name.into(), resolved, e)),
    };
    if !m.is_file() || m.permissions().mode() & 0o111 == 0 {
        return Err(InitError::NotExecutable(name.into(), resolved));
    }
    Ok(resolved)
}

/// Move /dev /proc /sys /run (those that are mounts) into the new root.
pub fn move_mounts(
    sys: &dyn Sys,
    newroot: &Path,
    mounts: &[MountPoint],
) -> Result<(), SwitchError> {
    for m in MOVED_MOUNTS {
        if crate::sys::mounted_fstype(mounts, m).is_none() {
            log::debug!("{m} is not a mount; not moved");
            continue;
        }
        let target = newroot.join(&m[1..]);
        if !target.is_dir() {
            if let Err(e) = std::fs::create_dir_all(&target) {
                return Err(SwitchError::Mkdir(target, e));
            }
        }
        let args = MountArgs::move_mount(Path::new(m), &target);
        if let Err(e) = sys.mount(&args) {
            return Err(SwitchError::Move(args, e));
        }
    }
    Ok(())
}

pub const RAMFS_MAGIC: i64 = 0x858458f6;
pub const TMPFS_MAGIC: i64 = 0x01021994;

/// The console init gets on fds 0-2 (in the new root: /dev was moved there).
pub const CONSOLE: &str = "/dev/console";

/// Make `newroot` the root; `root` is the current one (`/`, a temporary directory in tests).
/// After this the old root is gone: only exec is left.
pub fn enter(
    sys: &dyn Sys,
    root: &Path,
    newroot: &Path,
    kind: RootKind,
) -> Result<(), SwitchError> {
    let step = |what: &str, e: Errno| SwitchError::Call(what.into(), e);
    sys.chdir(newroot)
        .map_err(|e| step(&format!("chdir {}", newroot.display()), e))?;
    match kind {
        RootKind::RealMount => {
            // pivot_root(".", ".") stacks the old root on the new one; detach it at once.
            sys.pivot_root(Path::new("."), Path::new("."))
                .map_err(|e| step("pivot_root", e))?;
            sys.umount(Path::new("."), MntFlags::MNT_DETACH)
                .map_err(|e| step("umount old root", e))?;
        }
        RootKind::Initramfs => {
            let shown = root.display();
            let root_dev = sys
                .device_of(root)
                .map_err(|e| step(&format!("stat {shown}"), e))?;
            let here = sys
                .device_of(Path::new("."))
                .map_err(|e| step(&format!("stat {}", newroot.display()), e))?;
            if root_dev == here {
                return Err(SwitchError::NotOwnMount(newroot.into()));
            }
            let magic = sys
                .fs_magic(root)
                .map_err(|e| step(&format!("statfs {shown}"), e))?;
            if magic != RAMFS_MAGIC && magic != TMPFS_MAGIC {
                return Err(SwitchError::NotRamfs(root.into(), magic));
            }
            if !root.join("init").is_file() {
                return Err(SwitchError::NotInitramfs(root.into()));
            }
            sys.delete_tree(root, root_dev);
            let args = MountArgs::move_mount(Path::new("."), root);
            sys.mount(&args).map_err(|e| step(&args.to_string(), e))?;
            sys.chroot(Path::new(".")).map_err(|e| step("chroot", e))?;
        }
    }
    sys.chdir(Path::new("/")).map_err(|e| step("chdir /", e))
}

/// Put the console on fds 0-2 and exec init with `args`. Returns only on failure.
pub fn exec_init(sys: &dyn Sys, init: &str, args: &[String]) -> ExecError {
    sys.console_on_stdio(Path::new(CONSOLE));
    let argv: Vec<String> = std::iter::once(init.to_string())
        .chain(args.iter().cloned())
        .collect();
    ExecError(init.into(), sys.exec(&argv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::testutil::TempDir;
    use crate::sys::fake::{Call, FakeSys};
    use crate::sys::parse_mountinfo;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn exe(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn init_resolves_inside_the_new_root() {
        let d = TempDir::new();
        let r = d.path();
        exe(&r.join("lib/systemd/systemd"));
        fs::create_dir_all(r.join("sbin")).unwrap();
        // Debian: an absolute symlink, which from the initramfs points at the wrong tree.
        symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
        symlink("../lib/systemd/systemd", r.join("sbin/rel-init")).unwrap();
        // usrmerge: /bin -> usr/bin (relative directory link), then an absolute one inside.
        exe(&r.join("usr/bin/busybox"));
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/bin/busybox", r.join("usr/bin/sh")).unwrap();
        symlink("/../../../lib/systemd/systemd", r.join("sbin/escape")).unwrap();
        symlink("loop2", r.join("sbin/loop1")).unwrap();
        symlink("loop1", r.join("sbin/loop2")).unwrap();
        fs::write(r.join("sbin/noexec"), "").unwrap();

        let cases: &[(&str, &str)] = &[
            ("/sbin/init", "/lib/systemd/systemd"),
            ("/sbin/rel-init", "/lib/systemd/systemd"),
            ("/bin/sh", "/usr/bin/busybox"),
            ("/sbin/./../sbin/init", "/lib/systemd/systemd"),
            ("/sbin/escape", "/lib/systemd/systemd"),
        ];
        for (i, (p, want)) in cases.iter().enumerate() {
            assert_eq!(
                resolve_in_root(r, p).unwrap(),
                PathBuf::from(want),
                "test[{i}]: {p}"
            );
        }
        assert!(resolve_in_root(r, "/sbin/loop1")
            .unwrap_err()
            .to_string()
            .contains("too many"));
        assert!(resolve_in_root(r, "/sbin/missing")
            .unwrap_err()
            .to_string()
            .contains("/sbin/missing"));

        assert_eq!(
            find_init(r, None).unwrap(),
            ("/sbin/init".into(), "/lib/systemd/systemd".into())
        );
        assert_eq!(
            find_init(r, Some("/bin/sh")).unwrap().1,
            PathBuf::from("/usr/bin/busybox")
        );
        let e = find_init(r, Some("/sbin/noexec")).unwrap_err().to_string();
        assert!(e.contains("not an executable"), "{e}");
        // init= that fails does not fall back to the defaults (the kernel would not either).
        assert!(find_init(r, Some("/nope")).is_err());
    }

    #[test]
    fn dangling_default_init_falls_to_systemd() {
        let d = TempDir::new();
        exe(&d.path().join("lib/systemd/systemd"));
        fs::create_dir_all(d.path().join("sbin")).unwrap();
        symlink("/nowhere", d.path().join("sbin/init")).unwrap();
        assert_eq!(find_init(d.path(), None).unwrap().0, "/lib/systemd/systemd");
        let e = find_init(&d.path().join("empty"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/sbin/init") && e.contains("/lib/systemd/systemd"),
            "{e}"
        );
    }

    #[test]
    fn root_kind_and_mount_moves() {
        let initramfs = parse_mountinfo(
            "1 1 0:2 / / rw - rootfs rootfs rw\n2 1 0:5 / /dev rw - devtmpfs devtmpfs rw\n\
             3 1 0:20 / /proc rw - proc proc rw\n4 1 0:21 / /sys rw - sysfs sysfs rw\n",
        );
        assert_eq!(root_kind(&initramfs), RootKind::Initramfs);
        let host = parse_mountinfo("27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        assert_eq!(root_kind(&host), RootKind::RealMount);

        let d = TempDir::new();
        let sys = FakeSys::new();
        move_mounts(&sys, d.path(), &initramfs).unwrap();
        let moved: Vec<_> = sys
            .mounts()
            .into_iter()
            .map(|m| (m.source.unwrap(), m.target))
            .collect();
        assert_eq!(
            moved,
            [
                ("/dev".to_string(), d.path().join("dev")),
                ("/proc".into(), d.path().join("proc")),
                ("/sys".into(), d.path().join("sys"))
            ],
            "/run is not a mount here: not moved"
        );
        assert!(sys
            .mounts()
            .iter()
            .all(|m| m.flags == nix::mount::MsFlags::MS_MOVE));
    }

    #[test]
    fn real_mount_uses_pivot_root() {
        let sys = FakeSys::new();
        enter(
            &sys,
            Path::new("/"),
            Path::new("/mnt/root"),
            RootKind::RealMount,
        )
        .unwrap();
        assert_eq!(
            sys.calls(),
            [
                Call::Chdir("/mnt/root".into()),
                Call::PivotRoot(".".into(), ".".into()),
                Call::Umount(".".into()),
                Call::Chdir("/".into())
            ]
        );
    }

    /// A temporary directory standing in for the initramfs' `/` (with its `/init`), the
    /// new root a mount of its own below it.
    fn initramfs(sys: &FakeSys) -> (TempDir, PathBuf) {
        let d = TempDir::new();
        fs::write(d.path().join("init"), "").unwrap();
        let newroot = d.path().join("mnt/root");
        fs::create_dir_all(&newroot).unwrap();
        sys.set_device(d.path(), 1);
        sys.set_device(&newroot, 2);
        sys.set_fs_magic(d.path(), RAMFS_MAGIC);
        (d, newroot)
    }

    #[test]
    fn initramfs_is_checked_then_emptied_then_replaced() {
        let sys = FakeSys::new();
        let (d, newroot) = initramfs(&sys);
        enter(&sys, d.path(), &newroot, RootKind::Initramfs).unwrap();
        assert_eq!(
            sys.calls(),
            [
                Call::Chdir(newroot.clone()),
                // Only the initramfs' own device: the new root (device 2) is never entered.
                Call::DeleteTree(d.path().into(), 1),
                Call::Mount(MountArgs::move_mount(Path::new("."), d.path())),
                Call::Chroot(".".into()),
                Call::Chdir("/".into()),
            ]
        );
        // tmpfs as the initramfs is accepted too.
        let sys = FakeSys::new();
        let (d, newroot) = initramfs(&sys);
        sys.set_fs_magic(d.path(), TMPFS_MAGIC);
        enter(&sys, d.path(), &newroot, RootKind::Initramfs).unwrap();
    }

    #[test]
    fn initramfs_path_refuses_before_deleting_anything() {
        type Setup = fn(&FakeSys, &Path, &Path);
        let nothing: Setup = |_, _, _| {};
        // (what, setup, the new root below the one prepared, the error's words)
        let cases: &[(&str, Setup, &str, &str)] = &[
            (
                "new root on the same device",
                |sys, _, newroot| sys.set_device(newroot, 1),
                "",
                "not a mount of its own",
            ),
            (
                "/ on a disk filesystem",
                |sys, root, _| sys.set_fs_magic(root, 0xef53),
                "",
                "refusing to delete",
            ),
            (
                "no /init",
                |_, root, _| fs::remove_file(root.join("init")).unwrap(),
                "",
                "not in an initramfs",
            ),
            (
                "the new root cannot be stat'ed",
                nothing,
                "missing",
                "stat ",
            ),
        ];
        for (i, (what, setup, below, want)) in cases.iter().enumerate() {
            let sys = FakeSys::new();
            let (d, newroot) = initramfs(&sys);
            setup(&sys, d.path(), &newroot);
            let target = if below.is_empty() {
                newroot.clone()
            } else {
                newroot.join(below)
            };
            let e = enter(&sys, d.path(), &target, RootKind::Initramfs)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "test[{i}]: {what}: {e}");
            assert!(
                !sys.calls()
                    .iter()
                    .any(|c| matches!(c, Call::DeleteTree(..) | Call::Mount(_) | Call::Chroot(_))),
                "test[{i}]: {what}: {:?}",
                sys.calls()
            );
        }
    }

    #[test]
    fn exec_puts_the_console_on_stdio_and_passes_the_arguments() {
        let sys = FakeSys::new();
        let e = exec_init(&sys, "/sbin/init", &["single".into()]).to_string();
        assert_eq!(
            sys.calls(),
            [
                Call::ConsoleOnStdio(CONSOLE.into()),
                Call::Exec(vec!["/sbin/init".into(), "single".into()])
            ]
        );
        assert!(
            e.starts_with("exec /sbin/init: ")
                && e.contains(crate::sys::fake::FAKE_EXEC_ERROR.desc()),
            "{e}"
        );
    }
}
