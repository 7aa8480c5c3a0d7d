//! What a kernel module depends on, read from its own file: the `depends=` entry of its
//! `.modinfo` section (the list depmod turns into modules.dep). Only the ELF header, the
//! section headers, their names and `.modinfo` are read, so a megabyte-sized module costs a
//! few small reads. Lets pi-init load independent modules at the same time.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A section table or string larger than this is not a kernel module's.
const MAX_SECTIONS: usize = 4096;
const MAX_TABLE: u64 = 1 << 20;

/// The module names `path` depends on, normalized (`-` -> `_`).
pub fn depends(path: &Path) -> Result<Vec<String>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    depends_in(|offset, len| {
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    })
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// [`depends`] over any reader of `(offset, length)` ranges (a file, or bytes in the tests).
pub fn depends_in(
    read_at: impl Fn(u64, usize) -> io::Result<Vec<u8>>,
) -> Result<Vec<String>, String> {
    let modinfo = section(&read_at, ".modinfo")?.ok_or("no .modinfo section")?;
    Ok(modinfo
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(normalize)
                .collect()
        })
        .unwrap_or_default())
}

/// A module's name as the kernel keys it: `nfs-acl` and `nfs_acl` are one module.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The contents of the section called `name`, if the file has one.
fn section(
    read_at: &impl Fn(u64, usize) -> io::Result<Vec<u8>>,
    name: &str,
) -> Result<Option<Vec<u8>>, String> {
    let read = |offset: u64, len: u64, what: &str| {
        if len > MAX_TABLE {
            return Err(format!("{what}: {len} bytes, too large for a module"));
        }
        read_at(offset, len as usize).map_err(|e| format!("{what} at {offset}+{len}: {e}"))
    };
    let header = read(0, 64, "ELF header")?;
    if header[..4] != *b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    // Class 2 = 64-bit, data 1 = little-endian: every kernel pi-init runs under.
    if header[4] != 2 || header[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let shoff = u64_at(&header, 0x28);
    let (entsize, count, names_index) = (
        u16_at(&header, 0x3a) as u64,
        u16_at(&header, 0x3c) as usize,
        u16_at(&header, 0x3e) as usize,
    );
    if entsize != 64 || count == 0 || count > MAX_SECTIONS || names_index >= count {
        return Err(format!(
            "bad section table ({count} entries of {entsize} bytes, names in {names_index})"
        ));
    }
    let table = read(shoff, count as u64 * 64, "section headers")?;
    let entry = |i: usize| &table[i * 64..(i + 1) * 64];
    // (name offset, file offset, size) of one section header.
    let fields = |e: &[u8]| (u32_at(e, 0) as usize, u64_at(e, 0x18), u64_at(e, 0x20));
    let (_, names_off, names_size) = fields(entry(names_index));
    let names = read(names_off, names_size, "section names")?;
    for i in 0..count {
        let (name_at, off, size) = fields(entry(i));
        let this = names
            .get(name_at..)
            .and_then(|s| s.split(|&b| b == 0).next())
            .unwrap_or_default();
        if this == name.as_bytes() {
            return read(off, size, name).map(Some);
        }
    }
    Ok(None)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[allow(dead_code)] // the tests' and the fuzz target's
/// A reader over bytes in memory: out of range is an error, as past the end of a file is.
pub fn bytes_reader(data: &[u8]) -> impl Fn(u64, usize) -> io::Result<Vec<u8>> + '_ {
    move |offset, len| {
        usize::try_from(offset)
            .ok()
            .and_then(|start| data.get(start..start.checked_add(len)?))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }
}

#[allow(dead_code)] // the tests' and the fuzz seeds'
/// A minimal 64-bit little-endian ELF with the given sections (for tests and fuzz seeds).
pub fn tiny_elf(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut names = vec![0u8];
    let mut name_at = Vec::new();
    for (name, _) in sections.iter().chain([&(".shstrtab", &[][..])]) {
        name_at.push(names.len() as u32);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let mut out = vec![0u8; 64];
    let mut placed = Vec::new();
    for (_, data) in sections {
        placed.push((out.len() as u64, data.len() as u64));
        out.extend_from_slice(data);
    }
    placed.push((out.len() as u64, names.len() as u64));
    out.extend_from_slice(&names);
    let shoff = out.len() as u64;
    out.extend_from_slice(&[0u8; 64]); // section 0 is the null section
    for (i, (off, size)) in placed.iter().enumerate() {
        let mut e = [0u8; 64];
        e[0..4].copy_from_slice(&name_at[i].to_le_bytes());
        e[0x18..0x20].copy_from_slice(&off.to_le_bytes());
        e[0x20..0x28].copy_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&e);
    }
    let count = placed.len() as u16 + 1;
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    out[0x3c..0x3e].copy_from_slice(&count.to_le_bytes());
    out[0x3e..0x40].copy_from_slice(&(count - 1).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps_of(elf: &[u8]) -> Result<Vec<String>, String> {
        depends_in(bytes_reader(elf))
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let elf = tiny_elf(&[
            (".text", b"code"),
            (
                ".modinfo",
                b"license=GPL\0depends=sunrpc,nfs,dns-resolver\0intree=Y\0",
            ),
        ]);
        assert_eq!(deps_of(&elf).unwrap(), ["sunrpc", "nfs", "dns_resolver"]);
    }

    #[test]
    fn empty_or_absent_depends_is_no_dependencies() {
        let empty = tiny_elf(&[(".modinfo", b"depends=\0name=x\0")]);
        assert!(deps_of(&empty).unwrap().is_empty());
        let none = tiny_elf(&[(".modinfo", b"license=GPL\0")]);
        assert!(deps_of(&none).unwrap().is_empty());
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        assert!(deps_of(b"").is_err());
        assert!(deps_of(&[0u8; 64]).unwrap_err().contains("not an ELF"));
        let no_modinfo = tiny_elf(&[(".text", b"x")]);
        assert!(deps_of(&no_modinfo).unwrap_err().contains("no .modinfo"));
        let good = tiny_elf(&[(".modinfo", b"depends=a\0")]);
        // Every truncation fails cleanly.
        for len in 0..good.len() - 1 {
            let _ = deps_of(&good[..len]);
        }
        let mut big_endian = good.clone();
        big_endian[5] = 2;
        assert!(deps_of(&big_endian).unwrap_err().contains("little-endian"));
        let mut huge = good.clone();
        huge[0x3c..0x3e].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(deps_of(&huge).unwrap_err().contains("bad section table"));
    }

    #[test]
    fn reads_a_real_module_when_the_host_has_one() {
        // The Debian arm64 tree tests/setup.sh unpacks, if present: nfsv4 needs nfs and sunrpc.
        let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/kernel/root/lib/modules");
        let Some(nfsv4) = std::fs::read_dir(&tree)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|kver| kver.path().join("kernel/fs/nfs/nfsv4.ko"))
            .filter(|p| p.exists())
        else {
            eprintln!(
                "SKIP: no unpacked kernel module tree under {} (run tests/setup.sh)",
                tree.display()
            );
            return;
        };
        let deps = depends(&nfsv4).unwrap();
        assert!(
            deps.contains(&"nfs".to_string()) && deps.contains(&"sunrpc".to_string()),
            "{deps:?}"
        );
    }
}
