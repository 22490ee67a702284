//! `meridian chaos run DRILL`: inject one real fault into a running (or
//! freshly started) cluster while clients resolve the service through the
//! balancers and send requests to what they get; heal it; measure what the
//! clients saw; check the drill's bounds; write a JSON and an HTML report.

pub mod drill;
pub mod identity;
pub mod observe;
pub mod report;

use meridian_core::admin::HistoryView;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cluster::topology::{Role, HTTP_PORT};
use crate::cluster::{self, Cluster, Mode};
use crate::netns;
use drill::{Drill, Fault};

#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    #[command(subcommand)]
    pub command: ChaosCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ChaosCommand {
    /// Run one drill; exits non-zero when a bound is broken.
    Run {
        /// The drill file (`chaos/*.toml`).
        drill: PathBuf,
        #[arg(long, default_value = "cluster/local.toml")]
        topology: PathBuf,
        /// Overrides the topology's name.
        #[arg(long)]
        name: Option<String>,
        /// Shorter warm-up, fault and recovery (what `make test` runs).
        #[arg(long)]
        short: bool,
        /// Where reports go.
        #[arg(long, default_value = "target/drills")]
        out: PathBuf,
        /// Leave a cluster this run started up afterwards.
        #[arg(long)]
        keep: bool,
    },
}

pub fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let ChaosCommand::Run { drill, topology, name, short, out, keep } = args.command;
    let mut d = Drill::load(&drill)
        .map_err(|e| {
            anyhow::anyhow!("{}:\n{}", drill.display(), e.iter().map(|e| format!("  {e}\n")).collect::<String>())
        })?
        .into_inner();
    if short {
        d.timing = d.timing.short();
    }
    let topo = cluster::load_topology(&topology, name.as_deref())?;
    if let Some(r) = d.fault.region() {
        if topo.region(r).is_none() {
            bail!("{}: fault.region: no region \"{r}\" in {}", drill.display(), topology.display());
        }
    }
    if let Fault::GslbDown { gslb } = &d.fault {
        if !topo.gslbs.iter().any(|g| &g.name == gslb) {
            bail!("{}: fault.gslb: no balancer \"{gslb}\" in {}", drill.display(), topology.display());
        }
    }
    let (mut c, started) = match Cluster::attach(topo.clone())? {
        Some(c) if c.state.pids.values().all(|p| cluster::alive(*p)) => {
            println!("attached to cluster {}", c.topo.name);
            (c, false)
        }
        _ => (cluster::up(topo, false)?, true),
    };
    let result = execute(&mut c, &d);
    if started && !keep {
        let _ = cluster::down(&c.topo);
    }
    let report = result?;
    std::fs::create_dir_all(&out)?;
    let json_path = out.join(format!("{}.json", d.name));
    let html_path = out.join(format!("{}.html", d.name));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(&html_path, report::html(&report))?;
    println!("{}", report::summary(&report));
    println!("reports: {} {}", json_path.display(), html_path.display());
    Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Who owns the region's first VIP, and who leads it.
fn roles(c: &Cluster, region: &str) -> anyhow::Result<(Option<String>, Option<String>)> {
    let s = cluster::status(c)?;
    let first_vip = c.topo.region(region).map(|r| c.topo.vip(r, 1).to_string());
    let owner = s.vips.get(region).and_then(|t| first_vip.and_then(|v| t.get(&v).cloned().flatten()));
    let leader =
        s.nodes.iter().find(|n| n.region == region && n.role.as_deref() == Some("Leader")).map(|n| n.node.clone());
    Ok((owner, leader))
}

/// The measuring threads of a drill, running until its end.
struct Load {
    clients: Vec<std::thread::JoinHandle<anyhow::Result<observe::ClientOutcome>>>,
    vips: Option<std::thread::JoinHandle<anyhow::Result<observe::VipSamples>>>,
    writer: Option<std::thread::JoinHandle<anyhow::Result<anyhow::Result<observe::Writes>>>>,
}

