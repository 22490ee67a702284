//! What a drill watches while the fault runs: clients that resolve the
//! service through the balancers (honouring TTL, through hickory's resolver
//! as a real client would) and connect to what they get; direct DNS samples
//! of every balancer; VIP presence on every node; config writes.
//! Every loop stops by itself at its deadline.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster::resolve_once;

/// One client request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub client: String,
    /// Since the start of the drill.
    pub at_ms: u64,
    pub ok: bool,
    /// Region of the backend that answered.
    pub region: Option<String>,
    /// The name could not be resolved (no request was sent).
    pub resolve_failed: bool,
    pub error: Option<String>,
}

/// One direct query of one balancer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsSample {
    pub gslb: String,
    pub at_ms: u64,
    /// Addresses answered, or why not.
    pub answer: Result<Vec<Ipv4Addr>, String>,
}

/// What one client saw. A task of its own that died (a panic) is listed in
/// `failed_tasks`: its samples are missing, so the drill cannot pass.
#[derive(Debug, Default)]
pub struct ClientOutcome {
    pub requests: Vec<Request>,
    pub dns: Vec<DnsSample>,
    pub failed_tasks: Vec<String>,
}

pub struct ClientPlan {
    pub name: String,
    pub ns: Option<String>,
    pub nameservers: Vec<(String, SocketAddr)>,
    pub fqdn: String,
    pub http_port: u16,
    pub path: String,
    /// Headers requests take turns with (credentials); none when empty.
    pub headers: Vec<(String, String)>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start: Instant,
    pub until: Instant,
}

fn since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// A client: resolve (from the resolver's cache while the TTL lasts), pick
/// the next answered address, send one request on a new connection.
pub async fn client(plan: ClientPlan) -> ClientOutcome {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    let servers: Vec<NameServerConfig> = plan
        .nameservers
        .iter()
        .map(|(_, s)| {
            let mut ns = NameServerConfig::udp(s.ip());
            for c in &mut ns.connections {
                c.port = s.port();
            }
            ns
        })
        .collect();
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 2;
    let resolver = hickory_resolver::TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build();
    let sampler = tokio::spawn(sample_dns(plan.nameservers.clone(), plan.fqdn.clone(), plan.start, plan.until));
    let resolver = match resolver {
        Ok(r) => r,
        Err(e) => {
            let at_ms = since(plan.start);
            let failed = Request {
                client: plan.name.clone(),
                at_ms,
                ok: false,
                region: None,
                resolve_failed: true,
                error: Some(e.to_string()),
            };
            let mut out = ClientOutcome { requests: vec![failed], ..Default::default() };
            match sampler.await {
                Ok(dns) => out.dns = dns,
                Err(e) => out.failed_tasks.push(format!("{}: DNS sampler: {e}", plan.name)),
            }
            return out;
        }
    };
    // Requests start on a fixed schedule, whether earlier ones have
    // finished or not, so a stalled address does not hide later ones.
    let mut tick = tokio::time::interval(plan.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::new();
    let mut next = 0usize;
    let plan = std::sync::Arc::new(plan);
    while Instant::now() < plan.until {
        tick.tick().await;
        next = next.wrapping_add(1);
        let (plan, resolver) = (plan.clone(), resolver.clone());
        tasks.push(tokio::spawn(async move { attempt(&plan, &resolver, next).await }));
    }
    let mut out = ClientOutcome { requests: Vec::with_capacity(tasks.len()), ..Default::default() };
    for t in tasks {
        match t.await {
            Ok(r) => out.requests.push(r),
            Err(e) => out.failed_tasks.push(format!("{}: request task: {e}", plan.name)),
        }
    }
    match sampler.await {
        Ok(dns) => out.dns = dns,
        Err(e) => out.failed_tasks.push(format!("{}: DNS sampler: {e}", plan.name)),
    }
    out
}

async fn attempt(plan: &ClientPlan, resolver: &hickory_resolver::TokioResolver, n: usize) -> Request {
    let at_ms = since(plan.start);
    let failed = |resolve_failed: bool, error: String| Request {
        client: plan.name.clone(),
        at_ms,
        ok: false,
        region: None,
        resolve_failed,
        error: Some(error),
    };
    let lookup = match resolver.lookup_ip(plan.fqdn.as_str()).await {
        Ok(l) => l,
        Err(e) => return failed(true, e.to_string()),
    };
    let addrs: Vec<IpAddr> = lookup.iter().collect();
    let Some(ip) = addrs.get(n % addrs.len().max(1)) else { return failed(true, "empty answer".into()) };
    let addr = SocketAddr::new(*ip, plan.http_port);
    let header = plan.headers.get(n % plan.headers.len().max(1)).map(|(k, v)| (k.as_str(), v.as_str()));
    match tokio::time::timeout(plan.timeout, one_request_with(addr, &plan.path, header)).await {
        Ok(Ok(backend)) => Request {
            client: plan.name.clone(),
            at_ms,
            ok: true,
            region: backend.split('-').next().map(str::to_string),
            resolve_failed: false,
            error: None,
        },
        Ok(Err(e)) => failed(false, format!("{addr}: {e}")),
        Err(_) => failed(false, format!("{addr}: timeout")),
    }
}

async fn sample_dns(
    servers: Vec<(String, SocketAddr)>,
    fqdn: String,
    start: Instant,
    until: Instant,
) -> Vec<DnsSample> {
    let mut out = Vec::new();
    while Instant::now() < until {
        for (gslb, server) in &servers {
            let answer = resolve_once(*server, &fqdn, Duration::from_millis(300)).await;
            out.push(DnsSample { gslb: gslb.clone(), at_ms: since(start), answer });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

/// GET `path` on a new connection; the answering backend's name.
pub async fn one_request(addr: SocketAddr, path: &str) -> Result<String, String> {
    one_request_with(addr, path, None).await
}

/// [`one_request`] with one more request header.
pub async fn one_request_with(addr: SocketAddr, path: &str, header: Option<(&str, &str)>) -> Result<String, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "api");
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let req = req.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    Ok(resp.headers().get("x-backend").and_then(|v| v.to_str().ok()).unwrap_or("").to_string())
}

/// VIP presence: every 10 ms, which nodes of each region hold each VIP.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VipSamples {
    pub rounds: u64,
    /// Rounds in which some VIP was on two nodes or more.
    pub double_owner: u64,
    /// (at_ms, vip, nodes) of the first double-owner rounds, for the report.
    pub examples: Vec<(u64, Ipv4Addr, Vec<String>)>,
    /// Rounds in which some VIP was on no node.
    pub unowned: u64,
}

/// Sample the addresses of every node namespace in `nodes` (label, ns) for
/// the `vips`, every 10 ms until `until`; a node whose `eth0` is down holds
/// nothing. Runs on its own thread.
pub fn sample_vips(
    nodes: Vec<(String, String)>,
    vips: Vec<Ipv4Addr>,
    start: Instant,
    until: Instant,
) -> std::thread::JoinHandle<anyhow::Result<VipSamples>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let home = std::fs::File::open("/proc/self/ns/net")?;
            let mut handles = Vec::new();
            for (label, ns) in &nodes {
                crate::netns::enter(ns)?;
                let (conn, handle, _) = rtnetlink::new_connection()?;
                tokio::spawn(conn);
                handles.push((label.clone(), handle));
            }
            nix::sched::setns(&home, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let mut s = VipSamples::default();
            while Instant::now() < until {
                let at = since(start);
                let mut holders: BTreeMap<Ipv4Addr, Vec<String>> = vips.iter().map(|v| (*v, Vec::new())).collect();
                for (label, handle) in &handles {
                    // A host whose link is down (crashed) answers for nothing.
                    let mut links = handle.link().get().match_name("eth0").execute();
                    let mut up = false;
                    while let Ok(Some(l)) = futures_util::TryStreamExt::try_next(&mut links).await {
                        up |= l.header.flags.contains(netlink_packet_route::link::LinkFlags::Up);
                    }
                    if !up {
                        continue;
                    }
                    let mut addrs = handle.address().get().execute();
                    while let Ok(Some(msg)) = futures_util::TryStreamExt::try_next(&mut addrs).await {
                        for a in &msg.attributes {
                            if let netlink_packet_route::address::AddressAttribute::Address(IpAddr::V4(x)) = a {
                                if let Some(h) = holders.get_mut(x) {
                                    h.push(label.clone());
                                }
                            }
                        }
                    }
                }
                s.rounds += 1;
                if let Some((vip, nodes)) = holders.iter().find(|(_, h)| h.len() > 1) {
                    s.double_owner += 1;
                    if s.examples.len() < 10 {
                        s.examples.push((at, *vip, nodes.clone()));
                    }
                }
                if holders.values().any(Vec::is_empty) {
                    s.unowned += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(s)
        })
    })
}

