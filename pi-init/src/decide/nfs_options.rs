//! The NFS mount options of an export (`nfsroot=…,<options>`, `root=nfs:…:<options>`, the
//! controller's `nfs_options`) and of the base image's own mount (`pureboot.base_opts=`),
//! parsed once into [`NfsOptions`]: which NFS versions to try, in preference order, and the
//! options passed through to mount(2). The export's mount and the base image's mount both
//! read the same value.

use std::fmt;

pureboot_contract::named_enum! {
    /// Declared in preference order; the name is what `vers=` takes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum NfsVersion: "NFS version" {
        V4_2 = "4.2",
        V4_1 = "4.1",
        V4_0 = "4.0",
        V3 = "3",
    }
}

/// Preference order.
pub const ALL_VERSIONS: [NfsVersion; 4] = NfsVersion::ALL;

impl NfsVersion {
    pub fn fstype(self) -> &'static str {
        match self {
            NfsVersion::V3 => "nfs",
            _ => "nfs4",
        }
    }
}

/// An option string, parsed: the versions to try and the options kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsOptions {
    /// Never empty, in preference order.
    pub versions: Vec<NfsVersion>,
    /// Passed through to mount(2) after the options pi-init sets itself.
    pub rest: Vec<String>,
}

/// Why an option string cannot be mounted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NfsOptionsError {
    /// `vers=`/`nfsvers=` names a version pi-init does not mount.
    UnsupportedVersion(String),
    /// dracut's `root=nfs4:` with `vers=3`.
    V4OnlyWithV3,
}

impl fmt::Display for NfsOptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NfsOptionsError::UnsupportedVersion(v) => write!(
                f,
                "NFS version {v:?} is not supported (4, {})",
                NfsVersion::NAMES.join(", ")
            ),
            NfsOptionsError::V4OnlyWithV3 => f.write_str("root=nfs4: conflicts with vers=3"),
        }
    }
}

impl std::error::Error for NfsOptionsError {}

impl NfsOptions {
    /// The versions to try, from `vers=`/`nfsvers=` in `options` (pinning one, or all minors
    /// of 4) and dracut's `nfs4:` (`v4_only`); the remaining options are passed through, but
    /// `ro`/`rw`: read-only or not is decided by the overlay mode, not by options.
    pub fn parse(options: Option<&str>, v4_only: bool) -> Result<Self, NfsOptionsError> {
        let mut versions: Vec<NfsVersion> = ALL_VERSIONS.to_vec();
        let mut rest = Vec::new();
        for opt in options
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            let pinned = match opt.split_once('=') {
                Some(("vers" | "nfsvers", v)) => v,
                _ => {
                    if opt != "ro" && opt != "rw" {
                        rest.push(opt.to_string());
                    }
                    continue;
                }
            };
            versions = match pinned {
                "4" => ALL_VERSIONS[..3].to_vec(),
                one => vec![one
                    .parse::<NfsVersion>()
                    .map_err(|_| NfsOptionsError::UnsupportedVersion(one.to_string()))?],
            };
        }
        if v4_only {
            versions.retain(|v| *v != NfsVersion::V3);
            if versions.is_empty() {
                return Err(NfsOptionsError::V4OnlyWithV3);
            }
        }
        Ok(NfsOptions { versions, rest })
    }

    /// Whether these options pin the versions (fewer than all of them).
    pub fn pins_versions(&self) -> bool {
        self.versions.len() < ALL_VERSIONS.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NfsVersion::*;

    /// Extra options, v4 only, then the versions to try and the options kept.
    type VersionCase<'a> = (Option<&'a str>, bool, &'a [NfsVersion], &'a [&'a str]);

    #[test]
    fn versions_from_options() {
        let cases: &[VersionCase] = &[
            (None, false, &[V4_2, V4_1, V4_0, V3], &[]),
            (Some("vers=3,port=2049"), false, &[V3], &["port=2049"]),
            (Some("nfsvers=4"), false, &[V4_2, V4_1, V4_0], &[]),
            (
                Some("vers=4.1, rsize=65536,ro"),
                false,
                &[V4_1],
                &["rsize=65536"],
            ),
            (None, true, &[V4_2, V4_1, V4_0], &[]),
            (Some(",,"), false, &[V4_2, V4_1, V4_0, V3], &[]),
        ];
        for (i, (opts, v4, want_v, want_o)) in cases.iter().enumerate() {
            let o = NfsOptions::parse(*opts, *v4).unwrap();
            assert_eq!(
                (
                    o.versions.as_slice(),
                    o.rest.iter().map(String::as_str).collect::<Vec<_>>()
                ),
                (*want_v, want_o.to_vec()),
                "test[{i}]"
            );
        }
        assert!(NfsOptions::parse(Some("vers=2"), false)
            .unwrap_err()
            .to_string()
            .contains("\"2\""));
        assert_eq!(
            NfsOptions::parse(Some("vers=3"), true),
            Err(NfsOptionsError::V4OnlyWithV3)
        );
    }
}
