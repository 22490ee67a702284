//! Listeners and client connections: TLS with ALPN, HTTP/1.1 or HTTP/2 (h2c
//! by prior knowledge on plain listeners), the idle watchdog, and graceful
//! draining on shutdown.

use meridian_core::pattern::canonical::PathPolicy;

use super::caps::{Admitted, ConnectionCaps, Pending, Slot};
use super::client::{read_proxy_header, ClientPolicy, ProxySource};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::tls::client_auth::TlsSetup;
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{service, Gateway};
use meridian_core::config::ListenerConfig;

/// What the request path knows about the client connection.
pub struct ConnInfo {
    /// The socket's peer.
    pub peer: SocketAddr,
    /// The connection's client: the peer, or a trusted proxy's PROXY header
    /// ([`super::client`]).
    pub client: IpAddr,
    /// `client`, formatted once per connection for `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// Who this listener believes about requests' clients.
    clients: Arc<ClientPolicy>,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: HeaderValue,
    pub listener: Arc<str>,
    /// Answered by the gateway itself (`listeners[].health_path`).
    pub health_path: Option<Arc<str>>,
    /// How this listener canonicalises request paths.
    pub paths: PathPolicy,
    /// Requests being served; the idle watchdog leaves busy connections alone.
    busy: AtomicU32,
    /// Bumped on every read and write.
    activity: AtomicU64,
    /// Busy connections on the local address this one was accepted on
    /// ([`super::caps::AddressLoad`]); this connection counts from its accept.
    local_load: Arc<AtomicU32>,
    /// No request has started yet: the count taken at accept is still held.
    fresh: AtomicBool,
    /// The client certificate the handshake verified.
    pub client_cert: std::sync::OnceLock<crate::tls::client_auth::PeerCert>,
    /// The connection's TLS protocol is HTTP/2 (connections may be reused for other hosts).
    pub h2: AtomicBool,
}

impl ConnInfo {
    fn new(peer: SocketAddr, client: IpAddr, listener: &ListenerShared, pending: Pending) -> Self {
        let client = client.to_canonical();
        Self {
            peer,
            client,
            client_ip: ip_value(client),
            clients: listener.clients.clone(),
            proto: HeaderValue::from_static(if listener.tls.is_some() { "https" } else { "http" }),
            listener: listener.name.clone(),
            health_path: listener.health_path.clone(),
            paths: listener.paths,
            busy: AtomicU32::new(0),
            activity: AtomicU64::new(0),
            local_load: pending.take(),
            fresh: AtomicBool::new(true),
            client_cert: std::sync::OnceLock::new(),
            h2: AtomicBool::new(false),
        }
    }

    /// The client of a request on this connection: from `X-Forwarded-For`
    /// when a trusted proxy sent it and the listener believes it, else the
    /// connection's.
    pub(crate) fn client_of(&self, headers: &http::HeaderMap) -> ClientAddr {
        match self.clients.forwarded_client(self.client, headers) {
            Some(ip) => ClientAddr { ip, text: ip_value(ip) },
            None => ClientAddr { ip: self.client, text: self.client_ip.clone() },
        }
    }

    pub(crate) fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        // The first request takes over the count its connection holds since accept.
        if !self.fresh.swap(false, Ordering::Relaxed) {
            self.local_load.fetch_add(1, Ordering::Relaxed);
        }
        Busy(self)
    }
}

