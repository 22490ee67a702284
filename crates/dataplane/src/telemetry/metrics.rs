//! The Prometheus metrics of a gateway node's data plane, built the one way
//! meridian builds a metric (`meridian_core::metrics`). Per-route handles
//! are resolved once per config version so the request path does no label
//! lookups. The region layer adds its own metrics to the same registry.

use std::sync::Arc;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use meridian_core::metrics::{counter_vec, gauge, gauge_vec, histogram, histogram_vec};

/// Latency buckets in seconds, from a fast cache hit to a slow upstream.
const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub struct GatewayMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub active_connections: IntGaugeVec,
    pub connections: IntCounterVec,
    pub connections_refused: IntCounterVec,
    pub proxy_protocol: IntCounterVec,
    pub tls_reloads: IntCounterVec,
    pub upgrades: IntCounterVec,
    pub tunnels: IntGauge,
    pub upstream_healthy: IntGaugeVec,
    pub health_checks: IntCounterVec,
    pub upstream_retries: IntCounterVec,
    pub upstream_ejections: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub circuit_open: IntCounterVec,
    pub retry_budget_exhausted: IntCounterVec,
    pub config_version: IntGauge,
    pub config_applies: IntCounterVec,
    pub tls_handshake_errors: IntCounterVec,
    pub bad_requests: IntCounterVec,
    pub redis_available: IntGauge,
    pub redis_mode_switches: IntCounterVec,
    pub redis_errors: IntCounterVec,
    pub redis_seconds: Histogram,
    pub ratelimit_decisions: IntCounterVec,
    pub cache_events: IntCounterVec,
    pub auth_decisions: IntCounterVec,
    pub consumer_requests: IntCounterVec,
    pub access_decisions: IntCounterVec,
    pub cors_decisions: IntCounterVec,
    pub ip_decisions: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub jwt_cache: IntCounterVec,
    pub introspection: IntCounterVec,
    pub transforms: IntCounterVec,
}

