//! A container image built here, for the container scenario (no registry, no network): an OCI
//! image layout archive (`oci-layout`, `index.json`, blobs by sha256) holding one layer with
//! the arm64 busybox as `/bin/busybox`, `/bin/sh` and `/bin/echo`, named
//! `docker.io/library/e2e-busybox:latest` for `ctr image import`. Digests by `sha256sum`
//! (coreutils), the tars by `tar`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::process;

/// The image's name once imported.
pub const IMAGE: &str = "docker.io/library/e2e-busybox:latest";

fn sha256(path: &Path) -> Result<String, String> {
    let out = process::run(Command::new("sha256sum").arg(path))?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| format!("sha256sum {}: no digest", path.display()))
}

/// Moves `file` into `blobs/sha256/<digest>`; its descriptor's digest and size.
fn blob(layout: &Path, file: &Path) -> Result<(String, u64), String> {
    let digest = sha256(file)?;
    let size = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::rename(file, dir.join(&digest)).map_err(|e| e.to_string())?;
    Ok((format!("sha256:{digest}"), size))
}

fn json_blob(layout: &Path, name: &str, v: &serde_json::Value) -> Result<(String, u64), String> {
    let tmp = layout.join(name);
    std::fs::write(&tmp, v.to_string()).map_err(|e| e.to_string())?;
    blob(layout, &tmp)
}

/// The archive, built under `work` from the arm64 `busybox`; returns its path.
pub fn busybox_archive(busybox: &Path, work: &Path) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| format!("building the OCI archive in {}: {e}", work.display());
    let rootfs = work.join("oci-rootfs");
    let layout = work.join("oci-layout");
    let _ = std::fs::remove_dir_all(&rootfs);
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::create_dir_all(rootfs.join("bin")).map_err(io)?;
    std::fs::create_dir_all(&layout).map_err(io)?;
    std::fs::copy(busybox, rootfs.join("bin/busybox")).map_err(io)?;
    for applet in ["sh", "echo", "cat"] {
        symlink("busybox", rootfs.join("bin").join(applet)).map_err(io)?;
    }
    let layer = layout.join("layer.tar");
    process::run(
        Command::new("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer)
            .arg("bin"),
    )?;
    // Uncompressed: the layer's digest is its diff id too.
    let (layer_digest, layer_size) = blob(&layout, &layer)?;
    let (config_digest, config_size) = json_blob(
        &layout,
        "config.json",
        &json!({
            "architecture": "arm64", "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }),
    )?;
    let (manifest_digest, manifest_size) = json_blob(
        &layout,
        "manifest.json",
        &json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer_size}],
        }),
    )?;
    std::fs::write(
        layout.join("index.json"),
        json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest_size,
                "platform": {"architecture": "arm64", "os": "linux"},
                "annotations": {"io.containerd.image.name": IMAGE,
                                "org.opencontainers.image.ref.name": "latest"},
            }],
        })
        .to_string(),
    )
    .map_err(io)?;
    std::fs::write(
        layout.join("oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"}).to_string(),
    )
    .map_err(io)?;
    let archive = work.join("e2e-busybox-oci.tar");
    process::run(
        Command::new("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .args(["oci-layout", "index.json", "blobs"]),
    )?;
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_an_oci_layout_whose_digests_hold() {
        let dir = std::env::temp_dir().join(format!("oci-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("busybox");
        std::fs::write(&fake, b"not really busybox").unwrap();
        let archive = busybox_archive(&fake, &dir).unwrap();
        let listing = process::run(Command::new("tar").arg("-tf").arg(&archive)).unwrap();
        assert!(listing.contains("oci-layout") && listing.contains("index.json"));
        let index: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("oci-layout/index.json")).unwrap(),
        )
        .unwrap();
        let m = index["manifests"][0]["digest"].as_str().unwrap();
        let path = dir
            .join("oci-layout/blobs/sha256")
            .join(m.trim_start_matches("sha256:"));
        assert_eq!(format!("sha256:{}", sha256(&path).unwrap()), m);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
