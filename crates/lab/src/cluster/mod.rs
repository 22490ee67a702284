//! `meridian cluster up|down|status`: a whole multi-region system on one
//! machine, from a topology file.
//!
//! As root every host gets a network namespace: a bridge per region, a `wan`
//! bridge for the balancers and clients, and a router namespace joining them.
//! Processes run detached inside their namespaces, so the cluster outlives the
//! command; `state.json` in the state folder names them for `down`, `status`
//! and drills. Without root the same plan runs on loopback addresses with the
//! `none` VIP backend.

pub mod render;
pub mod topology;

use meridian_core::admin::{ClusterView, GslbRegionView, VipTableView};
use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};

use crate::netns;
use topology::{Planned, Role, Topology, ADMIN_PORT, BACKEND_PORT, REDIS_PORT};

/// Where the cluster's hosts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One network namespace per host (root).
    Netns,
    /// Everything on 127.0.0.0/8; VIPs are not moved.
    Loopback,
}

impl Mode {
    pub fn address(self, ip: Ipv4Addr) -> Ipv4Addr {
        match self {
            Mode::Netns => ip,
            Mode::Loopback => topology::loopback(ip),
        }
    }

    pub fn dns_port(self) -> u16 {
        match self {
            Mode::Netns => topology::DNS_PORT,
            Mode::Loopback => topology::LOOPBACK_DNS_PORT,
        }
    }
}