/// What heal must undo.
#[derive(Default)]
struct Damage {
    restart: Vec<String>,
    partitioned: Option<String>,
    crashed: Vec<String>,
    /// Frozen processes, thawed at heal.
    frozen: Vec<String>,
    /// The router's neighbour flusher, stopped at heal.
    flusher: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

fn execute(c: &mut Cluster, d: &Drill) -> anyhow::Result<report::Report> {
    cluster::wait_healthy(c, Duration::from_secs(30)).context("the cluster is not healthy before the drill")?;
    let region = d.fault.region().map(str::to_string);
    let (owner, leader) = match &region {
        Some(r) => roles(c, r)?,
        None => (None, None),
    };
    let credentials = if d.load.auth { identity::setup(c)? } else { Vec::new() };
    if d.load.auth {
        // Every node serves the route and the keys before load starts.
        cluster::wait_healthy(c, Duration::from_secs(30)).context("the cluster after the drill's credentials")?;
    }
    let t = d.timing;
    let start = Instant::now();
    let until = start + t.total();
    let mut events: Vec<(u64, String)> = vec![(0, "load starts".into())];
    let load = start_load(c, d, region.as_deref(), &credentials, start, until)?;

    std::thread::sleep(t.warmup.saturating_sub(start.elapsed()));
    let fault_at_ms = start.elapsed().as_millis() as u64;
    let (damage, what) = inject(c, &d.fault, owner, leader)?;
    events.push((fault_at_ms, what));
    std::thread::sleep((t.warmup + t.fault).saturating_sub(start.elapsed()));
    let heal_at_ms = start.elapsed().as_millis() as u64;
    for e in heal(c, damage)? {
        events.push((heal_at_ms, e));
    }
    std::thread::sleep(t.total().saturating_sub(start.elapsed()));
    let end_ms = start.elapsed().as_millis() as u64;
    events.push((end_ms, "load stops".into()));

    let mut inputs = collect(c, load, region.as_deref())?;
    inputs.fault_at_ms = fault_at_ms;
    inputs.heal_at_ms = heal_at_ms;
    inputs.end_ms = end_ms;
    let vip_examples = inputs.vips.as_ref().map(|v| v.examples.clone()).unwrap_or_default();
    let (figures, timeline, sample_errors) = report::analyse(d, inputs);
    let checks = report::check(&d.bounds, &figures);
    // A bound on what was not measured here (no namespaces) is reported, not passed.
    let passed = checks.iter().all(|ch| ch.ok);
    Ok(report::Report {
        drill: d.name.clone(),
        description: d.description.clone(),
        cluster: c.topo.name.clone(),
        mode: format!("{:?}", c.mode()),
        events,
        fault_at_ms,
        heal_at_ms,
        end_ms,
        figures,
        checks,
        passed,
        timeline,
        vip_examples,
        sample_errors,
    })
}

/// The gateway nodes of `region` (none without a region).
fn region_nodes(c: &Cluster, region: Option<&str>) -> Vec<String> {
    region
        .map(|r| c.hosts(Role::Node).filter(|p| p.region.as_deref() == Some(r)).map(|p| p.label.clone()).collect())
        .unwrap_or_default()
}

/// Clients in every client namespace, VIP sampling on the fault's region's
/// nodes (namespaces only), and config writes when the drill asks for them.
fn start_load(
    c: &Cluster,
    d: &Drill,
    region: Option<&str>,
    credentials: &identity::Credentials,
    start: Instant,
    until: Instant,
) -> anyhow::Result<Load> {
    let nameservers: Vec<(String, std::net::SocketAddr)> =
        c.hosts(Role::Gslb).map(|g| g.label.clone()).zip(c.dns_servers()).collect();
    let clients = c
        .hosts(Role::Client)
        .map(|p| {
            let plan = observe::ClientPlan {
                name: p.label.clone(),
                ns: c.ns(&p.label),
                nameservers: nameservers.clone(),
                fqdn: c.topo.fqdn(),
                http_port: HTTP_PORT,
                path: d.load.path.clone(),
                headers: credentials.clone(),
                interval: d.load.interval,
                timeout: d.load.timeout,
                start,
                until,
            };
            std::thread::spawn(move || cluster::in_namespace(plan.ns.clone(), move || observe::client(plan)))
        })
        .collect();
    let vips = match (region, c.mode()) {
        (Some(r), Mode::Netns) => {
            let spec = c.topo.region(r).cloned().context("region")?;
            let nodes: Vec<(String, String)> =
                (1..=spec.nodes).map(|i| format!("{r}-n{i}")).filter_map(|l| c.ns(&l).map(|ns| (l, ns))).collect();
            let addrs = (1..=spec.nodes).map(|i| c.topo.vip(&spec, i)).collect();
            Some(observe::sample_vips(nodes, addrs, start, until))
        }
        _ => None,
    };
    let writer = match (region, d.load.writes) {
        (Some(_), true) => {
            let admins: Vec<String> = region_nodes(c, region).iter().map(|n| c.admin_url(n, "")).collect();
            let admin = c.admin();
            let first = admins.first().cloned().context("region without nodes")?;
            let reader = admin.clone();
            let document = c
                .from_vantage(move || async move { reader.json(&format!("{first}/config")).await })?
                .context("reading the region's document")?
                .to_string();
            let every = d.load.write_interval;
            let ns = c.vantage();
            Some(std::thread::spawn(move || {
                cluster::in_namespace(ns, move || observe::write_loop(admins, admin, document, every, start, until))
            }))
        }
        _ => None,
    };
    Ok(Load { clients, vips, writer })
}

/// The fault, and a line saying what it did.
fn inject(
    c: &mut Cluster,
    fault: &Fault,
    owner: Option<String>,
    leader: Option<String>,
) -> anyhow::Result<(Damage, String)> {
    let mut damage = Damage::default();
    let what = match fault {
        Fault::NodeKill { .. } => {
            let n = owner.context("the region's first VIP has no owner")?;
            crash(c, &n)?;
            damage.crashed.push(n.clone());
            format!("{n} crashes: kill -9, link down (owner of the region's first VIP)")
        }
        Fault::ProcessKill { .. } => {
            let n = owner.context("the region's first VIP has no owner")?;
            let router = c.ns("router").context("process-kill needs network namespaces (root)")?;
            c.stop(&n, true)?;
            damage.restart.push(n.clone());
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let flusher = std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let _ = netns::run(&["ip", "-n", &router, "neigh", "flush", "all"]);
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            damage.flusher = Some((stop, flusher));
            format!("{n}'s gateway process killed (kill -9; host and link up; the router flushes its neighbours every second)")
        }
        Fault::ProcessHang { .. } => {
            let n = owner.context("the region's first VIP has no owner")?;
            c.freeze(&n, true)?;
            damage.frozen.push(n.clone());
            format!("{n}'s gateway process hangs (SIGSTOP; host and link up)")
        }
        Fault::LeaderKill { .. } => {
            let n = leader.context("the region has no leader")?;
            crash(c, &n)?;
            damage.crashed.push(n.clone());
            format!("{n} crashes: kill -9, link down (Raft leader)")
        }
        Fault::NodePartition { region: r } => {
            let n = owner.context("the region's first VIP has no owner")?;
            if c.mode() != Mode::Netns {
                bail!("node-partition needs network namespaces (root)");
            }
            let peers: Vec<std::net::Ipv4Addr> =
                region_nodes(c, Some(r)).iter().filter(|l| **l != n).map(|l| c.ip(l)).collect();
            let ns = c.ns(&n).context("namespace")?;
            netns::cut_off(&ns, &peers)?;
            damage.partitioned = Some(ns);
            format!("{n} cut off from the other nodes of {r} (clients still reach it)")
        }
        Fault::RegionDown { region: r } => {
            for n in region_nodes(c, Some(r)) {
                crash(c, &n)?;
                damage.crashed.push(n);
            }
            format!("every gateway host of {r} crashes: kill -9, link down")
        }
        Fault::RedisDown { region: r } => {
            let n = format!("{r}-redis");
            c.stop(&n, true)?;
            damage.restart.push(n.clone());
            format!("kill -9 {n}")
        }
        Fault::GslbDown { gslb } => {
            c.stop(gslb, true)?;
            damage.restart.push(gslb.clone());
            format!("kill -9 balancer {gslb}")
        }
    };
    Ok((damage, what))
}

/// Undo the fault; a line for each thing done.
fn heal(c: &mut Cluster, damage: Damage) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    if let Some((stop, flusher)) = damage.flusher {
        stop.store(true, Ordering::Relaxed);
        let _ = flusher.join();
        done.push("the router keeps its neighbours again".into());
    }
    for n in &damage.frozen {
        c.freeze(n, false)?;
        done.push(format!("{n} thawed (SIGCONT)"));
    }
    if let Some(ns) = &damage.partitioned {
        netns::reconnect(ns)?;
        done.push("partition healed".into());
    }
    for n in &damage.restart {
        c.start(n)?;
        done.push(format!("{n} restarted"));
    }
    for n in &damage.crashed {
        reboot(c, n)?;
        done.push(format!("{n} rebooted: started, link up once its old addresses are cleared"));
    }
    Ok(done)
}

