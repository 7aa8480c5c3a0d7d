//! Pure: the answer's image names and volumes, checked before anything is opened. Every
//! name is a plain file in the node's own directory (`nodes/<serial>/` for the persist
//! image, its `volumes/` for a volume), so an answer cannot point a node at another node's
//! files, and every path is one a volume may cover ([`VolumePath`]).

use pureboot_contract::layout::PERSIST_IMAGE;
use pureboot_contract::volumes::{check_image_file, VolumePath, MAX_VOLUMES};
use pureboot_contract::Volume;

/// One volume to mount: `nodes/<serial>/volumes/<image>` at `path` in the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    pub path: VolumePath,
    pub image: String,
}

/// The persist image's file: the answer's, else generation 0 (`persist.img`, what a
/// controller from before generations made).
pub fn persist_image(named: Option<&str>) -> Result<String, String> {
    match named {
        None => Ok(PERSIST_IMAGE.to_string()),
        Some(name) => check_image_file(name)
            .map(|()| name.to_string())
            .map_err(|e| format!("controller's persist_image: {e}")),
    }
}

/// The answer's volumes, checked, parents before what they hold; `Err` names the entry.
pub fn plan(volumes: &[Volume]) -> Result<Vec<VolumePlan>, String> {
    if volumes.len() > MAX_VOLUMES {
        return Err(format!(
            "controller's volumes: {} of them, at most {MAX_VOLUMES}",
            volumes.len()
        ));
    }
    let mut out: Vec<VolumePlan> = Vec::with_capacity(volumes.len());
    for (i, v) in volumes.iter().enumerate() {
        let path =
            VolumePath::parse(&v.path).map_err(|e| format!("controller's volumes[{i}]: {e}"))?;
        check_image_file(&v.image).map_err(|e| format!("controller's volumes[{i}]: {e}"))?;
        if out.iter().any(|o| o.path == path || o.image == v.image) {
            return Err(format!(
                "controller's volumes[{i}]: {path} or {} named twice",
                v.image
            ));
        }
        out.push(VolumePlan {
            path,
            image: v.image.clone(),
        });
    }
    // A parent is a prefix of what it holds, so it sorts first.
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(path: &str, image: &str) -> Volume {
        Volume {
            path: path.into(),
            image: image.into(),
        }
    }

    #[test]
    fn persist_image_defaults_to_generation_0() {
        assert_eq!(persist_image(None).unwrap(), "persist.img");
        assert_eq!(
            persist_image(Some("persist.4.img")).unwrap(),
            "persist.4.img"
        );
        for bad in [
            "../d83add37/persist.img",
            "/persist.img",
            "persist.img/x",
            "",
        ] {
            let e = persist_image(Some(bad)).unwrap_err();
            assert!(e.contains("persist_image"), "{bad}: {e}");
        }
    }

    #[test]
    fn volumes_are_checked_and_ordered_parents_first() {
        let got = plan(&[
            v("/var/lib/rancher", "var-lib-rancher.2.img"),
            v("/var", "var.1.img"),
        ])
        .unwrap();
        let paths: Vec<&str> = got.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["/var", "/var/lib/rancher"]);
        let table = [
            (vec![v("/proc/x", "a.1.img")], "volumes[0]"),
            (
                vec![v("/data", "../../d83add37/volumes/data.1.img")],
                "volumes[0]",
            ),
            (vec![v("/data", "x/data.1.img")], "volumes[0]"),
            (vec![v("/a", "a.1.img"), v("/b", "a.1.img")], "volumes[1]"),
            (vec![v("/a", "a.1.img"), v("/a", "b.1.img")], "volumes[1]"),
        ];
        for (list, entry) in table {
            let e = plan(&list).unwrap_err();
            assert!(e.contains(entry), "{list:?}: {e}");
        }
        let many: Vec<Volume> = (0..=MAX_VOLUMES)
            .map(|i| v(&format!("/d{i}"), &format!("d{i}.1.img")))
            .collect();
        assert!(plan(&many).unwrap_err().contains("at most"));
    }
}
