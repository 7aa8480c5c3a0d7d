//! One partition of the spooled image as a file of its own: reads are `pread`s at the
//! partition's offset, bounded by its length, so a file system inside can never read a
//! neighbour's bytes or past the table's end. Writes fail: both readers are read-only.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::partitions::Partition;

#[derive(Clone)]
pub(crate) struct Slice {
    file: Arc<File>,
    start: u64,
    len: u64,
    pos: u64,
}

impl Slice {
    pub(crate) fn new(file: Arc<File>, p: &Partition) -> Slice {
        Slice {
            file,
            start: p.start,
            len: p.len,
            pos: 0,
        }
    }

    /// Fills `buf` from `at` (partition-relative), or fails if that passes the end.
    pub(crate) fn read_exact_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = at.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {at} passes the partition's end ({} bytes)",
                    buf.len(),
                    self.len
                ),
            ));
        }
        self.file.read_exact_at(buf, self.start + at)
    }
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.read_exact_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Slice {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the partition")
        })?;
        Ok(self.pos)
    }
}

/// fatfs wants a read-write device; nothing in the import writes.
impl Write for Slice {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the disk image is read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ext4_view::Ext4Read for Slice {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.read_exact_at(start_byte, dst).map_err(Box::from)
    }
}
