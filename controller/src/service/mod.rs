//! The controller's use cases, shared by the HTTP API and the CLI: each runs one store
//! transaction around a domain decision, then does the filesystem work it implies.
//! Calls block (SQLite, the NFS tree); async callers use `spawn_blocking`. The boot path's
//! registry writes are the exception: `async`, they wait for the store's group commit
//! ([`Services::grouped`]) without holding a thread.

pub mod after_boot;
pub mod boot;
pub mod groups;
mod images;
pub mod limits;
mod node_event;
pub mod nodes;
pub mod pool;
pub mod rollout;
pub mod status;
pub mod tftp;
pub mod timeline;
pub mod versions;
mod volumes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::config::Config;
use crate::domain::boot::{BootSettings, WorkflowState};
use crate::domain::node::{full_serial_of_claim, known_model, Node};
use crate::domain::state::InvalidTransition;
use crate::domain::workflow::Workflow;
use crate::nfs_tree::error::NfsTreeError;
use crate::nfs_tree::squashfs_check::SquashfsDigests;
use crate::nfs_tree::NfsTree;
use crate::store::group::Ticket;
use crate::store::{Store, StoreError, Tx};
use crate::templates::{Templates, Vars};
use crate::workflows::{Lookup, Workflows};
use limits::RateLimiter;
use pureboot_contract::ids::{Hostname, InvalidId, Serial};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    BadInput(#[from] InvalidId),
    #[error("{0}")]
    Invalid(String),
    /// Well-formed JSON of the wrong shape (a callback body missing `error` ...).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (a report from another address than the boot's).
    #[error("{0}")]
    Forbidden(String),
    /// Over a configured bound (rate, count); try again after `retry_after` seconds.
    #[error("{detail}")]
    Limited { detail: String, retry_after: u64 },
    /// The request is valid but contradicts the registry (already exists, in use ...).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tree(#[from] NfsTreeError),
    /// The tree of one of the pool's servers (through its `local_path`).
    #[error("NFS server {server}: {source}")]
    NfsServer {
        server: String,
        #[source]
        source: NfsTreeError,
    },
    /// The workflows directory cannot be read (the server's configuration).
    #[error("{0}")]
    Workflows(String),
    /// The node tree a boot answer relies on could not be prepared: the server's fault,
    /// whatever the underlying error (e.g. a workflow rendering an invalid hostname).
    #[error("preparing the node tree of {serial}: {source}")]
    NodeTree {
        serial: String,
        #[source]
        source: NfsTreeError,
    },
}

const TREE_LOCK_STRIPES: usize = 64;

/// Held while a node's tree is written ([`Services::tree_lock`]).
pub(crate) struct TreeLock<'a> {
    _process: std::sync::MutexGuard<'a, ()>,
    _file: Option<std::fs::File>,
}

pub struct Services {
    pub config: Config,
    pub store: Store,
    /// Swapped whole by [`Services::reload_workflows`]; readers keep the set they took.
    workflows: RwLock<Arc<Workflows>>,
    pub templates: Templates,
    pub tree: NfsTree,
    /// The NFS servers of `[[nfs.servers]]` (off when none: `service/pool.rs`).
    pub pool: pool::Pool,
    /// Node-tree writes of this process: one at a time per serial (two boots of one
    /// serial), different serials in parallel (a stripe per serial hash).
    tree_locks: Vec<Mutex<()>>,
    /// The TFTP folders' writes: one run of the image tool at a time (service/tftp.rs).
    tftp_lock: Mutex<()>,
    /// Boots and reports of registered nodes per source address
    /// (`node_requests_per_minute`), and from all addresses (`boot_requests_per_minute`).
    address_limiter: RateLimiter,
    boot_budget: RateLimiter,
    /// Unknown serials recorded, all together (`unknown_serials_per_minute`), per source
    /// address (a tenth of that), and once per serial per minute.
    unknown_limiter: RateLimiter,
    unknown_per_address: RateLimiter,
    unknown_once: RateLimiter,
    /// Conflict events recorded per source address.
    conflict_limiter: RateLimiter,
    /// Squashfs base images checked against their digests (see `damaged_base`).
    squashfs: SquashfsDigests,
}

