//! Consumers, API keys, authorization and IP rules through real sockets: a
//! gateway with a pepper file, a backend that echoes what it received.

use std::io::Write;

use crate::support::*;
use meridian_core::apikey::Pepper;

const PEPPER: &str = "test-pepper-0123456789abcdef";
const ALICE_KEY: &str = "mk_alice-key-0123456789abcdefghij";
const BOB_KEY: &str = "mk_bob-key-0123456789abcdefghijkl";
const CAROL_KEY: &str = "mk_carol-key-0123456789abcdefghij";

/// A node-file fragment naming a pepper file (kept for the test's life).
pub fn pepper_node() -> (tempfile::NamedTempFile, String) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(PEPPER.as_bytes()).unwrap();
    let text = format!("[identity]\npepper_file = \"{}\"\n", f.path().display());
    (f, text)
}

pub fn consumers() -> String {
    let p = Pepper::new(PEPPER.as_bytes());
    format!(
        r#"
[[consumers]]
name = "alice"
groups = ["staff", "readers"]
api_keys = [{{ id = "alice-1", hash = "{}", prefix = "mk_alice" }}]

[[consumers]]
name = "bob"
groups = ["readers"]
api_keys = [{{ id = "bob-1", hash = "{}", prefix = "mk_bob-k" }}]

[[consumers]]
name = "guest"
"#,
        p.hash_hex(ALICE_KEY.as_bytes()),
        p.hash_hex(BOB_KEY.as_bytes())
    )
}

async fn keyed_gateway(
    route_extra: &str,
) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway, tempfile::NamedTempFile) {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n{}\n[[routes]]\nname = \"api\"\nupstream = \"u\"\n{route_extra}",
        b.addr,
        consumers()
    );
    let (f, node) = pepper_node();
    let gw = gateway_with(&doc, &node).await;
    (b, gw, f)
}

#[tokio::test]
async fn an_api_key_names_its_consumer_and_never_reaches_the_upstream() {
    let (_b, gw, _f) = keyed_gateway("auth = { api_key = { header = \"x-api-key\", query = \"apikey\" } }").await;
    let addr = gw.http_addr();

    let r = get(addr, "/x").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "ApiKey realm=\"meridian\"");
    assert_eq!(r.json()["error"], "unauthorized");

    let wrong = "mk_wrong-key-0123456789abcdefghij";
    let r = get_with(addr, "/x", &[("x-api-key", wrong)]).await;
    assert_eq!(r.status, 401);
    assert!(!r.text().contains(wrong), "the body echoes the key: {}", r.text());

    // Client-sent identity headers are not believed.
    let r =
        get_with(addr, "/x", &[("x-api-key", ALICE_KEY), ("x-consumer-name", "root"), ("x-credential-id", "x")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["headers"]["x-consumer-name"], "alice");
    assert_eq!(echo["headers"]["x-credential-id"], "alice-1");
    assert!(echo["headers"].get("x-api-key").is_none(), "key forwarded: {echo}");

    // From the query: taken out of what the upstream (and the cache key) sees.
    let r = get(addr, &format!("/x?a=1&apikey={BOB_KEY}&b=2")).await;
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["headers"]["x-consumer-name"], "bob");
    assert_eq!(echo["query"], "a=1&b=2");

    let m = metrics(gw.admin_addr).await;
    let d = |method: &str, result: &str| {
        metric_value(&m, "meridian_auth_decisions_total", &[("route", "api"), ("method", method), ("result", result)])
    };
    assert_eq!((d("api_key", "ok"), d("api_key", "invalid"), d("none", "missing")), (2.0, 1.0, 1.0));
    assert!(!m.contains(ALICE_KEY) && !m.contains(wrong));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_cookie_key_is_hidden_and_other_cookies_pass() {
    let (_b, gw, _f) = keyed_gateway("auth = { api_key = { cookie = \"key\" } }").await;
    let r = get_with(gw.http_addr(), "/x", &[("cookie", &format!("a=1; key={ALICE_KEY}; b=2"))]).await;
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["headers"]["x-consumer-name"], "alice");
    assert_eq!(echo["headers"]["cookie"], "a=1; b=2");
    gw.shutdown().await;
}

