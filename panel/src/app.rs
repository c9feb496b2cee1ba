//! Wiring: storage, keys, TLS, hub, events, API and the HTTP server, and the shutdown order.
//!
//! [`Panel::bind`] does everything that can fail at start-up (data dir, database, admin token,
//! signing key, certificate, listening socket) and reports what an operator needs to know
//! ([`Started`]); [`Panel::run`] serves until the [`Shutdown`] fires, then stops accepting,
//! closes agent and subscriber sockets with a close frame, and ends with a storage barrier.

use async_io::Async;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, Api};
use crate::auth::{AdminTokenOrigin, Auth, AuthError};
use crate::config::Config;
use crate::events::Events;
use crate::health::{Health, NodeHooks};
use crate::history::History;
use crate::http::{self, ServerConfig, ServerStats};
use crate::hub::{Hub, HubSettings};
use crate::node_metrics::NodeMetrics;
use crate::panel_metrics::PanelMetrics;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsError};
use crate::users::Users;

/// How long shutdown waits for sockets to finish their close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Why the panel could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// What start-up learned, for the operator (and for `panel up` and tests).
#[derive(Debug, Clone)]
pub struct Started {
    /// The bound address (useful with `--listen 127.0.0.1:0`).
    pub addr: SocketAddr,
    /// `https://…` agents and operators use.
    pub base_url: String,
    pub admin_token: AdminTokenOrigin,
    pub cert_path: PathBuf,
    pub fingerprint_sha256: String,
    pub data_dir: PathBuf,
    /// The admin user created on this first start and its password (shown once).
    pub first_admin: Option<(String, String)>,
}

impl Started {
    /// The start-up banner. Everything tests or scripts parse comes before the
    /// `listening on` line, which is printed last.
    pub fn banner(&self) -> String {
        let mut out = String::new();
        match &self.admin_token {
            AdminTokenOrigin::Generated(t) => {
                out.push_str(&format!("admin token: {t}\n"));
                out.push_str(
                    "  (shown only now; only its hash is stored — keep it, or set PANEL_ADMIN_TOKEN)\n",
                );
            }
            AdminTokenOrigin::Environment => {
                out.push_str("admin token from PANEL_ADMIN_TOKEN\n");
            }
            AdminTokenOrigin::Stored => {
                out.push_str(
                    "admin token unchanged (printed on first start; only its hash is stored)\n",
                );
            }
        }
        if let Some((name, password)) = &self.first_admin {
            out.push_str(&format!("admin user: {name}\nadmin password: {password}\n"));
            out.push_str(
                "  (shown only now; only its Argon2id hash is stored — `panel user passwd admin` resets it)\n",
            );
        }
        out.push_str(&format!(
            "tls fingerprint (sha256): {}\n",
            self.fingerprint_sha256
        ));
        out.push_str(&format!("tls certificate: {}\n", self.cert_path.display()));
        out.push_str(&format!("data dir: {}\n", self.data_dir.display()));
        out.push_str(&format!("listening on https://{}\n", self.addr));
        out
    }
}

/// Raises the soft open-files limit to the hard one: every agent is a socket, and the usual
/// soft limit of 1024 would cap the panel at about a thousand agents.
fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                log::warn!("cannot raise the open-files limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("cannot read the open-files limit: {e}"),
    }
}

/// A bound, not yet serving panel.
pub struct Panel {
    started: Started,
    listener: Async<TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    server_config: ServerConfig,
    api: Arc<Api>,
    shutdown: Shutdown,
}

impl Panel {
    /// Opens everything and binds the listener. `PANEL_ADMIN_TOKEN` is read here.
    pub async fn bind(config: &Config, shutdown: Shutdown) -> Result<Panel, AppError> {
        raise_nofile_limit();
        let dir = config.data_dir.clone();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| AppError::DataDir {
                path: dir.clone(),
                source,
            })?;
        let (store, auth, origin, tls, history, first_admin) = {
            let dir = dir.clone();
            let extra: Vec<String> = config.public_host().into_iter().collect();
            let cert = config.tls_cert.clone();
            let key = config.tls_key.clone();
            let env_token = std::env::var("PANEL_ADMIN_TOKEN").ok();
            let step = config.history_step_secs;
            let want_admin = config.first_admin;
            smol::unblock(move || -> Result<_, AppError> {
                let store = Arc::new(Store::open(&dir)?);
                seed_eggs(&store);
                let (auth, origin) = Auth::init(&dir, store.clone(), env_token)?;
                let tls = tls::setup(&dir, cert.as_deref(), key.as_deref(), &extra)?;
                let history = History::load(store.clone(), step, proto::time::unix_now())?;
                match api::sweep_backups(&store, &dir.join("backups")) {
                    Ok(s) if s == api::Swept::default() => {}
                    Ok(s) => log::info!(
                        "backup store: removed {} partial, {} unrecorded and {} orphaned",
                        s.partial,
                        s.unrecorded,
                        s.orphaned
                    ),
                    Err(e) => log::error!("backup store not swept: {e}"),
                }
                let first_admin = if want_admin {
                    first_admin_user(&store)?
                } else {
                    None
                };
                Ok((
                    store,
                    Arc::new(auth),
                    origin,
                    tls,
                    Arc::new(history),
                    first_admin,
                ))
            })
            .await?
        };
        let listener = crate::http::bind(config.listen).map_err(|source| AppError::Listen {
            addr: config.listen,
            source,
        })?;
        let addr = listener
            .get_ref()
            .local_addr()
            .map_err(|source| AppError::Listen {
                addr: config.listen,
                source,
            })?;
        let base_url = config.base_url(addr);
        if config.needs_public_url(addr) {
            log::warn!(
                "listening on {addr} without --public-url: agents are told to connect to \
                 {base_url}; agents on other hosts need --public-url https://HOST:PORT"
            );
        }