impl Services {
    /// Opens the database and loads workflows; broken workflow files are logged, not fatal,
    /// so one bad file does not stop every other node from booting.
    pub fn open(config: Config) -> anyhow::Result<Services> {
        use anyhow::Context;
        let store = Store::open(&config.database)?;
        store.keep_events_at_most(config.max_events);
        let templates = Templates::new();
        let (workflows, _) = read_workflows(&config, &templates).with_context(|| {
            format!(
                "reading workflows directory {}",
                config.workflows_dir.display()
            )
        })?;
        let tree = NfsTree::new(&config.nfs.root_path);
        let services = Services {
            store,
            workflows: RwLock::new(Arc::new(workflows)),
            templates,
            tree,
            pool: pool::Pool::from_config(&config),
            tree_locks: (0..TREE_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            tftp_lock: Mutex::new(()),
            address_limiter: RateLimiter::new(config.node_requests_per_minute),
            boot_budget: RateLimiter::new(config.boot_requests_per_minute),
            unknown_limiter: RateLimiter::new(config.unknown_serials_per_minute),
            unknown_per_address: RateLimiter::new(config.unknown_serials_per_minute.div_ceil(10)),
            unknown_once: RateLimiter::new(1),
            conflict_limiter: RateLimiter::new(limits::CONFLICTS_PER_MINUTE),
            squashfs: SquashfsDigests::default(),
            config,
        };
        // An earlier release's base/<name> directories become channels (service/versions.rs).
        if let Err(e) = services.register_existing_images() {
            log::warn!("base images not registered as channels: {e}");
        }
        Ok(services)
    }

    /// Queues `f` for the registry's group commit (see [`crate::store::Store::enqueue`]):
    /// the hot writes of the boot path, answered once their transaction has committed.
    /// Waiting for the ticket takes no thread.
    pub fn grouped<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Services, &Tx<'_>) -> Result<T, ServiceError> + Send + 'static,
    ) -> Ticket<T, ServiceError> {
        let services = self.clone();
        self.store.enqueue(move |tx| f(&services, tx))
    }