/// What `up` leaves behind for the other commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub mode: Mode,
    pub token: String,
    /// Running processes by host label.
    pub pids: BTreeMap<String, u32>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
    /// The topology file.
    #[arg(long, global = true, default_value = "cluster/local.toml")]
    pub topology: PathBuf,
    /// Overrides the topology's name (several clusters side by side).
    #[arg(long, global = true)]
    pub name: Option<String>,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ClusterCommand {
    /// Start every host and process; wait until the cluster is healthy.
    Up {
        /// Use loopback addresses even as root.
        #[arg(long)]
        loopback: bool,
    },
    /// Stop and remove everything (idempotent, also after a crash).
    Down,
    /// A table of every node: role, VIPs, health, config version, DNS view.
    Status {
        #[arg(long)]
        watch: bool,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
}

/// A running (or starting) cluster.
pub struct Cluster {
    pub topo: Topology,
    pub dir: PathBuf,
    pub state: State,
    plan: Vec<Planned>,
}

pub fn load_topology(path: &Path, name: Option<&str>) -> anyhow::Result<Topology> {
    let mut t = Topology::load(path)
        .map_err(|e| {
            anyhow::anyhow!("{}:\n{}", path.display(), e.iter().map(|e| format!("  {e}\n")).collect::<String>())
        })?
        .into_inner();
    if let Some(n) = name {
        t.name = n.to_string();
        t = t.validate().map_err(|e| anyhow::anyhow!("--name: {e}"))?.into_inner();
    }
    Ok(t)
}

fn state_dir(t: &Topology) -> PathBuf {
    PathBuf::from(&t.state_dir).join(&t.name)
}

impl Cluster {
    /// The cluster `up` left running, if any.
    pub fn attach(topo: Topology) -> anyhow::Result<Option<Cluster>> {
        let dir = state_dir(&topo);
        let Ok(text) = std::fs::read_to_string(dir.join("state.json")) else { return Ok(None) };
        let state: State = serde_json::from_str(&text).context("state.json")?;
        let plan = topo.plan();
        Ok(Some(Cluster { topo, dir, state, plan }))
    }

    pub fn mode(&self) -> Mode {
        self.state.mode
    }

    pub fn host(&self, label: &str) -> Option<&Planned> {
        self.plan.iter().find(|p| p.label == label)
    }

    pub fn hosts(&self, role: Role) -> impl Iterator<Item = &Planned> {
        self.plan.iter().filter(move |p| p.role == role)
    }

    /// The address a host is reached at.
    pub fn ip(&self, label: &str) -> Ipv4Addr {
        self.host(label).map(|p| self.mode().address(p.ip)).unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// The namespace of a host (netns mode).
    pub fn ns(&self, label: &str) -> Option<String> {
        (self.mode() == Mode::Netns).then(|| netns::ns_name(&self.topo.name, label))
    }

    /// The namespace checks and clients run from: the first client's.
    pub fn vantage(&self) -> Option<String> {
        self.hosts(Role::Client).next().and_then(|c| self.ns(&c.label))
    }

    pub fn dns_servers(&self) -> Vec<SocketAddr> {
        self.hosts(Role::Gslb).map(|g| SocketAddr::new(self.ip(&g.label).into(), self.mode().dns_port())).collect()
    }

    pub fn admin_url(&self, node: &str, path: &str) -> String {
        format!("https://{}:{ADMIN_PORT}{path}", self.ip(node))
    }

    /// The admin APIs' token and the CA that signed their certificates.
    pub fn admin(&self) -> AdminAccess {
        AdminAccess { token: self.state.token.clone(), ca: self.dir.join(CA_FILE) }
    }

    pub fn render(&self) -> render::Context<'_> {
        render::Context { topo: &self.topo, mode: self.mode(), dir: &self.dir, token: &self.state.token }
    }

    fn save(&self) -> anyhow::Result<()> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join("state.json.tmp");
        // It holds the admin token.
        render::write_private(&tmp, &serde_json::to_vec_pretty(&self.state)?)?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Start (or restart) the process of a host.
    pub fn start(&mut self, label: &str) -> anyhow::Result<()> {
        let host = self.host(label).cloned().with_context(|| format!("no host {label}"))?;
        let me = std::env::current_exe().context("locating the meridian binary")?;
        let me = me.to_string_lossy().to_string();
        let ip = self.ip(label).to_string();
        let dir = self.dir.display().to_string();
        let (program, args): (String, Vec<String>) = match host.role {
            Role::Node => (me, vec!["gateway".into(), "--config".into(), format!("{dir}/{label}.toml")]),
            Role::Gslb => (me, vec!["gslb".into(), "--config".into(), format!("{dir}/{label}.toml")]),
            Role::Backend => (
                me,
                vec![
                    "backend".into(),
                    "--listen".into(),
                    format!("{ip}:{BACKEND_PORT}"),
                    "--name".into(),
                    label.into(),
                ],
            ),
            Role::Redis => {
                let data = format!("{dir}/{label}.data");
                std::fs::create_dir_all(&data)?;
                (
                    "redis-server".into(),
                    [
                        "--bind",
                        &ip,
                        "--port",
                        &REDIS_PORT.to_string(),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--protected-mode",
                        "no",
                        "--dir",
                        &data,
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                )
            }
            Role::Router | Role::Client => return Ok(()),
        };
        let log = File::options().create(true).append(true).open(self.dir.join(format!("{label}.log")))?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = netns::spawn_detached(self.ns(label).as_deref(), &program, &args, log)
            .with_context(|| format!("starting {label}"))?;
        self.state.pids.insert(label.to_string(), pid);
        self.save()
    }

    /// Stop the process of a host (`SIGKILL` when `hard`) and wait for it to go.
    pub fn stop(&mut self, label: &str, hard: bool) -> anyhow::Result<()> {
        if let Some(pid) = self.state.pids.remove(label) {
            let sig = if hard { nix::sys::signal::Signal::SIGKILL } else { nix::sys::signal::Signal::SIGTERM };
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, sig);
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid.as_raw() as u32) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if alive(pid.as_raw() as u32) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        self.save()
    }

    /// Freeze (`SIGSTOP`) or thaw (`SIGCONT`) a running process.
    pub fn freeze(&self, label: &str, frozen: bool) -> anyhow::Result<()> {
        let pid = self.state.pids.get(label).with_context(|| format!("{label} is not running"))?;
        let sig = if frozen { nix::sys::signal::Signal::SIGSTOP } else { nix::sys::signal::Signal::SIGCONT };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), sig)?;
        Ok(())
    }

    /// Run `f` on a thread inside the vantage namespace (or here on loopback).
    pub fn from_vantage<F, Fut, T>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
        T: Send + 'static,
    {
        in_namespace(self.vantage(), f)
    }
}

