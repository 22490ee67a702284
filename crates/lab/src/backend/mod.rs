//! A small HTTP backend for demos and tests. It echoes what it received and
//! can be told to answer slowly, fail, report unhealthy, or stop:
//!
//! - any path: `200` with a JSON echo; `?status=503` answers that status,
//!   `?delay_ms=200` waits first, `?bytes=N` sends an N-byte body instead,
//!   `?xml_items=N` an XML document of N accounts (a legacy backend),
//!   `?cache_control=...` and `?vary=...` set those response headers;
//! - `GET /healthz`: `200`, or `503` after `POST /_control/health?state=down`;
//! - `POST /_control/fail?status=500` makes every answer fail (`status=0` stops that);
//! - `POST /_control/delay?ms=100` delays every answer;
//! - `POST /_control/stop` closes the listener and every connection;
//! - `GET /_control/stats`: requests served so far.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use meridian_core::http_server::ServerLimits;

/// Behaviour switches, shared with the in-process owner.
#[derive(Debug)]
pub struct BackendControl {
    pub name: String,
    pub healthy: AtomicBool,
    /// Non-zero: answer every request with this status.
    pub fail_status: AtomicU16,
    pub delay_ms: AtomicU64,
    pub requests: AtomicU64,
    stop: CancellationToken,
}

impl BackendControl {
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

pub struct Backend {
    pub addr: SocketAddr,
    pub control: Arc<BackendControl>,
    pub stopped: tokio::task::JoinHandle<()>,
}

fn query<'a>(req: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

fn respond(status: StatusCode, name: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(name) {
        r.headers_mut().insert("x-backend", v);
    }
    r
}

async fn handle(ctl: Arc<BackendControl>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let name = ctl.name.clone();
    if let Some(op) = path.strip_prefix("/_control/") {
        let ok = |msg: &str| respond(StatusCode::OK, &name, format!("{msg}\n"));
        return match (req.method(), op) {
            (&Method::POST, "health") => {
                let up = query(&req, "state") != Some("down");
                ctl.healthy.store(up, Ordering::Relaxed);
                ok(if up { "healthy" } else { "unhealthy" })
            }
            (&Method::POST, "fail") => {
                let s = query(&req, "status").and_then(|s| s.parse().ok()).unwrap_or(500);
                ctl.fail_status.store(s, Ordering::Relaxed);
                ok("failing")
            }
            (&Method::POST, "delay") => {
                let ms = query(&req, "ms").and_then(|s| s.parse().ok()).unwrap_or(0);
                ctl.delay_ms.store(ms, Ordering::Relaxed);
                ok("delaying")
            }
            (&Method::POST, "stop") => {
                // Let this answer go out before the connections close.
                let stop = ctl.stop.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    stop.cancel();
                });
                ok("stopping")
            }
            (&Method::GET, "stats") => respond(
                StatusCode::OK,
                &name,
                serde_json::json!({ "name": name, "requests": ctl.requests() }).to_string(),
            ),
            _ => respond(StatusCode::NOT_FOUND, &name, "unknown control\n"),
        };
    }
    if path == "/healthz" {
        return if ctl.healthy.load(Ordering::Relaxed) {
            respond(StatusCode::OK, &name, "ok\n")
        } else {
            respond(StatusCode::SERVICE_UNAVAILABLE, &name, "unhealthy\n")
        };
    }
    ctl.requests.fetch_add(1, Ordering::Relaxed);
    let delay =
        query(&req, "delay_ms").and_then(|s| s.parse().ok()).unwrap_or_else(|| ctl.delay_ms.load(Ordering::Relaxed));
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let forced = ctl.fail_status.load(Ordering::Relaxed);
    let status = query(&req, "status")
        .and_then(|s| s.parse::<u16>().ok())
        .or((forced != 0).then_some(forced))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let bytes = query(&req, "bytes").and_then(|s| s.parse::<usize>().ok());
    let xml_items = query(&req, "xml_items").and_then(|s| s.parse::<usize>().ok());
    let cache_control = query(&req, "cache_control").map(str::to_string);
    let vary = query(&req, "vary").map(str::to_string);
    let method = req.method().to_string();
    let query_string = req.uri().query().unwrap_or("").to_string();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body_bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => return respond(StatusCode::BAD_REQUEST, &name, "unreadable body\n"),
    };
    if let Some(n) = bytes {
        return respond(status, &name, vec![b'x'; n.min(64 << 20)]);
    }
    if let Some(n) = xml_items {
        let mut r = respond(status, &name, xml_document(n.min(100_000)));
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
        return r;
    }
    let echo = serde_json::json!({
        "backend": name,
        "method": method,
        "path": path,
        "query": query_string,
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut r = respond(status, &name, format!("{echo}\n"));
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    for (param, header) in [(&cache_control, http::header::CACHE_CONTROL), (&vary, http::header::VARY)] {
        if let Some(v) =
            param.as_deref().and_then(|v| http::HeaderValue::from_str(&v.replace("%20", " ").replace("%3D", "=")).ok())
        {
            r.headers_mut().insert(header, v);
        }
    }
    r
}

/// An XML document of `n` accounts (about 100 bytes each): what a legacy
/// backend answers (`?xml_items=N`).
pub fn xml_document(n: usize) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<accounts xmlns=\"urn:bank\">");
    for i in 0..n {
        s.push_str(&format!(
            "<account id=\"{i}\"><owner>Owner {i}</owner><balance currency=\"EUR\">{}.{:02}</balance></account>",
            i * 7,
            i % 100
        ));
    }
    s.push_str("</accounts>\n");
    s
}

/// Start a backend on `addr` (port 0 picks one).
pub async fn start(addr: SocketAddr, name: &str) -> std::io::Result<Backend> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let control = Arc::new(BackendControl {
        name: name.to_string(),
        healthy: AtomicBool::new(true),
        fail_status: AtomicU16::new(0),
        delay_ms: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        stop: CancellationToken::new(),
    });
    let ctl = control.clone();
    let handler = move |req| {
        let ctl = ctl.clone();
        async move { handle(ctl, req).await }
    };
    // A stopped backend drops its connections at once, as a crashed one would.
    let limits = ServerLimits { drain_timeout: Duration::ZERO, http2: true, ..ServerLimits::default() };
    let serve = meridian_core::http_server::serve(
        "backend",
        listener,
        limits,
        control.stop.clone(),
        TaskTracker::new(),
        handler,
    );
    let stopped = tokio::spawn(serve);
    Ok(Backend { addr, control, stopped })
}
