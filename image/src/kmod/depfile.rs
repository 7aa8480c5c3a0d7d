//! `modules.dep` and `modules.builtin`: which module file is which name, and what it needs.

use super::module_name;

/// One line of `modules.dep`: a module file (relative to `lib/modules/<kver>`) and the files
/// it needs, in depmod's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepLine {
    pub path: String,
    pub deps: Vec<String>,
}

/// Parses `modules.dep` (`path: dep dep ...`). Errors name the 1-based line.
pub fn parse_modules_dep(text: &str) -> Result<Vec<DepLine>, (usize, String)> {
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (path, deps) = line
            .split_once(':')
            .ok_or_else(|| (index + 1, format!("no ':' in {line:?}")))?;
        let path = path.trim();
        if module_name(path).is_none() {
            return Err((index + 1, format!("{path:?} is not a .ko file")));
        }
        let deps = deps.split_whitespace().map(str::to_string).collect();
        lines.push(DepLine {
            path: path.to_string(),
            deps,
        });
    }
    Ok(lines)
}

/// Names of the modules built into the kernel, from `modules.builtin` (one path a line).
pub fn parse_modules_builtin(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| module_name(line.trim()))
        .collect()
}

/// Aliases of built-in modules, from `modules.builtin.modinfo` (NUL-separated
/// `module.key=value` records; depmod ships no text form of `modules.builtin.alias`).
pub fn parse_builtin_modinfo_aliases(bytes: &[u8]) -> Vec<(String, String)> {
    bytes
        .split(|b| *b == 0)
        .filter_map(|record| std::str::from_utf8(record).ok())
        .filter_map(|record| {
            let (key, value) = record.split_once('=')?;
            let (module, field) = key.split_once('.')?;
            (field == "alias").then(|| (value.to_string(), module.replace('-', "_")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_lines_keep_order_and_paths() {
        let text = "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz\n\
                    \n\
                    kernel/lib/crc16.ko:\n";
        let lines = parse_modules_dep(text).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].path, "kernel/fs/ext4/ext4.ko.xz");
        assert_eq!(
            lines[0].deps,
            ["kernel/fs/jbd2/jbd2.ko.xz", "kernel/fs/mbcache.ko.xz"]
        );
        assert!(lines[1].deps.is_empty());
    }

    #[test]
    fn malformed_dep_line_names_its_line() {
        let (line, what) = parse_modules_dep("a.ko:\nnot a dep line\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(what.contains("no ':'"), "{what}");
        let (line, _) = parse_modules_dep("kernel/readme.txt: a.ko\n").unwrap_err();
        assert_eq!(line, 1);
    }

    #[test]
    fn builtin_names_and_aliases() {
        assert_eq!(
            parse_modules_builtin("kernel/drivers/pci/pcie-brcmstb.ko\nkernel/fs/ext4/ext4.ko\n"),
            ["pcie_brcmstb", "ext4"]
        );
        let modinfo = b"ext4.alias=fs-ext4\0ext4.license=GPL\0crc32c_generic.alias=crypto-crc32c\0";
        assert_eq!(
            parse_builtin_modinfo_aliases(modinfo),
            [
                ("fs-ext4".to_string(), "ext4".to_string()),
                ("crypto-crc32c".to_string(), "crc32c_generic".to_string())
            ]
        );
    }
}
