//! The request path. Phases, in order (see `docs/phases.md`):
//! `accept` (request id, host, limits) → `route` → `prepare` (rewrite,
//! forwarding headers) → `forward` (pick, connect, send, retry) → `respond`
//! (response headers, upgrade tunnel) → `finish` (metrics, access log, pool
//! return). A phase that fails ends the chain with a [`ProxyError`], which
//! becomes a response in [`error_response`] only.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::body::{BodyTooLarge, ClientBodyError, ProxyBody, UpstreamBody};
use super::error::{error_body, ProxyError, Side};
use super::finish::{AccessRecord, Finish};
use super::headers;
use super::server::ConnInfo;
use super::upstream::{ConnPool, Upstream};
use super::{Gateway, LimitKey, Route, Snapshot};
use crate::balance::{hash_key, InFlight};
use crate::cache::{CachedResponse, Lookup, Role};
use crate::routing::normalize_host;
use meridian_core::clock::mono_ms;
use meridian_core::config::HashOn;
use meridian_core::pattern::{Params, Rewrite};

static VIA_11: HeaderValue = HeaderValue::from_static("1.1 meridian");
static VIA_2: HeaderValue = HeaderValue::from_static("2 meridian");
static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Stale pooled connections skipped per request before giving up.
const MAX_STALE_CONNECTIONS: u32 = 4;

