use std::time::{Duration, Instant};

use crate::harness::{doc, Region};
use crate::support::*;

const FAST: &str = "heartbeat_interval = \"50ms\"\nelection_timeout_min = \"150ms\"\nelection_timeout_max = \"300ms\"";

#[tokio::test]
async fn a_write_on_a_follower_lands_on_every_member() {
    let r = Region::start(3, FAST).await;
    r.converged(1).await;
    let leader = r.leader().await;
    let follower = (leader + 1) % 3;
    let resp = r.put(follower, &doc(r.backend.addr, "from-follower"), None).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["version"], 2);
    r.converged(2).await;
    for (_, n) in r.running() {
        // Every data plane serves the new document.
        let c = admin(n.admin_addr, "GET", "/config", "").await.json();
        assert_eq!(c["routes"][0]["name"], "from-follower");
        assert_eq!(get(n.http_addr(), "/").await.status, 200);
    }
    let cluster = admin(r.node(follower).admin_addr, "GET", "/cluster", "").await.json();
    assert_eq!(cluster["leader"], (leader + 1) as u64);
    assert_eq!(cluster["members"].as_array().unwrap().len(), 3);
    for m in cluster["members"].as_array().unwrap() {
        assert_eq!(m["reachable"], true);
        assert_eq!(m["status"]["config_version"], 2);
    }
    let m = metrics(r.node(leader).admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_raft_is_leader", &[]), 1.0);
    assert!(metric_value(&m, "meridian_raft_commit_index", &[]) >= 2.0);
    r.shutdown().await;
}

