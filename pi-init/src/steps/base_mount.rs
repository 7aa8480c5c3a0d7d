//! The base image as its own read-only NFS mount that the client may cache.
//!
//! A base image does not change while nodes use it: the controller's import writes a new
//! directory and renames it into place, refusing a name that exists, and a removal renames it
//! away before deleting it (the running nodes then hold a stale handle whatever they cached).
//! So close-to-open revalidation and 3-60 s attribute timeouts only cost RPCs there: `nocto`
//! and `actimeo=3600` let the client serve what it already read. NFSv3 is tried first because
//! NFSv4 sends one OPEN per open(2) whatever the cache options (a Debian boot: 1254 of its
//! ~3300 RPCs); the export's own version is the fallback. The node's layer stays on the
//! export's mount, uncached.

use crate::decide::cmdline::RootLayout;
use crate::decide::nfs_options::{NfsOptions, NfsOptionsError, NfsVersion};
use crate::decide::plan::NfsTarget;
use crate::steps::nfs::{self, NfsError, NfsWhy, ResolveError};
use crate::steps::rpcbind::MountdError;
use crate::sys::{MountArgs, Sys};
use nix::errno::Errno;
use nix::mount::MsFlags;
use pureboot_contract::ids::ImageName;
use pureboot_contract::layout::BASE_DIR;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The cache options of the base mount unless `pureboot.base_opts=` says otherwise.
pub const DEFAULT_OPTIONS: &str = "nocto,actimeo=3600";

/// How the base image is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BasePlan {
    /// `base/<image>` inside the export's mount, with the export's options.
    Shared,
    /// `<export path>/base/<image>` on a mount of its own.
    Own(OwnMount),
}

/// Each version in turn, each with the export's extra options followed by the cache options
/// (the kernel keeps the last of a kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnMount {
    pub versions: Vec<NfsVersion>,
    pub options: Vec<String>,
}

/// The plan from `pureboot.base_opts=` (`shared`, or options replacing [`DEFAULT_OPTIONS`];
/// a `vers=` there pins the versions), the export's options and the version the export
/// mounted with. A version pinned for the export holds for the base too.
pub fn plan(
    base_opts: Option<&str>,
    export_opts: &NfsOptions,
    export: NfsVersion,
) -> Result<BasePlan, NfsOptionsError> {
    let wanted = base_opts.unwrap_or(DEFAULT_OPTIONS);
    if wanted == "shared" {
        return Ok(BasePlan::Shared);
    }
    let own = NfsOptions::parse(Some(wanted), false)?;
    let versions = if own.pins_versions() {
        own.versions
    } else if export_opts.versions.contains(&NfsVersion::V3) && export != NfsVersion::V3 {
        vec![NfsVersion::V3, export]
    } else {
        vec![export]
    };
    let mut options = export_opts.rest.clone();
    options.extend(own.rest);
    Ok(BasePlan::Own(OwnMount { versions, options }))
}

/// The base's own mount started beside the export's, before the export's version is known:
/// when the answer names the image and the export may be a tree, planned with the version the
/// export tries first. `None`: the base waits for the export's mount.
pub fn early_plan(
    base_opts: Option<&str>,
    layout: Option<RootLayout>,
    export_opts: &NfsOptions,
    image: Option<&ImageName>,
) -> Option<(String, OwnMount)> {
    let image = image?;
    if layout == Some(RootLayout::Plain) {
        return None;
    }
    match plan(base_opts, export_opts, *export_opts.versions.first()?) {
        Ok(BasePlan::Own(own)) => Some((image.as_str().to_string(), own)),
        _ => None,
    }
}

/// Why the base image's own mount failed.
#[derive(Debug)]
pub enum BaseMountError {
    /// The server's name gave no address (only the mount beside the export's resolves it).
    Resolve(ResolveError),
    Mkdir(PathBuf, io::Error),
    Mount(NfsError),
}

