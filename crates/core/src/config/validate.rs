//! Every rule of the node file and the gateway document, checked at once so an
//! operator sees all problems in one run. Checking a document parses every
//! value in it once ([`CheckedDocument`]); the data plane compiles from those
//! values and parses nothing again.

use std::collections::HashMap;
use std::ops::Deref;
use std::time::Duration;

use super::error::{ConfigErrorKind as K, ConfigErrors};
use super::values::{is_cookie_name_byte, DocumentValues, HashOn, RateLimitKey, RouteValues, UpstreamValues};
use super::{Algorithm, GatewayDocument, NodeConfig, RouteConfig, UpstreamConfig};
use crate::pattern::{HeaderMatch, HostPattern, PathPattern, Rewrite, RewriteError};

/// A value that passed validation. Only a checker that collected its
/// findings in [`ConfigErrors`] makes one, through
/// [`ConfigErrors::into_validated`] (`validate_*` here; the balancer, topology
/// and drill files' checkers in their crates).
#[derive(Debug, Clone, PartialEq)]
pub struct Validated<T>(T);

impl ConfigErrors {
    /// `value`, validated, when no rule was broken; every broken rule otherwise.
    pub fn into_validated<T>(self, value: T) -> Result<Validated<T>, ConfigErrors> {
        self.into_result(Validated(value))
    }
}

impl<T> Validated<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Validated<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A gateway document that passed validation, with the typed values its
/// strings stand for: what the data plane compiles from.
#[derive(Debug, Clone)]
pub struct CheckedDocument {
    document: GatewayDocument,
    values: DocumentValues,
}

impl CheckedDocument {
    pub fn values(&self) -> &DocumentValues {
        &self.values
    }

    /// The document as written (what a region replicates).
    pub fn into_document(self) -> GatewayDocument {
        self.document
    }

    pub fn into_parts(self) -> (GatewayDocument, DocumentValues) {
        (self.document, self.values)
    }
}

impl Deref for CheckedDocument {
    type Target = GatewayDocument;
    fn deref(&self) -> &GatewayDocument {
        &self.document
    }
}

const MAX_WEIGHT: u32 = 10_000;

/// Most extra attempts a request may make (`retry.attempts`, `retries`): the
/// data plane sizes its per-request list of tried targets by it.
pub const MAX_RETRIES: u32 = 10;

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn positive(errors: &mut ConfigErrors, path: String, d: Duration) {
    if d.is_zero() {
        errors.push(path, K::OutOfRange { value: "0s".into(), rule: "must be greater than zero" });
    }
}

pub(super) fn range<T: PartialOrd + std::fmt::Display>(
    errors: &mut ConfigErrors,
    path: String,
    v: T,
    lo: T,
    hi: T,
    rule: &'static str,
) {
    if v < lo || v > hi {
        errors.push(path, K::OutOfRange { value: v.to_string(), rule });
    }
}

/// Check a target address: `ip:port` or `host:port`.
pub fn check_address(s: &str) -> Result<(), String> {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = s.rsplit_once(':').ok_or("expected host:port")?;
    port.parse::<u16>().map_err(|_| format!("invalid port \"{port}\""))?;
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(format!("invalid host \"{host}\""));
    }
    Ok(())
}

/// Check a gateway document and parse every value in it; every broken rule
/// is reported, each with its key path.
pub fn validate_document(doc: GatewayDocument) -> Result<Validated<CheckedDocument>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut values = DocumentValues::default();
    for (name, up) in &doc.upstreams {
        values.upstreams.insert(name.clone(), check_upstream(&mut errors, name, up));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, route) in doc.routes.iter().enumerate() {
        if let Some(first) = seen.insert(route.name.as_str(), i) {
            errors.push(
                format!("routes[{i}].name"),
                K::Duplicate { name: route.name.clone(), first: format!("routes[{first}]") },
            );
        }
        if let Some(v) = check_route(&mut errors, i, route, &doc) {
            values.routes.push(v);
        }
    }
    values.jwt_providers = super::validate_identity::check_identity(&mut errors, &doc);
    errors.into_result(Validated(CheckedDocument { document: doc, values }))
}