impl GatewayMetrics {
    pub fn new(node: &str, region: &str) -> Self {
        let mut labels = std::collections::HashMap::new();
        labels.insert("node".to_string(), node.to_string());
        labels.insert("region".to_string(), region.to_string());
        let r = Registry::new_custom(None, Some(labels)).unwrap_or_default();
        let requests =
            counter_vec(&r, "requests_total", "Requests answered, by route and status class.", &["route", "class"]);
        let request_duration = histogram_vec(
            &r,
            "request_duration_seconds",
            "Time from request head to the end of the response.",
            DURATION_BUCKETS,
            &["route"],
        );
        let config_version = gauge(&r, "config_version", "Version of the gateway document being served.");
        Self {
            requests,
            request_duration,
            active_connections: gauge_vec(
                &r,
                "active_connections",
                "Client connections open, by listener.",
                &["listener"],
            ),
            tunnels: gauge(&r, "tunnels", "Upgraded connections (WebSockets) open now."),
            upgrades: counter_vec(
                &r,
                "upgrades_total",
                "Protocol upgrades asked for, by route, protocol and result (tunnelled, refused).",
                &["route", "protocol", "result"],
            ),
            connections_refused: counter_vec(
                &r,
                "connections_refused_total",
                "Client connections closed at accept, by listener and cap.",
                &["listener", "reason"],
            ),
            tls_reloads: counter_vec(
                &r,
                "tls_certificate_reloads_total",
                "Certificate reloads (file change or SIGHUP), by listener (or admin) and result (ok, failed: the previous certificates keep serving).",
                &["listener", "result"],
            ),
            proxy_protocol: counter_vec(
                &r,
                "proxy_protocol_total",
                "PROXY headers read on proxy_protocol listeners, by listener and result (client, untrusted, local; timeout, closed, invalid: connection closed).",
                &["listener", "result"],
            ),
            connections: counter_vec(
                &r,
                "connections_total",
                "Client connections accepted, by listener.",
                &["listener"],
            ),
            upstream_healthy: gauge_vec(
                &r,
                "upstream_target_healthy",
                "1 when active checks pass for the target.",
                &["upstream", "target"],
            ),
            health_checks: counter_vec(
                &r,
                "health_checks_total",
                "Active health probes, by result.",
                &["upstream", "target", "result"],
            ),
            upstream_retries: counter_vec(
                &r,
                "upstream_retries_total",
                "Retried upstream attempts, by reason.",
                &["upstream", "reason"],
            ),
            upstream_ejections: counter_vec(
                &r,
                "upstream_ejections_total",
                "Targets ejected by passive outlier detection.",
                &["upstream", "target"],
            ),
            upstream_errors: counter_vec(
                &r,
                "upstream_errors_total",
                "Failed upstream attempts, by kind.",
                &["upstream", "kind"],
            ),
            circuit_open: counter_vec(
                &r,
                "circuit_open_total",
                "Requests refused by a pool's circuit breaker, by limit.",
                &["upstream", "limit"],
            ),
            retry_budget_exhausted: counter_vec(
                &r,
                "retry_budget_exhausted_total",
                "Retries skipped because the budget was spent.",
                &["upstream"],
            ),
            config_version,
            config_applies: counter_vec(
                &r,
                "config_applies_total",
                "Gateway document applies, by source and result.",
                &["source", "result"],
            ),
            tls_handshake_errors: counter_vec(
                &r,
                "tls_handshake_errors_total",
                "Failed TLS handshakes, by listener.",
                &["listener"],
            ),
            bad_requests: counter_vec(
                &r,
                "bad_requests_total",
                "Requests refused before routing, by reason.",
                &["reason"],
            ),
            redis_available: gauge(
                &r,
                "redis_available",
                "1 while the region's Redis answers; 0 while routes use their fallback.",
            ),
            redis_mode_switches: counter_vec(
                &r,
                "redis_mode_switches_total",
                "Switches between Redis and the fallback, by new mode.",
                &["to"],
            ),
            redis_errors: counter_vec(&r, "redis_errors_total", "Failed Redis calls, by kind.", &["kind"]),
            redis_seconds: histogram(
                &r,
                "redis_command_duration_seconds",
                "Redis round trips (commands, scripts, pipelines).",
                &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05],
            ),
            ratelimit_decisions: counter_vec(
                &r,
                "ratelimit_decisions_total",
                "Rate-limit decisions, by route and decision.",
                &["route", "decision"],
            ),
            cache_events: counter_vec(
                &r,
                "cache_events_total",
                "Response cache events, by route and event (hit, miss, stale, store, coalesced, evicted).",
                &["route", "event"],
            ),
            transforms: counter_vec(
                &r,
                "transforms_total",
                "Transformations, by route, stage (request, response, xml_to_json, soap, graphql, aggregate, \
                 validation) and result (applied, skipped, refused, failed, partial).",
                &["route", "stage", "result"],
            ),
            auth_decisions: counter_vec(
                &r,
                "auth_decisions_total",
                "Authentication decisions, by route, method (api_key, jwt, anonymous, none) and result \
                 (ok, missing, invalid, expired, unavailable).",
                &["route", "method", "result"],
            ),
            consumer_requests: counter_vec(
                &r,
                "consumer_requests_total",
                "Requests of authenticated consumers, by consumer (the first telemetry.consumer_labels by name; \
                 others as _other), route and status class.",
                &["consumer", "route", "status_class"],
            ),
            access_decisions: counter_vec(
                &r,
                "access_decisions_total",
                "Authorization decisions, by route and result (allowed, denied, not_allowed, method, scope, claim).",
                &["route", "result"],
            ),
            cors_decisions: counter_vec(
                &r,
                "cors_decisions_total",
                "CORS decisions, by route and result (preflight, preflight_refused, allowed, refused).",
                &["route", "result"],
            ),
            ip_decisions: counter_vec(
                &r,
                "ip_rule_decisions_total",
                "IP rule decisions, by route (or listener) and result (allowed, denied).",
                &["scope", "result"],
            ),
            jwks_fetches: counter_vec(
                &r,
                "jwks_fetches_total",
                "JWK Set fetches, by provider and result (changed, unchanged, failed, throttled).",
                &["provider", "result"],
            ),
            jwks_keys: gauge_vec(&r, "jwks_keys", "Verification keys known, by provider.", &["provider"]),
            jwt_cache: counter_vec(
                &r,
                "jwt_cache_total",
                "Verified-token cache lookups, by provider and result (hit, miss).",
                &["provider", "result"],
            ),
            introspection: counter_vec(
                &r,
                "introspection_total",
                "Token introspections, by endpoint and result (cached, active, inactive, failed).",
                &["endpoint", "result"],
            ),
            registry: r,
        }
    }

    /// Per-class request counters of one consumer on one route.
    pub fn consumer(&self, consumer: &str, route: &str) -> Arc<[IntCounter; 6]> {
        Arc::new(std::array::from_fn(|i| self.consumer_requests.with_label_values(&[consumer, route, CLASSES[i]])))
    }

    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            by_class: std::array::from_fn(|i| self.requests.with_label_values(&[route, CLASSES[i]])),
            duration: self.request_duration.with_label_values(&[route]),
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_default()
    }
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Index into the per-class counters.
pub fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

/// Pre-resolved handles of one route.
#[derive(Clone)]
pub struct RouteMetrics {
    by_class: [IntCounter; 6],
    pub duration: Histogram,
}

impl RouteMetrics {
    #[inline]
    pub fn observe(&self, status: u16, seconds: f64) {
        self.by_class[status_class(status)].inc();
        self.duration.observe(seconds);
    }
}
