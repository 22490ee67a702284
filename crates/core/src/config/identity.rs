//! Identity and access in the gateway document: consumers and their
//! credentials, JWT providers, and what a route asks of its callers
//! (authentication, authorization, CORS, IP rules).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::document::LimitConfig;

/// Who calls the APIs. Consumers are global: `meridian ctl consumers` writes
/// them to every region, so a client that fails over keeps working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Free-form labels (tier, owner, ...), shown by `ctl consumers list`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// API keys, by hash only: the key itself is shown once when issued.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyCredential>,
    /// Client certificates (mutual TLS) that name this consumer.
    #[serde(default)]
    pub certificates: Vec<CertificateCredential>,
    /// This consumer's own limits on routes whose rate limit counts by
    /// consumer or credential (instead of the route's limits).
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
}

/// An API key as the document keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCredential {
    /// Names the credential in logs, headers and `ctl keys revoke`.
    pub id: String,
    /// `HMAC-SHA256(pepper, key)`, hex.
    pub hash: String,
    /// The key's first characters, to recognise it by.
    pub prefix: String,
}

/// A client certificate that names a consumer: by one subject alternative
/// name (`URI`, `DNS` or `email` value, exactly) or by the whole subject DN
/// (exactly as `CN=client, O=Example` prints it; never a CN substring).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateCredential {
    pub id: String,
    pub san: Option<String>,
    pub subject: Option<String>,
}

/// An issuer of JWTs whose tokens routes accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtProviderConfig {
    /// `iss` must be exactly this.
    pub issuer: String,
    /// `aud` (a string or an array) must name one of these; empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted `alg` values, e.g. `["RS256"]`. The token's header never
    /// widens this; symmetric and asymmetric algorithms cannot be mixed.
    pub algorithms: Vec<String>,
    /// Keys given inline.
    #[serde(default)]
    pub keys: Vec<JwtKeyConfig>,
    /// A JWK Set to fetch (http or https); the only URL keys come from.
    pub jwks_uri: Option<String>,
    /// CA certificates (PEM file) for an https `jwks_uri`; the system's roots without it.
    pub jwks_ca_file: Option<String>,
    /// Refetch the key set this often.
    #[serde(default = "default_cache_duration", with = "humantime_serde")]
    pub cache_duration: Duration,
    /// An unknown `kid` triggers a refetch at most this often.
    #[serde(default = "default_min_refetch", with = "humantime_serde")]
    pub min_refetch_interval: Duration,
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// A larger key set is refused.
    #[serde(default = "default_max_jwks_bytes")]
    pub max_jwks_bytes: usize,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// `exp - iat` may not be longer (then `iat` is required).
    #[serde(default, with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
    /// The claim that names the consumer.
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    /// A claim (string or array) that adds groups to those of the consumer.
    pub groups_claim: Option<String>,
}

/// An OAuth 2.0 token introspection endpoint (RFC 7662) that opaque tokens
/// are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The endpoint's URL (https, or http on a trusted network).
    pub endpoint: String,
    /// The gateway's client credentials at the authorization server.
    pub client_id: String,
    /// The secret inline, or...
    pub client_secret: Option<String>,
    /// ...the environment variable that holds it on every node.
    pub client_secret_env: Option<String>,
    #[serde(default = "default_token_type_hint")]
    pub token_type_hint: String,
    /// How long an active answer is believed (never past the token's `exp`).
    #[serde(default = "default_introspection_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// How long an inactive answer is believed.
    #[serde(default = "default_negative_ttl", with = "humantime_serde")]
    pub negative_ttl: Duration,
    #[serde(default = "default_introspection_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// A larger answer is refused.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: usize,
    /// CA certificates (PEM file) for an https endpoint; the system's roots without it.
    pub ca_file: Option<String>,
    /// The answer's member that names the consumer.
    #[serde(default = "default_consumer_claim")]
    pub consumer_claim: String,
    pub groups_claim: Option<String>,
}

/// One inline verification key: exactly one of `pem`, `jwk` or `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Matched against the token's `kid`; a key without one is tried for any token.
    pub kid: Option<String>,
    /// A public key (RSA, EC or Ed25519), PEM.
    pub pem: Option<String>,
    /// A public key as a JWK (JSON text).
    pub jwk: Option<String>,
    /// An HMAC secret, base64.
    pub secret: Option<String>,
}