        let metrics = Arc::new(PanelMetrics::default());
        let events = Events::new(config.event_queue, metrics.clone());
        let node_metrics = Arc::new(NodeMetrics::default());
        let nodes = NodeHooks {
            health: Health::new(
                config.dead_after.as_secs(),
                events.clone(),
                node_metrics.clone(),
            ),
            history,
            statuses: Arc::default(),
        };
        let hub = Hub::new(
            HubSettings {
                heartbeat: config.heartbeat,
                command_timeout: config.command_timeout,
                max_frame: config.max_frame_bytes,
                agent_rate: config.agent_rate,
                agent_burst: config.agent_burst,
                queue: config.agent_queue,
            },
            store.clone(),
            auth.clone(),
            events.clone(),
            metrics.clone(),
            nodes.clone(),
        );
        let users = Arc::new(Users::new(store.clone(), config.sessions));
        let api = Api::new(
            store,
            auth,
            users,
            hub,
            events,
            metrics,
            Arc::new(ServerStats::new()),
            shutdown.clone(),
            base_url.clone(),
            config.max_frame_bytes,
            config.admin_rate,
            config.admin_burst,
            nodes,
            node_metrics,
            config.placement,
            crate::api::BackupSettings {
                dir: dir.join("backups"),
                keep: config.backup_keep,
            },
        );
        let server_config = ServerConfig {
            max_conns_per_ip: config.max_conns_per_ip,
            max_upload_bytes: usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX),
            ..ServerConfig::default()
        };
        Ok(Panel {
            started: Started {
                addr,
                base_url,
                admin_token: origin,
                cert_path: tls.cert_path.clone(),
                fingerprint_sha256: tls.fingerprint_sha256.clone(),
                data_dir: dir,
                first_admin,
            },
            listener,
            tls: tls.config,
            server_config,
            api,
            shutdown,
        })
    }

    pub fn started(&self) -> &Started {
        &self.started
    }

    /// Serves until the shutdown fires; then closes every socket cleanly and syncs storage.
    pub async fn run(self) -> Result<(), AppError> {
        let mut router = api::router(&self.api);
        router.fallback(crate::ui::fallback());
        let router = Arc::new(router);
        let watcher = crate::exec::spawn(crate::health::run(
            self.api.nodes.health.clone(),
            self.api.nodes.history.clone(),
            self.api.hub.clone(),
            self.api.store.clone(),
            self.shutdown.clone(),
        ));
        let sweeper = crate::exec::spawn(self.api.clone().sweep_sessions());

        // Scheduled backups; dropped (cancelled) when serving ends.
        let _schedules = crate::exec::spawn(api::schedule_loop(self.api.clone()));
        // Transfers the last stop interrupted: undone or finished as their agents connect.
        api::recover_transfers(&self.api);
        // Failover of servers off dead nodes, quarantine of their stale copies.
        let _failover = crate::exec::spawn(crate::failover::run(self.api.clone()));
        let served = http::serve(
            self.listener,
            self.tls,
            router,
            self.server_config,
            self.api.http_stats.clone(),
            self.shutdown.clone(),
        )
        .await;
        // Agent and subscriber tasks watch the same shutdown and send their close frames;
        // wait for them (bounded) before the final storage barrier.
        self.shutdown.trigger();
        future_zip(
            self.api.hub.close_all(CLOSE_GRACE),
            self.api.events.drain(CLOSE_GRACE),
        )
        .await;
        watcher.await;
        let history = self.api.nodes.history.clone();
        if let Err(e) = smol::unblock(move || history.flush(proto::time::unix_now())).await {
            log::error!("resource history not saved: {e}");
        }
        sweeper.await;
        let store = self.api.store.clone();
        smol::unblock(move || store.sync()).await?;
        served.map_err(AppError::Serve)
    }
}

/// On the first start of `panel up` (no user yet), an admin user `admin` with a generated
/// password, which the banner prints once.
fn first_admin_user(store: &Store) -> Result<Option<(String, String)>, AppError> {
    if store.has_users() {
        return Ok(None);
    }
    let password = crate::users::password::generate();
    match crate::users::cli::create(store, "admin", true, &password) {
        Ok(u) => Ok(Some((u.name, password))),
        Err(crate::users::cli::CliError::Store(e)) => Err(e.into()),
        Err(e) => {
            log::error!("the first admin user was not created: {e}");
            Ok(None)
        }
    }
}

/// On the first start, the egg library gets the example egg (the fakegame test server).
fn seed_eggs(store: &Store) {
    let seeded = crate::eggs::example(proto::time::unix_now())
        .map_err(|e| e.message)
        .and_then(|egg| store.seed_eggs(&[egg]).map_err(|e| e.to_string()));
    match seeded {
        Ok(true) => log::info!(
            "egg library: added the example egg {}",
            crate::eggs::EXAMPLE_EGG_ID
        ),
        Ok(false) => {}
        Err(e) => log::error!("egg library: the example egg was not added: {e}"),
    }
}

async fn future_zip(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    futures_lite::future::zip(a, b).await;
}

/// `panel`: bind, print the banner, serve until SIGTERM/SIGINT (via `shutdown`).
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), AppError> {
    let panel = Panel::bind(&config, shutdown).await?;
    print!("{}", panel.started().banner());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    panel.run().await?;
    println!("panel stopped");
    Ok(())
}
