//! A workflow as the boot decision reads it. Fields follow upstream PureBoot's `Workflow`
//! model (`target_device: null` loads, where upstream rejects it); [`crate::workflows`]
//! loads and checks the files, [`crate::templates`] renders the string fields per node.

use std::collections::BTreeMap;

use pureboot_contract::after_boot::RunWhen;
use pureboot_contract::OverlayMode;
use serde::{Deserialize, Serialize};

pureboot_contract::named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum InstallMethod: "install method" {
        /// Diskless: root over NFS, `nfs_boot` on every boot.
        Nfs = "nfs",
        Image = "image",
        Kernel = "kernel",
        Sanboot = "sanboot",
        Chain = "chain",
        Deploy = "deploy",
    }
}

/// One post-boot step: run by the booted node's agent (`/bin/sh -c script`), in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostBootStep {
    pub name: String,
    pub script: String,
    /// `first_boot` (default: until it succeeds once for this node, this content and this
    /// writable layer) or `every_boot`.
    #[serde(default)]
    pub run: RunWhen,
    /// Seconds before the step (and everything it started) is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, alias = "architecture")]
    pub arch: Option<String>,
    pub install_method: InstallMethod,
    /// NFS server announced to nodes (a template; defaults to the controller's setting).
    #[serde(default)]
    pub nfs_server: Option<String>,
    /// Informational in pureboot: nodes always mount the configured export root (the
    /// controller prepares their trees there); a different value is reported at load.
    #[serde(default)]
    pub nfs_base_path: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub target_device: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub post_boot: Vec<PostBootStep>,
    #[serde(default)]
    pub tags: Vec<String>,
    // Upstream fields, kept so its workflow files load.
    #[serde(default)]
    pub boot_params: BTreeMap<String, String>,
    #[serde(default)]
    pub kernel_path: Option<String>,
    #[serde(default)]
    pub initrd_path: Option<String>,
    #[serde(default)]
    pub cmdline: Option<String>,
    #[serde(default)]
    pub boot_mode: Option<String>,
    #[serde(default)]
    pub boot_url: Option<String>,
    #[serde(default)]
    pub source_device: Option<String>,
    #[serde(default)]
    pub post_script_url: Option<String>,
    // pureboot extensions.
    /// Overlay mode for nodes of this workflow (a node's own setting wins).
    #[serde(default)]
    pub overlay: Option<OverlayMode>,
    /// Base image under `base/` (a node's own setting wins; else the configured default).
    #[serde(default)]
    pub base_image: Option<String>,
    /// Hostname template, e.g. `k3s-{{ serial }}` (a node's own hostname wins).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Variables whose values are secrets: kept in the controller's secrets file, handed
    /// only to the post-boot steps of the machine that asked for the boot (as environment
    /// variables), never rendered into a template, written to the export or shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_variables: Vec<String>,
    /// The systemd unit whose activation is "boot complete" (default `multi-user.target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_target: Option<String>,
    /// Volumes every node of this workflow gets (a node's own wins per path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<super::volumes::VolumeSpec>,
}
