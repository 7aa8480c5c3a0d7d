//! The new root: an overlay of the node layer (`nodes/<serial>/upper`) over the base image,
//! with the writable layer the mode asks for:
//! `tmpfs` (default), `image` (the node's ext4 `persist.img` on a loop device), `nfs` (upper on
//! NFS; refused by common kernels, then tmpfs and a recorded degradation), `none` (read-only).
//! The shared base is only ever a lower layer or a read-only bind: never written.
//!
//! The lower layers come resolved (`lower.rs`: the export's layout, the base image chosen and
//! mounted); this step only mounts the writable layer and the overlay.

use super::lower::{Lower, LowerError};
use super::squashfs::SquashfsError;
use crate::decide::cmdline::{OverlayMode, RootLayout};
use crate::sys::{MountArgs, Sys};
use nix::errno::Errno;
use nix::mount::MsFlags;
use pureboot_contract::layout::{HOSTNAME_FILE, MACHINE_ID_FILE, UPPER_DIR, WORK_DIR};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where things are mounted (the initramfs' `/mnt/...`; temporary directories in tests).
#[derive(Debug, Clone)]
pub struct Paths {
    /// The NFS export (or plain root).
    pub nfs: PathBuf,
    /// The base image's own mount (see `base_mount`).
    pub base: PathBuf,
    /// A squashfs base image's mount (see `squashfs`).
    pub squash: PathBuf,
    /// The writable layer's filesystem (tmpfs or the loop-mounted image).
    pub rw: PathBuf,
    /// The assembled root.
    pub newroot: PathBuf,
}

impl Paths {
    pub fn under(dir: &Path) -> Self {
        Paths {
            nfs: dir.join("nfs"),
            base: dir.join("base"),
            squash: dir.join("squash"),
            rw: dir.join("rw"),
            newroot: dir.join("root"),
        }
    }
}

#[derive(Clone)]
pub struct Request<'a> {
    pub mode: OverlayMode,
    /// The layers below the writable one, resolved.
    pub lower: &'a Lower,
    pub hostname: &'a str,
    pub machine_id: &'a str,
    /// `server:path`, for messages.
    pub export: &'a str,
    /// The persist image's file in the node's directory (the answer's generation).
    pub persist_image: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// The mode actually used (after any fallback).
    pub mode: OverlayMode,
    pub layout: RootLayout,
    pub base_image: Option<String>,
    /// Why `mode` is not the one asked for, when it is not.
    pub fallback: Option<String>,
}

/// Why the new root could not be assembled.
#[derive(Debug)]
pub enum OverlayError {
    /// The lower layers could not be resolved.
    Lower(LowerError),
    /// The squashfs base image could not be mounted.
    Squashfs(SquashfsError),
    Mkdir(PathBuf, io::Error),
    Write(PathBuf, io::Error),
    Mount(MountArgs, Errno),
    LoopDevice(PathBuf, Errno),
    NotUtf8(PathBuf),
    /// A layer's path holds `:` or `,`, which overlayfs' options would need escaped.
    Separator(String),
}

impl fmt::Display for OverlayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverlayError::Lower(e) => e.fmt(f),
            OverlayError::Squashfs(e) => e.fmt(f),
            OverlayError::Mkdir(p, e) => write!(f, "mkdir {}: {e}", p.display()),
            OverlayError::Write(p, e) => write!(f, "write {}: {e}", p.display()),
            OverlayError::Mount(m, e) => write!(f, "{m}: {e} ({})", e.desc()),
            OverlayError::LoopDevice(p, e) => write!(f, "loop device for {}: {e}", p.display()),
            OverlayError::NotUtf8(p) => write!(f, "{} is not UTF-8", p.display()),
            OverlayError::Separator(s) => write!(f, "overlay path {s:?} contains ':' or ','"),
        }
    }
}

impl std::error::Error for OverlayError {}

impl From<SquashfsError> for OverlayError {
    fn from(e: SquashfsError) -> Self {
        OverlayError::Squashfs(e)
    }
}

impl From<LowerError> for OverlayError {
    fn from(e: LowerError) -> Self {
        OverlayError::Lower(e)
    }
}

