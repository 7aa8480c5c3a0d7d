//! Archive member names, checked before anything touches the disk. A name becomes a list
//! of plain components relative to the target; the only rewriting is dropping `.` (so a
//! leading `./` is stripped) and empty components. Absolute names and `..` are refused,
//! never "fixed", because an archive that carries them was not made as a root image.

/// Path components of an entry, relative to the image root; empty means the root itself.
pub(crate) type Components = Vec<Vec<u8>>;

pub(crate) fn sanitize(raw: &[u8]) -> Result<Components, String> {
    if raw.is_empty() {
        return Err("empty name".into());
    }
    if raw[0] == b'/' {
        return Err("absolute path".into());
    }
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("'..' component".into()),
            name => out.push(name.to_vec()),
        }
    }
    Ok(out)
}

/// Whether a symlink in directory `dir_depth` levels below the root, with this target,
/// points outside the image: absolute, or climbing above the root with `..`.
pub(crate) fn symlink_escapes(dir_depth: usize, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return true;
    }
    let mut depth = dir_depth as isize;
    for comp in target.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

pub(crate) fn display(comps: &[Vec<u8>]) -> String {
    if comps.is_empty() {
        return ".".into();
    }
    String::from_utf8_lossy(&comps.join(&b'/')).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw: &str) -> Result<Vec<String>, String> {
        sanitize(raw.as_bytes()).map(|c| {
            c.into_iter()
                .map(|p| String::from_utf8(p).unwrap())
                .collect()
        })
    }

    #[test]
    fn sanitize_strips_dot_and_refuses_escapes() {
        assert_eq!(parts("./etc/hostname").unwrap(), ["etc", "hostname"]);
        assert_eq!(parts("./").unwrap(), Vec::<String>::new());
        assert_eq!(parts("usr//lib/./x/").unwrap(), ["usr", "lib", "x"]);
        assert!(parts("/etc/passwd").unwrap_err().contains("absolute"));
        assert!(parts("../x").unwrap_err().contains(".."));
        assert!(parts("a/../../x").unwrap_err().contains(".."));
        assert!(parts("./a/..").unwrap_err().contains(".."));
        assert!(parts("").is_err());
        // A name merely starting with dots is an ordinary name.
        assert_eq!(parts("..hidden").unwrap(), ["..hidden"]);
    }

    #[test]
    fn symlink_escape_is_lexical() {
        assert!(symlink_escapes(0, b"/etc/passwd"));
        assert!(symlink_escapes(0, b"../x"));
        assert!(symlink_escapes(1, b"../../x"));
        assert!(symlink_escapes(1, b"a/../../../x"));
        assert!(!symlink_escapes(2, b"a/../../../x"));
        assert!(!symlink_escapes(1, b"../usr/bin"));
        assert!(!symlink_escapes(0, b"usr/bin/env"));
        assert!(!symlink_escapes(0, b"./x"));
    }
}
