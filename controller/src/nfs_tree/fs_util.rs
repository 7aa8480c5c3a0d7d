//! Small filesystem helpers shared by the node and image code.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// 8 random hex digits for temporary names.
pub(crate) fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Writes a whole file under a temporary name and renames it into place, so a reader (a
/// Pi over NFS) sees the old content or the new, never a torn one. Content and mode that
/// are already there are left alone: node files are refreshed on every boot request, and
/// an unchanged file should cost a read, not an fsync.
pub(crate) fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_file()
            && meta.permissions().mode() & 0o7777 == mode
            && fs::read(path).is_ok_and(|old| old == content)
        {
            return Ok(());
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", random_suffix()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(content)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a tree without following symlinks. When that fails for want of permission
/// (a non-root user meeting a read-only directory from an image), it makes the
/// directories writable and tries once more.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path)?;
            fs::remove_dir_all(path)
        }
        other => other,
    }
}

fn make_dirs_writable(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(path)? {
        make_dirs_writable(&entry?.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_atomic_replaces_changes_and_keeps_identical_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hostname");
        write_atomic(&path, b"a\n", 0o644).unwrap();
        let first = fs::metadata(&path).unwrap().ino();
        write_atomic(&path, b"a\n", 0o644).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().ino(),
            first,
            "unchanged: not rewritten"
        );
        write_atomic(&path, b"b\n", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"b\n");
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            first,
            "changed: replaced by rename"
        );
        write_atomic(&path, b"b\n", 0o600).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().mode() & 0o7777,
            0o600,
            "mode change applied"
        );
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temporary files left"
        );
    }
}
