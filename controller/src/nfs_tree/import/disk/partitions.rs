//! The partition table of a disk image: MBR, or GPT behind a protective MBR. Only what the
//! import needs: each partition's number, byte range and type, every range checked to lie
//! inside the image (a truncated download, or a table pointing past the end, is refused
//! here, before any file system is read). Sectors are 512 bytes, as on every Pi image.

use std::fmt;

pub(crate) const SECTOR: u64 = 512;
/// GPT allows any count; real tables hold 128. More is a hostile table.
const MAX_GPT_ENTRIES: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableKind {
    Mbr,
    Gpt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partition {
    /// 1-based, as Linux numbers them (`…-02` in `root=PARTUUID=`).
    pub number: u32,
    pub start: u64,
    pub len: u64,
    /// The MBR type byte or the GPT type GUID, for messages.
    pub type_label: String,
    /// What Linux calls `PARTUUID`: `<MBR disk id>-<number>` (`8a438930-02`) or the GPT
    /// entry's unique GUID, lowercase.
    pub part_uuid: String,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "partition {} ({}, bytes {}..{})",
            self.number,
            self.type_label,
            self.start,
            self.start + self.len
        )
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the table. `read_at(offset, buf)` fills `buf` from the image; `image_len` is its
/// size in bytes.
pub(crate) fn read_table(
    image_len: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
) -> Result<(TableKind, Vec<Partition>), String> {
    if image_len < SECTOR {
        return Err(format!(
            "{image_len} bytes: too short for a partition table (truncated download?)"
        ));
    }
    let mut mbr = [0u8; 512];
    read_at(0, &mut mbr).map_err(|e| format!("reading the MBR: {e}"))?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Err("no partition table (no MBR boot signature 55 AA at byte 510)".into());
    }
    let entries: Vec<&[u8]> = (0..4).map(|i| &mbr[446 + 16 * i..462 + 16 * i]).collect();
    let (kind, parts) = if entries.iter().any(|e| e[4] == 0xee) {
        (TableKind::Gpt, read_gpt(image_len, read_at)?)
    } else {
        let disk_id = u32_at(&mbr, 440);
        let mut parts = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let (ty, lba, sectors) = (e[4], u32_at(e, 8), u32_at(e, 12));
            if ty == 0 || sectors == 0 {
                continue;
            }
            if matches!(ty, 0x05 | 0x0f | 0x85) {
                // Logical partitions: no Pi image uses them; say so rather than guess.
                log::info!("disk image: extended partition {} ignored", i + 1);
                continue;
            }
            parts.push(Partition {
                number: i as u32 + 1,
                start: lba as u64 * SECTOR,
                len: sectors as u64 * SECTOR,
                type_label: format!("MBR type 0x{ty:02x}"),
                part_uuid: format!("{disk_id:08x}-{:02x}", i + 1),
            });
        }
        (TableKind::Mbr, parts)
    };
    if parts.is_empty() {
        return Err("the partition table lists no partition".into());
    }
    for p in &parts {
        let end = p.start.saturating_add(p.len);
        if end > image_len {
            return Err(format!(
                "{p} ends past the end of the image ({image_len} bytes): the download is \
                 truncated or the table is wrong"
            ));
        }
    }
    Ok((kind, parts))
}

fn read_gpt(
    image_len: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
) -> Result<Vec<Partition>, String> {
    if image_len < 2 * SECTOR {
        return Err("protective MBR but no GPT header (truncated download?)".into());
    }
    let mut header = [0u8; 512];
    read_at(SECTOR, &mut header).map_err(|e| format!("reading the GPT header: {e}"))?;
    if &header[0..8] != b"EFI PART" {
        return Err("protective MBR but no GPT header at LBA 1".into());
    }
    let (table_lba, count, size) = (
        u64_at(&header, 72),
        u32_at(&header, 80),
        u32_at(&header, 84),
    );
    if count > MAX_GPT_ENTRIES || !(128..=4096).contains(&size) || size % 8 != 0 {
        return Err(format!(
            "GPT header: {count} entries of {size} bytes is not a partition table"
        ));
    }
    let table_len = count as u64 * size as u64;
    let table_start = table_lba.saturating_mul(SECTOR);
    if table_start.saturating_add(table_len) > image_len {
        return Err(format!(
            "the GPT entries (bytes {table_start}..) lie past the end of the image \
             ({image_len} bytes): truncated download?"
        ));
    }
    let mut table = vec![0u8; table_len as usize];
    read_at(table_start, &mut table).map_err(|e| format!("reading the GPT entries: {e}"))?;
    let mut parts = Vec::new();
    for (i, e) in table.chunks(size as usize).enumerate() {
        let ty = &e[0..16];
        if ty.iter().all(|&b| b == 0) {
            continue;
        }
        let (first, last) = (u64_at(e, 32), u64_at(e, 40));
        if last < first {
            return Err(format!("GPT entry {}: ends before it starts", i + 1));
        }
        parts.push(Partition {
            number: i as u32 + 1,
            start: first.saturating_mul(SECTOR),
            len: (last - first + 1).saturating_mul(SECTOR),
            type_label: format!("GPT type {}", guid(ty)),
            part_uuid: guid(&e[16..32]),
        });
    }
    Ok(parts)
}