impl Drop for ConnInfo {
    fn drop(&mut self) {
        if *self.fresh.get_mut() {
            self.local_load.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A request's client address, and its text for keys.
pub(crate) struct ClientAddr {
    pub ip: IpAddr,
    pub text: HeaderValue,
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

pub(crate) struct Busy<'a>(&'a ConnInfo);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.local_load.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts reads and writes so the idle watchdog can tell a quiet connection.
struct ActivityIo<T> {
    inner: T,
    info: Arc<ConnInfo>,
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.info.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.info.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.info.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A bound listener, not yet serving.
pub struct Listener {
    pub name: Arc<str>,
    pub local_addr: SocketAddr,
    /// Its certificates, reloadable while it serves.
    pub certs: Option<Arc<crate::tls::CertStore>>,
    shared: Arc<ListenerShared>,
    tcp: TcpListener,
}

/// What every connection of a listener uses.
struct ListenerShared {
    name: Arc<str>,
    health_path: Option<Arc<str>>,
    paths: PathPolicy,
    caps: ConnectionCaps,
    clients: Arc<ClientPolicy>,
    tls: Option<TlsSetup>,
    /// Client addresses the listener serves.
    ip_rules: Option<(Arc<str>, super::policy::ip_rules::IpMatcher)>,
}

/// A listener that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("listener {name}: cannot bind {address}: {source}")]
    Bind { name: String, address: SocketAddr, source: io::Error },
    #[error("listener {name}: {source}")]
    Tls { name: String, source: crate::tls::TlsFileError },
    #[error("listener {name}: ip_rules: {reason}")]
    IpRules { name: String, reason: String },
}

impl Listener {
    pub async fn bind(cfg: &ListenerConfig) -> Result<Self, ListenError> {
        let certs = match &cfg.tls {
            Some(t) => Some(
                crate::tls::CertStore::load(cfg.name.as_str(), t)
                    .map_err(|source| ListenError::Tls { name: cfg.name.clone(), source })?,
            ),
            None => None,
        };
        let tls = match &certs {
            Some(c) => Some(
                TlsSetup::new(c, crate::tls::ALPN_H2_HTTP1)
                    .map_err(|source| ListenError::Tls { name: cfg.name.clone(), source })?,
            ),
            None => None,
        };
        let bind_err = |source| ListenError::Bind { name: cfg.name.clone(), address: cfg.address, source };
        let tcp = bind_tcp(cfg.address, cfg.freebind).map_err(bind_err)?;
        let local_addr = tcp.local_addr().map_err(bind_err)?;
        let name: Arc<str> = cfg.name.as_str().into();
        let shared = ListenerShared {
            name: name.clone(),
            health_path: cfg.health_path.as_deref().map(Into::into),
            paths: cfg.path_policy(),
            caps: ConnectionCaps::new(cfg.max_connections, cfg.max_connections_per_client),
            clients: Arc::new(ClientPolicy::of(cfg)),
            tls,
            ip_rules: cfg
                .ip_rules
                .as_ref()
                .map(|r| (format!("listener:{}", cfg.name).into(), super::policy::ip_rules::IpMatcher::of(r))),
        };
        Ok(Self { name, local_addr, certs, shared: Arc::new(shared), tcp })
    }

    /// Accept until `shutdown`; connections then drain within `limits.drain_timeout`.
    pub async fn serve(self, gw: Arc<Gateway>, shutdown: CancellationToken, tracker: TaskTracker) {
        let active = gw.metrics.active_connections.with_label_values(&[&self.name]);
        let accepted = gw.metrics.connections.with_label_values(&[&self.name]);
        let l = &self.shared;
        tracing::info!(
            listener = %self.name,
            address = %self.local_addr,
            tls = l.tls.is_some(),
            proxy_protocol = l.clients.proxy_protocol,
            forwarded_for = l.clients.forwarded_for,
            "listening"
        );
        // A listener on one address needs no lookup per connection.
        let fixed_load =
            (!self.local_addr.ip().is_unspecified()).then(|| gw.address_load.counter(self.local_addr.ip()));
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.tcp.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(listener = %self.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            accepted.inc();
            let slot = match l.caps.slot() {
                Ok(s) => s,
                Err(why) => {
                    refused(&gw, l, peer.ip(), why);
                    continue;
                }
            };
            let pending = match &fixed_load {
                Some(c) => Pending::new(c.clone()),
                None => match stream.local_addr() {
                    Ok(a) => Pending::new(gw.address_load.counter(a.ip())),
                    Err(_) => continue,
                },
            };
            let conn = Accepted { stream, peer, slot, pending };
            if l.clients.proxy_protocol {
                // The client is known once the PROXY header is read.
                let (l, gw, shutdown, active) = (l.clone(), gw.clone(), shutdown.clone(), active.clone());
                tracker.spawn(async move {
                    if let Some(conn) = proxied(conn, &l, &gw).await {
                        conn.serve(l, gw, shutdown, active).await;
                    }
                });
            } else if let Some(conn) = conn.admit(peer.ip(), l, &gw) {
                tracker.spawn(conn.serve(l.clone(), gw.clone(), shutdown.clone(), active.clone()));
            }
        }
        tracing::info!(listener = %self.name, "stopped accepting");
    }
}

/// A connection accepted, holding its listener slot; its client not yet admitted.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    pending: Pending,
}

impl Accepted {
    /// Hold the connection to the per-client cap as `client`'s.
    fn admit(self, client: IpAddr, l: &ListenerShared, gw: &Gateway) -> Option<Admission> {
        if let Some((scope, rules)) = &l.ip_rules {
            let ip = match rules.source {
                meridian_core::config::IpSource::Client => client,
                meridian_core::config::IpSource::Peer => self.peer.ip(),
            };
            let admitted = rules.admits(ip);
            let label = if admitted { "allowed" } else { "denied" };
            gw.metrics.ip_decisions.with_label_values(&[scope, label]).inc();
            if !admitted {
                tracing::debug!(listener = %l.name, client = %ip.to_canonical(), "connection refused by the listener's IP rules");
                return None;
            }
        }
        let exempt = l.clients.trusts(client);
        match l.caps.admit_client(self.slot, client, exempt) {
            Ok(admitted) => {
                let info = Arc::new(ConnInfo::new(self.peer, client, l, self.pending));
                Some(Admission { stream: self.stream, info, _admitted: admitted })
            }
            Err(why) => {
                refused(gw, l, client, why);
                None
            }
        }
    }
}

/// A connection admitted: it is served.
struct Admission {
    stream: TcpStream,
    info: Arc<ConnInfo>,
    _admitted: Admitted,
}

impl Admission {
    async fn serve(
        self,
        l: Arc<ListenerShared>,
        gw: Arc<Gateway>,
        shutdown: CancellationToken,
        active: prometheus::IntGauge,
    ) {
        active.inc();
        serve_connection(self.stream, self.info, l.tls.clone(), gw, shutdown).await;
        active.dec();
    }
}

/// Read the PROXY header of a connection on a `proxy_protocol` listener and
/// admit it as the client the header names, when its peer is trusted.
async fn proxied(mut conn: Accepted, l: &ListenerShared, gw: &Gateway) -> Option<Admission> {
    let timeout = gw.settings.limits.header_read_timeout;
    let peer = conn.peer.ip();
    let counted = |result: &str| gw.metrics.proxy_protocol.with_label_values(&[&l.name, result]).inc();
    let client = match read_proxy_header(&mut conn.stream, timeout).await {
        Ok(ProxySource::Client(ip)) if l.clients.trusts(peer) => {
            counted("client");
            ip
        }
        Ok(ProxySource::Client(ip)) => {
            counted("untrusted");
            tracing::debug!(listener = %l.name, %peer, claimed = %ip, "PROXY header from an untrusted peer: its address is not believed");
            peer
        }
        Ok(ProxySource::Local) => {
            counted("local");
            peer
        }
        Err(e) => {
            counted(e.label());
            tracing::debug!(listener = %l.name, %peer, error = %e, "connection without a valid PROXY header closed");
            return None;
        }
    };
    conn.admit(client, l, gw)
}

fn refused(gw: &Gateway, l: &ListenerShared, client: IpAddr, why: super::caps::Refused) {
    gw.metrics.connections_refused.with_label_values(&[&l.name, why.label()]).inc();
    tracing::debug!(listener = %l.name, %client, cap = why.label(), "connection refused");
}

/// A listening socket; with `freebind`, the address need not be on this host yet.
fn bind_tcp(addr: SocketAddr, freebind: bool) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if freebind {
        if addr.is_ipv4() {
            socket.set_freebind_v4(true)?;
        } else {
            socket.set_freebind_v6(true)?;
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

async fn serve_connection(
    stream: TcpStream,
    info: Arc<ConnInfo>,
    tls: Option<TlsSetup>,
    gw: Arc<Gateway>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let handshake_timeout = gw.settings.limits.header_read_timeout;
    let (name, peer) = (&info.listener, info.peer);
    match tls {
        Some(setup) => {
            let stream = match tokio::time::timeout(handshake_timeout, setup.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    gw.metrics.tls_handshake_errors.with_label_values(&[&name]).inc();
                    tracing::debug!(listener = %name, %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    gw.metrics.tls_handshake_errors.with_label_values(&[&name]).inc();
                    tracing::debug!(listener = %name, %peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            info.h2.store(h2, Ordering::Relaxed);
            if let Some(cert) = stream.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                if let Some(p) = crate::tls::client_auth::PeerCert::of(cert) {
                    let _ = info.client_cert.set(p);
                }
            }
            run(ActivityIo { inner: stream, info: info.clone() }, h2, gw, info, shutdown).await;
        }
        None => {
            let h2 = match detect_h2c(&stream, handshake_timeout).await {
                Ok(h2) => h2,
                Err(e) => {
                    tracing::debug!(listener = %name, %peer, error = %e, "connection closed before a request");
                    return;
                }
            };
            run(ActivityIo { inner: stream, info: info.clone() }, h2, gw, info, shutdown).await;
        }
    }
}

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection opens with the HTTP/2 preface (h2c prior knowledge).
async fn detect_h2c(stream: &TcpStream, timeout: Duration) -> io::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 24];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no request head in time")),
        };
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A partial preface: wait for the rest (peek would return at once).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A served connection that can be asked to finish its requests and close.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful(self: Pin<&mut Self>);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<I, S, B> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown()
    }
}

impl<I, S, E, B> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown()
    }
}

