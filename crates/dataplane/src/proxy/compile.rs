//! Gateway document → [`Snapshot`]: route table, pools, connection pools and
//! active health checks, reusing the state of targets the new version keeps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::HeaderValue;
use tokio_util::sync::CancellationToken;

use super::policy::access::RouteAccess;
use super::policy::aggregate::{Backend, RouteAggregate};
use super::policy::auth::{ApiKeyMethod, IntrospectionMethod, JwtMethod, RouteAuth, METHODS};
use super::policy::cors::RouteCors;
use super::policy::graphql::{GraphqlLimits, RouteGraphql};
use super::policy::ip_rules::{IpMatcher, IpRules};
use super::policy::rate_limit::RouteLimit;
use super::policy::transform::RouteTransform;
use super::policy::validate::RouteValidate;
use super::policy::Policy;
use super::upstream::{Breaker, ConnPool, RetryBudget, Sticky, Upstream};
use super::{Gateway, Registry, Route, Snapshot};
use crate::balance::{Endpoint, EndpointHealth, Pool};
use crate::health::active::{ActiveCheck, ProbeSink};
use crate::health::PassivePolicy;
use crate::identity::introspect::Introspector;
use crate::identity::jwt::Provider;
use crate::identity::{Credential, Directory};
use crate::routing::{RouteSpec, RouteTable};
use meridian_core::config::{
    CheckedDocument, ConfigErrorKind as K, ConfigErrors, HashOn, RateLimitKey, RouteAccessValues, RouteConfig,
    UpstreamConfig,
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
    let directory = Arc::new(crate::identity::Directory::new(&doc.consumers, gw.settings.pepper.clone()));
    if directory.has_keys() && gw.settings.pepper.is_none() {
        errors.push(
            "consumers",
            K::Invalid {
                value: "api_keys".into(),
                reason: "this node has no identity pepper ([identity] pepper_file or MERIDIAN_IDENTITY_PEPPER)".into(),
            },
        );
    }
    let mut providers: HashMap<String, Arc<Provider>> = HashMap::new();
    for (name, cfg) in &doc.jwt_providers {
        let Some(v) = values.jwt_providers.get(name) else { continue };
        let reused = registry.jwt_providers.get(name).filter(|p| p.config == *cfg).cloned();
        let provider = match reused {
            Some(p) => p,
            None => match Provider::new(name, cfg, v, gw.metrics.clone(), gw.background().child_token()) {
                Ok(p) => p,
                Err(reason) => {
                    errors.push(format!("jwt_providers.{name}"), K::Invalid { value: name.clone(), reason });
                    continue;
                }
            },
        };
        providers.insert(name.clone(), provider);
    }
    // The consumers with a metric label of their own: the first by name.
    let mut labelled: Vec<&str> = doc.consumers.iter().map(|c| c.name.as_str()).collect();
    labelled.sort_unstable();
    labelled.truncate(gw.settings.consumer_labels);
    let mut introspectors: HashMap<String, Arc<Introspector>> = HashMap::new();
    for (name, cfg) in &doc.introspection {
        let reused = registry.introspectors.get(name).filter(|i| i.config == *cfg).cloned();
        match reused.map_or_else(|| Introspector::new(name, cfg, gw.metrics.clone()), Ok) {
            Ok(i) => {
                introspectors.insert(name.clone(), i);
            }
            Err(reason) => errors.push(format!("introspection.{name}"), K::Invalid { value: name.clone(), reason }),
        }
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
        let found = Found { directory: &directory, providers: &providers, introspectors: &introspectors };
        identity_policies(gw, r, &v.access, &found, &labelled, &mut route.policies);
        if let Some(cfg) = &r.rate_limit {
            let Some(key) = v.rate_limit_key else {
                errors.push(format!("routes[{i}].rate_limit.key"), K::InvalidRateLimitKey(cfg.key.clone()));
                continue;
            };
            let by_consumer = matches!(key, RateLimitKey::Consumer | RateLimitKey::Credential);
            let mut overrides = HashMap::new();
            for c in doc.consumers.iter().filter(|c| by_consumer && !c.limits.is_empty()) {
                // Counted under a key of their own, kept across reloads like the route's.
                let id = format!("{}#{}", r.name, c.name);
                let own = meridian_core::config::RateLimitConfig { limits: c.limits.clone(), ..cfg.clone() };
                let reused = registry.limiters.get(&id).filter(|l| l.config == own).cloned();
                let l = reused.unwrap_or_else(|| {
                    Arc::new(route_limit(gw, &r.name, &id, &own, key.clone(), HashMap::new(), Vec::new()))
                });
                limiters.insert(id, l.clone());
                overrides.insert(Arc::<str>::from(c.name.as_str()), l);
            }
            let mut group_overrides = Vec::new();
            for (group, limits) in doc.group_limits.iter().filter(|_| by_consumer) {
                let id = format!("{}@{group}", r.name);
                let own = meridian_core::config::RateLimitConfig { limits: limits.clone(), ..cfg.clone() };
                let reused = registry.limiters.get(&id).filter(|l| l.config == own).cloned();
                let l = reused.unwrap_or_else(|| {
                    Arc::new(route_limit(gw, &r.name, &id, &own, key.clone(), HashMap::new(), Vec::new()))
                });
                limiters.insert(id, l.clone());
                group_overrides.push((Arc::<str>::from(group.as_str()), l));
            }
            let same = |l: &RouteLimit| {
                l.config == *cfg
                    && l.overrides.len() == overrides.len()
                    && overrides.iter().all(|(c, o)| l.overrides.get(c).is_some_and(|x| Arc::ptr_eq(x, o)))
                    && l.group_overrides.len() == group_overrides.len()
                    && l.group_overrides
                        .iter()
                        .zip(&group_overrides)
                        .all(|(a, b)| a.0 == b.0 && Arc::ptr_eq(&a.1, &b.1))
            };
            let reused = registry.limiters.get(&r.name).filter(|l| same(l)).cloned();
            let l = reused
                .unwrap_or_else(|| Arc::new(route_limit(gw, &r.name, &r.name, cfg, key, overrides, group_overrides)));
            limiters.insert(r.name.clone(), l.clone());
            route.policies.push(Policy::RateLimit(l));
        }
        if let (Some(cfg), Some(values)) = (&r.validate, v.validate) {
            let count = |result: &str| gw.metrics.transforms.with_label_values(&[&r.name, "validation", result]);
            let max_body = (gw.settings.limits.max_body_bytes as usize).min(cfg.max_body_bytes);
            route.policies.push(Policy::Validate(Arc::new(RouteValidate {
                route: r.name.as_str().into(),
                values,
                max_body,
                max_depth: cfg.max_depth,
                max_errors: cfg.max_errors,
                passed: count("applied"),
                refused: count("refused"),
            })));
        }
        if let Some(l) = &r.graphql_limits {
            let count = |result: &str| gw.metrics.transforms.with_label_values(&[&r.name, "graphql", result]);
            route.policies.push(Policy::GraphqlLimits(Arc::new(GraphqlLimits {
                route: r.name.as_str().into(),
                limits: l.clone(),
                max_body: (gw.settings.limits.max_body_bytes as usize).min(l.max_body_bytes),
                applied: count("applied"),
                refused: count("refused"),
            })));
        }
        let mut tv = v.transform;
        let soap = tv.soap.take();
        let graphql = tv.graphql.take();
        let tv_aggregate = std::mem::take(&mut tv.aggregate);
        let transform = Arc::new(RouteTransform::new(&r.name, tv, &gw.metrics));
        if transform.edits_response() {
            route.policies.push(Policy::ResponseHeaders(transform.clone()));
        }
        if let Some(c) = &r.cache {
            let cache = crate::cache::RouteCache::new(&r.name, c, v.cache_key_headers, gw.cache.clone());
            route.policies.push(Policy::Cache(Arc::new(cache)));
        }
        if transform.edits_request() {
            route.policies.push(Policy::Transform(transform));
        }
        if let Some(x) = &r.xml_to_json {
            route.policies.push(Policy::XmlToJson(Arc::new(xml_to_json(gw, &r.name, x))));
        }
        if let (Some(cfg), Some(values)) = (&r.graphql, graphql) {
            let count = |result: &str| gw.metrics.transforms.with_label_values(&[&r.name, "graphql", result]);
            route.policies.push(Policy::Graphql(Arc::new(RouteGraphql {
                route: r.name.as_str().into(),
                query: cfg.query.as_str().into(),
                operation_name: cfg.operation_name.clone(),
                variables: values.variables,
                reads_body: values.reads_body,
                max_request: (gw.settings.limits.max_body_bytes as usize).min(cfg.max_request_bytes),
                max_response: cfg.max_response_bytes,
                applied: count("applied"),
                partial: count("partial"),
                errors: count("errors"),
                failed: count("failed"),
            })));
        }
        if let Some(cfg) = &r.aggregate {
            let backends = cfg
                .backends
                .iter()
                .zip(tv_aggregate)
                .map(|(b, (path, method))| {
                    let up = b.upstream.as_ref().and_then(|u| upstreams.get(u)).unwrap_or(&route.upstream).clone();
                    Backend {
                        route: Route {
                            name: route.name.clone(),
                            connect_timeout: up.connect_timeout,
                            retries: 0,
                            upstream: up,
                            rewrite: None,
                            preserve_host: false,
                            timeout: b.timeout.map_or(r.timeout, |t| t.min(r.timeout)),
                            metrics: route.metrics.clone(),
                            policies: Vec::new(),
                            upgrades: Vec::new(),
                        },
                        path,
                        method,
                        group: b.group.clone(),
                        allow: b.allow.iter().map(|p| p.split('.').map(str::to_string).collect()).collect(),
                        deny: b.deny.iter().map(|p| p.split('.').map(str::to_string).collect()).collect(),
                    }
                })
                .collect();
            let count = |result: &str| gw.metrics.transforms.with_label_values(&[&r.name, "aggregate", result]);
            route.policies.push(Policy::Aggregate(Arc::new(RouteAggregate {
                route: r.name.as_str().into(),
                backends,
                max_backend_bytes: cfg.max_backend_bytes,
                complete: count("applied"),
                partial: count("partial"),
                failed: count("failed"),
            })));
        }
        if let (Some(cfg), Some(values)) = (&r.soap, soap) {
            match route_soap(gw, &r.name, cfg, values) {
                Ok(s) => route.policies.push(Policy::Soap(Arc::new(s))),
                Err(reason) => {
                    errors.push(format!("routes[{i}].soap.body"), K::Invalid { value: cfg.body.clone(), reason });
                    continue;
                }
            }
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
    for (name, old) in &registry.jwt_providers {
        if providers.get(name).is_none_or(|p| !Arc::ptr_eq(p, old)) {
            old.stop();
        }
    }
    for (name, p) in &providers {
        if registry.jwt_providers.get(name).is_none_or(|old| !Arc::ptr_eq(p, old)) {
            p.spawn_refresh();
        }
    }
    registry.jwt_providers = providers;
    registry.introspectors = introspectors;
    Ok(Snapshot { version: doc.version, document: Arc::new(doc), table: RouteTable::new(routes), upstreams, directory })
}

/// What a document's identity parts compiled to.
struct Found<'a> {
    directory: &'a Arc<Directory>,
    providers: &'a HashMap<String, Arc<Provider>>,
    introspectors: &'a HashMap<String, Arc<Introspector>>,
}

/// IP rules → CORS → authentication → authorization, as the route asks.
fn identity_policies(
    gw: &Gateway,
    r: &RouteConfig,
    v: &RouteAccessValues,
    found: &Found<'_>,
    labelled: &[&str],
    policies: &mut Vec<Policy>,
) {
    let route: Arc<str> = r.name.as_str().into();
    let metrics = gw.metrics.clone();
    if let Some(ip) = &r.ip_rules {
        policies.push(Policy::IpRules(Arc::new(IpRules {
            scope: route.clone(),
            rules: IpMatcher::of(ip),
            metrics: metrics.clone(),
        })));
    }
    let access = r.access.as_ref().map(|a| {
        Arc::new(RouteAccess {
            route: route.clone(),
            allow: v.allow.clone(),
            deny: v.deny.clone(),
            methods_by_group: v.methods_by_group.clone(),
            required_scopes: a.required_scopes.clone(),
            required_claims: a.required_claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            metrics: metrics.clone(),
        })
    });
    if let (Some(c), Some(cv)) = (&r.cors, &v.cors) {
        // Advertise only methods somebody may call.
        let callable = access.as_ref().and_then(|a| a.callable_methods());
        let methods: Vec<http::Method> =
            cv.methods.iter().filter(|m| callable.as_ref().is_none_or(|c| c.contains(m))).cloned().collect();
        let join =
            |items: Vec<&str>| (!items.is_empty()).then(|| HeaderValue::from_str(&items.join(", ")).ok()).flatten();
        policies.push(Policy::Cors(Arc::new(RouteCors {
            route: route.clone(),
            any_origin: cv.any_origin,
            origins: cv.origins.clone(),
            patterns: cv.patterns.clone(),
            allow_methods: join(methods.iter().map(|m| m.as_str()).collect())
                .unwrap_or_else(|| HeaderValue::from_static("")),
            methods,
            allow_headers: join(cv.headers.iter().map(|h| h.as_str()).collect()),
            expose_headers: join(cv.expose_headers.iter().map(|h| h.as_str()).collect()),
            allow_credentials: c.allow_credentials,
            max_age: HeaderValue::from(c.max_age.as_secs()),
            private_network: c.private_network,
            metrics: metrics.clone(),
        })));
    }
    if let Some(a) = &r.auth {
        let api_key = match (&a.api_key, &v.api_key) {
            (Some(k), Some(source)) => Some(ApiKeyMethod { source: source.clone(), hide: k.hide_credentials }),
            _ => None,
        };
        let jwt = match (&a.jwt, &v.jwt) {
            (Some(j), Some(jv)) => Some(JwtMethod {
                source: jv.source.clone(),
                providers: j.providers.iter().filter_map(|n| found.providers.get(n).cloned()).collect(),
                claims_to_headers: jv.claims_to_headers.clone(),
                payload_header: jv.payload_header.clone(),
                hide: j.hide_credentials,
            }),
            _ => None,
        };
        let introspection = match (&a.introspection, &v.introspection) {
            (Some(i), Some(source)) => found.introspectors.get(&i.provider).map(|introspector| IntrospectionMethod {
                source: source.clone(),
                introspector: introspector.clone(),
                hide: i.hide_credentials,
            }),
            _ => None,
        };
        let others = api_key.is_some() || jwt.is_some() || introspection.is_some() || a.anonymous.is_some();
        policies.push(Policy::Auth(Arc::new(RouteAuth {
            route: route.clone(),
            mtls: a.mtls.is_some(),
            certificate_required: a.mtls.is_some() && !others,
            api_key,
            jwt,
            introspection,
            anonymous: a.anonymous.as_ref().and_then(|n| found.directory.consumer(n).cloned()),
            directory: found.directory.clone(),
            forward_groups: r.access.as_ref().is_some_and(|a| a.forward_groups),
            metrics: metrics.clone(),
            ok: METHODS.map(|m| gw.metrics.auth_decisions.with_label_values(&[&r.name, m, "ok"])),
            anonymous_credential: Credential::new("anonymous"),
            consumer_metrics: labelled
                .iter()
                .map(|name| (Arc::<str>::from(*name), gw.metrics.consumer(name, &r.name)))
                .collect(),
            other_consumers: gw.metrics.consumer("_other", &r.name),
        })));
    }
    if let Some(a) = access {
        policies.push(Policy::Access(a));
    }
}

/// A route's limiter; `id` names its counters (the route, or
/// `route#consumer` for a consumer's own limits).
fn route_limit(
    gw: &Gateway,
    route: &str,
    id: &str,
    cfg: &meridian_core::config::RateLimitConfig,
    key: RateLimitKey,
    overrides: HashMap<Arc<str>, Arc<RouteLimit>>,
    group_overrides: Vec<(Arc<str>, Arc<RouteLimit>)>,
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
        limiter: crate::limit::RouteLimiter::new(id, cfg, gw.store.clone(), gw.background()),
        policy_header: HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("")),
        names,
        config: cfg.clone(),
        decisions: ["allowed", "limited", "allowed_fallback", "limited_fallback", "unavailable"]
            .map(|d| gw.metrics.ratelimit_decisions.with_label_values(&[route, d])),
        overrides,
        group_overrides,
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

/// The XML rules of a config.
pub(super) fn xml_rules(x: &meridian_core::config::XmlConfig) -> crate::transform::xml::XmlRules {
    crate::transform::xml::XmlRules {
        always_array: x.always_array.iter().cloned().collect(),
        max_bytes: x.max_bytes,
        max_depth: x.max_depth,
        max_elements: x.max_elements,
        max_attributes: x.max_attributes,
        keep_prefixes: x.keep_prefixes,
    }
}

fn xml_to_json(gw: &Gateway, route: &str, x: &meridian_core::config::XmlConfig) -> super::policy::convert::XmlToJson {
    let count = |result: &str| gw.metrics.transforms.with_label_values(&[route, "xml_to_json", result]);
    super::policy::convert::XmlToJson {
        route: route.into(),
        rules: xml_rules(x),
        applied: count("applied"),
        skipped: count("skipped"),
        failed: count("failed"),
    }
}

fn route_soap(
    gw: &Gateway,
    route: &str,
    cfg: &meridian_core::config::SoapConfig,
    values: meridian_core::config::SoapValues,
) -> Result<super::policy::soap::RouteSoap, String> {
    use meridian_core::config::SoapVersion;
    let count = |result: &str| gw.metrics.transforms.with_label_values(&[route, "soap", result]);
    let mut rules = xml_rules(&cfg.response);
    rules.keep_prefixes = false;
    rules.always_array = cfg.response.always_array.iter().map(|p| format!("Envelope.Body.{p}")).collect();
    let header =
        |s: String| http::HeaderValue::from_str(&s).map_err(|_| "the action is not a header value".to_string());
    Ok(super::policy::soap::RouteSoap {
        route: route.into(),
        content_type: header(crate::transform::soap::content_type(cfg.version, cfg.action.as_deref()))?,
        soap_action: match (cfg.version, &cfg.action) {
            (SoapVersion::V11, Some(a)) => Some(header(format!("\"{a}\""))?),
            (SoapVersion::V11, None) => Some(http::HeaderValue::from_static("\"\"")),
            (SoapVersion::V12, _) => None,
        },
        version: cfg.version,
        body: values.body,
        reads_body: values.reads_body,
        max_request: (gw.settings.limits.max_body_bytes as usize).min(cfg.max_request_bytes),
        client_fault_status: http::StatusCode::from_u16(cfg.client_fault_status)
            .unwrap_or(http::StatusCode::BAD_REQUEST),
        rules,
        applied: count("applied"),
        faults: count("fault"),
        failed: count("failed"),
    })
}
