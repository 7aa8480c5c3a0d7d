//! `App::build(config)`: opens the registry, loads workflows, binds the listener (port 0
//! allowed, for tests) and serves until Ctrl-C / SIGTERM; SIGHUP reloads the workflows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::server::{serve, ConnLimits};
use crate::http::{admin_router, pi_router, router, AppState};
use crate::metrics::Metrics;
use crate::service::Services;

pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    /// The management API's own listener (`admin_listen`), if configured.
    admin: Option<(TcpListener, SocketAddr)>,
    state: AppState,
    /// Held while serving: one daemon per SQLite file (none for PostgreSQL, made for
    /// several).
    _serving: Option<std::fs::File>,
    _checkpoints: crate::store::Checkpointer,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        // A configuration made in code skips the file's checks: the token's is the one that
        // guards the management API.
        if let Some(token) = &config.admin_token {
            crate::config::check_admin_token(token)
                .map_err(|m| anyhow::anyhow!("config key `admin_token`: {m}"))?;
        }
        let listen = config.listen.clone();
        let serving = crate::store::Store::lock_for_serving(&config.database)?;
        let services = tokio::task::spawn_blocking(move || Services::open(config)).await??;
        let checkpoints = services
            .store
            .checkpoint_in_background(Duration::from_millis(250))?;
        if services.config.nfs.enabled {
            if let Err(e) = services.tree.ensure_directories() {
                // Not fatal: the export may be mounted later; boots will report it.
                log::warn!("NFS tree not ready: {e}");
            }
        }
        let listener = TcpListener::bind(&listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let admin = match services.config.admin_listen.clone() {
            Some(a) => {
                let l = TcpListener::bind(&a)
                    .await
                    .with_context(|| format!("binding admin_listen {a}"))?;
                let addr = l.local_addr()?;
                Some((l, addr))
            }
            None => None,
        };
        let state = AppState::new(Arc::new(services), Arc::new(Metrics::default()));
        Ok(App {
            listener,
            addr,
            admin,
            state,
            _serving: serving,
            _checkpoints: checkpoints,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the management API listens when it has its own address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, a)| *a)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn services(&self) -> Arc<Services> {
        self.state.services.clone()
    }

    /// Serves until `shutdown` completes; event retention runs at start and hourly.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let pruner = tokio::spawn(prune_hourly(self.state.services.clone()));
        let rollouts = tokio::spawn(drive_rollouts(self.state.services.clone()));
        let config = &self.state.services.config;
        let limits = ConnLimits {
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            max_connections: usize::try_from(config.max_connections).unwrap_or(usize::MAX),
            per_address: usize::try_from(config.max_connections_per_address).unwrap_or(usize::MAX),
            shutdown_grace: Duration::from_secs(config.request_timeout_secs.min(10)),
        };
        match self.admin {
            None => serve(self.listener, router(self.state), limits, shutdown).await,
            Some((admin, _)) => {
                // One shutdown signal for both listeners.
                let (tx, rx) = tokio::sync::watch::channel(false);
                let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let pi = serve(
                    self.listener,
                    pi_router(self.state.clone()),
                    limits,
                    stop(rx.clone()),
                );
                let adm = serve(admin, admin_router(self.state), limits, stop(rx));
                let signal = async move {
                    shutdown.await;
                    let _ = tx.send(true);
                };
                tokio::join!(pi, adm, signal);
            }
        }
        pruner.abort();
        rollouts.abort();
        Ok(())
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// From now on SIGHUP reads the workflows directory again (what `POST
    /// /api/v1/workflows/reload` does) instead of ending the process. Call it before telling
    /// anyone the daemon is up.
    pub fn reload_workflows_on_sighup(&self) -> anyhow::Result<()> {
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        tokio::spawn(reload_on_sighup(hup, self.services()));
        Ok(())
    }
}

async fn prune_hourly(services: Arc<Services>) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        let s = services.clone();
        match tokio::task::spawn_blocking(move || s.prune_events()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::error!("event retention: {e}"),
            Err(e) => log::error!("event retention panicked: {e}"),
        }
    }
}

/// The rollouts' tick (service/rollout.rs): every second, off the async workers.
async fn drive_rollouts(services: Arc<Services>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let s = services.clone();
        match tokio::task::spawn_blocking(move || s.rollout_tick()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::error!("rollouts: {e}"),
            Err(e) => log::error!("rollouts panicked: {e}"),
        }
    }
}

async fn reload_on_sighup(mut hup: tokio::signal::unix::Signal, services: Arc<Services>) {
    while hup.recv().await.is_some() {
        let s = services.clone();
        match tokio::task::spawn_blocking(move || s.reload_workflows()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::error!("SIGHUP: {e:#}"),
            Err(e) => log::error!("SIGHUP: workflow reload panicked: {e}"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    log::info!("shutting down");
}
