//! Gateway document → [`Snapshot`]: route table, pools, connection pools and
//! active health checks, reusing the state of targets the new version keeps.

use super::policy::rate_limit::{LimitKey, RouteLimit};
use super::policy::Policy;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use tokio_util::sync::CancellationToken;

use super::upstream::{Breaker, ConnPool, RetryBudget, Sticky, Upstream};
use super::{Gateway, Registry, Route, Snapshot};
use crate::balance::{Endpoint, EndpointHealth, Pool};
use crate::health::active::{ActiveCheck, ProbeSink};
use crate::health::PassivePolicy;
use crate::routing::{HeaderMatch, RouteSpec, RouteTable};
use meridian_core::config::HashOn;
use meridian_core::config::{ConfigErrorKind as K, ConfigErrors, GatewayDocument, UpstreamConfig};
use meridian_core::pattern::{HostPattern, Rewrite};

pub(super) fn compile(
    gw: &Gateway,
    registry: &mut Registry,
    doc: GatewayDocument,
    health: &CancellationToken,
) -> Result<Snapshot, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut endpoints: HashMap<(String, String), Arc<Endpoint>> = HashMap::new();
    let mut conns: HashMap<String, Arc<ConnPool>> = HashMap::new();
    let mut upstreams = BTreeMap::new();
    for (name, cfg) in &doc.upstreams {
        let up = compile_upstream(gw, registry, name, cfg, &mut endpoints, &mut conns, health, &mut errors);
        upstreams.insert(name.clone(), Arc::new(up));
    }
    let mut routes = Vec::with_capacity(doc.routes.len());
    let mut limiters: HashMap<String, Arc<RouteLimit>> = HashMap::new();
    for (i, r) in doc.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        let Some(upstream) = upstreams.get(&r.upstream).cloned() else {
            errors.push(format!("{p}.upstream"), K::UnknownUpstream(r.upstream.clone()));
            continue;
        };
        let Some(path) = meridian_core::config::validate_route_path(&mut errors, &p, r) else {
            continue;
        };
        let rewrite = match Rewrite::new(&path, r.strip_prefix, r.rewrite.as_deref()) {
            Ok(rw) => rw,
            Err(e) => {
                errors.push(
                    format!("{p}.rewrite"),
                    K::InvalidPath { value: r.rewrite.clone().unwrap_or_default(), reason: format!("{e:?}") },
                );
                continue;
            }
        };
        let hosts: Vec<HostPattern> = r.hosts.iter().filter_map(|h| HostPattern::parse(h).ok()).collect();
        let methods: Vec<Method> = r.methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect();
        let headers: Vec<(HeaderName, HeaderMatch)> = r
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes()).ok()?;
                let cond =
                    if v == "*" { HeaderMatch::Present } else { HeaderMatch::Exact(HeaderValue::from_str(v).ok()?) };
                Some((name, cond))
            })
            .collect();
        let spec = RouteSpec { hosts, path, methods, headers };
        let route = Route {
            name: r.name.as_str().into(),
            connect_timeout: r.connect_timeout.unwrap_or(upstream.connect_timeout),
            retries: r.retries.unwrap_or(upstream.retry_attempts),
            upstream,
            rewrite,
            preserve_host: r.preserve_host,
            timeout: r.timeout,
            metrics: Arc::new(gw.metrics.route(&r.name)),
            policies: Vec::new(),
        };
        // The route's policies, in the order they run.
        let mut route = route;
        if let Some(cfg) = &r.rate_limit {
            let reused = registry.limiters.get(&r.name).filter(|l| l.config == *cfg).cloned();
            let l = reused.unwrap_or_else(|| Arc::new(route_limit(gw, &r.name, cfg)));
            limiters.insert(r.name.clone(), l.clone());
            route.policies.push(Policy::RateLimit(l));
        }
        if let Some(c) = &r.cache {
            route.policies.push(Policy::Cache(Arc::new(crate::cache::RouteCache::new(&r.name, c, gw.cache.clone()))));
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

fn route_limit(gw: &Gateway, route: &str, cfg: &meridian_core::config::RateLimitConfig) -> RouteLimit {
    let key = match cfg.key.as_str() {
        "route" => LimitKey::Route,
        k => match k.strip_prefix("header:").and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()) {
            Some(h) => LimitKey::Header(h),
            None => LimitKey::ClientIp,
        },
    };
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
    endpoints: &mut HashMap<(String, String), Arc<Endpoint>>,
    conns: &mut HashMap<String, Arc<ConnPool>>,
    health: &CancellationToken,
    errors: &mut ConfigErrors,
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
    let hash_on = match &cfg.hash_on {
        Some(h) => {
            let parsed = HashOn::parse(h);
            if parsed.is_none() {
                errors.push(format!("upstreams.{name}.hash_on"), K::InvalidHashOn(h.clone()));
            }
            parsed
        }
        None => None,
    };
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
