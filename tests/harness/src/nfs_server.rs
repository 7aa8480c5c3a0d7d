//! nfs-ganesha (with the rpcbind it needs) serving one scenario's export root, in the
//! scenario's namespace, on fixed ports. The settings the guests depend on:
//! `Attr_Expiration_Time = 0` (else directories the controller creates after start are not
//! seen), `Dir_Chunk = 0` (else a name the controller replaces, like a fresh persist.img,
//! still resolves to the old file), `Squash = No_Root_Squash`, NLM off, fixed NFS/MNT ports,
//! no grace period.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::Netns;
use crate::process::Daemon;
use crate::wait::wait_until;

pub const NFS_PORT: u16 = 2049;
pub const MNT_PORT: u16 = 20048;

/// Which NFS versions the server offers (`nfsv3_only_server_falls_back` needs a v3-only server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocols {
    V3AndV4,
    V3Only,
}

impl Protocols {
    fn ganesha_list(self) -> &'static str {
        match self {
            Protocols::V3AndV4 => "3, 4",
            Protocols::V3Only => "3",
        }
    }
}

/// The ganesha configuration for one export; `export` is both the path on disk and the
/// pseudo path, so NFSv3 and NFSv4 clients mount the same `<server>:<export>`.
/// `Only_Numeric_Owners`: as the kernel's nfsd does for AUTH_SYS clients. Otherwise ganesha
/// sends owners as `name@domain`, the guest's kernel asks user space (`request-key`) to map
/// each one: a Debian root once hung after basic.target with that upcall waiting on itself
/// (its exec needed a GETATTR whose owner needed mapping), and the failed mappings cost a
/// Debian boot about 6,000 extra GETATTRs (9,456 RPCs in all against 3,289).
pub fn ganesha_config(export: &Path, recovery: &Path, protocols: Protocols) -> String {
    let export = export.display();
    let p = protocols.ganesha_list();
    format!(
        "NFS_CORE_PARAM {{\n  Protocols = {p};\n  NFS_Port = {NFS_PORT};\n  MNT_Port = {MNT_PORT};\n  \
         Enable_NLM = false;\n  Enable_RQUOTA = false;\n}}\n\
         NFSv4 {{\n  Graceless = true;\n  Only_Numeric_Owners = true;\n  RecoveryBackend = fs;\n  RecoveryRoot = {recovery};\n}}\n\
         EXPORT {{\n  Export_Id = 1;\n  Path = {export};\n  Pseudo = {export};\n  Access_Type = RW;\n  \
         Squash = No_Root_Squash;\n  SecType = sys;\n  Protocols = {p};\n  Transports = TCP;\n  \
         Attr_Expiration_Time = 0;\n  FSAL {{\n    Name = VFS;\n  }}\n}}\n\
         MDCACHE {{\n  Dir_Chunk = 0;\n}}\n\
         LOG {{\n  Default_Log_Level = WARN;\n}}\n",
        recovery = recovery.display()
    )
}

pub struct NfsServer {
    // Field order is drop order: ganesha before the rpcbind it registered with.
    ganesha: Daemon,
    _rpcbind: Daemon,
    pub export: PathBuf,
}

impl NfsServer {
    /// Starts rpcbind and ganesha in `ns`, exporting `export`; `dir` holds config and logs.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        export: &Path,
        protocols: Protocols,
    ) -> Result<NfsServer, String> {
        std::fs::create_dir_all(export)
            .map_err(|e| format!("creating {}: {e}", export.display()))?;
        let recovery = dir.join("ganesha-recovery");
        std::fs::create_dir_all(&recovery).map_err(|e| e.to_string())?;
        let conf = dir.join("ganesha.conf");
        std::fs::write(&conf, ganesha_config(export, &recovery, protocols))
            .map_err(|e| format!("writing {}: {e}", conf.display()))?;

        let mut cmd = ns.command("rpcbind");
        cmd.args(["-f", "-w"]);
        let rpcbind =
            Daemon::spawn("rpcbind", cmd, &dir.join("rpcbind.log")).map_err(|e| e.to_string())?;
        wait_until(Duration::from_secs(10), || ns.tcp_listening(111))
            .map_err(|_| format!("rpcbind did not listen on 111:\n{}", rpcbind.log_tail(20)))?;

        let mut cmd = ns.command("ganesha.nfsd");
        cmd.arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg("-L")
            .arg(dir.join("ganesha.log"))
            .arg("-p")
            .arg(dir.join("ganesha.pid"));
        let mut ganesha = Daemon::spawn("ganesha", cmd, &dir.join("ganesha.stdout"))
            .map_err(|e| e.to_string())?;
        let up = wait_until(Duration::from_secs(20), || {
            ns.tcp_listening(NFS_PORT) || ganesha.exited().is_some()
        });
        if up.is_err() || ganesha.exited().is_some() {
            return Err(format!(
                "ganesha did not come up on {NFS_PORT}:\n{}",
                crate::process::tail(&dir.join("ganesha.log"), 30)
            ));
        }
        Ok(NfsServer {
            ganesha,
            _rpcbind: rpcbind,
            export: export.to_path_buf(),
        })
    }

    pub fn log_tail(&self, lines: usize) -> String {
        crate::process::tail(&self.ganesha.log.with_file_name("ganesha.log"), lines)
    }
}

impl Drop for NfsServer {
    fn drop(&mut self) {
        // ganesha shuts down slowly on SIGTERM: a short grace, then SIGKILL.
        self.ganesha.stop(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_carries_the_settings_the_guests_depend_on() {
        let c = ganesha_config(Path::new("/srv/x"), Path::new("/tmp/r"), Protocols::V3AndV4);
        for needle in [
            "Attr_Expiration_Time = 0;",
            "Dir_Chunk = 0;",
            "Squash = No_Root_Squash;",
            "Protocols = 3, 4;",
            "Path = /srv/x;",
            "Pseudo = /srv/x;",
            "NFS_Port = 2049;",
            "MNT_Port = 20048;",
            "Enable_NLM = false;",
            "Only_Numeric_Owners = true;",
        ] {
            assert!(c.contains(needle), "missing {needle:?} in\n{c}");
        }
    }

    #[test]
    fn v3_only_server_offers_no_v4_anywhere() {
        let c = ganesha_config(Path::new("/srv/x"), Path::new("/tmp/r"), Protocols::V3Only);
        assert_eq!(c.matches("Protocols = 3;").count(), 2, "{c}");
        assert!(!c.contains("Protocols = 3, 4"), "{c}");
    }
}