fn check_upstream(errors: &mut ConfigErrors, name: &str, up: &UpstreamConfig) -> UpstreamValues {
    let p = format!("upstreams.{name}");
    if !valid_name(name) {
        errors.push(
            p.clone(),
            K::InvalidAddress {
                value: name.to_string(),
                reason: "an upstream name uses letters, digits, '-', '_' and '.'".into(),
            },
        );
    }
    if up.targets.is_empty() {
        errors.push(format!("{p}.targets"), K::NoTargets);
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, t) in up.targets.iter().enumerate() {
        let tp = format!("{p}.targets[{i}]");
        if let Err(reason) = check_address(&t.address) {
            errors.push(format!("{tp}.address"), K::InvalidAddress { value: t.address.clone(), reason });
        }
        if let Some(first) = seen.insert(t.address.as_str(), i) {
            errors.push(
                format!("{tp}.address"),
                K::Duplicate { name: t.address.clone(), first: format!("{p}.targets[{first}]") },
            );
        }
        range(errors, format!("{tp}.weight"), t.weight, 1, MAX_WEIGHT, "weight must be between 1 and 10000");
    }
    let hash_on = match (&up.hash_on, up.algorithm) {
        (None, Algorithm::ConsistentHash) => {
            errors.push(format!("{p}.hash_on"), K::MissingHashOn);
            None
        }
        (None, _) => None,
        (Some(h), _) => {
            let parsed = HashOn::parse(h);
            if parsed.is_none() {
                errors.push(format!("{p}.hash_on"), K::InvalidHashOn(h.clone()));
            }
            parsed
        }
    };
    if let Some(sticky) = &up.sticky {
        if sticky.cookie.is_empty() || !sticky.cookie.bytes().all(is_cookie_name_byte) {
            errors.push(
                format!("{p}.sticky.cookie"),
                K::InvalidHeaderValue { name: "set-cookie".into(), value: sticky.cookie.clone() },
            );
        }
    }
    positive(errors, format!("{p}.connect_timeout"), up.connect_timeout);
    if let Some(a) = &up.health.active {
        let hp = format!("{p}.health.active");
        if let Err(reason) = PathPattern::exact(&a.path) {
            errors.push(format!("{hp}.path"), K::InvalidPath { value: a.path.clone(), reason });
        }
        positive(errors, format!("{hp}.interval"), a.interval);
        positive(errors, format!("{hp}.timeout"), a.timeout);
        range(errors, format!("{hp}.rise"), a.rise, 1, 100, "between 1 and 100");
        range(errors, format!("{hp}.fall"), a.fall, 1, 100, "between 1 and 100");
        for (i, s) in a.expected_status.iter().enumerate() {
            if !(100..=599).contains(s) {
                errors.push(format!("{hp}.expected_status[{i}]"), K::InvalidStatus(*s));
            }
        }
        if let Some(h) = &a.host {
            if http::HeaderValue::from_str(h).is_err() {
                errors.push(format!("{hp}.host"), K::InvalidHeaderValue { name: "host".into(), value: h.clone() });
            }
        }
    }
    if let Some(ps) = &up.health.passive {
        let pp = format!("{p}.health.passive");
        range(errors, format!("{pp}.consecutive_failures"), ps.consecutive_failures, 1, 1000, "between 1 and 1000");
        positive(errors, format!("{pp}.base_ejection"), ps.base_ejection);
        if ps.max_ejection < ps.base_ejection {
            errors.push(
                format!("{pp}.max_ejection"),
                K::OutOfRange {
                    value: humantime::format_duration(ps.max_ejection).to_string(),
                    rule: "must not be shorter than base_ejection",
                },
            );
        }
        range(errors, format!("{pp}.max_ejected_percent"), ps.max_ejected_percent, 0, 100, "a percentage");
    }
    range(
        errors,
        format!("{p}.circuit_breaker.max_requests"),
        up.circuit_breaker.max_requests,
        1,
        u32::MAX,
        "at least 1",
    );
    range(
        errors,
        format!("{p}.circuit_breaker.max_pending"),
        up.circuit_breaker.max_pending,
        1,
        u32::MAX,
        "at least 1",
    );
    range(errors, format!("{p}.retry.attempts"), up.retry.attempts, 0, MAX_RETRIES, "between 0 and 10");
    range(errors, format!("{p}.retry.budget_ratio"), up.retry.budget_ratio, 0.0, 10.0, "between 0.0 and 10.0");
    positive(errors, format!("{p}.pool.idle_timeout"), up.pool.idle_timeout);
    UpstreamValues { hash_on }
}