    /// The lock of `serial`'s node tree: this process's, and, on a PostgreSQL registry
    /// (several controllers, one export), a lock file's too (see [`TreeLock`]).
    pub(crate) fn tree_lock(&self, serial: &Serial) -> TreeLock<'_> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serial.hash(&mut h);
        let stripe = &self.tree_locks[(h.finish() % TREE_LOCK_STRIPES as u64) as usize];
        let process = stripe.lock().unwrap_or_else(|p| p.into_inner());
        let file = match self.store.location() {
            crate::store::Location::Postgres(_) => self.tree_lock_file(serial),
            crate::store::Location::Sqlite(_) => None,
        };
        TreeLock {
            _process: process,
            _file: file,
        }
    }

    /// The node's lock file, locked (see [`NfsTree::lock_node`]): two controllers preparing
    /// one node's tree at once (its boot retried on the other) take turns. Unlockable (a
    /// read-only root, no flock there): said, and the process's own lock goes on alone, as
    /// with one controller.
    fn tree_lock_file(&self, serial: &Serial) -> Option<std::fs::File> {
        self.tree
            .lock_node(serial)
            .map_err(|e| {
                log::warn!("node tree lock of {serial}: {e}; only this controller's own lock holds")
            })
            .ok()
    }

    /// The workflows as loaded last.
    pub fn workflows(&self) -> Arc<Workflows> {
        self.workflows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the workflows directory again and, if it can be read, serves the new set from
    /// now on (SIGHUP, `POST /api/v1/workflows/reload`). Broken files are reported and left
    /// out, as at start; an unreadable directory keeps the current set.
    pub fn reload_workflows(&self) -> Result<Reloaded, ServiceError> {
        let dir = &self.config.workflows_dir;
        let (fresh, warnings) = read_workflows(&self.config, &self.templates).map_err(|e| {
            let kept = self.workflows().iter().count();
            log::error!(
                "reading workflows directory {}: {e}; keeping the {kept} loaded before",
                dir.display()
            );
            // The path is in the log; the answer names none.
            ServiceError::Workflows(format!(
                "the workflows directory cannot be read ({e}); keeping the {kept} loaded before; \
                 see the controller log"
            ))
        })?;
        let summary = Reloaded {
            workflows: fresh.iter().map(|(_, w)| w.id.clone()).collect(),
            broken: fresh.errors().map(|e| e.to_string()).collect(),
            warnings,
        };
        *self.workflows.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        // A workflow's base image may have changed: the folders follow.
        self.tftp_sync_logged();
        log::info!(
            "workflows reloaded from {}: {} loaded, {} broken",
            dir.display(),
            summary.workflows.len(),
            summary.broken.len()
        );
        Ok(summary)
    }

    /// Event retention (`max_events`, `event_retention_days`); the daemon runs it at start
    /// and hourly.
    pub fn prune_events(&self) -> Result<u64, ServiceError> {
        let (max, days) = (self.config.max_events, self.config.event_retention_days);
        if max == 0 && days == 0 {
            return Ok(0);
        }
        let n = self.store.write(|tx| tx.prune_events(max, days))?;
        if n > 0 {
            log::info!("pruned {n} old events (max_events = {max}, event_retention_days = {days})");
        }
        Ok(n)
    }

    /// `/healthz`: a write to the registry and one to the export (when NFS is on), so a full
    /// or read-only disk shows before boots fail. Details go to the log; the answer says
    /// which part failed.
    pub fn health(&self) -> Health {
        let database = match self.store.check_write() {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                log::error!("health: database write: {e}");
                "write failed; see the controller log".to_string()
            }
        };
        let export = self
            .config
            .nfs
            .enabled
            .then(|| pool::write_check(self.tree.root()));
        let ok = database == "ok" && export.as_deref().is_none_or(|e| e == "ok");
        Health {
            ok,
            database,
            export,
            nfs_servers: self.pool_health(),
            schema_version: self.store.schema_version().unwrap_or(-1),
            workflows: self.workflows().iter().count(),
        }
    }

    pub fn boot_settings(&self) -> BootSettings {
        BootSettings {
            public_url: self.config.public_url(),
            nfs_server: self.config.nfs_server.clone(),
            nfs_path: self.config.nfs.announced_path().display().to_string(),
            default_base_image: self.config.nfs.default_base_image.clone(),
            nfs_options: self.config.nfs.nfs_options.clone(),
            nfs_enabled: self.config.nfs.enabled,
        }
    }

    /// Template context for one node: controller settings, then node fields (absent
    /// fields stay undefined so a template's `default` applies).
    pub fn template_vars(&self, node: &Node) -> Vars {
        let s = self.boot_settings();
        let mut v: Vars = BTreeMap::new();
        v.insert("nfs_server".into(), s.nfs_server);
        v.insert("nfs_path".into(), s.nfs_path);
        v.insert("public_url".into(), s.public_url.clone());
        v.insert("controller_url".into(), s.public_url);
        v.insert("default_base_image".into(), s.default_base_image);
        v.insert("node_id".into(), node.id.clone());
        v.insert("serial".into(), node.serial.to_string());
        v.insert("hostname".into(), node.effective_hostname().to_string());
        // What a Pi sent reaches templates only as checked values: an address as an
        // address, a model from the known list, a full serial by its rule.
        let ip = node
            .last_ip
            .as_deref()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_string());
        let full_serial = node.full_serial.as_deref().and_then(full_serial_of_claim);
        for (k, val) in [
            ("full_serial", full_serial),
            ("mac", node.mac.as_ref().map(|m| m.as_str().to_string())),
            ("ip", ip),
            (
                "model",
                node.model.as_deref().map(|m| known_model(m).into()),
            ),
        ] {
            if let Some(val) = val {
                v.insert(k.into(), val);
            }
        }
        v
    }

    /// The node's workflow, rendered for it (its `variables` with its groups' merged in:
    /// the post-boot steps' environment); `Err` explains why it cannot be used.
    pub fn rendered_workflow(&self, node: &Node) -> Result<Option<Workflow>, String> {
        self.rendered(node).1
    }

    /// The node with its group chain rendered (what the resolver reads; see
    /// [`crate::domain::effective`]) and its workflow rendered, or why they cannot be
    /// rendered (then the node keeps its chain as stored).
    pub fn rendered(&self, node: &Node) -> (Node, Result<Option<Workflow>, String>) {
        match self.render_for(&self.workflows(), node, &self.template_vars(node)) {
            Ok(r) => (
                Node {
                    groups: r.groups,
                    ..node.clone()
                },
                Ok(r.workflow),
            ),
            Err(why) => (node.clone(), Err(why)),
        }
    }

    /// As [`Services::rendered`], from a given set and context. Bounded (see
    /// [`crate::templates::RENDER_FUEL`]); call it outside any lock.
    ///
    /// The groups' variables are rendered against `vars` like a workflow's and join the
    /// workflow's context over its own variables (leaf group last); a group's hostname
    /// template sees them all.
    pub fn render_for(
        &self,
        workflows: &Workflows,
        node: &Node,
        vars: &Vars,
    ) -> Result<RenderedSetup, String> {
        let mut groups = node.groups.clone();
        let mut overrides = Vars::new();
        for g in &mut groups {
            for (name, source) in &mut g.variables {
                *source = self
                    .templates
                    .render_str(source, vars)
                    .map_err(|e| format!("group {}: variables.{name}: {e}", g.name))?;
                overrides.insert(name.clone(), source.clone());
            }
        }
        let workflow = match crate::domain::effective::workflow_of(node, &node.groups) {
            None => None,
            Some(id) => Some(self.render_one(workflows, &id.value, vars, &overrides)?),
        };
        let mut context = vars.clone();
        match &workflow {
            Some(wf) => context.extend(wf.variables.clone()),
            None => context.extend(overrides),
        }
        for g in &mut groups {
            if let Some(h) = &mut g.hostname {
                *h = self
                    .templates
                    .render_str(h, &context)
                    .map_err(|e| format!("group {}: hostname: {e}", g.name))?;
                Hostname::parse(h).map_err(|e| {
                    format!(
                        "group {}: rendered hostname {:?} is not valid: {e}",
                        g.name,
                        crate::text::escape_controls(&h.chars().take(64).collect::<String>())
                    )
                })?;
            }
        }
        Ok(RenderedSetup { workflow, groups })
    }

    /// Workflow `id` rendered with `vars` and the groups' `overrides`; its `variables` are
    /// its own merged under the overrides.
    fn render_one(
        &self,
        workflows: &Workflows,
        id: &str,
        vars: &Vars,
        overrides: &Vars,
    ) -> Result<Workflow, String> {
        match workflows.get(id) {
            Lookup::Found(wf) => {
                let mut wf = self
                    .templates
                    .render_workflow_over(wf, vars, overrides)
                    .map_err(|e| e.to_string())?;
                checked_names(&wf)?;
                wf.variables
                    .extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
                Ok(wf)
            }
            Lookup::Broken(e) => Err(format!("workflow {id} is broken: {e}")),
            Lookup::Missing => Err(format!(
                "workflow {id} not found in {}",
                self.config.workflows_dir.display()
            )),
        }
    }

    /// The node's workflow (its own or its group's) as loaded, not rendered: what settings
    /// that are no templates (volumes, overlay) read. `None`: none, or not usable.
    pub(crate) fn loaded_workflow(&self, node: &Node) -> Option<Workflow> {
        let id = crate::domain::effective::workflow_of(node, &node.groups)?.value;
        match self.workflows().get(&id) {
            Lookup::Found(wf) => Some(wf.clone()),
            _ => None,
        }
    }

    fn workflow_exists(&self, id: &str) -> Result<(), ServiceError> {
        match self.workflows().get(id) {
            Lookup::Found(_) => Ok(()),
            Lookup::Broken(e) => Err(ServiceError::Invalid(format!(
                "workflow {id} is broken: {e}"
            ))),
            Lookup::Missing => Err(ServiceError::Invalid(format!(
                "unknown workflow {id:?} (see `workflow list`)"
            ))),
        }
    }
}

