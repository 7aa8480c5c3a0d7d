//! The export's mount beside the controller's request (`plan::early_export`): started once the
//! network is up and the modules are in, kept when the answer's plan names the same mount,
//! undone otherwise, and undone when the attempt ends without it (Drop): the answer wins.

use crate::decide::nfs_options::NfsOptions;
use crate::decide::plan::{EarlyExport, NfsPlan};
use crate::steps::{nfs, overlay};
use crate::support::background::{self, Background, Gate};
use crate::sys::{HostPaths, Sys};
use ::log::{info, warn};
use nix::mount::MntFlags;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::thread::Scope;
use std::time::{Duration, Instant};

/// What the export's mount did (with its options, parsed once) and how long it took.
pub(super) type Mounting = (Result<(nfs::Mounted, NfsOptions), nfs::NfsError>, Duration);

pub(super) struct EarlyMount<'s> {
    export: EarlyExport,
    sys: &'s dyn Sys,
    at: PathBuf,
    mount: Option<Background<'s, Mounting>>,
}

impl<'s> EarlyMount<'s> {
    /// Mount `export` on a thread of `s` once `modules` opens (the loader's work over: NFS and
    /// its client identifier may be modules).
    pub fn start<'env>(
        s: &'s Scope<'s, 'env>,
        sys: &'env dyn Sys,
        paths: &HostPaths,
        sleep: fn(Duration),
        export: EarlyExport,
        client: Ipv4Addr,
        modules: &'env Gate,
    ) -> Self {
        let at = overlay::Paths::under(&paths.mnt()).nfs;
        info!(
            "mounting {}:{} beside the controller's request",
            export.nfs.server, export.nfs.path
        );
        let (e, to, sysfs) = (export.clone(), at.clone(), paths.sysfs());
        let mount = background::start(s, "export-mount", move || {
            modules.wait();
            nfs::name_client(sys, &sysfs, e.hostname.as_str(), e.machine_id.as_str());
            let t = Instant::now();
            let done = NfsOptions::parse(e.nfs.options.as_deref(), e.nfs.v4_only)
                .map_err(|err| nfs::NfsError::options(&e.nfs, err))
                .and_then(|o| {
                    let (retry, mut sleep) = (nfs::RetryPolicy::default(), sleep);
                    nfs::mount(
                        sys,
                        &e.nfs,
                        &o,
                        &to,
                        Some(client),
                        e.read_only,
                        &retry,
                        &mut sleep,
                    )
                    .map(|m| (m, o))
                });
            (done, t.elapsed())
        });
        EarlyMount {
            export,
            sys,
            at,
            mount: Some(mount),
        }
    }

    /// The mount, when `p` boots it (None: undone; `p`'s own is to be made).
    pub fn serving(mut self, p: &NfsPlan) -> Option<Mounting> {
        if !self.export.serves(p) {
            return None;
        }
        self.mount.take().and_then(Background::join)
    }
}

impl Drop for EarlyMount<'_> {
    fn drop(&mut self) {
        let Some(mount) = self.mount.take() else {
            return;
        };
        if let Some((Ok(_), _)) = mount.join() {
            let (server, path) = (&self.export.nfs.server, &self.export.nfs.path);
            info!("undoing the early mount of {server}:{path}: the boot mounts another");
            if let Err(e) = self.sys.umount(&self.at, MntFlags::MNT_DETACH) {
                warn!("umount {}: {e}", self.at.display());
            }
        }
    }
}
