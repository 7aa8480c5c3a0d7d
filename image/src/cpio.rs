//! The "newc" cpio format (magic 070701), the one the kernel unpacks into rootfs.
//!
//! Pure: the writer turns an entry list into bytes, the reader turns bytes back into
//! entries, so the two can be tested against each other (and against Debian's `cpio`).

use std::io::{self, Write};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFMT: u32 = 0o170_000;

/// What an archive member is; the data of a file lives here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

/// One archive member. `path` is relative (no leading `/`), `perm` the permission bits only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub perm: u32,
    pub kind: Kind,
}

impl Entry {
    pub fn dir(path: &str, perm: u32) -> Self {
        Self {
            path: path.into(),
            perm,
            kind: Kind::Dir,
        }
    }
    pub fn file(path: &str, perm: u32, data: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            perm,
            kind: Kind::File(data),
        }
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        Self {
            path: path.into(),
            perm: 0o777,
            kind: Kind::Symlink(target.into()),
        }
    }
    pub fn char_dev(path: &str, perm: u32, major: u32, minor: u32) -> Self {
        Self {
            path: path.into(),
            perm,
            kind: Kind::CharDev { major, minor },
        }
    }

    fn type_bits(&self) -> u32 {
        match self.kind {
            Kind::Dir => S_IFDIR,
            Kind::File(_) => S_IFREG,
            Kind::Symlink(_) => S_IFLNK,
            Kind::CharDev { .. } => S_IFCHR,
        }
    }

    fn body(&self) -> &[u8] {
        match &self.kind {
            Kind::File(data) => data,
            Kind::Symlink(target) => target.as_bytes(),
            Kind::Dir | Kind::CharDev { .. } => &[],
        }
    }
}

/// A member as stored, with the header fields the writer fixes (owner, inode, mtime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub entry: Entry,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
}

/// Writes `entries` in the given order, then the trailer. Owners are root, every mtime is
/// `mtime`, inode numbers count up from 1 in order: the output depends on nothing else.
/// Returns the number of bytes written.
pub fn write_archive(entries: &[Entry], mtime: u32, out: &mut impl Write) -> io::Result<u64> {
    let mut written = 0u64;
    for (index, entry) in entries.iter().enumerate() {
        let ino = u32::try_from(index + 1).map_err(|_| invalid("too many entries"))?;
        written += write_member(out, entry, ino, mtime)?;
    }
    let trailer = Entry::file(TRAILER, 0, Vec::new());
    written += write_member_raw(out, &trailer, 0, 0, 1, 0)?;
    Ok(written)
}

fn write_member(out: &mut impl Write, entry: &Entry, ino: u32, mtime: u32) -> io::Result<u64> {
    if entry.path.is_empty() || entry.path.starts_with('/') || entry.path.contains('\0') {
        return Err(invalid(&format!("bad archive path {:?}", entry.path)));
    }
    let nlink = if entry.kind == Kind::Dir { 2 } else { 1 };
    write_member_raw(
        out,
        entry,
        ino,
        entry.type_bits() | (entry.perm & 0o7777),
        nlink,
        mtime,
    )
}

fn write_member_raw(
    out: &mut impl Write,
    entry: &Entry,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
) -> io::Result<u64> {
    let body = entry.body();
    let size = u32::try_from(body.len()).map_err(|_| invalid("member larger than 4 GiB"))?;
    let (rmajor, rminor) = match entry.kind {
        Kind::CharDev { major, minor } => (major, minor),
        _ => (0, 0),
    };
    let name_len = entry.path.len() + 1; // with its NUL
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        mtime,
        size,
        0,
        0,
        rmajor,
        rminor,
        name_len as u32,
        0,
    ];
    let mut header = Vec::with_capacity(HEADER_LEN + name_len + 3);
    header.extend_from_slice(MAGIC);
    for field in fields {
        header.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    header.extend_from_slice(entry.path.as_bytes());
    header.push(0);
    header.resize(align4(header.len()), 0);
    out.write_all(&header)?;
    out.write_all(body)?;
    let padding = align4(body.len()) - body.len();
    out.write_all(&[0u8; 3][..padding])?;
    Ok((header.len() + body.len() + padding) as u64)
}

