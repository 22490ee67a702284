use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::{available, Redis};
use crate::support::*;

fn doc(backend: std::net::SocketAddr, policies: &str) -> String {
    format!("[upstreams.u]\ntargets = [{{ address = \"{backend}\" }}]\n{policies}")
}

fn redis_node(url: &str) -> String {
    format!("[redis]\nurl = \"{url}\"\ntimeout = \"20ms\"\nfallback_nodes = 3\n")
}

/// Wait until the current `window` (aligned to Unix time) has at least `room` left.
async fn window_room(window: Duration, room: Duration) {
    loop {
        let now = meridian_core::clock::unix_ms();
        let left = window.as_millis() as u64 - now % window.as_millis() as u64;
        if left >= room.as_millis() as u64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(left + 10)).await;
    }
}

/// `workers` clients per node, `per_worker` requests each; counts answers by status.
async fn load(
    nodes: &[std::net::SocketAddr],
    path: &str,
    workers: usize,
    per_worker: usize,
    pause: Duration,
) -> (usize, usize, Vec<Duration>) {
    let ok = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for addr in nodes {
        for _ in 0..workers {
            let (ok, limited, addr, path) = (ok.clone(), limited.clone(), *addr, path.to_string());
            tasks.push(tokio::spawn(async move {
                let c = client();
                let mut slowest = Duration::ZERO;
                for _ in 0..per_worker {
                    let started = Instant::now();
                    let r =
                        send(&c, http::Request::get(format!("http://{addr}{path}")).body(Default::default()).unwrap())
                            .await;
                    slowest = slowest.max(started.elapsed());
                    match r.status.as_u16() {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => {
                            assert!(r.headers.contains_key("retry-after"));
                            assert!(r.headers.contains_key("ratelimit-policy"));
                            limited.fetch_add(1, Ordering::Relaxed)
                        }
                        other => panic!("unexpected status {other}: {}", r.text()),
                    };
                    tokio::time::sleep(pause).await;
                }
                slowest
            }));
        }
    }
    let mut slowest = Vec::new();
    for t in tasks {
        slowest.push(t.await.unwrap());
    }
    (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed), slowest)
}

