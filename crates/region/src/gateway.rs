//! Starting and stopping a gateway node: data-plane listeners, the admin API
//! and the first gateway document.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::raft::{Command, CommandResult, RegionNode};
use crate::vip::agent::VipStatus;
use meridian_core::config::{ConfigErrors, NodeConfig, Validated};
use meridian_dataplane::proxy::server::{ListenError, Listener};
use meridian_dataplane::proxy::{Gateway, Settings};
use meridian_dataplane::telemetry::GatewayMetrics;
use meridian_dataplane::tls::{CertStore, Reload};
use tokio_rustls::TlsAcceptor;

/// Read a node file with every check: its rules, then the node-local files
/// it names (certificates). What `meridian validate` and `gateway` load.
pub fn load_node_file(path: &Path) -> Result<Validated<NodeConfig>, ConfigErrors> {
    let node = meridian_core::config::load_node_file(path)?;
    meridian_dataplane::tls::check_certificates(&node).into_result(node)
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("identity.pepper: {0}")]
    Identity(String),
    #[error("admin.token_env: {0}")]
    AdminToken(String),
    #[error("admin API: {0}")]
    AdminTls(meridian_dataplane::tls::TlsFileError),
    #[error("admin API: cannot bind {address}: {source}")]
    Admin { address: SocketAddr, source: std::io::Error },
    #[error("gateway document:\n{0}")]
    Document(ConfigErrors),
    #[error("region member: {0}")]
    Region(#[from] crate::raft::node::StartError),
    #[error("vip: {0}")]
    Vip(#[from] crate::vip::agent::AgentError),
    #[error(transparent)]
    Report(#[from] crate::publisher::SecretError),
    #[error(transparent)]
    Redis(#[from] meridian_dataplane::kv::KvConfigError),
}

/// Longest wait at start for JWT providers' first key-set fetch.
const IDENTITY_READY_WAIT: Duration = Duration::from_secs(5);

/// A running node. Dropping it does not stop it; call [`RunningGateway::shutdown`].
pub struct RunningGateway {
    pub gateway: Arc<Gateway>,
    /// The node's membership of its region group, when it has one.
    pub region: Option<Arc<RegionNode>>,
    /// The VIPs this member holds, when it has a `[vip]` section.
    pub vips: Option<Arc<VipStatus>>,
    /// Listener name → bound address (useful with port 0).
    pub listeners: Vec<(Arc<str>, SocketAddr)>,
    pub admin_addr: SocketAddr,
    /// Certificates of the TLS listeners and the admin API.
    certs: Vec<Arc<CertStore>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    drain_timeout: Duration,
}

impl RunningGateway {
    /// The address of the first listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.listeners[0].1
    }

    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|(n, _)| &**n == name).map(|(_, a)| *a)
    }

    /// Read every certificate and key file again (SIGHUP); those that fail
    /// leave the previous ones serving.
    pub fn reload_certificates(&self) {
        reload_certificates(&self.certs, &self.gateway, true);
    }

    /// Re-read the node file and apply its gateway document as the next
    /// version; in a region, propose it to the group. On error the running
    /// document keeps serving.
    pub async fn reload(&self, path: &Path) -> Result<u64, ConfigErrors> {
        if let Some(region) = &self.region {
            let node = load_node_file(path)?;
            let document = serde_json::to_string(&node.gateway).map_err(|e| {
                ConfigErrors::from(meridian_core::config::ConfigError::new(
                    "gateway",
                    meridian_core::config::ConfigErrorKind::Syntax(e.to_string()),
                ))
            })?;
            let result = region.write(Command::PutConfig { expected_version: None, document }).await;
            let label = if matches!(result, Ok(CommandResult::ConfigApplied { .. })) { "ok" } else { "invalid" };
            self.gateway.metrics.config_applies.with_label_values(&["file", label]).inc();
            let fail = |msg: String| {
                ConfigErrors::from(meridian_core::config::ConfigError::new(
                    "gateway",
                    meridian_core::config::ConfigErrorKind::Syntax(msg),
                ))
            };
            return match result {
                Ok(CommandResult::ConfigApplied { version }) => Ok(version),
                Ok(CommandResult::Invalid { errors }) => Err(ConfigErrors(
                    errors
                        .into_iter()
                        .map(|(p, m)| {
                            meridian_core::config::ConfigError::new(
                                format!("gateway.{p}"),
                                meridian_core::config::ConfigErrorKind::Syntax(m),
                            )
                        })
                        .collect(),
                )),
                Ok(other) => Err(fail(format!("{other:?}"))),
                Err(e) => Err(fail(e.to_string())),
            };
        }
        let result = load_node_file(path).and_then(|node| {
            let doc = meridian_core::config::validate_document(node.into_inner().gateway)?;
            self.gateway.apply_next(doc, None).map_err(|e| match e {
                meridian_dataplane::proxy::ApplyError::Invalid(errors) => errors,
                other => ConfigErrors::from(meridian_core::config::ConfigError::new(
                    "",
                    meridian_core::config::ConfigErrorKind::Syntax(other.to_string()),
                )),
            })
        });
        let label = if result.is_ok() { "ok" } else { "invalid" };
        self.gateway.metrics.config_applies.with_label_values(&["file", label]).inc();
        result
    }

    /// Stop accepting, let requests in flight finish (up to the drain timeout), stop.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if self.vips.is_some() {
            // Let the VIP agent take its addresses off before Raft stops.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(region) = &self.region {
            region.shutdown().await;
        }
        self.gateway.stop();
        self.tracker.close();
        let drained = async {
            self.tracker.wait().await;
            self.gateway.tunnels_closed().await;
        };
        if tokio::time::timeout(self.drain_timeout + Duration::from_secs(1), drained).await.is_err() {
            tracing::warn!("connections still open after the drain timeout");
        }
    }
}

