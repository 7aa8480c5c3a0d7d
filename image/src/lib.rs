//! pureboot-image: what a Pi fetches before pi-init runs — the initramfs (pi-init, kernel
//! modules and their load list) and the per-serial TFTP folder (config.txt, cmdline.txt,
//! kernel, firmware).

pub mod codec;
pub mod cpio;
pub mod dnsmasq;
pub mod initramfs;
pub mod kmod;
pub mod presets;
pub mod tftp;
