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
    /// Membership of the region's Raft group. Without it the node runs alone
    /// and its document changes only through this file and its admin API.
    pub cluster: Option<ClusterConfig>,
    /// Virtual IPs of the region (needs `[cluster]`). Every member of a
    /// region lists the same addresses; the interface is this node's.
    pub vip: Option<VipConfig>,
    /// Health reports to the global balancers (sent by the region's leader).
    pub report: Option<ReportConfig>,
    /// The region's Redis: shared rate-limit counters and response cache.
    pub redis: Option<RedisConfig>,
    /// The pepper API keys are hashed with (one secret for every node of
    /// every region). Without it, documents with API keys are not served.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Standalone: the document served until the admin API replaces it.
    /// In a region: the first document of a new region (bootstrap only).
    #[serde(default)]
    pub gateway: GatewayDocument,
}

impl NodeConfig {
    /// Timing that works but fences: an election longer than a third of the
    /// VIP lease can outlast the owners' leases (no renewal commits without
    /// a leader), so a leader's death makes every owner drop its VIPs for a
    /// moment. Not an error; `meridian validate` and the gateway report it.
    pub fn timing_warnings(&self) -> Vec<String> {
        let (Some(c), Some(v)) = (&self.cluster, &self.vip) else { return Vec::new() };
        let max = c.raft.election_timeout_max;
        if max * 3 <= v.lease {
            return Vec::new();
        }
        vec![format!(
            "cluster.raft.election_timeout_max: {} is more than a third of vip.lease ({}): a leader's death can \
             outlast the VIP leases and every owner drops its VIPs until a new leader commits a renewal; \
             keep election_timeout_max <= lease / 3",
            humantime::format_duration(max),
            humantime::format_duration(v.lease)
        )]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique within the region, never reused.
    pub node_id: u64,
    /// Raft listener.
    #[serde(default = "default_raft_listen")]
    pub listen: SocketAddr,
    /// Address other members use; `listen` when unset.
    pub advertise: Option<String>,
    /// Log, vote and snapshots; relative to the node file.
    pub data_dir: PathBuf,
    /// Set on the nodes of a new region for their first start: they form the
    /// group from `members`. Harmless on later starts.
    #[serde(default)]
    pub bootstrap: bool,
    /// The initial voters (used by `bootstrap`).
    #[serde(default)]
    pub members: Vec<MemberConfig>,
    /// File holding the cluster secret (relative to the node file)...
    pub secret_file: Option<PathBuf>,
    /// ...or the environment variable holding it.
    #[serde(default = "default_secret_env")]
    pub secret_env: String,
    /// How long a write waits for its commit before it is answered 503.
    #[serde(default = "default_write_timeout", with = "humantime_serde")]
    pub write_timeout: Duration,
    #[serde(default)]
    pub raft: RaftTuning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: u64,
    /// Its Raft address, `host:port`.
    pub address: String,
}

/// Timing of the group. The defaults suit a LAN: a failed leader is replaced
/// in about 0.3 s, well inside a VIP lease, so owners keep their VIPs
/// through an election ([`NodeConfig::timing_warnings`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftTuning {
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    #[serde(default = "default_election_min", with = "humantime_serde")]
    pub election_timeout_min: Duration,
    #[serde(default = "default_election_max", with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many log entries.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot for followers that are only a little behind.
    #[serde(default = "default_keep_logs")]
    pub keep_logs: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_interval: default_heartbeat(),
            election_timeout_min: default_election_min(),
            election_timeout_max: default_election_max(),
            snapshot_every: default_snapshot_every(),
            keep_logs: default_keep_logs(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// A single server: `redis://[user:password@]host:port/db` (`rediss://` for TLS).
    pub url: Option<String>,
    /// Sentinel: the sentinels' URLs...
    #[serde(default)]
    pub sentinels: Vec<String>,
    /// ...and the name of the master they watch.
    pub master_name: Option<String>,
    /// Redis Cluster: seed nodes.
    #[serde(default)]
    pub cluster: Vec<String>,
    /// No request waits on Redis longer than this.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Nodes sharing a region-scoped limit when Redis is unreachable (each
    /// then allows this share of the budget); the region's size when unset.
    pub fallback_nodes: Option<u32>,
    /// L1 (in-process) cache size.
    #[serde(default = "default_l1_bytes")]
    pub l1_cache_bytes: u64,
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(20)
}
fn default_l1_bytes() -> u64 {
    64 << 20
}

/// Where the API-key pepper comes from: a file, else the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub pepper_file: Option<PathBuf>,
    #[serde(default = "default_pepper_env")]
    pub pepper_env: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self { pepper_file: None, pepper_env: default_pepper_env() }
    }
}

impl IdentityConfig {
    /// The pepper, when one is configured; an unreadable or short one is an error.
    pub fn pepper(&self) -> Result<Option<crate::apikey::Pepper>, crate::secret::SecretError> {
        if self.pepper_file.is_none() && std::env::var_os(&self.pepper_env).is_none() {
            return Ok(None);
        }
        let secret = crate::secret::read_secret(self.pepper_file.as_deref(), &self.pepper_env)?;
        Ok(Some(crate::apikey::Pepper::new(&secret)))
    }
}

