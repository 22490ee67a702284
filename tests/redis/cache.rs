use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::server::{available, Redis};
use crate::support::*;

fn doc(backend: std::net::SocketAddr, cache: &str) -> String {
    format!("[upstreams.u]\ntargets = [{{ address = \"{backend}\" }}]\n[[routes]]\nname = \"c\"\nupstream = \"u\"\ncache = {cache}\n")
}

fn x_cache(r: &Reply) -> String {
    r.headers.get("x-cache").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn nodes_share_entries_and_purges() {
    if !available() {
        return;
    }
    let redis = Redis::start(&[]);
    let b = backend("b").await;
    let node = format!("[redis]\nurl = \"{}\"\n", redis.url());
    let a = gateway_with(&doc(b.addr, "{ ttl = \"60s\" }"), &node).await;
    let bb = gateway_with(&doc(b.addr, "{ ttl = \"60s\" }"), &node).await;
    let first = get_service(a.http_addr(), "/item?id=1").await;
    assert_eq!(x_cache(&first), "MISS");
    let second = get_service(bb.http_addr(), "/item?id=1").await;
    assert_eq!(x_cache(&second), "HIT", "node B serves what node A stored");
    assert_eq!(second.body, first.body);
    assert!(second.headers.contains_key("age"));
    assert_eq!(b.control.requests(), 1);

    let r = admin(a.admin_addr, "POST", "/cache/purge", "{\"route\": \"c\"}").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Both nodes miss after the purge (node B learns of it through pub/sub).
    assert!(
        eventually(Duration::from_secs(3), || async {
            x_cache(&get_service(bb.http_addr(), "/item?id=2").await) == "MISS"
        })
        .await
    );
    assert_eq!(x_cache(&get_service(a.http_addr(), "/item?id=1").await), "MISS");
    assert_eq!(x_cache(&get_service(bb.http_addr(), "/item?id=1").await), "HIT");
    let m = metrics(bb.admin_addr).await;
    assert!(metric_value(&m, "meridian_cache_events_total", &[("event", "hit")]) >= 2.0);
    a.shutdown().await;
    bb.shutdown().await;
}

#[tokio::test]
async fn vary_no_store_and_authorization() {
    let b = backend("b").await;
    let gw = gateway(&doc(b.addr, "{ ttl = \"60s\" }")).await;
    let addr = gw.http_addr();
    let v = "/v?vary=accept-language";
    assert_eq!(x_cache(&get_with(addr, v, &[("accept-language", "en")]).await), "MISS");
    assert_eq!(x_cache(&get_with(addr, v, &[("accept-language", "en")]).await), "HIT");
    assert_eq!(x_cache(&get_with(addr, v, &[("accept-language", "de")]).await), "MISS");
    let de = get_with(addr, v, &[("accept-language", "de")]).await;
    assert_eq!(x_cache(&de), "HIT");
    assert_eq!(de.json()["headers"]["accept-language"], "de");

    let before = b.control.requests();
    get(addr, "/n?cache_control=no-store").await;
    get(addr, "/n?cache_control=no-store").await;
    get(addr, "/p?cache_control=private").await;
    get(addr, "/p?cache_control=private").await;
    get_with(addr, "/auth", &[("authorization", "Bearer x")]).await;
    get_with(addr, "/auth", &[("authorization", "Bearer x")]).await;
    assert_eq!(b.control.requests() - before, 6, "nothing of that was served from the cache");
    // max-age from the upstream wins over the route default; max-age=0 is not stored.
    get(addr, "/z?cache_control=max-age%3D0").await;
    assert_eq!(x_cache(&get(addr, "/z?cache_control=max-age%3D0").await), "MISS");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_misses_makes_one_upstream_request() {
    let b = backend("b").await;
    let gw = gateway(&doc(b.addr, "{ ttl = \"60s\" }")).await;
    let addr = gw.http_addr();
    let before = b.control.requests();
    let answers =
        futures_util::future::join_all((0..100).map(|_| async move { get(addr, "/slow?delay_ms=300").await })).await;
    assert!(answers.iter().all(|r| r.status == 200));
    assert_eq!(b.control.requests() - before, 1, "one upstream request for 100 concurrent misses");
    let m = metrics(gw.admin_addr).await;
    assert!(metric_value(&m, "meridian_cache_events_total", &[("event", "coalesced")]) >= 90.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn stale_if_error_serves_an_expired_entry_when_the_upstream_fails() {
    let b = backend("b").await;
    let gw = gateway(&doc(b.addr, "{ ttl = \"1s\", stale_if_error = \"30s\" }")).await;
    let addr = gw.http_addr();
    assert_eq!(x_cache(&get(addr, "/s").await), "MISS");
    b.control.fail_status.store(503, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = get(addr, "/s").await;
    assert_eq!(r.status, 200);
    assert_eq!(x_cache(&r), "STALE");
    b.control.fail_status.store(0, Ordering::Relaxed);
    assert_eq!(x_cache(&get(addr, "/s").await), "MISS");
    gw.shutdown().await;
}
