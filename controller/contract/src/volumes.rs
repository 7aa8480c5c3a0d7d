//! Volumes: a node's ext4 images, one per declared path, that pi-init loop-mounts at that
//! path inside the new root, outside the overlay (a real local filesystem: a container
//! runtime's overlayfs snapshotter, a database). The rules both sides check:
//!
//! - [`VolumePath`]: where a volume is mounted. Absolute, plain components only (no `..`,
//!   no `.`, no hidden names, no `-` at a component's ends), not `/` nor under the
//!   kernel's and the boot's own trees (`/proc`, `/sys`, `/dev`, `/run`).
//! - [`VolumePath::image_stem`]: the file name the path gives its images, reversibly
//!   (`/var/lib/rancher` -> `var-lib-rancher`, a `-` in a name doubled), so two paths
//!   never share an image.
//! - [`check_image_file`]: what an answer may name as an image: a plain file name in the
//!   node's own directory (pi-init opens nothing else, so a node never mounts another
//!   node's volume).

use std::fmt;

/// At most this many volumes per node: each is a loop device and a mount at every boot.
pub const MAX_VOLUMES: usize = 8;
/// Longest volume path: a mount point, not a place for data in its name.
pub const MAX_PATH_LEN: usize = 200;
/// Trees a volume may not cover: the kernel's (`/proc`, `/sys`, `/dev`) and the runtime
/// state the booted system and pi-init's hand-over put under `/run`.
pub const FORBIDDEN_ROOTS: [&str; 4] = ["proc", "sys", "dev", "run"];

/// A path a volume may be mounted at, checked (see the module's rules).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumePath(String);

/// Why a text is not a [`VolumePath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidVolumePath {
    pub value: String,
    pub why: &'static str,
}

impl fmt::Display for InvalidVolumePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "volume path {:?}: {}", self.value, self.why)
    }
}

impl std::error::Error for InvalidVolumePath {}

fn plain_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

impl VolumePath {
    pub fn parse(s: &str) -> Result<VolumePath, InvalidVolumePath> {
        let bad = |why| InvalidVolumePath {
            value: s.chars().take(MAX_PATH_LEN + 8).collect(),
            why,
        };
        let Some(rest) = s.strip_prefix('/') else {
            return Err(bad("must be absolute (start with /)"));
        };
        if rest.is_empty() {
            return Err(bad("must not be / itself"));
        }
        if s.len() > MAX_PATH_LEN {
            return Err(bad("longer than 200 bytes"));
        }
        for name in rest.split('/') {
            if name.is_empty() {
                return Err(bad("has an empty component (// or a trailing /)"));
            }
            if name == ".." || name == "." {
                return Err(bad("must not hold . or .. components"));
            }
            if !name.bytes().all(plain_name_char) {
                return Err(bad(
                    "components may hold only letters, digits, '.', '_' and '-'",
                ));
            }
            if name.starts_with('.') || name.starts_with('-') || name.ends_with('-') {
                return Err(bad(
                    "a component may not start with '.' or '-' nor end with '-'",
                ));
            }
        }
        let first = rest.split('/').next().unwrap_or_default();
        if FORBIDDEN_ROOTS.contains(&first) {
            return Err(bad("must not be under /proc, /sys, /dev or /run"));
        }
        Ok(VolumePath(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components below `/`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/')
    }

    /// The name its images are made under (`<stem>.<generation>.img`): components joined by
    /// `-`, a `-` inside a component doubled. A component never starts nor ends with `-`,
    /// so the stem reads back to one path only ([`VolumePath::from_stem`]).
    pub fn image_stem(&self) -> String {
        self.components()
            .map(|c| c.replace('-', "--"))
            .collect::<Vec<_>>()
            .join("-")
    }

    /// The path an image stem was made from, if it is one.
    pub fn from_stem(stem: &str) -> Option<VolumePath> {
        let mut path = String::from("/");
        let mut bytes = stem.bytes().peekable();
        while let Some(b) = bytes.next() {
            match (b, bytes.peek()) {
                (b'-', Some(b'-')) => {
                    bytes.next();
                    path.push('-');
                }
                (b'-', _) => path.push('/'),
                (b, _) => path.push(char::from(b)),
            }
        }
        VolumePath::parse(&path)
            .ok()
            .filter(|p| p.image_stem() == stem)
    }
}

impl fmt::Display for VolumePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for VolumePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for VolumePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        VolumePath::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An image file name an answer may carry (`persist.3.img`, `var-lib-rancher.1.img`): a
/// plain name, in the node's own directory, nothing else. `Err` says why not.
pub fn check_image_file(name: &str) -> Result<(), String> {
    let ok = (5..=255).contains(&name.len())
        && name.bytes().all(plain_name_char)
        && !name.starts_with(['.', '-'])
        && name.ends_with(".img");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "image {:?} is not a plain file name ending in .img (letters, digits, '.', '_', '-')",
            name.chars().take(64).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        for ok in [
            "/var/lib/rancher",
            "/srv/db_1",
            "/var/lib/k3s.d",
            "/data",
            "/runner",
        ] {
            assert_eq!(VolumePath::parse(ok).unwrap().as_str(), ok);
        }
        let table = [
            ("var/lib", "absolute"),
            ("/", "/ itself"),
            ("/var/../etc", ". or .."),
            ("/var/./x", ". or .."),
            ("/var//x", "empty component"),
            ("/var/x/", "empty component"),
            ("/proc", "/proc"),
            ("/sys/fs/x", "/proc"),
            ("/dev/x", "/proc"),
            ("/run/k3s", "/proc"),
            ("/var/lib x", "only letters"),
            ("/var/lib/\u{e9}", "only letters"),
            ("/var/.hidden", "start with '.'"),
            ("/var/-x", "start with '.' or '-'"),
            ("/var/x-", "end with '-'"),
        ];
        for (path, why) in table {
            let e = VolumePath::parse(path).unwrap_err().to_string();
            assert!(e.contains(why), "{path}: {e}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert!(VolumePath::parse(&long).is_err());
    }

    #[test]
    fn stems_are_one_to_one() {
        let table = [
            ("/var/lib/rancher", "var-lib-rancher"),
            ("/var/lib-x", "var-lib--x"),
            ("/var-lib/x", "var--lib-x"),
            ("/srv/a.b", "srv-a.b"),
        ];
        for (path, stem) in table {
            let p = VolumePath::parse(path).unwrap();
            assert_eq!(p.image_stem(), stem);
            assert_eq!(VolumePath::from_stem(stem), Some(p));
        }
        for not_a_stem in ["", "-x", "x-", "a---b", "proc", "a b", ".x"] {
            assert_eq!(VolumePath::from_stem(not_a_stem), None, "{not_a_stem}");
        }
    }

    #[test]
    fn image_files_are_plain_names() {
        for ok in ["persist.img", "persist.3.img", "var-lib-rancher.12.img"] {
            assert_eq!(check_image_file(ok), Ok(()));
        }
        for bad in [
            "",
            ".img",
            "../persist.img",
            "a/b.img",
            "/persist.img",
            ".persist.img",
            "persist.img.broken-x",
            "persist",
            "per sist.img",
        ] {
            assert!(check_image_file(bad).is_err(), "{bad}");
        }
        assert!(check_image_file(&format!("{}.img", "a".repeat(252))).is_err());
    }
}
