use crate::support::*;

#[tokio::test]
async fn routes_rewrite_and_forwarding_headers() {
    let users = backend("users").await;
    let orders = backend("orders").await;
    let gw = gateway(&format!(
        r#"
[upstreams.users]
targets = [{{ address = "{}" }}]
[upstreams.orders]
targets = [{{ address = "{}" }}]

[[routes]]
name = "users-by-id"
path_template = "/users/{{id}}/profile"
rewrite = "/v2/profiles/{{id}}"
upstream = "users"

[[routes]]
name = "api"
hosts = ["api.example.test"]
path_prefix = "/api"
strip_prefix = true
upstream = "orders"

[[routes]]
name = "orders-post"
path_prefix = "/orders"
methods = ["POST"]
upstream = "orders"

[[routes]]
name = "beta"
path_prefix = "/orders"
headers = {{ x-beta = "*" }}
upstream = "users"

[[routes]]
name = "wild"
hosts = ["*.shop.test"]
upstream = "orders"
preserve_host = false
"#,
        users.addr, orders.addr
    ))
    .await;
    let addr = gw.http_addr();

    let r = get(addr, "/users/42/profile?full=1").await;
    assert_eq!(r.backend(), "users");
    let v = r.json();
    assert_eq!(v["path"], "/v2/profiles/42");
    assert_eq!(v["query"], "full=1");

    let r = get_with(addr, "/api/items", &[("host", "API.example.test:8080")]).await;
    assert_eq!(r.backend(), "orders");
    assert_eq!(r.json()["path"], "/items");

    // Without the host the prefix route does not match.
    assert_eq!(get(addr, "/api/items").await.status, 404);

    let c = client();
    let r = send(&c, http::Request::post(format!("http://{addr}/orders")).body("{}".into()).unwrap()).await;
    assert_eq!(r.backend(), "orders");
    let r = get_with(addr, "/orders", &[("x-beta", "1")]).await;
    assert_eq!(r.backend(), "users");
    assert_eq!(get(addr, "/orders").await.status, 404);

    let r = get_with(
        addr,
        "/cart",
        &[
            ("host", "eu.shop.test"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-request-id", "req-abc-1"),
            ("connection", "x-private"),
            ("x-private", "secret"),
        ],
    )
    .await;
    assert_eq!(r.headers["x-request-id"], "req-abc-1");
    assert_eq!(r.headers["via"], "1.1 meridian");
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "eu.shop.test");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-request-id"], "req-abc-1");
    assert_eq!(h["host"], orders.addr.to_string(), "preserve_host = false sends the target");
    assert!(h.get("x-private").is_none(), "headers named by Connection are hop-by-hop");

    let r = get(addr, "/nothing-here").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no_route");
    let m = metrics(gw.admin_addr).await;
    assert!(metric_value(&m, "meridian_requests_total", &[("route", "_unmatched"), ("class", "4xx")]) >= 3.0);
    assert_eq!(metric_value(&m, "meridian_requests_total", &[("route", "users-by-id"), ("class", "2xx")]), 1.0);
    gw.shutdown().await;
}
