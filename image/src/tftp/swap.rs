//! A node's folder replaced in one step. The folder is written complete beside the old one
//! (`.<serial>.new-<pid>`), then the two are exchanged (`renameat2` with `RENAME_EXCHANGE`)
//! and the old one removed: a Pi fetching while `tftp` runs gets the old folder or the new
//! one, never a kernel from one and an initramfs from the other. Where the file system
//! cannot exchange, the old folder is renamed aside first (a moment with no folder, in
//! which the firmware reads the TFTP root), never a mix.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{renameat_with, RenameFlags, CWD};

use super::{apply, Placement, Written};

/// Writes `plan` under `root`, the files in `folder` (relative to `root`) as one swap.
pub fn apply_folder(
    root: &Path,
    folder: &Path,
    plan: &[Placement],
) -> Result<Vec<(PathBuf, Written)>> {
    let name = folder.display().to_string();
    let staging = PathBuf::from(format!(".{name}.new-{}", std::process::id()));
    let aside = PathBuf::from(format!(".{name}.old-{}", std::process::id()));
    for stale in [&staging, &aside] {
        remove_if_there(&root.join(stale))?;
    }
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for p in plan {
        match p.dest.strip_prefix(folder) {
            Ok(rest) => inside.push(Placement {
                dest: staging.join(rest),
                content: p.content.clone(),
            }),
            Err(_) => outside.push(p.clone()),
        }
    }
    fs::create_dir_all(root.join(&staging))
        .with_context(|| format!("creating {}", root.join(&staging).display()))?;
    let written = apply(root, &inside).and_then(|mut done| {
        done.extend(apply(root, &outside)?);
        Ok(done)
    });
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            remove_if_there(&root.join(&staging))?;
            return Err(e);
        }
    };
    let (new, old) = (root.join(&staging), root.join(folder));
    if old.exists() {
        match renameat_with(CWD, &new, CWD, &old, RenameFlags::EXCHANGE) {
            Ok(()) => remove_if_there(&new)?,
            Err(_) => {
                let aside = root.join(&aside);
                fs::rename(&old, &aside)
                    .with_context(|| format!("moving {} aside", old.display()))?;
                fs::rename(&new, &old)
                    .with_context(|| format!("renaming {} to {}", new.display(), old.display()))?;
                remove_if_there(&aside)?;
            }
        }
    } else {
        fs::rename(&new, &old)
            .with_context(|| format!("renaming {} to {}", new.display(), old.display()))?;
    }
    Ok(written
        .into_iter()
        .map(|(dest, how)| match dest.strip_prefix(&staging) {
            Ok(rest) => (folder.join(rest), how),
            Err(_) => (dest, how),
        })
        .collect())
}

fn remove_if_there(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Content;
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn text(dest: &str, s: &str) -> Placement {
        Placement {
            dest: dest.into(),
            content: Content::Text(s.into()),
        }
    }

    #[test]
    fn the_folder_is_replaced_whole_and_nothing_else_is_left() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let folder = Path::new("d83add36");
        let first = [
            text("d83add36/kernel8.img", "old kernel"),
            text("d83add36/stale", "x"),
        ];
        apply_folder(root, folder, &first).unwrap();
        let inode = fs::metadata(root.join(folder)).unwrap().ino();
        let second = [
            text("d83add36/kernel8.img", "new kernel"),
            text("bootcode.bin", "root file"),
        ];
        let done = apply_folder(root, folder, &second).unwrap();
        assert_eq!(
            done.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
            [
                PathBuf::from("d83add36/kernel8.img"),
                PathBuf::from("bootcode.bin")
            ]
        );
        assert_eq!(
            fs::read_to_string(root.join("d83add36/kernel8.img")).unwrap(),
            "new kernel"
        );
        // A new folder, not the old one rewritten: what the old held is gone with it.
        assert_ne!(fs::metadata(root.join(folder)).unwrap().ino(), inode);
        assert!(!root.join("d83add36/stale").exists());
        assert_eq!(
            fs::read_to_string(root.join("bootcode.bin")).unwrap(),
            "root file"
        );
        let mut names: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["bootcode.bin", "d83add36"]);
    }
}
