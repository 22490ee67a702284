//! The upstream phase: circuit breaker, target pick (health-aware, sticky
//! cookie first), a pooled or new connection, send with the route's timeout;
//! retries on another target where it is safe and the budget allows.

use std::sync::Arc;
use std::time::Instant;

use http::header;
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::body::{BodyTooLarge, ClientBodyError, UpstreamBody};
use super::error::ProxyError;
use super::finish::Finish;
use super::upstream::{ConnPool, Upstream};
use super::{Gateway, Route};
use crate::balance::InFlight;
use meridian_core::clock::mono_ms;
use meridian_core::config::MAX_RETRIES;

/// Stale pooled connections skipped per request before giving up.
const MAX_STALE_CONNECTIONS: u32 = 4;

/// What the upstream answered, and where from.
pub(crate) struct Sent {
    pub response: Response<Incoming>,
    pub sender: SendRequest<UpstreamBody>,
    pub conns: Arc<ConnPool>,
    pub endpoint_id: u64,
    pub in_flight: InFlight,
    /// The target was the one the client's sticky cookie named.
    pub from_cookie: bool,
}

/// How a request picks its target.
pub(crate) struct Pick {
    /// Consistent-hash key.
    pub hash: Option<u64>,
    /// Target id from the sticky cookie.
    pub sticky_id: Option<u64>,
}

fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// A copy of a bodiless request, kept only when a retry after sending may happen.
struct Replay {
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
}

impl Replay {
    fn request(&self) -> Request<UpstreamBody> {
        let mut r = Request::new(UpstreamBody::empty());
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// The attempts of one request: which targets were tried, and whether
/// another may follow.
struct Attempts<'a> {
    gw: &'a Gateway,
    up: &'a Upstream,
    max: u32,
    /// Targets already tried; validation caps retries at [`MAX_RETRIES`].
    tried: [usize; MAX_RETRIES as usize + 1],
    n: u32,
    /// Pooled connections found closed (they cost no attempt).
    stale: u32,
}

impl Attempts<'_> {
    fn tried(&self) -> &[usize] {
        &self.tried[..self.n as usize]
    }

    /// Whether another attempt may follow the failure of this one (and
    /// spend the budget for it).
    fn may_retry(&self, now: u64) -> bool {
        if self.n + 1 >= self.max {
            return false;
        }
        if self.up.budget.try_withdraw(now / 1000) {
            true
        } else {
            self.gw.metrics.retry_budget_exhausted.with_label_values(&[&self.up.name]).inc();
            false
        }
    }

    fn retry(&mut self, idx: usize, reason: &str) {
        self.gw.metrics.upstream_retries.with_label_values(&[&self.up.name, reason]).inc();
        self.tried[self.n as usize] = idx;
        self.n += 1;
    }
}

/// A connection to target `idx`: pooled, or new within the breaker's pending limit.
async fn connection(route: &Route, idx: usize, now: u64) -> Result<SendRequest<UpstreamBody>, ProxyError> {
    let up = &route.upstream;
    if let Some(s) = up.conns[idx].checkout(now) {
        return Ok(s);
    }
    let Some(_pending) = up.breaker.pending() else {
        return Err(ProxyError::CircuitOpen { upstream: up.name.to_string(), limit: "max_pending" });
    };
    up.conns[idx].connect(route.connect_timeout).await
}