/// A GUID as it is written (mixed-endian first three fields).
fn guid(b: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes(b[0..4].try_into().expect("4")),
        u16::from_le_bytes(b[4..6].try_into().expect("2")),
        u16::from_le_bytes(b[6..8].try_into().expect("2")),
        b[8],
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(img: &[u8]) -> impl FnMut(u64, &mut [u8]) -> std::io::Result<()> + '_ {
        move |at, buf| {
            let at = at as usize;
            buf.copy_from_slice(
                img.get(at..at + buf.len()).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short")
                })?,
            );
            Ok(())
        }
    }

    fn mbr(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut img = vec![0u8; 512];
        img[440..444].copy_from_slice(&0x8a43_8930u32.to_le_bytes());
        for (i, (ty, lba, n)) in entries.iter().enumerate() {
            let e = &mut img[446 + 16 * i..462 + 16 * i];
            e[4] = *ty;
            e[8..12].copy_from_slice(&lba.to_le_bytes());
            e[12..16].copy_from_slice(&n.to_le_bytes());
        }
        img[510] = 0x55;
        img[511] = 0xaa;
        img
    }

    #[test]
    fn mbr_partitions_in_bytes() {
        let mut img = mbr(&[(0x0c, 8, 16), (0x83, 24, 8)]);
        img.resize(32 * 512, 0);
        let (kind, parts) = read_table(img.len() as u64, &mut reader(&img)).unwrap();
        assert_eq!(kind, TableKind::Mbr);
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].number, parts[0].start, parts[0].len),
            (1, 4096, 8192)
        );
        assert_eq!((parts[1].number, parts[1].start), (2, 24 * 512));
        assert_eq!(parts[1].part_uuid, "8a438930-02");
        assert_eq!(
            parts[1].to_string(),
            "partition 2 (MBR type 0x83, bytes 12288..16384)"
        );
    }

    #[test]
    fn past_the_end_and_empty_tables_are_refused() {
        let img = {
            let mut i = mbr(&[(0x83, 8, 100)]);
            i.resize(16 * 512, 0);
            i
        };
        let err = read_table(img.len() as u64, &mut reader(&img)).unwrap_err();
        assert!(err.contains("past the end of the image"), "{err}");
        let none = mbr(&[]);
        let err = read_table(512, &mut reader(&none)).unwrap_err();
        assert!(err.contains("lists no partition"), "{err}");
        let err = read_table(512, &mut reader(&[0u8; 512])).unwrap_err();
        assert!(err.contains("no partition table"), "{err}");
        let err = read_table(100, &mut reader(&[0u8; 100])).unwrap_err();
        assert!(err.contains("too short"), "{err}");
    }

    #[test]
    fn gpt_behind_a_protective_mbr() {
        let mut img = mbr(&[(0xee, 1, 0xffff_ffff)]);
        img.resize(64 * 512, 0);
        let h = 512;
        img[h..h + 8].copy_from_slice(b"EFI PART");
        img[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        img[h + 80..h + 84].copy_from_slice(&4u32.to_le_bytes());
        img[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        // Entry 2 used: type GUID nonzero, LBAs 40..=47.
        let e = 1024 + 128;
        img[e] = 0xaf;
        img[e + 32..e + 40].copy_from_slice(&40u64.to_le_bytes());
        img[e + 40..e + 48].copy_from_slice(&47u64.to_le_bytes());
        let (kind, parts) = read_table(img.len() as u64, &mut reader(&img)).unwrap();
        assert_eq!(kind, TableKind::Gpt);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            (parts[0].number, parts[0].start, parts[0].len),
            (2, 40 * 512, 8 * 512)
        );
        // A huge entry count is not a table.
        img[h + 80..h + 84].copy_from_slice(&100_000u32.to_le_bytes());
        let err = read_table(img.len() as u64, &mut reader(&img)).unwrap_err();
        assert!(err.contains("is not a partition table"), "{err}");
    }
}
