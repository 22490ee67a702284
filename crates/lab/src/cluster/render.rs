//! The node and balancer files of a topology, as a region's operator would
//! write them by hand.

use std::net::Ipv4Addr;
use std::path::Path;

use super::topology::{
    RegionSpec, Role, Topology, ADMIN_PORT, BACKEND_PORT, GSLB_API_PORT, HTTP_PORT, RAFT_PORT, REDIS_PORT,
};
use super::Mode;

/// Everything the files need besides the topology.
pub struct Context<'a> {
    pub topo: &'a Topology,
    pub mode: Mode,
    pub dir: &'a Path,
    pub token: &'a str,
}

impl Context<'_> {
    pub fn ip(&self, ip: Ipv4Addr) -> Ipv4Addr {
        self.mode.address(ip)
    }

    fn planned(&self, label: &str) -> Ipv4Addr {
        self.topo.plan().into_iter().find(|p| p.label == label).map(|p| self.ip(p.ip)).unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// A region's VIPs as clients and balancers see them: the real VIPs in
    /// namespaces; on loopback, where nothing moves addresses, the nodes'.
    pub fn service_addresses(&self, r: &RegionSpec) -> Vec<Ipv4Addr> {
        (1..=r.nodes)
            .map(|i| match self.mode {
                Mode::Netns => self.topo.vip(r, i),
                Mode::Loopback => self.planned(&format!("{}-n{i}", r.name)),
            })
            .collect()
    }

    /// The CA of the cluster's admin APIs (`ca.pem`), and for every node a
    /// certificate for its address (`<node>.admin.pem`; the key,
    /// `<node>.admin.key`, readable by its owner only), in `dir`.
    pub fn write_admin_pki(&self) -> anyhow::Result<()> {
        use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("meridian cluster {} admin CA", self.topo.name));
        ca_params.distinguished_name = dn;
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;
        std::fs::write(self.dir.join(super::CA_FILE), ca.pem())?;
        for r in &self.topo.regions {
            for i in 1..=r.nodes {
                let label = format!("{}-n{i}", r.name);
                let key = KeyPair::generate()?;
                let ip = self.planned(&label).to_string();
                let cert = CertificateParams::new(vec![ip])?.signed_by(&key, &ca, &ca_key)?;
                std::fs::write(self.dir.join(format!("{label}.admin.pem")), cert.pem())?;
                write_private(&self.dir.join(format!("{label}.admin.key")), key.serialize_pem().as_bytes())?;
            }
        }
        Ok(())
    }

    /// `ctl.toml`: every region's admin endpoints (HTTPS) and the CA that
    /// signed their certificates, for `meridian ctl --config`.
    pub fn ctl(&self) -> String {
        let mut out = String::from("# Admin endpoints of this cluster (written by `meridian cluster up`).\n");
        if let Some(first) = self.topo.regions.first() {
            out.push_str(&format!("default_region = \"{}\"\n", first.name));
        }
        out.push_str(&format!("cacert = \"{}\"\n", super::CA_FILE));
        for r in &self.topo.regions {
            let admins: Vec<String> = (1..=r.nodes)
                .map(|i| format!("\"https://{}:{ADMIN_PORT}\"", self.planned(&format!("{}-n{i}", r.name))))
                .collect();
            out.push_str(&format!("\n[regions.{}]\nadmin = [{}]\n", r.name, admins.join(", ")));
        }
        out
    }

    /// The node file of node `i` of region `r`.
    pub fn node(&self, r: &RegionSpec, i: u8) -> String {
        let dir = self.dir.display();
        let me = self.planned(&format!("{}-n{i}", r.name));
        let bind = match self.mode {
            Mode::Netns => Ipv4Addr::UNSPECIFIED,
            Mode::Loopback => me,
        };
        let members: Vec<String> = (1..=r.nodes)
            .map(|j| {
                let ip = self.planned(&format!("{}-n{j}", r.name));
                format!("{{ id = {j}, address = \"{ip}:{RAFT_PORT}\" }}")
            })
            .collect();
        let vip_backend = match self.mode {
            Mode::Netns => "netlink",
            Mode::Loopback => "none",
        };
        let vips: String = (1..=r.nodes)
            .map(|j| format!("[[vip.addresses]]\naddress = \"{}/24\"\npreferred = {j}\n", self.topo.vip(r, j)))
            .collect();
        let reports: Vec<String> = self
            .topo
            .plan()
            .into_iter()
            .filter(|p| p.role == Role::Gslb)
            .map(|p| format!("\"http://{}:{GSLB_API_PORT}\"", self.ip(p.ip)))
            .collect();
        let backends: Vec<String> = (1..=r.backends)
            .map(|j| format!("{{ address = \"{}:{BACKEND_PORT}\" }}", self.planned(&format!("{}-b{j}", r.name))))
            .collect();
        let redis = self.planned(&format!("{}-redis", r.name));
        let region = &r.name;
        let token = self.token;
        let members = members.join(", ");
        let reports = reports.join(", ");
        let backends = backends.join(", ");
        format!(
            r#"# Node {i} of region {region} (written by `meridian cluster up`).
[node]
name = "{region}-n{i}"
region = "{region}"

[[listeners]]
name = "http"
address = "{bind}:{HTTP_PORT}"
health_path = "/healthz"

[admin]
address = "{bind}:{ADMIN_PORT}"
token = "{token}"
[[admin.tls.certificates]]
cert = "{dir}/{region}-n{i}.admin.pem"
key = "{dir}/{region}-n{i}.admin.key"

[telemetry]
log_format = "json"
log_level = "info"
access_log = false

[identity]
pepper_file = "{dir}/identity-pepper"

[cluster]
node_id = {i}
listen = "{me}:{RAFT_PORT}"
data_dir = "{dir}/{region}-n{i}.data"
bootstrap = {bootstrap}
members = [{members}]
secret_file = "{dir}/{region}.cluster-secret"

[cluster.raft]
heartbeat_interval = "30ms"
election_timeout_min = "100ms"
election_timeout_max = "200ms"

[vip]
backend = "{vip_backend}"
interface = "eth0"
hold_down = "3s"
renew_interval = "100ms"
{vips}
[redis]
url = "redis://{redis}:{REDIS_PORT}/0"
timeout = "20ms"

[report]
endpoints = [{reports}]
interval = "250ms"
secret_file = "{dir}/{region}.report-secret"

[gateway.upstreams.app]
algorithm = "least_connections"
targets = [{backends}]

[gateway.upstreams.app.health.active]
path = "/healthz"
interval = "1s"
timeout = "300ms"
rise = 2
fall = 2

[[gateway.routes]]
name = "cached"
path_prefix = "/static"
upstream = "app"
cache = {{ ttl = "30s", stale_if_error = "60s" }}

[[gateway.routes]]
name = "api"
upstream = "app"
timeout = "5s"
rate_limit = {{ key = "client_ip", limits = [{{ requests = 100000, per = "1m" }}], algorithm = "sliding_window", scope = "region", mode = "batched", on_redis_error = "fail_open" }}
"#,
            bootstrap = i == 1,
        )
    }

    /// The file of balancer `name`.
    pub fn gslb(&self, name: &str) -> String {
        let t = self.topo;
        let dir = self.dir.display();
        let me = self.planned(name);
        let dns_port = self.mode.dns_port();
        let mut out = format!(
            r#"# Balancer {name} (written by `meridian cluster up`).
[gslb]
name = "{name}"
dns = "{me}:{dns_port}"
api = "{me}:{GSLB_API_PORT}"
report_freshness = "1s"
replay_window = "10s"

[telemetry]
log_format = "json"
log_level = "info"

[zone]
origin = "{zone}"
nameservers = [{ns}]
"#,
            zone = t.zone,
            ns = t.gslbs.iter().map(|g| format!("\"{}\"", g.name)).collect::<Vec<_>>().join(", "),
        );
        for g in &t.gslbs {
            out.push_str(&format!(
                "[[zone.records]]\nname = \"{}\"\ntype = \"A\"\nvalue = \"{}\"\n",
                g.name,
                self.planned(&g.name)
            ));
        }
        for r in &t.regions {
            let vips: Vec<String> = self.service_addresses(r).iter().map(|v| format!("\"{v}\"")).collect();
            out.push_str(&format!(
                r#"
[[regions]]
name = "{n}"
secret_file = "{dir}/{n}.report-secret"
location = {{ lat = {lat}, lon = {lon} }}
vips = [{vips}]
probe = {{ port = {HTTP_PORT}, path = "/healthz", interval = "200ms", timeout = "150ms", rise = 2, fall = 2 }}
"#,
                n = r.name,
                lat = r.location.lat,
                lon = r.location.lon,
                vips = vips.join(", "),
            ));
        }
        out.push_str(&format!("\n[[services]]\nname = \"{}\"\npolicy = \"nearest\"\nttl = {}\n", t.service, t.ttl));
        for c in &t.clients {
            out.push_str(&format!(
                "\n[[geo]]\ncidr = \"{}/32\"\nlocation = {{ lat = {}, lon = {} }}\n",
                self.planned(&c.name),
                c.location.lat,
                c.location.lon
            ));
        }
        for r in &t.regions {
            out.push_str(&format!(
                "\n[[geo]]\ncidr = \"{}/24\"\nlocation = {{ lat = {}, lon = {} }}\n",
                self.ip(r.subnet.network()),
                r.location.lat,
                r.location.lon
            ));
        }
        out
    }
}

/// A file only its owner can read (also when it existed before).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    Ok(())
}
