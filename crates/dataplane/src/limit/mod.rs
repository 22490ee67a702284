//! Rate limiting: per-route policies over local counters ([`local`]) or the
//! region's budget in Redis ([`region`]), with the configured fallback when
//! Redis is away. Knows nothing of HTTP: callers pass the key and get
//! verdicts back.

pub mod local;
pub mod region;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::kv::RegionStore;
use local::{LocalLimiter, Rate, Verdict};
use meridian_core::config::{LimitAlgorithm, LimitMode, LimitScope, RateLimitConfig, RedisFailure};
use region::Batcher;

/// The decision on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed {
        verdicts: Vec<Verdict>,
        fallback: bool,
    },
    Limited {
        verdicts: Vec<Verdict>,
        fallback: bool,
    },
    /// Redis is away and the route fails closed.
    Unavailable,
}

pub struct RouteLimiter {
    route: Arc<str>,
    rates: Vec<Rate>,
    gcra: bool,
    scope: LimitScope,
    mode: LimitMode,
    on_error: RedisFailure,
    local: LocalLimiter,
    /// This node's share of a region budget, while Redis is away.
    fallback: LocalLimiter,
    store: Option<Arc<RegionStore>>,
    batcher: Option<Arc<Batcher>>,
}

impl RouteLimiter {
    pub fn new(
        route: &str,
        cfg: &RateLimitConfig,
        store: Option<Arc<RegionStore>>,
        shutdown: &CancellationToken,
    ) -> Self {
        let rates: Vec<Rate> = cfg
            .limits
            .iter()
            .map(|l| Rate { requests: l.requests, window_ms: l.per.as_millis().max(1) as u64 })
            .collect();
        let gcra = cfg.algorithm == LimitAlgorithm::Gcra;
        let nodes = store.as_ref().map_or(1, |s| u64::from(s.fallback_nodes));
        let share: Vec<Rate> = rates
            .iter()
            .map(|r| Rate { requests: r.requests.div_ceil(nodes).max(1), window_ms: r.window_ms })
            .collect();
        let route: Arc<str> = route.into();
        let region = cfg.scope == LimitScope::Region;
        let batcher = match (&store, region, cfg.mode) {
            (Some(s), true, LimitMode::Batched) => {
                let b = Batcher::new(route.clone(), rates.clone());
                b.spawn(s.clone(), cfg.sync_interval, shutdown.clone());
                Some(b)
            }
            _ => None,
        };
        Self {
            route,
            local: LocalLimiter::new(rates.clone(), gcra),
            fallback: LocalLimiter::new(share, gcra),
            rates,
            gcra,
            scope: cfg.scope,
            mode: cfg.mode,
            on_error: cfg.on_redis_error,
            store: if region { store } else { None },
            batcher,
        }
    }

    pub fn rates(&self) -> &[Rate] {
        &self.rates
    }

    fn outcome(verdicts: Vec<Verdict>, fallback: bool) -> Outcome {
        if verdicts.iter().all(|v| v.allowed) {
            Outcome::Allowed { verdicts, fallback }
        } else {
            Outcome::Limited { verdicts, fallback }
        }
    }

    fn fall_back(&self, key: &str, now_ms: u64) -> Outcome {
        match self.on_error {
            RedisFailure::FailOpen => Self::outcome(self.fallback.check(key, now_ms), true),
            RedisFailure::FailClosed => Outcome::Unavailable,
        }
    }

    /// Check and count one request for the key whose [`key_digest`] is
    /// `key`: memory and Redis hold a fixed-size digest, never a client's
    /// bytes (API keys stay out of Redis key names).
    pub async fn check(&self, key: &str) -> Outcome {
        let now_ms = meridian_core::clock::unix_ms();
        if self.scope == LimitScope::Local {
            return Self::outcome(self.local.check(key, now_ms), false);
        }
        let Some(store) = &self.store else {
            // A region scope without Redis configured: this node alone.
            return Self::outcome(self.local.check(key, now_ms), false);
        };
        if !store.available() {
            return self.fall_back(key, now_ms);
        }
        match (&self.batcher, self.mode) {
            (Some(b), LimitMode::Batched) => Self::outcome(b.check(key, now_ms), false),
            _ => match region::exact(store, &self.route, key, &self.rates, self.gcra).await {
                Ok(v) => Self::outcome(v, false),
                Err(_) => self.fall_back(key, now_ms),
            },
        }
    }
}

/// The fixed-size name a limit key is counted under: 128 bits of xxh3 over
/// the key's parts (one after the other, as if joined), hex. The same on
/// every node, so a region shares one budget per key.
pub fn key_digest_of(parts: &[&[u8]]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(p);
    }
    format!("{:032x}", h.digest128())
}

/// [`key_digest_of`] a key given whole.
pub fn key_digest(key: &str) -> String {
    key_digest_of(&[key.as_bytes()])
}

/// Seconds for headers, at least 1 when anything is left.
pub fn secs(ms: u64) -> u64 {
    Duration::from_millis(ms).as_secs() + u64::from(!ms.is_multiple_of(1000))
}
