//! The data plane: listeners, the request path, upstream connections.
//!
//! A [`Gateway`] serves one compiled [`Snapshot`] of the gateway document at a
//! time. Applying a document compiles a new snapshot and swaps it in
//! atomically; requests in flight finish on the snapshot they started with.

pub mod body;
mod caps;
pub mod client;
pub use caps::{AddressLoad, ConnectionCaps, Refused};
mod compile;
mod context;
pub mod error;
mod finish;
mod forward;
pub mod headers;
mod policy;
pub mod server;
mod service;
mod tunnel;
pub mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::balance::Endpoint;
use crate::routing::RouteTable;
use crate::telemetry::{GatewayMetrics, RouteMetrics};
use meridian_core::config::{CheckedDocument, ConfigErrors, GatewayDocument, LimitsConfig, Validated};
use meridian_core::pattern::Rewrite;
use upstream::{ConnPool, Upstream};

/// Node-level settings the request path reads (fixed for the node's life).
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_name: Arc<str>,
    pub limits: LimitsConfig,
    pub access_log: bool,
    /// What API keys are hashed with; without it no API key is accepted.
    pub pepper: Option<Arc<meridian_core::apikey::Pepper>>,
    /// Consumers labelled by name in the per-consumer metric (the rest: `_other`).
    pub consumer_labels: usize,
}

/// A compiled route.
pub struct Route {
    pub name: Arc<str>,
    pub upstream: Arc<Upstream>,
    pub rewrite: Option<Rewrite>,
    pub preserve_host: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retries: u32,
    pub metrics: Arc<RouteMetrics>,
    /// In the order they run on a request (answers go through them backwards).
    pub(crate) policies: Vec<policy::Policy>,
    /// Protocols this route tunnels after `101` (lower-case).
    pub upgrades: Vec<String>,
}

/// One version of the gateway document, compiled.
pub struct Snapshot {
    pub version: u64,
    pub document: Arc<GatewayDocument>,
    pub table: RouteTable<Arc<Route>>,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    /// Consumers and their API keys.
    pub directory: Arc<crate::identity::Directory>,
}

/// Why a document was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("version conflict: expected {expected}, serving {current}")]
    Conflict { expected: u64, current: u64 },
    #[error("invalid document:\n{0}")]
    Invalid(ConfigErrors),
}

/// State kept across config versions so a reload keeps health, load and
/// idle connections of the targets it keeps.
#[derive(Default)]
struct Registry {
    /// (upstream, address) → endpoint.
    endpoints: HashMap<(String, String), Arc<Endpoint>>,
    /// address → keep-alive connections.
    conns: HashMap<String, Arc<ConnPool>>,
    /// Stops the active checkers of the snapshot being served.
    health: CancellationToken,
    /// route → its limiter, reused while its policy is unchanged (counts survive reloads).
    limiters: HashMap<String, Arc<policy::rate_limit::RouteLimit>>,
    /// provider → its key set and token cache, reused while its config is unchanged.
    jwt_providers: HashMap<String, Arc<crate::identity::jwt::Provider>>,
    /// endpoint → its answer cache, reused while its config is unchanged.
    introspectors: HashMap<String, Arc<crate::identity::introspect::Introspector>>,
}

pub struct Gateway {
    pub settings: Settings,
    pub metrics: Arc<GatewayMetrics>,
    /// The region's Redis, when configured.
    pub store: Option<Arc<crate::kv::RegionStore>>,
    pub cache: Arc<crate::cache::NodeCache>,
    /// Stops background work of limiters.
    background: CancellationToken,
    snapshot: ArcSwap<Snapshot>,
    unmatched: Arc<RouteMetrics>,
    registry: Mutex<Registry>,
    /// Upgraded connections (WebSockets), so stopping can close and wait for them.
    tunnels: tokio_util::task::TaskTracker,
    tunnel_stop: CancellationToken,
    /// Busy connections per local address, for VIP handoffs.
    pub address_load: Arc<caps::AddressLoad>,
}

