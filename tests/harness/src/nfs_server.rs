//! nfs-ganesha (with the rpcbind it needs) serving one scenario's export root, in the
//! scenario's namespace, on fixed ports. The settings the guests depend on:
//! `Attr_Expiration_Time = 0` (else directories the controller creates after start are not
//! seen), `Squash = No_Root_Squash`, NLM off, fixed NFS/MNT ports, no grace period. The
//! directory cache keeps ganesha's defaults: a repaired image gets a new name (a
//! generation), which no cache can resolve to the broken file, so `Dir_Chunk = 0` (once
//! needed here for a fresh persist.img under the old name) is not set.

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
    ganesha_config_with(export, recovery, protocols, None)
}

/// The same configuration, with `rules` (what `pureboot-controller nfs exports --format
/// ganesha` wrote) instead of the one default export: its EXPORT blocks as they are, the
/// settings of its `NFSv4` and `MDCACHE` blocks merged into the harness's own (ganesha takes
/// each block once).
pub fn ganesha_config_with(
    export: &Path,
    recovery: &Path,
    protocols: Protocols,
    rules: Option<&str>,
) -> String {
    let export = export.display();
    let p = protocols.ganesha_list();
    let (mut nfsv4, mut mdcache) = (
        vec![
            "Graceless = true;".to_string(),
            "Only_Numeric_Owners = true;".to_string(),
            "RecoveryBackend = fs;".to_string(),
            format!("RecoveryRoot = {};", recovery.display()),
        ],
        Vec::new(),
    );
    let exports = match rules {
        None => format!(
            "EXPORT {{\n  Export_Id = 1;\n  Path = {export};\n  Pseudo = {export};\n  Access_Type = RW;\n  \
             Squash = No_Root_Squash;\n  SecType = sys;\n  Protocols = {p};\n  Transports = TCP;\n  \
             Attr_Expiration_Time = 0;\n  FSAL {{\n    Name = VFS;\n  }}\n}}\n"
        ),
        Some(rules) => {
            let mut out = String::new();
            for (name, body) in top_level_blocks(rules) {
                let merge_into = match name.as_str() {
                    "NFSv4" => &mut nfsv4,
                    "MDCACHE" => &mut mdcache,
                    _ => {
                        out += &format!("{name} {{\n{body}}}\n");
                        continue;
                    }
                };
                for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if !merge_into.iter().any(|l| l == line) {
                        merge_into.push(line.to_string());
                    }
                }
            }
            out
        }
    };
    let block = |name: &str, lines: &[String]| {
        if lines.is_empty() {
            return String::new();
        }
        let mut b = format!("{name} {{\n");
        for l in lines {
            b += &format!("  {l}\n");
        }
        b + "}\n"
    };
    format!(
        "NFS_CORE_PARAM {{\n  Protocols = {p};\n  NFS_Port = {NFS_PORT};\n  MNT_Port = {MNT_PORT};\n  \
         Enable_NLM = false;\n  Enable_RQUOTA = false;\n}}\n\
         {nfsv4}{exports}{mdcache}\
         LOG {{\n  Default_Log_Level = WARN;\n}}\n",
        nfsv4 = block("NFSv4", &nfsv4),
        mdcache = block("MDCACHE", &mdcache),
    )
}

