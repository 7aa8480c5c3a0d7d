//! pi-init's reader of a kernel module's `depends=` (PID 1 parses every module on its list).
//! Any bytes: an answer or an error, never a panic or a huge allocation. And a well-formed
//! module whose `.modinfo` names some modules (taken from the input) must give them back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_init::modinfo::{bytes_reader, depends_in, tiny_elf};

fuzz_target!(|data: &[u8]| {
    let _ = depends_in(bytes_reader(data));

    // Module names as depmod writes them: [a-z0-9_-], no empty ones; '-' reads back as '_'.
    let names: Vec<String> = data
        .split(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-'))
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8(n.to_vec()).unwrap())
        .collect();
    let modinfo = format!("license=GPL\0depends={}\0intree=Y\0", names.join(","));
    let elf = tiny_elf(&[(".text", data), (".modinfo", modinfo.as_bytes())]);
    let got = depends_in(bytes_reader(&elf)).expect("a well-formed module reads");
    let want: Vec<String> = names.iter().map(|n| n.replace('-', "_")).collect();
    assert_eq!(got, want);
});