impl fmt::Display for BaseMountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseMountError::Resolve(e) => e.fmt(f),
            BaseMountError::Mkdir(p, e) => write!(f, "{}: {e}", p.display()),
            BaseMountError::Mount(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BaseMountError {}

/// What a mount started by [`early_plan`] did.
#[derive(Debug)]
pub struct Early {
    pub image: String,
    /// The versions its plan held, all tried unless one worked.
    pub tried: Vec<NfsVersion>,
    pub result: Result<NfsVersion, BaseMountError>,
}

/// Why the base image has no mount of its own: it is then read through the export's.
#[derive(Debug)]
pub enum NoOwnMount<'a> {
    /// `pureboot.base_opts=` cannot be mounted with.
    Options(&'a NfsOptionsError),
    /// The mount beside the export's failed and no version is left to try.
    Early(&'a str, &'a BaseMountError),
    /// The mount made now failed.
    Failed(BaseMountError),
}

impl fmt::Display for NoOwnMount<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoOwnMount::Options(e) => write!(f, "pureboot.base_opts: {e}"),
            NoOwnMount::Early(image, e) => write!(f, "base {image}: {e}"),
            NoOwnMount::Failed(e) => e.fmt(f),
        }
    }
}

/// Where the base comes from once the export is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Already mounted beside the export's, with this version.
    Mounted(NfsVersion),
    /// Through the export's mount.
    Shared,
    /// A mount of its own now, with these versions.
    Mount(OwnMount),
}

/// What is left for `image`, from the plan made with the export's version and what a mount
/// beside the export's did: only the versions it did not try (the export's, if that fell
/// back), or its error when none is left.
pub fn next<'a>(
    plan: &'a Result<BasePlan, NfsOptionsError>,
    early: Option<&'a Early>,
    image: &str,
) -> Result<Next, NoOwnMount<'a>> {
    let mut own = match plan {
        Ok(BasePlan::Own(own)) => own.clone(),
        Ok(BasePlan::Shared) => return Ok(Next::Shared),
        Err(e) => return Err(NoOwnMount::Options(e)),
    };
    match early.filter(|e| e.image == image) {
        Some(Early { result: Ok(v), .. }) => return Ok(Next::Mounted(*v)),
        Some(Early {
            image,
            tried,
            result: Err(e),
        }) => {
            own.versions.retain(|v| !tried.contains(v));
            if own.versions.is_empty() {
                return Err(NoOwnMount::Early(image, e));
            }
        }
        None => {}
    }
    Ok(Next::Mount(own))
}

/// Whether the v3 attempt needs the server's rpcbind: unless the options name both the NFS and
/// the mount daemon's ports, the kernel asks port 111 for them first.
fn needs_rpcbind(options: &[String]) -> bool {
    let has = |k: &str| options.iter().any(|o| o.starts_with(k));
    !(has("port=") && has("mountport="))
}

/// Where and how the base image's own mount is made: from the export's server, read-only at
/// `at`.
pub struct BaseMount<'a> {
    pub sys: &'a dyn Sys,
    /// The export; the base is `<its path>/base/<image>` on the same server.
    pub target: &'a NfsTarget,
    pub client: Option<Ipv4Addr>,
    pub at: &'a Path,
    pub mountd: Mountd,
}

/// Whether a server's NFSv3 mountd answers, and at which port (`rpcbind::mountd` on a Pi).
pub type Mountd = fn(IpAddr) -> Result<u16, MountdError>;

impl BaseMount<'_> {
    /// Mounts `image` from `server` as `own` says: the version that worked, or every
    /// attempt's error. NFSv3 with a version left to fall back to is tried only when the
    /// server's rpcbind gives mountd's port and that port takes a connection (`mountd`, see
    /// [`crate::steps::rpcbind`]): a firewall that drops port 111 or mountd's (NFSv4 needs
    /// only 2049) would otherwise hold the kernel's v3 attempt for its whole mount timeout.
    pub fn mount(
        &self,
        server: IpAddr,
        image: &str,
        own: &OwnMount,
    ) -> Result<NfsVersion, BaseMountError> {
        let (t, at) = (self.target, self.at);
        std::fs::create_dir_all(at).map_err(|e| BaseMountError::Mkdir(at.into(), e))?;
        let path = format!("{}/{BASE_DIR}/{image}", t.path.trim_end_matches('/'));
        let source = nfs::source(&t.server, server, &path);
        let mut attempts = Vec::new();
        let mut why = None;
        let last = own.versions.len().saturating_sub(1);
        for (i, &v) in own.versions.iter().enumerate() {
            if v == NfsVersion::V3 && i < last && needs_rpcbind(&own.options) {
                if let Err(e) = (self.mountd)(server) {
                    let skipped = NfsWhy::V3Skipped(server, e);
                    ::log::info!("base {image}: {skipped}");
                    why = Some(skipped);
                    attempts.push((v, Errno::EHOSTUNREACH));
                    continue;
                }
            }
            let data = nfs::mount_data(v, server, self.client, &own.options);
            let args = MountArgs::new(&source, at, v.fstype(), MsFlags::MS_RDONLY, &data);
            match self.sys.mount(&args) {
                Ok(()) => return Ok(v),
                Err(e) => attempts.push((v, e)),
            }
        }
        Err(BaseMountError::Mount(NfsError {
            server: t.server.clone(),
            path,
            attempts,
            why,
        }))
    }

    /// The mount started beside the export's, before the export's server address is known:
    /// the server resolved, then [`BaseMount::mount`].
    pub fn mount_beside(&self, image: &str, own: &OwnMount) -> Result<NfsVersion, BaseMountError> {
        let server = nfs::resolve(&self.target.server).map_err(BaseMountError::Resolve)?;
        self.mount(server, image, own)
    }
}

