//! The kernel modules `pureboot-image` puts in the initramfs and pi-init loads: the lists'
//! format and the alias table's, each with its writer (the image) and its parser (pi-init).
//!
//! A list holds one module a line, each after the modules it needs, so a reader has the
//! dependency graph without opening a module file:
//!
//! ```text
//! # comment
//! <when> <path> <bytes> <needs> [<parameters>]
//! start /lib/modules/6.1.0-56-arm64/kernel/drivers/net/net_failover.ko 28672 failover
//! start /lib/modules/6.1.0-56-arm64/kernel/drivers/net/virtio_net.ko 110592 net_failover napi_tx=1
//! device /lib/modules/6.1.0-56-arm64/kernel/drivers/net/usb/smsc95xx.ko 61440 usbnet,selftests
//! ```
//!
//! - `<when>`: `start` = load it (when the list is loaded); `device` = load it only when a
//!   device present asks for it by modalias (see [`Aliases`]), or when a module to load
//!   needs it.
//! - `<path>`: the module file in the initramfs, absolute, uncompressed. The module's name is
//!   its file name up to the first `.`, with `-` read as `_` ([`module_name`]).
//! - `<bytes>`: the file's size: the loader's estimate of its load time, without a stat.
//! - `<needs>`: names of earlier lines this module needs loaded first, comma separated
//!   (direct dependencies and `pre:` soft dependencies on the same list), or `-` for none.
//!   Dependencies outside the list are built in or on a list loaded before.
//! - `<parameters>`: the rest of the line, for finit_module(2).
//!
//! The alias table (`modules.alias`) uses the kernel's syntax, `alias <pattern> <module>`,
//! limited to modules on the list; patterns hold `*`, `?` and `[...]` as fnmatch(3) reads them.

use std::collections::HashMap;

/// Loaded at start: the NIC driver, the NFS client, overlayfs, drivers by modalias.
pub const LIST_PATH: &str = "/etc/pureboot/modules";
/// Loaded when a boot needs a disk filesystem (the image overlay's ext4, a local root).
pub const DISK_LIST_PATH: &str = "/etc/pureboot/modules.disk";
/// Modalias patterns of the `device` modules on [`LIST_PATH`].
pub const ALIAS_PATH: &str = "/etc/pureboot/modules.alias";

/// When a listed module is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// With its list.
    Start,
    /// When a device asks for it by modalias, or a module being loaded needs it.
    Device,
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::Start => "start",
            When::Device => "device",
        }
    }
}

/// One line of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub when: When,
    /// Absolute path in the initramfs.
    pub path: String,
    /// File size.
    pub bytes: u64,
    /// Indices of earlier entries to load first.
    pub needs: Vec<usize>,
    /// Module parameters, space separated (`""` when none).
    pub params: String,
}

impl Entry {
    pub fn name(&self) -> String {
        module_name(&self.path)
    }
}

/// `/lib/modules/x/kernel/fs/nfs/nfs-acl.ko` -> `nfs_acl`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or_default();
    normalize(file.split('.').next().unwrap_or_default())
}

/// The kernel's spelling of a module name or alias: `-` and `_` are one character
/// (outside `[...]` classes, where `-` makes a range).
pub fn normalize(name: &str) -> String {
    let mut in_class = false;
    name.chars()
        .map(|c| match c {
            '[' => {
                in_class = true;
                c
            }
            ']' => {
                in_class = false;
                c
            }
            '-' if !in_class => '_',
            c => c,
        })
        .collect()
}

/// The list's text: `header` (each line prefixed with `# `), then one line per entry.
/// Refuses what the parser could not read back: a path that is not absolute or holds
/// whitespace, a name given twice, a need that is not an earlier entry.
pub fn write(header: &str, entries: &[Entry]) -> Result<String, String> {
    let mut text: String = header.lines().map(|l| format!("# {l}\n")).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let name = e.name();
        if !e.path.starts_with('/') || e.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{:?}: not an absolute path without spaces", e.path));
        }
        if name.is_empty() || name.contains(',') {
            return Err(format!("{:?}: no module name, or one with a comma", e.path));
        }
        if let Some(j) = seen.insert(name.clone(), i) {
            return Err(format!(
                "{name} is listed twice (lines {} and {})",
                j + 1,
                i + 1
            ));
        }
        if e.params.contains(['\n', '\r']) {
            return Err(format!("{name}: parameters span lines"));
        }
        let mut needs = Vec::new();
        for &n in &e.needs {
            let Some(dep) = entries.get(n).filter(|_| n < i) else {
                return Err(format!("{name} needs entry {n}, which is not before it"));
            };
            let dep = dep.name();
            if !needs.contains(&dep) {
                needs.push(dep);
            }
        }
        let needs = if needs.is_empty() {
            "-".to_string()
        } else {
            needs.join(",")
        };
        text += &format!("{} {} {} {needs}", e.when.as_str(), e.path, e.bytes);
        let params = e.params.split_whitespace().collect::<Vec<_>>().join(" ");
        if !params.is_empty() {
            text += " ";
            text += &params;
        }
        text.push('\n');
    }
    Ok(text)
}