/// A rendered workflow's names that reach the export and the node (host name, base image)
/// must be valid ones: a template fed odd values fails the node's answer with the reason
/// (it waits) instead of sending or writing a name that is not one.
fn checked_names(wf: &Workflow) -> Result<(), String> {
    let bad = |field: &str, value: &str, e: &dyn std::fmt::Display| {
        format!(
            "workflow {}: rendered {field} {:?} is not valid: {e}",
            wf.id,
            crate::text::escape_controls(&value.chars().take(64).collect::<String>())
        )
    };
    if let Some(h) = wf.hostname.as_deref() {
        Hostname::parse(h).map_err(|e| bad("hostname", h, &e))?;
    }
    if let Some(b) = wf.base_image.as_deref() {
        crate::domain::versions::ImageRef::parse(b).map_err(|e| bad("base_image", b, &e))?;
    }
    Ok(())
}

/// Loads the workflows directory, logging the files left out and the fields that do not do
/// what they say (returned too, for a reload's answer): the same at start and at reload.
fn read_workflows(
    config: &Config,
    templates: &Templates,
) -> std::io::Result<(Workflows, Vec<String>)> {
    let mut set = Workflows::load_dir(&config.workflows_dir, templates)?;
    // Rendered for made-up nodes (one with no optional values, one with all of them) under
    // the limits every boot has: one that runs out of fuel or output room is left out now
    // rather than failing each boot of its nodes.
    let samples = crate::templates::sample_vars(config);
    let paths: std::collections::HashMap<String, String> = set
        .iter()
        .map(|(p, w)| (w.id.clone(), p.display().to_string()))
        .collect();
    set.refuse(|wf| {
        for sample in &samples {
            match templates.render_workflow(wf, sample) {
                Err(e) if e.over_limits() => {
                    return Err(crate::workflows::WorkflowError {
                        file: paths.get(&wf.id).cloned().unwrap_or_default(),
                        field: e.field,
                        message: e.message,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    });
    for err in set.errors() {
        log::error!("{err}");
    }
    let warnings = set.path_warnings(config.nfs.announced_path());
    warnings.iter().for_each(|w| log::warn!("{w}"));
    Ok((set, warnings))
}

/// A node's workflow and group chain, rendered for it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedSetup {
    pub workflow: Option<Workflow>,
    /// The chain, root first, its variables and hostname templates rendered.
    pub groups: Vec<crate::domain::group::Group>,
}

/// `/healthz`'s answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    #[serde(skip)]
    pub ok: bool,
    pub database: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
    /// Each pool server's export (`[[nfs.servers]]`): `ok` or why not. Reported, not
    /// part of `ok`: one server down leaves the others' nodes booting, and the controller
    /// healthy for them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub nfs_servers: BTreeMap<String, String>,
    pub schema_version: i64,
    pub workflows: usize,
}

/// What a reload found: the ids now served, the files left out with why, and fields that
/// do not do what they say (see [`Workflows::path_warnings`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reloaded {
    pub workflows: Vec<String>,
    pub broken: Vec<String>,
    pub warnings: Vec<String>,
}

/// Helper so callers can pass an already rendered workflow result to the domain.
fn workflow_state<'a>(rendered: &'a Result<Option<Workflow>, String>) -> WorkflowState<'a> {
    match rendered {
        Ok(Some(wf)) => WorkflowState::Ready(wf),
        Ok(None) => WorkflowState::Unassigned,
        Err(why) => WorkflowState::Unusable(why.clone()),
    }
}