/// A route's rules, and its typed values when every one of them parsed.
fn check_route(errors: &mut ConfigErrors, i: usize, r: &RouteConfig, doc: &GatewayDocument) -> Option<RouteValues> {
    let p = format!("routes[{i}]");
    let before = errors.len();
    if !valid_name(&r.name) {
        errors.push(format!("{p}.name"), K::Empty);
    }
    if !doc.upstreams.contains_key(&r.upstream) {
        errors.push(format!("{p}.upstream"), K::UnknownUpstream(r.upstream.clone()));
    }
    let hosts = parse_all(errors, &r.hosts, |j, h| {
        HostPattern::parse(h).map_err(|reason| (format!("{p}.hosts[{j}]"), K::InvalidHost { value: h.clone(), reason }))
    });
    let path = route_path(errors, &p, r);
    let rewrite = path.as_ref().and_then(|path| match Rewrite::new(path, r.strip_prefix, r.rewrite.as_deref()) {
        Ok(rw) => rw,
        Err(e) => {
            let rewrite = r.rewrite.clone().unwrap_or_default();
            match e {
                RewriteError::StripWithoutPrefix => {
                    errors.push(format!("{p}.strip_prefix"), K::StripPrefixWithoutPrefix)
                }
                RewriteError::StripAndRewrite => errors.push(format!("{p}.rewrite"), K::StripAndRewrite),
                RewriteError::UnknownParam(param) => {
                    errors.push(format!("{p}.rewrite"), K::UnknownRewriteParam { rewrite, param })
                }
                RewriteError::Invalid(reason) => {
                    errors.push(format!("{p}.rewrite"), K::InvalidPath { value: rewrite, reason })
                }
            }
            None
        }
    });
    let methods = parse_all(errors, &r.methods, |j, m| match http::Method::from_bytes(m.as_bytes()) {
        Ok(method) if !m.is_empty() => Ok(method),
        _ => Err((format!("{p}.methods[{j}]"), K::InvalidMethod(m.clone()))),
    });
    let headers: Vec<(&String, &String)> = r.headers.iter().collect();
    let headers = parse_all(errors, &headers, |_, (name, value)| {
        let hp = format!("{p}.headers.{name}");
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| (hp.clone(), K::InvalidHeaderName((*name).clone())))?;
        let condition =
            match value.as_str() {
                "*" => HeaderMatch::Present,
                v => HeaderMatch::Exact(http::HeaderValue::from_str(v).map_err(|_| {
                    (hp.clone(), K::InvalidHeaderValue { name: (*name).clone(), value: (*value).clone() })
                })?),
            };
        Ok((header, condition))
    });
    positive(errors, format!("{p}.timeout"), r.timeout);
    let mut rate_limit_key = None;
    if let Some(rl) = &r.rate_limit {
        let lp = format!("{p}.rate_limit");
        rate_limit_key = RateLimitKey::parse(&rl.key);
        if rate_limit_key.is_none() {
            errors.push(format!("{lp}.key"), K::InvalidRateLimitKey(rl.key.clone()));
        }
        if matches!(rate_limit_key, Some(RateLimitKey::Consumer | RateLimitKey::Credential)) && r.auth.is_none() {
            errors.push(
                format!("{lp}.key"),
                K::Invalid { value: rl.key.clone(), reason: "counting by consumer needs auth on the route".into() },
            );
        }
        check_limits(errors, &format!("{lp}.limits"), &rl.limits, true);
        if rl.scope == super::LimitScope::Region
            && rl.mode == super::LimitMode::Batched
            && rl.algorithm == super::LimitAlgorithm::Gcra
        {
            errors.push(
                format!("{lp}.algorithm"),
                K::OutOfRange {
                    value: "gcra".into(),
                    rule: "batched region limits count with sliding_window; use mode = \"exact\" for GCRA",
                },
            );
        }
        if rl.sync_interval < Duration::from_millis(5) {
            errors.push(
                format!("{lp}.sync_interval"),
                K::OutOfRange { value: humantime::format_duration(rl.sync_interval).to_string(), rule: "at least 5ms" },
            );
        }
    }
    let upgrades = parse_all(errors, &r.upgrades, |j, u| {
        let lower = u.to_ascii_lowercase();
        let token = !u.is_empty() && u.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token || lower == "h2c" {
            let rule = "a protocol token such as \"websocket\"; h2c is refused (use HTTP/2 with prior knowledge)";
            return Err((format!("{p}.upgrades[{j}]"), K::OutOfRange { value: u.clone(), rule }));
        }
        Ok(lower)
    });
    let mut cache_key_headers = Vec::new();
    if let Some(c) = &r.cache {
        let cp = format!("{p}.cache");
        positive(errors, format!("{cp}.ttl"), c.ttl);
        cache_key_headers = parse_all(errors, &c.key_headers, |j, h| {
            http::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| (format!("{cp}.key_headers[{j}]"), K::InvalidHeaderName(h.clone())))
        });
        range(errors, format!("{cp}.max_entry_bytes"), c.max_entry_bytes, 1, 64 << 20, "between 1 byte and 64 MiB");
    }
    if let Some(ct) = r.connect_timeout {
        positive(errors, format!("{p}.connect_timeout"), ct);
    }
    if let Some(n) = r.retries {
        range(errors, format!("{p}.retries"), n, 0, MAX_RETRIES, "between 0 and 10");
    }
    let access = super::validate_identity::check_route_access(errors, &p, r, doc);
    let captures = path.as_ref().map_or(&[][..], |p| p.param_names());
    let transform = super::validate_transform::check_route_transform(errors, &p, r, doc, captures);
    let validate = super::validate_transform::check_validate(errors, &p, r);
    // Values only for a route without a broken rule: nothing is dropped silently.
    (errors.len() == before).then_some(RouteValues {
        hosts,
        path: path?,
        methods,
        headers,
        rewrite,
        rate_limit_key,
        cache_key_headers,
        upgrades,
        access,
        transform,
        validate,
    })
}

