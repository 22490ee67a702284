//! The global balancer's configuration (`meridian gslb --config gslb.toml`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use meridian_core::config::{ConfigErrorKind as K, ConfigErrors, TelemetryConfig, Validated};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GslbConfig {
    pub gslb: GslbSettings,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    pub zone: ZoneConfig,
    pub regions: Vec<RegionConfig>,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub geo: Vec<GeoEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GslbSettings {
    #[serde(default = "default_name")]
    pub name: String,
    /// DNS on UDP and TCP.
    #[serde(default = "default_dns")]
    pub dns: SocketAddr,
    /// Health reports (`POST /v1/report`), `/metrics`, `/healthz`, `/v1/regions`.
    #[serde(default = "default_api")]
    pub api: SocketAddr,
    /// A region whose last report is older than this is not served.
    #[serde(default = "default_freshness", with = "humantime_serde")]
    pub report_freshness: Duration,
    /// Reports whose timestamp is further from our clock than this are refused.
    #[serde(default = "default_replay_window", with = "humantime_serde")]
    pub replay_window: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// `example.test.`
    pub origin: String,
    pub nameservers: Vec<String>,
    #[serde(default = "default_hostmaster")]
    pub hostmaster: String,
    #[serde(default = "default_serial")]
    pub serial: u32,
    /// TTL of the SOA, NS and static records without their own.
    #[serde(default = "default_zone_ttl")]
    pub ttl: u32,
    /// Negative-answer TTL (SOA minimum).
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: u32,
    #[serde(default)]
    pub records: Vec<StaticRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRecord {
    /// Relative to the origin (`www`, `@`) or absolute (`www.example.test.`).
    pub name: String,
    /// `A`, `AAAA`, `CNAME` or `TXT`.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    #[serde(default)]
    pub ttl: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    /// Secret that signs this region's reports: a file...
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// ...or an environment variable.
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub location: Option<Point>,
    /// The addresses answered for this region (its VIPs, or node addresses).
    pub vips: Vec<IpAddr>,
    #[serde(default)]
    pub probe: ProbeConfig,
    /// Weight under the `weighted` policy (services may override).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    #[serde(default = "default_probe_port")]
    pub port: u16,
    #[serde(default = "default_probe_path")]
    pub path: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_probe_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_rise")]
    pub rise: u32,
    #[serde(default = "default_fall")]
    pub fall: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            port: default_probe_port(),
            path: default_probe_path(),
            host: None,
            interval: default_probe_interval(),
            timeout: default_probe_timeout(),
            rise: default_rise(),
            fall: default_fall(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    #[default]
    Nearest,
    Failover,
    Weighted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// A name in the zone: `api` (relative) or `api.example.test.`.
    pub name: String,
    #[serde(default)]
    pub policy: PolicyKind,
    /// Regions that serve it (all when empty).
    #[serde(default)]
    pub regions: Vec<String>,
    /// For `failover`: regions in order.
    #[serde(default)]
    pub order: Vec<String>,
    /// For `weighted`: region → weight (the region's weight otherwise).
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    #[serde(default = "default_service_ttl")]
    pub ttl: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoEntry {
    pub cidr: String,
    /// Where clients of this network are...
    #[serde(default)]
    pub location: Option<Point>,
    /// ...or the regions they should use, in order.
    #[serde(default)]
    pub order: Vec<String>,
}

fn default_name() -> String {
    "gslb".into()
}
fn default_dns() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 5353))
}
fn default_api() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9953))
}
fn default_freshness() -> Duration {
    Duration::from_millis(1500)
}
fn default_replay_window() -> Duration {
    Duration::from_secs(30)
}
fn default_hostmaster() -> String {
    "hostmaster".into()
}
fn default_serial() -> u32 {
    1
}
fn default_zone_ttl() -> u32 {
    300
}
fn default_negative_ttl() -> u32 {
    30
}
fn default_weight() -> u32 {
    1
}
fn default_probe_port() -> u16 {
    8080
}
fn default_probe_path() -> String {
    "/healthz".into()
}
fn default_probe_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_probe_timeout() -> Duration {
    Duration::from_millis(300)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    2
}
fn default_service_ttl() -> u32 {
    5
}

/// `name` made absolute under `origin` (`@` is the origin itself).
pub fn absolute(name: &str, origin: &str) -> String {
    if name == "@" {
        origin.to_string()
    } else if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.{origin}")
    }
}

