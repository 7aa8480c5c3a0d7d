//! `modules.softdep`: modules to load before (`pre:`) or after (`post:`) another one.

use std::collections::BTreeMap;

use super::normalize;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SoftDep {
    /// Names or aliases, as written (resolved later through `modules.alias`).
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

/// Parses `softdep <module> pre: a b post: c` lines, keyed by normalized module name.
/// Words before any `pre:`/`post:` are ignored, as kmod does (real files contain
/// `softdep cifs gcm`, which modprobe treats as no dependency).
pub fn parse_modules_softdep(text: &str) -> BTreeMap<String, SoftDep> {
    let mut softdeps: BTreeMap<String, SoftDep> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else { continue };
        let entry = softdeps.entry(normalize(module)).or_default();
        let mut list: Option<&mut Vec<String>> = None;
        for word in words {
            match word {
                "pre:" => list = Some(&mut entry.pre),
                "post:" => list = Some(&mut entry.post),
                name => {
                    if let Some(list) = list.as_deref_mut() {
                        list.push(name.to_string());
                    }
                }
            }
        }
    }
    softdeps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_and_post_lists_accumulate() {
        let text = "# Soft dependencies extracted from modules themselves.\n\
                    softdep ext4 pre: crypto-crc32c\n\
                    softdep jbd2 pre: crypto-crc32c post: crc16 mbcache\n\
                    softdep jbd2 pre: crc-t10dif\n\
                    softdep cifs gcm\n";
        let deps = parse_modules_softdep(text);
        assert_eq!(deps["ext4"].pre, ["crypto-crc32c"]);
        assert!(deps["ext4"].post.is_empty());
        assert_eq!(deps["jbd2"].pre, ["crypto-crc32c", "crc-t10dif"]);
        assert_eq!(deps["jbd2"].post, ["crc16", "mbcache"]);
        assert_eq!(deps["cifs"], SoftDep::default());
    }

    #[test]
    fn module_names_are_normalized() {
        let deps = parse_modules_softdep("softdep mdio-bcm-unimac pre: broadcom\n");
        assert_eq!(deps["mdio_bcm_unimac"].pre, ["broadcom"]);
    }
}