async fn run<I>(io: I, h2: bool, gw: Arc<Gateway>, info: Arc<ConnInfo>, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = gw.settings.limits.clone();
    let svc = {
        let gw = gw.clone();
        let info = info.clone();
        service_fn(move |req| {
            let gw = gw.clone();
            let info = info.clone();
            async move { Ok::<_, Infallible>(service::handle(gw, info, req).await) }
        })
    };
    let io = TokioIo::new(io);
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .keep_alive_interval(Some(h2_ping_interval(limits.idle_timeout)))
            .keep_alive_timeout(Duration::from_secs(20));
        drive(b.serve_connection(io, svc), &info, &shutdown, &limits).await;
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes)
            .keep_alive(true);
        drive(b.serve_connection(io, svc).with_upgrades(), &info, &shutdown, &limits).await;
    }
}

/// How often an HTTP/2 connection is PINGed to find dead peers: longer than
/// the idle timeout, so an idle connection's PONGs never count as activity
/// and it is closed when idle like any other.
fn h2_ping_interval(idle_timeout: Duration) -> Duration {
    (idle_timeout + Duration::from_secs(10)).max(Duration::from_secs(30))
}

/// How often a connection checks for shutdown and idleness. Checking on a
/// tick instead of polling a shutdown future on every wake-up keeps the
/// request path free of it; shutdown starts draining within one tick.
const CONTROL_TICK: Duration = Duration::from_secs(1);

