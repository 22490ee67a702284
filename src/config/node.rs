//! The node file: who this node is, where it listens, its limits and logs.
//! Changing it needs a restart; its `[gateway]` table is the initial document.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::GatewayDocument;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeIdentity,
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The document served until the admin API or the region replaces it.
    #[serde(default)]
    pub gateway: GatewayDocument,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    pub name: String,
    #[serde(default = "default_region")]
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    /// TLS termination; plain HTTP (HTTP/1.1 and h2c prior knowledge) when unset.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The first certificate also serves clients whose SNI matches no other.
    pub certificates: Vec<CertificateConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM certificate chain, leaf first; relative to the node file.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// SNI names (exact or `*.suffix`) this certificate answers.
    #[serde(default)]
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// Bearer token for everything but /healthz, /readyz and /metrics.
    #[serde(default)]
    pub token: Option<String>,
    /// Environment variable that holds the token (read when `token` is unset).
    #[serde(default = "default_token_env")]
    pub token_env: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request head (request line + headers); larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Largest request body; larger gets 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Time a client has to send a complete request head (slowloris guard);
    /// on HTTP/1.1 it also bounds the wait for the next keep-alive request.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no traffic and no request in flight is closed after this.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time given to in-flight requests when the node shuts down.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Concurrent HTTP/2 streams per client connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `meridian=debug,info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// One structured line per request under the `meridian::access` target.
    #[serde(default = "default_true")]
    pub access_log: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Data-plane worker threads; 0 means one per core.
    #[serde(default)]
    pub worker_threads: usize,
}

fn default_region() -> String {
    "default".to_string()
}
fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig { name: "http".to_string(), address: SocketAddr::from(([0, 0, 0, 0], 8080)), tls: None }]
}
fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}
fn default_token_env() -> String {
    "MERIDIAN_ADMIN_TOKEN".to_string()
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_concurrent_streams() -> u32 {
    256
}
fn default_log_level() -> String {
    "info".to_string()
}
fn default_true() -> bool {
    true
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { address: default_admin_address(), token: None, token_env: default_token_env() }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: default_max_header_bytes(),
            max_body_bytes: default_max_body_bytes(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            drain_timeout: default_drain_timeout(),
            max_concurrent_streams: default_max_concurrent_streams(),
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_format: LogFormat::Pretty, log_level: default_log_level(), access_log: true }
    }
}

impl AdminConfig {
    /// The token from the file, else from the environment variable.
    pub fn resolve_token(&self) -> Option<String> {
        self.token.clone().or_else(|| std::env::var(&self.token_env).ok()).filter(|t| !t.is_empty())
    }
}
