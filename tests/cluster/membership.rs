use std::time::Duration;

use crate::harness::{doc, Region};
use crate::support::*;

#[tokio::test]
async fn members_are_added_as_learners_then_voters_and_removed() {
    let mut r = Region::start(3, "").await;
    r.converged(1).await;
    let resp = r.put(0, &doc(r.backend.addr, "before-join"), None).await;
    assert_eq!(resp.status, 200);
    // A fourth node starts empty (no bootstrap) and is added through the admin API.
    r.raft_ports.push(closed_port().port());
    r.nodes.push(None);
    let port = r.raft_ports[3];
    r.start_node(3).await;
    let body = serde_json::json!({ "id": 4, "address": format!("127.0.0.1:{port}") }).to_string();
    let resp = admin(r.node(1).admin_addr, "POST", "/cluster/members", &body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    r.converged(2).await;
    let cluster = admin(r.node(3).admin_addr, "GET", "/cluster", "").await.json();
    let members = cluster["members"].as_array().unwrap();
    assert_eq!(members.len(), 4);
    assert!(members.iter().all(|m| m["voter"] == true));

    let resp = admin(r.node(3).admin_addr, "DELETE", "/cluster/members/4", "").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin(r.node(0).admin_addr, "GET", "/cluster", "").await.json()["members"].as_array().unwrap().len() == 3
        })
        .await
    );
    r.shutdown().await;
}