/// How a route authenticates its callers. Methods are tried in this order:
/// `mtls`, `api_key`, `jwt`, `introspection`; the first whose credential the request carries
/// decides (an invalid credential is refused, never downgraded to
/// `anonymous`). Without any credential: `anonymous`, else 401.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The verified client certificate of the connection (the listener asks for it).
    pub mtls: Option<MtlsAuth>,
    pub api_key: Option<ApiKeyAuth>,
    pub jwt: Option<JwtAuth>,
    /// Opaque bearer tokens checked at an introspection endpoint (not
    /// together with `jwt`: both read the same bearer token).
    pub introspection: Option<IntrospectionAuth>,
    /// A consumer that requests without any credential act as.
    pub anonymous: Option<String>,
}

/// Client-certificate authentication of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsAuth {}

/// Where an API key is looked for; with none set, the `x-api-key` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAuth {
    pub header: Option<String>,
    /// A query parameter: always removed before the cache key is built and
    /// the request forwarded.
    pub query: Option<String>,
    pub cookie: Option<String>,
    /// Remove the key from the request before the upstream sees it.
    #[serde(default = "default_true")]
    pub hide_credentials: bool,
}

/// JWT authentication of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuth {
    /// Names under `[jwt_providers]`; a token's `iss` picks one.
    pub providers: Vec<String>,
    /// A header carrying the bare token (default: `Authorization: Bearer`).
    pub header: Option<String>,
    pub query: Option<String>,
    pub cookie: Option<String>,
    /// Scalar claims copied to request headers: claim → header.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// A header that carries the verified payload (base64url JSON) upstream.
    pub forward_payload_header: Option<String>,
    #[serde(default)]
    pub hide_credentials: bool,
}

/// Introspection authentication of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionAuth {
    /// A name under `[introspection]`.
    pub provider: String,
    /// A header carrying the bare token (default: `Authorization: Bearer`).
    pub header: Option<String>,
    pub query: Option<String>,
    pub cookie: Option<String>,
    #[serde(default)]
    pub hide_credentials: bool,
}

/// Who may call a route, once authenticated. Entries are `consumer:<name>`
/// or `group:<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// When set, only these may call.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Never these (checked first).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Every one must be granted (`scope` claim, space-delimited, or an array).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Claim → accepted values (one of).
    #[serde(default)]
    pub required_claims: BTreeMap<String, Vec<String>>,
    /// Group → the methods its members may call. When set, a caller needs a
    /// group that lists the request's method.
    #[serde(default)]
    pub methods_by_group: BTreeMap<String, Vec<String>>,
    /// Send `X-Consumer-Groups` upstream.
    #[serde(default)]
    pub forward_groups: bool,
}

/// Cross-origin requests to a route (answered by the gateway for preflights).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// `scheme://host[:port]` exactly, or `*` (any origin, without credentials).
    #[serde(default)]
    pub origins: Vec<String>,
    /// `scheme://*.suffix[:port]`: one or more labels before the suffix;
    /// anchored at both ends. Never matches the `null` origin.
    #[serde(default)]
    pub origin_patterns: Vec<String>,
    #[serde(default = "default_cors_methods")]
    pub methods: Vec<String>,
    /// Request headers a caller may send (`Access-Control-Allow-Headers`).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers scripts may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default = "default_cors_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Answer `Access-Control-Request-Private-Network` preflights.
    #[serde(default)]
    pub private_network: bool,
}

/// Client addresses a route (or listener) serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRulesConfig {
    /// When set, only these networks.
    #[serde(default)]
    pub allow: Vec<ipnet::IpNet>,
    /// Never these (checked first).
    #[serde(default)]
    pub deny: Vec<ipnet::IpNet>,
    /// `client`: the request's client (PROXY header or `X-Forwarded-For`
    /// from the listener's trusted proxies); `peer`: the socket's peer.
    #[serde(default)]
    pub source: IpSource,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpSource {
    #[default]
    Client,
    Peer,
}

fn default_token_type_hint() -> String {
    "access_token".to_string()
}
fn default_introspection_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_negative_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_introspection_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_max_answer_bytes() -> usize {
    64 << 10
}
fn default_true() -> bool {
    true
}
fn default_cache_duration() -> Duration {
    Duration::from_secs(600)
}
fn default_min_refetch() -> Duration {
    Duration::from_secs(30)
}
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_jwks_bytes() -> usize {
    256 << 10
}
fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_consumer_claim() -> String {
    "sub".to_string()
}
fn default_cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(String::from).to_vec()
}
fn default_cors_max_age() -> Duration {
    Duration::from_secs(600)
}