/// Parses a whole newc archive (up to its trailer) back into records.
pub fn read_archive(bytes: &[u8]) -> Result<Vec<Record>, ReadError> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    loop {
        let header = bytes.get(offset..offset + HEADER_LEN).ok_or(ReadError {
            offset,
            what: "truncated header (no trailer)".into(),
        })?;
        if &header[..6] != MAGIC {
            return Err(ReadError {
                offset,
                what: "bad magic, not newc".into(),
            });
        }
        let field = |i: usize| -> Result<u32, ReadError> {
            let text = std::str::from_utf8(&header[6 + i * 8..14 + i * 8]).unwrap_or("");
            u32::from_str_radix(text, 16).map_err(|_| ReadError {
                offset,
                what: format!("bad hex field {i}: {text:?}"),
            })
        };
        let (ino, mode, uid, gid, nlink, mtime, size) = (
            field(0)?,
            field(1)?,
            field(2)?,
            field(3)?,
            field(4)?,
            field(5)?,
            field(6)? as usize,
        );
        let (rmajor, rminor, name_len) = (field(9)?, field(10)?, field(11)? as usize);
        let name_start = offset + HEADER_LEN;
        let name_bytes = bytes
            .get(name_start..name_start + name_len)
            .ok_or(ReadError {
                offset,
                what: "truncated name".into(),
            })?;
        let name = std::str::from_utf8(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .map_err(|_| ReadError {
                offset,
                what: "name is not UTF-8".into(),
            })?
            .to_string();
        let data_start = align4(name_start + name_len);
        let data = bytes
            .get(data_start..data_start + size)
            .ok_or(ReadError {
                offset,
                what: format!("truncated data of {name}"),
            })?
            .to_vec();
        offset = align4(data_start + size);
        if name == TRAILER {
            return Ok(records);
        }
        let kind = match mode & S_IFMT {
            S_IFDIR => Kind::Dir,
            S_IFREG => Kind::File(data),
            S_IFLNK => Kind::Symlink(String::from_utf8(data).map_err(|_| ReadError {
                offset,
                what: format!("{name}: bad link"),
            })?),
            S_IFCHR => Kind::CharDev {
                major: rmajor,
                minor: rminor,
            },
            other => {
                return Err(ReadError {
                    offset,
                    what: format!("{name}: unsupported type {other:o}"),
                })
            }
        };
        let entry = Entry {
            path: name,
            perm: mode & 0o7777,
            kind,
        };
        records.push(Record {
            entry,
            ino,
            uid,
            gid,
            nlink,
            mtime,
        });
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cpio archive at byte {offset}: {what}")]
pub struct ReadError {
    pub offset: usize,
    pub what: String,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::dir("dev", 0o755),
            Entry::char_dev("dev/console", 0o600, 5, 1),
            Entry::file("init", 0o755, b"\x7fELF pretend".to_vec()),
            Entry::dir("bin", 0o755),
            Entry::symlink("bin/sh", "busybox"),
            // Sizes 0..=4 exercise every padding length.
            Entry::file("a", 0o644, Vec::new()),
            Entry::file("ab", 0o600, b"x".to_vec()),
            Entry::file("abc", 0o644, b"xy".to_vec()),
            Entry::file("abcd", 0o644, b"xyz".to_vec()),
            Entry::file("abcde", 0o4755, b"wxyz".to_vec()),
        ]
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let entries = sample();
        let mut bytes = Vec::new();
        let written = write_archive(&entries, 1_700_000_000, &mut bytes).unwrap();
        assert_eq!(written as usize, bytes.len());
        assert_eq!(bytes.len() % 4, 0);
        let records = read_archive(&bytes).unwrap();
        let read_back: Vec<Entry> = records.iter().map(|r| r.entry.clone()).collect();
        assert_eq!(read_back, entries);
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.ino as usize, i + 1, "{}", record.entry.path);
            assert_eq!((record.uid, record.gid), (0, 0));
            assert_eq!(record.mtime, 1_700_000_000);
            let expected_links = if record.entry.kind == Kind::Dir { 2 } else { 1 };
            assert_eq!(record.nlink, expected_links);
        }
    }

    #[test]
    fn char_device_numbers_survive() {
        let mut bytes = Vec::new();
        write_archive(
            &[Entry::char_dev("dev/ttyX", 0o620, 204, 64)],
            0,
            &mut bytes,
        )
        .unwrap();
        let records = read_archive(&bytes).unwrap();
        assert_eq!(
            records[0].entry.kind,
            Kind::CharDev {
                major: 204,
                minor: 64
            }
        );
        assert_eq!(records[0].entry.perm, 0o620);
    }

    #[test]
    fn absolute_and_empty_paths_are_refused() {
        for bad in ["/init", ""] {
            let err = write_archive(&[Entry::dir(bad, 0o755)], 0, &mut Vec::new()).unwrap_err();
            assert!(
                err.to_string().contains("bad archive path"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn truncated_and_foreign_input_is_an_error() {
        let mut bytes = Vec::new();
        write_archive(&sample(), 0, &mut bytes).unwrap();
        let cut = read_archive(&bytes[..bytes.len() - 130]).unwrap_err();
        assert!(cut.what.contains("truncated"), "{cut}");
        let foreign = read_archive(&[b'0'; 200]).unwrap_err();
        assert!(foreign.what.contains("magic"), "{foreign}");
    }
}