/// Parse a list. Never fails: a line it cannot read is left out with a warning (naming the
/// line), and a need naming no earlier line is dropped with a warning, so every entry's
/// needs are earlier entries and the graph has no cycle.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<String>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut warnings = Vec::new();
    // Latest line first: a name given twice means its latest line.
    let mut by_name: Vec<(String, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, &by_name) {
            Ok((entry, unknown)) => {
                for u in unknown {
                    warnings.push(format!(
                        "line {}: needs {u:?}, which no earlier line is; ignored",
                        n + 1
                    ));
                }
                by_name.push((entry.name(), entries.len()));
                entries.push(entry);
            }
            Err(why) => warnings.push(format!("line {}: {why}; skipped", n + 1)),
        }
    }
    (entries, warnings)
}

/// One line, and the needs it names that no earlier line is.
fn parse_line<'a>(
    line: &'a str,
    by_name: &[(String, usize)],
) -> Result<(Entry, Vec<&'a str>), String> {
    let mut fields = line.split_whitespace();
    let when = match fields.next() {
        Some("start") => When::Start,
        Some("device") => When::Device,
        other => return Err(format!("{other:?} is neither start nor device")),
    };
    let path = fields.next().ok_or("no path")?;
    if !path.starts_with('/') || module_name(path).is_empty() {
        return Err(format!("{path:?} is not an absolute module path"));
    }
    let bytes = fields.next().ok_or("no size")?;
    let bytes = bytes
        .parse()
        .map_err(|_| format!("size {bytes:?} is not a number"))?;
    let needs_field = fields.next().ok_or("no needs (- for none)")?;
    let mut needs = Vec::new();
    let mut unknown = Vec::new();
    for name in needs_field
        .split(',')
        .filter(|n| !n.is_empty() && *n != "-")
    {
        let name_n = normalize(name);
        match by_name.iter().rev().find(|(n, _)| *n == name_n) {
            Some(&(_, i)) if !needs.contains(&i) => needs.push(i),
            Some(_) => {}
            None => unknown.push(name),
        }
    }
    let params = fields.collect::<Vec<_>>().join(" ");
    Ok((
        Entry {
            when,
            path: path.to_string(),
            bytes,
            needs,
            params,
        },
        unknown,
    ))
}

/// Module aliases: patterns (modaliases such as `usb:v0424pEC00d*dc*…`, or names such as
/// `fs-ext4`) and the module each names, in file order, both sides [`normalize`]d.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Aliases {
    entries: Vec<(String, String)>,
}

impl Aliases {
    /// `alias <pattern> <module>` lines (the kernel's `modules.alias`, or the initramfs's
    /// table); anything else is skipped.
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

    /// `(pattern, module)` pairs, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(a, m)| (a.as_str(), m.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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

    /// The table as text: `header` as `# ` lines, then `alias <pattern> <module>` lines.
    /// Pairs with whitespace in them (which could not be read back) are left out.
    pub fn write(&self, header: &str) -> String {
        let mut text: String = header.lines().map(|l| format!("# {l}\n")).collect();
        for (pattern, module) in &self.entries {
            let spaced = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace());
            if !spaced(pattern) && !spaced(module) {
                text += &format!("alias {pattern} {module}\n");
            }
        }
        text
    }
}