/// The top-level `NAME { ... }` blocks of a ganesha configuration, in order, with their
/// bodies as written (nested blocks included); comments outside blocks are dropped.
fn top_level_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut depth = 0usize;
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or("");
        let opens = code.matches('{').count();
        let closes = code.matches('}').count();
        match current.as_mut() {
            None => {
                if let Some(name) = code.trim().strip_suffix('{') {
                    current = Some((name.trim().to_string(), String::new()));
                    depth = 1;
                }
            }
            Some((_, body)) => {
                depth = (depth + opens).saturating_sub(closes);
                if depth == 0 {
                    blocks.extend(current.take());
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    blocks
}

pub struct NfsServer {
    // Field order is drop order: ganesha before the rpcbind it registered with.
    ganesha: Daemon,
    _rpcbind: Daemon,
    pub export: PathBuf,
    /// Its configuration, logs and recovery directory.
    dir: PathBuf,
}

/// ganesha on `dir`'s `ganesha.conf`, once it listens on [`NFS_PORT`].
fn spawn_ganesha(ns: &Netns, dir: &Path) -> Result<Daemon, String> {
    let mut cmd = ns.command("ganesha.nfsd");
    cmd.arg("-F")
        .arg("-f")
        .arg(dir.join("ganesha.conf"))
        .arg("-L")
        .arg(dir.join("ganesha.log"))
        .arg("-p")
        .arg(dir.join("ganesha.pid"));
    let mut ganesha =
        Daemon::spawn("ganesha", cmd, &dir.join("ganesha.stdout")).map_err(|e| e.to_string())?;
    let up = wait_until(Duration::from_secs(20), || {
        ns.tcp_listening(NFS_PORT) || ganesha.exited().is_some()
    });
    if up.is_err() || ganesha.exited().is_some() {
        return Err(format!(
            "ganesha did not come up on {NFS_PORT}:\n{}",
            crate::process::tail(&dir.join("ganesha.log"), 30)
        ));
    }
    Ok(ganesha)
}

impl NfsServer {
    /// ganesha's process id (for its CPU time and I/O in /proc), while it runs.
    pub fn ganesha_pid(&self) -> Option<u32> {
        self.ganesha.pid()
    }

    /// Starts rpcbind and ganesha in `ns`, exporting `export`; `dir` holds config and logs.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        export: &Path,
        protocols: Protocols,
    ) -> Result<NfsServer, String> {
        NfsServer::start_with(ns, dir, export, protocols, None)
    }

    /// As [`NfsServer::start`], exporting `rules` (ganesha EXPORT blocks, see
    /// [`ganesha_config_with`]) instead of the default export when given.
    pub fn start_with(
        ns: &Netns,
        dir: &Path,
        export: &Path,
        protocols: Protocols,
        rules: Option<&str>,
    ) -> Result<NfsServer, String> {
        std::fs::create_dir_all(export)
            .map_err(|e| format!("creating {}: {e}", export.display()))?;
        let recovery = dir.join("ganesha-recovery");
        std::fs::create_dir_all(&recovery).map_err(|e| e.to_string())?;
        let conf = dir.join("ganesha.conf");
        std::fs::write(
            &conf,
            ganesha_config_with(export, &recovery, protocols, rules),
        )
        .map_err(|e| format!("writing {}: {e}", conf.display()))?;

        let mut cmd = ns.command("rpcbind");
        cmd.args(["-f", "-w"]);
        let rpcbind =
            Daemon::spawn("rpcbind", cmd, &dir.join("rpcbind.log")).map_err(|e| e.to_string())?;
        wait_until(Duration::from_secs(10), || ns.tcp_listening(111))
            .map_err(|_| format!("rpcbind did not listen on 111:\n{}", rpcbind.log_tail(20)))?;

        Ok(NfsServer {
            ganesha: spawn_ganesha(ns, dir)?,
            _rpcbind: rpcbind,
            export: export.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }

    /// ganesha dies (SIGKILL: no clean shutdown, its state left as a crash leaves it);
    /// rpcbind stays. The export is unanswered until [`NfsServer::start_again`].
    pub fn kill(&mut self) {
        self.ganesha.kill();
    }

    /// ganesha started again on the same configuration, export and recovery directory.
    pub fn start_again(&mut self, ns: &Netns) -> Result<(), String> {
        self.ganesha.kill();
        self.ganesha = spawn_ganesha(ns, &self.dir)?;
        Ok(())
    }

    /// Stops ganesha, then rpcbind (what dropping does), so that another server can take
    /// their ports.
    pub fn stop(&mut self) {
        self.ganesha.stop(Duration::from_secs(2));
        self._rpcbind.stop(Duration::from_secs(2));
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
        // ganesha's own directory cache settings: the repair scenarios run against them.
        assert!(!c.contains("MDCACHE"), "{c}");
    }

    #[test]
    fn generated_rules_replace_the_default_export_and_merge_their_settings() {
        let rules = "# comment\nNFSv4 {\n  Only_Numeric_Owners = true;\n}\nMDCACHE {\n  Dir_Chunk = 0;\n}\n\
                     EXPORT {\n  Export_Id = 7;\n  Path = /srv/x/base;\n  FSAL {\n    Name = VFS;\n  }\n  \
                     CLIENT {\n    Clients = 10.0.0.0/24;\n  }\n}\n";
        let c = ganesha_config_with(
            Path::new("/srv/x"),
            Path::new("/tmp/r"),
            Protocols::V3AndV4,
            Some(rules),
        );
        for (block, n) in [("NFSv4 {", 1), ("MDCACHE {", 1), ("EXPORT {", 1)] {
            assert_eq!(c.matches(block).count(), n, "{block} in\n{c}");
        }
        assert_eq!(c.matches("Only_Numeric_Owners = true;").count(), 1, "{c}");
        assert_eq!(c.matches("Dir_Chunk = 0;").count(), 1, "{c}");
        assert!(c.contains("Graceless = true;"), "{c}");
        assert!(!c.contains("Pseudo = /srv/x;"), "no default export: {c}");
        assert!(
            c.contains("  CLIENT {\n    Clients = 10.0.0.0/24;\n  }\n}\n"),
            "nested blocks kept: {c}"
        );
    }

    #[test]
    fn v3_only_server_offers_no_v4_anywhere() {
        let c = ganesha_config(Path::new("/srv/x"), Path::new("/tmp/r"), Protocols::V3Only);
        assert_eq!(c.matches("Protocols = 3;").count(), 2, "{c}");
        assert!(!c.contains("Protocols = 3, 4"), "{c}");
    }
}
