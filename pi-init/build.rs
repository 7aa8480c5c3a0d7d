//! Strip the release binary at link time. Cargo 1.95 hands rustc `-C strip=debuginfo` for this
//! target even with `strip = true` in the profile, which leaves ~160 KB of symbols in an
//! initramfs binary that must stay under 1 MiB.

fn main() {
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let musl = std::env::var("TARGET").is_ok_and(|t| t.ends_with("-linux-musl"));
    if release && musl {
        println!("cargo:rustc-link-arg-bins=--strip-all");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
