//! Turns one tar member into a typed [`EntryPlan`]: what to create, where, and with which
//! metadata. All archive quirks (PAX records, GNU long names, numeric ids) end here; the
//! extractor only ever sees plans.

use std::ffi::CString;
use std::io::{self, Read};

use tar::EntryType;

use super::entry_path::{sanitize, Components};
use super::fsops::MTime;
use super::EntryError;

#[derive(Debug)]
pub(crate) enum EntryKind {
    /// `sparse`: a GNU sparse member, whose holes are kept as holes.
    File {
        size: u64,
        sparse: bool,
    },
    Dir,
    Symlink {
        target: Vec<u8>,
    },
    HardLink {
        target: Components,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// Members that carry nothing for a root tree (global PAX headers, GNU volume labels).
    Ignored {
        why: &'static str,
    },
}

#[derive(Debug)]
pub(crate) struct Meta {
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: MTime,
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

#[derive(Debug)]
pub(crate) struct EntryPlan {
    pub path: Components,
    pub kind: EntryKind,
    pub meta: Meta,
}

const XATTR_PREFIX: &str = "SCHILY.xattr.";

fn invalid(what: &str, e: io::Error) -> EntryError {
    EntryError::Invalid(format!("bad {what} field: {e}"))
}

fn id(value: u64, what: &str) -> Result<u32, EntryError> {
    u32::try_from(value).map_err(|_| EntryError::Invalid(format!("{what} {value} out of range")))
}

pub(crate) fn plan<R: Read>(entry: &mut tar::Entry<R>) -> Result<EntryPlan, EntryError> {
    let path = sanitize(&entry.path_bytes()).map_err(EntryError::Unsafe)?;
    let header = entry.header();
    let entry_type = header.entry_type();
    let mode = header.mode().map_err(|e| invalid("mode", e))? & 0o7777;
    let uid = id(header.uid().map_err(|e| invalid("uid", e))?, "uid")?;
    let gid = id(header.gid().map_err(|e| invalid("gid", e))?, "gid")?;
    let header_mtime = header.mtime().map_err(|e| invalid("mtime", e))?;
    let device = |header: &tar::Header| -> Result<(u32, u32), EntryError> {
        let major = header
            .device_major()
            .map_err(|e| invalid("device major", e))?
            .unwrap_or(0);
        let minor = header
            .device_minor()
            .map_err(|e| invalid("device minor", e))?
            .unwrap_or(0);
        Ok((major, minor))
    };

    let kind = match entry_type {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => EntryKind::File {
            size: entry.size(),
            sparse: entry_type == EntryType::GNUSparse,
        },
        EntryType::Directory => EntryKind::Dir,
        EntryType::Symlink => EntryKind::Symlink {
            target: link_name(entry)?,
        },
        EntryType::Link => {
            let raw = link_name(entry)?;
            let target = sanitize(&raw).map_err(|why| {
                EntryError::Unsafe(format!("hard link target {:?}: {why}", lossy(&raw)))
            })?;
            EntryKind::HardLink { target }
        }
        EntryType::Char => {
            let (major, minor) = device(header)?;
            EntryKind::CharDevice { major, minor }
        }
        EntryType::Block => {
            let (major, minor) = device(header)?;
            EntryKind::BlockDevice { major, minor }
        }
        EntryType::Fifo => EntryKind::Fifo,
        EntryType::XGlobalHeader => EntryKind::Ignored {
            why: "global PAX header",
        },
        EntryType::__Nonexhaustive(b'V') => EntryKind::Ignored {
            why: "volume label",
        },
        other => {
            return Err(EntryError::Invalid(format!(
                "unsupported member type {:?}",
                other.as_byte() as char
            )))
        }
    };

    let mut mtime = MTime {
        secs: header_mtime as i64,
        nanos: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(|e| invalid("PAX", e))? {
        for ext in pax {
            let ext = ext.map_err(|e| invalid("PAX", e))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix(XATTR_PREFIX) {
                let name = CString::new(name).map_err(|_| {
                    EntryError::Invalid(format!("xattr name {name:?} contains NUL"))
                })?;
                xattrs.push((name, ext.value_bytes().to_vec()));
            } else if key.starts_with("GNU.sparse.") {
                // PAX sparse maps live in the member's data, which the tar reader would hand
                // over as content: refuse rather than write a corrupt file.
                return Err(EntryError::Invalid(
                    "PAX-format sparse file (tar -S --format=posix) is not supported; \
                     archive without -S or with --format=gnu"
                        .into(),
                ));
            } else if key == "mtime" {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    mtime = t;
                }
            }
        }
    }

    Ok(EntryPlan {
        path,
        kind,
        meta: Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        },
    })
}

fn link_name<R: Read>(entry: &tar::Entry<R>) -> Result<Vec<u8>, EntryError> {
    match entry.link_name_bytes() {
        Some(name) if !name.is_empty() => Ok(name.into_owned()),
        _ => Err(EntryError::Invalid("link without a target".into())),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// PAX times are decimal seconds with an optional fraction ("1700000000.123456789").
fn parse_pax_time(value: &str) -> Option<MTime> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        let n: u32 = digits.parse().ok()?;
        n * 10u32.pow(9 - digits.len() as u32)
    };
    // A negative time with a fraction counts down from the whole second; rare enough to
    // keep the whole second only.
    Some(if secs < 0 {
        MTime { secs, nanos: 0 }
    } else {
        MTime { secs, nanos }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_time_parses_fractions() {
        assert_eq!(
            parse_pax_time("1700000000"),
            Some(MTime {
                secs: 1_700_000_000,
                nanos: 0
            })
        );
        assert_eq!(
            parse_pax_time("12.5"),
            Some(MTime {
                secs: 12,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time("12.000000001"),
            Some(MTime { secs: 12, nanos: 1 })
        );
        assert_eq!(parse_pax_time("x"), None);
    }
}
