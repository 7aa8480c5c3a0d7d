//! A TFTP folder from an imported base image (`base/<name>` on the export, imported from a
//! disk image): the kernel a model boots is the image's own, from its boot partition
//! (`boot/firmware/`, the contract's `BOOT_FIRMWARE_DIR`), and the initramfs is built from
//! the image's `lib/modules/<version of that kernel>`, so kernel and modules cannot
//! disagree: both change when the image does. The version is read from the kernel file
//! itself (the "Linux version …" banner, in a plain or gzip-compressed image).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pureboot_contract::layout::BOOT_FIRMWARE_DIR;

use super::model::Model;

/// One model's kernel in the image and the version its modules are under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageKernel {
    pub path: PathBuf,
    pub version: String,
}

/// The image's boot partition files, or an error saying what to give instead.
pub fn boot_dir(image: &Path) -> Result<PathBuf> {
    let dir = image.join(BOOT_FIRMWARE_DIR);
    if !dir.is_dir() {
        bail!(
            "--image {}: no {BOOT_FIRMWARE_DIR}/ (a base image imported from a tar has no boot \
             partition): give --kernel, --initramfs and --firmware-dir instead",
            image.display()
        );
    }
    Ok(dir)
}

/// The kernel `model` boots from `image`, with the version of its modules, checked to be
/// in the image's `lib/modules/`.
pub fn kernel_for(image: &Path, model: Model) -> Result<ImageKernel> {
    let boot = boot_dir(image)?;
    let path = model
        .image_kernels()
        .iter()
        .map(|name| boot.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "--image {}: no {} in {} for {}",
                image.display(),
                model.image_kernels().join(" or "),
                boot.display(),
                model.name()
            )
        })?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let version = kernel_version(&bytes)
        .with_context(|| format!("{}: no \"Linux version\" banner found", path.display()))?;
    let modules = image.join("lib/modules").join(&version);
    if !modules.join("modules.dep").is_file() {
        let have: Vec<String> = std::fs::read_dir(image.join("lib/modules"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "{} is Linux {version}, but the image has no {}/modules.dep (it has: {}): the \
             kernel and the modules of this image disagree",
            path.display(),
            modules.display(),
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        );
    }
    Ok(ImageKernel { path, version })
}

const BANNER: &[u8] = b"Linux version ";

/// The release in a kernel image's banner ("Linux version 6.1.0-28-arm64 (…)"), read from
/// the image as it is or gunzipped (arm64 kernels are often shipped gzip-compressed).
pub fn kernel_version(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(256 << 20)
            .read_to_end(&mut plain)
            .ok()?;
        return banner(&plain);
    }
    banner(bytes)
}

fn banner(bytes: &[u8]) -> Option<String> {
    // The first banner followed by a plausible release (the string also appears in
    // format strings without one).
    let mut from = 0;
    while let Some(at) = find(&bytes[from..], BANNER) {
        let start = from + at + BANNER.len();
        let release: Vec<u8> = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_graphic())
            .take(128)
            .copied()
            .collect();
        if release.first().is_some_and(u8::is_ascii_digit) {
            return String::from_utf8(release).ok();
        }
        from = start;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn version_from_plain_and_gzip_kernels() {
        let mut k = vec![0u8; 4096];
        k.extend_from_slice(b"Linux version %s (%s)\0");
        k.extend_from_slice(b"Linux version 6.6.51+rpt-rpi-v8 (serge@raspberrypi.com) #1 SMP\0");
        assert_eq!(kernel_version(&k).as_deref(), Some("6.6.51+rpt-rpi-v8"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&k).unwrap();
        assert_eq!(
            kernel_version(&gz.finish().unwrap()).as_deref(),
            Some("6.6.51+rpt-rpi-v8")
        );
        assert_eq!(kernel_version(b"no banner here"), None);
    }

    #[test]
    fn kernel_and_modules_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path();
        let err = boot_dir(image).unwrap_err().to_string();
        assert!(err.contains("give --kernel"), "{err}");
        let boot = image.join(BOOT_FIRMWARE_DIR);
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(
            boot.join("kernel8.img"),
            b"..Linux version 6.1.0-9-arm64 (x)",
        )
        .unwrap();
        std::fs::write(
            boot.join("kernel_2712.img"),
            b"Linux version 6.1.0-9-2712 (x)",
        )
        .unwrap();
        let err = kernel_for(image, Model::Pi3).unwrap_err().to_string();
        assert!(err.contains("disagree") && err.contains("none"), "{err}");
        std::fs::create_dir_all(image.join("lib/modules/6.1.0-9-arm64")).unwrap();
        std::fs::write(image.join("lib/modules/6.1.0-9-arm64/modules.dep"), "").unwrap();
        let k = kernel_for(image, Model::Pi4).unwrap();
        assert_eq!(
            (k.path, k.version.as_str()),
            (boot.join("kernel8.img"), "6.1.0-9-arm64")
        );
        // The Pi 5 takes its own kernel, whose modules are missing here.
        let err = kernel_for(image, Model::Pi5).unwrap_err().to_string();
        assert!(
            err.contains("6.1.0-9-2712") && err.contains("6.1.0-9-arm64"),
            "{err}"
        );
    }
}
