//! Region group latency, measured on loopback with three in-process members:
//! config writes from proposal to applied on every member, and the time from
//! killing the leader to the next committed write.
//!
//! `cargo bench --bench raft -- [writes] [kills]` (defaults 300 and 15).

use std::time::{Duration, Instant};

use meridian_region::gateway::RunningGateway;
use meridian_region::raft::{Command, CommandResult};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

struct Region {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    nodes: Vec<Option<RunningGateway>>,
}

impl Region {
    fn config(&self, i: usize) -> String {
        let dir = self.dir.path().display();
        let members: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .map(|(j, p)| format!("{{ id = {}, address = \"127.0.0.1:{p}\" }}", j + 1))
            .collect();
        format!(
            "[node]\nname = \"n{id}\"\nregion = \"bench\"\n[[listeners]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n\
             [admin]\naddress = \"127.0.0.1:0\"\n[telemetry]\naccess_log = false\nlog_level = \"warn\"\n\
             [cluster]\nnode_id = {id}\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{dir}/n{id}\"\nbootstrap = {boot}\n\
             members = [{members}]\nsecret_file = \"{dir}/secret\"\n\
             [gateway.upstreams.u]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n[[gateway.routes]]\nname = \"r\"\nupstream = \"u\"\n",
            id = i + 1,
            port = self.ports[i],
            boot = i == 0,
            members = members.join(", "),
        )
    }

    async fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let path = self.dir.path().join(format!("n{}.toml", i + 1));
        std::fs::write(&path, self.config(i))?;
        let cfg = meridian_region::gateway::load_node_file(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.nodes[i] = Some(meridian_region::gateway::start(cfg).await?);
        Ok(())
    }

    fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.as_ref().and_then(|n| n.region.as_ref()).is_some_and(|r| r.leader() == Some(r.id)))
    }

    async fn wait_leader(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if Instant::now() > deadline {
                anyhow::bail!("no leader");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn all_applied(&self, version: u64) {
        for n in self.nodes.iter().flatten() {
            if let Some(r) = &n.region {
                let mut rx = r.applied();
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|a| a.config_version >= version)).await;
            }
        }
    }
}

fn doc(i: usize) -> String {
    format!(
        "{{\"upstreams\":{{\"u\":{{\"targets\":[{{\"address\":\"127.0.0.1:9\"}}]}}}},\"routes\":[{{\"name\":\"r{i}\",\"upstream\":\"u\"}}]}}"
    )
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn bench(writes: usize, kills: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("secret"), "bench-region-secret-0123456789")?;
    let mut r = Region { dir, ports: (0..3).map(|_| free_port()).collect(), nodes: vec![None, None, None] };
    for i in 0..3 {
        r.start(i).await?;
    }
    let leader = r.wait_leader().await?;
    r.all_applied(1).await;

    // 1. Writes: proposal → acknowledged (committed) → applied on every member.
    let mut ack = Vec::new();
    let mut everywhere = Vec::new();
    for i in 0..writes {
        let region =
            r.nodes[leader].as_ref().and_then(|n| n.region.clone()).ok_or_else(|| anyhow::anyhow!("no leader"))?;
        let t0 = Instant::now();
        let res = region.write(Command::PutConfig { expected_version: None, document: doc(i) }).await?;
        let CommandResult::ConfigApplied { version } = res else { anyhow::bail!("write refused: {res:?}") };
        ack.push(t0.elapsed());
        r.all_applied(version).await;
        everywhere.push(t0.elapsed());
    }
    println!(
        "config writes: {writes}  acknowledged p50 {:.2} ms p99 {:.2} ms  |  applied on all 3 members p50 {:.2} ms p99 {:.2} ms",
        pct(&mut ack, 0.5).as_secs_f64() * 1e3,
        pct(&mut ack, 0.99).as_secs_f64() * 1e3,
        pct(&mut everywhere, 0.5).as_secs_f64() * 1e3,
        pct(&mut everywhere, 0.99).as_secs_f64() * 1e3,
    );

    // 2. Leader kills: time from the kill to the next acknowledged write.
    let mut takeover = Vec::new();
    for k in 0..kills {
        let old = r.wait_leader().await?;
        let survivor = (old + 1) % 3;
        let region =
            r.nodes[survivor].as_ref().and_then(|n| n.region.clone()).ok_or_else(|| anyhow::anyhow!("no node"))?;
        let killed = r.nodes[old].take();
        let t0 = Instant::now();
        if let Some(n) = killed {
            n.shutdown().await;
        }
        loop {
            match region.write(Command::PutConfig { expected_version: None, document: doc(10_000 + k) }).await {
                Ok(CommandResult::ConfigApplied { .. }) => break,
                _ if t0.elapsed() > Duration::from_secs(20) => anyhow::bail!("no write after 20 s"),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        takeover.push(t0.elapsed());
        r.start(old).await?;
        let version = region.status().config_version;
        r.all_applied(version).await;
    }
    println!(
        "leader kills: {kills}  kill → next committed write p50 {:.0} ms p99 {:.0} ms (max {:.0} ms)",
        pct(&mut takeover, 0.5).as_secs_f64() * 1e3,
        pct(&mut takeover, 0.99).as_secs_f64() * 1e3,
        takeover.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    for n in r.nodes.into_iter().flatten() {
        n.shutdown().await;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let writes = args.first().and_then(|s| s.parse().ok()).unwrap_or(300);
    let kills = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(15);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(writes, kills))
}
