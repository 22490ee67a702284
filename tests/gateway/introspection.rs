//! OAuth 2.0 token introspection against a real authorization server
//! started by the test: active and inactive tokens, the answer cache and
//! its negative entries, single flight, `exp` bounding the cache, and an
//! unreachable server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::support::*;

/// `Basic base64("gateway:s3cret-value")`.
const BASIC: &str = "Basic Z2F0ZXdheTpzM2NyZXQtdmFsdWU=";

struct AuthServer {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    up: Arc<AtomicBool>,
}

impl AuthServer {
    /// Tokens `good-<sub>` are active for 5 minutes, `brief-<sub>` for 2 s;
    /// others inactive. Each answer takes 100 ms.
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s =
            Self { addr: listener.local_addr().unwrap(), calls: Arc::default(), up: Arc::new(AtomicBool::new(true)) };
        let (calls, up) = (s.calls.clone(), s.up.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (calls, up) = (calls.clone(), up.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (calls, up) = (calls.clone(), up.clone());
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            let authorized = req.headers().get("authorization").is_some_and(|v| v == BASIC);
                            let form = String::from_utf8(req.into_body().collect().await.unwrap().to_bytes().to_vec())
                                .unwrap();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let token =
                                form.split('&').find_map(|p| p.strip_prefix("token=")).unwrap_or("").to_string();
                            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
                            let (status, body) = if !up.load(Ordering::SeqCst) {
                                (503, String::new())
                            } else if !authorized {
                                (401, "{\"error\":\"invalid_client\"}".to_string())
                            } else if let Some(sub) = token.strip_prefix("good-") {
                                (
                                    200,
                                    format!(
                                        "{{\"active\":true,\"sub\":\"{sub}\",\"scope\":\"read\",\"exp\":{}}}",
                                        now + 300
                                    ),
                                )
                            } else if let Some(sub) = token.strip_prefix("brief-") {
                                (200, format!("{{\"active\":true,\"sub\":\"{sub}\",\"exp\":{}}}", now + 2))
                            } else {
                                (200, "{\"active\":false}".to_string())
                            };
                            let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        s
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn gateway_for(
    server: &AuthServer,
    route_extra: &str,
) -> (meridian_lab::backend::Backend, meridian_region::gateway::RunningGateway) {
    let b = backend("b").await;
    let doc = format!(
        r#"
[upstreams.u]
targets = [{{ address = "{}" }}]
[introspection.idp]
endpoint = "http://{}/oauth2/introspect"
client_id = "gateway"
client_secret = "s3cret-value"
ttl = "60s"
negative_ttl = "1s"
[[routes]]
name = "api"
upstream = "u"
auth = {{ introspection = {{ provider = "idp" }} }}
{route_extra}
"#,
        b.addr, server.addr
    );
    (b, gateway(&doc).await)
}

async fn call(addr: SocketAddr, token: &str) -> Reply {
    get_with(addr, "/x", &[("authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test]
async fn active_tokens_pass_once_asked_and_inactive_ones_get_401() {
    let server = AuthServer::start().await;
    let (_b, gw) = gateway_for(&server, "access = { required_scopes = [\"read\"] }").await;
    let addr = gw.http_addr();
    let r = call(addr, "good-alice").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-consumer-name"], "alice");
    assert_eq!(r.json()["headers"]["x-credential-id"], "introspection:idp");
    assert_eq!(call(addr, "good-alice").await.status, 200);
    assert_eq!(server.calls(), 1, "the second request was answered from the cache");
    let r = call(addr, "revoked-token").await;
    assert_eq!(r.status, 401);
    assert!(r.headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    assert_eq!(call(addr, "revoked-token").await.status, 401);
    assert_eq!(server.calls(), 2, "inactive answers are cached too");
    // Negative entries are short: asked again after negative_ttl.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(call(addr, "revoked-token").await.status, 401);
    assert_eq!(server.calls(), 3);
    let m = metrics(gw.admin_addr).await;
    assert_eq!(metric_value(&m, "meridian_introspection_total", &[("endpoint", "idp"), ("result", "cached")]), 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_token_ask_once() {
    let server = AuthServer::start().await;
    let (_b, gw) = gateway_for(&server, "").await;
    let addr = gw.http_addr();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        tasks.spawn(async move { call(addr, "good-bob").await.status.as_u16() });
    }
    while let Some(s) = tasks.join_next().await {
        assert_eq!(s.unwrap(), 200);
    }
    assert_eq!(server.calls(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_token_is_not_believed_past_its_exp() {
    let server = AuthServer::start().await;
    let (_b, gw) = gateway_for(&server, "").await;
    let addr = gw.http_addr();
    assert_eq!(call(addr, "brief-carol").await.status, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let _ = call(addr, "brief-carol").await;
    assert_eq!(server.calls(), 2, "the cached answer outlived the token's exp");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_server_is_503_and_nothing_is_cached() {
    let server = AuthServer::start().await;
    let (_b, gw) = gateway_for(&server, "").await;
    let addr = gw.http_addr();
    server.up.store(false, Ordering::SeqCst);
    let r = call(addr, "good-dave").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "auth_unavailable");
    server.up.store(true, Ordering::SeqCst);
    assert_eq!(call(addr, "good-dave").await.status, 200);
    gw.shutdown().await;
}
