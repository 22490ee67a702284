//! Limits keep working through a Sentinel failover.

use std::time::{Duration, Instant};

use crate::server::{available, Redis};
use crate::support::*;

#[tokio::test]
async fn limits_survive_a_sentinel_failover() {
    if !available() {
        return;
    }
    let primary = Redis::start(&[]);
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let mut sentinels = Vec::new();
    for _ in 0..3 {
        let port = closed_port().port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 2\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 3000\n",
                primary.port
            ),
        )
        .unwrap();
        let child = std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        sentinels.push((port, dir, child));
    }
    let sentinel_urls: Vec<String> = sentinels.iter().map(|(p, _, _)| format!("\"redis://127.0.0.1:{p}/\"")).collect();
    // Sentinels need a moment to find each other and the replica.
    assert!(
        eventually(Duration::from_secs(15), || async {
            replica.cli(&["INFO", "replication"]).contains("master_link_status:up")
                && std::process::Command::new("redis-cli")
                    .args(["-p", &sentinels[0].0.to_string(), "SENTINEL", "replicas", "mymaster"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&replica.port.to_string()))
        })
        .await,
        "replication and sentinels ready"
    );
    let b = backend("b").await;
    let gw = gateway_with(
        &format!("[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"s\"\nupstream = \"u\"\nrate_limit = {{ key = \"header:x-key\", scope = \"region\", mode = \"exact\", algorithm = \"sliding_window\", on_redis_error = \"fail_closed\", limits = [{{ requests = 5, per = \"1m\" }}] }}", b.addr),
        &format!("[redis]\nsentinels = [{}]\nmaster_name = \"mymaster\"\ntimeout = \"50ms\"\n", sentinel_urls.join(", ")),
    )
    .await;
    let addr = gw.http_addr();
    let run = |key: &'static str| async move {
        let mut s = Vec::new();
        for _ in 0..7 {
            s.push(get_with(addr, "/", &[("x-key", key)]).await.status.as_u16());
        }
        s
    };
    assert_eq!(run("before").await, vec![200, 200, 200, 200, 200, 429, 429]);

    // Fail over: the replica becomes the primary.
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &sentinels[0].0.to_string(), "SENTINEL", "FAILOVER", "mymaster"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "{}", String::from_utf8_lossy(&out.stdout));
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || async { replica.cli(&["ROLE"]).starts_with("master") }).await,
        "replica promoted"
    );
    // The gateway follows the new master: limiting works again with a fresh key.
    assert!(
        eventually(Duration::from_secs(20), || async {
            run("after-a").await == vec![200, 200, 200, 200, 200, 429, 429]
        })
        .await,
        "limits work after the failover"
    );
    eprintln!("limits working again {} ms after the failover began", started.elapsed().as_millis());
    assert!(!replica.cli(&["KEYS", "meridian:rl:*"]).is_empty(), "counts live on the new primary");
    gw.shutdown().await;
    for (_, _, mut c) in sentinels {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(primary);
}
