//! VIP takeover time in network namespaces (root): kill -9 the owner of a VIP
//! (or the Raft leader while it owns one) and time until a client in its own
//! namespace is served by another node. Each kill is followed by a restart and
//! the VIP's return to its preferred owner.
//!
//! `cargo bench --bench vip -- [owner_kills] [leader_kills]` (defaults 20 and 10).

#[path = "../tests/vip/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn takeover(v: &mut lab::VipLab, node: usize) -> Option<Duration> {
    let vip = format!("10.77.0.10{}", node + 1);
    let name = format!("n{}", node + 1);
    v.wait_owner(&vip, &name, Duration::from_secs(30));
    let load = v.client_load(&vip, Duration::from_millis(5), Duration::from_millis(300), Duration::from_millis(2500));
    std::thread::sleep(Duration::from_millis(400));
    let killed = Instant::now();
    v.kill_node(node, true);
    let samples = load.join().ok()?;
    let at = samples.iter().find(|o| o.at >= killed && o.ok && o.backend != name)?.at;
    v.start_node(node);
    Some(at.duration_since(killed))
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let owner_kills = args.first().copied().unwrap_or(20);
    let leader_kills = args.get(1).copied().unwrap_or(10);
    let Some(mut v) = lab::VipLab::start("vip-bench") else { return };
    let mut owners = Vec::new();
    for k in 0..owner_kills {
        let leader = v.leader();
        // A node that owns a VIP but does not lead.
        let node = (leader + 1 + k % 2) % 3;
        if let Some(t) = takeover(&mut v, node) {
            owners.push(t);
        }
    }
    let mut leaders = Vec::new();
    for _ in 0..leader_kills {
        let leader = v.leader();
        if let Some(t) = takeover(&mut v, leader) {
            leaders.push(t);
        }
    }
    if !owners.is_empty() {
        println!(
            "owner kills: {}  takeover p50 {} ms p99 {} ms max {} ms",
            owners.len(),
            pct(&mut owners, 0.5).as_millis(),
            pct(&mut owners, 0.99).as_millis(),
            owners.iter().max().map_or(0, |d| d.as_millis())
        );
    }
    if !leaders.is_empty() {
        println!(
            "leader kills: {}  takeover p50 {} ms p99 {} ms max {} ms",
            leaders.len(),
            pct(&mut leaders, 0.5).as_millis(),
            pct(&mut leaders, 0.99).as_millis(),
            leaders.iter().max().map_or(0, |d| d.as_millis())
        );
    }
}