/// Join the measuring threads: what they saw, as the report's inputs (times
/// are the caller's to fill). A measuring task that died leaves its samples
/// out and is listed: the drill fails.
fn collect(c: &Cluster, load: Load, region: Option<&str>) -> anyhow::Result<report::Inputs> {
    let mut requests = Vec::new();
    let mut dns = Vec::new();
    let mut failed_tasks = Vec::new();
    for h in load.clients {
        match joined(h, "client") {
            Ok(o) => {
                requests.extend(o.requests);
                dns.extend(o.dns);
                failed_tasks.extend(o.failed_tasks);
            }
            Err(e) => failed_tasks.push(e),
        }
    }
    let vips = load.vips.and_then(|h| joined(h, "VIP sampler").map_err(|e| failed_tasks.push(e)).ok());
    let writes = load.writer.and_then(|h| {
        joined(h, "writer").and_then(|w| w.map_err(|e| format!("writer: {e:#}"))).map_err(|e| failed_tasks.push(e)).ok()
    });
    let history = match (&writes, region) {
        (Some(_), Some(_)) => region_history(c, &region_nodes(c, region))?,
        _ => None,
    };
    let addresses: Vec<(std::net::Ipv4Addr, String)> = c
        .topo
        .regions
        .iter()
        .flat_map(|r| c.render().service_addresses(r).into_iter().map(|a| (a, r.name.clone())).collect::<Vec<_>>())
        .collect();
    Ok(report::Inputs {
        requests,
        dns,
        vips,
        writes,
        history,
        fault_at_ms: 0,
        heal_at_ms: 0,
        end_ms: 0,
        region_of: Box::new(move |ip| addresses.iter().find(|(a, _)| *a == ip).map(|(_, r)| r.clone())),
        fault_region: region.map(str::to_string),
        failed_tasks,
    })
}

