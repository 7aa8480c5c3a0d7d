//! The kernel command line parser: any bytes (as the kernel would hand them, lossy UTF-8)
//! parse without panicking; every `ip=` value goes through the `ip=` parser too, and
//! tokenising is stable (the tokens, re-joined with quotes, tokenise to themselves).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pi_init::decide::{cmdline, ip_param as net};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = cmdline::parse(&text);
    let _ = parsed.fallback_nfs_root();
    let tokens = cmdline::tokenize(&text);
    for t in &tokens {
        if let Some(v) = t.strip_prefix("ip=") {
            let _ = net::parse_ip_param(v);
        }
        if let Some(v) = t.strip_prefix("nfsroot=") {
            let _ = cmdline::parse_nfsroot(v);
        }
        if let Some(v) = t.strip_prefix("root=") {
            let _ = cmdline::parse_dracut(v);
        }
    }
    // Tokens without quotes or whitespace survive a second pass unchanged.
    let plain: Vec<&String> = tokens
        .iter()
        .filter(|t| !t.is_empty() && !t.contains(|c: char| c == '"' || c.is_whitespace()))
        .collect();
    let joined = plain
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let again = cmdline::tokenize(&joined);
    assert_eq!(
        again.iter().collect::<Vec<_>>(),
        plain,
        "re-tokenising {joined:?}"
    );
});
