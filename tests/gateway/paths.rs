//! Path spellings an attacker tries against a limited `/login`, a catch-all
//! and an `/api` → `/v1` rewrite: every spelling reaches the route its
//! canonical form reaches, and the upstream gets the canonical path.

use crate::support::*;

/// A request with `target` as written; the status line and, when the
/// backend answered, the path it saw.
async fn send_raw(addr: std::net::SocketAddr, target: &str) -> (String, Option<String>) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n");
    let text = raw_exchange(addr, req.as_bytes(), false).await;
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let path = serde_json::from_str::<serde_json::Value>(body.trim())
        .ok()
        .and_then(|v| v["path"].as_str().map(str::to_string));
    (status, path)
}

async fn attacked_gateway() -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let doc = format!(
        r#"
[upstreams.u]
targets = [{{ address = "{addr}" }}]

[[routes]]
name = "login"
path_exact = "/login"
upstream = "u"
rate_limit = {{ key = "route", limits = [{{ requests = 2, per = "60s" }}] }}

[[routes]]
name = "api"
path_prefix = "/api"
rewrite = "/v1"
upstream = "u"

[[routes]]
name = "all"
upstream = "u"
"#,
        addr = b.addr
    );
    (b, gateway(&doc).await)
}

#[tokio::test]
async fn no_spelling_of_a_limited_path_escapes_its_limit() {
    let (_b, gw) = attacked_gateway().await;
    let addr = gw.http_addr();
    for _ in 0..2 {
        assert!(send_raw(addr, "/login").await.0.contains(" 200 "));
    }
    assert!(send_raw(addr, "/login").await.0.contains(" 429 "), "the limit is not spent");
    for spelling in
        ["//login", "/%6cogin", "/%6Cogin", "/./login", "/x/../login", "/login;jsessionid=1", "/x/%2e%2e/login"]
    {
        let (status, seen) = send_raw(addr, spelling).await;
        assert!(status.contains(" 429 "), "{spelling} was answered {status} (backend saw {seen:?})");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn the_upstream_gets_the_canonical_path_and_rewrites_stay_in_their_prefix() {
    let (_b, gw) = attacked_gateway().await;
    let addr = gw.http_addr();
    for (target, expected) in [
        ("/api/users", "/v1/users"),
        ("/api/../admin", "/admin"),
        ("/api/%2e%2e/admin", "/admin"),
        ("/api/%2E%2E/admin", "/admin"),
        ("/api//x//y", "/v1/x/y"),
        ("/a%c3%a9", "/a%C3%A9"),
        ("/static/%7euser", "/static/~user"),
    ] {
        let (status, seen) = send_raw(addr, target).await;
        assert!(status.contains(" 200 "), "{target}: {status}");
        assert_eq!(seen.as_deref(), Some(expected), "{target}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn paths_that_cannot_be_made_canonical_get_400_and_are_counted() {
    let (b, gw) = attacked_gateway().await;
    let addr = gw.http_addr();
    let before = b.control.requests();
    for target in ["/../etc/passwd", "/a/../../b", "/a%2fb", "/a%2F..%2Fb", "/a%5cb", "/a%00b", "/a%zz", "/a%4"] {
        let (status, _) = send_raw(addr, target).await;
        assert!(status.contains(" 400 "), "{target} was answered {status}");
    }
    assert_eq!(b.control.requests(), before, "a refused path reached the backend");
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_bad_requests_total", &[("reason", "bad_path")]), 8.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_listener_may_keep_encoded_separators_and_slashes() {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"all\"\nupstream = \"u\"",
        b.addr
    );
    let node = "merge_slashes = false\nencoded_separators = \"keep\"\npath_parameters = \"reject\"";
    let gw = gateway_listener(&doc, node).await;
    let addr = gw.http_addr();
    assert_eq!(send_raw(addr, "/a%2fb").await.1.as_deref(), Some("/a%2Fb"));
    assert_eq!(send_raw(addr, "/a//b").await.1.as_deref(), Some("/a//b"));
    assert!(send_raw(addr, "/login;x=1").await.0.contains(" 400 "));
    gw.shutdown().await;
}