async fn drive<C: Graceful>(
    conn: C,
    info: &ConnInfo,
    shutdown: &CancellationToken,
    limits: &meridian_core::config::LimitsConfig,
) {
    tokio::pin!(conn);
    let tick = CONTROL_TICK.min(limits.idle_timeout);
    let mut control = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    control.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = info.activity.load(Ordering::Relaxed);
    let mut quiet_since = tokio::time::Instant::now();
    let mut drain_by: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %info.peer, error = %e, "client connection ended with an error");
                }
                return;
            }
            now = control.tick() => {
                if let Some(deadline) = drain_by {
                    if now >= deadline {
                        tracing::debug!(peer = %info.peer, "closing a connection that did not drain in time");
                        return;
                    }
                    continue;
                }
                let activity = info.activity.load(Ordering::Relaxed);
                if activity != seen || info.busy.load(Ordering::Relaxed) != 0 {
                    seen = activity;
                    quiet_since = now;
                }
                let idle = now.duration_since(quiet_since) >= limits.idle_timeout;
                if shutdown.is_cancelled() || idle {
                    if idle {
                        tracing::debug!(peer = %info.peer, "closing idle connection");
                    }
                    conn.as_mut().graceful();
                    drain_by = Some(now + limits.drain_timeout);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_http2_connections_are_not_kept_alive_by_their_pings() {
        for idle in [1, 30, 60, 600] {
            let idle = Duration::from_secs(idle);
            assert!(h2_ping_interval(idle) > idle, "{idle:?}");
        }
    }
}
