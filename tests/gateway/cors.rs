//! CORS: preflights answered by the gateway (before authentication, and
//! advertising only methods someone may call), allowed and refused origins,
//! credentials, and `Vary: Origin` on every answer of a CORS route.

use http::Request;
use http_body_util::Full;

use crate::identity::{consumers, pepper_node};
use crate::support::*;

async fn cors_gateway(
    route: &str,
) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway, tempfile::NamedTempFile) {
    let b = backend("b").await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n{}\n[[routes]]\nname = \"api\"\nupstream = \"u\"\n{route}",
        b.addr,
        consumers()
    );
    let (f, node) = pepper_node();
    (b, gateway_with(&doc, &node).await, f)
}

async fn preflight(addr: std::net::SocketAddr, origin: &str, method: &str) -> Reply {
    let req = Request::options(format!("http://{addr}/x"))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "x-api-key, content-type")
        .body(Full::default())
        .unwrap();
    send(&client(), req).await
}

const ROUTE: &str = r#"
auth = { api_key = {} }
[routes.cors]
origins = ["https://app.example.test"]
origin_patterns = ["https://*.partner.test"]
methods = ["GET", "POST", "DELETE"]
headers = ["x-api-key", "content-type"]
expose_headers = ["x-request-id"]
allow_credentials = true
max_age = "10m"
[routes.access]
methods_by_group = { staff = ["GET", "POST"], readers = ["GET"] }
"#;

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_credentials() {
    let (b, gw, _f) = cors_gateway(ROUTE).await;
    let addr = gw.http_addr();
    for origin in ["https://app.example.test", "https://eu.partner.test", "HTTPS://APP.EXAMPLE.TEST:443"] {
        let r = preflight(addr, origin, "POST").await;
        assert_eq!(r.status, 204, "{origin}: {}", r.text());
        assert_eq!(r.headers["access-control-allow-origin"], origin);
        assert_eq!(r.headers["access-control-allow-credentials"], "true");
        // DELETE is configured, but no group may call it: not advertised.
        assert_eq!(r.headers["access-control-allow-methods"], "GET, POST");
        assert_eq!(r.headers["access-control-allow-headers"], "x-api-key, content-type");
        assert_eq!(r.headers["access-control-max-age"], "600");
        assert!(r.headers["vary"].to_str().unwrap().contains("Origin"));
    }
    assert_eq!(preflight(addr, "https://app.example.test", "DELETE").await.status, 403);
    assert_eq!(b.control.requests(), 0, "preflights are the gateway's");
    gw.shutdown().await;
}

#[tokio::test]
async fn refused_origins_get_no_cors_headers() {
    let (_b, gw, _f) = cors_gateway(ROUTE).await;
    let addr = gw.http_addr();
    for origin in [
        "https://evil.test",
        "null",
        "https://partner.test",
        "https://app.example.test.evil.test",
        "http://app.example.test",
    ] {
        let r = preflight(addr, origin, "GET").await;
        assert_eq!(r.status, 403, "{origin}");
        assert!(r.headers.get("access-control-allow-origin").is_none(), "{origin}");
    }
    // A simple request from a refused origin is served (the browser keeps
    // the answer from the page) but carries nothing that would let it read it.
    let r =
        get_with(addr, "/x", &[("origin", "https://evil.test"), ("x-api-key", "mk_alice-key-0123456789abcdefghij")])
            .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert!(r.headers["vary"].to_str().unwrap().contains("Origin"));
    let m = metrics(gw.admin_addr).await;
    assert_eq!(
        metric_value(&m, "meridian_cors_decisions_total", &[("route", "api"), ("result", "preflight_refused")]),
        5.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn answers_to_allowed_origins_carry_the_cors_headers_and_vary_even_on_401() {
    let (_b, gw, _f) = cors_gateway(ROUTE).await;
    let addr = gw.http_addr();
    let origin = "https://app.example.test";
    let r = get_with(addr, "/x", &[("origin", origin), ("x-api-key", "mk_alice-key-0123456789abcdefghij")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["access-control-allow-origin"], origin);
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    assert_eq!(r.headers["access-control-expose-headers"], "x-request-id");
    assert_eq!(r.headers["vary"], "Origin");
    // The script may read why it was refused.
    let r = get_with(addr, "/x", &[("origin", origin)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["access-control-allow-origin"], origin);
    assert_eq!(r.headers["vary"], "Origin");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_wildcard_with_credentials_is_refused_by_validation() {
    let b = backend("b").await;
    let gw = gateway(&format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"r\"\nupstream = \"u\"\n",
        b.addr
    ))
    .await;
    let doc = format!(
        "[upstreams.u]\ntargets = [{{ address = \"{}\" }}]\n[[routes]]\nname = \"r\"\nupstream = \"u\"\ncors = {{ origins = [\"*\"], allow_credentials = true, origin_patterns = [\"https://*.\"] }}\n",
        b.addr
    );
    let r = admin(gw.admin_addr, "PUT", "/config", &doc).await;
    assert_eq!(r.status, 422);
    let text = r.text();
    assert!(text.contains("routes[0].cors.origins[0]") && text.contains("allow_credentials"), "{text}");
    assert!(text.contains("routes[0].cors.origin_patterns[0]"), "{text}");
    gw.shutdown().await;
}

#[tokio::test]
async fn any_origin_without_credentials_is_star() {
    let (_b, gw, _f) = cors_gateway("cors = { origins = [\"*\"] }").await;
    let r = get_with(gw.http_addr(), "/x", &[("origin", "https://anyone.test")]).await;
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    assert!(r.headers.get("access-control-allow-credentials").is_none());
    gw.shutdown().await;
}
