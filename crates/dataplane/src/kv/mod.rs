//! The region's Redis: one connection (single server, Sentinel-managed
//! master, or Redis Cluster) shared by the rate limiters and the response
//! cache. Every call is bounded by a short timeout; after a failure the store
//! reports itself unavailable — callers fall back at once instead of waiting —
//! until a background ping finds Redis again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, ScriptInvocation, Value};
use tokio_util::sync::CancellationToken;

use crate::telemetry::GatewayMetrics;
use meridian_core::config::RedisConfig;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("redis is unavailable (falling back)")]
    Unavailable,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl KvError {
    fn kind(&self) -> &'static str {
        match self {
            KvError::Unavailable => "unavailable",
            KvError::Timeout(_) => "timeout",
            KvError::Redis(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => "io",
            KvError::Redis(_) => "server",
        }
    }
}

/// A connection to whichever topology is configured.
#[derive(Clone)]
enum Conn {
    Manager(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

fn manager_config() -> ConnectionManagerConfig {
    // Our own per-call timeout is much shorter; these bound the background work.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(200))
}

pub struct RegionStore {
    /// `None` until a Sentinel or Cluster topology was first reached.
    conn: ArcSwap<Option<Conn>>,
    /// Redis Cluster: connected (again) by the health checker.
    cluster: Option<redis::cluster::ClusterClient>,
    /// A client for subscriptions (single server or the current master).
    pubsub_client: ArcSwap<Option<redis::Client>>,
    sentinel: Option<tokio::sync::Mutex<redis::sentinel::SentinelClient>>,
    timeout: Duration,
    available: AtomicBool,
    metrics: Arc<GatewayMetrics>,
    /// Nodes sharing a region-scoped budget while Redis is away.
    pub fallback_nodes: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("redis configuration: {0}")]
pub struct KvConfigError(String);

impl RegionStore {
    /// Connect lazily, whatever the topology (the node starts while Redis is
    /// down and runs on its fallbacks), and start the health checker, which
    /// connects as soon as Redis answers.
    pub async fn connect(
        cfg: &RedisConfig,
        metrics: Arc<GatewayMetrics>,
        fallback_nodes: u32,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, KvConfigError> {
        crate::tls::install_crypto_provider();
        let err = |e: redis::RedisError| KvConfigError(e.to_string());
        let (conn, client, sentinel, cluster) = if let Some(url) = &cfg.url {
            let client = redis::Client::open(url.as_str()).map_err(err)?;
            let m = ConnectionManager::new_lazy_with_config(client.clone(), manager_config()).map_err(err)?;
            (Some(Conn::Manager(m)), Some(client), None, None)
        } else if !cfg.cluster.is_empty() {
            let client = redis::cluster::ClusterClient::builder(cfg.cluster.clone())
                .connection_timeout(Duration::from_millis(500))
                .response_timeout(Duration::from_secs(1))
                .build()
                .map_err(err)?;
            (None, None, None, Some(client))
        } else {
            let master = cfg.master_name.clone().ok_or_else(|| KvConfigError("sentinels need master_name".into()))?;
            let s = redis::sentinel::SentinelClient::build(
                cfg.sentinels.clone(),
                master,
                None,
                redis::sentinel::SentinelServerType::Master,
            )
            .map_err(err)?;
            (None, None, Some(tokio::sync::Mutex::new(s)), None)
        };
        let lazy = conn.is_some();
        let store = Arc::new(Self {
            conn: ArcSwap::from_pointee(conn),
            cluster,
            pubsub_client: ArcSwap::from_pointee(client),
            sentinel,
            timeout: cfg.timeout,
            available: AtomicBool::new(lazy),
            metrics,
            fallback_nodes: cfg.fallback_nodes.unwrap_or(fallback_nodes).max(1),
        });
        if !lazy {
            // One bounded try, so a node whose Redis is up starts connected;
            // if it is down, the node starts anyway on its fallbacks.
            store.reconnect().await;
        }
        let connected = store.conn.load().is_some();
        store.available.store(connected, Ordering::Relaxed);
        store.metrics.redis_available.set(i64::from(connected));
        if !connected {
            tracing::warn!("redis unreachable at start: routes use their fallbacks until it answers");
        }
        tokio::spawn(store.clone().watch(shutdown));
        Ok(store)
    }

    pub fn available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Purges arrive by subscription on every topology but Redis Cluster.
    pub fn can_subscribe(&self) -> bool {
        self.cluster.is_none()
    }

    pub fn pubsub_client(&self) -> Option<redis::Client> {
        (**self.pubsub_client.load()).clone()
    }

    fn mark(&self, up: bool, why: &str) {
        if self.available.swap(up, Ordering::Relaxed) != up {
            self.metrics.redis_available.set(i64::from(up));
            self.metrics.redis_mode_switches.with_label_values(&[if up { "redis" } else { "fallback" }]).inc();
            if up {
                tracing::info!("redis reachable again: shared limits and cache resume");
            } else {
                tracing::warn!(reason = why, "redis unreachable: routes fall back as configured");
            }
        }
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, KvError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.available() {
            return Err(KvError::Unavailable);
        }
        let started = Instant::now();
        let Some(conn) = (**self.conn.load()).clone() else { return Err(KvError::Unavailable) };
        let result = match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(KvError::Redis(e)),
            Err(_) => Err(KvError::Timeout(self.timeout)),
        };
        self.metrics.redis_seconds.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            self.metrics.redis_errors.with_label_values(&[e.kind()]).inc();
            // A script error is ours, not Redis being away.
            if e.kind() != "server" || matches!(e, KvError::Redis(r) if r.to_string().contains("READONLY")) {
                self.mark(false, e.kind());
            }
        }
        result
    }

    pub async fn query<T: FromRedisValue + Send>(&self, cmd: Cmd) -> Result<T, KvError> {
        self.call(|mut c| async move { cmd.query_async(&mut c).await }).await
    }

    pub async fn pipeline<T: FromRedisValue + Send>(&self, p: Pipeline) -> Result<T, KvError> {
        self.call(|mut c| async move { p.query_async(&mut c).await }).await
    }

    pub async fn script<T: FromRedisValue + Send>(&self, inv: &ScriptInvocation<'_>) -> Result<T, KvError> {
        self.call(|mut c| async move { inv.invoke_async(&mut c).await }).await
    }

    /// Sentinel: ask for the current master (it may have failed over);
    /// Cluster: connect if never connected. Bounded; nothing on failure.
    async fn reconnect(&self) {
        if let Some(s) = &self.sentinel {
            let resolved =
                tokio::time::timeout(Duration::from_millis(500), async { s.lock().await.async_get_client().await })
                    .await;
            if let Ok(Ok(client)) = resolved {
                if let Ok(m) = ConnectionManager::new_lazy_with_config(client.clone(), manager_config()) {
                    self.conn.store(Arc::new(Some(Conn::Manager(m))));
                    self.pubsub_client.store(Arc::new(Some(client)));
                }
            }
        }
        if let (Some(client), None) = (&self.cluster, &**self.conn.load()) {
            let connected = tokio::time::timeout(Duration::from_millis(500), client.get_async_connection()).await;
            if let Ok(Ok(c)) = connected {
                self.conn.store(Arc::new(Some(Conn::Cluster(c))));
            }
        }
    }

    /// Ping until Redis answers while it is marked unavailable; with
    /// Sentinel, ask for the current master first (it may have failed over).
    async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = meridian_core::clock::Ticker::new(Duration::from_millis(200), shutdown.clone());
        while tick.next().await {
            if self.available() {
                continue;
            }
            self.reconnect().await;
            let Some(conn) = (**self.conn.load()).clone() else { continue };
            let ping = tokio::time::timeout(Duration::from_millis(250), async move {
                let mut c = conn;
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await;
            if matches!(ping, Ok(Ok(_))) {
                self.mark(true, "ping answered");
            }
        }
    }
}
