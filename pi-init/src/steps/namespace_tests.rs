//! Root-only: assemble a tmpfs-mode overlay over tmpfs lowers and switch root with
//! pivot_root, inside a fresh mount namespace, on the host kernel. The work runs in a child
//! process (this test binary re-run on one ignored test) so the namespace, chroot and cwd
//! changes never touch the test harness.

use crate::decide::cmdline::{OverlayMode, RootLayout};
use crate::steps::lower;
use crate::steps::overlay::{self, Paths};
use crate::steps::switch_root::{self, RootKind};
use crate::sys::linux::LinuxSys;
use crate::sys::{self, MountArgs, Sys};
use nix::mount::MsFlags;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

const HELPER_ENV: &str = "PI_INIT_NAMESPACE_HELPER";
const HELPER: &str = "steps::namespace_tests::helper_overlay_and_switch_root";
/// The namespace was unshared by this thread only: /proc/self would show the main thread's.
const MOUNTINFO: &str = "/proc/thread-self/mountinfo";
const PASSED: &str = "helper: all checks passed";

#[test]
fn overlay_and_switch_root_in_a_mount_namespace() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED overlay_and_switch_root_in_a_mount_namespace: needs root (mounts, unshare)"
        );
        return;
    }
    let scratch = std::env::temp_dir().join(format!("pi-init-ns-{}", std::process::id()));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            HELPER,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, &scratch)
        .output()
        .unwrap();
    let _ = fs::remove_dir(&scratch);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helper failed:\n{text}");
    assert!(
        text.contains(PASSED),
        "helper did not run its checks:\n{text}"
    );
}

fn mount(m: MountArgs) {
    LinuxSys.mount(&m).unwrap_or_else(|e| panic!("{m}: {e}"));
}

fn exe(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, "#!/bin/sh\n").unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
#[ignore = "run by overlay_and_switch_root_in_a_mount_namespace in its own process"]
fn helper_overlay_and_switch_root() {
    let Some(scratch) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let scratch = Path::new(&scratch);
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    // Nothing done here may propagate back to the host.
    mount(MountArgs::new(
        "",
        Path::new("/"),
        "",
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        "",
    ));
    fs::create_dir_all(scratch).unwrap();
    mount(MountArgs::new(
        "tmpfs",
        scratch,
        "tmpfs",
        MsFlags::empty(),
        "",
    ));

    // The "export": a tmpfs with a base image and a node layer, then made read-only.
    let paths = Paths::under(scratch);
    fs::create_dir_all(&paths.nfs).unwrap();
    mount(MountArgs::new(
        "tmpfs",
        &paths.nfs,
        "tmpfs",
        MsFlags::empty(),
        "",
    ));
    let base = paths.nfs.join("base/bookworm");
    exe(&base.join("lib/systemd/systemd"));
    fs::create_dir_all(base.join("sbin")).unwrap();
    symlink("/lib/systemd/systemd", base.join("sbin/init")).unwrap();
    fs::create_dir_all(base.join("etc")).unwrap();
    fs::write(base.join("etc/os-release"), "from-base\n").unwrap();
    fs::write(base.join("etc/hostname"), "base\n").unwrap();
    for d in ["dev", "proc", "sys", "run"] {
        fs::create_dir_all(base.join(d)).unwrap();
    }
    let node = paths.nfs.join("nodes/d83add36/upper/etc");
    fs::create_dir_all(&node).unwrap();
    fs::write(node.join("hostname"), "from-node-layer\n").unwrap();
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(MountArgs::new("", &paths.nfs, "", ro, ""));

    // delete_tree stays on its own device.
    let doomed = scratch.join("doomed");
    fs::create_dir_all(doomed.join("a/b")).unwrap();
    fs::write(doomed.join("a/b/file"), "x").unwrap();
    fs::create_dir_all(doomed.join("mnt")).unwrap();
    mount(MountArgs::new(
        "tmpfs",
        &doomed.join("mnt"),
        "tmpfs",
        MsFlags::empty(),
        "",
    ));
    fs::write(doomed.join("mnt/kept"), "x").unwrap();
    crate::sys::linux::delete_tree(&doomed, fs::metadata(&doomed).unwrap().dev());
    assert!(!doomed.join("a").exists(), "own files deleted");
    assert!(
        doomed.join("mnt/kept").exists(),
        "other filesystems untouched"
    );

    let serial = pureboot_contract::ids::Serial::parse("d83add36").unwrap();
    let image = pureboot_contract::ids::ImageName::parse("bookworm").unwrap();
    let want = lower::Want {
        layout: Some(RootLayout::Tree),
        init: None,
        serial: Some(&serial),
        base_image: Some(&image),
        export: "test:/export",
    };
    let lower = lower::resolve(&paths.nfs, &want, None).expect("the lower layers");
    let req = overlay::Request {
        mode: OverlayMode::Tmpfs,
        lower: &lower,
        hostname: "pi-d83add36",
        machine_id: "0123456789abcdef0123456789abcdef",
        export: "test:/export",
        persist_image: pureboot_contract::layout::PERSIST_IMAGE,
    };
    let mut degraded = Vec::new();
    let done = overlay::assemble(&LinuxSys, &paths, &req, &mut degraded).expect("assemble");
    assert_eq!(done.mode, OverlayMode::Tmpfs);
    let upper = fs::File::open(paths.rw.join("upper")).unwrap();
    let base_fd = fs::File::open(&base).unwrap();
    let (init, _) = switch_root::find_init(&paths.newroot, None).expect("init before the switch");

    let mounts = sys::parse_mountinfo(&fs::read_to_string(MOUNTINFO).unwrap());
    let kind = switch_root::root_kind(&mounts);
    assert_eq!(kind, RootKind::RealMount, "the host's / is a real mount");
    switch_root::move_mounts(&LinuxSys, &paths.newroot, &mounts).expect("move mounts");
    switch_root::enter(&LinuxSys, Path::new("/"), &paths.newroot, kind).expect("switch root");

    // Now inside the new root.
    assert_eq!(
        fs::read_to_string("/etc/hostname").unwrap(),
        "from-node-layer\n"
    );
    assert_eq!(
        fs::read_to_string("/etc/os-release").unwrap(),
        "from-base\n"
    );
    let (again, resolved) = switch_root::find_init(Path::new("/"), None).unwrap();
    assert_eq!(
        (again.as_str(), resolved.to_str().unwrap()),
        (init.as_str(), "/lib/systemd/systemd")
    );
    let mi = sys::parse_mountinfo(&fs::read_to_string(MOUNTINFO).expect("/proc moved in"));
    assert_eq!(sys::mounted_fstype(&mi, "/").as_deref(), Some("overlay"));
    assert!(Path::new("/dev/null").exists(), "/dev moved in");
    fs::write("/written-after-switch", "hello").unwrap();
    let at = |dir: &fs::File| {
        nix::sys::stat::fstatat(
            Some(std::os::fd::AsRawFd::as_raw_fd(dir)),
            "written-after-switch",
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert!(at(&upper).is_ok(), "writes land in the tmpfs upper layer");
    assert!(at(&base_fd).is_err(), "the base is never written");
    println!("{PASSED}");
}
