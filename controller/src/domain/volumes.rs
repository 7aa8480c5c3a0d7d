//! Volumes as workflows and nodes declare them (`volumes: [{ path: /var/lib/rancher,
//! size_mb: 8192 }]`), checked with the field that is wrong named, and the set a node gets:
//! per path the highest layer's declaration (node, groups, workflow: see
//! [`super::effective`]).

use std::ops::RangeInclusive;

use pureboot_contract::volumes::{VolumePath, MAX_VOLUMES};
use serde::{Deserialize, Serialize};

use super::source::Source;

/// One declared volume, as written (a workflow file, `node set --volume`, the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    pub path: String,
    pub size_mb: u64,
}

/// A volume a node's boot gets: checked, with where its size came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedVolume {
    pub path: VolumePath,
    pub size_mb: u64,
    /// The layer that declared it (`node`, `group <name>`, `workflow <id>`).
    pub from: Source,
}

/// Checks a list of volumes (`field` names it in errors, e.g. `volumes`): each path a
/// [`VolumePath`], each size in `sizes` (MiB), no path twice, at most [`MAX_VOLUMES`].
/// `Err((field, message))` names the entry: `volumes[1].size_mb`.
pub fn check(
    field: &str,
    list: &[VolumeSpec],
    sizes: RangeInclusive<u64>,
) -> Result<Vec<VolumePath>, (String, String)> {
    if list.len() > MAX_VOLUMES {
        return Err((
            field.into(),
            format!("{} volumes: at most {MAX_VOLUMES} per node", list.len()),
        ));
    }
    let mut seen: Vec<VolumePath> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let path = VolumePath::parse(&v.path)
            .map_err(|e| (format!("{field}[{i}].path"), e.to_string()))?;
        if seen.contains(&path) {
            return Err((
                format!("{field}[{i}].path"),
                format!("{path} is declared twice"),
            ));
        }
        if !sizes.contains(&v.size_mb) {
            return Err((
                format!("{field}[{i}].size_mb"),
                format!(
                    "{} MiB: expected {}..={}",
                    v.size_mb,
                    sizes.start(),
                    sizes.end()
                ),
            ));
        }
        seen.push(path);
    }
    Ok(seen)
}

/// The volumes a node gets from its layers, highest first: per path the first layer that
/// declares it wins, in path order, so a volume inside another is mounted after it.
/// Entries that do not parse are left out (every list is checked where it is written).
/// `Err`: more than [`MAX_VOLUMES`] together, and how many.
pub fn effective(layers: &[(Source, &[VolumeSpec])]) -> Result<Vec<PlannedVolume>, String> {
    let mut out: Vec<PlannedVolume> = Vec::new();
    for (from, list) in layers {
        for v in list.iter() {
            let Ok(path) = VolumePath::parse(&v.path) else {
                continue;
            };
            if out.iter().all(|p| p.path != path) {
                out.push(PlannedVolume {
                    path,
                    size_mb: v.size_mb,
                    from: from.clone(),
                });
            }
        }
    }
    if out.len() > MAX_VOLUMES {
        return Err(format!(
            "{} volumes with its groups' and workflow's: at most {MAX_VOLUMES} per node",
            out.len()
        ));
    }
    // A parent is a prefix of what it holds, so it sorts first.
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(path: &str, size_mb: u64) -> VolumeSpec {
        VolumeSpec {
            path: path.into(),
            size_mb,
        }
    }

    #[test]
    fn errors_name_the_field() {
        let sizes = 16..=1024;
        let table = [
            (vec![v("var/lib", 16)], "volumes[0].path", "absolute"),
            (
                vec![v("/data", 16), v("/proc/x", 16)],
                "volumes[1].path",
                "/proc",
            ),
            (vec![v("/a/../b", 16)], "volumes[0].path", ".."),
            (vec![v("/", 16)], "volumes[0].path", "/ itself"),
            (
                vec![v("/data", 8)],
                "volumes[0].size_mb",
                "8 MiB: expected 16..=1024",
            ),
            (vec![v("/data", 2048)], "volumes[0].size_mb", "2048"),
            (
                vec![v("/data", 16), v("/data", 32)],
                "volumes[1].path",
                "twice",
            ),
        ];
        for (list, field, msg) in table {
            let (f, m) = check("volumes", &list, sizes.clone()).unwrap_err();
            assert_eq!(f, field, "{list:?}");
            assert!(m.contains(msg), "{list:?}: {m}");
        }
        let many: Vec<_> = (0..=MAX_VOLUMES)
            .map(|i| v(&format!("/d{i}"), 16))
            .collect();
        let (f, m) = check("volumes", &many, sizes.clone()).unwrap_err();
        assert_eq!(f, "volumes");
        assert!(m.contains("at most 8"), "{m}");
        let ok = check("volumes", &[v("/var/lib/rancher", 1024)], sizes).unwrap();
        assert_eq!(ok[0].as_str(), "/var/lib/rancher");
    }

    #[test]
    fn the_nodes_own_win_per_path_and_parents_mount_first() {
        let node = [v("/var/lib/rancher", 64), v("/srv", 16)];
        let wf = [
            v("/var/lib/rancher", 8192),
            v("/var/lib/kubelet", 1024),
            v("/var", 32),
        ];
        let layers = |node, wf| [(Source::Node, node), (Source::Workflow("w".into()), wf)];
        let got: Vec<(String, u64, String)> = effective(&layers(&node[..], &wf[..]))
            .unwrap()
            .into_iter()
            .map(|p| (p.path.to_string(), p.size_mb, p.from.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("/srv".to_string(), 16, "node".to_string()),
                ("/var".into(), 32, "workflow w".into()),
                ("/var/lib/kubelet".into(), 1024, "workflow w".into()),
                ("/var/lib/rancher".into(), 64, "node".into()),
            ]
        );
        let many: Vec<_> = (0..MAX_VOLUMES).map(|i| v(&format!("/w{i}"), 16)).collect();
        let e = effective(&layers(&[v("/mine", 16)], &many)).unwrap_err();
        assert!(e.contains("9 volumes"), "{e}");
    }
}
