//! The tiny root the virtual Pis boot into, built from arm64 busybox: its `/sbin/init` prints
//! one `PUREBOOT-GUEST key=value ...` line saying who it is, exercises the writable layer
//! when the command line asks (`probe.write=`, `probe.mark=`), and powers off.
//! Also the Debian root of the scenario `debian_root_boots_to_systemd`, with a unit that
//! reports the same way, and the benchmark's Debian root, with a unit that marks
//! `multi-user.target` reached.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process;

/// A file of the shared base that a node may delete (the whiteout must persist in mode image).
pub const BASE_FILE: &str = "etc/pureboot-base-file";

const APPLETS: &[&str] = &[
    "sh", "cat", "mount", "poweroff", "echo", "grep", "sed", "sync", "rm", "mkdir", "ls", "tr",
    "head", "touch", "sleep", "cut", "umount", "date", "tail",
];

/// `/sbin/init` of the tiny root. Values never contain spaces, so the report line splits on
/// whitespace. `probe.write=T` writes T to /var/probe and deletes the base file;
/// `probe.mark=M` leaves /var/marks/M; the report lists what the root holds afterwards;
/// `probe.nfsstats=1` dumps the NFS client's counters after it (`nfs-dump`, the benchmark's);
/// `probe.nfs=<server>:<path> probe.try=<dir>,<dir>` mounts that export over NFSv4 on /mnt and
/// tries to create a file in each `<dir>` below it, printing one
/// `PUREBOOT-TRY path=<dir> result=ok|EACCES|EROFS|EPERM|ENOENT|other:<message>` line each
/// (or `path=/ result=mount-refused:<errno>` when the mount itself is refused); with
/// `probe.mount3=<dir>,<dir>` also mounts each `<server>:<path>/<dir>` over NFSv3 and tries
/// to create a file in it (`path=v3:<dir> result=...`).
/// `probe.loop=<dir> probe.until=<epoch>`: after the report, a write loop until the guest's
/// clock reaches `<epoch>`: one number a second appended to `<dir>/seq`, fsync'd (`sync
/// FILE`), then `PUREBOOT-SEQ n=<n> t=<epoch> host=<hostname>` on the console (the hostname
/// read again each time: an open on the NFS lower, so the loop stalls while the server is
/// away); it starts after the file's last number (`PUREBOOT-LOOP dir= last=`) and ends with
/// every filesystem remounted read-only (sysrq `u`: ext4 journals checkpointed, as a clean
/// unmount leaves them) and `PUREBOOT-LOOP-END n=<n>`.
/// `probe.volume=<path>` reports the filesystem mounted there (`vol_fs=`), what an earlier
/// boot left in its `probe` file (`vol_read=`, written with `probe.vwrite=T`), and whether an
/// overlayfs mount with its upper layer inside the volume (`ov_volume=`) and on the root
/// (`ov_root=`) succeeds (`ok`, or `failed:<mount's message>`): what containerd's
/// overlayfs snapshotter does.
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
export PATH=/bin
mount -t proc proc /proc 2>/dev/null
arg() { for a in $(cat /proc/cmdline); do case "$a" in "$1"=*) echo "${a#*=}"; return;; esac; done; }
w=$(arg probe.write)
if [ -n "$w" ]; then echo "$w" > /var/probe; rm -f /etc/pureboot-base-file; fi
m=$(arg probe.mark)
if [ -n "$m" ]; then mkdir -p /var/marks && touch "/var/marks/$m"; fi
errno() { case "$1" in *"Permission denied"*) echo EACCES;; *"Read-only file system"*) echo EROFS;; *"Operation not permitted"*) echo EPERM;; *"No such file"*) echo ENOENT;; *) echo "other:$(echo "$1" | tr ' ' '_')";; esac; }
t=$(arg probe.try)
if [ -n "$t" ]; then
  srv=$(arg probe.nfs)
  if out=$(mount -t nfs4 -o "addr=${srv%%:*}" "$srv" /mnt 2>&1); then
    for p in $(echo "$t" | tr ',' ' '); do
      if out=$(touch "/mnt/$p/probe-$(arg pureboot.serial)" 2>&1); then r=ok; else r=$(errno "$out"); fi
      echo "PUREBOOT-TRY path=$p result=$r"
    done
    umount /mnt
  else
    echo "PUREBOOT-TRY path=/ result=mount-refused:$(errno "$out")"
  fi
  for p in $(arg probe.mount3 | tr ',' ' '); do
    if out=$(mount -t nfs -o "vers=3,nolock,proto=tcp,mountproto=tcp,addr=${srv%%:*}" "$srv/$p" /mnt 2>&1); then
      if out=$(touch "/mnt/probe-$(arg pureboot.serial)" 2>&1); then r=ok; else r=$(errno "$out"); fi
      umount /mnt
    else
      r=mount-refused:$(errno "$out")
    fi
    echo "PUREBOOT-TRY path=v3:$p result=$r"
  done
