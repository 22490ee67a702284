use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn active_checks_take_a_target_out_and_back() {
    let a = backend("a").await;
    let b = backend("b").await;
    let gw = gateway(&format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}, {{ address = "{}" }}]
[upstreams.u.health.active]
path = "/healthz"
interval = "50ms"
timeout = "200ms"
rise = 2
fall = 2

[[routes]]
name = "all"
upstream = "u"
"#,
        a.addr, b.addr
    ))
    .await;
    let addr = gw.http_addr();
    let admin_addr = gw.admin_addr;
    b.control.healthy.store(false, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(3), || async {
            metric_value(
                &metrics(admin_addr).await,
                "meridian_upstream_target_healthy",
                &[("target", &b.addr.to_string())],
            ) == 0.0
        })
        .await,
        "b marked down"
    );
    for _ in 0..20 {
        assert_eq!(get(addr, "/").await.backend(), "a");
    }
    let ups = admin(admin_addr, "GET", "/upstreams", "").await.json();
    assert_eq!(ups["upstreams"]["u"]["targets"][1]["healthy"], false);

    b.control.healthy.store(true, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(3), || async {
            let mut seen_b = false;
            for _ in 0..4 {
                seen_b |= get(addr, "/").await.backend() == "b";
            }
            seen_b
        })
        .await,
        "b back in rotation after rise"
    );
    let m = metrics(admin_addr).await;
    assert!(metric_value(&m, "meridian_health_checks_total", &[("result", "failed")]) >= 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn passive_outlier_detection_ejects_a_failing_target() {
    let a = backend("a").await;
    let b = backend("b").await;
    b.control.fail_status.store(500, Ordering::Relaxed);
    let gw = gateway(&format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}, {{ address = "{}" }}]
[upstreams.u.health.passive]
consecutive_failures = 3
base_ejection = "500ms"

[[routes]]
name = "all"
upstream = "u"
"#,
        a.addr, b.addr
    ))
    .await;
    let addr = gw.http_addr();
    let mut failures = 0;
    for _ in 0..40 {
        if get(addr, "/").await.status == 500 {
            failures += 1;
        }
    }
    // Three failures eject b; the rest go to a.
    assert_eq!(failures, 3);
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_upstream_ejections_total", &[("target", &b.addr.to_string())]), 1.0);
    // After the ejection b is tried again (and, still failing, ejected for twice as long).
    b.control.fail_status.store(0, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut seen_b = false;
    for _ in 0..10 {
        seen_b |= get(addr, "/").await.backend() == "b";
    }
    assert!(seen_b, "b returns after its ejection");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_single_target_pool_is_never_ejected_empty() {
    let a = backend("a").await;
    a.control.fail_status.store(503, Ordering::Relaxed);
    let gw = gateway(&format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}]
[upstreams.u.health.passive]
consecutive_failures = 1
[[routes]]
name = "all"
upstream = "u"
"#,
        a.addr
    ))
    .await;
    for _ in 0..5 {
        // The upstream's own 503 reaches the client; the gateway never adds its own.
        let r = get(gw.http_addr(), "/").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.backend(), "a");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn no_healthy_target_is_a_clear_503() {
    let a = backend("a").await;
    a.control.healthy.store(false, Ordering::Relaxed);
    let gw = gateway(&format!(
        r#"
[upstreams.users]
targets = [{{ address = "{}" }}]
[upstreams.users.health.active]
interval = "30ms"
fall = 1
[[routes]]
name = "all"
upstream = "users"
"#,
        a.addr
    ))
    .await;
    let addr = gw.http_addr();
    assert!(eventually(Duration::from_secs(3), || async { get(addr, "/").await.status == 503 }).await);
    let r = get(addr, "/").await;
    let body = r.json();
    assert_eq!(body["error"], "no_healthy_target");
    assert_eq!(body["message"], "no healthy target in upstream \"users\"");
    assert!(r.headers.contains_key("x-request-id"));
    gw.shutdown().await;
}