fn default_pepper_env() -> String {
    "MERIDIAN_IDENTITY_PEPPER".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Base URLs of every balancer's report API, e.g. `http://10.0.9.1:9953`.
    pub endpoints: Vec<String>,
    #[serde(default = "default_report_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_report_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The region's report secret (shared with the balancers, not the cluster secret)...
    pub secret_file: Option<PathBuf>,
    /// ...or the environment variable holding it.
    #[serde(default = "default_report_secret_env")]
    pub secret_env: String,
}

fn default_report_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_report_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_report_secret_env() -> String {
    "MERIDIAN_REPORT_SECRET".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    #[serde(default)]
    pub backend: VipBackend,
    /// Interface that carries the VIPs (netlink, and passed to `command`).
    #[serde(default = "default_vip_interface")]
    pub interface: String,
    /// For `backend = "exec"`: program and arguments; meridian appends
    /// `add|del <address/prefix> <interface>`.
    #[serde(default)]
    pub command: Vec<String>,
    /// An owner keeps its VIPs this long after a renewal it sent was committed.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    #[serde(default = "default_renew", with = "humantime_serde")]
    pub renew_interval: Duration,
    /// A preferred owner must be healthy this long before it takes its VIP back.
    #[serde(default = "default_hold_down", with = "humantime_serde")]
    pub hold_down: Duration,
    /// Largest relative clock-rate difference between members (0.05 = 5 %).
    #[serde(default = "default_drift")]
    pub clock_drift: f64,
    /// Extra safety between an owner letting go and a new owner taking over.
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub margin: Duration,
    /// A VIP handed to another node (moved, drained, taken back by its
    /// preferred owner) stays until no request is in flight on it, at most
    /// this long; zero lets go at once.
    #[serde(default = "default_handoff_drain", with = "humantime_serde")]
    pub handoff_drain: Duration,
    /// Netlink: VIP addresses are installed with this valid lifetime (whole
    /// seconds) and refreshed while the lease holds, so a *hung* owner's
    /// address leaves the host by itself within about lifetime + 1 s of its
    /// last refresh. Zero: permanent addresses.
    #[serde(default = "default_address_lifetime", with = "humantime_serde")]
    pub address_lifetime: Duration,
    /// Gratuitous ARP / unsolicited NA sent after taking a VIP...
    #[serde(default = "default_announce_count")]
    pub announce_count: u32,
    /// ...this far apart.
    #[serde(default = "default_announce_interval", with = "humantime_serde")]
    pub announce_interval: Duration,
    #[serde(default)]
    pub addresses: Vec<VipAddressConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VipBackend {
    Netlink,
    Exec,
    /// Nothing moves: a loopback cluster where DNS hands out node addresses.
    #[default]
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipAddressConfig {
    /// `10.0.0.100/24` or `fd00::100/64`.
    pub address: super::VipAddr,
    /// The member (node id) that should own it when healthy.
    pub preferred: Option<u64>,
}

fn default_vip_interface() -> String {
    "eth0".to_string()
}
fn default_lease() -> Duration {
    Duration::from_millis(600)
}
fn default_renew() -> Duration {
    Duration::from_millis(150)
}
fn default_hold_down() -> Duration {
    Duration::from_secs(5)
}
fn default_drift() -> f64 {
    0.05
}
fn default_margin() -> Duration {
    Duration::from_millis(50)
}
fn default_handoff_drain() -> Duration {
    Duration::from_secs(1)
}
fn default_address_lifetime() -> Duration {
    Duration::from_secs(2)
}
/// Announcements must outlast the neighbour lock time (1 s on Linux): a
/// neighbour ignores an update within that long of the previous one, so a
/// VIP that moves soon after its last move would otherwise keep pointing at
/// the old owner until the neighbour re-probes.
fn default_announce_count() -> u32 {
    5
}
fn default_announce_interval() -> Duration {
    Duration::from_millis(300)
}

fn default_raft_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7100))
}
fn default_secret_env() -> String {
    "MERIDIAN_CLUSTER_SECRET".to_string()
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_heartbeat() -> Duration {
    Duration::from_millis(30)
}
fn default_election_min() -> Duration {
    Duration::from_millis(100)
}
fn default_election_max() -> Duration {
    Duration::from_millis(200)
}
fn default_snapshot_every() -> u64 {
    500
}
fn default_keep_logs() -> u64 {
    100
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
    pub tls: Option<TlsConfig>,
    /// Bind even if the address is not (yet) on this host (`IP_FREEBIND`):
    /// a listener on a VIP that this node may own later.
    #[serde(default)]
    pub freebind: bool,
    /// Answered by the gateway itself: 200 while it serves a document, 503
    /// before (what load balancers and the global balancer probe).
    pub health_path: Option<String>,
    /// Request paths: runs of `/` become one (see `docs/security.md`).
    #[serde(default = "default_true")]
    pub merge_slashes: bool,
    /// `%2F`, `%5C` and `%00` in a path: `reject` (400) or `keep` (escaped).
    #[serde(default)]
    pub encoded_separators: crate::pattern::canonical::EncodedSeparators,
    /// `;params` in path segments: `strip` (routing and upstream see the
    /// path without them) or `reject` (400).
    #[serde(default)]
    pub path_parameters: crate::pattern::canonical::PathParameters,
    /// Connections open at once on this listener; more are closed at accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one client address (0: no cap). Behind
    /// a load balancer that does not pass client addresses, every client is
    /// the balancer: raise it or set 0 there.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: u32,
    /// Every connection starts with a PROXY protocol header (v1 or v2);
    /// from a trusted proxy, its source address is the client's.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// From a trusted proxy, the right-most `X-Forwarded-For` entry that is
    /// not itself a trusted proxy is the client's address.
    #[serde(default)]
    pub forwarded_for: bool,
    /// Networks of the proxies in front of this listener (`10.0.0.0/8`,
    /// `192.0.2.7/32`): only their PROXY headers and `X-Forwarded-For` are
    /// believed, and connections from them are not held to
    /// `max_connections_per_client`.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Client addresses this listener accepts connections from (others are
    /// closed at once): the PROXY header's client from trusted proxies, else the peer.
    #[serde(default)]
    pub ip_rules: Option<super::IpRulesConfig>,
}

impl ListenerConfig {
    /// How this listener canonicalises request paths.
    pub fn path_policy(&self) -> crate::pattern::canonical::PathPolicy {
        crate::pattern::canonical::PathPolicy {
            merge_slashes: self.merge_slashes,
            encoded_separators: self.encoded_separators,
            path_parameters: self.path_parameters,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The first certificate also serves clients whose SNI matches no other.
    pub certificates: Vec<CertificateConfig>,
    /// Ask clients for a certificate (mutual TLS), unless a certificate's
    /// own `client_auth` says otherwise for its SNI names.
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
}

/// Client certificates requested at the handshake: verified against `ca`
/// (and `crls`); routes then map them to consumers (`auth.mtls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM bundle of the CAs that issue client certificates; relative to the node file.
    pub ca: PathBuf,
    /// PEM certificate revocation lists.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// Refuse the handshake without a valid certificate (otherwise a
    /// certificate is optional, and routes that need one refuse the request).
    #[serde(default)]
    pub required: bool,
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
    /// Client certificates for these SNI names (overrides the listener's).
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// Bearer token for everything but /healthz, /readyz and /metrics.
    pub token: Option<String>,
    /// Environment variable that holds the token (read when `token` is unset).
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// Serve the admin API over TLS (HTTPS) with these certificates.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
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
    /// How often certificate and key files are checked for changes (and
    /// reloaded); SIGHUP reloads them at once. Zero: only on SIGHUP.
    #[serde(default = "default_certificate_check_interval", with = "humantime_serde")]
    pub certificate_check_interval: Duration,
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
    /// Consumers that get a label of their own in
    /// `meridian_consumer_requests_total` (the first by name); the others
    /// are counted as `_other`, so the metric stays bounded.
    #[serde(default = "default_consumer_labels")]
    pub consumer_labels: usize,
}

fn default_consumer_labels() -> usize {
    100
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

fn default_certificate_check_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_region() -> String {
    "default".to_string()
}
fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig {
        name: "http".to_string(),
        address: SocketAddr::from(([0, 0, 0, 0], 8080)),
        tls: None,
        freebind: false,
        health_path: None,
        merge_slashes: true,
        encoded_separators: Default::default(),
        path_parameters: Default::default(),
        max_connections: default_max_connections(),
        max_connections_per_client: default_max_connections_per_client(),
        proxy_protocol: false,
        forwarded_for: false,
        trusted_proxies: Vec::new(),
        ip_rules: None,
    }]
}
fn default_max_connections() -> usize {
    100_000
}
fn default_max_connections_per_client() -> u32 {
    1_024
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
        Self { address: default_admin_address(), token: None, token_env: default_token_env(), tls: None }
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
            certificate_check_interval: default_certificate_check_interval(),
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_level: default_log_level(),
            access_log: true,
            consumer_labels: default_consumer_labels(),
        }
    }
}

impl AdminConfig {
    /// The token from the file, else from the environment variable.
    /// The token: inline, else from `token_env` (at least
    /// [`crate::secret::MIN_SECRET_BYTES`] long, as an inline one must be).
    pub fn resolve_token(&self) -> Result<Option<String>, crate::secret::SecretError> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        match std::env::var(&self.token_env) {
            Ok(t) if !t.is_empty() => {
                crate::secret::check_length(&self.token_env, t.len())?;
                Ok(Some(t))
            }
            _ => Ok(None),
        }
    }
}
