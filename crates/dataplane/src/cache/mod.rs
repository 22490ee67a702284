//! The response cache: an in-process L1 (bounded by bytes) in front of an L2
//! in the region's Redis that every node shares. Keys come from the method,
//! host, path and query and chosen request headers, plus the request headers
//! a response's `Vary` names. Purges bump a per-route generation (part of
//! every key, so old entries are simply never read again) and tell every node
//! to drop its L1 through Redis pub/sub. A burst of misses for one key makes
//! one upstream request; the others wait for it.

use meridian_core::clock::unix_ms;
use meridian_core::keys::push_part;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::kv::RegionStore;
use crate::telemetry::GatewayMetrics;
use meridian_core::config::{CacheConfig, LimitScope};

const PURGE_CHANNEL: &str = "meridian:cache:purge";

/// A stored response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub stored_unix_ms: u64,
    pub ttl_ms: u64,
    pub stale_ms: u64,
}

/// What sits under a key: a response, or the list of request headers its variants depend on.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Slot {
    Response(CachedResponse),
    Vary(Vec<String>),
}

impl Slot {
    fn weight(&self) -> u32 {
        match self {
            Slot::Response(r) => {
                (r.body.len() + r.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + 64) as u32
            }
            Slot::Vary(v) => v.iter().map(String::len).sum::<usize>() as u32 + 32,
        }
    }
}

pub enum Lookup {
    Fresh {
        response: Arc<CachedResponse>,
        age_secs: u64,
    },
    /// Expired, but within `stale_if_error`.
    Stale {
        response: Arc<CachedResponse>,
        age_secs: u64,
    },
    Miss,
}

/// The cache of a node, shared by its routes.
pub struct NodeCache {
    l1: moka::future::Cache<String, Arc<Slot>>,
    store: Option<Arc<RegionStore>>,
    generations: Mutex<HashMap<String, u64>>,
    inflight: Mutex<HashMap<String, watch::Receiver<bool>>>,
    metrics: Arc<GatewayMetrics>,
}

/// While held, this request fetches `key` for everyone waiting on it.
pub struct Leader {
    cache: Arc<NodeCache>,
    key: String,
    done: watch::Sender<bool>,
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Ok(mut m) = self.cache.inflight.lock() {
            m.remove(&self.key);
        }
        let _ = self.done.send(true);
    }
}

pub enum Role {
    Leader(Leader),
    Follower(watch::Receiver<bool>),
}

