//! A Redis Cluster of three primaries (started by the test): limits and the
//! cache work across slots, and two gateways share them.

use std::process::Command;
use std::time::Duration;

use crate::server::{available, Redis};
use crate::support::*;

fn doc(backend: std::net::SocketAddr) -> String {
    format!(
        "[upstreams.u]\ntargets = [{{ address = \"{backend}\" }}]\n\
         [[routes]]\nname = \"cached\"\npath_prefix = \"/static\"\nupstream = \"u\"\ncache = {{ ttl = \"60s\" }}\n\
         [[routes]]\nname = \"api\"\nupstream = \"u\"\n\
         rate_limit = {{ key = \"header:x-key\", scope = \"region\", mode = \"exact\", algorithm = \"sliding_window\", on_redis_error = \"fail_closed\", limits = [{{ requests = 5, per = \"1m\" }}] }}\n"
    )
}

#[tokio::test]
async fn limits_and_cache_work_on_a_redis_cluster() {
    if !available() {
        return;
    }
    let nodes: Vec<Redis> = (0..3)
        .map(|_| {
            // The bus port is given: the default (port + 10000) may not exist.
            let bus = closed_port().port().to_string();
            Redis::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",
                &bus,
            ])
        })
        .collect();
    let seeds: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&seeds)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        eventually(Duration::from_secs(15), || async {
            nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        })
        .await,
        "the cluster did not converge"
    );
    let urls: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.url())).collect();
    let node = format!("[redis]\ncluster = [{}]\ntimeout = \"100ms\"\n", urls.join(", "));
    let b = backend("b").await;
    let a = gateway_with(&doc(b.addr), &node).await;
    let bb = gateway_with(&doc(b.addr), &node).await;

    // Keys land on different primaries; each has one budget of 5 for both gateways.
    for key in ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"] {
        let mut statuses = Vec::new();
        for i in 0..7 {
            let addr = if i % 2 == 0 { a.http_addr() } else { bb.http_addr() };
            statuses.push(get_with(addr, "/", &[("x-key", key)]).await.status.as_u16());
        }
        assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429, 429], "key {key}");
    }
    // Key values (API keys) never name Redis keys: only their digests do.
    for n in &nodes {
        let names = n.cli(&["KEYS", "*"]);
        assert!(!names.contains("alpha") && !names.contains("bravo"), "a raw key value in Redis: {names}");
    }
    let spread = nodes.iter().filter(|n| n.cli(&["DBSIZE"]).parse::<u64>().unwrap_or(0) > 0).count();
    assert!(spread >= 2, "every key landed on one primary");

    // Node B serves from the cluster what node A stored.
    for i in 0..4 {
        let path = format!("/static/item{i}");
        let first = get_service(a.http_addr(), &path).await;
        assert_eq!(first.headers["x-cache"], "MISS");
        let second = get_service(bb.http_addr(), &path).await;
        assert_eq!(second.headers["x-cache"], "HIT", "{path}");
    }
    assert_eq!(b.control.requests(), 4 + 6 * 5);
    let m = metrics(a.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_redis_available", &[]), 1.0);
    a.shutdown().await;
    bb.shutdown().await;
}

/// Sentinel and Cluster topologies connect lazily: a node starts while they
/// are down, serves on its fallbacks and says so.
#[tokio::test]
async fn a_node_starts_while_its_sentinels_or_cluster_are_down() {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"api\"\nupstream = \"u\"\n\
         rate_limit = {{ key = \"client_ip\", scope = \"region\", mode = \"exact\", on_redis_error = \"fail_open\", limits = [{{ requests = 100, per = \"1m\" }}] }}",
        b.addr
    );
    let (a, c) = (closed_port(), closed_port());
    for redis in [
        format!("[redis]\nsentinels = [\"redis://{a}/\", \"redis://{c}/\"]\nmaster_name = \"m\"\ntimeout = \"50ms\"\n"),
        format!("[redis]\ncluster = [\"redis://{a}/\", \"redis://{c}/\"]\ntimeout = \"50ms\"\n"),
    ] {
        let started = std::time::Instant::now();
        let gw = tokio::time::timeout(Duration::from_secs(5), gateway_with(&doc, &redis)).await.expect("started");
        assert!(started.elapsed() < Duration::from_secs(3), "start waited {:?} for Redis", started.elapsed());
        assert_eq!(get(gw.http_addr(), "/").await.status, 200);
        let m = metrics(gw.admin_addr).await;
        assert_eq!(metric_value(&m, "meridian_redis_available", &[]), 0.0, "{redis}");
        gw.shutdown().await;
    }
}
