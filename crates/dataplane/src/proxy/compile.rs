//! Gateway document → [`Snapshot`]: route table, pools, connection pools and
//! active health checks, reusing the state of targets the new version keeps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::HeaderValue;
use tokio_util::sync::CancellationToken;

use super::policy::rate_limit::RouteLimit;
use super::policy::Policy;
use super::upstream::{Breaker, ConnPool, RetryBudget, Sticky, Upstream};
use super::{Gateway, Registry, Route, Snapshot};
use crate::balance::{Endpoint, EndpointHealth, Pool};
use crate::health::active::{ActiveCheck, ProbeSink};
use crate::health::PassivePolicy;
use crate::routing::{RouteSpec, RouteTable};
use meridian_core::config::{
    CheckedDocument, ConfigErrorKind as K, ConfigErrors, HashOn, RateLimitKey, UpstreamConfig,
};

pub(super) fn compile(
    gw: &Gateway,
    registry: &mut Registry,
    doc: CheckedDocument,
    version: u64,
    health: &CancellationToken,
) -> Result<Snapshot, ConfigErrors> {
    let (mut doc, values) = doc.into_parts();
    doc.version = version;
    let mut errors = ConfigErrors::default();
    let mut endpoints: HashMap<(String, String), Arc<Endpoint>> = HashMap::new();
    let mut conns: HashMap<String, Arc<ConnPool>> = HashMap::new();
    let mut upstreams = BTreeMap::new();
    for (name, cfg) in &doc.upstreams {
        let hash_on = values.upstreams.get(name).and_then(|v| v.hash_on.clone());
        let up = compile_upstream(gw, registry, name, cfg, hash_on, &mut endpoints, &mut conns, health);
        upstreams.insert(name.clone(), Arc::new(up));
    }
    let mut routes = Vec::with_capacity(doc.routes.len());
    let mut limiters: HashMap<String, Arc<RouteLimit>> = HashMap::new();
    // Validation parsed every value: a route without values cannot get here,
    // and a mismatch is an error, not a route dropped in silence.
    if values.routes.len() != doc.routes.len() {
        errors.push("routes", K::Syntax("the document's values do not match its routes".into()));
        return Err(errors);
    }
    for (i, (r, v)) in doc.routes.iter().zip(values.routes).enumerate() {
        let Some(upstream) = upstreams.get(&r.upstream).cloned() else {
            errors.push(format!("routes[{i}].upstream"), K::UnknownUpstream(r.upstream.clone()));
            continue;
        };
        let spec = RouteSpec { hosts: v.hosts, path: v.path, methods: v.methods, headers: v.headers };
        let route = Route {
            name: r.name.as_str().into(),
            connect_timeout: r.connect_timeout.unwrap_or(upstream.connect_timeout),
            retries: r.retries.unwrap_or(upstream.retry_attempts),
            upstream,
            rewrite: v.rewrite,
            preserve_host: r.preserve_host,
            timeout: r.timeout,
            metrics: Arc::new(gw.metrics.route(&r.name)),
            policies: Vec::new(),
            upgrades: v.upgrades,
        };
        // The route's policies, in the order they run.
        let mut route = route;
        if let Some(cfg) = &r.rate_limit {
            let Some(key) = v.rate_limit_key else {
                errors.push(format!("routes[{i}].rate_limit.key"), K::InvalidRateLimitKey(cfg.key.clone()));
                continue;
            };
            let reused = registry.limiters.get(&r.name).filter(|l| l.config == *cfg).cloned();
            let l = reused.unwrap_or_else(|| Arc::new(route_limit(gw, &r.name, cfg, key)));
            limiters.insert(r.name.clone(), l.clone());
            route.policies.push(Policy::RateLimit(l));
        }
        if let Some(c) = &r.cache {
            let cache = crate::cache::RouteCache::new(&r.name, c, v.cache_key_headers, gw.cache.clone());
            route.policies.push(Policy::Cache(Arc::new(cache)));
        }
        routes.push((spec, Arc::new(route)));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Commit: the registry now holds exactly what this version uses.
    registry.endpoints = endpoints;
    registry.conns = conns;
    registry.limiters = limiters;
    Ok(Snapshot { version: doc.version, document: Arc::new(doc), table: RouteTable::new(routes), upstreams })
}

fn route_limit(
    gw: &Gateway,
    route: &str,
    cfg: &meridian_core::config::RateLimitConfig,
    key: RateLimitKey,
) -> RouteLimit {
    let names: Vec<String> = cfg.limits.iter().map(|l| format!("{}s", l.per.as_secs().max(1))).collect();
    let policy = cfg
        .limits
        .iter()
        .zip(&names)
        .map(|(l, n)| format!("\"{n}\";q={};w={}", l.requests, l.per.as_secs().max(1)))
        .collect::<Vec<_>>()
        .join(", ");
    RouteLimit {
        key,
        limiter: crate::limit::RouteLimiter::new(route, cfg, gw.store.clone(), gw.background()),
        policy_header: HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("")),
        names,
        config: cfg.clone(),
        decisions: ["allowed", "limited", "allowed_fallback", "limited_fallback", "unavailable"]
            .map(|d| gw.metrics.ratelimit_decisions.with_label_values(&[route, d])),
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_upstream(
    gw: &Gateway,
    registry: &Registry,
    name: &str,
    cfg: &UpstreamConfig,
    hash_on: Option<HashOn>,
    endpoints: &mut HashMap<(String, String), Arc<Endpoint>>,
    conns: &mut HashMap<String, Arc<ConnPool>>,
    health: &CancellationToken,
) -> Upstream {
    let name_arc: Arc<str> = name.into();
    let mut eps = Vec::with_capacity(cfg.targets.len());
    let mut pools = Vec::with_capacity(cfg.targets.len());
    let mut weights = Vec::with_capacity(cfg.targets.len());
    for t in &cfg.targets {
        let key = (name.to_string(), t.address.clone());
        let ep = registry.endpoints.get(&key).cloned().unwrap_or_else(|| Arc::new(Endpoint::new(&t.address)));
        endpoints.insert(key, ep.clone());
        let cp = conns
            .entry(t.address.clone())
            .or_insert_with(|| {
                registry.conns.get(&t.address).cloned().unwrap_or_else(|| {
                    Arc::new(ConnPool::new(&t.address, cfg.pool.max_idle_per_target, cfg.pool.idle_timeout))
                })
            })
            .clone();
        cp.configure(cfg.pool.max_idle_per_target, cfg.pool.idle_timeout);
        eps.push(ep);
        pools.push(cp);
        weights.push(t.weight);
    }
    let passive =
        cfg.health.passive.as_ref().map(|p| {
            PassivePolicy::new(p.consecutive_failures, p.base_ejection, p.max_ejection, p.max_ejected_percent)
        });
    match &cfg.health.active {
        Some(a) => {
            let check = Arc::new(ActiveCheck {
                path: a.path.clone(),
                host: a.host.clone(),
                interval: a.interval,
                timeout: a.timeout,
                rise: a.rise,
                fall: a.fall,
                expected_status: a.expected_status.clone(),
            });
            for ep in &eps {
                let sink = ProbeSink {
                    upstream: name_arc.clone(),
                    target: ep.address.clone(),
                    healthy: gw.metrics.upstream_healthy.with_label_values(&[name, &ep.address]),
                    probes_ok: gw.metrics.health_checks.with_label_values(&[name, &ep.address, "ok"]),
                    probes_failed: gw.metrics.health_checks.with_label_values(&[name, &ep.address, "failed"]),
                };
                let target = EndpointHealth(ep.clone());
                crate::health::active::spawn(ep.address.clone(), target, check.clone(), sink, health.child_token());
            }
        }
        None => {
            // Without active checks a target is never held down by an old verdict.
            for ep in &eps {
                ep.health.set_active_up(true);
                gw.metrics.upstream_healthy.with_label_values(&[name, &ep.address]).set(1);
            }
        }
    }
    let sticky = cfg.sticky.as_ref().map(|s| Sticky {
        cookie: s.cookie.clone(),
        attributes: if s.ttl.is_zero() {
            "; Path=/; HttpOnly".to_string()
        } else {
            format!("; Path=/; Max-Age={}; HttpOnly", s.ttl.as_secs())
        },
    });
    Upstream {
        pool: Pool::new(name_arc.clone(), eps, weights, cfg.algorithm, hash_on, passive),
        name: name_arc,
        conns: pools,
        connect_timeout: cfg.connect_timeout,
        retry_attempts: cfg.retry.attempts,
        retry_on_5xx: cfg.retry.on_5xx,
        budget: RetryBudget::new(cfg.retry.budget_ratio, cfg.retry.min_per_second),
        breaker: Breaker::new(cfg.circuit_breaker.max_requests, cfg.circuit_breaker.max_pending),
        sticky,
    }
}
