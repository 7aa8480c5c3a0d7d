//! Link the release binary small: it must stay under 1 MiB in the initramfs.
//!
//! - Strip it at link time. Cargo 1.95 hands rustc `-C strip=debuginfo` for this target even
//!   with `strip = true` in the profile, which leaves ~160 KB of symbols.
//!   `PUREBOOT_KEEP_SYMBOLS=1` keeps them, to see where the bytes go (`nm -S --size-sort -C`).
//! - Fold identical functions (`--icf=all`): the monomorphised copies of generic code (drop
//!   glue, closures, formatting) that compile to the same instructions are kept once (~8 KB).
//!   Rust promises no distinct addresses for distinct functions, and pi-init compares none.

fn main() {
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let musl = std::env::var("TARGET").is_ok_and(|t| t.ends_with("-linux-musl"));
    let keep = std::env::var("PUREBOOT_KEEP_SYMBOLS").is_ok_and(|v| v == "1");
    if release && musl {
        println!("cargo:rustc-link-arg-bins=--icf=all");
        if !keep {
            println!("cargo:rustc-link-arg-bins=--strip-all");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PUREBOOT_KEEP_SYMBOLS");
}
