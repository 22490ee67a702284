use crate::support::*;

#[tokio::test]
async fn admin_api_guards_and_applies_documents() {
    let a = backend("a").await;
    let gw = gateway(&format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"r\"\nupstream = \"u\"",
        a.addr
    ))
    .await;
    let admin_addr = gw.admin_addr;

    assert_eq!(get(admin_addr, "/healthz").await.status, 200);
    assert_eq!(get(admin_addr, "/readyz").await.status, 200);
    assert!(get(admin_addr, "/metrics").await.text().contains("meridian_config_version"));
    assert_eq!(get(admin_addr, "/config").await.status, 401);
    assert_eq!(get_with(admin_addr, "/upstreams", &[("authorization", "Bearer wrong")]).await.status, 401);

    let r = admin(admin_addr, "GET", "/config", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], 1);
    assert_eq!(r.json()["routes"][0]["name"], "r");

    // JSON documents are accepted too, and If-Match makes the write compare-and-set.
    let doc = serde_json::json!({
        "upstreams": { "u": { "targets": [{ "address": a.addr.to_string() }] } },
        "routes": [{ "name": "json-route", "upstream": "u", "path_prefix": "/j" }],
    });
    let put = |if_match: &'static str| {
        http::Request::put(format!("http://{admin_addr}/config"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .header("if-match", if_match)
            .body(doc.to_string().into())
            .unwrap()
    };
    let r = send(&client(), put("7")).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["current_version"], 1);
    let r = send(&client(), put("1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], 2);
    assert_eq!(get(gw.http_addr(), "/j/x").await.status, 200);
    assert_eq!(get(gw.http_addr(), "/").await.status, 404);

    let m = metrics(admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_config_version", &[]), 2.0);
    assert_eq!(metric_value(&m, "meridian_config_applies_total", &[("result", "conflict")]), 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn admin_writes_are_refused_without_a_configured_token() {
    let a = backend("a").await;
    let node = format!(
        "[node]\nname = \"n\"\n[[listeners]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\ntoken_env = \"MERIDIAN_TEST_UNSET_TOKEN\"\n[gateway.upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n",
        a.addr
    );
    let cfg = meridian_core::config::validate_node(
        meridian_core::config::parse(&node, meridian_core::config::Format::Toml).unwrap(),
    )
    .unwrap();
    let gw = meridian_region::gateway::start(cfg).await.unwrap();
    let r = admin(gw.admin_addr, "PUT", "/config", "").await;
    assert_eq!(r.status, 403);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_short_admin_token_from_the_environment_is_refused() {
    std::env::set_var("MERIDIAN_TEST_SHORT_TOKEN", "short");
    let node = node_config_full("", "", "").into_inner();
    let mut node = node;
    node.admin.token = None;
    node.admin.token_env = "MERIDIAN_TEST_SHORT_TOKEN".into();
    let node = meridian_core::config::validate_node(node).unwrap();
    let err = meridian_region::gateway::start(node).await.err().expect("refused").to_string();
    assert!(err.contains("admin.token_env") && err.contains("at least 16 bytes"), "{err}");
}
