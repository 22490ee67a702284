//! The one small HTTP server every endpoint off the data plane uses: the
//! admin API, the balancer's report API, the sample backend. It reads a
//! request head within a deadline, holds at most `max_connections` at once
//! (further clients wait in the listen backlog), backs off when accepting
//! fails (EMFILE: out of file descriptors) instead of spinning, and drains
//! its connections on shutdown, tracked so the caller can wait for them.
//! With a TLS acceptor it speaks HTTPS only; the handshake shares the
//! request-head deadline.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds of one server.
#[derive(Clone)]
pub struct ServerLimits {
    /// A client has this long to send a request head.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// On shutdown, open connections finish their request within this;
    /// zero closes them at once.
    pub drain_timeout: Duration,
    /// Also speak HTTP/2 (prior knowledge), not only HTTP/1.1.
    pub http2: bool,
    /// Serve HTTPS with this acceptor.
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for ServerLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLimits")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_connections", &self.max_connections)
            .field("drain_timeout", &self.drain_timeout)
            .field("http2", &self.http2)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(5),
            http2: false,
            tls: None,
        }
    }
}

/// Longest pause between failed accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serve `handler` on `listener` until `shutdown`; every connection runs
/// on `tracker`. `name` labels the log lines.
pub async fn serve<H, F>(
    name: &'static str,
    listener: TcpListener,
    limits: ServerLimits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Duration::from_millis(5);
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => return },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    backoff = Duration::from_millis(5);
                    stream
                }
                Err(e) => {
                    tracing::warn!(server = name, error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (handler, shutdown, limits) = (handler.clone(), shutdown.clone(), limits.clone());
        tracker.spawn(async move {
            let _slot = slot;
            match &limits.tls {
                None => serve_io(stream, handler, &limits, &shutdown).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await
                {
                    Ok(Ok(tls)) => serve_io(tls, handler, &limits, &shutdown).await,
                    Ok(Err(e)) => tracing::debug!(server = name, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(server = name, "TLS handshake timed out"),
                },
            }
        });
    }
}

async fn serve_io<I, H, F>(io: I, handler: H, limits: &ServerLimits, shutdown: &CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let svc = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let conn = if limits.http2 { b } else { b.http1_only() };
    let conn = conn.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            if !limits.drain_timeout.is_zero() {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(limits.drain_timeout, conn).await;
            }
        }
    }
}

/// The one way a JSON answer is written: `value` on one line.
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_string(value).unwrap_or_else(|_| r#"{"error":"could not encode the answer"}"#.into());
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A plain-text answer.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}