/// Serve one request.
pub(crate) async fn handle(gw: Arc<Gateway>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Response<ProxyBody> {
    if let Some(hp) = &conn.health_path {
        if req.uri().path() == &**hp {
            return health_response(&gw);
        }
    }
    let start = Instant::now();
    let start_ms = mono_ms();
    let _busy = conn.busy();
    let snap = gw.snapshot();
    let request_id = headers::request_id(req.headers());
    let log = gw.settings.access_log.then(|| {
        Box::new(AccessRecord {
            method: req.method().clone(),
            version: req.version(),
            host: req
                .uri()
                .host()
                .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
                .unwrap_or("-")
                .to_string(),
            path: req.uri().path().to_string(),
            client: conn.peer.ip(),
            request_id: request_id.clone(),
            route: None,
            upstream: None,
            target: None,
            upstream_time: None,
            attempts: 0,
            error: None,
            request_bytes: headers::content_length(req.headers()),
        })
    });
    let finish = Finish::new(start, start_ms, gw.unmatched.clone(), log);
    match proxy(&gw, &snap, &conn, req, &request_id, finish).await {
        Ok(resp) => resp,
        Err((err, finish)) => error_response(&gw, err, &request_id, finish),
    }
}

type Failed = (ProxyError, Finish);

async fn proxy(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    mut fin: Finish,
) -> Result<Response<ProxyBody>, Failed> {
    let (mut parts, body) = req.into_parts();

    // accept
    let host_value = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    let Some(host_value) = host_value else {
        return Err((ProxyError::BadRequest("missing Host header"), fin));
    };
    let Ok(host) = host_value.to_str() else {
        return Err((ProxyError::BadRequest("invalid Host header"), fin));
    };
    let path = parts.uri.path();
    if !path.starts_with('/') {
        return Err((ProxyError::BadRequest("request target must be an absolute path"), fin));
    }
    let limit = gw.settings.limits.max_body_bytes;
    if headers::content_length(&parts.headers).is_some_and(|len| len > limit) {
        return Err((ProxyError::BodyTooLarge { limit }, fin));
    }

    // route
    let Some(m) = snap.table.find(host, path, &parts.method, &parts.headers) else {
        let err = ProxyError::NoRoute { host: normalize_host(host).into_owned(), path: path.to_string() };
        return Err((err, fin));
    };
    let route: &Arc<Route> = m.value;
    let up = &route.upstream;
    fin.metrics = route.metrics.clone();
    if let Some(log) = fin.log.as_mut() {
        log.route = Some(route.name.clone());
        log.upstream = Some(up.name.clone());
    }

    // rate limit
    let mut limit_headers: Option<(HeaderValue, HeaderValue)> = None;
    if let Some(rl) = &route.limiter {
        match rate_limit(rl, conn, &parts.headers).await {
            Ok(h) => limit_headers = h,
            Err(e) => return Err((e, fin)),
        }
    }

    // cache lookup
    let mut cached: Option<CacheCtx> = None;
    if let Some(c) = &route.cache {
        if crate::cache::request_cacheable(&parts.method, &parts.headers) {
            let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let key = c.key(host, pq, &parts.headers).await;
            let head = parts.method == Method::HEAD;
            let via = if parts.version == Version::HTTP_2 { &VIA_2 } else { &VIA_11 };
            let (found, full_key) = c.lookup(&key, &parts.headers).await;
            let mut stale = None;
            match found {
                Lookup::Fresh { response, age_secs } => {
                    return Ok(from_cache(&response, age_secs, "HIT", head, via, request_id, limit_headers, fin));
                }
                Lookup::Stale { response, age_secs } => stale = Some((response, age_secs)),
                Lookup::Miss => {}
            }
            let leader = match c.coalesce(&full_key) {
                Role::Leader(l) => Some(l),
                Role::Follower(mut done) => {
                    let _ = tokio::time::timeout(route.timeout, done.wait_for(|d| *d)).await;
                    if let (Lookup::Fresh { response, age_secs }, _) = c.lookup(&key, &parts.headers).await {
                        return Ok(from_cache(&response, age_secs, "HIT", head, via, request_id, limit_headers, fin));
                    }
                    None
                }
            };
            cached =
                Some(CacheCtx { key: full_key, request_headers: parts.headers.clone(), stale, head, _leader: leader });
        }
    }

    // prepare
    let uri = match upstream_uri(&mut parts.uri, route.rewrite.as_ref(), &m.params) {
        Ok(u) => u,
        Err(e) => return Err((e, fin)),
    };
    let hash = balance_key(up.pool.hash_on.as_ref(), conn, &parts.headers);
    let sticky_id = up
        .sticky
        .as_ref()
        .and_then(|s| headers::cookie(&parts.headers, &s.cookie).and_then(|v| u64::from_str_radix(v, 16).ok()));
    let upgrade = if parts.version == Version::HTTP_11 { headers::upgrade_protocol(&parts.headers) } else { None };
    let client_upgrade = upgrade.as_ref().and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
    let via = if parts.version == Version::HTTP_2 { &VIA_2 } else { &VIA_11 };
    let h = &mut parts.headers;
    headers::strip_hop_by_hop(h);
    h.remove(header::EXPECT);
    if let Some(proto) = &upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, proto.clone());
    }
    if !h.contains_key(header::HOST) {
        h.insert(header::HOST, host_value.clone());
    }
    headers::append_forwarded_for(h, &conn.client_ip);
    h.insert(&headers::X_FORWARDED_PROTO, conn.proto.clone());
    h.insert(&headers::X_FORWARDED_HOST, host_value);
    headers::append_via(h, via);
    h.insert(&headers::X_REQUEST_ID, request_id.clone());

    let body = if upgrade.is_some() { UpstreamBody::empty() } else { UpstreamBody::limited(body, limit) };
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = parts.headers;

    // forward
    let sent = match forward(gw, route, upstream_req, hash, sticky_id, &mut fin).await {
        Ok(s) => s,
        Err(e) => {
            if let Some((response, age)) = cached.as_ref().and_then(|c| c.stale.clone()) {
                if let Some(rc) = &route.cache {
                    rc.count_stale();
                }
                tracing::warn!(route = %route.name, error = %e, "upstream failed: serving a stale cached response");
                let head = cached.as_ref().is_some_and(|c| c.head);
                return Ok(from_cache(&response, age, "STALE", head, via, request_id, limit_headers, fin));
            }
            return Err((e, fin));
        }
    };

    // respond
    let Sent { response, sender, conns, endpoint_id, in_flight, from_cookie } = sent;
    let (mut rparts, rbody) = response.into_parts();
    let status = rparts.status;
    let switching = status == http::StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        match (client_upgrade, upgrade) {
            (Some(client), Some(_)) => {
                let upstream_up = rparts.extensions.remove::<hyper::upgrade::OnUpgrade>();
                spawn_tunnel(client, upstream_up, up.name.clone());
            }
            _ => {
                // The upstream switched protocols the client never asked for.
                let target = conns.address.to_string();
                return Err((ProxyError::UnexpectedUpgrade { target }, fin));
            }
        }
    } else {
        headers::strip_hop_by_hop(&mut rparts.headers);
    }
    headers::append_via(&mut rparts.headers, via);
    rparts.headers.insert(&headers::X_REQUEST_ID, request_id.clone());
    if let Some(s) = &up.sticky {
        if !from_cookie {
            let v = format!("{}={:016x}{}", s.cookie, endpoint_id, s.attributes);
            if let Ok(v) = HeaderValue::from_str(&v) {
                rparts.headers.append(header::SET_COOKIE, v);
            }
        }
    }
    if let Some((policy, state)) = limit_headers {
        rparts.headers.insert(&headers::RATELIMIT_POLICY, policy);
        rparts.headers.insert(&headers::RATELIMIT, state);
    }
    fin.status = status.as_u16();
    fin.in_flight = Some(in_flight);
    if let (Some(ctx), Some(rc)) = (cached, &route.cache) {
        if status.is_server_error() {
            if let Some((response, age)) = ctx.stale {
                rc.count_stale();
                tracing::warn!(route = %route.name, status = status.as_u16(), "upstream answered 5xx: serving a stale cached response");
                return Ok(from_cache(&response, age, "STALE", ctx.head, via, request_id, None, fin));
            }
        }
        rparts.headers.insert(&headers::X_CACHE, HeaderValue::from_static("MISS"));
        let fits = headers::content_length(&rparts.headers).is_some_and(|n| n as usize <= rc.max_entry_bytes);
        if let (false, true, Some(ttl)) = (ctx.head, fits, rc.storable_for(status.as_u16(), &rparts.headers)) {
            // Read the whole (small) body so it can be stored, then answer from memory.
            match http_body_util::BodyExt::collect(http_body_util::Limited::new(rbody, rc.max_entry_bytes)).await {
                Ok(collected) => {
                    let body = collected.to_bytes();
                    conns.checkin(sender, mono_ms());
                    rc.store(&ctx.key, &ctx.request_headers, status.as_u16(), &rparts.headers, body.clone(), ttl).await;
                    return Ok(Response::from_parts(rparts, ProxyBody::full(body).with_finish(fin)));
                }
                Err(e) => {
                    let err = ProxyError::UpstreamBody { target: conns.address.to_string(), reason: e.to_string() };
                    return Err((err, fin));
                }
            }
        }
    }
    if !switching {
        fin.conn = Some((conns, sender));
    }
    Ok(Response::from_parts(rparts, ProxyBody::upstream(rbody).with_finish(fin)))
}

