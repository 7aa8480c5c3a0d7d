//! What the tests take from the host, and which Debian package brings each piece.
//!
//! `tests/setup.sh` installs with `--no-install-recommends`, so a file that only a Recommends
//! brings (QEMU's `efi-virtio.rom` from `ipxe-qemu` was one) is missing on a fresh machine
//! while a developer's machine, which got it some other way, passes. The self-tests below
//! check every entry of [`HOST_FILES`] against `dpkg` and `apt-cache`: the file must exist and
//! its owner must be a package `tests/setup.sh` names, or one of their `Depends`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A program (looked up on PATH, /usr/sbin and /sbin) or an absolute path, and the package
/// that provides it on Debian bookworm.
#[derive(Clone, Copy, Debug)]
pub struct HostFile {
    pub name: &'static str,
    pub package: &'static str,
}

const fn f(name: &'static str, package: &'static str) -> HostFile {
    HostFile { name, package }
}

/// Everything the harness, the scenarios and the workspace tests run or read from the host.
pub const HOST_FILES: &[HostFile] = &[
    f("qemu-system-aarch64", "qemu-system-arm"),
    f("ganesha.nfsd", "nfs-ganesha"),
    f("rpcbind", "rpcbind"),
    f("unshare", "util-linux"),
    f("nsenter", "util-linux"),
    f("losetup", "mount"),
    f("mount", "mount"),
    f("ss", "iproute2"),
    f("ip", "iproute2"),
    f("dnsmasq", "dnsmasq-base"),
    f("curl", "curl"),
    // The raspi3b board's device tree gets /serial-number as the Pi firmware adds it.
    f("fdtput", "device-tree-compiler"),
    f("cpio", "cpio"),
    f("modinfo", "kmod"),
    f("depmod", "kmod"),
    // tests/baseline/build.sh resolves the shell flow's module list with it.
    f("modprobe", "kmod"),
    f("mkfs.ext4", "e2fsprogs"),
    f("debugfs", "e2fsprogs"),
    f("tar", "tar"),
    // The test disk image, laid out as Raspberry Pi OS is (tests/disk-image.sh).
    f("sfdisk", "fdisk"),
    f("mkfs.vfat", "dosfstools"),
    f("mcopy", "mtools"),
    // The disk image scenario renames a kernel's release in it and its modules.
    f("sed", "sed"),
    f("grep", "grep"),
    f("xargs", "findutils"),
    f("gzip", "gzip"),
    f("zstd", "zstd"),
    f("xz", "xz-utils"),
    f("truncate", "coreutils"),
    // The container scenario's OCI archive (tests/harness/src/oci.rs): blob digests.
    f("sha256sum", "coreutils"),
    // pi-init's agent test of a step that leaves its session (setsid -f).
    f("setsid", "util-linux"),
    f("qemu-aarch64-static", "qemu-user-static"),
    f("debootstrap", "debootstrap"),
    f("dpkg-deb", "dpkg"),
    // tests/package.sh and controller/packaging/build-deb.sh: check the unit, read the ELF files, and
    // copy ExecReload's /bin/kill into the root the unit is verified in.
    f("systemd-analyze", "systemd"),
    f("readelf", "binutils"),
    f("md5sum", "coreutils"),
    f("/bin/kill", "procps"),
    // The benchmark reads the storm's database with the sqlite3 shell.
    f("sqlite3", "sqlite3"),
    // The status page's test loads it in a real browser.
    f("chromium", "chromium"),
    // The registry's PostgreSQL tests run their own cluster (tests/postgres).
    f("/usr/lib/postgresql/15/bin/initdb", "postgresql-15"),
    f("/usr/lib/postgresql/15/bin/postgres", "postgresql-15"),
];

/// nfs-ganesha loads its VFS backend as a plugin: a file, not a program.
pub const GANESHA_VFS_PLUGIN: &str = "libfsalvfs.so";

