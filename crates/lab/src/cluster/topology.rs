//! The topology file (`cluster/local.toml`): regions, their nodes, backends
//! and Redis, the DNS balancers and the client locations — and the address
//! plan every other piece derives from it.
//!
//! Address plan, per /24: a region's subnet holds the router leg on `.1`,
//! Redis on `.5`, node *i* on `.1i`, backend *j* on `.2j`, and node *i*'s
//! preferred VIP on `.10i`. The wan subnet holds the router on `.1`, balancer
//! *k* on `.5k` and client *c* on `.10c`. On loopback (not root) the same
//! plan is used inside `127.0.0.0/8` (`10.81.1.11` becomes `127.81.1.11`).

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use meridian_core::config::{ConfigErrorKind as K, ConfigErrors, Validated};
use meridian_gslb::config::Point;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Names the cluster's namespaces (`mrd<name>-...`) and its state folder.
    pub name: String,
    /// The zone the balancers answer for.
    #[serde(default = "default_zone")]
    pub zone: String,
    /// The service clients resolve (`<service>.<zone>`).
    #[serde(default = "default_service")]
    pub service: String,
    /// TTL of the service's answers, seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Subnet joining the regions' routers, the balancers and the clients.
    pub wan: ipnet::Ipv4Net,
    /// Where state, logs and data directories go.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    pub regions: Vec<RegionSpec>,
    pub gslbs: Vec<GslbSpec>,
    pub clients: Vec<ClientSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    pub name: String,
    pub subnet: ipnet::Ipv4Net,
    pub location: Point,
    #[serde(default = "default_nodes")]
    pub nodes: u8,
    #[serde(default = "default_backends")]
    pub backends: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GslbSpec {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub name: String,
    pub location: Point,
}

fn default_zone() -> String {
    "meridian.test.".into()
}
fn default_service() -> String {
    "api".into()
}
fn default_ttl() -> u32 {
    2
}
fn default_state_dir() -> String {
    "target/cluster".into()
}
fn default_nodes() -> u8 {
    3
}
fn default_backends() -> u8 {
    2
}

/// What a planned host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Router,
    Node,
    Backend,
    Redis,
    Gslb,
    Client,
}

/// One host of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    /// Unique within the cluster: `eu-n1`, `eu-b2`, `eu-redis`, `dns1`, `paris`, `router`.
    pub label: String,
    pub role: Role,
    /// The region's name for region hosts.
    pub region: Option<String>,
    /// 1-based index within its kind (node id for nodes).
    pub index: u8,
    pub ip: Ipv4Addr,
    /// The bridge it sits on: a region name, or `wan`.
    pub bridge: String,
}

pub const HTTP_PORT: u16 = 8080;
pub const ADMIN_PORT: u16 = 9901;
pub const RAFT_PORT: u16 = 7100;
pub const BACKEND_PORT: u16 = 9000;
pub const REDIS_PORT: u16 = 6379;
pub const GSLB_API_PORT: u16 = 9953;
/// DNS port inside namespaces; on loopback (not root) 5353 is used.
pub const DNS_PORT: u16 = 53;
pub const LOOPBACK_DNS_PORT: u16 = 5353;

fn host(net: &ipnet::Ipv4Net, last: u8) -> Ipv4Addr {
    let o = net.network().octets();
    Ipv4Addr::new(o[0], o[1], o[2], last)
}

impl Topology {
    pub fn load(path: &Path) -> Result<Validated<Topology>, ConfigErrors> {
        meridian_core::config::parse_file::<Topology>(path)?.validate()
    }

