//! What a folder was built from, kept beside it: read, written, and a file's identity.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{io_err, TftpError};

/// A file's or directory's identity: device, inode, size and modification time. A
/// re-imported image or a replaced kernel is a new inode; a file rewritten in place changes
/// its mtime. Not the ctime: the tool hard-links the image's kernel into the folder, and
/// each link made or removed changes it.
pub fn identity(path: &Path) -> Result<String, TftpError> {
    let m = std::fs::metadata(path).map_err(io_err(path))?;
    Ok(format!(
        "{}:{} {} {}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// The stamp at `path`, if there is one.
pub fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Writes the stamp atomically (a reader never sees half of one).
pub fn write(path: &Path, stamp: &str) -> Result<(), TftpError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, stamp).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}
