//! The overlay's lower layers, resolved before the overlay step mounts anything on them: what
//! the mounted export is (a pureboot tree with `base/` and `nodes/`, or a plain root
//! filesystem as upstream PureBoot and the kernel's `nfsroot=` serve), which base image
//! (the one named, else the only one), where it is read from (its own cached mount, see
//! `base_mount.rs`, else the export's), and the node's directory.

use super::base_mount;
use super::switch_root::{self, InitError};
use crate::decide::cmdline::RootLayout;
use pureboot_contract::ids::{ImageName, Serial};
use pureboot_contract::layout::ExportLayout;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What the boot asks for below the writable layer.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// None: look at the export (see [`detect_layout`]).
    pub layout: Option<RootLayout>,
    /// The init the new root must hold (`init=`), for recognising a plain root export.
    pub init: Option<&'a str>,
    /// The node's serial; a board without one has no `nodes/<serial>/` in a tree.
    pub serial: Option<&'a Serial>,
    pub base_image: Option<&'a ImageName>,
    /// `server:path`, for messages.
    pub export: &'a str,
}

/// The lower layers, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lower {
    pub layout: RootLayout,
    /// The base's root: its own mount, `base/<image>` in the export's, or the plain export.
    pub base: PathBuf,
    pub base_image: Option<String>,
    /// `nodes/<serial>` in a tree.
    pub node_dir: Option<PathBuf>,
}

/// Why the lower layers cannot be had.
#[derive(Debug)]
pub enum LowerError {
    /// The export has no `base/` and no init: `(export, why no init)`.
    NeitherTreeNorRoot(String, InitError),
    /// A tree keeps nodes by serial and this board has none.
    NoSerial(String),
    ListBase(String, io::Error),
    /// The image named is not there: `(export, image, what is)`.
    NotFound(String, String, Vec<String>),
    /// No image named and not exactly one there: `(export, what is)`.
    NoneNamed(String, Vec<String>),
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".into()
            } else {
                v.join(", ")
            }
        };
        match self {
            LowerError::NeitherTreeNorRoot(x, e) => write!(
                f,
                "{x} is neither a pureboot tree (no base/) nor a root filesystem ({e})"
            ),
            LowerError::NoSerial(x) => write!(
                f,
                "{x} is a pureboot tree, which keeps nodes by serial (nodes/<serial>/), and this board has none"
            ),
            LowerError::ListBase(x, e) => write!(f, "cannot list {x}/base: {e}"),
            LowerError::NotFound(x, n, a) => write!(
                f,
                "base image {n:?} not found at {x}/base/{n} (available: {})",
                list(a)
            ),
            LowerError::NoneNamed(x, a) => write!(
                f,
                "no base image named (controller base_image or pureboot.base_image=) and {x}/base holds {}",
                list(a)
            ),
        }
    }
}

impl std::error::Error for LowerError {}

/// What the mounted export holds: a pureboot tree when it has `base/`, else a root
/// filesystem when its init is there (upstream PureBoot's and the kernel's `nfsroot=`
/// exports), else neither, said with what was looked for.
pub fn detect_layout(
    export_root: &Path,
    init: Option<&str>,
    export: &str,
) -> Result<RootLayout, LowerError> {
    if ExportLayout::new(export_root).base_dir().is_dir() {
        return Ok(RootLayout::Tree);
    }
    match switch_root::find_init(export_root, init) {
        Ok(_) => Ok(RootLayout::Plain),
        Err(e) => Err(LowerError::NeitherTreeNorRoot(export.into(), e)),
    }
}

