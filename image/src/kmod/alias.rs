//! `modules.alias`: other names a module answers to (`crypto-crc32c`, `fs-ext4`,
//! `platform:bcmgenet`, device patterns with wildcards).

use super::normalize;

/// Aliases in file order, both sides normalized; patterns may hold `*`, `?` and `[...]`.
#[derive(Debug, Default, Clone)]
pub struct Aliases {
    entries: Vec<(String, String)>,
}

impl Aliases {
    /// Parses `alias <pattern> <module>` lines.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                (words.next()? == "alias").then_some(())?;
                Some((normalize(words.next()?), normalize(words.next()?)))
            })
            .collect();
        Self { entries }
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            entries: pairs
                .into_iter()
                .map(|(a, m)| (normalize(&a), normalize(&m)))
                .collect(),
        }
    }

    /// Every module the name matches, in file order, each once (modprobe loads them all).
    pub fn lookup(&self, name: &str) -> Vec<String> {
        let name = normalize(name);
        let mut found: Vec<String> = Vec::new();
        for (pattern, module) in &self.entries {
            if glob_match(pattern.as_bytes(), name.as_bytes()) && !found.contains(module) {
                found.push(module.clone());
            }
        }
        found
    }
}

/// fnmatch(3) without flags, enough for modalias patterns.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((b'[', rest)) => match (text.split_first(), class_end(rest)) {
            (Some((&c, text_rest)), Some(end)) => {
                class_matches(&rest[..end], c) && glob_match(&rest[end + 1..], text_rest)
            }
            (None, _) => false,
            // An unclosed '[' is a literal.
            (Some((&c, text_rest)), None) => c == b'[' && glob_match(rest, text_rest),
        },
        Some((&literal, rest)) => text.first() == Some(&literal) && glob_match(rest, &text[1..]),
    }
}

/// Index of the `]` closing a class whose body starts at `body[0]`.
fn class_end(body: &[u8]) -> Option<usize> {
    let start = usize::from(matches!(body.first(), Some(b'!' | b'^')));
    // A ']' right at the start is a member, not the end.
    let from = start + usize::from(body.get(start) == Some(&b']'));
    body[from..]
        .iter()
        .position(|&b| b == b']')
        .map(|i| i + from)
}

fn class_matches(class: &[u8], c: u8) -> bool {
    let (negated, members) = match class.split_first() {
        Some((b'!' | b'^', rest)) => (true, rest),
        _ => (false, class),
    };
    let mut i = 0;
    let mut hit = false;
    while i < members.len() {
        if i + 2 < members.len() && members[i + 1] == b'-' {
            hit |= (members[i]..=members[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= members[i] == c;
            i += 1;
        }
    }
    hit != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_alias_finds_all_providers_in_order() {
        let aliases = Aliases::parse(
            "alias crypto-crc32c crc32c_generic\n\
             alias crc32c crc32c_generic\n\
             alias crypto-crc32c crc32c-arm64\n\
             alias crypto-crc32c-generic crc32c_generic\n",
        );
        assert_eq!(
            aliases.lookup("crypto-crc32c"),
            ["crc32c_generic", "crc32c_arm64"]
        );
        // kmod treats '-' and '_' alike.
        assert_eq!(aliases.lookup("crypto_crc32c_generic"), ["crc32c_generic"]);
        assert!(aliases.lookup("crypto-crc").is_empty());
    }

    #[test]
    fn wildcard_patterns_match_like_fnmatch() {
        let aliases = Aliases::parse(
            "alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci\n\
             alias of:N*T*Cbrcm,bcm2711-genet-v5C* genet\n\
             alias usb:v0424pEC00d*dc*dsc*dp*ic*isc*ip*in* smsc95xx\n\
             alias tty[0-9] vt_fake\n\
             alias snd[!a-z]x sound_fake\n",
        );
        assert_eq!(
            aliases.lookup("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"),
            ["virtio_pci"]
        );
        assert_eq!(
            aliases.lookup("of:NethernetT(null)Cbrcm,bcm2711-genet-v5C"),
            ["genet"]
        );
        assert!(aliases
            .lookup("pci:v00001AF4d00001041sv0sd0bc02sc00i00")
            .is_empty());
        assert_eq!(aliases.lookup("tty7"), ["vt_fake"]);
        assert!(aliases.lookup("ttyS").is_empty());
        assert_eq!(aliases.lookup("snd1x"), ["sound_fake"]);
        assert!(aliases.lookup("sndax").is_empty());
    }
}