/// fnmatch(3) without flags, as kmod matches aliases: `*` any run, `?` any byte,
/// `[abc]`, `[a-z]`, `[!x]`/`[^x]` one byte of a class (`]` first is a member; an unclosed
/// `[` is a literal), `\x` a literal `x`. Time is bounded by pattern length × text length:
/// only the last `*` is ever backtracked to, which is enough since a later `*` can absorb
/// whatever an earlier one would have.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after a mismatch: the pattern after the last `*`, the text it
    // resumes at.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        if let Some(step) = step(pattern, p, text[t]) {
            match step {
                Step::Star => {
                    resume = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                Step::Match(len) => {
                    p += len;
                    t += 1;
                    continue;
                }
                Step::Mismatch => {}
            }
        }
        match resume {
            Some((after_star, from)) => {
                // Let the `*` take one more byte.
                resume = Some((after_star, from + 1));
                p = after_star;
                t = from + 1;
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*')
}

enum Step {
    Star,
    /// Matched one text byte with this many pattern bytes.
    Match(usize),
    Mismatch,
}

/// What the pattern at `p` does with the text byte `c` (`None`: the pattern is used up).
fn step(pattern: &[u8], p: usize, c: u8) -> Option<Step> {
    let rest = pattern.get(p..)?;
    let (&first, after) = rest.split_first()?;
    Some(match first {
        b'*' => Step::Star,
        b'?' => Step::Match(1),
        b'[' => match class_end(after) {
            Some(end) if class_matches(&after[..end], c) => Step::Match(end + 2),
            Some(_) => Step::Mismatch,
            None if c == b'[' => Step::Match(1),
            None => Step::Mismatch,
        },
        b'\\' => match after.first() {
            Some(&lit) if lit == c => Step::Match(2),
            Some(_) => Step::Mismatch,
            None if c == b'\\' => Step::Match(1),
            None => Step::Mismatch,
        },
        lit if lit == c => Step::Match(1),
        _ => Step::Mismatch,
    })
}

/// Index in `body` (what follows a `[`) of the `]` closing the class.
fn class_end(body: &[u8]) -> Option<usize> {
    let start = usize::from(matches!(body.first(), Some(b'!' | b'^')));
    // A `]` right at the start is a member, not the end.
    let from = start + usize::from(body.get(start) == Some(&b']'));
    body.get(from..)?
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
        match (members.get(i + 1), members.get(i + 2)) {
            (Some(b'-'), Some(&hi)) => {
                hit |= (members[i]..=hi).contains(&c);
                i += 3;
            }
            _ => {
                hit |= members[i] == c;
                i += 1;
            }
        }
    }
    hit != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(when: When, path: &str, bytes: u64, needs: &[usize], params: &str) -> Entry {
        Entry {
            when,
            path: path.into(),
            bytes,
            needs: needs.to_vec(),
            params: params.into(),
        }
    }

    fn sample() -> Vec<Entry> {
        let k = "/lib/modules/6.1.0-56-arm64/kernel";
        vec![
            entry(
                When::Start,
                &format!("{k}/net/core/failover.ko"),
                17000,
                &[],
                "",
            ),
            entry(
                When::Start,
                &format!("{k}/drivers/net/net_failover.ko"),
                28000,
                &[0],
                "",
            ),
            entry(
                When::Start,
                &format!("{k}/drivers/net/virtio_net.ko"),
                108000,
                &[1],
                "napi_tx=1  foo=bar",
            ),
            entry(
                When::Device,
                &format!("{k}/drivers/net/mii.ko"),
                9000,
                &[],
                "",
            ),
            entry(
                When::Device,
                &format!("{k}/drivers/net/usb/usbnet.ko"),
                50000,
                &[3],
                "",
            ),
            entry(
                When::Device,
                &format!("{k}/drivers/net/usb/smsc95xx.ko"),
                60000,
                &[4, 3, 0],
                "",
            ),
        ]
    }

    #[test]
    fn written_list_reads_back_the_same() {
        let list = sample();
        let text = write("written by a test\nsecond line", &list).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# written by a test");
        assert!(
            lines[4].starts_with("start /lib/modules/6.1.0-56-arm64/kernel/drivers/net/virtio_net.ko 108000 net_failover napi_tx=1 foo=bar"),
            "{}",
            lines[4]
        );
        assert!(lines[2].ends_with("failover.ko 17000 -"), "{}", lines[2]);
        assert!(
            lines[7].ends_with("smsc95xx.ko 60000 usbnet,mii,failover"),
            "{}",
            lines[7]
        );
        let (back, warnings) = parse(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        let mut want = list;
        want[2].params = "napi_tx=1 foo=bar".into();
        assert_eq!(back, want);
        assert_eq!(back[5].name(), "smsc95xx");
    }

    #[test]
    fn writer_refuses_what_cannot_be_read_back() {
        let mut list = sample();
        list[1].needs = vec![2];
        assert!(write("", &list).unwrap_err().contains("not before it"));
        let mut list = sample();
        list[0].path = "relative/failover.ko".into();
        assert!(write("", &list).is_err());
        let mut list = sample();
        list[0].path = "/with space/failover.ko".into();
        assert!(write("", &list).is_err());
        let mut list = sample();
        list[0].path = "/k/a,b.ko".into();
        assert!(write("", &list).unwrap_err().contains("comma"));
        let mut list = sample();
        list.push(list[4].clone());
        assert!(write("", &list).unwrap_err().contains("twice"));
        let mut list = sample();
        list[2].params = "a=1\nstart /x.ko 1 -".into();
        assert!(write("", &list).is_err());
        assert_eq!(write("", &[]).unwrap(), "");
    }

    #[test]
    fn parser_skips_bad_lines_and_unknown_needs_with_warnings() {
        let text = "# header\n\
            \n\
            start /k/a.ko 10 -\n\
            later /k/b.ko 10 -\n\
            start k/c.ko 10 -\n\
            start /k/d.ko ten -\n\
            start /k/e.ko 10\n\
            device /k/f-g.ko 20 a,zz,e,a,,\n\
            start /k/h.ko 30 f_g,h  x=1\t y=2 \n\
            start /k/.ko 1 -\n\
            start\n";
        let (list, warnings) = parse(text);
        let names: Vec<String> = list.iter().map(Entry::name).collect();
        assert_eq!(names, ["a", "f_g", "h"]);
        assert_eq!(list[1].needs, [0], "unknown and repeated needs dropped");
        assert_eq!(list[1].when, When::Device);
        assert_eq!(list[2].needs, [1], "its own name is not an earlier line");
        assert_eq!(list[2].params, "x=1 y=2");
        assert_eq!(warnings.len(), 9, "{warnings:#?}");
        assert!(warnings[0].starts_with("line 4:"), "{}", warnings[0]);
        assert!(warnings.iter().any(|w| w.contains("\"zz\"")));
        assert!(warnings.iter().any(|w| w.contains("\"h\"")));
    }

    #[test]
    fn parser_survives_hostile_bytes() {
        let nasty = [
            "start / 1 -",
            "start /\u{0}.ko 18446744073709551616 -",
            "device /x.ko 1 ,,,,",
            "start /x.ko 1 x,x,x",
            "start /y.ko -1 -",
            "\u{feff}start /z.ko 1 -",
            "start /a.b.c.ko 1 - \u{7f}",
            "start //// 1 -",
            "start /ü.ko 1 ü",
        ];
        for line in nasty {
            let (list, _) = parse(line);
            for (i, e) in list.iter().enumerate() {
                assert!(e.needs.iter().all(|&n| n < i), "{line:?}");
            }
        }
        let long = "start /m.ko 1 -\n".repeat(10_000);
        assert_eq!(parse(&long).0.len(), 10_000);
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(module_name("/x/nfs-acl.ko"), "nfs_acl");
        assert_eq!(module_name("/x/nfs_acl.ko.xz"), "nfs_acl");
        assert_eq!(module_name("nfs"), "nfs");
        assert_eq!(module_name("/x/"), "");
        assert_eq!(normalize("crypto-crc32c"), "crypto_crc32c");
        assert_eq!(normalize("tty[0-9]-x"), "tty[0-9]_x");
    }

    #[test]
    fn alias_table_reads_writes_and_looks_up() {
        let aliases = Aliases::parse(
            "alias crypto-crc32c crc32c_generic\n\
             alias crc32c crc32c_generic\n\
             # comment\n\
             alias crypto-crc32c crc32c-arm64\n\
             alias\n\
             alias lonely\n\
             softdep x pre: y\n\
             alias crypto-crc32c-generic crc32c_generic\n",
        );
        assert_eq!(aliases.len(), 4);
        assert_eq!(
            aliases.lookup("crypto-crc32c"),
            ["crc32c_generic", "crc32c_arm64"]
        );
        assert_eq!(aliases.lookup("crypto_crc32c_generic"), ["crc32c_generic"]);
        assert!(aliases.lookup("crypto-crc").is_empty());
        let text = aliases.write("for a test");
        assert!(text.starts_with("# for a test\nalias crypto_crc32c crc32c_generic\n"));
        assert_eq!(Aliases::parse(&text), aliases);
        let spaced = Aliases::from_pairs([("a b".to_string(), "m".to_string())]);
        assert_eq!(spaced.write(""), "");
    }

    #[test]
    fn wildcard_patterns_match_like_fnmatch() {
        let aliases = Aliases::parse(
            "alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci\n\
             alias of:N*T*Cbrcm,bcm2711-genet-v5C* genet\n\
             alias usb:v0424pEC00d*dc*dsc*dp*ic*isc*ip*in* smsc95xx\n\
             alias usb:v*p*d*dc*dsc*dp*ic02isc06ip00in* cdc_ether\n\
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
        assert_eq!(
            aliases.lookup("usb:v0424pEC00d0200dcFFdsc00dp02icFFisc00ip00in00"),
            ["smsc95xx"]
        );
        assert_eq!(
            aliases.lookup("usb:v0525pA4A2d0333dc02dsc00dp00ic02isc06ip00in00"),
            ["cdc_ether"]
        );
        assert!(aliases
            .lookup("pci:v00001AF4d00001041sv0sd0bc02sc00i00")
            .is_empty());
        assert_eq!(aliases.lookup("tty7"), ["vt_fake"]);
        assert!(aliases.lookup("ttyS").is_empty());
        assert_eq!(aliases.lookup("snd1x"), ["sound_fake"]);
        assert!(aliases.lookup("sndax").is_empty());
    }

    /// fnmatch by dynamic programming: slow, obviously right, the reference.
    fn reference(p: &[u8], t: &[u8]) -> bool {
        // can[i][j]: pattern from i matches text from j.
        let mut can = vec![vec![false; t.len() + 1]; p.len() + 1];
        can[p.len()][t.len()] = true;
        for i in (0..p.len()).rev() {
            for j in (0..=t.len()).rev() {
                can[i][j] = match p[i] {
                    b'*' => can[i + 1][j] || (j < t.len() && can[i][j + 1]),
                    _ => {
                        j < t.len()
                            && match step(p, i, t[j]) {
                                Some(Step::Match(len)) => can[i + len][j + 1],
                                _ => false,
                            }
                    }
                };
            }
        }
        can[0][0]
    }

    #[test]
    fn glob_agrees_with_the_reference() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("**", "abc", true),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYcZ", false),
            ("a*b*c*", "abcabc", true),
            ("*ab*ab", "abab", true),
            ("*aab", "aaab", true),
            ("?", "", false),
            ("??", "ab", true),
            ("[abc]x", "bx", true),
            ("[]]", "]", true),
            ("[!]]", "a", true),
            ("[!]]", "]", false),
            ("[^a-c]", "d", true),
            ("[a-]", "-", true),
            ("[z-a]", "m", false),
            ("[", "[", true),
            ("[ab", "[ab", true),
            ("[ab", "a", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("\\", "\\", true),
            ("a\\", "a\\", true),
            ("*[0-9]", "ab7", true),
            ("*[0-9]", "ab", false),
        ];
        for &(p, t, want) in cases {
            assert_eq!(glob_match(p.as_bytes(), t.as_bytes()), want, "{p:?} {t:?}");
            assert_eq!(
                reference(p.as_bytes(), t.as_bytes()),
                want,
                "ref {p:?} {t:?}"
            );
        }
        // Exhaustively over a small alphabet, short strings.
        let alphabet = b"a*?[]!-\\";
        let mut pats = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = pats
                .iter()
                .flat_map(|p| {
                    alphabet.iter().map(move |&c| {
                        let mut q = p.clone();
                        q.push(c);
                        q
                    })
                })
                .collect();
            pats.extend(longer);
            pats.dedup();
        }
        let texts: Vec<&[u8]> = vec![b"", b"a", b"aa", b"a]", b"[a", b"-", b"a*", b"!a\\", b"ba"];
        for p in &pats {
            for t in &texts {
                assert_eq!(glob_match(p, t), reference(p, t), "{:?} {:?}", p, t);
            }
        }
    }

    #[test]
    fn glob_is_not_exponential() {
        let p = "*a".repeat(40) + "b";
        let t = "a".repeat(4000);
        assert!(!glob_match(p.as_bytes(), t.as_bytes()));
    }
}
