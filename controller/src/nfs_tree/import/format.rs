//! What an import was given, from the first bytes, never the file name: a compression
//! (none, gzip, xz, zstd), then inside it a tar archive or a partitioned disk image.

use std::io::{self, BufRead, Read};

use serde::Serialize;

pureboot_contract::named_enum! {
    /// Serialized (import summaries) as the lowercase variant (`gzip`, `imgxz`); shown to
    /// people as the file kind (`tar.gz`, `img.xz`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ArchiveFormat: "archive format" {
        Tar = "tar",
        Gzip = "tar.gz",
        Xz = "tar.xz",
        Zstd = "tar.zst",
        Img = "img",
        ImgGzip = "img.gz",
        ImgXz = "img.xz",
        ImgZstd = "img.zst",
    }
}

/// The outer layer of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

/// What the decompressed stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    Tar,
    /// An MBR or GPT partitioned disk image (a Raspberry Pi OS `*.img`).
    Disk,
}

impl ArchiveFormat {
    pub(crate) fn of(compression: Compression, content: Content) -> ArchiveFormat {
        use ArchiveFormat::*;
        match (content, compression) {
            (Content::Tar, Compression::None) => Tar,
            (Content::Tar, Compression::Gzip) => Gzip,
            (Content::Tar, Compression::Xz) => Xz,
            (Content::Tar, Compression::Zstd) => Zstd,
            (Content::Disk, Compression::None) => Img,
            (Content::Disk, Compression::Gzip) => ImgGzip,
            (Content::Disk, Compression::Xz) => ImgXz,
            (Content::Disk, Compression::Zstd) => ImgZstd,
        }
    }
}

const GZIP: &[u8] = &[0x1f, 0x8b];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2: &[u8] = b"BZh";

/// How many decompressed bytes [`content`] wants to see (an ext4 superblock's magic sits at
/// byte 1080 of a bare file system).
pub(crate) const CONTENT_HEAD: usize = 4096;

/// The compression, from the start of the stream.
pub(crate) fn compression(head: &[u8]) -> Result<Compression, String> {
    if head.is_empty() {
        return Err("empty archive".into());
    }
    if head.starts_with(GZIP) {
        return Ok(Compression::Gzip);
    }
    if head.starts_with(XZ) {
        return Ok(Compression::Xz);
    }
    if head.starts_with(ZSTD) {
        return Ok(Compression::Zstd);
    }
    if head.starts_with(BZIP2) {
        return Err(
            "bzip2 is not supported: use tar, tar.gz, tar.xz, tar.zst or a disk image \
             (.img, .img.gz, .img.xz, .img.zst)"
                .into(),
        );
    }
    Ok(Compression::None)
}

/// What the decompressed stream holds, from its first [`CONTENT_HEAD`] bytes.
pub(crate) fn content(head: &[u8]) -> Result<Content, String> {
    if head.is_empty() {
        return Err("empty archive (nothing after decompression)".into());
    }
    if looks_like_tar(head) {
        return Ok(Content::Tar);
    }
    let boot_signature = head.len() >= 512 && head[510..512] == [0x55, 0xaa];
    if boot_signature && !looks_like_fat_boot_sector(head) {
        return Ok(Content::Disk);
    }
    if head.len() >= 1082 && head[1080..1082] == [0x53, 0xef] {
        return Err(
            "a bare ext2/3/4 file system, not a disk image: no partition table \
                    (import the disk image it came from, or a tar of its files)"
                .into(),
        );
    }
    if boot_signature {
        return Err("a bare FAT file system, not a disk image: no partition table".into());
    }
    Err(
        "neither a tar archive nor a disk image: no partition table (no MBR boot \
         signature 55 AA at byte 510), not gzip, xz or zstd compressed either"
            .into(),
    )
}

/// A FAT volume's boot sector, which also ends in 55 AA: a jump instruction, then its
/// file system type at byte 54 (FAT12/16) or 82 (FAT32). An MBR starts with boot code or
/// zeros and has partition entries there.
pub(crate) fn looks_like_fat_boot_sector(head: &[u8]) -> bool {
    matches!(head[0], 0xeb | 0xe9) && (head[54..57] == *b"FAT" || head[82..87] == *b"FAT32")
}

/// A ustar/GNU magic, or (old v7 archives) a first header whose checksum adds up.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    let block = &head[..512];
    if &block[257..262] == b"ustar" {
        return true;
    }
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                b as u32
            }
        })
        .sum();
    stored == Some(sum)
}

/// The decompressed stream. Concatenated gzip members (pigz) and xz streams are read
/// to the end like their command-line tools do.
pub(crate) fn decoder<'a, R: BufRead + Send + 'a>(
    compression: Compression,
    input: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_by_magic_not_name() {
        assert_eq!(compression(&[0x1f, 0x8b, 8, 0]).unwrap(), Compression::Gzip);
        assert_eq!(
            compression(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]).unwrap(),
            Compression::Xz
        );
        assert_eq!(
            compression(&[0x28, 0xb5, 0x2f, 0xfd, 1]).unwrap(),
            Compression::Zstd
        );
        assert!(compression(b"BZh91AY").unwrap_err().contains("bzip2"));
        assert!(compression(b"").unwrap_err().contains("empty"));
        assert_eq!(compression(&[0u8; 1024]).unwrap(), Compression::None);
    }

    #[test]
    fn content_tells_tar_disk_and_neither() {
        assert!(content(&[0u8; 1024])
            .unwrap_err()
            .contains("no partition table"));
        assert!(content(b"hello world, certainly not a tarball").is_err());
        let mut mbr = vec![0u8; 4096];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert_eq!(content(&mbr).unwrap(), Content::Disk);
        let mut fat = mbr.clone();
        fat[0] = 0xeb;
        fat[82..87].copy_from_slice(b"FAT32");
        assert!(content(&fat).unwrap_err().contains("bare FAT"));
        let mut ext4 = vec![0u8; 4096];
        ext4[1080] = 0x53;
        ext4[1081] = 0xef;
        assert!(content(&ext4).unwrap_err().contains("bare ext2/3/4"));
        assert_eq!(
            ArchiveFormat::of(Compression::Xz, Content::Disk).as_str(),
            "img.xz"
        );
    }

    #[test]
    fn detects_ustar_and_v7_headers() {
        let mut header = tar::Header::new_ustar();
        header.set_path("etc/hostname").unwrap();
        header.set_size(0);
        header.set_cksum();
        assert_eq!(content(header.as_bytes()).unwrap(), Content::Tar);

        let mut old = tar::Header::new_old();
        old.set_path("etc/hostname").unwrap();
        old.set_size(0);
        old.set_cksum();
        assert_eq!(content(old.as_bytes()).unwrap(), Content::Tar);
        // The same header with a wrong checksum is not a tar archive.
        let mut bytes = old.as_bytes().to_vec();
        bytes[0] ^= 1;
        assert!(content(&bytes).is_err());
    }
}