/// A request being looked up in, and possibly filling, a route's cache.
struct CacheCtx {
    key: String,
    request_headers: http::HeaderMap,
    /// An expired entry still good for `stale_if_error`.
    stale: Option<(Arc<CachedResponse>, u64)>,
    head: bool,
    /// While held, other requests for the key wait for this one.
    _leader: Option<crate::cache::Leader>,
}

/// A response served from the cache.
#[allow(clippy::too_many_arguments)]
fn from_cache(
    entry: &CachedResponse,
    age_secs: u64,
    label: &'static str,
    head: bool,
    via: &HeaderValue,
    request_id: &HeaderValue,
    limit_headers: Option<(HeaderValue, HeaderValue)>,
    mut fin: Finish,
) -> Response<ProxyBody> {
    let body = if head { ProxyBody::empty() } else { ProxyBody::full(bytes::Bytes::from(entry.body.clone())) };
    let mut resp = Response::new(body.with_finish({
        fin.status = entry.status;
        fin
    }));
    *resp.status_mut() = http::StatusCode::from_u16(entry.status).unwrap_or(http::StatusCode::OK);
    let h = resp.headers_mut();
    for (k, v) in &entry.headers {
        if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(v)) {
            h.append(k, v);
        }
    }
    h.insert(header::AGE, HeaderValue::from(age_secs));
    h.insert(&headers::X_CACHE, HeaderValue::from_static(label));
    headers::append_via(h, via);
    h.insert(&headers::X_REQUEST_ID, request_id.clone());
    if let Some((policy, state)) = limit_headers {
        h.insert(&headers::RATELIMIT_POLICY, policy);
        h.insert(&headers::RATELIMIT, state);
    }
    resp
}

