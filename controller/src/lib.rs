//! pureboot controller: boot API, node registry, workflows and per-serial NFS trees.

pub mod config;
pub mod domain;
pub mod store;
pub mod templates;
pub mod workflows;
pub mod nfs_tree;