/// Bind every listener and the admin API, apply the node file's document and serve.
pub async fn start(node: Validated<NodeConfig>) -> Result<RunningGateway, StartError> {
    meridian_dataplane::tls::install_crypto_provider();
    let node = node.into_inner();
    let admin_token = node.admin.resolve_token().map_err(|e| StartError::AdminToken(e.to_string()))?;
    for w in node.timing_warnings() {
        tracing::warn!(warning = %w, "node file timing");
    }
    let metrics = Arc::new(GatewayMetrics::new(&node.node.name, &node.node.region));
    let settings = Settings {
        node_name: node.node.name.as_str().into(),
        limits: node.limits.clone(),
        access_log: node.telemetry.access_log,
        consumer_labels: node.telemetry.consumer_labels,
        pepper: node.identity.pepper().map_err(|e| StartError::Identity(e.to_string()))?.map(Arc::new),
    };
    let shutdown = CancellationToken::new();
    let store = match &node.redis {
        Some(r) => {
            let members = node.cluster.as_ref().map_or(1, |c| c.members.len().max(1) as u32);
            Some(meridian_dataplane::kv::RegionStore::connect(r, metrics.clone(), members, shutdown.clone()).await?)
        }
        None => None,
    };
    let l1 = node.redis.as_ref().map_or(64 << 20, |r| r.l1_cache_bytes);
    let gateway = Gateway::with_store(settings, metrics.clone(), store, l1);
    let region = match &node.cluster {
        // In a region the replicated state decides what is served; the file's
        // document only seeds a new region.
        Some(cluster) => {
            let seed = if cluster.bootstrap {
                meridian_core::config::validate_document(node.gateway.clone()).map_err(StartError::Document)?;
                serde_json::to_string(&node.gateway).ok()
            } else {
                None
            };
            let region_metrics = Arc::new(crate::metrics::RegionMetrics::new(&metrics.registry));
            let r = RegionNode::start(cluster, &node.node.name, &node.node.region, region_metrics, seed).await?;
            // The data plane follows the region's log: it serves what was applied.
            tokio::spawn(crate::serving::follow(r.clone(), gateway.clone(), shutdown.clone()));
            Some(r)
        }
        None => {
            let doc = meridian_core::config::validate_document(node.gateway.clone()).map_err(StartError::Document)?;
            gateway.apply(doc, 1).map_err(StartError::Document)?;
            None
        }
    };

    let vips = match (&region, &node.vip) {
        (Some(r), Some(v)) => {
            Some(crate::vip::agent::start(r.clone(), v, gateway.address_load.clone(), shutdown.clone()).await?)
        }
        _ => None,
    };
    if let (Some(r), Some(report)) = (&region, &node.report) {
        crate::publisher::spawn(report, r.clone(), gateway.clone(), shutdown.clone())?;
    }
    // JWT providers fetch their key sets before traffic arrives.
    gateway.identity_ready(IDENTITY_READY_WAIT).await;
    let mut bound = Vec::new();
    for l in &node.listeners {
        bound.push(Listener::bind(l).await?);
    }
    let admin_certs = match &node.admin.tls {
        Some(t) => Some(CertStore::load("admin", t).map_err(StartError::AdminTls)?),
        None => None,
    };
    let admin_tls = admin_certs.as_ref().map(|c| TlsAcceptor::from(c.server_config(&[b"http/1.1"])));
    let certs: Vec<Arc<CertStore>> = bound.iter().filter_map(|l| l.certs.clone()).chain(admin_certs).collect();
    if !certs.is_empty() && !node.limits.certificate_check_interval.is_zero() {
        tokio::spawn(watch_certificates(
            certs.clone(),
            gateway.clone(),
            node.limits.certificate_check_interval,
            shutdown.clone(),
        ));
    }
    let admin_listener = TcpListener::bind(node.admin.address)
        .await
        .map_err(|source| StartError::Admin { address: node.admin.address, source })?;
    let admin_addr =
        admin_listener.local_addr().map_err(|source| StartError::Admin { address: node.admin.address, source })?;

    let tracker = TaskTracker::new();
    let listeners = bound.iter().map(|l| (l.name.clone(), l.local_addr)).collect();
    for l in bound {
        tracker.spawn(l.serve(gateway.clone(), shutdown.clone(), tracker.clone()));
    }
    let state = Arc::new(AdminState {
        gateway: gateway.clone(),
        region: region.clone(),
        vips: vips.clone(),
        token: admin_token,
    });
    tracker.spawn(admin::serve(admin_listener, admin_tls, state, shutdown.clone(), tracker.clone()));
    tracing::info!(node = %node.node.name, region = %node.node.region, admin = %admin_addr, "gateway started");
    Ok(RunningGateway {
        gateway,
        region,
        vips,
        listeners,
        admin_addr,
        certs,
        shutdown,
        tracker,
        drain_timeout: node.limits.drain_timeout,
    })
}

/// Check the certificate files every `every` and reload those that changed.
async fn watch_certificates(certs: Vec<Arc<CertStore>>, gw: Arc<Gateway>, every: Duration, stop: CancellationToken) {
    let mut tick = meridian_core::clock::Ticker::new(every, stop);
    while tick.next().await {
        reload_certificates(&certs, &gw, false);
    }
}

fn reload_certificates(certs: &[Arc<CertStore>], gw: &Gateway, force: bool) {
    for store in certs {
        let result = store.reload(force);
        let label = match &result {
            Ok(Reload::Unchanged) => continue,
            Ok(Reload::Reloaded) => "ok",
            Err(_) => "failed",
        };
        gw.metrics.tls_reloads.with_label_values(&[&store.name, label]).inc();
        match result {
            Ok(_) => tracing::info!(listener = %store.name, forced = force, "certificates reloaded"),
            Err(e) => tracing::error!(
                listener = %store.name,
                error = %e,
                "certificates not reloaded; the previous ones keep serving"
            ),
        }
    }
}