/// `lowerdir=a:b[,upperdir=u,workdir=w]`. Paths holding `:` or `,` would need escaping; none
/// of ours can (serials are hex, image names are checked), so they are refused.
pub fn overlay_options(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> Result<String, OverlayError> {
    let all = lowers
        .iter()
        .map(PathBuf::as_path)
        .chain(upper.into_iter().flat_map(|(u, w)| [u, w]));
    for p in all {
        let s = p.to_str().ok_or_else(|| OverlayError::NotUtf8(p.into()))?;
        if s.contains([':', ',']) {
            return Err(OverlayError::Separator(s.into()));
        }
    }
    let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let mut o = format!("lowerdir={}", lower.join(":"));
    if let Some((u, w)) = upper {
        o += &format!(",upperdir={},workdir={}", u.display(), w.display());
    }
    Ok(o)
}

fn mkdirs(p: &Path) -> Result<(), OverlayError> {
    fs::create_dir_all(p).map_err(|e| OverlayError::Mkdir(p.into(), e))
}

fn mount(sys: &dyn Sys, m: MountArgs) -> Result<(), OverlayError> {
    sys.mount(&m).map_err(|e| OverlayError::Mount(m, e))
}

/// Write hostname and machine-id into the writable layer, keeping any already there (a
/// persistent image keeps its own).
fn write_identity(upper: &Path, hostname: &str, machine_id: &str) -> Result<(), OverlayError> {
    for (file, value) in [(HOSTNAME_FILE, hostname), (MACHINE_ID_FILE, machine_id)] {
        let p = upper.join(file);
        if let Some(dir) = p.parent() {
            mkdirs(dir)?;
        }
        if !p.exists() {
            fs::write(&p, format!("{value}\n")).map_err(|e| OverlayError::Write(p, e))?;
        }
    }
    Ok(())
}

/// Writable layer on a fresh tmpfs: (upper, work).
fn tmpfs_layer(sys: &dyn Sys, paths: &Paths) -> Result<(PathBuf, PathBuf), OverlayError> {
    mkdirs(&paths.rw)?;
    mount(
        sys,
        MountArgs::new("tmpfs", &paths.rw, "tmpfs", MsFlags::empty(), "mode=0755"),
    )?;
    upper_and_work(&paths.rw)
}

fn upper_and_work(root: &Path) -> Result<(PathBuf, PathBuf), OverlayError> {
    let (u, w) = (root.join(UPPER_DIR), root.join(WORK_DIR));
    mkdirs(&u)?;
    mkdirs(&w)?;
    Ok((u, w))
}

/// Writable layer inside the node's ext4 image.
fn image_layer(
    sys: &dyn Sys,
    paths: &Paths,
    img: &Path,
) -> Result<(PathBuf, PathBuf), OverlayError> {
    let dev = sys
        .loop_attach(img, false)
        .map_err(|e| OverlayError::LoopDevice(img.into(), e))?;
    mkdirs(&paths.rw)?;
    let dev_path = dev.path.display().to_string();
    mount(
        sys,
        MountArgs::new(&dev_path, &paths.rw, "ext4", MsFlags::empty(), ""),
    )?;
    drop(dev); // the mount holds the device now
    upper_and_work(&paths.rw)
}

/// Something did not go as asked but the boot goes on: logged, and kept for the controller.
fn degrade(degraded: &mut Vec<String>, what: String) {
    log::warn!("degraded: {what}");
    degraded.push(what);
}

/// A mode given up for tmpfs: degraded, and `why` kept as the outcome's fallback.
fn fall_back(degraded: &mut Vec<String>, why: &mut Option<String>, what: String) {
    *why = Some(what.clone());
    degrade(degraded, what);
}

/// Mount the writable layer and the overlay at `paths.newroot`; what did not go as asked is
/// added to `degraded`.
pub fn assemble(
    sys: &dyn Sys,
    paths: &Paths,
    req: &Request,
    degraded: &mut Vec<String>,
) -> Result<Assembled, OverlayError> {
    let Lower {
        layout,
        base,
        base_image,
        node_dir,
    } = req.lower.clone();
    let node_upper = node_dir
        .as_ref()
        .map(|d| d.join(UPPER_DIR))
        .filter(|u| u.is_dir());
    let machine_id = req.machine_id;
    mkdirs(&paths.newroot)?;

    let mut mode = req.mode;
    let mut fallback = None;
    if node_dir.is_none() && matches!(mode, OverlayMode::Image | OverlayMode::Nfs) {
        fall_back(degraded, &mut fallback, format!(
            "overlay {} needs a pureboot export tree (nodes/<serial>/); {} is a plain root: using tmpfs",
            mode.as_str(),
            req.export
        ));
        mode = OverlayMode::Tmpfs;
    }
    if mode == OverlayMode::Nfs {
        let node = node_dir.as_ref().expect("tree layout checked above");
        match nfs_upper(sys, paths, node, &base, req.hostname, machine_id) {
            Ok(()) => {
                return Ok(Assembled {
                    mode,
                    layout,
                    base_image,
                    fallback,
                })
            }
            Err(e) => {
                fall_back(
                    degraded,
                    &mut fallback,
                    format!("overlay upper on NFS refused ({e}); using tmpfs"),
                );
                mode = OverlayMode::Tmpfs;
            }
        }
    }

    let lowers: Vec<PathBuf> = node_upper.iter().cloned().chain([base.clone()]).collect();
    if mode == OverlayMode::None {
        if lowers.len() >= 2 {
            let o = overlay_options(&lowers, None)?;
            mount(
                sys,
                MountArgs::new("overlay", &paths.newroot, "overlay", MsFlags::MS_RDONLY, &o),
            )?;
        } else {
            degrade(
                degraded,
                "overlay none without a node layer: hostname and machine-id come from the base"
                    .into(),
            );
            let src = base.display().to_string();
            mount(
                sys,
                MountArgs::new(
                    &src,
                    &paths.newroot,
                    "",
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    "",
                ),
            )?;
            let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(sys, MountArgs::new("", &paths.newroot, "", ro, ""))?;
        }
        return Ok(Assembled {
            mode,
            layout,
            base_image,
            fallback,
        });
    }

    let (upper, work) = match mode {
        OverlayMode::Image => {
            let img = node_dir
                .as_ref()
                .expect("tree layout checked above")
                .join(req.persist_image);
            match image_layer(sys, paths, &img) {
                Ok(uw) => uw,
                Err(e) => {
                    fall_back(
                        degraded,
                        &mut fallback,
                        format!(
                            "overlay image unavailable ({e}); using tmpfs, writes will not persist"
                        ),
                    );
                    mode = OverlayMode::Tmpfs;
                    tmpfs_layer(sys, paths)?
                }
            }
        }
        _ => tmpfs_layer(sys, paths)?,
    };
    if node_upper.is_none() {
        write_identity(&upper, req.hostname, machine_id)?;
    }
    let o = overlay_options(&lowers, Some((&upper, &work)))?;
    mount(
        sys,
        MountArgs::new("overlay", &paths.newroot, "overlay", MsFlags::empty(), &o),
    )?;
    Ok(Assembled {
        mode,
        layout,
        base_image,
        fallback,
    })
}

/// Mode nfs: the node directory on NFS is the upper layer.
fn nfs_upper(
    sys: &dyn Sys,
    paths: &Paths,
    node: &Path,
    base: &Path,
    hostname: &str,
    mid: &str,
) -> Result<(), OverlayError> {
    let (upper, work) = upper_and_work(node)?;
    write_identity(&upper, hostname, mid)?;
    let o = overlay_options(&[base.to_path_buf()], Some((&upper, &work)))?;
    mount(
        sys,
        MountArgs::new("overlay", &paths.newroot, "overlay", MsFlags::empty(), &o),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::lower::{self, Want};
    use crate::support::testutil::TempDir;
    use crate::sys::fake::{Call, FakeSys};
    use nix::errno::Errno;
    use pureboot_contract::ids::{ImageName, Serial};
    use pureboot_contract::layout::PERSIST_IMAGE;

    /// An export tree: base/bookworm (+ base/trixie when `two`), node layer when `node`.
    fn tree(node: bool, two: bool) -> (TempDir, Paths) {
        let d = TempDir::new();
        let p = Paths::under(d.path());
        fs::create_dir_all(p.nfs.join("base/bookworm/etc")).unwrap();
        fs::write(p.nfs.join("base/bookworm/etc/hostname"), "base\n").unwrap();
        if two {
            fs::create_dir_all(p.nfs.join("base/trixie")).unwrap();
        }
        if node {
            fs::create_dir_all(p.nfs.join("nodes/d83add36/upper/etc")).unwrap();
        }
        (d, p)
    }

    const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";

    /// What the boot asks for, as the tests vary it.
    struct Q {
        mode: OverlayMode,
        layout: Option<RootLayout>,
        serial: Option<Serial>,
        base_image: Option<ImageName>,
        /// The base's own mount, when it has one.
        own: Option<PathBuf>,
    }

    fn req(mode: OverlayMode, base: Option<&str>) -> Q {
        Q {
            mode,
            layout: Some(RootLayout::Tree),
            serial: Some(Serial::parse("d83add36").unwrap()),
            base_image: base.map(|b| ImageName::parse(b).unwrap()),
            own: None,
        }
    }

    /// What the boot collects besides the mounts.
    struct Report {
        degradations: Vec<String>,
    }

    impl Report {
        fn new() -> Self {
            Report {
                degradations: Vec::new(),
            }
        }
    }

    /// The lower layers resolved as the boot resolves them, then the overlay step.
    fn assemble(
        sys: &FakeSys,
        p: &Paths,
        q: &Q,
        r: &mut Report,
    ) -> Result<Assembled, OverlayError> {
        let export = "10.0.2.2:/srv/nfs";
        let want = Want {
            layout: q.layout,
            init: None,
            serial: q.serial.as_ref(),
            base_image: q.base_image.as_ref(),
            export,
        };
        let mut lower = lower::resolve(&p.nfs, &want, None)?;
        if let Some(own) = &q.own {
            lower.base = own.clone();
        }
        let req = Request {
            mode: q.mode,
            lower: &lower,
            hostname: "pi-d83add36",
            machine_id: MACHINE_ID,
            export,
            persist_image: PERSIST_IMAGE,
        };
        super::assemble(sys, p, &req, &mut r.degradations)
    }

    fn overlay_data(sys: &FakeSys) -> String {
        sys.mounts()
            .iter()
            .rev()
            .find(|m| m.fstype.as_deref() == Some("overlay"))
            .unwrap()
            .data
            .clone()
            .unwrap()
    }

    #[test]
    fn options_per_shape() {
        let l = [
            PathBuf::from("/mnt/nfs/nodes/a/upper"),
            PathBuf::from("/mnt/nfs/base/b"),
        ];
        assert_eq!(
            overlay_options(&l, Some((Path::new("/mnt/rw/upper"), Path::new("/mnt/rw/work")))).unwrap(),
            "lowerdir=/mnt/nfs/nodes/a/upper:/mnt/nfs/base/b,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work"
        );
        assert_eq!(
            overlay_options(&l[1..], None).unwrap(),
            "lowerdir=/mnt/nfs/base/b"
        );
        assert!(overlay_options(&[PathBuf::from("/a:b")], None).is_err());
        assert!(overlay_options(&[PathBuf::from("/a,b")], None).is_err());
    }

    #[test]
    fn tmpfs_mode_with_node_layer() {
        let (_d, p) = tree(true, false);
        let sys = FakeSys::new();
        let mut r = Report::new();
        let a = assemble(&sys, &p, &req(OverlayMode::Tmpfs, None), &mut r).unwrap();
        assert_eq!(
            a,
            Assembled {
                mode: OverlayMode::Tmpfs,
                layout: RootLayout::Tree,
                base_image: Some("bookworm".into()),
                fallback: None,
            }
        );
        let m = sys.mounts();
        assert_eq!(
            (m[0].fstype.as_deref(), &m[0].target),
            (Some("tmpfs"), &p.rw)
        );
        let n = p.nfs.display();
        let rw = p.rw.display();
        assert_eq!(
            overlay_data(&sys),
            format!("lowerdir={n}/nodes/d83add36/upper:{n}/base/bookworm,upperdir={rw}/upper,workdir={rw}/work")
        );
        assert!(
            !p.rw.join("upper/etc/hostname").exists(),
            "node layer present: nothing written"
        );
        assert!(r.degradations.is_empty());
    }

    #[test]
    fn the_base_comes_from_its_own_mount_or_else_the_export() {
        let (_d, p) = tree(true, false);
        let own = p.base.clone();
        let n = p.nfs.display();
        for (base, lower) in [
            (Some(own.clone()), own.display().to_string()),
            (None, format!("{n}/base/bookworm")),
        ] {
            let sys = FakeSys::new();
            let mut q = req(OverlayMode::Tmpfs, None);
            q.own = base;
            assemble(&sys, &p, &q, &mut Report::new()).unwrap();
            assert!(
                overlay_data(&sys)
                    .starts_with(&format!("lowerdir={n}/nodes/d83add36/upper:{lower},")),
                "{}",
                overlay_data(&sys)
            );
        }
    }

    #[test]
    fn missing_node_layer_writes_identity_into_the_writable_layer_only() {
        let (_d, p) = tree(false, false);
        let sys = FakeSys::new();
        let mut r = Report::new();
        assemble(&sys, &p, &req(OverlayMode::Tmpfs, Some("bookworm")), &mut r).unwrap();
        assert!(
            overlay_data(&sys).starts_with(&format!("lowerdir={}/base/bookworm,", p.nfs.display()))
        );
        assert_eq!(
            fs::read_to_string(p.rw.join("upper/etc/hostname")).unwrap(),
            "pi-d83add36\n"
        );
        let mid = fs::read_to_string(p.rw.join("upper/etc/machine-id")).unwrap();
        assert_eq!(mid, format!("{MACHINE_ID}\n"));
        assert_eq!(
            fs::read_to_string(p.nfs.join("base/bookworm/etc/hostname")).unwrap(),
            "base\n"
        );
        assert!(
            !p.nfs.join("base/bookworm/etc/machine-id").exists(),
            "base never written"
        );
        assert!(
            !p.nfs.join("nodes").exists(),
            "nothing created on NFS in tmpfs mode"
        );
    }

    #[test]
    fn image_mode_uses_the_loop_device_and_falls_back_when_absent() {
        let (_d, p) = tree(true, false);
        let img = p.nfs.join("nodes/d83add36/persist.img");
        fs::write(&img, b"").unwrap();
        let sys = FakeSys::new();
        let mut r = Report::new();
        let a = assemble(&sys, &p, &req(OverlayMode::Image, None), &mut r).unwrap();
        assert_eq!(a.mode, OverlayMode::Image);
        assert!(sys.calls().contains(&Call::LoopAttach(img.clone(), false)));
        let m = sys.mounts();
        assert_eq!(
            (m[0].source.as_deref(), m[0].fstype.as_deref()),
            (Some("/dev/loop7"), Some("ext4"))
        );
        assert!(
            p.rw.join("upper").is_dir() && p.rw.join("work").is_dir(),
            "created on first use"
        );

        // The fake cannot fail a loop attach, but a failing ext4 mount degrades the same way.
        let sys = FakeSys::new();
        sys.script_mounts([Err(Errno::EINVAL)]);
        let mut r = Report::new();
        let a = assemble(&sys, &p, &req(OverlayMode::Image, None), &mut r).unwrap();
        assert_eq!(a.mode, OverlayMode::Tmpfs);
        assert!(
            r.degradations[0].contains("overlay image unavailable"),
            "{:?}",
            r.degradations
        );
    }

    #[test]
    fn nfs_mode_refused_falls_back_to_tmpfs_and_says_so() {
        let (_d, p) = tree(true, false);
        let sys = FakeSys::new();
        sys.script_mounts([Err(Errno::EINVAL)]);
        let mut r = Report::new();
        let a = assemble(&sys, &p, &req(OverlayMode::Nfs, None), &mut r).unwrap();
        assert_eq!(a.mode, OverlayMode::Tmpfs);
        let m = sys.mounts();
        let n = p.nfs.display();
        assert_eq!(
            m[0].data.as_deref().unwrap(),
            format!("lowerdir={n}/base/bookworm,upperdir={n}/nodes/d83add36/upper,workdir={n}/nodes/d83add36/work")
        );
        assert_eq!(m[1].fstype.as_deref(), Some("tmpfs"));
        assert!(overlay_data(&sys).contains(&format!(
            "lowerdir={n}/nodes/d83add36/upper:{n}/base/bookworm"
        )));
        assert_eq!(r.degradations.len(), 1);
        assert!(
            r.degradations[0].contains("refused") && r.degradations[0].contains("EINVAL"),
            "{:?}",
            r.degradations
        );
        // Accepted: one overlay mount, no fallback.
        let sys = FakeSys::new();
        let mut r = Report::new();
        assert_eq!(
            assemble(&sys, &p, &req(OverlayMode::Nfs, None), &mut r)
                .unwrap()
                .mode,
            OverlayMode::Nfs
        );
        assert_eq!(sys.mounts().len(), 1);
    }

    #[test]
    fn none_mode_is_read_only() {
        let (_d, p) = tree(true, false);
        let sys = FakeSys::new();
        let mut r = Report::new();
        assemble(&sys, &p, &req(OverlayMode::None, None), &mut r).unwrap();
        let m = sys.mounts();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].flags, MsFlags::MS_RDONLY);
        assert!(!m[0].data.as_deref().unwrap().contains("upperdir"));

        let (_d, p) = tree(false, false);
        let sys = FakeSys::new();
        let mut r = Report::new();
        assemble(&sys, &p, &req(OverlayMode::None, None), &mut r).unwrap();
        let m = sys.mounts();
        assert_eq!(m[0].flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(m[1]
            .flags
            .contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY));
        assert_eq!(r.degradations.len(), 1);
    }

    #[test]
    fn plain_root_gets_tmpfs_over_the_whole_export() {
        let (_d, p) = tree(false, false);
        let sys = FakeSys::new();
        let mut r = Report::new();
        let mut q = req(OverlayMode::Image, None);
        q.layout = Some(RootLayout::Plain);
        let a = assemble(&sys, &p, &q, &mut r).unwrap();
        assert_eq!(
            a,
            Assembled {
                mode: OverlayMode::Tmpfs,
                layout: RootLayout::Plain,
                base_image: None,
                fallback: Some(r.degradations[0].clone()),
            }
        );
        assert!(overlay_data(&sys).starts_with(&format!("lowerdir={},", p.nfs.display())));
        assert!(r.degradations[0].contains("plain root"));
    }

    /// An export as upstream PureBoot's users have it: a root filesystem, no base/.
    fn plain_export(init: bool) -> (TempDir, Paths) {
        let d = TempDir::new();
        let p = Paths::under(d.path());
        fs::create_dir_all(p.nfs.join("sbin")).unwrap();
        fs::create_dir_all(p.nfs.join("etc")).unwrap();
        if init {
            fs::write(p.nfs.join("sbin/init"), "#!/bin/sh\n").unwrap();
            fs::set_permissions(
                p.nfs.join("sbin/init"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
        (d, p)
    }

    #[test]
    fn an_upstream_style_export_boots_as_the_lower_layer() {
        let (_d, p) = plain_export(true);
        let sys = FakeSys::new();
        let mut r = Report::new();
        let mut q = req(OverlayMode::Tmpfs, None);
        q.layout = None;
        let a = assemble(&sys, &p, &q, &mut r).unwrap();
        assert_eq!((a.mode, a.layout), (OverlayMode::Tmpfs, RootLayout::Plain));
        let rw = p.rw.display();
        assert_eq!(
            overlay_data(&sys),
            format!(
                "lowerdir={},upperdir={rw}/upper,workdir={rw}/work",
                p.nfs.display()
            )
        );
        assert!(r.degradations.is_empty(), "{:?}", r.degradations);
        // The identity goes into the writable layer, never the export.
        assert!(p.rw.join("upper/etc/hostname").is_file());
        assert!(!p.nfs.join("etc/hostname").exists());
    }

    #[test]
    fn a_tree_needs_a_serial() {
        let (_d, p) = tree(true, false);
        let mut q = req(OverlayMode::Tmpfs, None);
        q.serial = None;
        let e = assemble(&FakeSys::new(), &p, &q, &mut Report::new()).unwrap_err();
        assert!(e.to_string().contains("this board has none"), "{e}");
    }
}