fi
v=$(arg probe.volume)
if [ -n "$v" ]; then
  vfs=$(grep " $v " /proc/mounts | tail -n1 | cut -d' ' -f3)
  vread=$(cat "$v/probe" 2>/dev/null || echo none)
  vw=$(arg probe.vwrite)
  [ -n "$vw" ] && echo "$vw" > "$v/probe"
  ov() { mkdir -p "$1/l" "$1/u" "$1/w" "$1/m"; if out=$(mount -t overlay -o "lowerdir=$1/l,upperdir=$1/u,workdir=$1/w" overlay "$1/m" 2>&1); then umount "$1/m"; echo ok; else echo "failed:$(echo "$out" | tr ' ' '_')"; fi; }
  vol="vol_fs=${vfs:-none} vol_read=$vread ov_volume=$(ov "$v/ov") ov_root=$(ov /var/ov)"
fi
sync
# The export's mount, not the base image's own (its source ends in /base/<image>).
nfs=$(grep -v '^[^ ]*/base/[^ /]* ' /proc/mounts | grep -o ' nfs4\? [^ ]*vers=[0-9.]*' | head -n1 | sed 's/.*vers=//')
# The NFS mounts stay behind in the old root, hidden from /proc/mounts; the per-namespace
# nfsfs table still lists them ("v4 0a000202 801 0:24 ..."), without their paths. The two
# are mounted at once, so in either order; the base tries v3 first, so the export's is the
# highest version there.
[ -n "$nfs" ] || nfs=$(sed -n '2,$s/^v\([0-9.]*\) .*/\1/p' /proc/fs/nfsfs/volumes 2>/dev/null | sort | tail -n1)
# Every NFS mount's version, sorted: the export's and the base image's own (v3,v4).
volumes=$(sed -n '2,$s/^\(v[0-9.]*\) .*/\1/p' /proc/fs/nfsfs/volumes 2>/dev/null | sort | tr '\n' ',' | sed 's/,$//')
rootfs=$(grep '^[^ ]* / ' /proc/mounts | tail -n1 | cut -d' ' -f3)
upper=$(grep '^[^ ]* / ' /proc/mounts | tail -n1 | grep -o 'upperdir=[^,]*' | cut -d= -f2)
probe=$(cat /var/probe 2>/dev/null || echo none)
if [ -e /etc/pureboot-base-file ]; then base=present; else base=absent; fi
marks=$(ls /var/marks 2>/dev/null | tr '\n' ',' | sed 's/,$//')
# pi-init loads ext4 (its disk list) only when the boot needs it.
if grep -q '^ext4 ' /proc/modules; then ext4=loaded; else ext4=absent; fi
# And squashfs only when the base image is one.
if grep -q '^squashfs ' /proc/modules; then squashfs=loaded; else squashfs=absent; fi
echo "PUREBOOT-GUEST serial=$(arg pureboot.serial) hostname=$(cat /etc/hostname 2>/dev/null) machine_id=$(cat /etc/machine-id 2>/dev/null) nfs=${nfs:-none} volumes=${volumes:-none} root_fs=${rootfs:-none} upper=${upper:-none} probe=$probe base_file=$base marks=${marks:-none} ext4=$ext4 squashfs=$squashfs clock=$(date +%s) $vol"
[ "$(arg probe.nfsstats)" = 1 ] && nfs-dump
l=$(arg probe.loop)
if [ -n "$l" ]; then
  mkdir -p "$l"
  n=$(tail -n1 "$l/seq" 2>/dev/null); n=${n:-0}
  echo "PUREBOOT-LOOP dir=$l last=$n"
  until=$(arg probe.until)
  while [ "$(date +%s)" -lt "${until:-0}" ]; do
    n=$((n+1))
    echo "$n" >> "$l/seq" && sync "$l/seq" && echo "PUREBOOT-SEQ n=$n t=$(date +%s) host=$(cat /etc/hostname)"
    sleep 1
  done
  echo u > /proc/sysrq-trigger; sleep 3; sync
  echo "PUREBOOT-LOOP-END n=$n"