    pub fn validate(self) -> Result<Validated<Topology>, ConfigErrors> {
        let mut e = ConfigErrors::default();
        let label_ok = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !label_ok(&self.name, 6) {
            e.push("name", K::OutOfRange { value: self.name.clone(), rule: "1 to 6 characters of a-z, 0-9" });
        }
        if !meridian_gslb::config::valid_dns_name(&self.zone) || !self.zone.ends_with('.') {
            e.push(
                "zone",
                K::InvalidHost { value: self.zone.clone(), reason: "an absolute name ending in '.'".into() },
            );
        }
        if !label_ok(&self.service, 63) {
            e.push("service", K::OutOfRange { value: self.service.clone(), rule: "a DNS label of a-z, 0-9" });
        }
        if self.ttl == 0 || self.ttl > 300 {
            e.push("ttl", K::OutOfRange { value: self.ttl.to_string(), rule: "1 to 300 seconds" });
        }
        let mut nets: Vec<(String, ipnet::Ipv4Net)> = vec![("wan".into(), self.wan)];
        if self.wan.prefix_len() > 24 {
            e.push("wan", K::OutOfRange { value: self.wan.to_string(), rule: "a /24 or larger" });
        }
        if self.regions.is_empty() {
            e.push("regions", K::Empty);
        }
        let mut names: Vec<(String, String)> = Vec::new();
        let mut unique = |e: &mut ConfigErrors, path: String, name: &str| {
            if let Some((_, first)) = names.iter().find(|(n, _)| n == name) {
                e.push(path, K::Duplicate { name: name.to_string(), first: first.clone() });
            } else {
                names.push((name.to_string(), path));
            }
        };
        for (i, r) in self.regions.iter().enumerate() {
            let p = format!("regions[{i}]");
            if !label_ok(&r.name, 4) || r.name == "wan" {
                e.push(
                    format!("{p}.name"),
                    K::OutOfRange { value: r.name.clone(), rule: "1 to 4 characters of a-z, 0-9, not 'wan'" },
                );
            }
            unique(&mut e, format!("{p}.name"), &r.name);
            if r.subnet.prefix_len() > 24 {
                e.push(format!("{p}.subnet"), K::OutOfRange { value: r.subnet.to_string(), rule: "a /24 or larger" });
            }
            if let Some((other, _)) = nets.iter().find(|(_, n)| n.contains(&r.subnet) || r.subnet.contains(n)) {
                e.push(
                    format!("{p}.subnet"),
                    K::InvalidAddress { value: r.subnet.to_string(), reason: format!("overlaps {other}") },
                );
            }
            nets.push((r.name.clone(), r.subnet));
            if !(1..=9).contains(&r.nodes) {
                e.push(format!("{p}.nodes"), K::OutOfRange { value: r.nodes.to_string(), rule: "1 to 9" });
            }
            if !(1..=9).contains(&r.backends) {
                e.push(format!("{p}.backends"), K::OutOfRange { value: r.backends.to_string(), rule: "1 to 9" });
            }
        }
        if self.gslbs.is_empty() || self.gslbs.len() > 9 {
            e.push("gslbs", K::OutOfRange { value: self.gslbs.len().to_string(), rule: "1 to 9 balancers" });
        }
        for (i, g) in self.gslbs.iter().enumerate() {
            if !label_ok(&g.name, 8) {
                e.push(format!("gslbs[{i}].name"), K::OutOfRange { value: g.name.clone(), rule: "a-z, 0-9, up to 8" });
            }
            unique(&mut e, format!("gslbs[{i}].name"), &g.name);
        }
        if self.clients.is_empty() || self.clients.len() > 9 {
            e.push("clients", K::OutOfRange { value: self.clients.len().to_string(), rule: "1 to 9 clients" });
        }
        for (i, c) in self.clients.iter().enumerate() {
            if !label_ok(&c.name, 8) || c.name == "router" {
                e.push(
                    format!("clients[{i}].name"),
                    K::OutOfRange { value: c.name.clone(), rule: "a-z, 0-9, up to 8, not 'router'" },
                );
            }
            unique(&mut e, format!("clients[{i}].name"), &c.name);
        }
        e.into_validated(self)
    }

