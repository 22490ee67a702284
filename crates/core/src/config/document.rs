//! The gateway document: upstream pools and routes. It is self-contained so the
//! region can replicate it as one value; the node applies every version whole.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything a gateway needs to route and forward traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayDocument {
    /// Set by whoever applies the document (the node, or the region's log);
    /// a value in a file is informational only.
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Who calls the APIs, with their credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<super::ConsumerConfig>,
    /// Limits of a group's members on routes that count by consumer (each
    /// member its own budget), for consumers without limits of their own;
    /// a consumer in several such groups gets the first by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_limits: BTreeMap<String, Vec<LimitConfig>>,
    /// Issuers of JWTs, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub jwt_providers: BTreeMap<String, super::JwtProviderConfig>,
    /// OAuth 2.0 introspection endpoints, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub introspection: BTreeMap<String, super::IntrospectionConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `client_ip`, `header:<name>` or `cookie:<name>`; needed by `consistent_hash`.
    pub hash_on: Option<String>,
    pub sticky: Option<StickyConfig>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub pool: ConnectionPoolConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `ip:port` or `host:port`.
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    PeakEwma,
    ConsistentHash,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    #[serde(default = "default_sticky_cookie")]
    pub cookie: String,
    /// Cookie lifetime; `0s` makes it a session cookie.
    #[serde(default = "default_sticky_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    pub active: Option<ActiveHealthConfig>,
    pub passive: Option<PassiveHealthConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealthConfig {
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Host header of the probe; the target address when unset.
    pub host: Option<String>,
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive successes that bring a down target back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Consecutive failures that take an up target down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Accepted status codes; empty means any 2xx or 3xx.
    #[serde(default)]
    pub expected_status: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealthConfig {
    /// Consecutive failed requests (connect error, timeout or 5xx) before ejection.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// First ejection length; each further ejection doubles it.
    #[serde(default = "default_base_ejection", with = "humantime_serde")]
    pub base_ejection: Duration,
    #[serde(default = "default_max_ejection", with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Never eject more than this share of a pool, so a bad deploy of the
    /// gateway itself cannot empty every pool.
    #[serde(default = "default_max_ejected_percent")]
    pub max_ejected_percent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Requests in flight to the pool at once; more get 503.
    #[serde(default = "default_max_requests")]
    pub max_requests: u32,
    /// Requests waiting for a new upstream connection at once; more get 503.
    #[serde(default = "default_max_pending")]
    pub max_pending: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Extra attempts after the first one.
    #[serde(default = "default_retry_attempts")]
    pub attempts: u32,
    /// Also retry idempotent requests without a body on 502/503/504 and on
    /// connections reset before a response. Connect failures are always
    /// retryable (nothing reached the upstream), as in nginx and HAProxy.
    #[serde(default)]
    pub on_5xx: bool,
    /// Retries may add at most this share of the pool's requests (10 s window)...
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: f64,
    /// ...but this many per second are always allowed.
    #[serde(default = "default_min_retries_per_second")]
    pub min_per_second: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPoolConfig {
    /// Idle keep-alive connections kept per target.
    #[serde(default = "default_max_idle")]
    pub max_idle_per_target: usize,
    /// An idle connection older than this is closed rather than reused.
    #[serde(default = "default_pool_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// Exact hosts or `*.suffix` wildcards; empty matches any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    pub path_exact: Option<String>,
    /// Segments like `/users/{id}/orders` or a trailing `{*rest}`.
    pub path_template: Option<String>,
    /// Empty matches any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header name → exact value, or `*` for "present".
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub upstream: String,
    /// Remove the matched `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// New path: replaces the prefix of a prefix route, the whole path of an
    /// exact route, or is a template filled from the captured segments.
    pub rewrite: Option<String>,
    /// Forward the client's Host header (otherwise the target address is sent).
    #[serde(default = "default_true")]
    pub preserve_host: bool,
    /// Time allowed for the upstream to answer with headers.
    #[serde(default = "default_route_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Overrides the upstream's connect timeout for this route.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// Overrides the upstream's retry attempts for this route.
    pub retries: Option<u32>,
    pub rate_limit: Option<RateLimitConfig>,
    pub cache: Option<CacheConfig>,
    /// Protocols a client may switch this route's connection to (HTTP/1.1
    /// `Upgrade`); others are ignored and the request goes on as plain
    /// HTTP. `h2c` is never allowed: speak HTTP/2 with prior knowledge.
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
    /// Client addresses the route serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_rules: Option<super::IpRulesConfig>,
    /// Cross-origin callers; preflights are answered by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<super::CorsConfig>,
    /// How callers prove who they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<super::AuthConfig>,
    /// Who may call, once authenticated (needs `auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<super::AccessConfig>,
    /// Header and query edits of the request and the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<super::TransformConfig>,
    /// Convert XML answers (`application/xml`, `text/xml`, `*+xml`) to JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml_to_json: Option<super::XmlConfig>,
    /// Body (JSON Schema), query and header checks before the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<super::ValidateConfig>,
    /// Send the request to a SOAP service, its answer back as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap: Option<super::SoapConfig>,
    /// Send the request as a fixed GraphQL query, its `data` back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql: Option<super::GraphqlConfig>,
    /// Depth, alias and cost limits on GraphQL queries this route proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql_limits: Option<super::GraphqlLimitsConfig>,
    /// Answer with the merged JSON of several backend calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<super::AggregateConfig>,
}

fn default_upgrades() -> Vec<String> {
    vec!["websocket".to_string()]
}

/// Rate limiting of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `client_ip`, `route`, `header:<name>` (e.g. the consumer's API key header).
    #[serde(default = "default_limit_key")]
    pub key: String,
    /// Every limit must allow the request.
    pub limits: Vec<LimitConfig>,
    #[serde(default)]
    pub algorithm: LimitAlgorithm,
    /// `local`: each node counts alone; `region`: one budget for every node of
    /// the region, kept in Redis.
    #[serde(default)]
    pub scope: LimitScope,
    /// Region scope: `batched` (no Redis round trip per request, bounded
    /// overshoot) or `exact` (an atomic script per request).
    #[serde(default)]
    pub mode: LimitMode,
    /// Batched mode: how often counts are exchanged with Redis.
    #[serde(default = "default_sync_interval", with = "humantime_serde")]
    pub sync_interval: Duration,
    /// When Redis cannot be reached: `fail_open` (limit locally with this
    /// node's share of the budget) or `fail_closed` (503).
    #[serde(default)]
    pub on_redis_error: RedisFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub requests: u64,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitAlgorithm {
    /// Generic cell rate (a token bucket with burst = the limit).
    #[default]
    Gcra,
    /// Sliding window counter (two fixed windows, weighted).
    SlidingWindow,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    #[default]
    Local,
    Region,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    #[default]
    Batched,
    Exact,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    #[default]
    FailOpen,
    FailClosed,
}

/// Response caching of a route (GET and HEAD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Used when the upstream gives no `s-maxage` / `max-age`.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Request headers that are part of the key (besides what `Vary` names).
    #[serde(default)]
    pub key_headers: Vec<String>,
    /// Larger responses are passed through, not stored.
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: usize,
    /// Serve an expired entry this much longer when the upstream fails.
    #[serde(default, with = "humantime_serde")]
    pub stale_if_error: Option<Duration>,
    /// `local`: this node's memory only; `region`: also Redis, shared by the region.
    #[serde(default = "default_cache_scope")]
    pub scope: LimitScope,
}

fn default_limit_key() -> String {
    "client_ip".to_string()
}
fn default_sync_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_max_entry_bytes() -> usize {
    1 << 20
}
fn default_cache_scope() -> LimitScope {
    LimitScope::Region
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_weight() -> u32 {
    1
}
fn default_sticky_cookie() -> String {
    "meridian_sticky".to_string()
}
fn default_sticky_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_health_path() -> String {
    "/healthz".to_string()
}
fn default_health_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_consecutive_failures() -> u32 {
    5
}
fn default_base_ejection() -> Duration {
    Duration::from_secs(10)
}
fn default_max_ejection() -> Duration {
    Duration::from_secs(300)
}
fn default_max_ejected_percent() -> u32 {
    50
}
fn default_max_requests() -> u32 {
    10_000
}
fn default_max_pending() -> u32 {
    1_000
}
fn default_retry_attempts() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_budget_ratio() -> f64 {
    0.2
}
fn default_min_retries_per_second() -> u32 {
    10
}
fn default_max_idle() -> usize {
    512
}
fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_route_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self { max_requests: default_max_requests(), max_pending: default_max_pending() }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: default_retry_attempts(),
            on_5xx: false,
            budget_ratio: default_budget_ratio(),
            min_per_second: default_min_retries_per_second(),
        }
    }
}

impl Default for ConnectionPoolConfig {
    fn default() -> Self {
        Self { max_idle_per_target: default_max_idle(), idle_timeout: default_pool_idle_timeout() }
    }
}