fi
poweroff -f
"#;

/// Builds the tiny root in `dir` (created).
pub fn build_tiny_root(busybox: &Path, dir: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| format!("building the tiny root in {}: {e}", dir.display());
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "var", "mnt",
    ] {
        std::fs::create_dir_all(dir.join(d)).map_err(io)?;
    }
    std::fs::copy(busybox, dir.join("bin/busybox")).map_err(io)?;
    for a in APPLETS {
        symlink("busybox", dir.join("bin").join(a)).map_err(io)?;
    }
    write_exec(&dir.join("sbin/init"), INIT_SCRIPT).map_err(io)?;
    write_exec(&dir.join("bin/nfs-dump"), &nfs_dump_script()).map_err(io)?;
    std::fs::write(dir.join("etc/hostname"), "base-image\n").map_err(io)?;
    std::fs::write(dir.join(BASE_FILE), "from the shared base\n").map_err(io)?;
    Ok(())
}

fn write_exec(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// A tarball of `dir` for `pureboot-controller image import` (owners kept numeric).
pub fn tarball(dir: &Path, out: &Path) -> Result<PathBuf, String> {
    process::run(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(dir)
            .arg("-cf")
            .arg(out)
            .arg("."),
    )?;
    Ok(out.to_path_buf())
}

/// The counters' dump as a script of its own, so both roots run the same text.
fn nfs_dump_script() -> String {
    format!(
        "#!/bin/sh\n{}\n{}\n",
        crate::nfs_stats::DUMP_SH,
        crate::guest_cpu::DUMP_SH
    )
}

/// The line the benchmark's Debian root prints once `multi-user.target` is active.
pub const USABLE_MARK: &str = "PUREBOOT-USABLE";
/// The line after it: when systemd says the target became active (µs, CLOCK_MONOTONIC).
pub const TARGET_MARK: &str = "PUREBOOT-TARGET";

/// The benchmark's unit: ordered after `multi-user.target` and wanted by it, so it runs as
/// soon as the target is reached (the Debian root's default is graphical.target, which adds
/// nothing here: no display manager).
const USABLE_UNIT: &str = "[Unit]
Description=pureboot benchmark: multi-user.target reached
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/pureboot-usable
ExecStartPost=/bin/systemctl poweroff --force --force

[Install]
WantedBy=multi-user.target
";

/// After the counters: a cold `ls -lR /usr` (the caches dropped first), in milliseconds.
pub const LSLR_MARK: &str = "PUREBOOT-LSLR";

/// The unit's script: the mark through /dev/kmsg (a kernel timestamp on the console) first,
/// then systemd's own monotonic time of the target and the NFS counters on the console, then
/// the time of a cold `ls -lR /usr` (after the counters, so they are the boot's alone).
fn usable_script() -> String {
    format!(
        "#!/bin/sh\n\
         echo \"{USABLE_MARK} target=multi-user.target\" > /dev/kmsg\n\
         at=$(systemctl show -P ActiveEnterTimestampMonotonic multi-user.target)\n\
         {{ echo \"{TARGET_MARK} active_us=$at\"; {}; {}; }} > /dev/console\n\
         sync; echo 3 > /proc/sys/vm/drop_caches\n\
         s=$(date +%s%N); ls -lR /usr > /dev/null 2>&1; e=$(date +%s%N)\n\
         echo \"{LSLR_MARK} ms=$(( (e - s) / 1000000 ))\" > /dev/console\n",
        crate::nfs_stats::DUMP_SH,
        crate::guest_cpu::DUMP_SH
    )
}

/// Services the Debian root's packages enable that the Debian roots boot without, unless a
/// scenario turns one on: NetworkManager and dhcpcd (each would take over the link pi-init
/// configured; the network hand-over scenarios enable them), containerd (the container scenario starts it
/// itself, and the benchmark measures the boot without it). Left out of the tarballs.
pub const SERVICES_OFF: &[&str] = &[
    "./etc/systemd/system/multi-user.target.wants/NetworkManager.service",
    "./etc/systemd/system/network-online.target.wants/NetworkManager-wait-online.service",
    "./etc/systemd/system/dbus-org.freedesktop.nm-dispatcher.service",
    "./etc/systemd/system/multi-user.target.wants/containerd.service",
    DHCPCD_ON,
];

/// dhcpcd's package enables its service (on every interface); the dhcpcd hand-over
/// scenario keeps it on.
const DHCPCD_ON: &str = "./etc/systemd/system/multi-user.target.wants/dhcpcd.service";

fn exclude_services_off(tar: &mut Command, keep_on: &[&str]) {
    for path in SERVICES_OFF.iter().filter(|p| !keep_on.contains(p)) {
        tar.arg(format!("--exclude={path}"));
    }
}

/// A file a tarball adds to the cached root: its path in the root, its text, executable or not.
#[derive(Debug, Clone)]
pub struct Staged {
    pub rel: &'static str,
    pub text: String,
    pub exec: bool,
}

/// The cached Debian root plus `files` and the `(link, target)` symlinks (units enabled),
/// into `out`, without the Debian root scenario's report unit, without a hostname (the node
/// layer gives one) and without [`SERVICES_OFF`] but those in `keep_on`. The files are
/// staged beside `out`; the cached root itself is left as it is.
fn staged_tarball(
    debian_root: &Path,
    out: &Path,
    files: &[Staged],
    links: &[(&str, &str)],
    keep_on: &[&str],
) -> Result<PathBuf, String> {
    let stage = out.with_extension("stage");
    let io = |e: std::io::Error| format!("staging files in {}: {e}", stage.display());
    for f in files {
        let path = stage.join(f.rel);
        std::fs::create_dir_all(path.parent().expect("a relative path")).map_err(io)?;
        if f.exec {
            write_exec(&path, &f.text).map_err(io)?;
        } else {
            std::fs::write(&path, &f.text).map_err(io)?;
        }
    }
    for (link, target) in links {
        let path = stage.join(link);
        std::fs::create_dir_all(path.parent().expect("a relative path")).map_err(io)?;
        if std::fs::symlink_metadata(&path).is_err() {
            symlink(target, &path).map_err(io)?;
        }
    }
    let mut tar = Command::new("tar");
    tar.args(["--numeric-owner", "--xattrs", "--exclude=./.complete"]);
    exclude_services_off(&mut tar, keep_on);
    tar.arg("--exclude=./etc/hostname")
        .arg("--exclude=./etc/systemd/system/pureboot-report.service")
        .arg("--exclude=./etc/systemd/system/multi-user.target.wants/pureboot-report.service");
    let staged: Vec<String> = files
        .iter()
        .map(|f| f.rel)
        .chain(links.iter().map(|l| l.0))
        .map(|rel| format!("./{rel}"))
        .collect();
    // A staged file replaces the root's own: left out here, appended below (the
    // exclusions would drop them from the same run).
    for rel in &staged {
        tar.arg(format!("--exclude={rel}"));
    }
    process::run(tar.arg("-cf").arg(out).arg("-C").arg(debian_root).arg("."))?;
    // Only the files: their directories are in the root already.
    let mut append = Command::new("tar");
    append
        .args(["--numeric-owner", "-rf"])
        .arg(out)
        .arg("-C")
        .arg(&stage);
    process::run(append.args(&staged))?;
    Ok(out.to_path_buf())
}

/// The cached Debian root as the benchmark boots it, into `out`: the root as debootstrap made
/// it plus the benchmark's unit and script.
pub fn debian_usable_tarball(debian_root: &Path, out: &Path) -> Result<PathBuf, String> {
    let files = [
        Staged {
            rel: "etc/systemd/system/pureboot-usable.service",
            text: USABLE_UNIT.to_string(),
            exec: false,
        },
        Staged {
            rel: "usr/local/sbin/pureboot-usable",
            text: usable_script(),
            exec: true,
        },
    ];
    let links = [(
        "etc/systemd/system/multi-user.target.wants/pureboot-usable.service",
        "/etc/systemd/system/pureboot-usable.service",
    )];
    staged_tarball(debian_root, out, &files, &links, &[])
}

/// The cached Debian root plus `files`, each unit of `wanted` (staged among `files` under
/// etc/systemd/system) wanted by multi-user.target, into `out`; the services of
/// [`SERVICES_OFF`] stay off (a scenario starts one itself).
pub fn debian_tarball_with(
    debian_root: &Path,
    out: &Path,
    files: &[Staged],
    wanted: &[&'static str],
) -> Result<PathBuf, String> {
    let links: Vec<(String, String)> = wanted
        .iter()
        .map(|unit| {
            (
                format!("etc/systemd/system/multi-user.target.wants/{unit}"),
                format!("/etc/systemd/system/{unit}"),
            )
        })
        .collect();
    let links: Vec<(&str, &str)> = links
        .iter()
        .map(|(l, t)| (l.as_str(), t.as_str()))
        .collect();
    staged_tarball(debian_root, out, files, &links, &[])
}

/// The network stack a hand-over scenario turns on in the Debian root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetStack {
    /// systemd-networkd enabled, with the wired `.network` a user writes for it.
    Networkd,
    /// NetworkManager enabled as its package enables it (its own default profile).
    NetworkManager,
    /// ifupdown with the interface in /etc/network/interfaces as Debian's installer writes it.
    Ifupdown,
    /// dhcpcd enabled as its package enables it, with Debian's /etc/dhcpcd.conf.
    Dhcpcd,
}

/// The line the tick loop prints every 5 s: `PUREBOOT-TICK n=<i> up=<uptime s> file=<text
/// of TICK_FILE> addr=<address/prefix,valid lifetime>`.
pub const TICK_MARK: &str = "PUREBOOT-TICK";
/// The root's file every tick reads (over NFS: the tmpfs overlay leaves it in the lower).
pub const TICK_FILE: &str = "etc/pureboot-tick";
/// What [`TICK_FILE`] holds.
pub const TICK_TEXT: &str = "read-from-the-nfs-root";

/// The tick loop: `ticks` lines 5 s apart (at the ninth, what networkd and NetworkManager
/// say of the links and what NetworkManager or dhcpcd logged, as `PUREBOOT-NET` lines),
/// then a forced power-off. A tick that cannot read
/// the root (its NFS server unreachable: a hard mount blocks) never comes.
fn tick_script(ticks: u32) -> String {
    let addr = r"ip -4 -o addr show scope global | sed -n 's/.* inet \([^ ]*\) .*valid_lft \([^ ]*\) .*/\1,\2/p' | head -n1";
    format!(
        "#!/bin/sh\n\
         n=0\n\
         while [ $n -lt {ticks} ]; do\n\
         \x20 a=$({addr})\n\
         \x20 echo \"{TICK_MARK} n=$n up=$(cut -d' ' -f1 /proc/uptime) file=$(cat /{TICK_FILE}) addr=${{a:-none}}\" > /dev/console\n\
         \x20 [ $n = 8 ] && {{ networkctl --no-pager list; networkctl --no-pager status; nmcli -t device; journalctl -b --no-pager -u NetworkManager -u dhcpcd | tail -n 25; }} 2>&1 | sed 's/^/PUREBOOT-NET /' > /dev/console\n\
         \x20 n=$((n + 1))\n\
         \x20 sleep 5\n\
         done\n\
         systemctl poweroff --force --force\n"
    )
}

/// Started as soon as the basic system is up, so the ticks span the network stack's start.
const TICK_UNIT: &str = "[Unit]
Description=pureboot network hand-over: a line every 5 s read from the NFS root
After=basic.target

[Service]
ExecStart=/usr/local/sbin/pureboot-tick

[Install]
WantedBy=multi-user.target
";

/// What Debian's installer writes for a wired interface taking DHCP.
pub const DEBIAN_INTERFACES: &str =
    "# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug eth0
iface eth0 inet dhcp
";

/// The wired `.network` the Debian wiki has a user write to turn systemd-networkd on.
pub const USER_NETWORKD_FILE: &str = "[Match]
Name=e*

[Network]
DHCP=ipv4
";

/// The cached Debian root with `stack` turned on and the tick loop (`ticks` lines), into
/// `out`. Each stack's tarball is its own; the cached root is left as it is.
pub fn debian_stack_tarball(
    debian_root: &Path,
    out: &Path,
    stack: NetStack,
    ticks: u32,
) -> Result<PathBuf, String> {
    let staged = |rel, text: &str, exec| Staged {
        rel,
        text: text.to_string(),
        exec,
    };
    let mut files = vec![
        staged("etc/systemd/system/pureboot-tick.service", TICK_UNIT, false),
        staged("usr/local/sbin/pureboot-tick", &tick_script(ticks), true),
        staged(TICK_FILE, &format!("{TICK_TEXT}\n"), false),
    ];
    let mut links = vec![(
        "etc/systemd/system/multi-user.target.wants/pureboot-tick.service",
        "/etc/systemd/system/pureboot-tick.service",
    )];
    let mut keep_on: &[&str] = &[];
    match stack {
        NetStack::Networkd => {
            files.push(staged(
                "etc/systemd/network/20-wired.network",
                USER_NETWORKD_FILE,
                false,
            ));
            links.extend([
                (
                    "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
                    "/lib/systemd/system/systemd-networkd.service",
                ),
                (
                    "etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
                    "/lib/systemd/system/systemd-networkd.socket",
                ),
            ]);
        }
        NetStack::NetworkManager => keep_on = &SERVICES_OFF[..3],
        NetStack::Ifupdown => {
            files.push(staged("etc/network/interfaces", DEBIAN_INTERFACES, false))
        }
        NetStack::Dhcpcd => keep_on = &[DHCPCD_ON],
    }
    staged_tarball(debian_root, out, &files, &links, keep_on)
}

/// The unit the Debian root scenario adds to the root: reports hostname and machine-id (both
/// from the controller's node layer) on the console, then powers off at once.
pub const DEBIAN_REPORT_UNIT: &str = "[Unit]
Description=pureboot virtual Pi report
After=basic.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo \"PUREBOOT-GUEST hostname=$(cat /etc/hostname) machine_id=$(cat /etc/machine-id) init=$(readlink /proc/1/exe)\" > /dev/console'
ExecStartPost=/bin/systemctl poweroff --force --force

[Install]
WantedBy=multi-user.target
";

/// A tarball of the cached Debian root plus the report unit, built once into the cache.
pub fn debian_tarball(debian_root: &Path, cache: &Path) -> Result<PathBuf, String> {
    let out = cache.join("debian-root-report.tar");
    if out.exists() {
        return Ok(out);
    }
    let unit = debian_root.join("etc/systemd/system/pureboot-report.service");
    std::fs::write(&unit, DEBIAN_REPORT_UNIT).map_err(|e| format!("{}: {e}", unit.display()))?;
    let wants = debian_root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).map_err(|e| e.to_string())?;
    let link = wants.join("pureboot-report.service");
    if std::fs::symlink_metadata(&link).is_err() {
        symlink("/etc/systemd/system/pureboot-report.service", &link).map_err(|e| e.to_string())?;
    }
    // The node layer supplies hostname and machine-id: the base's own must not win.
    let _ = std::fs::remove_file(debian_root.join("etc/hostname"));
    let tmp = out.with_extension("tar.tmp");
    let mut tar = Command::new("tar");
    tar.args(["--numeric-owner", "--xattrs", "--exclude=./.complete"]);
    exclude_services_off(&mut tar, &[]);
    process::run(tar.arg("-C").arg(debian_root).arg("-cf").arg(&tmp).arg("."))?;
    std::fs::rename(&tmp, &out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_script_is_valid_shell() {
        let dir = crate::workdir::WorkDir::new("guest-root-test").unwrap();
        let f = dir.join("init");
        std::fs::write(&f, INIT_SCRIPT).unwrap();
        process::run(Command::new("sh").arg("-n").arg(&f)).unwrap();
    }

    #[test]
    fn usable_and_dump_scripts_are_valid_shell() {
        let dir = crate::workdir::WorkDir::new("guest-root-test").unwrap();
        for (name, text) in [("usable", usable_script()), ("dump", nfs_dump_script())] {
            let f = dir.join(name);
            std::fs::write(&f, text).unwrap();
            process::run(Command::new("sh").arg("-n").arg(&f)).unwrap();
        }
        assert!(usable_script().contains(USABLE_MARK));
        let f = dir.join("tick");
        std::fs::write(&f, tick_script(3)).unwrap();
        process::run(Command::new("sh").arg("-n").arg(&f)).unwrap();
        assert!(USABLE_UNIT.contains("After=multi-user.target"));
    }

    #[test]
    fn tiny_root_has_init_applets_and_base_file() {
        let dir = crate::workdir::WorkDir::new("guest-root-test").unwrap();
        // Any file stands in for busybox: the layout is what is checked here.
        build_tiny_root(Path::new("/bin/sh"), &dir.join("root")).unwrap();
        let root = dir.join("root");
        let mode = std::fs::metadata(root.join("sbin/init"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "init executable");
        assert_eq!(
            std::fs::read_link(root.join("bin/poweroff")).unwrap(),
            Path::new("busybox")
        );
        assert!(root.join(BASE_FILE).is_file());
        assert!(root.join("bin/nfs-dump").is_file());
        let tar = tarball(&root, &dir.join("root.tar")).unwrap();
        let list = process::run(Command::new("tar").arg("-tf").arg(&tar)).unwrap();
        assert!(list.lines().any(|l| l == "./sbin/init"), "{list}");
    }
}
