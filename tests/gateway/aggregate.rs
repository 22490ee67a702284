//! Request aggregation through real sockets: three backends called at once,
//! merged by the documented rule, one slow beyond its timeout and one
//! failing (a partial answer), all failing (502).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// A backend answering `body` after `delay`, with `status`.
async fn json_peer(status: u16, delay_ms: u64, body: serde_json::Value) -> Peer {
    peer(move |seen| {
        let mut body = body.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            if let Some(o) = body.as_object_mut() {
                if o.contains_key("seen_path") {
                    o.insert("seen_path".into(), json!(seen.uri.to_string()));
                }
            }
            answer(status, "application/json", body.to_string())
        }
    })
    .await
}

async fn aggregate_gateway(
    users: &Peer,
    orders: &Peer,
    billing: &Peer,
    extra: &str,
) -> meridian_region::gateway::RunningGateway {
    let doc = format!(
        r#"
[upstreams.users]
targets = [{{ address = "{}" }}]
[upstreams.orders]
targets = [{{ address = "{}" }}]
[upstreams.billing]
targets = [{{ address = "{}" }}]

[[routes]]
name = "dashboard"
upstream = "users"
path_template = "/dashboard/{{id}}"
timeout = "2s"
[routes.aggregate]
[[routes.aggregate.backends]]
path = "/users/$(path.id)?q=$(query.q)"
deny = ["internal"]
[[routes.aggregate.backends]]
upstream = "orders"
path = "/orders?user=$(path.id)"
group = "orders"
timeout = "300ms"
allow = ["items", "total.amount"]
[[routes.aggregate.backends]]
upstream = "billing"
path = "/billing/$(path.id)"
group = "billing"
{extra}
"#,
        users.addr, orders.addr, billing.addr
    );
    gateway(&doc).await
}

#[tokio::test]
async fn three_backends_merge_into_one_answer_with_the_first_listed_winning() {
    // The first backend answers last: its `id` still wins over the third's.
    let users =
        json_peer(200, 150, json!({ "id": "u1", "name": "Ann", "internal": { "x": 1 }, "seen_path": "" })).await;
    let orders =
        json_peer(200, 0, json!({ "items": [1, 2], "total": { "amount": 3, "secret": 9 }, "debug": true })).await;
    let billing = json_peer(200, 0, json!({ "plan": "pro" })).await;
    let gw = aggregate_gateway(&users, &orders, &billing, "").await;
    let r = get(gw.http_addr(), "/dashboard/7?q=a/b%26c").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.headers.contains_key("x-meridian-complete"));
    assert_eq!(
        r.json(),
        json!({
            "id": "u1", "name": "Ann",
            "seen_path": "/users/7?q=a%2Fb%26c",
            "orders": { "items": [1, 2], "total": { "amount": 3 } },
            "billing": { "plan": "pro" }
        })
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_slow_and_a_failing_backend_leave_a_partial_answer_within_the_route_timeout() {
    let users = json_peer(200, 0, json!({ "id": "u1" })).await;
    let orders = json_peer(200, 5_000, json!({ "items": [] })).await;
    let billing = json_peer(500, 0, json!({ "error": "down" })).await;
    let gw = aggregate_gateway(&users, &orders, &billing, "").await;
    let started = Instant::now();
    let r = get(gw.http_addr(), "/dashboard/7?q=x").await;
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by the route's timeout");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-meridian-complete"], "false");
    assert_eq!(r.json(), json!({ "id": "u1" }));
    let m = metrics(gw.admin_addr).await;
    let partial = metric_value(
        &m,
        "meridian_transforms_total",
        &[("route", "dashboard"), ("stage", "aggregate"), ("result", "partial")],
    );
    assert_eq!(partial, 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn when_every_backend_fails_the_answer_is_a_502() {
    let users = json_peer(503, 0, json!({})).await;
    let orders = peer(|_| async { answer(200, "text/html", "<html/>") }).await;
    let billing = json_peer(500, 0, json!({})).await;
    let gw = aggregate_gateway(&users, &orders, &billing, "").await;
    let r = get(gw.http_addr(), "/dashboard/7?q=x").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "aggregate_failed");
    gw.shutdown().await;
}
