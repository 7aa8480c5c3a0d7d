//! The Pis' TFTP folders, written by the controller (`[tftp] root`): `<root>/<serial>/`
//! follows the node's base image (kernel, initramfs from that image's own modules, device
//! trees, firmware), and the TFTP root is the discovery folder unknown Pis read.
//!
//! The folders are built by running `pureboot-image tftp --image` as a subprocess, never by
//! linking its code: the controller depends only on the contract (ARCHITECTURE.md), and the
//! tool already writes a node's folder complete beside the old one and swaps it in whole
//! (renameat2 RENAME_EXCHANGE), so a Pi never fetches a kernel from one image and an
//! initramfs from another. A stamp left in each folder says what it was built from (image,
//! tool, pi-init, URL); the same stamp again means nothing to do, so following every node
//! after each change is cheap.

mod board;
mod stamp;
#[cfg(test)]
mod tests;

pub use board::{bootable, Board};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use pureboot_contract::ids::Serial;

/// The stamp file inside a node's folder (a TFTP server serves it too; it holds no secret).
pub const NODE_STAMP: &str = ".pureboot-tftp-stamp";
/// The discovery folder's stamp, at the root.
pub const DISCOVERY_STAMP: &str = ".pureboot-tftp-discovery-stamp";

#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    #[error(
        "the image tool {0} was not found (install the pureboot-image package, or set \
         [tftp] image_tool)"
    )]
    NoTool(String),
    #[error("running {tool}: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} tftp {what} failed ({status}): {stderr}")]
    Failed {
        tool: String,
        what: String,
        status: String,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TftpError + '_ {
    move |source| TftpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The folder was (re)written.
    Written,
    /// Its stamp matched: already built from the same inputs.
    Unchanged,
}

/// How to run the tool and what every folder shares.
#[derive(Debug, Clone)]
pub struct Writer {
    pub root: PathBuf,
    /// As configured; resolved on PATH when it has no `/`.
    pub tool: PathBuf,
    pub pi_init: Option<PathBuf>,
    pub controller_url: String,
    pub cmdline_extra: Option<String>,
}

impl Writer {
    /// `<root>/<serial>/` for `board`, from the base image at `image` (`base/<name>`).
    pub fn node(&self, serial: &Serial, board: Board, image: &Path) -> Result<Outcome, TftpError> {
        let folder = self.root.join(serial.as_str());
        let tool = self.resolved_tool()?;
        let stamp = self.stamp(&tool, image, &[board])?;
        if stamp::read(&folder.join(NODE_STAMP)).as_deref() == Some(stamp.as_str()) {
            return Ok(Outcome::Unchanged);
        }
        let mut args = vec![
            "--serial".into(),
            serial.to_string(),
            "--model".into(),
            board.name().into(),
        ];
        args.extend(self.common(image));
        self.run(&tool, &format!("--serial {serial}"), &args)?;
        // After the swap: a folder whose stamp is missing is only built again next time.
        stamp::write(&folder.join(NODE_STAMP), &stamp)?;
        Ok(Outcome::Written)
    }

    /// The discovery files at the root, for `boards`, from the base image at `image`.
    pub fn discovery(&self, boards: &[Board], image: &Path) -> Result<Outcome, TftpError> {
        let tool = self.resolved_tool()?;
        let stamp = self.stamp(&tool, image, boards)?;
        let at = self.root.join(DISCOVERY_STAMP);
        if stamp::read(&at).as_deref() == Some(stamp.as_str()) {
            return Ok(Outcome::Unchanged);
        }
        let names: Vec<&str> = boards.iter().map(|b| b.name()).collect();
        let mut args = vec!["--discovery".into(), "--model".into(), names.join(",")];
        args.extend(self.common(image));
        self.run(&tool, "--discovery", &args)?;
        stamp::write(&at, &stamp)?;
        Ok(Outcome::Written)
    }

    /// Removes `<root>/<serial>/` (renamed aside first, so no half folder is served);
    /// whether there was one.
    pub fn remove_node(&self, serial: &Serial) -> Result<bool, TftpError> {
        let folder = self.root.join(serial.as_str());
        let aside = self
            .root
            .join(format!(".{serial}.removed-{}", std::process::id()));
        match std::fs::rename(&folder, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&folder)(e)),
        }
        std::fs::remove_dir_all(&aside).map_err(io_err(&aside))?;
        Ok(true)
    }

    fn common(&self, image: &Path) -> Vec<String> {
        let mut args = vec![
            "--image".into(),
            image.display().to_string(),
            "--controller-url".into(),
            self.controller_url.clone(),
        ];
        if let Some(p) = &self.pi_init {
            args.extend(["--pi-init".into(), p.display().to_string()]);
        }
        if let Some(extra) = self.cmdline_extra.as_deref().filter(|e| !e.is_empty()) {
            args.extend(["--cmdline-extra".into(), extra.to_string()]);
        }
        args.extend(["-o".into(), self.root.display().to_string()]);
        args
    }

    fn run(&self, tool: &Path, what: &str, args: &[String]) -> Result<(), TftpError> {
        std::fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let out = Command::new(tool)
            .arg("tftp")
            .args(args)
            .output()
            .map_err(|source| TftpError::Spawn {
                tool: tool.display().to_string(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Its error lines say why (its notes do not); else its last lines.
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let errors: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains("error"))
            .collect();
        let why = match errors.is_empty() {
            true => lines[lines.len().saturating_sub(3)..].to_vec(),
            false => errors,
        };
        Err(TftpError::Failed {
            tool: tool.display().to_string(),
            what: what.to_string(),
            status: out.status.to_string(),
            stderr: why.join(" | "),
        })
    }

    /// The configured tool, found on PATH when it is a bare name.
    fn resolved_tool(&self) -> Result<PathBuf, TftpError> {
        let missing = || TftpError::NoTool(self.tool.display().to_string());
        if self.tool.components().count() > 1 {
            return self
                .tool
                .is_file()
                .then(|| self.tool.clone())
                .ok_or_else(missing);
        }
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|dir| dir.join(&self.tool))
            .find(|p| p.is_file())
            .ok_or_else(missing)
    }

    /// Everything the folder is built from, as text: the image (its directory and kernels,
    /// by inode and time: a re-import or a replaced kernel is a new file), the boards, the
    /// tool and pi-init (a new build is a new file), the URL and the extra parameters.
    fn stamp(&self, tool: &Path, image: &Path, boards: &[Board]) -> Result<String, TftpError> {
        let mut s = String::new();
        let names: Vec<&str> = boards.iter().map(|b| b.name()).collect();
        let _ = writeln!(s, "boards {}", names.join(","));
        let _ = writeln!(s, "image {} {}", image.display(), stamp::identity(image)?);
        let boot = image.join(pureboot_contract::layout::BOOT_FIRMWARE_DIR);
        let kernels: std::collections::BTreeSet<&str> = boards
            .iter()
            .flat_map(|b| b.image_kernels())
            .copied()
            .collect();
        for kernel in kernels {
            let path = boot.join(kernel);
            if path.exists() {
                let _ = writeln!(s, "kernel {kernel} {}", stamp::identity(&path)?);
            }
        }
        let _ = writeln!(s, "tool {} {}", tool.display(), stamp::identity(tool)?);
        if let Some(p) = &self.pi_init {
            let _ = writeln!(s, "pi_init {} {}", p.display(), stamp::identity(p)?);
        }
        let _ = writeln!(s, "url {}", self.controller_url);
        let _ = writeln!(s, "extra {}", self.cmdline_extra.as_deref().unwrap_or(""));
        Ok(s)
    }
}
