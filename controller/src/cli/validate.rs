//! `workflow validate`: load each file and render it for made-up nodes (one with only what
//! every node has, one with every optional value at its longest), so syntax errors, unknown
//! fields, undefined names and templates over the render limits all show, with file and field.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::print_json;
use crate::config::Config;
use crate::service::after_boot::after_boot_warnings;
use crate::templates::{sample_vars, Templates};
use crate::workflows::{base_path_warning, load_file};

pub fn run(config: &Config, files: &[PathBuf], json: bool) -> Result<()> {
    let templates = Templates::new();
    let paths: Vec<PathBuf> = if files.is_empty() {
        let dir = &config.workflows_dir;
        let mut p: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading workflows directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        p.sort();
        p
    } else {
        files.to_vec()
    };
    let samples = sample_vars(config);
    let tree = crate::nfs_tree::NfsTree::new(&config.nfs.root_path);
    let mut results = Vec::new();
    for path in &paths {
        let outcome = load_file(path, &templates)
            .map_err(|e| e.to_string())
            .and_then(|wf| {
                let [minimal, full] = &samples;
                templates
                    .render_workflow(&wf, minimal)
                    .and_then(|_| templates.render_workflow(&wf, full))
                    .map_err(|e| format!("{}: {e}", path.display()))
            });
        let warning = outcome
            .as_ref()
            .ok()
            .and_then(|wf| base_path_warning(path, wf, config.nfs.announced_path()));
        // What its steps mean for a node that takes the workflow's settings.
        let mut warnings: Vec<String> = warning.iter().cloned().collect();
        if let Ok(wf) = &outcome {
            let overlay = pureboot_contract::OverlayMode::resolve(None, wf.overlay);
            let base = wf
                .base_image
                .clone()
                .unwrap_or_else(|| config.nfs.default_base_image.clone());
            warnings.extend(after_boot_warnings(&tree, wf, overlay, &base));
        }
        results.push(serde_json::json!({
            "file": path.display().to_string(),
            "ok": outcome.is_ok(),
            "error": outcome.as_ref().err(),
            "warning": warning,
            "warnings": warnings,
            "id": outcome.as_ref().ok().map(|w| w.id.clone()),
        }));
    }
    let failed = results.iter().filter(|r| r["ok"] == false).count();
    if json {
        print_json(&results)?;
    } else {
        for r in &results {
            match r["error"].as_str() {
                None => println!(
                    "ok      {} ({})",
                    r["file"].as_str().unwrap_or("?"),
                    r["id"].as_str().unwrap_or("?")
                ),
                Some(e) => println!("ERROR   {e}"),
            }
            for w in r["warnings"].as_array().into_iter().flatten() {
                println!("WARNING {}", w.as_str().unwrap_or("?"));
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} workflow file(s) invalid", results.len());
    }
    Ok(())
}