/// Limits of a rate limit or a consumer; `required`: at least one.
pub(super) fn check_limits(errors: &mut ConfigErrors, lp: &str, limits: &[super::LimitConfig], required: bool) {
    if required && limits.is_empty() {
        errors.push(lp.to_string(), K::Empty);
    }
    for (j, l) in limits.iter().enumerate() {
        range(errors, format!("{lp}[{j}].requests"), l.requests, 1, 1_000_000_000, "between 1 and 10^9");
        if l.per < Duration::from_millis(100) {
            errors.push(
                format!("{lp}[{j}].per"),
                K::OutOfRange { value: humantime::format_duration(l.per).to_string(), rule: "at least 100ms" },
            );
        }
    }
}

/// Parse every item; each failure is reported with its path and left out
/// (the caller's values are discarded when anything failed).
fn parse_all<I, T>(
    errors: &mut ConfigErrors,
    items: &[I],
    parse: impl Fn(usize, &I) -> Result<T, (String, K)>,
) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        match parse(j, item) {
            Ok(v) => out.push(v),
            Err((path, kind)) => errors.push(path, kind),
        }
    }
    out
}

/// The path pattern of a route; reports a conflict or a bad pattern.
pub fn route_path(errors: &mut ConfigErrors, p: &str, r: &RouteConfig) -> Option<PathPattern> {
    let set: Vec<(&str, &String)> =
        [("path_prefix", &r.path_prefix), ("path_exact", &r.path_exact), ("path_template", &r.path_template)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
    match set.as_slice() {
        [] => Some(PathPattern::Any),
        [(key, value)] => {
            let parsed = match *key {
                "path_prefix" => PathPattern::prefix(value),
                "path_exact" => PathPattern::exact(value),
                _ => PathPattern::template(value),
            };
            match parsed {
                Ok(pp) => Some(pp),
                Err(reason) => {
                    errors.push(format!("{p}.{key}"), K::InvalidPath { value: (*value).clone(), reason });
                    None
                }
            }
        }
        many => {
            errors.push(
                p.to_string(),
                K::ConflictingPathMatch { found: many.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ") },
            );
            None
        }
    }
}

/// Check a node file, including its gateway document (paths under `gateway.`).
pub fn validate_node(node: NodeConfig) -> Result<Validated<NodeConfig>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    if !valid_name(&node.node.name) {
        errors.push("node.name", K::Empty);
    }
    if !valid_name(&node.node.region) {
        errors.push("node.region", K::Empty);
    }
    if node.listeners.is_empty() {
        errors.push("listeners", K::Empty);
    }
    check_listeners(&mut errors, &node.listeners);
    if let Some(tls) = &node.admin.tls {
        check_tls(&mut errors, "admin.tls", tls);
    }
    let limits = &node.limits;
    range(
        &mut errors,
        "limits.max_header_bytes".into(),
        limits.max_header_bytes,
        1024,
        1 << 20,
        "between 1 KiB and 1 MiB",
    );
    positive(&mut errors, "limits.header_read_timeout".into(), limits.header_read_timeout);
    positive(&mut errors, "limits.idle_timeout".into(), limits.idle_timeout);
    range(
        &mut errors,
        "limits.max_concurrent_streams".into(),
        limits.max_concurrent_streams,
        1,
        100_000,
        "between 1 and 100000",
    );
    if tracing_subscriber::EnvFilter::try_new(&node.telemetry.log_level).is_err() {
        errors.push(
            "telemetry.log_level",
            K::OutOfRange {
                value: node.telemetry.log_level.clone(),
                rule: "a tracing filter such as `info` or `meridian=debug,info`",
            },
        );
    }
    range(
        &mut errors,
        "runtime.worker_threads".into(),
        node.runtime.worker_threads,
        0,
        1024,
        "between 0 (one per core) and 1024",
    );
    if let Some(t) = &node.admin.token {
        if t.len() < 16 {
            errors.push("admin.token", K::AdminToken("use at least 16 characters".into()));
        }
    }
    if let Some(c) = &node.cluster {
        check_cluster(&mut errors, c);
    }
    if let Some(r) = &node.redis {
        check_redis(&mut errors, r);
    }
    if let Some(r) = &node.report {
        if node.cluster.is_none() {
            errors.push(
                "report",
                K::OutOfRange {
                    value: "[report]".into(),
                    rule: "reports are sent by a region's leader: needs [cluster]",
                },
            );
        }
        if r.endpoints.is_empty() {
            errors.push("report.endpoints", K::Empty);
        }
        for (i, e) in r.endpoints.iter().enumerate() {
            if !(e.starts_with("http://") && e.len() > 7) {
                errors.push(
                    format!("report.endpoints[{i}]"),
                    K::InvalidAddress { value: e.clone(), reason: "expected http://host:port".into() },
                );
            }
        }
        positive(&mut errors, "report.interval".into(), r.interval);
        positive(&mut errors, "report.timeout".into(), r.timeout);
    }
    if let Some(v) = &node.vip {
        if node.cluster.is_none() {
            errors.push(
                "vip",
                K::OutOfRange {
                    value: "[vip]".into(),
                    rule: "VIPs need [cluster]: ownership is granted by the region",
                },
            );
        }
        check_vip(&mut errors, v);
    }
    if let Err(doc_errors) = validate_document(node.gateway.clone()) {
        errors.0.extend(doc_errors.prefixed("gateway.").0);
    }
    errors.into_result(Validated(node))
}

fn check_tls(errors: &mut ConfigErrors, at: &str, tls: &super::TlsConfig) {
    if tls.certificates.is_empty() {
        errors.push(format!("{at}.certificates"), K::Empty);
    }
    // The certificate files themselves are node-local resources: the
    // data plane loads them (`tls::check_certificates`), not this check.
    for (j, c) in tls.certificates.iter().enumerate() {
        for (k, n) in c.server_names.iter().enumerate() {
            if let Err(reason) = HostPattern::parse(n) {
                errors.push(
                    format!("{at}.certificates[{j}].server_names[{k}]"),
                    K::InvalidHost { value: n.clone(), reason },
                );
            }
        }
    }
}

fn check_listeners(errors: &mut ConfigErrors, listeners: &[super::ListenerConfig]) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addrs: HashMap<std::net::SocketAddr, usize> = HashMap::new();
    for (i, l) in listeners.iter().enumerate() {
        if let Some(first) = names.insert(l.name.as_str(), i) {
            errors.push(
                format!("listeners[{i}].name"),
                K::Duplicate { name: l.name.clone(), first: format!("listeners[{first}]") },
            );
        }
        if l.address.port() != 0 {
            if let Some(first) = addrs.insert(l.address, i) {
                errors.push(
                    format!("listeners[{i}].address"),
                    K::Duplicate { name: l.address.to_string(), first: format!("listeners[{first}]") },
                );
            }
        }
        if let Some(tls) = &l.tls {
            check_tls(errors, &format!("listeners[{i}].tls"), tls);
        }
        if let Some(p) = &l.health_path {
            if let Err(reason) = PathPattern::exact(p) {
                errors.push(format!("listeners[{i}].health_path"), K::InvalidPath { value: p.clone(), reason });
            }
        }
        if (l.proxy_protocol || l.forwarded_for) && l.trusted_proxies.is_empty() {
            errors.push(
                format!("listeners[{i}].trusted_proxies"),
                K::OutOfRange {
                    value: "[]".into(),
                    rule: "proxy_protocol and forwarded_for need the networks of the proxies to believe",
                },
            );
        }
    }
}