impl NodeCache {
    pub fn new(
        l1_bytes: u64,
        store: Option<Arc<RegionStore>>,
        metrics: Arc<GatewayMetrics>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let evicted = metrics.cache_events.clone();
        let l1 = moka::future::Cache::builder()
            .max_capacity(l1_bytes)
            // Keys are client-influenced: they count against the budget too.
            .weigher(|k: &String, v: &Arc<Slot>| v.weight().saturating_add(k.len() as u32))
            .time_to_live(Duration::from_secs(24 * 3600))
            .support_invalidation_closures()
            .eviction_listener(move |k: Arc<String>, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    let route = k.split('|').next().unwrap_or("-");
                    evicted.with_label_values(&[route, "evicted"]).inc();
                }
            })
            .build();
        let cache = Arc::new(Self {
            l1,
            store,
            generations: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            metrics,
        });
        if cache.store.is_some() {
            tokio::spawn(cache.clone().listen_for_purges(shutdown));
        }
        cache
    }

    fn generation_key(route: &str) -> String {
        format!("meridian:cache:gen:{route}")
    }

    /// The route's generation (learned from Redis once, then kept current by purge messages).
    async fn generation(&self, route: &str, scope: LimitScope) -> u64 {
        if let Some(g) = self.generations.lock().ok().and_then(|g| g.get(route).copied()) {
            return g;
        }
        let mut g = 0;
        if let (Some(store), LimitScope::Region) = (&self.store, scope) {
            if let Ok(v) = store.query::<Option<u64>>(redis::Cmd::get(Self::generation_key(route))).await {
                g = v.unwrap_or(0);
            }
        }
        if let Ok(mut m) = self.generations.lock() {
            m.insert(route.to_string(), g);
        }
        g
    }

    /// Purge a route (or every route): new generation, every node's L1 dropped.
    pub async fn purge(&self, route: Option<&str>) -> Result<(), crate::kv::KvError> {
        let routes: Vec<String> = match route {
            Some(r) => vec![r.to_string()],
            None => self.generations.lock().map(|g| g.keys().cloned().collect()).unwrap_or_default(),
        };
        if let Some(store) = &self.store {
            let mut pipe = redis::pipe();
            for r in &routes {
                pipe.cmd("INCR").arg(Self::generation_key(r)).ignore();
            }
            pipe.cmd("PUBLISH").arg(PURGE_CHANNEL).arg(route.unwrap_or("*")).ignore();
            store.pipeline::<()>(pipe).await?;
        }
        self.forget(route);
        Ok(())
    }

    /// Drop L1 entries and cached generations of `route` (or all).
    fn forget(&self, route: Option<&str>) {
        match route {
            Some(r) => {
                if let Ok(mut g) = self.generations.lock() {
                    g.remove(r);
                }
                let prefix = format!("{r}|");
                let _ = self.l1.invalidate_entries_if(move |k, _| k.starts_with(&prefix));
            }
            None => {
                if let Ok(mut g) = self.generations.lock() {
                    g.clear();
                }
                self.l1.invalidate_all();
            }
        }
    }

    async fn listen_for_purges(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let Some(store) = &self.store else { return };
            let Some(client) = store.pubsub_client() else {
                if !store.can_subscribe() {
                    return;
                }
                // Sentinel: the master is not known yet.
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let sub = tokio::time::timeout(Duration::from_secs(1), async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(PURGE_CHANNEL).await?;
                Ok::<_, redis::RedisError>(ps)
            })
            .await;
            match sub {
                Ok(Ok(mut ps)) => {
                    // Anything purged while we were not listening.
                    self.forget(None);
                    let mut stream = ps.on_message();
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            m = stream.next() => match m {
                                Some(msg) => {
                                    let route: String = msg.get_payload().unwrap_or_default();
                                    tracing::info!(route = %route, "cache purge received");
                                    self.forget(if route == "*" { None } else { Some(&route) });
                                }
                                None => break,
                            },
                        }
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// The cache policy of one route.
pub struct RouteCache {
    route: Arc<str>,
    node: Arc<NodeCache>,
    pub ttl: Duration,
    key_headers: Vec<http::HeaderName>,
    pub max_entry_bytes: usize,
    pub stale: Duration,
    scope: LimitScope,
}

/// Longest key a request may have; longer ones are not cached (a client
/// cannot make the cache hold keys of any size).
pub const MAX_KEY_BYTES: usize = 4096;

/// Longest lifetime an entry gets, whatever `max-age` says.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Request headers stored entries never keep: they belong to one exchange.
const PER_REQUEST: &[&str] = &["ratelimit", "ratelimit-policy", "x-request-id", "age", "date", "set-cookie"];

/// Every value of `name` in `headers`, as one key part.
fn header_part(key: &mut String, headers: &HeaderMap, name: &str) {
    let values: Vec<&[u8]> = headers.get_all(name).iter().map(HeaderValue::as_bytes).collect();
    push_part(key, name.as_bytes());
    push_part(key, &values.join(&b"\n"[..]));
}

fn variant(names: &[String], headers: &HeaderMap) -> String {
    let mut v = String::new();
    for n in names {
        header_part(&mut v, headers, n);
    }
    v
}

/// Directives of a `Cache-Control` header, lowercased.
fn directives(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect()
}

fn seconds(dirs: &[String], name: &str) -> Option<u64> {
    dirs.iter().find_map(|d| d.strip_prefix(name)?.strip_prefix('=')?.trim_matches('"').parse().ok())
}

/// Whether a request may be served from (and fill) the cache.
pub fn request_cacheable(method: &http::Method, headers: &HeaderMap) -> bool {
    (method == http::Method::GET || method == http::Method::HEAD)
        && !headers.contains_key(http::header::AUTHORIZATION)
        && !directives(headers).iter().any(|d| d == "no-store")
}

impl RouteCache {
    /// `key_headers`: the validated names of `cfg.key_headers`.
    pub fn new(route: &str, cfg: &CacheConfig, key_headers: Vec<http::HeaderName>, node: Arc<NodeCache>) -> Self {
        let scope = if node.store.is_some() { cfg.scope } else { LimitScope::Local };
        Self {
            route: route.into(),
            node,
            ttl: cfg.ttl,
            key_headers,
            max_entry_bytes: cfg.max_entry_bytes,
            stale: cfg.stale_if_error.unwrap_or_default(),
            scope,
        }
    }

    fn count(&self, event: &str) {
        self.node.metrics.cache_events.with_label_values(&[&self.route, event]).inc();
    }

    /// The primary key of a request, from what is forwarded: scheme,
    /// authority (lower-cased, port kept), canonical path, query and the
    /// route's key headers, each part length-prefixed. `None` (not cached)
    /// when it would be longer than [`MAX_KEY_BYTES`].
    pub async fn key(
        &self,
        scheme: &str,
        authority: &str,
        path: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Option<String> {
        let gen = self.node.generation(&self.route, self.scope).await;
        // The route's name leads (names have no '|'): metrics read it back.
        let mut k = format!("{}|g{gen}|", self.route);
        push_part(&mut k, scheme.as_bytes());
        push_part(&mut k, authority.to_ascii_lowercase().as_bytes());
        push_part(&mut k, path.as_bytes());
        push_part(&mut k, query.as_bytes());
        for h in &self.key_headers {
            header_part(&mut k, headers, h.as_str());
        }
        if k.len() > MAX_KEY_BYTES {
            self.count("bypass");
            return None;
        }
        Some(k)
    }

    async fn get_slot(&self, key: &str) -> Option<Arc<Slot>> {
        if let Some(s) = self.node.l1.get(key).await {
            return Some(s);
        }
        let store = self.node.store.as_ref().filter(|_| self.scope == LimitScope::Region)?;
        let bytes: Option<Vec<u8>> = store.query(redis::Cmd::get(format!("meridian:cache:{key}"))).await.ok()?;
        let slot: Slot = bincode::serde::decode_from_slice(&bytes?, bincode::config::standard()).ok()?.0;
        let slot = Arc::new(slot);
        self.node.l1.insert(key.to_string(), slot.clone()).await;
        Some(slot)
    }

    async fn put_slot(&self, key: String, slot: Slot, keep_ms: u64) {
        if let (Some(store), LimitScope::Region) = (&self.node.store, self.scope) {
            if let Ok(bytes) = bincode::serde::encode_to_vec(&slot, bincode::config::standard()) {
                let mut cmd = redis::cmd("SET");
                cmd.arg(format!("meridian:cache:{key}")).arg(bytes).arg("PX").arg(keep_ms.max(1));
                let _ = store.query::<()>(cmd).await;
            }
        }
        self.node.l1.insert(key, Arc::new(slot)).await;
    }

    /// Look a request up (following `Vary`).
    pub async fn lookup(&self, key: &str, headers: &HeaderMap) -> (Lookup, String) {
        let mut full = key.to_string();
        let mut slot = self.get_slot(key).await;
        if let Some(s) = &slot {
            if let Slot::Vary(names) = &**s {
                full = format!("{key}|v|{}", variant(names, headers));
                if full.len() > MAX_KEY_BYTES {
                    self.count("bypass");
                    return (Lookup::Miss, full);
                }
                slot = self.get_slot(&full).await;
            }
        }
        let Some(slot) = slot else {
            self.count("miss");
            return (Lookup::Miss, full);
        };
        let Slot::Response(r) = &*slot else {
            self.count("miss");
            return (Lookup::Miss, full);
        };
        let age_ms = unix_ms().saturating_sub(r.stored_unix_ms);
        let response = Arc::new(r.clone());
        let age_secs = age_ms / 1000;
        if age_ms < r.ttl_ms {
            self.count("hit");
            (Lookup::Fresh { response, age_secs }, full)
        } else if age_ms < r.ttl_ms.saturating_add(r.stale_ms) {
            (Lookup::Stale { response, age_secs }, full)
        } else {
            self.count("miss");
            (Lookup::Miss, full)
        }
    }

    /// Become the fetcher of `key`, or wait for the one already fetching.
    pub fn coalesce(&self, key: &str) -> Role {
        let Ok(mut m) = self.node.inflight.lock() else {
            let (tx, _) = watch::channel(false);
            return Role::Leader(Leader { cache: self.node.clone(), key: key.to_string(), done: tx });
        };
        if let Some(rx) = m.get(key) {
            self.count("coalesced");
            return Role::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(false);
        m.insert(key.to_string(), rx);
        Role::Leader(Leader { cache: self.node.clone(), key: key.to_string(), done: tx })
    }

    /// How long a response may be stored (`None`: not at all).
    /// `request_cookie`: the request carried a `Cookie`; its answer may be
    /// personal, so it is stored only when the upstream says it is shared
    /// (`public` or `s-maxage`).
    pub fn storable_for(&self, status: u16, headers: &HeaderMap, request_cookie: bool) -> Option<Duration> {
        if status != 200 || headers.contains_key(http::header::SET_COOKIE) {
            return None;
        }
        if headers.get(http::header::VARY).is_some_and(|v| v.as_bytes().contains(&b'*')) {
            return None;
        }
        let d = directives(headers);
        if d.iter().any(|x| x == "no-store" || x == "private" || x == "no-cache") {
            return None;
        }
        let shared = seconds(&d, "s-maxage");
        if request_cookie && shared.is_none() && !d.iter().any(|x| x == "public") {
            return None;
        }
        match shared.or_else(|| seconds(&d, "max-age")) {
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s).min(MAX_TTL)),
            None => Some(self.ttl.min(MAX_TTL)),
        }
    }

    /// Store a response under the request's primary key (and its `Vary` variant).
    pub async fn store(
        &self,
        primary: &str,
        request: &HeaderMap,
        status: u16,
        headers: &HeaderMap,
        body: Bytes,
        ttl: Duration,
    ) {
        let vary: Vec<String> = headers
            .get_all(http::header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let primary = primary.to_string();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let stale_ms = u64::try_from(self.stale.as_millis()).unwrap_or(u64::MAX);
        let keep = ttl_ms.saturating_add(stale_ms);
        let entry = CachedResponse {
            status,
            headers: headers
                .iter()
                .filter(|(k, _)| !PER_REQUEST.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
            stored_unix_ms: unix_ms(),
            ttl_ms,
            stale_ms,
        };
        if vary.is_empty() {
            self.put_slot(primary, Slot::Response(entry), keep).await;
        } else {
            let full = format!("{primary}|v|{}", variant(&vary, request));
            if full.len() > MAX_KEY_BYTES {
                self.count("bypass");
                return;
            }
            self.put_slot(primary, Slot::Vary(vary), keep.max(3_600_000)).await;
            self.put_slot(full, Slot::Response(entry), keep).await;
        }
        self.count("store");
    }

    pub fn count_stale(&self) {
        self.count("stale");
    }
}