#[tokio::test]
async fn three_nodes_share_one_exact_budget() {
    if !available() {
        return;
    }
    let redis = Redis::start(&[]);
    let b = backend("b").await;
    let policy = "[[routes]]\nname = \"api\"\nupstream = \"u\"\nrate_limit = { key = \"route\", scope = \"region\", mode = \"exact\", algorithm = \"sliding_window\", limits = [{ requests = 100, per = \"1m\" }] }";
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(gateway_with(&doc(b.addr, policy), &redis_node(&redis.url())).await);
    }
    window_room(Duration::from_secs(60), Duration::from_secs(20)).await;
    let addrs: Vec<_> = nodes.iter().map(|n| n.http_addr()).collect();
    let (ok, limited, _) = load(&addrs, "/", 4, 15, Duration::ZERO).await;
    eprintln!("exact: {ok} admitted, {limited} limited of 180");
    assert!((95..=105).contains(&ok), "admitted {ok}");
    assert_eq!(ok + limited, 180);
    let m = metrics(nodes[0].admin_addr).await;
    assert!(metric_value(&m, "meridian_ratelimit_decisions_total", &[("decision", "limited")]) >= 1.0);
    // Allowed answers carry the current state.
    let r = get(addrs[0], "/").await;
    assert_eq!(r.headers["ratelimit-policy"], "\"60s\";q=100;w=60");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn batched_counting_stays_within_its_documented_bound() {
    if !available() {
        return;
    }
    let redis = Redis::start(&[]);
    let b = backend("b").await;
    let policy = "[[routes]]\nname = \"api\"\nupstream = \"u\"\nrate_limit = { key = \"route\", scope = \"region\", mode = \"batched\", algorithm = \"sliding_window\", sync_interval = \"50ms\", limits = [{ requests = 100, per = \"1m\" }] }";
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(gateway_with(&doc(b.addr, policy), &redis_node(&redis.url())).await);
    }
    window_room(Duration::from_secs(60), Duration::from_secs(20)).await;
    let addrs: Vec<_> = nodes.iter().map(|n| n.http_addr()).collect();
    // One client per node, a request every 5 ms: at most 10 per node per 50 ms exchange.
    let started = Instant::now();
    let (ok, limited, _) = load(&addrs, "/", 1, 120, Duration::from_millis(5)).await;
    let per_node_rate = 120.0 / started.elapsed().as_secs_f64();
    let bound = 100.0 + 3.0 * per_node_rate * 0.05;
    eprintln!("batched: {ok} admitted, {limited} limited; bound 100 + 3 × {per_node_rate:.0}/s × 50 ms = {bound:.0}");
    assert!(ok >= 100, "the whole budget is usable: {ok}");
    assert!((ok as f64) <= bound + 3.0, "admitted {ok} above the bound {bound:.0}");
    // Redis holds the region's count.
    let idx = meridian_core::clock::unix_ms() / 60_000;
    let key = meridian_dataplane::limit::key_digest("route");
    let stored: u64 = redis.cli(&["GET", &format!("meridian:rl:{{api|{key}}}:0:{idx}")]).parse().unwrap_or(0);
    assert!(stored >= 100, "redis counted {stored}");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn redis_down_then_back() {
    if !available() {
        return;
    }
    let mut redis = Redis::start(&[]);
    let b = backend("b").await;
    let policies = "[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"u\"\nrate_limit = { key = \"route\", scope = \"region\", mode = \"exact\", algorithm = \"sliding_window\", on_redis_error = \"fail_open\", limits = [{ requests = 90, per = \"1m\" }] }\n\
[[routes]]\nname = \"closed\"\npath_prefix = \"/closed\"\nupstream = \"u\"\nrate_limit = { key = \"route\", scope = \"region\", mode = \"exact\", algorithm = \"sliding_window\", on_redis_error = \"fail_closed\", limits = [{ requests = 90, per = \"1m\" }] }";
    let gw = gateway_with(&doc(b.addr, policies), &redis_node(&redis.url())).await;
    let addr = gw.http_addr();
    window_room(Duration::from_secs(60), Duration::from_secs(25)).await;
    assert_eq!(get(addr, "/closed").await.status, 200);
    redis.kill();
    // fail_closed: 503 at once; fail_open: this node's share (90 / 3 = 30), then 429.
    let mut worst = Duration::ZERO;
    let mut closed = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        closed.push(get(addr, "/closed").await.status.as_u16());
        worst = worst.max(t.elapsed());
    }
    assert!(closed.iter().all(|s| *s == 503), "{closed:?}");
    let mut open = Vec::new();
    for _ in 0..40 {
        let t = Instant::now();
        open.push(get(addr, "/open").await.status.as_u16());
        worst = worst.max(t.elapsed());
    }
    assert_eq!(open.iter().filter(|s| **s == 200).count(), 30, "{open:?}");
    assert!(open.iter().all(|s| *s == 200 || *s == 429));
    // Timeout 20 ms + slack for a debug build.
    assert!(worst < Duration::from_millis(250), "slowest request {worst:?}");
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_redis_available", &[]), 0.0);
    assert!(metric_value(&m, "meridian_redis_mode_switches_total", &[("to", "fallback")]) >= 1.0);

    redis.restart();
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric_value(&metrics(gw.admin_addr).await, "meridian_redis_available", &[]) == 1.0
        })
        .await,
        "recovered"
    );
    // Shared limiting resumes: the count lives in Redis again.
    assert_eq!(get(addr, "/closed").await.status, 200);
    let idx = meridian_core::clock::unix_ms() / 60_000;
    let key = meridian_dataplane::limit::key_digest("route");
    assert_eq!(redis.cli(&["GET", &format!("meridian:rl:{{closed|{key}}}:0:{idx}")]), "1");
    gw.shutdown().await;
}

#[tokio::test]
async fn local_gcra_limits_by_client_header() {
    let b = backend("b").await;
    let gw = gateway(&doc(
        b.addr,
        "[[routes]]\nname = \"api\"\nupstream = \"u\"\nrate_limit = { key = \"header:x-api-key\", limits = [{ requests = 5, per = \"1m\" }, { requests = 100, per = \"1h\" }] }",
    ))
    .await;
    let addr = gw.http_addr();
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..8).map(|_| async { get_with(addr, "/", &[("x-api-key", "alice")]).await.status.as_u16() }),
    )
    .await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5);
    let r = get_with(addr, "/", &[("x-api-key", "alice")]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "12");
    assert_eq!(r.headers["ratelimit-policy"], "\"60s\";q=5;w=60, \"3600s\";q=100;w=3600");
    assert!(r.headers["ratelimit"].to_str().unwrap().starts_with("\"60s\";r=0;t="));
    assert_eq!(get_with(addr, "/", &[("x-api-key", "bob")]).await.status, 200);
    gw.shutdown().await;
}