#[tokio::test]
async fn without_credentials_the_anonymous_consumer_calls_but_a_bad_key_is_refused() {
    let (_b, gw, _f) = keyed_gateway("auth = { api_key = {}, anonymous = \"guest\" }").await;
    let addr = gw.http_addr();
    let r = get(addr, "/x").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-consumer-name"], "guest");
    assert_eq!(r.json()["headers"]["x-credential-id"], "anonymous");
    let r = get_with(addr, "/x", &[("x-api-key", "mk_not-a-key")]).await;
    assert_eq!(r.status, 401, "an invalid key fell back to anonymous");
    gw.shutdown().await;
}

#[tokio::test]
async fn authorization_by_consumer_group_method_and_deny() {
    let route = r#"
auth = { api_key = {} }
[routes.access]
allow = ["group:readers"]
deny = ["consumer:guest"]
methods_by_group = { staff = ["GET", "POST"], readers = ["GET"] }
forward_groups = true
"#;
    let (_b, gw, _f) = keyed_gateway(route).await;
    let addr = gw.http_addr();
    let post = |key: &'static str| {
        let req = http::Request::post(format!("http://{addr}/x"))
            .header("x-api-key", key)
            .body(http_body_util::Full::default())
            .unwrap();
        async move { send(&client(), req).await }
    };
    let r = get_with(addr, "/x", &[("x-api-key", BOB_KEY)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-consumer-groups"], "readers");
    let r = post(BOB_KEY).await;
    assert_eq!(r.status, 403, "readers may not POST");
    assert_eq!(r.json()["error"], "forbidden");
    assert_eq!(post(ALICE_KEY).await.status, 200, "staff may POST");
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_access_decisions_total", &[("route", "api"), ("result", "method")]), 1.0);
    assert_eq!(metric_value(&m, "meridian_access_decisions_total", &[("route", "api"), ("result", "allowed")]), 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_consumer_outside_allow_gets_403() {
    let (_b, gw, _f) = keyed_gateway("auth = { api_key = {} }\naccess = { allow = [\"group:staff\"] }").await;
    let addr = gw.http_addr();
    assert_eq!(get_with(addr, "/x", &[("x-api-key", ALICE_KEY)]).await.status, 200);
    assert_eq!(get_with(addr, "/x", &[("x-api-key", BOB_KEY)]).await.status, 403);
    gw.shutdown().await;
}

#[tokio::test]
async fn api_keys_without_a_pepper_are_refused_and_the_old_document_keeps_serving() {
    let b = backend("b").await;
    let plain = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"r\"\nupstream = \"u\"\n",
        b.addr
    );
    let gw = gateway(&plain).await;
    let with_keys = format!("{plain}{}", consumers());
    let r = admin(gw.admin_addr, "PUT", "/config", &with_keys).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("pepper"), "{}", r.text());
    assert_eq!(get(gw.http_addr(), "/x").await.status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn ip_rules_admit_networks_and_deny_first() {
    let b = backend("b").await;
    let doc = format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}]
[[routes]]
name = "open"
path_prefix = "/open"
upstream = "u"
ip_rules = {{ allow = ["127.0.0.0/8"] }}
[[routes]]
name = "closed"
path_prefix = "/closed"
upstream = "u"
ip_rules = {{ allow = ["10.0.0.0/8"] }}
[[routes]]
name = "denied"
path_prefix = "/denied"
upstream = "u"
ip_rules = {{ allow = ["127.0.0.0/8"], deny = ["127.0.0.1/32"] }}
[[routes]]
name = "peer"
path_prefix = "/peer"
upstream = "u"
ip_rules = {{ allow = ["10.0.0.0/8"], source = "peer" }}
"#,
        b.addr
    );
    let listener = "forwarded_for = true\ntrusted_proxies = [\"127.0.0.1/32\"]";
    let gw = gateway_listener(&doc, listener).await;
    let addr = gw.http_addr();
    assert_eq!(get(addr, "/open").await.status, 200);
    let r = get(addr, "/closed").await;
    assert_eq!((r.status.as_u16(), r.json()["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(get(addr, "/denied").await.status, 403);
    // Through the trusted proxy on 127.0.0.1, the client is the forwarded address...
    assert_eq!(get_with(addr, "/closed", &[("x-forwarded-for", "10.1.2.3")]).await.status, 200);
    assert_eq!(get_with(addr, "/denied", &[("x-forwarded-for", "::ffff:127.0.0.2")]).await.status, 200);
    // ...unless the route looks at the socket's peer.
    assert_eq!(get_with(addr, "/peer", &[("x-forwarded-for", "10.1.2.3")]).await.status, 403);
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_ip_rule_decisions_total", &[("scope", "closed"), ("result", "denied")]), 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_consumer_is_limited_by_its_own_limits_and_counted_under_a_bounded_label() {
    let b = backend("b").await;
    let p = Pepper::new(PEPPER.as_bytes());
    let doc = format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}]
[[consumers]]
name = "alice"
limits = [{{ requests = 2, per = "1m" }}]
api_keys = [{{ id = "alice-1", hash = "{}", prefix = "mk_alice" }}]
[[consumers]]
name = "bob"
api_keys = [{{ id = "bob-1", hash = "{}", prefix = "mk_bob-k" }}]
[[consumers]]
name = "carol"
groups = ["partners"]
api_keys = [{{ id = "carol-1", hash = "{}", prefix = "mk_carol" }}]
[group_limits]
partners = [{{ requests = 3, per = "1m" }}]
[[routes]]
name = "api"
upstream = "u"
auth = {{ api_key = {{}} }}
rate_limit = {{ key = "consumer", limits = [{{ requests = 5, per = "1m" }}] }}
"#,
        b.addr,
        p.hash_hex(ALICE_KEY.as_bytes()),
        p.hash_hex(BOB_KEY.as_bytes()),
        p.hash_hex(CAROL_KEY.as_bytes())
    );
    let (_f, node) = pepper_node();
    // The first lines of the extra text land in the node file's [telemetry].
    let gw = gateway_with(&doc, &format!("consumer_labels = 1\n{node}")).await;
    let addr = gw.http_addr();
    let statuses = |key: &'static str, n: usize| async move {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(get_with(addr, "/x", &[("x-api-key", key)]).await.status.as_u16());
        }
        out
    };
    assert_eq!(statuses(ALICE_KEY, 3).await, [200, 200, 429], "alice's own limit");
    assert_eq!(statuses(BOB_KEY, 6).await, [200, 200, 200, 200, 200, 429], "the route's limit, bob's own budget");
    assert_eq!(statuses(CAROL_KEY, 4).await, [200, 200, 200, 429], "her group's limit");
    let m = metrics(gw.admin_addr).await;
    let c = |consumer: &str, class: &str| {
        metric_value(
            &m,
            "meridian_consumer_requests_total",
            &[("consumer", consumer), ("route", "api"), ("status_class", class)],
        )
    };
    // One label (the first consumer by name); bob is `_other`.
    assert_eq!((c("alice", "2xx"), c("alice", "4xx")), (2.0, 1.0));
    assert_eq!((c("_other", "2xx"), c("_other", "4xx")), (8.0, 2.0));
    assert!(!m.contains("consumer=\"bob\""));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_listener_closes_connections_from_addresses_it_does_not_serve() {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"r\"\nupstream = \"u\"\n",
        b.addr
    );
    let gw = gateway_listener(&doc, "ip_rules = { allow = [\"10.0.0.0/8\"] }").await;
    let answer = raw(gw.http_addr(), b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert!(answer.is_empty(), "served: {answer}");
    assert_eq!(b.control.requests(), 0);
    let m = metrics(gw.admin_addr).await;
    assert_eq!(
        metric_value(&m, "meridian_ip_rule_decisions_total", &[("scope", "listener:http"), ("result", "denied")]),
        1.0
    );
    gw.shutdown().await;
    let open = gateway_listener(&doc, "ip_rules = { allow = [\"127.0.0.0/8\", \"::1/128\"] }").await;
    assert_eq!(get(open.http_addr(), "/").await.status, 200);
    open.shutdown().await;
}