/// Check the route's limits for this request. `Ok(Some(headers))` when allowed.
async fn rate_limit(
    rl: &crate::proxy::RouteLimit,
    conn: &ConnInfo,
    req_headers: &http::HeaderMap,
) -> Result<Option<(HeaderValue, HeaderValue)>, ProxyError> {
    use crate::limit::{secs, Outcome};
    let key: &str = match &rl.key {
        LimitKey::ClientIp => conn.client_ip.to_str().unwrap_or("-"),
        LimitKey::Route => "",
        LimitKey::Header(h) => req_headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("-"),
    };
    let state = |verdicts: &[crate::limit::local::Verdict]| {
        // The most constrained limit is the one a client needs to know about.
        let (i, v) = verdicts.iter().enumerate().min_by_key(|(_, v)| (v.allowed, v.remaining))?;
        let text = format!("\"{}\";r={};t={}", rl.names.get(i)?, v.remaining, secs(v.reset_ms));
        HeaderValue::from_str(&text).ok()
    };
    match rl.limiter.check(key).await {
        Outcome::Allowed { verdicts, fallback } => {
            rl.decisions[if fallback { 2 } else { 0 }].inc();
            Ok(state(&verdicts).map(|s| (rl.policy_header.clone(), s)))
        }
        Outcome::Limited { verdicts, fallback } => {
            rl.decisions[if fallback { 3 } else { 1 }].inc();
            let retry_after =
                verdicts.iter().filter(|v| !v.allowed).map(|v| secs(v.reset_ms)).max().unwrap_or(1).max(1);
            Err(ProxyError::RateLimited {
                retry_after_secs: retry_after,
                policy: rl.policy_header.clone(),
                state: state(&verdicts),
            })
        }
        Outcome::Unavailable => {
            rl.decisions[4].inc();
            Err(ProxyError::LimiterUnavailable)
        }
    }
}

/// The path and query sent upstream.
fn upstream_uri(uri: &mut Uri, rewrite: Option<&Rewrite>, params: &Params) -> Result<Uri, ProxyError> {
    match rewrite {
        None if uri.scheme().is_none() && uri.authority().is_none() => Ok(std::mem::take(uri)),
        None => {
            let pq = uri.path_and_query().cloned();
            let mut p = http::uri::Parts::default();
            p.path_and_query = pq;
            Uri::from_parts(p).map_err(|_| ProxyError::BadRequest("invalid request target"))
        }
        Some(rw) => {
            let path = rw.apply(uri.path(), params);
            let full = match uri.query() {
                Some(q) if path.contains('?') => format!("{path}&{q}"),
                Some(q) => format!("{path}?{q}"),
                None => path.into_owned(),
            };
            Uri::try_from(full).map_err(|_| ProxyError::BadRequest("rewritten path is not a valid URI"))
        }
    }
}

/// The consistent-hash key of a request.
fn balance_key(hash_on: Option<&HashOn>, conn: &ConnInfo, headers: &http::HeaderMap) -> Option<u64> {
    match hash_on? {
        HashOn::ClientIp => Some(hash_key(conn.client_ip.as_bytes())),
        HashOn::Header(name) => headers.get(name).map(|v| hash_key(v.as_bytes())),
        HashOn::Cookie(name) => headers::cookie(headers, name).map(|v| hash_key(v.as_bytes())),
    }
}