pub fn valid_dns_name(s: &str) -> bool {
    s.ends_with('.')
        && s.len() <= 254
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Load and check a GSLB file; relative secret paths are resolved against it.
pub fn load(path: &std::path::Path) -> Result<Validated<GslbConfig>, ConfigErrors> {
    let mut cfg: GslbConfig = meridian_core::config::parse_file(path)?;
    let base = path.parent().unwrap_or_else(|| std::path::Path::new("."));
    for r in &mut cfg.regions {
        if let Some(f) = &mut r.secret_file {
            *f = base.join(&*f);
        }
    }
    validate(cfg)
}

pub fn validate(cfg: GslbConfig) -> Result<Validated<GslbConfig>, ConfigErrors> {
    let mut e = ConfigErrors::default();
    let origin = &cfg.zone.origin;
    if !valid_dns_name(origin) {
        e.push(
            "zone.origin",
            K::InvalidHost { value: origin.clone(), reason: "an absolute name ending in '.'".into() },
        );
    }
    if cfg.zone.nameservers.is_empty() {
        e.push("zone.nameservers", K::Empty);
    }
    for (i, ns) in cfg.zone.nameservers.iter().enumerate() {
        if !valid_dns_name(&absolute(ns, origin)) {
            e.push(
                format!("zone.nameservers[{i}]"),
                K::InvalidHost { value: ns.clone(), reason: "not a DNS name".into() },
            );
        }
    }
    for (i, r) in cfg.zone.records.iter().enumerate() {
        let p = format!("zone.records[{i}]");
        if !valid_dns_name(&absolute(&r.name, origin)) {
            e.push(format!("{p}.name"), K::InvalidHost { value: r.name.clone(), reason: "not a DNS name".into() });
        }
        let ok = match r.kind.as_str() {
            "A" => r.value.parse::<std::net::Ipv4Addr>().is_ok(),
            "AAAA" => r.value.parse::<std::net::Ipv6Addr>().is_ok(),
            "CNAME" => valid_dns_name(&absolute(&r.value, origin)),
            "TXT" => true,
            _ => {
                e.push(
                    format!("{p}.type"),
                    K::OutOfRange { value: r.kind.clone(), rule: "one of A, AAAA, CNAME, TXT" },
                );
                true
            }
        };
        if !ok {
            e.push(
                format!("{p}.value"),
                K::InvalidAddress { value: r.value.clone(), reason: format!("not a {} value", r.kind) },
            );
        }
    }
    let names: Vec<&str> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
    if cfg.regions.is_empty() {
        e.push("regions", K::Empty);
    }
    for (i, r) in cfg.regions.iter().enumerate() {
        let p = format!("regions[{i}]");
        if names.iter().filter(|n| **n == r.name).count() > 1 {
            e.push(format!("{p}.name"), K::Duplicate { name: r.name.clone(), first: "another region".into() });
        }
        if r.secret_file.is_none() && r.secret_env.is_none() {
            e.push(
                format!("{p}.secret_file"),
                K::AdminToken("set secret_file or secret_env (reports are signed)".into()),
            );
        }
        if r.vips.is_empty() {
            e.push(format!("{p}.vips"), K::Empty);
        }
        if r.probe.timeout.is_zero() || r.probe.interval.is_zero() || r.probe.timeout > r.probe.interval {
            e.push(
                format!("{p}.probe.timeout"),
                K::OutOfRange { value: format!("{:?}", r.probe.timeout), rule: "non-zero and at most the interval" },
            );
        }
        if let Some(loc) = r.location {
            if !(-90.0..=90.0).contains(&loc.lat) || !(-180.0..=180.0).contains(&loc.lon) {
                e.push(
                    format!("{p}.location"),
                    K::OutOfRange { value: format!("{},{}", loc.lat, loc.lon), rule: "latitude ±90, longitude ±180" },
                );
            }
        }
    }
    for (i, s) in cfg.services.iter().enumerate() {
        let p = format!("services[{i}]");
        if !valid_dns_name(&absolute(&s.name, origin)) {
            e.push(format!("{p}.name"), K::InvalidHost { value: s.name.clone(), reason: "not a DNS name".into() });
        }
        for (j, r) in s.regions.iter().chain(s.order.iter()).enumerate() {
            if !names.contains(&r.as_str()) {
                e.push(format!("{p}.regions[{j}]"), K::UnknownUpstream(r.clone()));
            }
        }
        for r in s.weights.keys() {
            if !names.contains(&r.as_str()) {
                e.push(format!("{p}.weights.{r}"), K::UnknownUpstream(r.clone()));
            }
        }
        if s.policy == PolicyKind::Failover && s.order.is_empty() {
            e.push(format!("{p}.order"), K::Empty);
        }
        if s.policy == PolicyKind::Nearest
            && cfg.regions.iter().any(|r| r.location.is_none())
            && cfg.geo.iter().all(|g| g.order.is_empty())
        {
            e.push(
                format!("{p}.policy"),
                K::OutOfRange {
                    value: "nearest".into(),
                    rule: "needs a location on every region (or geo entries with an order)",
                },
            );
        }
    }
    for (i, g) in cfg.geo.iter().enumerate() {
        let p = format!("geo[{i}]");
        if g.cidr.parse::<ipnet::IpNet>().is_err() {
            e.push(
                format!("{p}.cidr"),
                K::InvalidAddress { value: g.cidr.clone(), reason: "expected a CIDR like 10.1.0.0/16".into() },
            );
        }
        if g.location.is_none() == g.order.is_empty() {
            e.push(
                p.clone(),
                K::OutOfRange { value: "location/order".into(), rule: "exactly one of location and order" },
            );
        }
        for r in &g.order {
            if !names.contains(&r.as_str()) {
                e.push(format!("{p}.order"), K::UnknownUpstream(r.clone()));
            }
        }
    }
    e.into_validated(cfg)
}
