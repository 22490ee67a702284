//! Several clients write while the leader is killed again and again: every
//! acknowledged version must be in the final history of every member, in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{doc, Region};
use crate::support::*;

fn digest_of(toml_doc: &str) -> String {
    // The region stores the document as the JSON of its parsed form.
    let parsed = meridian_core::config::parse_document(toml_doc, meridian_core::config::Format::Toml)
        .unwrap()
        .into_inner()
        .into_document();
    let json = serde_json::to_string(&parsed).unwrap();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(json.as_bytes()))
}

#[tokio::test]
async fn no_acknowledged_write_is_lost_while_leaders_die() {
    let tuning = "heartbeat_interval = \"50ms\"\nelection_timeout_min = \"150ms\"\nelection_timeout_max = \"300ms\"\nsnapshot_every = 25\nkeep_logs = 5";
    let mut r = Region::start(3, tuning).await;
    r.converged(1).await;
    let admins: Arc<Mutex<Vec<Option<std::net::SocketAddr>>>> =
        Arc::new(Mutex::new(r.nodes.iter().map(|n| n.as_ref().map(|n| n.admin_addr)).collect()));
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let backend = r.backend.addr;
    let mut clients = Vec::new();
    for c in 0..3 {
        let (admins, acked, stop) = (admins.clone(), acked.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut attempts = 0;
            // Bounded: at most 200 writes per client.
            for seq in 0..200 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let targets: Vec<_> = admins.lock().unwrap().iter().flatten().copied().collect();
                let Some(target) = targets.get((seq + c) % targets.len().max(1)).copied() else { continue };
                let body = doc(backend, &format!("c{c}-{seq}"));
                attempts += 1;
                let req = http::Request::put(format!("http://{target}/config"))
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(body.clone().into())
                    .unwrap();
                let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(8), client().request(req)).await else {
                    continue;
                };
                if resp.status() == 200 {
                    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    let version = v["version"].as_u64().unwrap();
                    let prev = acked.lock().unwrap().insert(version, digest_of(&body));
                    assert!(prev.is_none(), "version {version} acknowledged twice");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            attempts
        }));
    }
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let leader = r.leader().await;
        admins.lock().unwrap()[leader] = None;
        r.stop_node(leader).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        r.start_node(leader).await;
        admins.lock().unwrap()[leader] = Some(r.node(leader).admin_addr);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "only {} writes were acknowledged", acked.len());
    let last = *acked.keys().next_back().unwrap();
    r.converged(r.node(0).gateway.version().max(last)).await;
    for (i, n) in r.running() {
        let h = admin(n.admin_addr, "GET", "/config/history", "").await.json();
        let revisions: BTreeMap<u64, String> = h["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["version"].as_u64().unwrap(), r["digest"].as_str().unwrap().to_string()))
            .collect();
        let versions: Vec<u64> =
            h["revisions"].as_array().unwrap().iter().map(|r| r["version"].as_u64().unwrap()).collect();
        assert!(versions.windows(2).all(|w| w[1] == w[0] + 1), "member {i}: history out of order: {versions:?}");
        for (v, digest) in &acked {
            assert_eq!(revisions.get(v), Some(digest), "member {i} lost acknowledged version {v}");
        }
    }
    eprintln!("{} acknowledged writes, all present on every member", acked.len());
    r.shutdown().await;
}