fn check_redis(errors: &mut ConfigErrors, r: &super::RedisConfig) {
    let kinds =
        usize::from(r.url.is_some()) + usize::from(!r.sentinels.is_empty()) + usize::from(!r.cluster.is_empty());
    if kinds != 1 {
        errors.push(
            "redis",
            K::OutOfRange {
                value: format!("{kinds} topologies"),
                rule: "exactly one of url, sentinels (with master_name), cluster",
            },
        );
    }
    if !r.sentinels.is_empty() && r.master_name.is_none() {
        errors.push("redis.master_name", K::Empty);
    }
    for (i, u) in r.url.iter().chain(r.sentinels.iter()).chain(r.cluster.iter()).enumerate() {
        if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
            errors.push(
                format!("redis.urls[{i}]"),
                K::InvalidAddress { value: u.clone(), reason: "expected redis:// or rediss://".into() },
            );
        }
    }
    positive(errors, "redis.timeout".into(), r.timeout);
}

fn check_cluster(errors: &mut ConfigErrors, c: &super::ClusterConfig) {
    range(errors, "cluster.node_id".into(), c.node_id, 1, u64::MAX, "at least 1");
    if c.bootstrap && c.members.is_empty() {
        errors.push("cluster.members", K::Empty);
    }
    if c.bootstrap && !c.members.is_empty() && !c.members.iter().any(|m| m.id == c.node_id) {
        errors.push(
            "cluster.members",
            K::OutOfRange {
                value: format!("node_id {}", c.node_id),
                rule: "a bootstrapping node must be one of the members",
            },
        );
    }
    let mut ids: HashMap<u64, usize> = HashMap::new();
    for (i, m) in c.members.iter().enumerate() {
        if let Some(first) = ids.insert(m.id, i) {
            errors.push(
                format!("cluster.members[{i}].id"),
                K::Duplicate { name: m.id.to_string(), first: format!("cluster.members[{first}]") },
            );
        }
        if let Err(reason) = check_address(&m.address) {
            errors
                .push(format!("cluster.members[{i}].address"), K::InvalidAddress { value: m.address.clone(), reason });
        }
    }
    if let Some(a) = &c.advertise {
        if let Err(reason) = check_address(a) {
            errors.push("cluster.advertise", K::InvalidAddress { value: a.clone(), reason });
        }
    }
    let r = &c.raft;
    positive(errors, "cluster.raft.heartbeat_interval".into(), r.heartbeat_interval);
    if r.election_timeout_min <= r.heartbeat_interval {
        errors.push(
            "cluster.raft.election_timeout_min",
            K::OutOfRange {
                value: humantime::format_duration(r.election_timeout_min).to_string(),
                rule: "must be longer than heartbeat_interval",
            },
        );
    }
    if r.election_timeout_max <= r.election_timeout_min {
        errors.push(
            "cluster.raft.election_timeout_max",
            K::OutOfRange {
                value: humantime::format_duration(r.election_timeout_max).to_string(),
                rule: "must be longer than election_timeout_min",
            },
        );
    }
    range(errors, "cluster.raft.snapshot_every".into(), r.snapshot_every, 1, u64::MAX, "at least 1");
    positive(errors, "cluster.write_timeout".into(), c.write_timeout);
}

