//! VIP takeover time in network namespaces (root): kill -9 the owner of a VIP
//! (or the Raft leader while it owns one) and time until a client in its own
//! namespace is served by another node. Each kill is followed by a restart and
//! the VIP's return to its preferred owner.
//!
//! A kill after which no other node served the VIP within the client's
//! 2.5 s window counts as missed: it is reported, and it is the slowest
//! kill for the percentiles (they are taken over every kill).
//!
//! `cargo bench --bench vip -- [owner_kills] [leader_kills]` (defaults 20 and 10).

#[path = "../tests/vip/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The client's window after a kill; a kill not taken over within it is missed.
const WINDOW: Duration = Duration::from_millis(2100);

/// Time from the kill to the first answer from another node; `None`: missed.
fn takeover(v: &mut lab::VipLab, node: usize) -> Option<Duration> {
    let vip = format!("10.77.0.10{}", node + 1);
    let name = format!("n{}", node + 1);
    v.wait_owner(&vip, &name, Duration::from_secs(30));
    // A short request timeout: the dead host's address is gone (its guard),
    // so SYNs sent its way are dropped, not refused; the client moves on
    // after 50 ms, and the measure keeps that resolution.
    let load = v.client_load(&vip, Duration::from_millis(5), Duration::from_millis(50), Duration::from_millis(2500));
    std::thread::sleep(Duration::from_millis(400));
    let killed = Instant::now();
    v.kill_node(node, true);
    let samples = load.join().unwrap_or_default();
    // Restarted whatever happened, so the next kill starts from a whole region.
    v.start_node(node);
    let at = samples.iter().find(|o| o.at >= killed && o.ok && o.backend != name)?.at;
    Some(at.duration_since(killed)).filter(|t| *t <= WINDOW)
}

fn report(what: &str, kills: &[Option<Duration>]) {
    if kills.is_empty() {
        return;
    }
    let missed = kills.iter().filter(|k| k.is_none()).count();
    // A missed kill is slower than any taken over.
    let mut all: Vec<Duration> = kills.iter().map(|k| k.unwrap_or(Duration::MAX)).collect();
    let ms = |d: Duration| if d == Duration::MAX { "missed".to_string() } else { format!("{} ms", d.as_millis()) };
    let (p50, p99) = (pct(&mut all, 0.5), pct(&mut all, 0.99));
    println!(
        "{what}: {}  missed {missed}  takeover p50 {} p99 {} max {}",
        kills.len(),
        ms(p50),
        ms(p99),
        ms(*all.iter().max().unwrap_or(&Duration::ZERO))
    );
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
        owners.push(takeover(&mut v, node));
    }
    let mut leaders = Vec::new();
    for _ in 0..leader_kills {
        let leader = v.leader();
        leaders.push(takeover(&mut v, leader));
    }
    report("owner kills", &owners);
    report("leader kills", &leaders);
}
