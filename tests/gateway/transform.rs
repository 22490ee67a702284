//! Header and query transforms through real sockets: every operation and
//! template, their order, `add` against `replace`, response edits on misses
//! and cache hits, and skipped edits counted.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::*;

const SECRET: [u8; 32] = [9u8; 32];

fn token(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&SECRET)).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn transform_gateway(route: &str) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let doc = format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}]
[jwt_providers.hs]
issuer = "https://hs.test"
algorithms = ["HS256"]
keys = [{{ secret = "{}" }}]
[[routes]]
name = "api"
upstream = "u"
path_template = "/items/{{id}}"
{route}
"#,
        b.addr,
        base64::engine::general_purpose::STANDARD.encode(SECRET),
    );
    (b, gateway(&doc).await)
}

async fn call(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&client(), req.body(Full::default()).unwrap()).await
}

const ROUTE: &str = r#"
auth = { jwt = { providers = ["hs"] } }
[routes.transform.request.headers]
remove = ["x-debug"]
rename = { "x-old" = "x-new" }
replace = { "x-mode" = "gateway", "x-absent" = "never" }
add = { "x-ids" = "$(header.x-src)/$(query.page)/$(path.id)", "x-client" = "gateway", "x-who" = "$(consumer):$(claim.tier):$(claim.level)" }
append = { "x-trail" = "rid=$(request_id)" }
[routes.transform.request.query]
remove = ["debug"]
rename = { "q" = "search" }
replace = { "limit" = "50" }
add = { "from" = "$(header.x-src)", "page" = "1" }
append = { "tag" = "$(path.id) gw" }
[routes.transform.response.headers]
remove = ["x-backend"]
add = { "x-served-for" = "$(consumer)" }
append = { "x-request-copy" = "$(request_id)", "cache-control" = "no-transform" }
"#;