/// The base image to use: the one named, else the only one there. Never "the first of many".
pub fn choose_base(
    base_dir: &Path,
    named: Option<&ImageName>,
    export: &str,
) -> Result<String, LowerError> {
    let named = named.map(ImageName::as_str);
    let mut available: Vec<String> = fs::read_dir(base_dir)
        .map_err(|e| LowerError::ListBase(export.into(), e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    available.sort();
    match named {
        Some(n) if available.iter().any(|a| a == n) => Ok(n.to_string()),
        Some(n) => Err(LowerError::NotFound(export.into(), n.into(), available)),
        None if available.len() == 1 => Ok(available.remove(0)),
        None => Err(LowerError::NoneNamed(export.into(), available)),
    }
}

/// The lower layers of the export mounted at `export_root`; in a tree the base image is
/// placed by `own` (its own mount) when there is one, else read through the export's mount.
pub fn resolve(
    export_root: &Path,
    want: &Want,
    own: Option<&base_mount::Own>,
) -> Result<Lower, LowerError> {
    let layout = match want.layout {
        Some(l) => l,
        None => {
            let found = detect_layout(export_root, want.init, want.export)?;
            log::info!("export {}: {} found", want.export, found.as_str());
            found
        }
    };
    match layout {
        RootLayout::Tree => {
            let serial = want
                .serial
                .ok_or_else(|| LowerError::NoSerial(want.export.into()))?;
            let export = ExportLayout::new(export_root);
            let image = choose_base(&export.base_dir(), want.base_image, want.export)?;
            let shared = export.base_dir().join(&image);
            let base = match own {
                Some(own) => own.place(&image, shared),
                None => shared,
            };
            Ok(Lower {
                layout,
                base,
                base_image: Some(image),
                node_dir: Some(export.node_dir(serial)),
            })
        }
        RootLayout::Plain => Ok(Lower {
            layout,
            base: export_root.to_path_buf(),
            base_image: None,
            node_dir: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::testutil::TempDir;

    /// An export tree: base/bookworm (+ base/trixie when `two`), the node layer.
    fn tree(two: bool) -> TempDir {
        let d = TempDir::new();
        fs::create_dir_all(d.path().join("base/bookworm/etc")).unwrap();
        if two {
            fs::create_dir_all(d.path().join("base/trixie")).unwrap();
        }
        fs::create_dir_all(d.path().join("nodes/d83add36/upper/etc")).unwrap();
        d
    }

    /// An export as upstream PureBoot's users have it: a root filesystem, no base/.
    fn plain_export(init: bool) -> TempDir {
        let d = TempDir::new();
        fs::create_dir_all(d.path().join("sbin")).unwrap();
        if init {
            fs::write(d.path().join("sbin/init"), "#!/bin/sh\n").unwrap();
            fs::set_permissions(
                d.path().join("sbin/init"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
        d
    }

    #[test]
    fn base_image_choice() {
        let d = tree(true);
        let base = d.path().join("base");
        let name = |n: &str| ImageName::parse(n).unwrap();
        assert_eq!(
            choose_base(&base, Some(&name("trixie")), "s:/x").unwrap(),
            "trixie"
        );
        let e = choose_base(&base, Some(&name("buster")), "10.0.2.2:/srv/nfs")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"buster\" not found at 10.0.2.2:/srv/nfs/base/buster"),
            "{e}"
        );
        assert!(e.contains("bookworm, trixie"), "{e}");
        let e = choose_base(&base, None, "s:/x").unwrap_err().to_string();
        assert!(
            e.contains("no base image named"),
            "never the first of many: {e}"
        );
        let d = tree(false);
        assert_eq!(
            choose_base(&d.path().join("base"), None, "s:/x").unwrap(),
            "bookworm"
        );
        assert!(choose_base(&d.path().join("nope"), None, "s:/x")
            .unwrap_err()
            .to_string()
            .contains("cannot list s:/x/base"));
    }

    #[test]
    fn the_export_says_which_layout_it_is() {
        let d = tree(false);
        assert_eq!(
            detect_layout(d.path(), None, "s:/x").unwrap(),
            RootLayout::Tree
        );
        let d = plain_export(true);
        assert_eq!(
            detect_layout(d.path(), None, "s:/x").unwrap(),
            RootLayout::Plain
        );
        let d = plain_export(false);
        let e = detect_layout(d.path(), None, "s:/x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s:/x is neither a pureboot tree (no base/) nor a root filesystem"),
            "{e}"
        );
    }
}
