//! Cache poisoning as an attacker tries it, against a cached route: every
//! form gets its own entry (or a 400), never another client's answer.

use crate::support::*;

/// `GET target` with `Host: host` and extra header lines; (status line,
/// X-Cache, the body's echo of what the backend saw).
async fn fetch(
    addr: std::net::SocketAddr,
    target: &str,
    host: &str,
    extra: &str,
) -> (String, String, serde_json::Value) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    let text = raw_exchange(addr, req.as_bytes(), false).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    let x_cache = head
        .lines()
        .find_map(|l| l.strip_prefix("x-cache: ").or_else(|| l.strip_prefix("X-Cache: ")))
        .unwrap_or("")
        .to_string();
    (status, x_cache, serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null))
}

async fn cached_gateway(
    route_extra: &str,
) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"c\"\nupstream = \"u\"\ncache = {{ ttl = \"60s\", key_headers = [\"x-variant\"] }}\n{route_extra}",
        b.addr
    );
    (b, gateway(&doc).await)
}

#[tokio::test]
async fn a_host_that_is_not_an_authority_gets_400_and_is_not_cached() {
    let (b, gw) = cached_gateway("").await;
    let addr = gw.http_addr();
    for host in ["site.test:\"><script>x</script>", "site.test:", "user@site.test", "site test"] {
        let (status, _, _) = fetch(addr, "/static/p", host, "").await;
        assert!(status.contains(" 400 "), "Host {host:?}: {status}");
    }
    assert_eq!(b.control.requests(), 0);
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_bad_requests_total", &[("reason", "bad_host")]), 4.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn another_port_is_another_entry() {
    let (_b, gw) = cached_gateway("").await;
    let addr = gw.http_addr();
    let (_, x, echo) = fetch(addr, "/static/p", "site.test:1337", "").await;
    assert_eq!((x.as_str(), echo["headers"]["host"].as_str()), ("MISS", Some("site.test:1337")));
    let (_, x, echo) = fetch(addr, "/static/p", "site.test", "").await;
    assert_eq!(x, "MISS", "site.test got the answer stored for site.test:1337");
    assert_eq!(echo["headers"]["host"], "site.test");
    assert_eq!(fetch(addr, "/static/p", "site.test", "").await.1, "HIT");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_query_cannot_forge_a_key_header() {
    let (_b, gw) = cached_gateway("").await;
    let addr = gw.http_addr();
    // Under a key of joined strings these two were one key.
    let (_, x, _) = fetch(addr, "/p?q|x-variant=evil", "site.test", "").await;
    assert_eq!(x, "MISS");
    let (_, x, echo) = fetch(addr, "/p?q", "site.test", "X-Variant: evil|x-variant=\r\n").await;
    assert_eq!(x, "MISS", "the victim was served the attacker's entry");
    assert_eq!(echo["headers"]["x-variant"], "evil|x-variant=");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_absolute_form_request_is_keyed_and_forwarded_with_its_own_authority() {
    let (_b, gw) = cached_gateway("").await;
    let addr = gw.http_addr();
    let (status, x, echo) = fetch(addr, "http://other.test/static/p", "site.test", "").await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(x, "MISS");
    assert_eq!(echo["headers"]["host"], "other.test", "the upstream got another Host than the key");
    // site.test's clients do not get other.test's entry...
    let (_, x, echo) = fetch(addr, "/static/p", "site.test", "").await;
    assert_eq!((x.as_str(), echo["headers"]["host"].as_str()), ("MISS", Some("site.test")));
    // ...and other.test's get exactly what other.test's upstream answered.
    assert_eq!(fetch(addr, "/static/p", "other.test", "").await.1, "HIT");
    gw.shutdown().await;
}

#[tokio::test]
async fn answers_to_requests_with_cookies_are_stored_only_when_public() {
    let (_b, gw) = cached_gateway("").await;
    let addr = gw.http_addr();
    fetch(addr, "/me", "site.test", "Cookie: session=alice\r\n").await;
    let (_, x, _) = fetch(addr, "/me", "site.test", "").await;
    assert_eq!(x, "MISS", "an answer to a request with a cookie was stored without being public");
    let shared = "/shared?cache_control=public,%20max-age%3D60";
    fetch(addr, shared, "site.test", "Cookie: session=alice\r\n").await;
    assert_eq!(fetch(addr, shared, "site.test", "").await.1, "HIT");
    gw.shutdown().await;
}

#[tokio::test]
async fn huge_max_age_and_long_keys_do_no_harm() {
    let (b, gw) = cached_gateway("").await;
    let addr = gw.http_addr();
    let forever = "/forever?cache_control=max-age%3D18446744073709551615";
    assert!(fetch(addr, forever, "site.test", "").await.0.contains(" 200 "));
    assert_eq!(fetch(addr, forever, "site.test", "").await.1, "HIT");
    // A key over the cap is served, never stored.
    let long = format!("/long?{}", "a".repeat(5000));
    let before = b.control.requests();
    assert!(fetch(addr, &long, "site.test", "").await.0.contains(" 200 "));
    assert!(fetch(addr, &long, "site.test", "").await.0.contains(" 200 "));
    assert_eq!(b.control.requests(), before + 2);
    let m = metrics(gw.admin_addr).await;
    assert!(metric_value(&m, "meridian_cache_events_total", &[("route", "c"), ("event", "bypass")]) >= 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_cache_hit_carries_this_request_s_rate_limit_state() {
    let (_b, gw) =
        cached_gateway("rate_limit = { key = \"route\", limits = [{ requests = 10, per = \"60s\" }] }").await;
    let addr = gw.http_addr();
    let req = "GET /r HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n";
    let first = raw_exchange(addr, req.as_bytes(), true).await.to_ascii_lowercase();
    let second = raw_exchange(addr, req.as_bytes(), true).await.to_ascii_lowercase();
    assert!(second.contains("x-cache: hit"), "{second}");
    let state = |t: &str| t.lines().filter(|l| l.starts_with("ratelimit:")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(state(&first).len(), 1, "{first}");
    assert_eq!(state(&second).len(), 1, "{second}");
    assert_ne!(state(&first), state(&second), "the hit carried the stored request's limit state");
    gw.shutdown().await;
}

#[tokio::test]
async fn headers_the_client_marks_hop_by_hop_are_not_keyed_on() {
    let (_b, gw) = cached_gateway("").await;
    let addr = gw.http_addr();
    // The upstream never sees X-Variant here, so the entry is the one for no X-Variant.
    let (_, x, echo) = fetch(addr, "/h", "site.test", "X-Variant: evil\r\nConnection: x-variant\r\n").await;
    assert_eq!(x, "MISS");
    assert!(echo["headers"]["x-variant"].is_null(), "{echo}");
    assert_eq!(fetch(addr, "/h", "site.test", "").await.1, "HIT");
    gw.shutdown().await;
}