    pub fn region(&self, name: &str) -> Option<&RegionSpec> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Every host of the cluster, routers first.
    pub fn plan(&self) -> Vec<Planned> {
        let mut out = vec![Planned {
            label: "router".into(),
            role: Role::Router,
            region: None,
            index: 1,
            ip: host(&self.wan, 1),
            bridge: "wan".into(),
        }];
        for r in &self.regions {
            let mut add = |label: String, role, index, last| {
                out.push(Planned {
                    label,
                    role,
                    region: Some(r.name.clone()),
                    index,
                    ip: host(&r.subnet, last),
                    bridge: r.name.clone(),
                })
            };
            add(format!("{}-redis", r.name), Role::Redis, 1, 5);
            for i in 1..=r.nodes {
                add(format!("{}-n{i}", r.name), Role::Node, i, 10 + i);
            }
            for j in 1..=r.backends {
                add(format!("{}-b{j}", r.name), Role::Backend, j, 20 + j);
            }
        }
        for (k, g) in self.gslbs.iter().enumerate() {
            let k = k as u8 + 1;
            out.push(Planned {
                label: g.name.clone(),
                role: Role::Gslb,
                region: None,
                index: k,
                ip: host(&self.wan, 50 + k),
                bridge: "wan".into(),
            });
        }
        for (c, cl) in self.clients.iter().enumerate() {
            let c = c as u8 + 1;
            out.push(Planned {
                label: cl.name.clone(),
                role: Role::Client,
                region: None,
                index: c,
                ip: host(&self.wan, 100 + c),
                bridge: "wan".into(),
            });
        }
        out
    }

    /// The router's leg on a region's bridge.
    pub fn router_leg(&self, region: &RegionSpec) -> Ipv4Addr {
        host(&region.subnet, 1)
    }

    /// The VIP node `i` (1-based) prefers.
    pub fn vip(&self, region: &RegionSpec, i: u8) -> Ipv4Addr {
        host(&region.subnet, 100 + i)
    }

    /// The service's fully qualified name.
    pub fn fqdn(&self) -> String {
        format!("{}.{}", self.service, self.zone)
    }
}

/// The same plan inside 127.0.0.0/8, for clusters on loopback.
pub fn loopback(ip: Ipv4Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(127, o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Topology {
        meridian_core::config::parse(
            r#"
name = "t"
wan = "10.81.0.0/24"
[[regions]]
name = "eu"
subnet = "10.81.1.0/24"
location = { lat = 50.1, lon = 8.7 }
[[regions]]
name = "us"
subnet = "10.81.2.0/24"
location = { lat = 38.9, lon = -77.0 }
[[gslbs]]
name = "dns1"
[[clients]]
name = "paris"
location = { lat = 48.9, lon = 2.35 }
"#,
            meridian_core::config::Format::Toml,
        )
        .unwrap()
    }

    #[test]
    fn plan_follows_the_address_plan() {
        let t = sample();
        let plan = t.plan();
        let ip = |l: &str| plan.iter().find(|p| p.label == l).unwrap().ip.to_string();
        assert_eq!(ip("eu-n2"), "10.81.1.12");
        assert_eq!(ip("us-b1"), "10.81.2.21");
        assert_eq!(ip("eu-redis"), "10.81.1.5");
        assert_eq!(ip("dns1"), "10.81.0.51");
        assert_eq!(ip("paris"), "10.81.0.101");
        assert_eq!(t.vip(&t.regions[1], 3).to_string(), "10.81.2.103");
        assert_eq!(plan.len(), 1 + 2 * (1 + 3 + 2) + 1 + 1);
        assert_eq!(loopback("10.81.2.12".parse().unwrap()).to_string(), "127.81.2.12");
    }

    #[test]
    fn broken_rules_name_their_keys() {
        let mut t = sample();
        t.regions[1].subnet = "10.81.1.0/24".parse().unwrap();
        t.regions[1].name = "eu".into();
        t.regions[0].nodes = 12;
        t.name = "Too-Long-Name".into();
        let errors = t.validate().err().unwrap();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"name"), "{paths:?}");
        assert!(paths.contains(&"regions[0].nodes"), "{paths:?}");
        assert!(paths.contains(&"regions[1].name"), "{paths:?}");
        assert!(paths.contains(&"regions[1].subnet"), "{paths:?}");
    }
}
