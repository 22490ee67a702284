use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::*;

fn one_route(upstream: &str, route_extra: &str) -> String {
    format!(
        r#"
{upstream}

[[routes]]
name = "all"
upstream = "u"
{route_extra}
"#
    )
}

#[tokio::test]
async fn refused_connection_is_502_and_timeout_is_504() {
    let dead = closed_port();
    let gw = gateway(&one_route(
        &format!("[upstreams.u]\ntargets = [{{ address = \"{dead}\" }}]\nretry = {{ attempts = 0 }}"),
        "",
    ))
    .await;
    let r = get(gw.http_addr(), "/").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "connect_failed");
    assert!(!r.text().contains(&dead.to_string()), "no internal address leaks: {}", r.text());
    gw.shutdown().await;

    let slow = backend("slow").await;
    let gw = gateway(&one_route(
        &format!("[upstreams.u]\ntargets = [{{ address = \"{}\" }}]", slow.addr),
        "timeout = \"150ms\"",
    ))
    .await;
    let started = std::time::Instant::now();
    let r = get(gw.http_addr(), "/?delay_ms=2000").await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(1));
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_upstream_errors_total", &[("kind", "upstream_timeout")]), 1.0);
    assert_eq!(metric_value(&m, "meridian_requests_total", &[("route", "all"), ("class", "5xx")]), 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_is_504() {
    // A non-routable address: the SYN goes nowhere (TEST-NET-1, never answered).
    let gw = gateway(&one_route(
        "[upstreams.u]\ntargets = [{ address = \"192.0.2.1:81\" }]\nconnect_timeout = \"100ms\"\nretry = { attempts = 0 }",
        "",
    ))
    .await;
    let r = get(gw.http_addr(), "/").await;
    // Either the kernel refuses at once (no route: 502) or the connect times out (504).
    assert!(r.status == 504 || r.status == 502, "{}", r.status);
    if r.status == 504 {
        assert_eq!(r.json()["error"], "connect_timeout");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_target() {
    let good = backend("good").await;
    let dead = closed_port();
    let gw = gateway(&one_route(
        &format!(
            "[upstreams.u]\ntargets = [{{ address = \"{dead}\" }}, {{ address = \"{}\" }}]\nretry = {{ attempts = 1 }}",
            good.addr
        ),
        "",
    ))
    .await;
    for _ in 0..20 {
        let r = get(gw.http_addr(), "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "good");
    }
    let m = metrics(gw.admin_addr).await;
    let retries = metric_value(&m, "meridian_upstream_retries_total", &[("reason", "connect_failed")]);
    // Round robin sends at least every other request to the dead target first.
    assert!((10.0..=20.0).contains(&retries), "{retries}");
    gw.shutdown().await;
}

#[tokio::test]
async fn retry_budget_caps_retries() {
    let good = backend("good").await;
    let dead = closed_port();
    // No floor and a 10% ratio: of 40 requests, half hit the dead target first,
    // but only 10% of the traffic may be retried.
    let gw = gateway(&one_route(
        &format!(
            "[upstreams.u]\ntargets = [{{ address = \"{dead}\" }}, {{ address = \"{}\" }}]\nretry = {{ attempts = 1, budget_ratio = 0.1, min_per_second = 0 }}",
            good.addr
        ),
        "",
    ))
    .await;
    let mut failed = 0;
    for _ in 0..40 {
        if get(gw.http_addr(), "/").await.status == 502 {
            failed += 1;
        }
    }
    let m = metrics(gw.admin_addr).await;
    let retried = metric_value(&m, "meridian_upstream_retries_total", &[]);
    let exhausted = metric_value(&m, "meridian_retry_budget_exhausted_total", &[]);
    // At most 10% of 40 requests were retried; every other first try on the
    // dead target failed for want of budget.
    assert!((3.0..=4.0).contains(&retried), "{retried}");
    assert!(failed >= 16, "{failed}");
    assert_eq!(failed as f64, exhausted);
    gw.shutdown().await;
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_5xx_when_enabled() {
    let bad = backend("bad").await;
    let good = backend("good").await;
    bad.control.fail_status.store(503, Ordering::Relaxed);
    let gw = gateway(&one_route(
        &format!(
            "[upstreams.u]\ntargets = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\nretry = {{ attempts = 1, on_5xx = true }}",
            bad.addr, good.addr
        ),
        "",
    ))
    .await;
    let c = client();
    for _ in 0..10 {
        let r =
            send(&c, http::Request::get(format!("http://{}/", gw.http_addr())).body(Default::default()).unwrap()).await;
        assert_eq!(r.status, 200);
    }
    // A POST is not idempotent: its 503 goes to the client.
    let mut saw_503 = false;
    for _ in 0..4 {
        let r = send(&c, http::Request::post(format!("http://{}/", gw.http_addr())).body("x".into()).unwrap()).await;
        saw_503 |= r.status == 503;
    }
    assert!(saw_503);
    gw.shutdown().await;
}

#[tokio::test]
async fn circuit_breaker_limits_concurrency() {
    let slow = backend("slow").await;
    slow.control.delay_ms.store(300, Ordering::Relaxed);
    let gw = gateway(&one_route(
        &format!(
            "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\ncircuit_breaker = {{ max_requests = 2 }}",
            slow.addr
        ),
        "",
    ))
    .await;
    let addr = gw.http_addr();
    let tasks: Vec<_> = (0..6).map(|_| tokio::spawn(async move { get(addr, "/").await.status.as_u16() })).collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 503, 503, 503, 503]);
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_circuit_open_total", &[("limit", "max_requests")]), 4.0);
    gw.shutdown().await;
}

/// A client that stops sending its body gets 408, and the target it was
/// being sent to is not blamed.
#[tokio::test]
async fn a_stalled_request_body_is_the_client_s_fault() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\nhealth.passive = {{ consecutive_failures = 1 }}\n[[routes]]\nname = \"all\"\nupstream = \"u\"\ntimeout = \"300ms\"",
        b.addr
    );
    let gw = gateway(&doc).await;
    let mut s = tokio::net::TcpStream::connect(gw.http_addr()).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789").await.unwrap();
    let mut out = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut out)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&out[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_upstream_errors_total", &[("kind", "upstream_timeout")]), 0.0);
    assert_eq!(metric_value(&m, "meridian_bad_requests_total", &[("reason", "body_timeout")]), 1.0);
    // The target was not ejected: the next request reaches it.
    assert_eq!(get(gw.http_addr(), "/").await.status, 200);
    gw.shutdown().await;
}
