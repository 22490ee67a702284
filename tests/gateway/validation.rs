//! Request validation through real sockets: JSON Schema on the body
//! (valid, invalid with the failing paths, oversized, too deep, not JSON, a
//! pathological pattern that stays linear), query and header checks.

use std::time::Duration;

use http::Request;
use http_body_util::Full;

use crate::support::*;

const ROUTE: &str = r#"
[routes.validate]
max_body_bytes = 4096
max_depth = 8
[routes.validate.body.POST]
type = "object"
required = ["amount", "currency"]
additionalProperties = false
[routes.validate.body.POST.properties.amount]
type = "integer"
minimum = 1
[routes.validate.body.POST.properties.currency]
enum = ["EUR", "USD"]
[routes.validate.body.POST.properties.memo]
type = "string"
pattern = "^(a+)+$"
[routes.validate.body.POST.properties.tags]
type = "array"
[routes.validate.query.page]
type = "integer"
[routes.validate.query.sort]
enum = ["asc", "desc"]
[routes.validate.headers.x-tenant]
required = true
pattern = "[a-z]{3,8}"
"#;

async fn validating_gateway() -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"api\"\nupstream = \"u\"\n{ROUTE}",
        b.addr
    );
    (b, gateway(&doc).await)
}

async fn post(addr: std::net::SocketAddr, path: &str, tenant: Option<&str>, body: impl Into<bytes::Bytes>) -> Reply {
    let mut req = Request::post(format!("http://{addr}{path}")).header("content-type", "application/json");
    if let Some(t) = tenant {
        req = req.header("x-tenant", t);
    }
    send(&client(), req.body(Full::new(body.into())).unwrap()).await
}

fn failures(r: &Reply) -> Vec<(String, String)> {
    let body = r.json();
    assert_eq!(body["error"], "invalid_request", "{body}");
    body["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["in"].as_str().unwrap().to_string(), f["path"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn a_valid_request_reaches_the_upstream_with_its_body() {
    let (b, gw) = validating_gateway().await;
    let body = r#"{"amount": 12, "currency": "EUR", "memo": "aaa", "tags": ["x"]}"#;
    let r = post(gw.http_addr(), "/pay?page=2&sort=asc", Some("acme"), body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_bytes"], body.len());
    // Methods without a schema are not read.
    assert_eq!(get_with(gw.http_addr(), "/pay", &[("x-tenant", "acme")]).await.status, 200);
    assert_eq!(b.control.requests(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn an_invalid_request_is_a_400_listing_every_failure_and_never_reaches_the_upstream() {
    let (b, gw) = validating_gateway().await;
    let r = post(gw.http_addr(), "/pay?page=two&sort=up", Some("ACME!"), r#"{"amount": 0, "extra": true}"#).await;
    assert_eq!(r.status, 400);
    let f = failures(&r);
    for expected in [
        ("header", "x-tenant"),
        ("query", "page"),
        ("query", "sort"),
        ("body", "/amount"),
        ("body", ""), // required currency, additional property
    ] {
        assert!(f.contains(&(expected.0.to_string(), expected.1.to_string())), "{expected:?} not in {f:?}");
    }
    let missing = post(gw.http_addr(), "/pay", None, r#"{"amount": 1, "currency": "USD"}"#).await;
    assert_eq!(failures(&missing), [("header".to_string(), "x-tenant".to_string())]);
    assert_eq!(b.control.requests(), 0);
    let m = metrics(gw.admin_addr).await;
    let refused = metric_value(
        &m,
        "meridian_transforms_total",
        &[("route", "api"), ("stage", "validation"), ("result", "refused")],
    );
    assert_eq!(refused, 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_deep_and_malformed_bodies_are_refused_before_parsing() {
    let (b, gw) = validating_gateway().await;
    let big = format!(r#"{{"amount": 1, "currency": "EUR", "memo": "{}"}}"#, "a".repeat(5000));
    let r = post(gw.http_addr(), "/pay", Some("acme"), big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    let deep = format!(r#"{{"amount": 1, "currency": "EUR", "tags": {}{}}}"#, "[".repeat(20), "]".repeat(20));
    let r = post(gw.http_addr(), "/pay", Some("acme"), deep).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["failures"][0]["message"].as_str().unwrap().contains("deeper than 8"));
    let r = post(gw.http_addr(), "/pay", Some("acme"), "{\"amount\": ").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["failures"][0]["message"].as_str().unwrap().starts_with("not JSON"));
    assert_eq!(b.control.requests(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_pathological_pattern_is_matched_in_linear_time() {
    let (_b, gw) = validating_gateway().await;
    // `^(a+)+$` against "aaa…ab" takes exponential time on a backtracking
    // engine; the route's engine answers at once.
    let memo = "a".repeat(3000) + "b";
    let body = format!(r#"{{"amount": 1, "currency": "EUR", "memo": "{memo}"}}"#);
    let r = tokio::time::timeout(Duration::from_secs(20), post(gw.http_addr(), "/pay", Some("acme"), body))
        .await
        .expect("answered without catastrophic backtracking");
    assert_eq!(r.status, 400);
    assert_eq!(failures(&r), [("body".to_string(), "/memo".to_string())]);
    gw.shutdown().await;
}

#[tokio::test]
async fn schemas_and_patterns_the_engine_cannot_run_are_refused_with_their_path() {
    for (route, path) in [
        ("[routes.validate.body.POST]\ntype = \"string\"\npattern = \"(?=a)b\"", "routes[0].validate.body.POST"),
        (
            "[routes.validate.body.POST]\n\"$ref\" = \"https://schemas.example.test/x.json\"",
            "routes[0].validate.body.POST",
        ),
        ("[routes.validate.body]\nPOST = \"{ not json\"", "routes[0].validate.body.POST"),
        ("[routes.validate.query.q]\npattern = \"(a)\\\\1\"", "routes[0].validate.query.q.pattern"),
    ] {
        let doc = format!(
            "[upstreams.u]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n[[routes]]\nname = \"api\"\nupstream = \"u\"\n{route}\n"
        );
        let parsed: meridian_core::config::GatewayDocument =
            meridian_core::config::parse(&doc, meridian_core::config::Format::Toml).unwrap();
        let errors = meridian_core::config::validate_document(parsed).unwrap_err();
        assert!(errors.0.iter().any(|e| e.path == path), "{path} not in {errors}");
    }
    // A schema written as a JSON string is accepted.
    let doc = "[upstreams.u]\ntargets = [{ address = \"127.0.0.1:9\" }]\n[[routes]]\nname = \"api\"\nupstream = \"u\"\n[routes.validate.body]\nPUT = '{\"type\": \"object\"}'\n";
    let parsed: meridian_core::config::GatewayDocument =
        meridian_core::config::parse(doc, meridian_core::config::Format::Toml).unwrap();
    assert!(meridian_core::config::validate_document(parsed).is_ok());
}
