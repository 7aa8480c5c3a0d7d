//! The module list and alias table parsers pi-init runs as PID 1 on the initramfs's files:
//! any bytes give entries and warnings, never a panic; every entry's needs are earlier
//! entries (so the loader cannot wait for ever); and a list the writer accepts reads back
//! as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pureboot_contract::modules_list::{parse, write, Aliases};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (entries, _warnings) = parse(&text);
    for (i, e) in entries.iter().enumerate() {
        assert!(e.needs.iter().all(|&n| n < i), "entry {i} needs a later one");
        assert!(e.path.starts_with('/'));
    }
    if let Ok(written) = write("fuzz", &entries) {
        let (again, warnings) = parse(&written);
        assert!(warnings.is_empty(), "{warnings:?}\n{written}");
        assert_eq!(again, entries, "{written}");
    }

    let aliases = Aliases::parse(&text);
    let again = Aliases::parse(&aliases.write("fuzz"));
    // Pairs the writer keeps read back unchanged.
    assert!(again.len() <= aliases.len());
    if let Some(line) = text.lines().next() {
        let _ = aliases.lookup(line);
    }
});
