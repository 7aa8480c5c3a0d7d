//! Image versions and channels, as names: what a base image setting refers to.
//!
//! A setting (node, workflow, `[nfs] default_base_image`) is a string reference: a channel
//! name (`bookworm`: the node follows it) or a version id (`bookworm@3`: pinned). A version
//! is an immutable directory under `base/`; the id is never a directory name (`@` is not
//! allowed in one), so a reference is never ambiguous and pi-init, which only sees the
//! directory an answer names, needs nothing new.

use pureboot_contract::ids::ImageName;

/// A parsed base image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// Follow the channel (or, for a name the registry does not know, the directory of
    /// that name: what every setting meant before versions).
    Channel(String),
    /// One version of a channel, pinned.
    Version { channel: String, seq: u32 },
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let name = |n: &str| {
            ImageName::parse(n)
                .map(|n| n.to_string())
                .map_err(|e| e.to_string())
        };
        match s.split_once('@') {
            None => Ok(ImageRef::Channel(name(s)?)),
            Some((channel, seq)) => {
                let seq: u32 = seq
                    .parse()
                    .ok()
                    .filter(|n| *n > 0 && !seq.starts_with('0'))
                    .ok_or_else(|| {
                        format!("image version {s:?}: the part after '@' must be a number from 1")
                    })?;
                Ok(ImageRef::Version {
                    channel: name(channel)?,
                    seq,
                })
            }
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            ImageRef::Channel(c) | ImageRef::Version { channel: c, .. } => c,
        }
    }
}

/// A version's id: `<channel>@<seq>`.
pub fn version_id(channel: &str, seq: u32) -> String {
    format!("{channel}@{seq}")
}

/// The directory a new version is imported into: a channel's first version keeps the
/// channel's name (what `base/<name>` always was), later ones `<channel>.v<seq>`. `taken`
/// says whether a name is in use (registry or disk); a taken one gets a `-<n>` suffix, so a
/// new version never takes a name an earlier directory had.
pub fn version_dir(channel: &str, seq: u32, taken: &dyn Fn(&str) -> bool) -> String {
    let first = if seq == 1 {
        channel.to_string()
    } else {
        format!("{channel}.v{seq}")
    };
    if !taken(&first) {
        return first;
    }
    (2..)
        .map(|n| format!("{channel}.v{seq}-{n}"))
        .find(|d| !taken(d))
        .expect("an unbounded range finds a free name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_channel_or_version() {
        assert_eq!(
            ImageRef::parse("bookworm"),
            Ok(ImageRef::Channel("bookworm".into()))
        );
        assert_eq!(
            ImageRef::parse("tiny@12"),
            Ok(ImageRef::Version {
                channel: "tiny".into(),
                seq: 12
            })
        );
        for bad in [
            "", "@1", "tiny@", "tiny@0", "tiny@01", "tiny@x", "a/b@1", "t@1@2", "../x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(version_id("tiny", 3), "tiny@3");
    }

    #[test]
    fn version_directories_never_reuse_a_taken_name() {
        let none = |_: &str| false;
        assert_eq!(version_dir("tiny", 1, &none), "tiny");
        assert_eq!(version_dir("tiny", 2, &none), "tiny.v2");
        let taken = |d: &str| matches!(d, "tiny.v2" | "tiny.v2-2");
        assert_eq!(version_dir("tiny", 2, &taken), "tiny.v2-3");
        // Every directory name is one pi-init accepts.
        assert!(ImageName::parse(&version_dir("debian_12.5", 7, &none)).is_ok());
    }
}