/// A measuring thread's result, or why there is none.
fn joined<T>(h: std::thread::JoinHandle<anyhow::Result<T>>, what: &str) -> Result<T, String> {
    match h.join() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e:#}")),
        Err(_) => Err(format!("{what}: thread panicked")),
    }
}

/// The (version, digest) revisions in the region's history, from the most
/// advanced node, once the nodes agree (or after 10 s).
fn region_history(c: &Cluster, nodes: &[String]) -> anyhow::Result<Option<Vec<(u64, String)>>> {
    let urls: Vec<String> = nodes.iter().map(|n| c.admin_url(n, "/config/history")).collect();
    let admin = c.admin();
    c.from_vantage(move || async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut best: Option<Vec<(u64, String)>> = None;
            let mut tops = Vec::new();
            for u in &urls {
                if let Some(h) = cluster::typed::<HistoryView>(admin.json(u).await) {
                    let revisions: Vec<(u64, String)> =
                        h.revisions.into_iter().map(|r| (r.version, r.digest)).collect();
                    let top = revisions.last().map_or(0, |r| r.0);
                    tops.push(top);
                    if best.as_ref().is_none_or(|b| b.last().map_or(0, |r| r.0) < top) {
                        best = Some(revisions);
                    }
                }
            }
            let agreed = tops.len() == urls.len() && tops.windows(2).all(|w| w[0] == w[1]);
            if agreed || Instant::now() > deadline {
                return best;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// A host crash: the host leaves the network and its gateway dies (a killed
/// process alone would leave its addresses configured and answering ARP).
fn crash(c: &mut Cluster, node: &str) -> anyhow::Result<()> {
    if let Some(ns) = c.ns(node) {
        link(&ns, "down")?;
    }
    c.stop(node, true)
}

fn link(ns: &str, state: &str) -> anyhow::Result<()> {
    netns::run(&["ip", "-n", ns, "link", "set", "eth0", state])?;
    Ok(())
}

/// Bring a crashed node back as a rebooted host would: its gateway starts
/// (clearing VIPs left from before the crash) while the link is still down;
/// the link comes up once no VIP is left on it.
fn reboot(c: &mut Cluster, node: &str) -> anyhow::Result<()> {
    c.start(node)?;
    let Some(ns) = c.ns(node) else { return Ok(()) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let out = netns::run(&["ip", "-n", &ns, "-o", "-4", "addr", "show", "dev", "eth0"])?;
        if String::from_utf8_lossy(&out.stdout).lines().count() <= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    link(&ns, "up")?;
    // The default route went with the link.
    if let Some(r) = c.host(node).and_then(|p| p.region.as_deref()).and_then(|r| c.topo.region(r)) {
        netns::run(&["ip", "-n", &ns, "route", "replace", "default", "via", &c.topo.router_leg(r).to_string()])?;
    }
    Ok(())
}