#[tokio::test]
async fn conflicts_and_invalid_documents_change_nothing() {
    let r = Region::start(3, FAST).await;
    r.converged(1).await;
    let resp = r.put(1, &doc(r.backend.addr, "cas"), Some(5)).await;
    assert_eq!(resp.status, 409, "{}", resp.text());
    assert_eq!(resp.json()["current_version"], 1);
    let bad = format!("{}\n[[routes]]\nname = \"x\"\nupstream = \"orders\"\n", doc(r.backend.addr, "ok"));
    let resp = r.put(2, &bad, None).await;
    assert_eq!(resp.status, 422);
    assert_eq!(resp.json()["errors"][0]["path"], "routes[1].upstream");
    let resp = r.put(0, &doc(r.backend.addr, "cas-ok"), Some(1)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    r.converged(2).await;
    r.shutdown().await;
}

#[tokio::test]
async fn a_new_leader_takes_over_and_writes_continue() {
    let mut r = Region::start(3, FAST).await;
    r.converged(1).await;
    let old = r.leader().await;
    r.stop_node(old).await;
    let started = Instant::now();
    let new = r.leader().await;
    assert_ne!(new, old);
    let other = (0..3).find(|i| *i != old && *i != new).unwrap();
    let resp = r.put(other, &doc(r.backend.addr, "after-failover"), None).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    eprintln!("leader {old} stopped; write committed through {new} after {:?}", started.elapsed());
    r.converged(2).await;
    r.shutdown().await;
}

#[tokio::test]
async fn a_restarted_member_catches_up_from_its_data_directory() {
    let mut r = Region::start(3, FAST).await;
    r.converged(1).await;
    let leader = r.leader().await;
    let follower = (leader + 1) % 3;
    r.stop_node(follower).await;
    for v in 0..5 {
        let resp = r.put(leader, &doc(r.backend.addr, &format!("while-down-{v}")), None).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    r.start_node(follower).await;
    r.converged(6).await;
    r.shutdown().await;
}

#[tokio::test]
async fn a_member_far_behind_catches_up_through_a_snapshot() {
    let tuning = format!("{FAST}\nsnapshot_every = 10\nkeep_logs = 0");
    let mut r = Region::start(3, &tuning).await;
    r.converged(1).await;
    let leader = r.leader().await;
    let follower = (leader + 1) % 3;
    r.stop_node(follower).await;
    for v in 0..40 {
        let resp = r.put(leader, &doc(r.backend.addr, &format!("many-{v}")), None).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // The leader has compacted its log past what the follower has.
    let status = r.node(leader).region.as_ref().unwrap().raft.metrics().borrow().clone();
    assert!(status.purged.map_or(0, |p| p.index) > 10, "leader purged its log: {:?}", status.purged);
    r.start_node(follower).await;
    r.converged(41).await;
    let m = r.node(follower).region.as_ref().unwrap().raft.metrics().borrow().clone();
    assert!(m.snapshot.is_some(), "the follower installed a snapshot");
    r.shutdown().await;
}

#[tokio::test]
async fn a_minority_cannot_commit() {
    let mut r = Region::start(3, FAST).await;
    r.converged(1).await;
    let leader = r.leader().await;
    let keep = (leader + 1) % 3;
    for i in 0..3 {
        if i != keep {
            r.stop_node(i).await;
        }
    }
    let started = Instant::now();
    let resp = r.put(keep, &doc(r.backend.addr, "alone"), None).await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.json()["reason"].as_str().is_some());
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    // It keeps serving what it had.
    assert_eq!(r.node(keep).gateway.version(), 1);
    assert_eq!(get(r.node(keep).http_addr(), "/").await.status, 200);
    r.shutdown().await;
}

/// The region's log decides what is applied; a member that cannot compile
/// the applied document (here: one from a newer version, with a field this
/// binary does not know) keeps serving the previous one and says so.
#[tokio::test]
async fn a_document_a_member_cannot_compile_is_applied_but_not_served() {
    use meridian_region::raft::{Command, CommandResult};
    let r = Region::start(3, FAST).await;
    r.converged(1).await;
    let newer = serde_json::json!({
        "upstreams": { "u": { "targets": [{ "address": r.backend.addr.to_string() }] } },
        "routes": [{ "name": "newer", "upstream": "u" }],
        "added_by_a_newer_version": true,
    })
    .to_string();
    let region = r.node(0).region.clone().expect("a region member");
    let written = region.write(Command::PutConfig { expected_version: None, document: newer }).await;
    assert_eq!(written.ok(), Some(CommandResult::ConfigApplied { version: 2 }));
    for (i, n) in r.running() {
        let split = eventually(Duration::from_secs(10), || async {
            let c = admin(n.admin_addr, "GET", "/cluster", "").await.json();
            c["node"]["config_version"] == 2 && c["node"]["serving_version"] == 1
        })
        .await;
        let c = admin(n.admin_addr, "GET", "/cluster", "").await.json();
        assert!(split, "member {i}: {c:#}");
        assert!(c["node"]["serving_error"].as_str().unwrap_or("").contains("added_by_a_newer_version"), "{c:#}");
        // Still serving version 1, and counted.
        assert_eq!(n.gateway.version(), 1);
        assert_eq!(get(n.http_addr(), "/").await.status, 200);
        let m = metrics(n.admin_addr).await;
        assert_eq!(metric_value(&m, "meridian_config_applied_version", &[]), 2.0);
        assert_eq!(metric_value(&m, "meridian_config_version", &[]), 1.0);
        assert_eq!(metric_value(&m, "meridian_config_serve_failures_total", &[]), 1.0);
    }
    // Every member sees the others split too.
    let cluster = admin(r.node(1).admin_addr, "GET", "/cluster", "").await.json();
    for m in cluster["members"].as_array().unwrap() {
        assert_eq!(m["status"]["serving_version"], 1, "{cluster:#}");
    }
    // The next valid write is served everywhere, and the write answers with
    // what the node it was sent to serves.
    let resp = r.put(1, &doc(r.backend.addr, "fixed"), None).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["version"], 3);
    assert_eq!(resp.json()["serving_version"], 3);
    r.converged(3).await;
    for (_, n) in r.running() {
        let c = admin(n.admin_addr, "GET", "/cluster", "").await.json();
        assert!(c["node"]["serving_error"].is_null(), "{c:#}");
    }
    r.shutdown().await;
}
