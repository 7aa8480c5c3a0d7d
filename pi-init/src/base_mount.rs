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

use crate::cmdline::RootLayout;
use crate::nfs::{self, NfsError, NfsVersion};
use crate::plan::NfsTarget;
use crate::sys::{MountArgs, Sys};
use nix::errno::Errno;
use nix::mount::MsFlags;
use pureboot_contract::ids::ImageName;
use pureboot_contract::layout::BASE_DIR;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

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
/// a `vers=` there pins the versions), the export's extra options and the version the export
/// mounted with. A version pinned for the export holds for the base too.
pub fn plan(
    base_opts: Option<&str>,
    export_opts: Option<&str>,
    v4_only: bool,
    export: NfsVersion,
) -> Result<BasePlan, String> {
    let wanted = base_opts.unwrap_or(DEFAULT_OPTIONS);
    if wanted == "shared" {
        return Ok(BasePlan::Shared);
    }
    let (pinned, own) = nfs::versions_and_options(Some(wanted), false)?;
    let (export_versions, mut options) = nfs::versions_and_options(export_opts, v4_only)?;
    let versions = if pinned.len() < nfs::ALL_VERSIONS.len() {
        pinned
    } else if export_versions.contains(&NfsVersion::V3) && export != NfsVersion::V3 {
        vec![NfsVersion::V3, export]
    } else {
        vec![export]
    };
    options.extend(own);
    Ok(BasePlan::Own(OwnMount { versions, options }))
}

/// The base's own mount started beside the export's, before the export's version is known:
/// when the answer names the image and the export may be a tree, planned with the version the
/// export tries first. `None`: the base waits for the export's mount.
pub fn early_plan(
    base_opts: Option<&str>,
    t: &NfsTarget,
    image: Option<&ImageName>,
) -> Option<(String, OwnMount)> {
    let image = image?;
    if t.layout == Some(RootLayout::Plain) {
        return None;
    }
    let (versions, _) = nfs::versions_and_options(t.options.as_deref(), t.v4_only).ok()?;
    match plan(
        base_opts,
        t.options.as_deref(),
        t.v4_only,
        *versions.first()?,
    ) {
        Ok(BasePlan::Own(own)) => Some((image.as_str().to_string(), own)),
        _ => None,
    }
}

