//! A three-node region with netlink VIPs inside a namespace lab (shared by
//! the VIP tests and the VIP benchmark, which each use part of it).
#![allow(dead_code)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use meridian_lab::chaos::observe::one_request;
use meridian_lab::netns::{Host, Lab};

const TOKEN: &str = "lab-admin-token-0123456789";
const BIN: &str = env!("CARGO_BIN_EXE_meridian");

pub struct VipLab {
    pub lab: Lab,
    dir: tempfile::TempDir,
    nodes: Vec<Host>,
    client: Host,
    gateways: Vec<Option<u32>>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub at: Instant,
    pub ok: bool,
    pub backend: String,
    pub took: Duration,
    /// Why it failed, for assertion messages.
    #[allow(dead_code)]
    pub error: Option<String>,
}

impl VipLab {
    /// `None` (and a note on stderr) when namespaces are not available here.
    pub fn start(name: &str) -> Option<VipLab> {
        if let Err(why) = meridian_lab::netns::available() {
            eprintln!("skipping {name}: {why}");
            return None;
        }
        let mut lab = Lab::new().expect("lab");
        let nodes: Vec<Host> =
            (1..=3).map(|i| lab.add_host(&format!("n{i}"), Ipv4Addr::new(10, 77, 0, i)).expect("host")).collect();
        let client = lab.add_host("client", Ipv4Addr::new(10, 77, 0, 200)).expect("client");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "lab-region-secret-0123456789").unwrap();
        let mut v = VipLab { lab, dir, nodes, client, gateways: vec![None, None, None] };
        for i in 0..3 {
            let host = v.nodes[i].clone();
            v.lab
                .spawn(&host, BIN, &["backend", "--listen", "127.0.0.1:9001", "--name", &format!("n{}", i + 1)], None)
                .expect("backend");
            v.start_node(i);
        }
        Some(v)
    }

    fn config(&self, i: usize) -> String {
        let id = i + 1;
        let dir = self.dir.path().display();
        format!(
            r#"
[node]
name = "n{id}"
region = "lab"
[[listeners]]
name = "http"
address = "0.0.0.0:8080"
[admin]
address = "0.0.0.0:9901"
token = "{TOKEN}"
[telemetry]
access_log = false
log_level = "info"
[cluster]
node_id = {id}
listen = "10.77.0.{id}:7100"
data_dir = "{dir}/n{id}"
bootstrap = {boot}
members = [{{ id = 1, address = "10.77.0.1:7100" }}, {{ id = 2, address = "10.77.0.2:7100" }}, {{ id = 3, address = "10.77.0.3:7100" }}]
secret_file = "{dir}/secret"
{fast_raft}
[vip]
backend = "netlink"
interface = "eth0"
hold_down = "2s"
{fast}
[[vip.addresses]]
address = "10.77.0.101/24"
preferred = 1
[[vip.addresses]]
address = "10.77.0.102/24"
preferred = 2
[[vip.addresses]]
address = "10.77.0.103/24"
preferred = 3
[gateway.upstreams.local]
targets = [{{ address = "127.0.0.1:9001" }}]
[[gateway.routes]]
name = "all"
upstream = "local"
"#,
            boot = i == 0,
            // The fast profile of docs/operations.md, for the benchmark.
            fast = if std::env::var_os("MERIDIAN_LAB_FAST_VIPS").is_some() {
                "lease = \"300ms\"\nrenew_interval = \"75ms\"\nmargin = \"25ms\""
            } else {
                ""
            },
            fast_raft = if std::env::var_os("MERIDIAN_LAB_FAST_VIPS").is_some() {
                "[cluster.raft]\nheartbeat_interval = \"25ms\"\nelection_timeout_min = \"80ms\"\nelection_timeout_max = \"160ms\""
            } else {
                ""
            },
        )
    }

    pub fn start_node(&mut self, i: usize) {
        let path = self.dir.path().join(format!("n{}.toml", i + 1));
        std::fs::write(&path, self.config(i)).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{}.log", i + 1)))
            .unwrap();
        let host = self.nodes[i].clone();
        let pid =
            self.lab.spawn(&host, BIN, &["gateway", "--config", path.to_str().unwrap()], Some(log)).expect("gateway");
        self.gateways[i] = Some(pid);
    }

    /// The gateway process of node `i`.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.gateways[i]
    }

    pub fn kill_node(&mut self, i: usize, hard: bool) {
        if let Some(pid) = self.gateways[i].take() {
            self.lab.kill(pid, hard);
        }
    }

    pub fn partition_node(&self, i: usize) {
        let peers: Vec<Ipv4Addr> = self.nodes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, h)| h.ip).collect();
        self.lab.partition(&self.nodes[i], &peers).expect("partition");
    }

    pub fn heal_node(&self, i: usize) {
        self.lab.heal(&self.nodes[i]).expect("heal");
    }

    /// An admin API call from the client namespace.
    pub fn admin(&self, node: usize, method: &str, path: &str, body: &str) -> String {
        let url = format!("http://{}:9901{path}", self.nodes[node].ip);
        let auth = format!("Authorization: Bearer {TOKEN}");
        let mut args = vec!["curl", "-s", "-m", "3", "-X", method, "-H", &auth, "-H", "content-type: application/json"];
        if !body.is_empty() {
            args.extend_from_slice(&["-d", body]);
        }
        args.push(&url);
        self.lab.exec(&self.client, &args).map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            for i in 0..3 {
                if self.gateways[i].is_none() {
                    continue;
                }
                let v: serde_json::Value =
                    serde_json::from_str(&self.admin(i, "GET", "/cluster", "")).unwrap_or_default();
                if let Some(l) = v["leader"].as_u64() {
                    return l as usize - 1;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no leader");
    }

    /// Whether node `i`'s namespace has the address.
    pub fn holds(&self, i: usize, vip: &str) -> bool {
        self.lab
            .exec(&self.nodes[i], &["ip", "-o", "addr", "show", "dev", "eth0"])
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{vip}/")))
            .unwrap_or(false)
    }

    /// The VIP-related log lines of every node, for failure messages.
    pub fn vip_log(&self) -> String {
        (1..=3)
            .flat_map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("n{i}.log")))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("VIP") || l.contains("lease") || l.contains("leader"))
                    .map(|l| format!("n{i}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Wait until `vip` answers from the backend of `node` (as seen by the client).
    pub fn wait_owner(&self, vip: &str, node: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let url = format!("http://{vip}:8080/");
        while Instant::now() < deadline {
            if let Ok(o) = self.lab.exec(&self.client, &["curl", "-s", "-m", "1", "-D", "-", "-o", "/dev/null", &url]) {
                if String::from_utf8_lossy(&o.stdout).to_lowercase().contains(&format!("x-backend: {node}")) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let logs: String = (1..=3)
            .map(|i| std::fs::read_to_string(self.dir.path().join(format!("n{i}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n");
        let tail: String =
            logs.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        panic!("{vip} not served by {node} within {within:?}\n{tail}");
    }

    /// Requests to `vip` from the client namespace every `every`, each on a new
    /// connection with `timeout`, for `duration` (bounded).
    pub fn client_load(
        &self,
        vip: &str,
        every: Duration,
        timeout: Duration,
        duration: Duration,
    ) -> JoinHandle<Vec<Outcome>> {
        let addr: std::net::SocketAddr = format!("{vip}:8080").parse().unwrap();
        let h = self.lab.in_namespace(&self.client, move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut out = Vec::new();
                let end = Instant::now() + duration;
                while Instant::now() < end {
                    let at = Instant::now();
                    let r = tokio::time::timeout(timeout, one_request(addr, "/")).await;
                    let took = at.elapsed();
                    out.push(match r {
                        Ok(Ok(backend)) => Outcome { at, ok: true, backend, took, error: None },
                        Ok(Err(e)) => Outcome { at, ok: false, backend: String::new(), took, error: Some(e) },
                        Err(_) => {
                            Outcome { at, ok: false, backend: String::new(), took, error: Some("timeout".into()) }
                        }
                    });
                    tokio::time::sleep(every.saturating_sub(took)).await;
                }
                out
            })
        });
        std::thread::spawn(move || h.join().expect("client thread").expect("client namespace"))
    }

    /// Presence of `vip` on each node's eth0 every `every`, for `duration`.
    pub fn sample_addresses(
        &self,
        vip: &str,
        every: Duration,
        duration: Duration,
    ) -> Vec<JoinHandle<Vec<(Instant, bool)>>> {
        let ip: std::net::IpAddr = vip.parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        self.nodes
            .iter()
            .map(|host| {
                let stop = stop.clone();
                let h = self.lab.in_namespace(host, move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async move {
                        let (conn, handle, _) = rtnetlink::new_connection().unwrap();
                        tokio::spawn(conn);
                        let mut out = Vec::new();
                        let end = Instant::now() + duration;
                        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                            let at = Instant::now();
                            let mut present = false;
                            let mut addrs = handle.address().get().execute();
                            while let Ok(Some(msg)) = futures_util::TryStreamExt::try_next(&mut addrs).await {
                                for a in &msg.attributes {
                                    if let netlink_packet_route::address::AddressAttribute::Address(x) = a {
                                        present |= *x == ip;
                                    }
                                }
                            }
                            out.push((at, present));
                            tokio::time::sleep(every).await;
                        }
                        out
                    })
                });
                std::thread::spawn(move || h.join().expect("sampler").expect("namespace"))
            })
            .collect()
    }
}

impl Drop for VipLab {
    fn drop(&mut self) {
        let _ = std::io::stderr().flush();
        self.lab.cleanup();
    }
}