/// The base image's own mount once the export is mounted: what was planned with the
/// export's version and what the mount beside it did.
pub struct Own<'a> {
    pub base: &'a BaseMount<'a>,
    /// The export's server, as its mount reached it.
    pub server: IpAddr,
    pub plan: &'a Result<BasePlan, NfsOptionsError>,
    pub early: Option<&'a Early>,
}

impl Own<'_> {
    /// Where `image` is read from: its own mount (made now unless made beside the export's),
    /// or `shared`, its directory in the export's mount, when it has none or that fails.
    pub fn place(&self, image: &str, shared: PathBuf) -> PathBuf {
        match self.mount(image) {
            Ok(true) => self.base.at.to_path_buf(),
            Ok(false) => shared,
            Err(e) => {
                ::log::warn!("{e}; reading base/{image} through the export's mount");
                shared
            }
        }
    }

    /// Mounts `image` as planned: true when it has its own mount, false when it is shared.
    fn mount(&self, image: &str) -> Result<bool, NoOwnMount<'_>> {
        match next(self.plan, self.early, image)? {
            Next::Shared => Ok(false),
            Next::Mounted(v) => {
                ::log::info!(
                    "base {image}: own mount, NFS v{} (beside the export's)",
                    v.as_str()
                );
                Ok(true)
            }
            Next::Mount(own) => {
                if let Some(Early { result: Err(e), .. }) = self.early.filter(|e| e.image == image)
                {
                    ::log::info!("base {image}: {e}; now NFS v{}", own.versions[0].as_str());
                }
                let v = (self.base.mount(self.server, image, &own)).map_err(NoOwnMount::Failed)?;
                ::log::info!("base {image}: own mount, NFS v{}", v.as_str());
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::cmdline::RootLayout;
    use crate::sys::fake::FakeSys;
    use nix::errno::Errno;
    use NfsVersion::*;

    fn own(versions: &[NfsVersion], options: &[&str]) -> BasePlan {
        BasePlan::Own(mount_of(versions, options))
    }

    fn mount_of(versions: &[NfsVersion], options: &[&str]) -> OwnMount {
        OwnMount {
            versions: versions.to_vec(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// pureboot.base_opts=, export options, root=nfs4:, the export's version, then the plan.
    type PlanCase<'a> = (Option<&'a str>, Option<&'a str>, bool, NfsVersion, BasePlan);

    #[test]
    fn the_plan_per_override_and_export() {
        let cases: &[PlanCase] = &[
            (
                None,
                None,
                false,
                V4_2,
                own(&[V3, V4_2], &["nocto", "actimeo=3600"]),
            ),
            (
                None,
                None,
                false,
                V3,
                own(&[V3], &["nocto", "actimeo=3600"]),
            ),
            (
                None,
                Some("port=2049,mountport=20048"),
                false,
                V4_1,
                own(
                    &[V3, V4_1],
                    &["port=2049", "mountport=20048", "nocto", "actimeo=3600"],
                ),
            ),
            // The export pinned to v4 (options or root=nfs4:): so is the base.
            (
                None,
                Some("vers=4.2"),
                false,
                V4_2,
                own(&[V4_2], &["nocto", "actimeo=3600"]),
            ),
            (
                None,
                None,
                true,
                V4_1,
                own(&[V4_1], &["nocto", "actimeo=3600"]),
            ),
            (Some("shared"), None, false, V4_2, BasePlan::Shared),
            (
                Some("actimeo=60"),
                None,
                false,
                V4_2,
                own(&[V3, V4_2], &["actimeo=60"]),
            ),
            (
                Some("vers=4.2,nocto"),
                None,
                false,
                V3,
                own(&[V4_2], &["nocto"]),
            ),
        ];
        for (i, (base, export, v4, ver, want)) in cases.iter().enumerate() {
            let export = NfsOptions::parse(*export, *v4).unwrap();
            assert_eq!(plan(*base, &export, *ver).unwrap(), *want, "test[{i}]");
        }
        let none = NfsOptions::parse(None, false).unwrap();
        assert!(plan(Some("vers=2"), &none, V4_2).is_err());
    }

    #[test]
    fn the_early_plan_needs_a_named_image_and_maybe_a_tree() {
        let image = ImageName::parse("tiny").unwrap();
        let tree = Some(RootLayout::Tree);
        let any = NfsOptions::parse(None, false).unwrap();
        let got = early_plan(None, tree, &any, Some(&image)).unwrap();
        assert_eq!(got.0, "tiny");
        assert_eq!(got.1, mount_of(&[V3, V4_2], &["nocto", "actimeo=3600"]));
        assert_eq!(early_plan(None, tree, &any, None), None, "no image named");
        assert_eq!(early_plan(Some("shared"), tree, &any, Some(&image)), None);
        let v41 = NfsOptions::parse(Some("vers=4.1"), false).unwrap();
        assert_eq!(
            early_plan(None, tree, &v41, Some(&image))
                .unwrap()
                .1
                .versions,
            [V4_1]
        );
        let plain = Some(RootLayout::Plain);
        assert_eq!(
            early_plan(None, plain, &any, Some(&image)),
            None,
            "a plain root"
        );
    }

    /// The plan made with the export's version, the early mount, the image asked for, what
    /// is left.
    type NextCase = (
        Result<BasePlan, NfsOptionsError>,
        Option<Early>,
        &'static str,
        Result<Next, &'static str>,
    );

    #[test]
    fn what_is_left_after_the_export_is_mounted() {
        let own_plan = |v: &[NfsVersion]| Ok(own(v, &["nocto"]));
        // The early mount's error: the kernel refused v3.
        let refused = || {
            BaseMountError::Mount(NfsError {
                server: "10.0.2.2".into(),
                path: "/srv/nfs/base/tiny".into(),
                attempts: vec![(V3, Errno::EACCES)],
                why: None,
            })
        };
        let early = |tried: &[NfsVersion], result: Result<NfsVersion, ()>| Early {
            image: "tiny".into(),
            tried: tried.to_vec(),
            result: result.map_err(|()| refused()),
        };
        let mount = |v: &[NfsVersion]| Ok(Next::Mount(mount_of(v, &["nocto"])));
        let cases: Vec<NextCase> = vec![
            (own_plan(&[V3, V4_2]), None, "tiny", mount(&[V3, V4_2])),
            (
                own_plan(&[V3, V4_2]),
                Some(early(&[V3, V4_2], Ok(V3))),
                "tiny",
                Ok(Next::Mounted(V3)),
            ),
            // Another image than the one mounted early: its own mount.
            (
                own_plan(&[V3, V4_2]),
                Some(early(&[V3, V4_2], Ok(V3))),
                "other",
                mount(&[V3, V4_2]),
            ),
            // The export fell back to v4.1: only v4.1 is new.
            (
                own_plan(&[V3, V4_1]),
                Some(early(&[V3, V4_2], Err(()))),
                "tiny",
                mount(&[V4_1]),
            ),
            // Nothing new to try: the early error.
            (
                own_plan(&[V3, V4_2]),
                Some(early(&[V3, V4_2], Err(()))),
                "tiny",
                Err("base tiny: NFS mount of 10.0.2.2:/srv/nfs/base/tiny failed: v3: EACCES: Permission denied (Permission denied)"),
            ),
            (Ok(BasePlan::Shared), None, "tiny", Ok(Next::Shared)),
            (
                Err(NfsOptionsError::UnsupportedVersion("2".into())),
                None,
                "tiny",
                Err("pureboot.base_opts: NFS version \"2\" is not supported (4, 4.2, 4.1, 4.0, 3)"),
            ),
        ];
        for (i, (plan, early, image, want)) in cases.iter().enumerate() {
            let got = next(plan, early.as_ref(), image).map_err(|e| e.to_string());
            assert_eq!(got, want.clone().map_err(String::from), "test[{i}]");
        }
    }

    /// A server whose mountd answers at 20048.
    fn registered(_: IpAddr) -> Result<u16, MountdError> {
        Ok(20048)
    }

    /// The base image `tiny` of [`target`] mounted at `at` from 10.0.2.2.
    fn mount(
        sys: &FakeSys,
        at: &Path,
        own: &OwnMount,
        mountd: Mountd,
    ) -> Result<NfsVersion, BaseMountError> {
        let t = target();
        let base = BaseMount {
            sys,
            target: &t,
            client: None,
            at,
            mountd,
        };
        base.mount(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)), "tiny", own)
    }

    fn target() -> NfsTarget {
        NfsTarget {
            server: "10.0.2.2".into(),
            path: "/srv/nfs/".into(),
            options: None,
            v4_only: false,
            layout: Some(RootLayout::Tree),
        }
    }

    #[test]
    fn mounts_read_only_and_falls_back_to_the_next_version() {
        let d = crate::support::testutil::TempDir::new();
        let at = d.path().join("base");
        let sys = FakeSys::new();
        sys.script_mounts([Err(Errno::ECONNREFUSED)]);
        let own = mount_of(&[V3, V4_2], &["nocto"]);
        let v = mount(&sys, &at, &own, registered);
        assert_eq!(v.unwrap(), V4_2);
        let m = sys.mounts();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].source.as_deref(), Some("10.0.2.2:/srv/nfs/base/tiny"));
        assert_eq!(
            m[0].data.as_deref(),
            Some("vers=3,nolock,proto=tcp,mountproto=tcp,addr=10.0.2.2,nocto")
        );
        assert_eq!(m[1].data.as_deref(), Some("vers=4.2,addr=10.0.2.2,nocto"));
        assert!(m
            .iter()
            .all(|m| m.flags == MsFlags::MS_RDONLY && m.target == at));

        let sys = FakeSys::new();
        sys.script_mounts([Err(Errno::ECONNREFUSED), Err(Errno::ENOENT)]);
        let e = mount(&sys, &at, &own, registered).unwrap_err().to_string();
        assert!(
            e.contains("10.0.2.2:/srv/nfs/base/tiny")
                && e.contains("v3: ECONNREFUSED")
                && e.contains("v4.2: ENOENT"),
            "{e}"
        );
    }

    #[test]
    fn v3_is_skipped_when_rpcbind_does_not_answer_and_a_fallback_is_left() {
        let d = crate::support::testutil::TempDir::new();
        let at = d.path().join("base");
        let silent: Mountd = |a| {
            assert_eq!(a, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)));
            let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
            Err(MountdError::Port(20048, timed_out))
        };
        // rpcbind or mountd silent: straight to v4.2, the skip and why in the error.
        let sys = FakeSys::new();
        let own = mount_of(&[V3, V4_2], &["nocto"]);
        assert_eq!(mount(&sys, &at, &own, silent).unwrap(), V4_2);
        let m = sys.mounts();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].data.as_deref(), Some("vers=4.2,addr=10.0.2.2,nocto"));
        let sys = FakeSys::new();
        sys.script_mounts([Err(Errno::ENOENT)]);
        let e = mount(&sys, &at, &own, silent).unwrap_err().to_string();
        assert!(
            e.contains("NFSv3 skipped (10.0.2.2 port 20048: timed out)")
                && e.contains("v3: EHOSTUNREACH"),
            "{e}"
        );
        // v3 pinned (nothing to fall back to), or both ports named: no check, v3 is tried.
        for own in [
            mount_of(&[V3], &["nocto"]),
            mount_of(&[V3, V4_2], &["port=2049", "mountport=20048"]),
        ] {
            let sys = FakeSys::new();
            assert_eq!(mount(&sys, &at, &own, silent).unwrap(), V3);
            assert_eq!(sys.mounts().len(), 1);
        }
    }
}