impl Gateway {
    pub fn new(settings: Settings, metrics: Arc<GatewayMetrics>) -> Arc<Self> {
        Self::with_store(settings, metrics, None, 64 << 20)
    }

    /// A gateway whose routes can share limits and cache through `store`.
    pub fn with_store(
        settings: Settings,
        metrics: Arc<GatewayMetrics>,
        store: Option<Arc<crate::kv::RegionStore>>,
        l1_cache_bytes: u64,
    ) -> Arc<Self> {
        let background = CancellationToken::new();
        let cache = crate::cache::NodeCache::new(l1_cache_bytes, store.clone(), metrics.clone(), background.clone());
        let empty = Snapshot {
            version: 0,
            document: Arc::new(GatewayDocument::default()),
            table: RouteTable::new(Vec::new()),
            upstreams: BTreeMap::new(),
            directory: Arc::default(),
        };
        Arc::new(Self {
            unmatched: Arc::new(metrics.route("_unmatched")),
            settings,
            metrics,
            store,
            cache,
            background,
            snapshot: ArcSwap::from_pointee(empty),
            registry: Mutex::new(Registry::default()),
            tunnels: tokio_util::task::TaskTracker::new(),
            tunnel_stop: CancellationToken::new(),
            address_load: Arc::default(),
        })
    }

    /// The snapshot being served.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn version(&self) -> u64 {
        self.snapshot.load().version
    }

    /// Compile `doc` and serve it as `version`. Needs a tokio runtime (it
    /// starts the active health checks of the new snapshot).
    pub fn apply(&self, doc: Validated<CheckedDocument>, version: u64) -> Result<(), ConfigErrors> {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        self.apply_locked(&mut registry, doc, version)
    }

    /// Serve `doc` as the next version; with `expected`, only if the version
    /// served now is `expected` (compare-and-set).
    pub fn apply_next(&self, doc: Validated<CheckedDocument>, expected: Option<u64>) -> Result<u64, ApplyError> {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.version();
        if let Some(expected) = expected {
            if expected != current {
                return Err(ApplyError::Conflict { expected, current });
            }
        }
        let version = current + 1;
        self.apply_locked(&mut registry, doc, version).map_err(ApplyError::Invalid)?;
        Ok(version)
    }

    fn apply_locked(
        &self,
        registry: &mut Registry,
        doc: Validated<CheckedDocument>,
        version: u64,
    ) -> Result<(), ConfigErrors> {
        let health = CancellationToken::new();
        let snapshot = compile::compile(self, registry, doc.into_inner(), version, &health)?;
        let routes = snapshot.table.len();
        let upstreams = snapshot.upstreams.len();
        let old = std::mem::replace(&mut registry.health, health);
        self.snapshot.store(Arc::new(snapshot));
        old.cancel();
        self.metrics.config_version.set(version as i64);
        tracing::info!(version, routes, upstreams, "gateway document applied");
        Ok(())
    }

    /// Wait (at most `limit`) until every JWT provider of the served
    /// document fetched its key set once, so the first requests do not wait.
    pub async fn identity_ready(&self, limit: Duration) {
        let providers: Vec<_> = {
            let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            registry.jwt_providers.values().cloned().collect()
        };
        let all = futures_util::future::join_all(providers.iter().map(|p| p.first_fetch()));
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(?limit, "JWK Sets not fetched yet; serving, tokens wait for their keys");
        }
    }

    /// Stop background work (active health checks, limiter exchanges, purge listener).
    pub fn stop(&self) {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        for p in registry.jwt_providers.values() {
            p.stop();
        }
        registry.health.cancel();
        self.background.cancel();
        self.tunnel_stop.cancel();
        self.tunnels.close();
    }

    /// Wait until every tunnel closed (after [`Gateway::stop`]).
    pub async fn tunnels_closed(&self) {
        self.tunnels.wait().await;
    }

    pub(crate) fn background(&self) -> &CancellationToken {
        &self.background
    }
}
