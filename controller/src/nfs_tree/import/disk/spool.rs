//! The decompressed disk image, written to a file the file-system readers can seek in:
//! an unnamed file (`O_TMPFILE`) in `base/`, so nothing is left behind by any failure or
//! crash (where the file system lacks `O_TMPFILE`: a hidden name, unlinked at once). Zero
//! blocks become holes: the free space of a Pi image costs nothing.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::BorrowedFd;

use super::super::extract::read_full;
use super::super::fsops;
use crate::nfs_tree::fs_util::random_suffix;

const CHUNK: usize = 1 << 20;
const HOLE_BLOCK: usize = 64 << 10;

/// A file with no name in `dir`.
pub(crate) fn unnamed_file(dir: BorrowedFd) -> io::Result<File> {
    if let Some(file) = fsops::anonymous_file_in(dir)? {
        return Ok(file);
    }
    for _ in 0..8 {
        let name = CString::new(format!(".import-spool-{}", random_suffix()))
            .expect("no NUL in a generated name");
        match fsops::create_rw_file_at(dir, &name) {
            Ok(file) => {
                fsops::unlink_at(dir, &name)?;
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}

/// Copies `from` to its end into `file`, at most `limit` bytes; `on_chunk` after every
/// chunk. Returns the image's length.
pub(crate) fn spool(
    from: &mut dyn Read,
    file: &mut File,
    limit: u64,
    on_chunk: &mut dyn FnMut(),
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = read_full(from, &mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        if len > limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the disk image is larger than the import limit of {limit} bytes (raise it \
                 with `image import --max-size` or [nfs] import_max_size_mb)"
                ),
            ));
        }
        for block in buf[..n].chunks(HOLE_BLOCK) {
            if block.iter().all(|&b| b == 0) {
                file.seek(SeekFrom::Current(block.len() as i64))?;
            } else {
                file.write_all(block)?;
            }
        }
        on_chunk();
    }
    // A trailing hole was only seeked over.
    file.set_len(len)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn spool_keeps_bytes_and_length_and_leaves_no_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        let mut file = unnamed_file(d.as_fd()).unwrap();
        let mut data = vec![0u8; 3 * CHUNK + 100];
        data[5] = 1;
        data[2 * CHUNK + 7] = 2;
        let mut calls = 0;
        let len = spool(&mut &data[..], &mut file, u64::MAX, &mut || calls += 1).unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(calls, 4);
        let mut back = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let err = spool(&mut &data[..], &mut file, 1000, &mut || {}).unwrap_err();
        assert!(err.to_string().contains("import limit"), "{err}");
    }
}