fn check_vip(errors: &mut ConfigErrors, v: &super::VipConfig) {
    if v.backend == super::VipBackend::Exec && v.command.is_empty() {
        errors.push("vip.command", K::Empty);
    }
    if v.interface.is_empty() || v.interface.len() > 15 {
        errors.push(
            "vip.interface",
            K::OutOfRange { value: v.interface.clone(), rule: "an interface name of 1 to 15 characters" },
        );
    }
    positive(errors, "vip.renew_interval".into(), v.renew_interval);
    if v.lease < v.renew_interval * 3 {
        errors.push(
            "vip.lease",
            K::OutOfRange {
                value: humantime::format_duration(v.lease).to_string(),
                rule: "must be at least three renew intervals",
            },
        );
    }
    range(errors, "vip.clock_drift".into(), v.clock_drift, 0.0, 0.5, "between 0 and 0.5");
    if v.margin * 4 > v.lease {
        errors.push(
            "vip.margin",
            K::OutOfRange {
                value: humantime::format_duration(v.margin).to_string(),
                rule: "must be at most a quarter of the lease",
            },
        );
    }
    if v.address_lifetime.subsec_nanos() != 0 || v.address_lifetime > Duration::from_secs(3600) {
        errors.push(
            "vip.address_lifetime",
            K::OutOfRange {
                value: humantime::format_duration(v.address_lifetime).to_string(),
                rule: "whole seconds, at most 1h (0: permanent)",
            },
        );
    }
    if v.handoff_drain > Duration::from_secs(60) {
        errors.push(
            "vip.handoff_drain",
            K::OutOfRange { value: humantime::format_duration(v.handoff_drain).to_string(), rule: "at most 60 s" },
        );
    }
    range(errors, "vip.announce_count".into(), v.announce_count, 0, 20, "between 0 and 20");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, a) in v.addresses.iter().enumerate() {
        if let Some(first) = seen.insert(a.address.ip.to_string(), i) {
            errors.push(
                format!("vip.addresses[{i}].address"),
                K::Duplicate { name: a.address.to_string(), first: format!("vip.addresses[{first}]") },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Format};

    fn doc(text: &str) -> Result<Validated<CheckedDocument>, ConfigErrors> {
        validate_document(parse(text, Format::Toml)?)
    }

    fn paths(e: &ConfigErrors) -> Vec<String> {
        e.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn elections_longer_than_a_third_of_the_lease_are_warned_about() {
        let node = |raft: &str| {
            let text = format!(
                "[node]\nname = \"n\"\n[cluster]\nnode_id = 1\ndata_dir = \"d\"\nsecret_env = \"X\"\n{raft}\n\
                 [vip]\nbackend = \"none\"\n"
            );
            validate_node(parse(&text, Format::Toml).unwrap()).unwrap().into_inner()
        };
        // The defaults keep an election inside a lease.
        assert!(node("").timing_warnings().is_empty());
        let w = node("[cluster.raft]\nelection_timeout_min = \"150ms\"\nelection_timeout_max = \"300ms\"")
            .timing_warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("cluster.raft.election_timeout_max: 300ms is more than a third of vip.lease (600ms)"),
            "{w:?}"
        );
    }

    #[test]
    fn reports_every_broken_rule_with_its_path() {
        let e = doc(r#"
            [upstreams.users]
            targets = [{ address = "127.0.0.1:9001" }, { address = "nope", weight = 0 }]
            algorithm = "consistent_hash"

            [[routes]]
            name = "a"
            upstream = "users"

            [[routes]]
            name = "b"
            upstream = "orders"
            path_prefix = "/x"
            path_exact = "/y"
            methods = ["GET", "BAD METHOD"]

            [[routes]]
            name = "a"
            upstream = "users"
            path_template = "/u/{id}"
            rewrite = "/v/{other}"
        "#)
        .unwrap_err();
        let p = paths(&e);
        let expect = [
            "upstreams.users.targets[1].address: invalid address \"nope\": expected host:port",
            "upstreams.users.targets[1].weight: 0 is out of range: weight must be between 1 and 10000",
            "upstreams.users.hash_on: algorithm \"consistent_hash\" needs hash_on",
            "routes[1].upstream: unknown upstream \"orders\"",
            "routes[1]: only one of path_prefix, path_exact and path_template may be set (found path_prefix, path_exact)",
            "routes[1].methods[1]: invalid HTTP method \"BAD METHOD\"",
            "routes[2].name: duplicate name \"a\" (also at routes[0])",
            "routes[2].rewrite: rewrite \"/v/{other}\" uses {other} which path_template does not capture",
        ];
        for x in expect {
            assert!(p.iter().any(|l| l == x), "missing {x:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let e = doc(r#"
            [upstreams.u]
            targets = [{ address = "127.0.0.1:1" }]
            [[routes]]
            name = "r"
            upstream = "u"
            [[routes]]
            name = "s"
            upstrem = "u"
        "#)
        .unwrap_err();
        let line = e.to_string();
        assert!(line.starts_with("routes[1]"), "{line}");
        assert!(line.contains("upstrem"), "{line}");
    }

    #[test]
    fn a_good_document_passes() {
        let d = doc(r#"
            [upstreams.u]
            targets = [{ address = "127.0.0.1:1", weight = 3 }, { address = "backend.local:80" }]
            algorithm = "consistent_hash"
            hash_on = "header:x-user"
            [upstreams.u.health.active]
            path = "/healthz"
            [[routes]]
            name = "r"
            hosts = ["*.example.com"]
            path_template = "/users/{id}"
            rewrite = "/v2/users/{id}"
            upstream = "u"
            timeout = "5s"
        "#)
        .unwrap();
        assert_eq!(d.routes[0].timeout, Duration::from_secs(5));
    }

    #[test]
    fn checking_a_document_parses_every_value_once() {
        let d = doc(r#"
            [upstreams.u]
            targets = [{ address = "127.0.0.1:1" }]
            algorithm = "consistent_hash"
            hash_on = "cookie:sid"
            [[routes]]
            name = "r"
            hosts = ["api.example.com", "*.example.com"]
            methods = ["GET", "POST"]
            headers = { x-version = "2", x-tenant = "*" }
            path_prefix = "/api"
            rewrite = "/v1"
            upstream = "u"
            rate_limit = { key = "header:X-Api-Key", limits = [{ requests = 10, per = "1s" }] }
            cache = { ttl = "10s", key_headers = ["Accept-Language"] }
        "#)
        .unwrap();
        let v = &d.values().routes[0];
        assert_eq!(v.hosts.len(), 2);
        assert_eq!(v.methods, vec![http::Method::GET, http::Method::POST]);
        assert_eq!(v.headers.len(), 2);
        assert!(v.headers.iter().any(|(n, m)| n == "x-tenant" && *m == HeaderMatch::Present));
        assert!(v.rewrite.is_some());
        assert_eq!(v.rate_limit_key, Some(RateLimitKey::Header(http::HeaderName::from_static("x-api-key"))));
        assert_eq!(v.cache_key_headers, vec![http::HeaderName::from_static("accept-language")]);
        assert_eq!(d.values().upstreams["u"].hash_on, Some(HashOn::Cookie("sid".into())));
    }

    /// Every document in the fuzz corpus parses or is refused, never panics.
    #[test]
    fn the_fuzz_corpus_parses_or_is_refused() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/document");
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = crate::config::parse_document(text, Format::Json);
                let _ = crate::config::parse_document(text, Format::Toml);
            }
        }
    }

    #[test]
    fn a_bad_vip_is_refused_where_the_node_file_is_read() {
        let text = r#"
            [node]
            name = "n"
            [[listeners]]
            name = "http"
            address = "127.0.0.1:0"
            [vip]
            addresses = [{ address = "10.0.0.100/24" }, { address = "10.0.0.300/24" }]
        "#;
        let e = parse::<NodeConfig>(text, Format::Toml).unwrap_err().to_string();
        assert!(e.starts_with("vip.addresses[1].address"), "{e}");
        assert!(e.contains("invalid VIP \"10.0.0.300/24\""), "{e}");
    }

    #[test]
    fn each_rule_names_its_own_valid_values() {
        let e = doc(r#"
            [upstreams.u]
            targets = [{ address = "127.0.0.1:1" }]
            hash_on = "ip"
            [[routes]]
            name = "r"
            upstream = "u"
            rate_limit = { key = "cookie:sid", limits = [{ requests = 10, per = "1s" }] }
        "#)
        .unwrap_err();
        let p = paths(&e);
        assert!(
            p.contains(&"routes[0].rate_limit.key: invalid rate-limit key \"cookie:sid\": expected client_ip, route, consumer, credential or header:<name>".to_string()),
            "{p:#?}"
        );
        assert!(
            p.contains(
                &"upstreams.u.hash_on: invalid hash_on \"ip\": expected client_ip, header:<name> or cookie:<name>"
                    .to_string()
            ),
            "{p:#?}"
        );
    }
}