/// What a mount started by [`early_plan`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Early {
    pub image: String,
    /// The versions its plan held, all tried unless one worked.
    pub tried: Vec<NfsVersion>,
    pub result: Result<NfsVersion, String>,
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
pub fn next(
    plan: &Result<BasePlan, String>,
    early: Option<&Early>,
    image: &str,
) -> Result<Next, String> {
    let mut own = match plan {
        Ok(BasePlan::Own(own)) => own.clone(),
        Ok(BasePlan::Shared) => return Ok(Next::Shared),
        Err(e) => return Err(format!("pureboot.base_opts: {e}")),
    };
    match early.filter(|e| e.image == image) {
        Some(Early { result: Ok(v), .. }) => return Ok(Next::Mounted(*v)),
        Some(Early {
            tried,
            result: Err(e),
            ..
        }) => {
            own.versions.retain(|v| !tried.contains(v));
            if own.versions.is_empty() {
                return Err(format!("base {image}: {e}"));
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

/// Mounts `image` of `t` read-only at `at` as `own` says: the version that worked, or every
/// attempt's error. NFSv3 with a version left to fall back to is tried only when the
/// server's rpcbind gives mountd's port and that port takes a connection (`mountd`, see
/// [`crate::rpcbind`]): a firewall that drops port 111 or mountd's (NFSv4 needs only 2049)
/// would otherwise hold the kernel's v3 attempt for its whole mount timeout.
#[allow(clippy::too_many_arguments)]
pub fn mount(
    sys: &dyn Sys,
    t: &NfsTarget,
    server: IpAddr,
    client: Option<Ipv4Addr>,
    image: &str,
    at: &Path,
    own: &OwnMount,
    mountd: fn(IpAddr) -> Result<u16, String>,
) -> Result<NfsVersion, NfsError> {
    let path = format!("{}/{BASE_DIR}/{image}", t.path.trim_end_matches('/'));
    let source = nfs::source(&t.server, server, &path);
    let mut attempts = Vec::new();
    let mut message = None;
    let last = own.versions.len().saturating_sub(1);
    for (i, &v) in own.versions.iter().enumerate() {
        if v == NfsVersion::V3 && i < last && needs_rpcbind(&own.options) {
            if let Err(why) = mountd(server) {
                let why = format!("NFSv3 skipped ({server} {why})");
                ::log::info!("base {image}: {why}");
                message = Some(why);
                attempts.push((v, Errno::EHOSTUNREACH));
                continue;
            }
        }
        let data = nfs::mount_data(v, server, client, &own.options);
        let args = MountArgs::new(&source, at, v.fstype(), MsFlags::MS_RDONLY, &data);
        match sys.mount(&args) {
            Ok(()) => return Ok(v),
            Err(e) => attempts.push((v, e)),
        }
    }
    Err(NfsError {
        server: t.server.clone(),
        path,
        attempts,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::RootLayout;
    use crate::sys::FakeSys;
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
            assert_eq!(plan(*base, *export, *v4, *ver).unwrap(), *want, "test[{i}]");
        }
        assert!(plan(Some("vers=2"), None, false, V4_2).is_err());
    }

    #[test]
    fn the_early_plan_needs_a_named_image_and_maybe_a_tree() {
        let image = ImageName::parse("tiny").unwrap();
        let mut t = target();
        let got = early_plan(None, &t, Some(&image)).unwrap();
        assert_eq!(got.0, "tiny");
        assert_eq!(got.1, mount_of(&[V3, V4_2], &["nocto", "actimeo=3600"]));
        assert_eq!(early_plan(None, &t, None), None, "no image named");
        assert_eq!(early_plan(Some("shared"), &t, Some(&image)), None);
        t.options = Some("vers=4.1".into());
        assert_eq!(
            early_plan(None, &t, Some(&image)).unwrap().1.versions,
            [V4_1]
        );
        t.layout = Some(RootLayout::Plain);
        assert_eq!(early_plan(None, &t, Some(&image)), None, "a plain root");
    }

    /// The plan made with the export's version, the early mount, the image asked for, what
    /// is left.
    type NextCase = (
        Result<BasePlan, String>,
        Option<Early>,
        &'static str,
        Result<Next, String>,
    );

    #[test]
    fn what_is_left_after_the_export_is_mounted() {
        let own_plan = |v: &[NfsVersion]| Ok(own(v, &["nocto"]));
        let early = |tried: &[NfsVersion], result: Result<NfsVersion, &str>| Early {
            image: "tiny".into(),
            tried: tried.to_vec(),
            result: result.map_err(String::from),
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
                Some(early(&[V3, V4_2], Err("v3: EACCES"))),
                "tiny",
                mount(&[V4_1]),
            ),
            // Nothing new to try: the early error.
            (
                own_plan(&[V3, V4_2]),
                Some(early(&[V3, V4_2], Err("v3: EACCES"))),
                "tiny",
                Err("base tiny: v3: EACCES".into()),
            ),
            (Ok(BasePlan::Shared), None, "tiny", Ok(Next::Shared)),
            (
                Err("bad".into()),
                None,
                "tiny",
                Err("pureboot.base_opts: bad".into()),
            ),
        ];
        for (i, (plan, early, image, want)) in cases.iter().enumerate() {
            assert_eq!(next(plan, early.as_ref(), image), *want, "test[{i}]");
        }
    }

    /// A server whose mountd answers at 20048.
    fn registered(_: IpAddr) -> Result<u16, String> {
        Ok(20048)
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
        let d = crate::testutil::TempDir::new();
        let at = d.path().join("base");
        let sys = FakeSys::new();
        sys.script_mounts([Err(Errno::ECONNREFUSED)]);
        let server = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));
        let own = mount_of(&[V3, V4_2], &["nocto"]);
        let v = mount(&sys, &target(), server, None, "tiny", &at, &own, registered);
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
        let e = mount(&sys, &target(), server, None, "tiny", &at, &own, registered)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("10.0.2.2:/srv/nfs/base/tiny")
                && e.contains("v3: ECONNREFUSED")
                && e.contains("v4.2: ENOENT"),
            "{e}"
        );
    }

    #[test]
    fn v3_is_skipped_when_rpcbind_does_not_answer_and_a_fallback_is_left() {
        let d = crate::testutil::TempDir::new();
        let at = d.path().join("base");
        let server = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));
        let silent: fn(IpAddr) -> Result<u16, String> = |a| {
            assert_eq!(a, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)));
            Err("port 20048: connection timed out".into())
        };
        // rpcbind or mountd silent: straight to v4.2, the skip and why in the error.
        let sys = FakeSys::new();
        let own = mount_of(&[V3, V4_2], &["nocto"]);
        assert_eq!(
            mount(&sys, &target(), server, None, "tiny", &at, &own, silent).unwrap(),
            V4_2
        );
        let m = sys.mounts();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].data.as_deref(), Some("vers=4.2,addr=10.0.2.2,nocto"));
        let sys = FakeSys::new();
        sys.script_mounts([Err(Errno::ENOENT)]);
        let e = mount(&sys, &target(), server, None, "tiny", &at, &own, silent)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("NFSv3 skipped (10.0.2.2 port 20048: connection timed out)")
                && e.contains("v3: EHOSTUNREACH"),
            "{e}"
        );
        // v3 pinned (nothing to fall back to), or both ports named: no check, v3 is tried.
        for own in [
            mount_of(&[V3], &["nocto"]),
            mount_of(&[V3, V4_2], &["port=2049", "mountport=20048"]),
        ] {
            let sys = FakeSys::new();
            assert_eq!(
                mount(&sys, &target(), server, None, "tiny", &at, &own, silent).unwrap(),
                V3
            );
            assert_eq!(sys.mounts().len(), 1);
        }
    }
}