/// Run `f` to completion on a new thread with its own runtime, inside `ns`
/// when given (sockets it opens live there).
pub fn in_namespace<F, Fut, T>(ns: Option<String>, f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    std::thread::spawn(move || -> anyhow::Result<T> {
        if let Some(ns) = ns {
            netns::enter(&ns).with_context(|| format!("entering namespace {ns}"))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(rt.block_on(f()))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("worker thread panicked"))?
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

/// One admin or API call with a deadline: (status, body). `https://` URLs
/// are verified against `ca`.
pub async fn http(
    ca: Option<&Path>,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
    timeout: Duration,
) -> anyhow::Result<(u16, Bytes)> {
    let client = meridian_core::client::admin_client(ca)?;
    let mut b = http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some((ct, text)) => b.header("content-type", ct).body(Full::new(Bytes::from(text))),
        None => b.body(Full::default()),
    }?;
    let fut = async {
        let resp = client.request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, bytes))
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| anyhow::anyhow!("{url}: no answer within {timeout:?}"))?
}

/// A JSON answer read as the admin API type it is.
pub fn typed<T: serde::de::DeserializeOwned>(value: Option<serde_json::Value>) -> Option<T> {
    serde_json::from_value(value?).ok()
}

/// How the lab's tools reach a cluster's admin APIs: HTTPS verified against
/// the cluster's CA, with its token.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    pub token: String,
    pub ca: PathBuf,
}

impl AdminAccess {
    pub async fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<(&str, String)>,
        timeout: Duration,
    ) -> anyhow::Result<(u16, Bytes)> {
        http(Some(&self.ca), method, url, Some(&self.token), body, timeout).await
    }

    /// A GET answered 200 with JSON.
    pub async fn json(&self, url: &str) -> Option<serde_json::Value> {
        let (status, body) = self.call("GET", url, None, Duration::from_millis(800)).await.ok()?;
        (status == 200).then(|| serde_json::from_slice(&body).ok()).flatten()
    }
}

/// A DNS A query for `name` to `server`: the addresses, or why not.
pub async fn resolve_once(server: SocketAddr, name: &str, timeout: Duration) -> Result<Vec<Ipv4Addr>, String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut msg = Message::query();
    msg.metadata.id = fastrand::u16(..);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).map_err(|e| e.to_string())?, RecordType::A));
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let sock = tokio::net::UdpSocket::bind("0.0.0.0:0").await.map_err(|e| e.to_string())?;
    let work = async {
        sock.send_to(&bytes, server).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
        let m = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
        Ok(m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect())
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| "timeout".to_string())?
}

