//! Helpers shared by the integration tests: real servers on 127.0.0.1:0 and
//! small HTTP clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use meridian_core::config::{self, Format, NodeConfig, Validated};
use meridian_lab::backend::Backend;
use meridian_region::gateway::RunningGateway;

pub const TOKEN: &str = "test-admin-token-0123456789";

pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
    });
}

pub async fn backend(name: &str) -> Backend {
    meridian_lab::backend::start("127.0.0.1:0".parse().unwrap(), name).await.unwrap()
}

/// A node file around `doc` (a gateway document in TOML), listening on port 0.
pub fn node_config(doc: &str, extra_node: &str) -> Validated<NodeConfig> {
    node_config_full(doc, "", extra_node)
}

/// As [`node_config`], with `listener` lines in the listener's table.
pub fn node_config_full(doc: &str, listener: &str, extra_node: &str) -> Validated<NodeConfig> {
    let mut text = format!(
        r#"
[node]
name = "test-node"
region = "test"

[[listeners]]
name = "http"
address = "127.0.0.1:0"
{listener}

[admin]
address = "127.0.0.1:0"
token = "{TOKEN}"

[telemetry]
access_log = false

{extra_node}
"#
    );
    // Nest the document under [gateway].
    let doc_value: toml::Table = toml::from_str(doc).expect("test document parses");
    let mut node_value: toml::Table = toml::from_str(&text).expect("test node parses");
    node_value.insert("gateway".into(), toml::Value::Table(doc_value));
    text = toml::to_string(&node_value).unwrap();
    let node: NodeConfig = config::parse(&text, Format::Toml).unwrap_or_else(|e| panic!("{e}"));
    config::validate_node(node).unwrap_or_else(|e| panic!("{e}"))
}

pub async fn gateway(doc: &str) -> RunningGateway {
    gateway_with(doc, "").await
}

pub async fn gateway_with(doc: &str, extra_node: &str) -> RunningGateway {
    init_tracing();
    meridian_region::gateway::start(node_config(doc, extra_node)).await.unwrap()
}

/// A gateway whose listener has `listener` lines (path options, ...).
pub async fn gateway_listener(doc: &str, listener: &str) -> RunningGateway {
    init_tracing();
    meridian_region::gateway::start(node_config_full(doc, listener, "")).await.unwrap()
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(5)).build_http()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn backend(&self) -> String {
        self.headers.get("x-backend").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    }
}

pub async fn send(client: &Client<HttpConnector, Full<Bytes>>, req: Request<Full<Bytes>>) -> Reply {
    let resp = client.request(req).await.expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body read").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, path, &[]).await
}

/// GET with `Host: api.test`, as clients of a region's service name send
/// it to whichever node they reach (the cache keys on the Host).
pub async fn get_service(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, path, &[("host", "api.test")]).await
}

pub async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&client(), b.body(Full::default()).unwrap()).await
}

/// An admin API call with the test token.
pub async fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(&client(), req).await
}

pub async fn metrics(addr: SocketAddr) -> String {
    get(addr, "/metrics").await.text()
}

/// The value of one sample in Prometheus text, matching all `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Poll `check` every 20 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP port nothing listens on (bound once, then released).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Write `bytes` on a new connection; what came back until the server closed,
/// 2 s passed, or (with `head_only`) a response head arrived.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], head_only: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if head_only && out.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Write `bytes`, read until a response head arrives, the server closes, or 2 s pass.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    raw_exchange(addr, bytes, true).await
}

/// What a [`peer`] received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A small HTTP/1.1 server answering with `handler`; stopped when dropped.
pub struct Peer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn peer<F, Fut>(handler: F) -> Peer
where
    F: Fn(Seen) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = std::sync::Arc::new(handler);
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let seen = Seen { method: parts.method, uri: parts.uri, headers: parts.headers, body };
                        Ok::<_, std::convert::Infallible>(handler(seen).await)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            });
        }
    });
    Peer { addr, task }
}

/// An answer with a status, a content type and a body.
pub fn answer(status: u16, content_type: &str, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .unwrap()
}