struct Sent {
    response: Response<Incoming>,
    sender: SendRequest<UpstreamBody>,
    conns: Arc<ConnPool>,
    endpoint_id: u64,
    in_flight: InFlight,
    from_cookie: bool,
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

/// Pick a target, get a connection, send; retry where it is safe and the budget allows.
async fn forward(
    gw: &Gateway,
    route: &Route,
    mut req: Request<UpstreamBody>,
    hash: Option<u64>,
    sticky_id: Option<u64>,
    fin: &mut Finish,
) -> Result<Sent, ProxyError> {
    let up: &Upstream = &route.upstream;
    let pool = &up.pool;
    let metrics = &gw.metrics;
    let Some(_permit) = up.breaker.request() else {
        metrics.circuit_open.with_label_values(&[&up.name, "max_requests"]).inc();
        return Err(ProxyError::CircuitOpen { upstream: up.name.to_string(), limit: "max_requests" });
    };
    let mut now = fin.start_ms;
    up.budget.deposit(now / 1000);
    // Latency is only measured when something reads it.
    let timed = pool.measures_latency() || fin.log.is_some();
    let max_attempts = 1 + route.retries;
    let replay =
        (max_attempts > 1 && up.retry_on_5xx && idempotent(req.method()) && http_body::Body::is_end_stream(req.body()))
            .then(|| Replay { method: req.method().clone(), uri: req.uri().clone(), headers: req.headers().clone() });
    let mut tried = [usize::MAX; 11];
    let mut attempt = 0u32;
    let mut stale = 0u32;
    // Whether another attempt may follow the failure of this one.
    let may_retry = |attempt: u32, now: u64| -> bool {
        if attempt + 1 >= max_attempts {
            return false;
        }
        if up.budget.try_withdraw(now / 1000) {
            true
        } else {
            metrics.retry_budget_exhausted.with_label_values(&[&up.name]).inc();
            false
        }
    };
    loop {
        let tried_now = &tried[..attempt as usize];
        if attempt > 0 {
            now = mono_ms();
        }
        let by_cookie = if attempt == 0 { sticky_id.and_then(|id| pool.find_by_id(id, now)) } else { None };
        let Some(idx) = by_cookie.or_else(|| pool.pick(hash, tried_now, now)) else {
            return Err(ProxyError::NoHealthyTarget { upstream: up.name.to_string() });
        };
        let conns = &up.conns[idx];
        let endpoint = &pool.endpoints()[idx];
        if let Some(log) = fin.log.as_mut() {
            log.target = Some(endpoint.address.clone());
            log.attempts = attempt + 1;
        }
        let mut sender = match conns.checkout(now) {
            Some(s) => s,
            None => {
                let Some(_pending) = up.breaker.pending() else {
                    metrics.circuit_open.with_label_values(&[&up.name, "max_pending"]).inc();
                    return Err(ProxyError::CircuitOpen { upstream: up.name.to_string(), limit: "max_pending" });
                };
                match conns.connect(route.connect_timeout).await {
                    Ok(s) => s,
                    Err(e) => {
                        record_failure(gw, up, idx, &e);
                        if may_retry(attempt, now) {
                            metrics.upstream_retries.with_label_values(&[&up.name, e.kind()]).inc();
                            tracing::debug!(upstream = %up.name, target = %endpoint.address, error = %e, "retrying on another target");
                            tried[attempt as usize] = idx;
                            attempt += 1;
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
        };
        if !route.preserve_host {
            req.headers_mut().insert(header::HOST, conns.host_header.clone());
        }
        let in_flight = endpoint.start();
        let sent_at = timed.then(Instant::now);
        let result = tokio::time::timeout(route.timeout, sender.try_send_request(req)).await;
        let upstream_time = sent_at.map(|t| t.elapsed());
        if let Some(log) = fin.log.as_mut() {
            log.upstream_time = upstream_time;
        }
        match result {
            Err(_) => {
                let e = ProxyError::UpstreamTimeout { target: endpoint.address.to_string(), after: route.timeout };
                record_failure(gw, up, idx, &e);
                return Err(e);
            }
            Ok(Err(mut e)) => {
                if let Some(unsent) = e.take_message() {
                    // The pooled connection closed before it took the request.
                    stale += 1;
                    if stale <= MAX_STALE_CONNECTIONS {
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
                    Some(r) if may_retry(attempt, now) => {
                        metrics.upstream_retries.with_label_values(&[&up.name, err.kind()]).inc();
                        req = r.request();
                        tried[attempt as usize] = idx;
                        attempt += 1;
                        continue;
                    }
                    _ => return Err(err),
                }
            }
            Ok(Ok(response)) => {
                if let (Some(t), true) = (upstream_time, pool.measures_latency()) {
                    endpoint.observe_latency(t, now + t.as_millis() as u64);
                }
                let status = response.status().as_u16();
                report(gw, up, idx, status < 500, now);
                if matches!(status, 502..=504) {
                    if let Some(r) = &replay {
                        if may_retry(attempt, now) {
                            metrics.upstream_retries.with_label_values(&[&up.name, retry_reason(status)]).inc();
                            req = r.request();
                            tried[attempt as usize] = idx;
                            attempt += 1;
                            continue;
                        }
                    }
                }
                return Ok(Sent {
                    response,
                    sender,
                    conns: conns.clone(),
                    endpoint_id: endpoint.id,
                    in_flight,
                    from_cookie: by_cookie.is_some(),
                });
            }
        }
    }
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

/// Copy bytes both ways between the client and upstream connections after a 101.
fn spawn_tunnel(client: hyper::upgrade::OnUpgrade, upstream: Option<hyper::upgrade::OnUpgrade>, name: Arc<str>) {
    tokio::spawn(async move {
        let Some(upstream) = upstream else {
            tracing::warn!(upstream = %name, "upstream answered 101 without an upgradable connection");
            return;
        };
        match tokio::try_join!(client, upstream) {
            Ok((c, u)) => {
                let mut c = hyper_util::rt::TokioIo::new(c);
                let mut u = hyper_util::rt::TokioIo::new(u);
                match tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    Ok((to_up, to_client)) => {
                        tracing::debug!(upstream = %name, to_up, to_client, "upgraded connection closed")
                    }
                    Err(e) => {
                        tracing::debug!(upstream = %name, error = %e, "upgraded connection ended with an error")
                    }
                }
            }
            Err(e) => tracing::debug!(upstream = %name, error = %e, "upgrade did not complete"),
        }
    });
}

/// The gateway's own health answer: it serves traffic once a document is applied.
fn health_response(gw: &Gateway) -> Response<ProxyBody> {
    let (status, body) = if gw.version() > 0 {
        (http::StatusCode::OK, "ok\n")
    } else {
        (http::StatusCode::SERVICE_UNAVAILABLE, "no document yet\n")
    };
    let mut resp = Response::new(ProxyBody::full(bytes::Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// The one place a [`ProxyError`] becomes a response.
fn error_response(gw: &Gateway, err: ProxyError, request_id: &HeaderValue, mut fin: Finish) -> Response<ProxyBody> {
    let status = err.status();
    match err.side() {
        Side::Client => {
            gw.metrics.bad_requests.with_label_values(&[err.kind()]).inc();
            tracing::debug!(error = %err, status = status.as_u16(), "request refused")
        }
        Side::Upstream | Side::Internal => {
            tracing::warn!(error = %err, status = status.as_u16(), request_id = request_id.to_str().unwrap_or("-"), "request failed")
        }
    }
    fin.status = status.as_u16();
    if let Some(log) = fin.log.as_mut() {
        log.error = Some(err.kind());
    }
    let body = error_body(&err, request_id.to_str().unwrap_or(""));
    let mut resp = Response::new(ProxyBody::full(body).with_finish(fin));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, JSON.clone());
    h.insert(&headers::X_REQUEST_ID, request_id.clone());
    if let ProxyError::RateLimited { retry_after_secs, policy, state } = &err {
        h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        h.insert(&headers::RATELIMIT_POLICY, policy.clone());
        if let Some(s) = state {
            h.insert(&headers::RATELIMIT, s.clone());
        }
    }
    resp
}
