use std::collections::HashMap;

use crate::support::*;

async fn three_backends() -> Vec<meridian_lab::backend::Backend> {
    vec![backend("a").await, backend("b").await, backend("c").await]
}

fn targets(b: &[meridian_lab::backend::Backend], weights: &[u32]) -> String {
    b.iter()
        .zip(weights)
        .map(|(b, w)| format!("{{ address = \"{}\", weight = {w} }}", b.addr))
        .collect::<Vec<_>>()
        .join(", ")
}

fn doc(algorithm: &str, targets: &str, extra: &str) -> String {
    format!(
        r#"
[upstreams.u]
algorithm = "{algorithm}"
targets = [{targets}]
{extra}

[[routes]]
name = "all"
upstream = "u"
"#
    )
}

async fn tally(addr: std::net::SocketAddr, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let mut b = http::Request::get(format!("http://{addr}/"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let r = send(&c, b.body(Default::default()).unwrap()).await;
        assert_eq!(r.status, 200);
        *counts.entry(r.backend()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let b = three_backends().await;
    let gw = gateway(&doc("round_robin", &targets(&b, &[1, 1, 1]), "")).await;
    let counts = tally(gw.http_addr(), 300, &[]).await;
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![100; 3], "{counts:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn smooth_weighted_round_robin_follows_weights_exactly() {
    let b = three_backends().await;
    let gw = gateway(&doc("weighted_round_robin", &targets(&b, &[3, 2, 1]), "")).await;
    let counts = tally(gw.http_addr(), 300, &[]).await;
    assert_eq!(counts["a"], 150, "{counts:?}");
    assert_eq!(counts["b"], 100, "{counts:?}");
    assert_eq!(counts["c"], 50, "{counts:?}");
    gw.shutdown().await;
}

/// Concurrent load against one slow and two fast targets.
async fn concurrent_tally(addr: std::net::SocketAddr, workers: usize, per_worker: usize) -> HashMap<String, usize> {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut seen = Vec::new();
            for _ in 0..per_worker {
                let r = send(&c, http::Request::get(format!("http://{addr}/")).body(Default::default()).unwrap()).await;
                assert_eq!(r.status, 200);
                seen.push(r.backend());
            }
            seen
        }));
    }
    let mut counts = HashMap::new();
    for t in tasks {
        for name in t.await.unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn least_connections_and_peak_ewma_avoid_a_slow_target() {
    for algorithm in ["least_connections", "peak_ewma"] {
        let b = three_backends().await;
        b[0].control.delay_ms.store(40, std::sync::atomic::Ordering::Relaxed);
        let gw = gateway(&doc(algorithm, &targets(&b, &[1, 1, 1]), "")).await;
        let counts = concurrent_tally(gw.http_addr(), 8, 40).await;
        let slow = counts.get("a").copied().unwrap_or(0);
        let total: usize = counts.values().sum();
        assert_eq!(total, 320);
        // Round robin would send a third (107) to the slow target.
        assert!(slow < 45, "{algorithm}: slow target got {slow} of {total}: {counts:?}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn consistent_hash_keeps_keys_on_one_target() {
    let b = three_backends().await;
    for hash_on in ["header:x-user", "cookie:session"] {
        let gw = gateway(&doc("consistent_hash", &targets(&b, &[1, 1, 1]), &format!("hash_on = \"{hash_on}\""))).await;
        let mut owners = HashMap::new();
        for user in 0..60 {
            let (name, value) = if hash_on.starts_with("header") {
                ("x-user", format!("user-{user}"))
            } else {
                ("cookie", format!("other=1; session=s{user}"))
            };
            let first = get_with(gw.http_addr(), "/", &[(name, &value)]).await.backend();
            for _ in 0..3 {
                assert_eq!(get_with(gw.http_addr(), "/", &[(name, &value)]).await.backend(), first);
            }
            *owners.entry(first).or_insert(0) += 1;
        }
        assert_eq!(owners.len(), 3, "keys spread over every target: {owners:?}");
        gw.shutdown().await;
    }
    // On client IP every request from here lands on one target.
    let gw = gateway(&doc("consistent_hash", &targets(&b, &[1, 1, 1]), "hash_on = \"client_ip\"")).await;
    let counts = tally(gw.http_addr(), 30, &[]).await;
    assert_eq!(counts.len(), 1, "{counts:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn sticky_cookie_pins_a_client() {
    let b = three_backends().await;
    let gw = gateway(&doc("round_robin", &targets(&b, &[1, 1, 1]), "[upstreams.u.sticky]\ncookie = \"srv\"")).await;
    let first = get(gw.http_addr(), "/").await;
    let set = first.headers.get("set-cookie").expect("sticky cookie set").to_str().unwrap().to_string();
    assert!(set.starts_with("srv=") && set.contains("HttpOnly"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    for _ in 0..20 {
        let r = get_with(gw.http_addr(), "/", &[("cookie", &cookie)]).await;
        assert_eq!(r.backend(), first.backend());
        assert!(r.headers.get("set-cookie").is_none());
    }
    // When the pinned target goes away the client moves and gets a new cookie.
    let pinned = b.iter().find(|x| x.control.name == first.backend()).unwrap();
    pinned.control.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = get_with(gw.http_addr(), "/", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.backend(), first.backend());
    gw.shutdown().await;
}
