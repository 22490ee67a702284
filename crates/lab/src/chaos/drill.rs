//! A drill file (`chaos/*.toml`): the fault, its timing, the load, and the
//! bounds the cluster must meet.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use meridian_core::config::{ConfigErrorKind as K, ConfigErrors, Validated};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub fault: Fault,
    #[serde(default)]
    pub timing: Timing,
    #[serde(default)]
    pub load: Load,
    #[serde(default)]
    pub bounds: Bounds,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The node that owns the region's first VIP crashes (`kill -9`, and its
    /// link goes down); rebooted at heal.
    NodeKill { region: String },
    /// Only the gateway *process* of the first VIP's owner is killed
    /// (`kill -9`); its host and link stay up, and the router forgets its
    /// neighbours every second, so a dead host still answering ARP for the
    /// VIP would take traffic. Restarted at heal.
    ProcessKill { region: String },
    /// The gateway process of the first VIP's owner hangs (`SIGSTOP`): alive
    /// but frozen, it can neither renew nor remove its addresses, which
    /// expire after `vip.address_lifetime`; thawed (`SIGCONT`) at heal.
    ProcessHang { region: String },
    /// Cut the owner of the region's first VIP off from the other nodes (the
    /// clients still reach it); healed at heal.
    NodePartition { region: String },
    /// The region's Raft leader crashes like `node_kill` (pair with `load.writes`).
    LeaderKill { region: String },
    /// Every gateway host of the region crashes at once; rebooted at heal.
    RegionDown { region: String },
    /// The region's Redis killed; restarted at heal.
    RedisDown { region: String },
    /// One balancer killed; restarted at heal.
    GslbDown { gslb: String },
}

impl Fault {
    pub fn region(&self) -> Option<&str> {
        match self {
            Fault::NodeKill { region }
            | Fault::ProcessKill { region }
            | Fault::ProcessHang { region }
            | Fault::NodePartition { region }
            | Fault::LeaderKill { region }
            | Fault::RegionDown { region }
            | Fault::RedisDown { region } => Some(region),
            Fault::GslbDown { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Load before the fault.
    #[serde(default = "default_warmup", with = "humantime_serde")]
    pub warmup: Duration,
    /// How long the fault lasts before it is healed.
    #[serde(default = "default_fault", with = "humantime_serde")]
    pub fault: Duration,
    /// Load after the heal.
    #[serde(default = "default_recover", with = "humantime_serde")]
    pub recover: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { warmup: default_warmup(), fault: default_fault(), recover: default_recover() }
    }
}

impl Timing {
    /// The short form `make test` runs.
    pub fn short(self) -> Timing {
        Timing {
            warmup: self.warmup.min(Duration::from_secs(2)),
            fault: self.fault.min(Duration::from_secs(5)),
            recover: self.recover.min(Duration::from_secs(3)),
        }
    }

    pub fn total(&self) -> Duration {
        self.warmup + self.fault + self.recover
    }
}

fn default_warmup() -> Duration {
    Duration::from_secs(4)
}
fn default_fault() -> Duration {
    Duration::from_secs(8)
}
fn default_recover() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Time between two requests of one client (each on a new connection).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A request not answered within this counts as failed.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_path")]
    pub path: String,
    /// Also write the config document every `write_interval` through the
    /// fault's region and check that no acknowledged write is lost.
    #[serde(default)]
    pub writes: bool,
    #[serde(default = "default_write_interval", with = "humantime_serde")]
    pub write_interval: Duration,
    /// Clients authenticate, half of their requests with an API key and
    /// half with a JWT, on a route that requires one (`chaos::identity`);
    /// `path` is then under `/auth`.
    #[serde(default)]
    pub auth: bool,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            interval: default_interval(),
            timeout: default_timeout(),
            path: default_path(),
            writes: false,
            write_interval: default_write_interval(),
            auth: false,
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_millis(20)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_path() -> String {
    "/hello".into()
}
fn default_write_interval() -> Duration {
    Duration::from_millis(100)
}

/// Each bound is checked when set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// First failed request → steady success.
    #[serde(default, with = "humantime_serde")]
    pub max_takeover: Option<Duration>,
    /// Fault → steady success.
    #[serde(default, with = "humantime_serde")]
    pub max_recovery: Option<Duration>,
    /// Fault → the region is in no balancer's answers any more.
    #[serde(default, with = "humantime_serde")]
    pub max_dns_exit: Option<Duration>,
    pub max_double_owner_samples: Option<u64>,
    pub max_lost_writes: Option<u64>,
    pub max_failed_requests: Option<u64>,
    pub max_failed_resolutions: Option<u64>,
    /// Requests answered with 2xx, of all requests.
    pub min_success_ratio: Option<f64>,
}

impl Drill {
    pub fn load(path: &Path) -> Result<Validated<Drill>, ConfigErrors> {
        meridian_core::config::parse_file::<Drill>(path)?.validate()
    }

    pub fn validate(self) -> Result<Validated<Drill>, ConfigErrors> {
        let mut e = ConfigErrors::default();
        if self.name.is_empty() {
            e.push("name", K::Empty);
        }
        let positive = |e: &mut ConfigErrors, path: &str, d: Duration| {
            if d.is_zero() {
                e.push(path, K::OutOfRange { value: "0s".into(), rule: "more than zero" });
            }
        };
        positive(&mut e, "timing.fault", self.timing.fault);
        positive(&mut e, "load.interval", self.load.interval);
        positive(&mut e, "load.timeout", self.load.timeout);
        positive(&mut e, "load.write_interval", self.load.write_interval);
        if self.timing.total() > Duration::from_secs(600) {
            e.push("timing", K::OutOfRange { value: format!("{:?}", self.timing.total()), rule: "10 minutes at most" });
        }
        if !self.load.path.starts_with('/') {
            e.push("load.path", K::InvalidPath { value: self.load.path.clone(), reason: "must start with '/'".into() });
        }
        if self.load.auth && !self.load.path.starts_with("/auth/") {
            let reason = "authenticated load requests the route under /auth/".into();
            e.push("load.path", K::InvalidPath { value: self.load.path.clone(), reason });
        }
        if let Some(r) = self.bounds.min_success_ratio {
            if !(0.0..=1.0).contains(&r) {
                e.push("bounds.min_success_ratio", K::OutOfRange { value: r.to_string(), rule: "0 to 1" });
            }
        }
        if self.load.writes && self.fault.region().is_none() {
            e.push("load.writes", K::OutOfRange { value: "true".into(), rule: "writes need a fault with a region" });
        }
        e.into_validated(self)
    }
}