/// A Redis that hangs (stopped, its connections still open) costs an exact
/// limit at most the timeout, once, and a batched limit nothing.
#[tokio::test]
async fn a_hanging_redis_costs_at_most_its_timeout() {
    if !available() {
        return;
    }
    let redis = Redis::start(&[]);
    let b = backend("b").await;
    let policies = "[[routes]]\nname = \"exact\"\npath_prefix = \"/exact\"\nupstream = \"u\"\nrate_limit = { key = \"route\", scope = \"region\", mode = \"exact\", algorithm = \"sliding_window\", on_redis_error = \"fail_open\", limits = [{ requests = 1000, per = \"1m\" }] }\n\
[[routes]]\nname = \"batched\"\npath_prefix = \"/batched\"\nupstream = \"u\"\nrate_limit = { key = \"route\", scope = \"region\", mode = \"batched\", algorithm = \"sliding_window\", sync_interval = \"50ms\", limits = [{ requests = 1000, per = \"1m\" }] }";
    let gw = gateway_with(&doc(b.addr, policies), &redis_node(&redis.url())).await;
    let addr = gw.http_addr();
    assert_eq!(get(addr, "/exact").await.status, 200);
    assert_eq!(get(addr, "/batched").await.status, 200);
    // (median, worst) of 20 requests.
    let timed = |path: &'static str| async move {
        let mut took = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            assert_eq!(get(addr, path).await.status, 200);
            took.push(t.elapsed());
        }
        took.sort();
        (took[took.len() / 2], took[took.len() - 1])
    };
    let (baseline, _) = timed("/batched").await;
    redis.pause(true);
    // Exact: the first request waits out the 20 ms timeout, the rest fall back at once.
    let (_, exact) = timed("/exact").await;
    // Batched: answered from this node's state; the exchange hangs in the background.
    let (batched, _) = timed("/batched").await;
    redis.pause(false);
    eprintln!("hung redis: exact worst {exact:?}, batched median {batched:?} (before: {baseline:?})");
    // 20 ms timeout + slack for a debug build on a busy machine.
    assert!(exact < Duration::from_millis(250), "an exact-limited request waited {exact:?}");
    // Waiting on the hung Redis would cost each request its 20 ms timeout.
    assert!(batched < Duration::from_millis(15), "batched requests slowed to {batched:?} (median)");
    let m = metrics(gw.admin_addr).await;
    assert!(metric_value(&m, "meridian_redis_errors_total", &[("kind", "timeout")]) >= 1.0, "{m}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric_value(&metrics(gw.admin_addr).await, "meridian_redis_available", &[]) == 1.0
        })
        .await,
        "recovered after SIGCONT"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn consumers_share_their_own_budget_across_three_nodes() {
    if !available() {
        return;
    }
    let redis = Redis::start(&[]);
    let b = backend("b").await;
    let pepper = "redis-test-pepper-0123456789";
    let p = meridian_core::apikey::Pepper::new(pepper.as_bytes());
    let (alice, bob) = ("mk_alice-0123456789abcdefghijkl", "mk_bob-0123456789abcdefghijklmn");
    let policy = format!(
        r#"
[[consumers]]
name = "alice"
limits = [{{ requests = 60, per = "1m" }}]
api_keys = [{{ id = "a", hash = "{}", prefix = "mk_alice" }}]
[[consumers]]
name = "bob"
api_keys = [{{ id = "b", hash = "{}", prefix = "mk_bob-0" }}]
[[routes]]
name = "api"
upstream = "u"
auth = {{ api_key = {{}} }}
rate_limit = {{ key = "consumer", scope = "region", mode = "exact", algorithm = "sliding_window", limits = [{{ requests = 100, per = "1m" }}] }}
"#,
        p.hash_hex(alice.as_bytes()),
        p.hash_hex(bob.as_bytes())
    );
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, pepper.as_bytes()).unwrap();
    let node = format!("{}[identity]\npepper_file = \"{}\"\n", redis_node(&redis.url()), f.path().display());
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(gateway_with(&doc(b.addr, &policy), &node).await);
    }
    window_room(Duration::from_secs(60), Duration::from_secs(20)).await;
    let addrs: Vec<_> = nodes.iter().map(|n| n.http_addr()).collect();
    // 4 clients per node, 15 requests each, for each consumer.
    let admitted = |key: &'static str| {
        let addrs = addrs.clone();
        async move {
            let mut tasks = Vec::new();
            for addr in addrs {
                for _ in 0..4 {
                    tasks.push(tokio::spawn(async move {
                        let mut ok = 0;
                        for _ in 0..15 {
                            match get_with(addr, "/", &[("x-api-key", key)]).await.status.as_u16() {
                                200 => ok += 1,
                                429 => {}
                                other => panic!("status {other}"),
                            }
                        }
                        ok
                    }));
                }
            }
            let mut ok = 0;
            for t in tasks {
                ok += t.await.unwrap();
            }
            ok
        }
    };
    let (a, b_ok) = tokio::join!(admitted(alice), admitted(bob));
    eprintln!("alice admitted {a} of 180 (limit 60), bob {b_ok} of 180 (limit 100)");
    assert!((57..=63).contains(&a), "alice: {a} not within 5 % of 60");
    assert!((95..=105).contains(&b_ok), "bob: {b_ok} not within 5 % of 100");
    for n in nodes {
        n.shutdown().await;
    }
}