/// Where `name` is: an absolute path as given, else the first match on PATH, /usr/sbin, /sbin.
pub fn locate(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The ganesha VFS plugin, wherever the multiarch directory puts it.
pub fn ganesha_vfs_plugin() -> Option<PathBuf> {
    let lib = Path::new("/usr/lib");
    let mut dirs = vec![lib.join("ganesha")];
    if let Ok(entries) = std::fs::read_dir(lib) {
        dirs.extend(entries.flatten().map(|e| e.path().join("ganesha")));
    }
    dirs.into_iter()
        .map(|d| d.join(GANESHA_VFS_PLUGIN))
        .find(|p| p.is_file())
}

/// The packages `tests/setup.sh` installs: the words of its `PACKAGES=( … )` array
/// (comments dropped first, so a `)` in one does not end the array).
pub fn setup_packages(setup_sh: &str) -> Result<Vec<String>, String> {
    let code: String = setup_sh
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let start = code
        .find("PACKAGES=(")
        .ok_or("tests/setup.sh has no PACKAGES=( … ) array")?
        + "PACKAGES=(".len();
    let len = code[start..]
        .find(')')
        .ok_or("tests/setup.sh: PACKAGES=( is not closed")?;
    let words: Vec<String> = code[start..start + len]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if words.is_empty() {
        return Err("tests/setup.sh: PACKAGES is empty".into());
    }
    Ok(words)
}

/// The package that owns `path` (`dpkg -S`), trying the path as given and with every symlink
/// resolved (usr-merge: /sbin/x is recorded as /usr/sbin/x or the other way round).
pub fn owning_package(path: &Path) -> Result<String, String> {
    let mut candidates = vec![path.to_path_buf()];
    if let Ok(real) = path.canonicalize() {
        candidates.push(real);
    }
    for p in candidates.clone() {
        let s = p.display().to_string();
        if let Some(rest) = s.strip_prefix("/usr") {
            candidates.push(PathBuf::from(rest));
        } else {
            candidates.push(PathBuf::from(format!("/usr{s}")));
        }
    }
    for p in &candidates {
        let out = Command::new("dpkg")
            .arg("-S")
            .arg(p)
            .output()
            .map_err(|e| format!("running dpkg -S: {e}"))?;
        if out.status.success() {
            // "pkg[:arch][, pkg2]: /path"
            let text = String::from_utf8_lossy(&out.stdout);
            let owner = text.split(": ").next().unwrap_or("").trim();
            let first = owner.split(',').next().unwrap_or("").trim();
            return Ok(first.split(':').next().unwrap_or(first).to_string());
        }
    }
    Err(format!("no installed package owns {}", path.display()))
}

/// `packages` and everything they pull in through Depends and Pre-Depends (never Recommends):
/// what a `--no-install-recommends` install of them puts on a fresh machine.
pub fn install_closure(packages: &[String]) -> Result<BTreeSet<String>, String> {
    let out = Command::new("apt-cache")
        .args([
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ])
        .args(packages)
        .output()
        .map_err(|e| format!("running apt-cache depends: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "apt-cache depends failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut set: BTreeSet<String> = packages.iter().cloned().collect();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // Package lines start in column 0; "  Depends: x" / "  PreDepends: x" / "    y" (an
        // alternative's provider) are indented.
        let word = match line.trim_start().split_once(": ") {
            Some((_, dep)) => dep,
            None => line.trim(),
        };
        let word = word.trim().trim_start_matches('|');
        if !word.is_empty() && !word.starts_with('<') {
            set.insert(word.split(':').next().unwrap_or(word).to_string());
        }
    }
    Ok(set)
}

/// Checks every host file: present, owned by the package the table says, and that package
/// installed by `tests/setup.sh` (directly or as a dependency). One line per fault.
pub fn check_host_files(setup_sh: &str) -> Result<(), Vec<String>> {
    let named = setup_packages(setup_sh).map_err(|e| vec![e])?;
    let closure = install_closure(&named).map_err(|e| vec![e])?;
    let mut faults = Vec::new();
    let mut check = |what: &str, found: Option<PathBuf>, package: &str| {
        let Some(path) = found else {
            faults.push(format!(
                "{what} is not on this machine (Debian package {package}): run tests/setup.sh"
            ));
            return;
        };
        match owning_package(&path) {
            Ok(owner) if owner != package => faults.push(format!(
                "{} comes from package {owner}, the table in tests/harness/src/host.rs says {package}",
                path.display()
            )),
            Ok(_) if !closure.contains(package) => faults.push(format!(
                "{} comes from package {package}, which tests/setup.sh does not install \
                 (neither in PACKAGES nor a Depends of one; a Recommends is not installed)",
                path.display()
            )),
            Ok(_) => {}
            Err(e) => faults.push(e),
        }
    };
    for hf in HOST_FILES {
        check(hf.name, locate(hf.name), hf.package);
    }
    check(GANESHA_VFS_PLUGIN, ganesha_vfs_plugin(), "nfs-ganesha-vfs");
    if faults.is_empty() {
        Ok(())
    } else {
        Err(faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_debian() -> bool {
        Path::new("/var/lib/dpkg/status").exists() && locate("apt-cache").is_some()
    }

    #[test]
    fn setup_packages_reads_the_array() {
        let sh = "X=1\nPACKAGES=(\n  a b # c (why)\n  d\n)\nY=(e)\n";
        assert_eq!(setup_packages(sh).unwrap(), ["a", "b", "d"]);
        assert!(setup_packages("nothing").is_err());
        assert!(setup_packages("PACKAGES=( )").is_err());
    }

    /// The guard of the class of fault where a file comes only through a Recommends: every
    /// host file the tests use exists and comes from a package tests/setup.sh installs.
    #[test]
    fn every_host_file_comes_from_a_package_setup_installs() {
        if !is_debian() {
            crate::skip::announce_skip(
                "host files",
                "not a Debian machine (no dpkg status or apt-cache): cannot tell packages",
            );
            assert!(!crate::skip::strict(), "PUREBOOT_E2E_STRICT=1 needs Debian");
            return;
        }
        let setup = std::fs::read_to_string(crate::repo_root().join("tests/setup.sh"))
            .expect("reading tests/setup.sh");
        if let Err(faults) = check_host_files(&setup) {
            panic!("host files the tests need:\n  {}", faults.join("\n  "));
        }
    }

    /// The check itself can fail: a package that is only a Recommends of qemu-system-arm
    /// (ipxe-qemu, the ROMs) is not in the closure of what set-up installs.
    #[test]
    fn a_recommends_is_not_in_the_install_closure() {
        if !is_debian() {
            crate::skip::announce_skip("install closure", "not a Debian machine");
            return;
        }
        let closure = install_closure(&["qemu-system-arm".to_string()]).unwrap();
        assert!(closure.contains("qemu-system-data"), "a Depends is in");
        assert!(!closure.contains("ipxe-qemu"), "a Recommends is out");
    }
}
