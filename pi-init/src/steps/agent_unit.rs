//! Leaves the post-boot agent for the new root: pi-init's own binary at
//! [`AGENT_PATH`](pureboot_contract::after_boot::AGENT_PATH), the boot's `agent_url` beside it,
//! and a runtime unit that the root's systemd starts with `multi-user.target`. All of it in
//! `/run`, which pi-init mounted and moves into the new root: in RAM, gone at the next boot,
//! so neither the base image nor the node's layer on the export is changed, and the agent is
//! always the one of the initramfs that booted.
//!
//! Only a root whose init is systemd gets it: the unit is systemd's. On another root the
//! boot goes on and the installed report says why no agent runs.

use std::fmt;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use pureboot_contract::after_boot::{AGENT_ARG, AGENT_PATH, AGENT_UNIT_PATH, AGENT_WANTS_LINK};

use crate::sys::HostPaths;

/// The file the agent reads its URL from (a file, not the unit's command line: no quoting).
pub const AGENT_URL_FILE: &str = "/run/pureboot/agent-url";

/// pi-init's installed report when no controller took it before the switch (one try of
/// 2 s: the boot does not wait): the callback URL on the first line, the JSON body after
/// it, as pi-init sent it. The agent delivers it first, with its own patience, so a
/// controller down or restarting during the boot still learns how the node booted.
pub const PENDING_CALLBACK_FILE: &str = "/run/pureboot/callback-pending";

/// Leaves `body` for the agent at [`PENDING_CALLBACK_FILE`] under `run` (the root's `/run`,
/// once moved). Best effort: said in the log either way.
pub fn leave_callback(run: &Path, url: &str, body: &impl serde::Serialize) {
    let file = run.join(PENDING_CALLBACK_FILE.trim_start_matches("/run/"));
    let left = serde_json::to_string(body)
        .map_err(io::Error::other)
        .and_then(|body| std::fs::write(&file, format!("{url}\n{body}")));
    match left {
        Ok(()) => log::info!("callback left for the post-boot agent to deliver"),
        Err(e) => log::warn!("callback not delivered, and not left for the agent: {e}"),
    }
}

/// The URL and body of a report [`leave_callback`] left; none when `text` is no such file.
pub fn pending_callback(text: &str) -> Option<(&str, &str)> {
    let (url, body) = text.split_once('\n')?;
    (url.starts_with("http://") && !body.is_empty()).then_some((url, body))
}

/// Why no agent was left.
#[derive(Debug)]
pub enum AgentUnitError {
    /// The root's init, resolved, is not systemd.
    NotSystemd(PathBuf),
    Write(PathBuf, io::Error),
}

impl fmt::Display for AgentUnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentUnitError::NotSystemd(init) => write!(
                f,
                "not installed: the root's init ({}) is not systemd, post-boot steps and boot \
                 complete need it",
                init.display()
            ),
            AgentUnitError::Write(path, e) => write!(f, "not installed: {}: {e}", path.display()),
        }
    }
}

/// The runtime unit. `Type=simple`: the boot does not wait for the steps; the agent itself
/// waits for the system to be up before it reports "boot complete". Its output (the
/// steps') goes to the journal and the console.
pub fn unit_text() -> String {
    format!(
        "[Unit]\n\
         Description=pureboot post-boot steps and boot-complete report\n\
         After=network.target time-sync.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={AGENT_PATH} {AGENT_ARG}\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n"
    )
}

/// Whether the resolved init (inside the new root) is systemd.
pub fn is_systemd(resolved: &Path) -> bool {
    resolved.file_name().is_some_and(|n| n == "systemd")
}

/// Leaves agent, URL and unit under `paths`' `/run`; `resolved_init` is the init the new
/// root will run (a path inside it).
pub fn leave(paths: &HostPaths, resolved_init: &Path, url: &str) -> Result<(), AgentUnitError> {
    if !is_systemd(resolved_init) {
        return Err(AgentUnitError::NotSystemd(resolved_init.to_path_buf()));
    }
    let agent = paths.at(AGENT_PATH);
    let w = |p: &Path| {
        let p = p.to_path_buf();
        move |e| AgentUnitError::Write(p, e)
    };
    let dir = agent.parent().expect("AGENT_PATH has a parent");
    std::fs::create_dir_all(dir).map_err(w(dir))?;
    let tmp = agent.with_extension("tmp");
    std::fs::copy(paths.at("/proc/self/exe"), &tmp).map_err(w(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(w(&tmp))?;
    std::fs::rename(&tmp, &agent).map_err(w(&agent))?;
    let url_file = paths.at(AGENT_URL_FILE);
    std::fs::write(&url_file, url).map_err(w(&url_file))?;
    let unit = paths.at(AGENT_UNIT_PATH);
    let wants = paths.at(AGENT_WANTS_LINK);
    let wants_dir = wants.parent().expect("a wants directory");
    std::fs::create_dir_all(wants_dir).map_err(w(wants_dir))?;
    std::fs::write(&unit, unit_text()).map_err(w(&unit))?;
    if std::fs::symlink_metadata(&wants).is_err() {
        symlink(AGENT_UNIT_PATH, &wants).map_err(w(&wants))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::support::testutil::TempDir;

    fn host() -> (TempDir, HostPaths) {
        let dir = TempDir::new();
        let paths = HostPaths::under(dir.path());
        let exe = paths.at("/proc/self/exe");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::write(&exe, b"\x7fELF pi-init").unwrap();
        (dir, paths)
    }

    #[test]
    fn leaves_agent_url_and_unit_for_systemd() {
        let (_d, paths) = host();
        leave(
            &paths,
            Path::new("/lib/systemd/systemd"),
            "http://c:1/api/v1/nodes/x/agent",
        )
        .unwrap();
        let agent = paths.at(AGENT_PATH);
        assert_eq!(std::fs::read(&agent).unwrap(), b"\x7fELF pi-init");
        assert_eq!(
            std::fs::metadata(&agent).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read_to_string(paths.at(AGENT_URL_FILE)).unwrap(),
            "http://c:1/api/v1/nodes/x/agent"
        );
        let unit = std::fs::read_to_string(paths.at(AGENT_UNIT_PATH)).unwrap();
        assert!(
            unit.contains("ExecStart=/run/pureboot/agent agent\n"),
            "{unit}"
        );
        assert_eq!(
            std::fs::read_link(paths.at(AGENT_WANTS_LINK)).unwrap(),
            Path::new(AGENT_UNIT_PATH)
        );
        // A second attempt of the same boot leaves the same.
        leave(
            &paths,
            Path::new("/usr/lib/systemd/systemd"),
            "http://c:1/b",
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(paths.at(AGENT_URL_FILE)).unwrap(),
            "http://c:1/b"
        );
    }

    #[test]
    fn another_init_gets_no_agent_and_says_why() {
        let (_d, paths) = host();
        let e = leave(&paths, Path::new("/bin/busybox"), "http://c:1/x").unwrap_err();
        assert!(
            e.to_string().contains("/bin/busybox) is not systemd"),
            "{e}"
        );
        assert!(!paths.at(AGENT_PATH).exists());
    }
}
