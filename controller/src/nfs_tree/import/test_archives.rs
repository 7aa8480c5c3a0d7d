//! Archives built in memory for the import tests: every member kind the importer keeps, and
//! the malicious shapes a well-behaved tool refuses to write (set as raw header bytes).

use std::io::Write;

use tar::{EntryType, Header};

use super::format::ArchiveFormat;

pub(crate) const MTIME: u64 = 1_700_000_000;

pub(crate) struct ArchiveBuilder {
    b: tar::Builder<Vec<u8>>,
}

/// One PAX record: "<len> <key>=<value>\n", where len counts the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body_len + 1;
    while len != body_len + len.to_string().len() {
        len = body_len + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h
}

/// Writes a name into the header's name field as raw bytes, past the builder's checks.
fn set_raw(field: &mut [u8], value: &[u8]) {
    assert!(
        value.len() < field.len(),
        "raw name too long for the test header"
    );
    field.fill(0);
    field[..value.len()].copy_from_slice(value);
}

impl ArchiveBuilder {
    pub(crate) fn new() -> Self {
        ArchiveBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn append(&mut self, mut h: Header, path: &str, data: &[u8]) -> &mut Self {
        h.set_path(path).unwrap();
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.append(header(EntryType::Directory, mode, 0), path, &[])
    }

    pub(crate) fn file(&mut self, path: &str, mode: u32, content: &[u8]) -> &mut Self {
        self.append(
            header(EntryType::Regular, mode, content.len() as u64),
            path,
            content,
        )
    }

    pub(crate) fn owned_file(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        content: &[u8],
    ) -> &mut Self {
        let mut h = header(EntryType::Regular, mode, content.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.append(h, path, content)
    }

    /// A PAX header carrying `SCHILY.xattr.*` records, then the file it describes.
    pub(crate) fn file_with_xattrs(
        &mut self,
        path: &str,
        mode: u32,
        content: &[u8],
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        let records: Vec<u8> = xattrs
            .iter()
            .flat_map(|(k, v)| pax_record(&format!("SCHILY.xattr.{k}"), v))
            .collect();
        let mut pax = Header::new_ustar();
        pax.set_entry_type(EntryType::XHeader);
        pax.set_mode(0o644);
        pax.set_size(records.len() as u64);
        pax.set_path("././@PaxHeader").unwrap();
        pax.set_cksum();
        self.b.append(&pax, &records[..]).unwrap();
        self.file(path, mode, content)
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(EntryType::Symlink, 0o777, 0);
        h.set_link_name(target).unwrap();
        self.append(h, path, &[])
    }

    pub(crate) fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(EntryType::Link, 0o644, 0);
        h.set_link_name(target).unwrap();
        self.append(h, path, &[])
    }

    pub(crate) fn device(
        &mut self,
        path: &str,
        kind: EntryType,
        major: u32,
        minor: u32,
        mode: u32,
    ) -> &mut Self {
        let mut h = header(kind, mode, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.append(h, path, &[])
    }

    pub(crate) fn fifo(&mut self, path: &str, mode: u32) -> &mut Self {
        self.append(header(EntryType::Fifo, mode, 0), path, &[])
    }

    /// A member with a name (and link name) as raw bytes: absolute paths, `..`.
    pub(crate) fn raw(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: Option<&[u8]>,
        data: &[u8],
    ) -> &mut Self {
        let mut h = header(kind, 0o644, data.len() as u64);
        set_raw(&mut h.as_old_mut().name, name);
        if let Some(link) = link {
            set_raw(&mut h.as_old_mut().linkname, link);
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// The archive with its end-of-archive blocks.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

pub(crate) fn compress(format: ArchiveFormat, tar: &[u8]) -> Vec<u8> {
    match format {
        ArchiveFormat::Tar | ArchiveFormat::Img => tar.to_vec(),
        ArchiveFormat::Gzip | ArchiveFormat::ImgGzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        ArchiveFormat::Xz | ArchiveFormat::ImgXz => {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        ArchiveFormat::Zstd | ArchiveFormat::ImgZstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

#[test]
fn pax_record_length_counts_itself() {
    let r = pax_record("SCHILY.xattr.user.a", b"b");
    let text = String::from_utf8(r.clone()).unwrap();
    let (len, _) = text.split_once(' ').unwrap();
    assert_eq!(len.parse::<usize>().unwrap(), r.len());
    // Crossing a digit boundary: a 9-byte body needs a 2-digit length (11 in all).
    assert_eq!(pax_record("k", b"12345").len(), 11);
}
