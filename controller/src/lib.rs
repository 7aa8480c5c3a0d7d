//! pureboot controller: boot API, node registry, workflows and per-serial NFS trees.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod nfs_tree;
pub mod secrets;
pub mod service;
pub mod store;
pub mod templates;
pub mod text;
pub mod tftp;
pub mod workflows;