/// One acknowledged config write: the version the region gave it and the
/// digest of the document as the region stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckedWrite {
    pub at_ms: u64,
    pub version: u64,
    pub digest: String,
}

/// Acknowledged config writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Writes {
    pub acked: Vec<AckedWrite>,
    pub failed: u64,
}

/// The document of write `n`: `base` with one marker route of its own, so
/// every write has different content and a write lost and replaced by
/// another one at the same version shows in the digests.
fn numbered_document(base: &serde_json::Value, n: usize) -> Option<(String, String)> {
    let mut doc = base.clone();
    let upstream = doc["upstreams"].as_object()?.keys().next()?.clone();
    let routes = doc.get_mut("routes")?.as_array_mut()?;
    routes.retain(|r| !r["name"].as_str().is_some_and(|n| n.starts_with("drill-write-")));
    routes.push(serde_json::json!({
        "name": format!("drill-write-{n}"),
        "path_exact": format!("/drill-write/{n}"),
        "upstream": upstream,
    }));
    let text = doc.to_string();
    // The region stores the document re-encoded after parsing: digest that.
    let parsed = meridian_core::config::parse_document(&text, meridian_core::config::Format::Json)
        .ok()?
        .into_inner()
        .into_document();
    let stored = serde_json::to_string(&parsed).ok()?;
    Some((text, meridian_region::raft::document_digest(&stored)))
}

/// PUT a new document to the running nodes in turn, every `every`.
pub async fn write_loop(
    admins: Vec<String>,
    admin: crate::cluster::AdminAccess,
    document: String,
    every: Duration,
    start: Instant,
    until: Instant,
) -> anyhow::Result<Writes> {
    let base: serde_json::Value = serde_json::from_str(&document)?;
    let mut w = Writes::default();
    let mut i = 0usize;
    while Instant::now() < until {
        let began = Instant::now();
        i += 1;
        let (text, digest) =
            numbered_document(&base, i).ok_or_else(|| anyhow::anyhow!("the region's document cannot be varied"))?;
        let url = format!("{}/config", admins[i % admins.len()]);
        let r = admin.call("PUT", &url, Some(("application/json", text)), Duration::from_secs(3)).await;
        match r {
            Ok((200, body)) => match serde_json::from_slice::<meridian_core::admin::WriteAck>(&body) {
                Ok(ack) => w.acked.push(AckedWrite { at_ms: since(start), version: ack.version, digest }),
                Err(_) => w.failed += 1,
            },
            _ => w.failed += 1,
        }
        tokio::time::sleep(every.saturating_sub(began.elapsed())).await;
    }
    Ok(w)
}
