//! Archive format from the first bytes, never the file name: tar, or tar inside gzip, xz
//! or zstd.

use std::io::{self, BufRead, Read};

use serde::Serialize;

pureboot_contract::named_enum! {
    /// Serialized (import summaries) as the lowercase variant (`gzip`); shown to people as
    /// the file kind (`tar.gz`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ArchiveFormat: "archive format" {
        Tar = "tar",
        Gzip = "tar.gz",
        Xz = "tar.xz",
        Zstd = "tar.zst",
    }
}

const GZIP: &[u8] = &[0x1f, 0x8b];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2: &[u8] = b"BZh";

/// Detects the format from the start of the stream (at least 512 bytes unless it is shorter).
pub(crate) fn detect(head: &[u8]) -> Result<ArchiveFormat, String> {
    if head.is_empty() {
        return Err("empty archive".into());
    }
    if head.starts_with(GZIP) {
        return Ok(ArchiveFormat::Gzip);
    }
    if head.starts_with(XZ) {
        return Ok(ArchiveFormat::Xz);
    }
    if head.starts_with(ZSTD) {
        return Ok(ArchiveFormat::Zstd);
    }
    if head.starts_with(BZIP2) {
        return Err("bzip2 is not supported: use tar, tar.gz, tar.xz or tar.zst".into());
    }
    if looks_like_tar(head) {
        return Ok(ArchiveFormat::Tar);
    }
    Err("not a tar archive (nor gzip, xz or zstd compressed tar)".into())
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

/// The decompressed tar stream. Concatenated gzip members (pigz) and xz streams are read
/// to the end like their command-line tools do.
pub(crate) fn decoder<'a, R: BufRead + Send + 'a>(
    format: ArchiveFormat,
    input: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match format {
        ArchiveFormat::Tar => Box::new(input),
        ArchiveFormat::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        ArchiveFormat::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(input)),
        ArchiveFormat::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic_not_name() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]).unwrap(), ArchiveFormat::Gzip);
        assert_eq!(
            detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]).unwrap(),
            ArchiveFormat::Xz
        );
        assert_eq!(
            detect(&[0x28, 0xb5, 0x2f, 0xfd, 1]).unwrap(),
            ArchiveFormat::Zstd
        );
        assert!(detect(b"BZh91AY").unwrap_err().contains("bzip2"));
        assert!(detect(b"").unwrap_err().contains("empty"));
        assert!(detect(&[0u8; 1024]).is_err());
        assert!(detect(b"hello world, certainly not a tarball").is_err());
    }

    #[test]
    fn detects_ustar_and_v7_headers() {
        let mut header = tar::Header::new_ustar();
        header.set_path("etc/hostname").unwrap();
        header.set_size(0);
        header.set_cksum();
        assert_eq!(detect(header.as_bytes()).unwrap(), ArchiveFormat::Tar);

        let mut old = tar::Header::new_old();
        old.set_path("etc/hostname").unwrap();
        old.set_size(0);
        old.set_cksum();
        assert_eq!(detect(old.as_bytes()).unwrap(), ArchiveFormat::Tar);
        // The same header with a wrong checksum is not a tar archive.
        let mut bytes = old.as_bytes().to_vec();
        bytes[0] ^= 1;
        assert!(detect(&bytes).is_err());
    }
}