/// Entry point of `meridian cluster`.
pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let topo = load_topology(&args.topology, args.name.as_deref())?;
    match args.command {
        ClusterCommand::Up { loopback } => {
            let c = up(topo, loopback)?;
            print_endpoints(&c);
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Down => {
            down(&topo)?;
            println!("cluster {} is down", topo.name);
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Status { watch, output } => {
            let Some(c) = Cluster::attach(topo)? else { bail!("no cluster is up (run `meridian cluster up`)") };
            loop {
                let s = status(&c)?;
                if output == "json" {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    if watch {
                        print!("\x1b[2J\x1b[H");
                    }
                    print_status(&s);
                }
                if !watch {
                    return Ok(ExitCode::SUCCESS);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn step(what: &str) {
    use std::io::Write;
    print!("  {what} ... ");
    let _ = std::io::stdout().flush();
}

/// Build the hosts, start every process, and wait until the cluster serves.
pub fn up(topo: Topology, force_loopback: bool) -> anyhow::Result<Cluster> {
    let mode = if !force_loopback && netns::available().is_ok() { Mode::Netns } else { Mode::Loopback };
    down(&topo)?;
    let dir = state_dir(&topo);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let token = meridian_core::secret::random_hex_secret()?;
    let state = State { name: topo.name.clone(), mode, token, pids: BTreeMap::new() };
    let plan = topo.plan();
    let mut c = Cluster { topo, dir, state, plan };
    c.save()?;
    println!(
        "cluster {}: {} hosts ({})",
        c.topo.name,
        c.plan.len(),
        match mode {
            Mode::Netns => "network namespaces",
            Mode::Loopback => "loopback addresses",
        }
    );
    if let Err(e) = build(&mut c) {
        // Keep the logs for whoever reads the error.
        teardown(&c.topo);
        return Err(e);
    }
    Ok(c)
}

/// The CA certificate of the cluster's admin APIs, in its directory.
pub const CA_FILE: &str = "ca.pem";

fn build(c: &mut Cluster) -> anyhow::Result<()> {
    if c.mode() == Mode::Netns {
        step("network");
        let mut lab = netns::Lab::persistent(&c.topo.name)?;
        lab.add_bridge("br-wan")?;
        let router = lab.add_host_on("router", "br-wan", c.ip("router"), 24, None)?;
        for r in c.topo.regions.clone() {
            lab.add_bridge(&format!("br-{}", r.name))?;
            lab.add_leg(&router, &format!("br-{}", r.name), &format!("r-{}", r.name), c.topo.router_leg(&r), 24)?;
        }
        lab.exec(&router, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
        for p in c.plan.clone() {
            if p.role == Role::Router {
                continue;
            }
            let via = match &p.region {
                Some(r) => c.topo.region(r).map(|r| c.topo.router_leg(r)),
                None => Some(c.ip("router")),
            };
            lab.add_host_on(&p.label, &format!("br-{}", p.bridge), p.ip, 24, via)?;
        }
        // `ip netns exec` gives a namespace its own /etc/netns/<ns>/resolv.conf:
        // the clients resolve through the balancers.
        let servers: String = c.hosts(Role::Gslb).map(|g| format!("nameserver {}\n", c.ip(&g.label))).collect();
        for client in c.hosts(Role::Client).map(|p| p.label.clone()).collect::<Vec<_>>() {
            if let Some(ns) = c.ns(&client) {
                let dir = PathBuf::from("/etc/netns").join(ns);
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("resolv.conf"), format!("{servers}options timeout:1 attempts:2\n"))?;
            }
        }
        println!("ok");
    }
    step("configuration");
    for r in &c.topo.regions {
        for kind in ["cluster-secret", "report-secret"] {
            let secret = meridian_core::secret::random_hex_secret()?;
            render::write_private(&c.dir.join(format!("{}.{kind}", r.name)), secret.as_bytes())?;
        }
    }
    // One API-key pepper for every region: identity is global.
    let pepper = meridian_core::secret::random_hex_secret()?;
    render::write_private(&c.dir.join("identity-pepper"), pepper.as_bytes())?;
    c.render().write_admin_pki()?;
    for r in c.topo.regions.clone() {
        for i in 1..=r.nodes {
            // Node files hold the admin token.
            render::write_private(&c.dir.join(format!("{}-n{i}.toml", r.name)), c.render().node(&r, i).as_bytes())?;
        }
    }
    std::fs::write(c.dir.join("ctl.toml"), c.render().ctl())?;
    for g in c.topo.gslbs.clone() {
        std::fs::write(c.dir.join(format!("{}.toml", g.name)), c.render().gslb(&g.name))?;
    }
    println!("ok ({})", c.dir.display());
    for role in [Role::Redis, Role::Backend, Role::Gslb, Role::Node] {
        let labels: Vec<String> = c.hosts(role).map(|p| p.label.clone()).collect();
        step(&format!("starting {}", labels.join(" ")));
        for l in &labels {
            c.start(l)?;
        }
        println!("ok");
    }
    step("waiting for leaders, VIPs on their preferred nodes, balancers serving every region");
    let started = Instant::now();
    wait_healthy(c, Duration::from_secs(60))?;
    println!("ok ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Poll until every region has a leader, every VIP is on its preferred node
/// (VIPs settle there after the hold-down), and every balancer serves every
/// region. A drill starts from there, so a VIP settling is not taken for
/// the fault's doing.
pub fn wait_healthy(c: &Cluster, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut why = String::new();
    while Instant::now() < deadline {
        for label in c.state.pids.keys() {
            if !c.state.pids.get(label).is_some_and(|p| alive(*p)) {
                bail!("{label} exited; see {}", c.dir.join(format!("{label}.log")).display());
            }
        }
        let s = status(c)?;
        why = s.unhealthy_reason(c, true);
        if why.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("not healthy within {within:?}: {why}")
}

/// Stop every process and remove every namespace of the topology's cluster;
/// keep its folder (logs).
pub fn teardown(topo: &Topology) {
    if let Ok(Some(c)) = Cluster::attach(topo.clone()) {
        for pid in c.state.pids.values() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
    if netns::available().is_ok() {
        netns::remove_all(&topo.name);
        for c in &topo.clients {
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(netns::ns_name(&topo.name, &c.name)));
        }
    }
    let _ = std::fs::remove_file(state_dir(topo).join("state.json"));
}

/// [`teardown`], and remove the cluster's folder.
pub fn down(topo: &Topology) -> anyhow::Result<()> {
    teardown(topo);
    let dir = state_dir(topo);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRow {
    pub region: String,
    pub node: String,
    pub running: bool,
    pub role: Option<String>,
    pub term: Option<u64>,
    pub config_version: Option<u64>,
    /// The version its data plane serves (behind `config_version` when it
    /// cannot compile the applied document).
    #[serde(default)]
    pub serving_version: Option<u64>,
    pub vips: Vec<String>,
    pub ready: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsView {
    pub gslb: String,
    /// Regions the balancer considers healthy (its `/v1/regions`), or an error.
    pub served: Result<Vec<String>, String>,
    /// Regions of the addresses it answers the vantage client with.
    pub answers: Result<Vec<String>, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub name: String,
    pub mode: Mode,
    pub nodes: Vec<NodeRow>,
    /// Per region: VIP → owner node name (from the region's table).
    pub vips: BTreeMap<String, BTreeMap<String, Option<String>>>,
    /// The client whose DNS answers are shown.
    pub vantage: String,
    pub dns: Vec<DnsView>,
}

impl Status {
    /// Empty when every node is ready, every VIP has an owner (its
    /// preferred node, once `settled` is asked for) and every balancer
    /// serves every region; otherwise what is missing.
    fn unhealthy_reason(&self, c: &Cluster, settled: bool) -> String {
        let mut why = Vec::new();
        if settled {
            for r in &c.topo.regions {
                for i in 1..=r.nodes {
                    let (vip, node) = (c.topo.vip(r, i).to_string(), format!("{}-n{i}", r.name));
                    let owner = self.vips.get(&r.name).and_then(|t| t.get(&vip).cloned().flatten());
                    if owner.as_deref() != Some(node.as_str()) {
                        why.push(format!("{vip} not yet on {node}"));
                    }
                }
            }
        }
        for n in &self.nodes {
            if !n.ready || n.role.is_none() {
                why.push(format!("{} not ready", n.node));
            }
        }
        for (region, vips) in &self.vips {
            if vips.is_empty() || vips.values().any(Option::is_none) {
                why.push(format!("{region}: VIPs without owner"));
            }
        }
        let regions: Vec<&String> = self.vips.keys().collect();
        for d in &self.dns {
            match &d.served {
                Ok(r) if regions.iter().all(|x| r.contains(x)) => {}
                Ok(r) => why.push(format!("{} serves only {r:?}", d.gslb)),
                Err(e) => why.push(format!("{}: {e}", d.gslb)),
            }
        }
        why.join("; ")
    }
}

/// Which region an answered address belongs to.
pub fn region_of(c: &Cluster, ip: Ipv4Addr) -> Option<String> {
    c.topo.regions.iter().find(|r| c.render().service_addresses(r).contains(&ip)).map(|r| r.name.clone())
}

pub fn status(c: &Cluster) -> anyhow::Result<Status> {
    let nodes: Vec<(String, String, String, bool)> = c
        .hosts(Role::Node)
        .map(|p| {
            let running = c.state.pids.get(&p.label).is_some_and(|pid| alive(*pid));
            (p.region.clone().unwrap_or_default(), p.label.clone(), c.admin_url(&p.label, ""), running)
        })
        .collect();
    let admin = c.admin();
    let servers: Vec<(String, SocketAddr, String)> = c
        .hosts(Role::Gslb)
        .map(|g| g.label.clone())
        .zip(c.dns_servers())
        .map(|(g, s)| {
            let api = format!("http://{}:{}/v1/regions", s.ip(), topology::GSLB_API_PORT);
            (g, s, api)
        })
        .collect();
    let fqdn = c.topo.fqdn();
    let names: BTreeMap<String, String> = c
        .hosts(Role::Node)
        .map(|p| (format!("{}/{}", p.region.clone().unwrap_or_default(), p.index), p.label.clone()))
        .collect();
    let (rows, vip_tables, answers) = c.from_vantage(move || async move {
        let mut rows = Vec::new();
        let mut tables: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
        for (region, node, base, running) in nodes {
            let cluster: Option<ClusterView> =
                if running { typed(admin.json(&format!("{base}/cluster")).await) } else { None };
            let vips: Option<VipTableView> =
                if running { typed(admin.json(&format!("{base}/vips")).await) } else { None };
            let ready = running
                && admin
                    .call("GET", &format!("{base}/readyz"), None, Duration::from_millis(800))
                    .await
                    .is_ok_and(|(s, _)| s == 200);
            let mut held = Vec::new();
            if let Some(v) = &vips {
                let table = tables.entry(region.clone()).or_default();
                for x in &v.vips {
                    let vip = x.vip.split('/').next().unwrap_or("").to_string();
                    if x.held_here {
                        held.push(vip.clone());
                    }
                    let owner = x.owner.and_then(|o| names.get(&format!("{region}/{o}")).cloned());
                    table.insert(vip, owner);
                }
            }
            rows.push(NodeRow {
                region,
                node,
                running,
                role: cluster.as_ref().map(|c| c.node.role.clone()),
                term: cluster.as_ref().map(|c| c.term),
                config_version: cluster.as_ref().map(|c| c.node.config_version),
                serving_version: cluster.as_ref().map(|c| c.node.serving_version),
                vips: held,
                ready,
            });
        }
        let mut answers = Vec::new();
        for (g, server, api) in servers {
            let served = match http(None, "GET", &api, None, None, Duration::from_millis(800)).await {
                Ok((200, body)) => serde_json::from_slice::<Vec<GslbRegionView>>(&body)
                    .map(|v| v.into_iter().filter(|r| r.served).map(|r| r.region).collect::<Vec<String>>())
                    .map_err(|e| e.to_string()),
                Ok((status, _)) => Err(format!("status {status}")),
                Err(e) => Err(e.to_string()),
            };
            answers.push((g, served, resolve_once(server, &fqdn, Duration::from_millis(500)).await));
        }
        (rows, tables, answers)
    })?;
    let dns = answers
        .into_iter()
        .map(|(gslb, served, r)| DnsView {
            gslb,
            served,
            answers: r.map(|ips| {
                let mut v: Vec<String> = ips.into_iter().filter_map(|ip| region_of(c, ip)).collect();
                v.sort();
                v.dedup();
                v
            }),
        })
        .collect();
    let vantage = c.hosts(Role::Client).next().map(|p| p.label.clone()).unwrap_or_default();
    Ok(Status { name: c.topo.name.clone(), mode: c.mode(), nodes: rows, vips: vip_tables, vantage, dns })
}

fn print_status(s: &Status) {
    println!("cluster {} ({:?})", s.name, s.mode);
    println!(
        "{:<7} {:<8} {:<9} {:>5} {:>8} {:>8} {:<6} VIPs",
        "REGION", "NODE", "ROLE", "TERM", "APPLIED", "SERVING", "HEALTH"
    );
    for n in &s.nodes {
        let dash = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        println!(
            "{:<7} {:<8} {:<9} {:>5} {:>8} {:>8} {:<6} {}",
            n.region,
            n.node,
            if n.running { n.role.as_deref().unwrap_or("?") } else { "stopped" },
            dash(n.term),
            dash(n.config_version),
            dash(n.serving_version),
            if n.ready { "ready" } else { "down" },
            if n.vips.is_empty() { "-".into() } else { n.vips.join(" ") },
        );
    }
    let list = |r: &Result<Vec<String>, String>| match r {
        Ok(v) if v.is_empty() => "-".to_string(),
        Ok(v) => v.join(", "),
        Err(e) => format!("error: {e}"),
    };
    for d in &s.dns {
        println!(
            "DNS {:<8} healthy regions: {:<10} answers {}: {}",
            d.gslb,
            list(&d.served),
            s.vantage,
            list(&d.answers)
        );
    }
}

fn print_endpoints(c: &Cluster) {
    let t = &c.topo;
    let dns = c.dns_servers();
    let fqdn = t.fqdn();
    println!();
    println!("cluster {} is up: {} regions, {} balancers", t.name, t.regions.len(), dns.len());
    for r in &t.regions {
        let vips: Vec<String> = c.render().service_addresses(r).iter().map(|v| v.to_string()).collect();
        println!("  region {:<4} service addresses {}", r.name, vips.join(" "));
    }
    let port = c.mode().dns_port();
    let ns_prefix = |client: &str| match c.ns(client) {
        Some(ns) => format!("ip netns exec {ns} "),
        None => String::new(),
    };
    let client = c.hosts(Role::Client).next().map(|p| p.label.clone()).unwrap_or_default();
    let px = ns_prefix(&client);
    println!();
    println!("Try (from client {client}):");
    for s in &dns {
        println!("  {px}dig +short @{} -p {port} {fqdn}", s.ip());
    }
    if c.mode() == Mode::Netns {
        println!(
            "  {px}curl -s -D - -o /dev/null http://{}:8080/hello      # resolved through the balancers",
            fqdn.trim_end_matches('.')
        );
    } else {
        println!("  curl -s http://{}:8080/hello -D - -o /dev/null", c.ip(&format!("{}-n1", t.regions[0].name)));
    }
    println!("  meridian cluster status --topology <file>      # roles, VIP owners, DNS view (--watch)");
    println!(
        "  {px}env MERIDIAN_ADMIN_TOKEN={} meridian ctl --config {}/ctl.toml status --all-regions   # admin APIs over HTTPS",
        c.state.token,
        c.dir.display()
    );
    println!("  meridian chaos run chaos/node-kill.toml          # a failover drill against this cluster");
    println!("  meridian cluster down                            # remove everything");
    if c.mode() == Mode::Loopback {
        println!();
        println!("Note: not root, so this cluster runs on loopback addresses: VIPs are not moved");
        println!("(the `none` backend), DNS answers name the nodes themselves, DNS listens on");
        println!("port {port}, and every client shares one source address (no geo steering).");
    }
    println!();
    println!("logs and files: {}", c.dir.display());
}