/// Pick a target, get a connection, send; retry where it is safe and the budget allows.
pub(crate) async fn forward(
    gw: &Gateway,
    route: &Route,
    mut req: Request<UpstreamBody>,
    pick: Pick,
    fin: &mut Finish,
) -> Result<Sent, ProxyError> {
    let up: &Upstream = &route.upstream;
    let pool = &up.pool;
    let Some(_permit) = up.breaker.request() else {
        gw.metrics.circuit_open.with_label_values(&[&up.name, "max_requests"]).inc();
        return Err(ProxyError::CircuitOpen { upstream: up.name.to_string(), limit: "max_requests" });
    };
    let mut now = fin.start_ms;
    up.budget.deposit(now / 1000);
    // Latency is only measured when something reads it.
    let timed = pool.measures_latency() || fin.log.is_some();
    let max = 1 + route.retries.min(MAX_RETRIES);
    let replay = (max > 1 && up.retry_on_5xx && idempotent(req.method()) && http_body::Body::is_end_stream(req.body()))
        .then(|| Replay { method: req.method().clone(), uri: req.uri().clone(), headers: req.headers().clone() });
    let mut at = Attempts { gw, up, max, tried: [usize::MAX; MAX_RETRIES as usize + 1], n: 0, stale: 0 };
    loop {
        if at.n > 0 {
            now = mono_ms();
        }
        let by_cookie = if at.n == 0 { pick.sticky_id.and_then(|id| pool.find_by_id(id, now)) } else { None };
        let Some(idx) = by_cookie.or_else(|| pool.pick(pick.hash, at.tried(), now)) else {
            return Err(ProxyError::NoHealthyTarget { upstream: up.name.to_string() });
        };
        let endpoint = &pool.endpoints()[idx];
        if let Some(log) = fin.log.as_mut() {
            log.target = Some(endpoint.address.clone());
            log.attempts = at.n + 1;
        }
        let mut sender = match connection(route, idx, now).await {
            Ok(s) => s,
            Err(e @ ProxyError::CircuitOpen { .. }) => {
                gw.metrics.circuit_open.with_label_values(&[&up.name, "max_pending"]).inc();
                return Err(e);
            }
            Err(e) => {
                record_failure(gw, up, idx, &e);
                if at.may_retry(now) {
                    tracing::debug!(upstream = %up.name, target = %endpoint.address, error = %e, "retrying on another target");
                    at.retry(idx, e.kind());
                    continue;
                }
                return Err(e);
            }
        };
        if !route.preserve_host {
            req.headers_mut().insert(header::HOST, up.conns[idx].host_header.clone());
        }
        let in_flight = endpoint.start();
        let sent_at = timed.then(Instant::now);
        let body_complete = req.body().completion();
        let result = tokio::time::timeout(route.timeout, sender.try_send_request(req)).await;
        let upstream_time = sent_at.map(|t| t.elapsed());
        if let Some(log) = fin.log.as_mut() {
            log.upstream_time = upstream_time;
        }
        let response = match result {
            // Still waiting for the client's body: its fault, not the target's.
            Err(_) if body_complete.as_ref().is_some_and(|c| !c.load(std::sync::atomic::Ordering::Relaxed)) => {
                return Err(ProxyError::BodyTimeout { after: route.timeout });
            }
            Err(_) => {
                let e = ProxyError::UpstreamTimeout { target: endpoint.address.to_string(), after: route.timeout };
                record_failure(gw, up, idx, &e);
                return Err(e);
            }
            Ok(Err(mut e)) => {
                if let Some(unsent) = e.take_message() {
                    // The pooled connection closed before it took the request.
                    at.stale += 1;
                    if at.stale <= MAX_STALE_CONNECTIONS {
                        req = unsent;
                        continue;
                    }
                }
                let source = e.into_error();
                if let Some(client_fault) = client_body_fault(&source) {
                    return Err(client_fault);
                }
                let err = ProxyError::Upstream { target: endpoint.address.to_string(), source };
                record_failure(gw, up, idx, &err);
                match &replay {
                    Some(r) if at.may_retry(now) => {
                        at.retry(idx, err.kind());
                        req = r.request();
                        continue;
                    }
                    _ => return Err(err),
                }
            }
            Ok(Ok(response)) => response,
        };
        if let (Some(t), true) = (upstream_time, pool.measures_latency()) {
            endpoint.observe_latency(t, now + t.as_millis() as u64);
        }
        let status = response.status().as_u16();
        report(gw, up, idx, status < 500, now);
        if let (502..=504, Some(r)) = (status, &replay) {
            if at.may_retry(now) {
                at.retry(idx, retry_reason(status));
                req = r.request();
                continue;
            }
        }
        let conns = up.conns[idx].clone();
        let from_cookie = by_cookie.is_some();
        return Ok(Sent { response, sender, conns, endpoint_id: endpoint.id, in_flight, from_cookie });
    }
}

/// A send failure caused by the client's body rather than the upstream.
fn client_body_fault(err: &hyper::Error) -> Option<ProxyError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(b) = e.downcast_ref::<BodyTooLarge>() {
            return Some(ProxyError::BodyTooLarge { limit: b.limit });
        }
        if e.is::<ClientBodyError>() {
            return Some(ProxyError::BadRequest("malformed or aborted request body"));
        }
        source = e.source();
    }
    None
}

fn retry_reason(status: u16) -> &'static str {
    match status {
        502 => "status_502",
        503 => "status_503",
        _ => "status_504",
    }
}

fn record_failure(gw: &Gateway, up: &Upstream, idx: usize, err: &ProxyError) {
    gw.metrics.upstream_errors.with_label_values(&[&up.name, err.kind()]).inc();
    tracing::debug!(upstream = %up.name, error = %err, "upstream attempt failed");
    report(gw, up, idx, false, mono_ms());
}

fn report(gw: &Gateway, up: &Upstream, idx: usize, ok: bool, now: u64) {
    if let Some(ms) = up.pool.report(idx, ok, now) {
        let target = up.pool.endpoints()[idx].address.clone();
        gw.metrics.upstream_ejections.with_label_values(&[&up.name, &target]).inc();
        tracing::warn!(upstream = %up.name, target = %target, ejected_for_ms = ms, "target ejected after consecutive failures");
    }
}
