//! VIP ownership through the region (backend `none`: decisions only, no addresses).

use std::time::{Duration, Instant};

use crate::harness::Region;
use crate::support::*;

const VIPS: &str = r#"
[vip]
backend = "none"
lease = "600ms"
renew_interval = "150ms"
hold_down = "3s"
[[vip.addresses]]
address = "10.9.0.101/24"
preferred = 1
[[vip.addresses]]
address = "10.9.0.102/24"
preferred = 2
[[vip.addresses]]
address = "10.9.0.103/24"
preferred = 3
"#;

async fn owners(r: &Region, via: usize) -> Vec<Option<u64>> {
    let v = admin(r.node(via).admin_addr, "GET", "/vips", "").await.json();
    v["vips"].as_array().unwrap().iter().map(|v| v["owner"].as_u64()).collect()
}

async fn wait_owners(r: &Region, via: usize, want: &[Option<u64>], within: Duration) -> bool {
    eventually(within, || async { owners(r, via).await == want }).await
}

#[tokio::test]
async fn vips_follow_preference_failure_drain_and_admin_moves() {
    let mut r = Region::start_with(3, "", VIPS).await;
    r.converged(1).await;
    assert!(
        wait_owners(&r, 0, &[Some(1), Some(2), Some(3)], Duration::from_secs(10)).await,
        "{:?}",
        owners(&r, 0).await
    );
    // Every member holds exactly its own.
    assert!(
        eventually(Duration::from_secs(3), || async {
            r.running().all(|(_, n)| n.vips.as_ref().unwrap().held().len() == 1)
        })
        .await,
        "{:?}",
        r.running().map(|(_, n)| n.vips.as_ref().unwrap().held()).collect::<Vec<_>>()
    );

    // The owner of .103 dies: after its lease, someone else holds it.
    let killed = Instant::now();
    r.stop_node(2).await;
    assert!(
        eventually(Duration::from_secs(5), || async { matches!(owners(&r, 0).await[2], Some(1) | Some(2)) }).await,
        "{:?}",
        owners(&r, 0).await
    );
    let took = killed.elapsed();
    assert!(took >= Duration::from_millis(500), "taken over too early: {took:?}");
    // It comes back and, after the hold-down, takes its VIP back.
    r.start_node(2).await;
    assert!(
        wait_owners(&r, 0, &[Some(1), Some(2), Some(3)], Duration::from_secs(10)).await,
        "{:?}",
        owners(&r, 0).await
    );

    // A graceful move through the admin API.
    let body = serde_json::json!({ "vip": "10.9.0.101/24", "to": 2 }).to_string();
    let resp = admin(r.node(0).admin_addr, "POST", "/vips/move", &body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // ... and it stays there (preference pulls it back only after the hold-down).
    let moved = eventually(Duration::from_secs(2), || async { owners(&r, 1).await[0] == Some(2) }).await;
    assert!(moved, "{:?}", admin(r.node(1).admin_addr, "GET", "/vips", "").await.json());

    // Draining member 2 moves both of its VIPs away.
    let resp = admin(r.node(0).admin_addr, "POST", "/nodes/2/drain", "").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        eventually(Duration::from_secs(5), || async {
            let o = owners(&r, 0).await;
            o.iter().all(|x| x.is_some() && *x != Some(2))
        })
        .await,
        "{:?}",
        owners(&r, 0).await
    );
    let m = metrics(r.node(r.leader().await).admin_addr).await;
    assert!(metric_value(&m, "meridian_vip_moves_total", &[("reason", "drain")]) >= 1.0, "{m}");
    r.shutdown().await;
}