#[tokio::test]
async fn request_edits_apply_in_order_with_templates_from_the_request() {
    let (_b, gw) = transform_gateway(ROUTE).await;
    let jwt = token(json!({ "iss": "https://hs.test", "sub": "alice", "tier": "gold", "level": 3, "exp": now() + 60 }));
    let bearer = format!("Bearer {jwt}");
    let r = call(
        gw.http_addr(),
        "/items/42?q=rust&debug=1&limit=5&limit=6&page=7&tag=a&cache_control=private",
        &[
            ("authorization", &bearer),
            ("x-debug", "1"),
            ("x-old", "o1"),
            ("x-mode", "client"),
            ("x-src", "mobile"),
            ("x-client", "client-sent"),
            ("x-trail", "first"),
            ("x-request-id", "req-1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    let h = &echo["headers"];
    assert!(h.get("x-debug").is_none(), "removed");
    assert!(h.get("x-old").is_none() && h["x-new"] == "o1", "renamed, value kept");
    assert_eq!(h["x-mode"], "gateway", "replace overrides the client's value");
    assert!(h.get("x-absent").is_none(), "replace sets only what is present");
    assert_eq!(h["x-client"], "client-sent", "add never overrides the client");
    assert_eq!(h["x-ids"], "mobile/7/42", "header, query and path templates");
    assert_eq!(h["x-who"], "alice:gold:3", "consumer and claims (a number as JSON)");
    // The echo keeps the last value of a repeated header: the appended one.
    assert_eq!(h["x-trail"], "rid=req-1");
    // Untouched parameters keep their order and encoding; edited ones are form-encoded.
    assert_eq!(echo["query"], "search=rust&limit=50&page=7&tag=a&cache_control=private&from=mobile&tag=42+gw");
    // Response edits, templates rendered from the request.
    assert!(!r.headers.contains_key("x-backend"));
    assert_eq!(r.headers["x-served-for"], "alice");
    assert_eq!(r.headers["x-request-copy"], "req-1");
    let cc: Vec<_> = r.headers.get_all("cache-control").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(cc, ["private", "no-transform"], "append keeps the upstream's value");
    gw.shutdown().await;
}

#[tokio::test]
async fn remove_then_add_sets_a_fresh_value_and_rename_then_replace_edits_the_new_name() {
    let route = r#"
[routes.transform.request.headers]
remove = ["x-a"]
add = { "x-a" = "fresh" }
rename = { "x-b" = "x-c" }
replace = { "x-c" = "replaced" }
"#;
    let (_b, gw) = transform_gateway(route).await;
    let r = call(gw.http_addr(), "/items/1", &[("x-a", "client"), ("x-b", "old")]).await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-a"], "fresh");
    assert_eq!(h["x-c"], "replaced");
    assert!(h.get("x-b").is_none());
    gw.shutdown().await;
}

#[tokio::test]
async fn an_edit_without_its_value_is_skipped_and_counted() {
    let route = r#"
[routes.transform.request.headers]
add = { "x-user" = "$(consumer)", "x-src" = "$(query.src)" }
"#;
    let (_b, gw) = transform_gateway(route).await;
    let r = call(gw.http_addr(), "/items/1?src=web%20app", &[]).await;
    let h = &r.json()["headers"];
    assert!(h.get("x-user").is_none(), "no consumer: no header");
    assert_eq!(h["x-src"], "web app", "query values are decoded");
    let m = metrics(gw.admin_addr).await;
    let skipped =
        metric_value(&m, "meridian_transforms_total", &[("route", "api"), ("stage", "request"), ("result", "skipped")]);
    assert_eq!(skipped, 1.0, "{m}");
    gw.shutdown().await;
}

#[tokio::test]
async fn response_edits_reach_cache_hits_with_the_hit_requests_values() {
    let route = r#"
cache = { ttl = "60s" }
[routes.transform.response.headers]
add = { "x-for" = "$(header.x-caller)" }
"#;
    let (b, gw) = transform_gateway(route).await;
    let first = call(gw.http_addr(), "/items/9", &[("x-caller", "one")]).await;
    assert_eq!(first.headers["x-cache"], "MISS");
    assert_eq!(first.headers["x-for"], "one");
    let second = call(gw.http_addr(), "/items/9", &[("x-caller", "two")]).await;
    assert_eq!(second.headers["x-cache"], "HIT");
    assert_eq!(second.headers["x-for"], "two", "rendered for the request served, not the one stored");
    assert_eq!(b.control.requests(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_templates_and_framing_headers_are_refused_with_their_path() {
    let b = backend("b").await;
    for (route, path, reason) in [
        (
            "[routes.transform.request.headers]\nadd = { \"x-a\" = \"$(path.nope)\" }",
            "routes[0].transform.request.headers.add.x-a",
            "captures no `nope`",
        ),
        (
            "[routes.transform.request.query]\nappend = { \"a\" = \"$(cookie.x)\" }",
            "routes[0].transform.request.query.append.a",
            "unknown variable",
        ),
        (
            "[routes.transform.response.headers]\nremove = [\"content-length\"]",
            "routes[0].transform.response.headers.remove[0]",
            "framing header",
        ),
        (
            "[routes.transform.request.headers]\nreplace = { \"x-a\" = \"$(header.x\" }",
            "routes[0].transform.request.headers.replace.x-a",
            "unclosed variable",
        ),
    ] {
        let doc = format!(
            "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"api\"\nupstream = \"u\"\npath_template = \"/items/{{id}}\"\n{route}\n",
            b.addr
        );
        let parsed: meridian_core::config::GatewayDocument =
            meridian_core::config::parse(&doc, meridian_core::config::Format::Toml).unwrap();
        let errors = meridian_core::config::validate_document(parsed).unwrap_err();
        let text = errors.to_string();
        assert!(errors.0.iter().any(|e| e.path == path), "{path} not in {text}");
        assert!(text.contains(reason), "{reason} not in {text}");
    }
}

/// Every route example of `docs/transform.md` is a valid document once its
/// upstreams (and the identity provider it names) exist.
#[test]
fn the_examples_of_the_transform_page_validate() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/transform.md")).unwrap();
    let blocks: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("[[routes]]"))
        .collect();
    assert!(blocks.len() >= 6, "one example per capability");
    for block in blocks {
        let mut doc: toml::Table = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        let mut names = std::collections::BTreeSet::new();
        for r in doc["routes"].as_array().unwrap() {
            names.insert(r["upstream"].as_str().unwrap().to_string());
            let backends = r.get("aggregate").and_then(|a| a.get("backends")).and_then(|b| b.as_array());
            for b in backends.into_iter().flatten() {
                names.extend(b.get("upstream").and_then(|u| u.as_str()).map(str::to_string));
            }
        }
        let upstreams: toml::Table = names
            .into_iter()
            .map(|n| (n, toml::Value::Table(toml::from_str("targets = [{ address = \"127.0.0.1:9\" }]").unwrap())))
            .collect();
        doc.insert("upstreams".into(), toml::Value::Table(upstreams));
        let providers: toml::Table = toml::from_str(
            "[idp]\nissuer = \"https://idp.test\"\nalgorithms = [\"HS256\"]\nkeys = [{ secret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC1zZWNyZXQ=\" }]",
        )
        .unwrap();
        doc.insert("jwt_providers".into(), toml::Value::Table(providers));
        let parsed: meridian_core::config::GatewayDocument =
            meridian_core::config::parse(&toml::to_string(&doc).unwrap(), meridian_core::config::Format::Toml)
                .unwrap_or_else(|e| panic!("{e}\n{block}"));
        if let Err(e) = meridian_core::config::validate_document(parsed) {
            panic!("{e}\n{block}");
        }
    }
}
