//! The request path: named phases over a per-request context, in this order
//! (`docs/phases.md` has the chart):
//!
//! `accept` (host, target form, body limit) → `route` → request policies
//! (the route's compiled list: rate limit, cache lookup, ...) → `prepare`
//! (rewrite, forwarding headers) → `forward` (pick, connect, send, retry;
//! [`super::forward`]) → `respond` (response headers, upgrade tunnel) →
//! response policies (cache store, ...) → `finish` (metrics, access log,
//! pool return, when the body ends).
//!
//! A phase that fails ends the chain with a [`ProxyError`]; it becomes a
//! response in [`error_response`] only.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::body::{ProxyBody, UpstreamBody};
use super::context::{Answer, RequestBody, RequestCtx, RequestHead};
use super::error::{error_body, ProxyError, Side};
use super::finish::{AccessRecord, Finish};
use super::forward::{forward, Pick, Sent};
use super::headers;
use super::policy::Flow;
use super::server::{ClientAddr, ConnInfo};
use super::{Gateway, Route, Snapshot};
use crate::balance::hash_key;
use crate::routing::normalize_host;
use meridian_core::clock::mono_ms;
use meridian_core::config::HashOn;
use meridian_core::pattern::authority::check_authority;
use meridian_core::pattern::canonical::{canonical_path, PathPolicy};
use meridian_core::pattern::{Params, Rewrite};

static VIA_11: HeaderValue = HeaderValue::from_static("1.1 meridian");
static VIA_2: HeaderValue = HeaderValue::from_static("2 meridian");
static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Serve one request.
pub(crate) async fn handle(gw: Arc<Gateway>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Response<ProxyBody> {
    let _busy = conn.busy();
    if let Some(hp) = &conn.health_path {
        if req.uri().path() == &**hp {
            return health_response(&gw);
        }
    }
    let start = Instant::now();
    let start_ms = mono_ms();
    let snap = gw.snapshot();
    let request_id = headers::request_id(req.headers());
    let log = gw.settings.access_log.then(|| access_record(&conn, &req, &request_id));
    let mut fin = Finish::new(start, start_ms, gw.unmatched.clone(), log);
    let mut extra = Vec::new();
    match run(&gw, &snap, &conn, req, &request_id, &mut fin, &mut extra).await {
        Ok(answer) => into_response(answer, fin),
        Err(err) => {
            let mut resp = error_response(&gw, err, &request_id, fin);
            add_headers(resp.headers_mut(), &extra);
            resp
        }
    }
}

fn access_record(conn: &ConnInfo, req: &Request<Incoming>, request_id: &HeaderValue) -> Box<AccessRecord> {
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
        client: conn.client,
        peer: conn.peer.ip().to_canonical(),
        request_id: request_id.clone(),
        route: None,
        upstream: None,
        target: None,
        upstream_time: None,
        attempts: 0,
        error: None,
        consumer: None,
        request_bytes: headers::content_length(req.headers()),
    })
}

/// The phases, in order.
async fn run(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    fin: &mut Finish,
    response_headers: &mut Vec<(&'static header::HeaderName, HeaderValue)>,
) -> Result<Answer, ProxyError> {
    let (mut parts, body) = req.into_parts();
    let mut head = accept(gw, &mut parts, conn)?;
    let client = conn.client_of(&head.headers);
    if let Some(log) = fin.log.as_mut() {
        log.client = client.ip;
    }
    // Hop-by-hop headers go before any policy reads the request, so what the
    // cache keys on is what the upstream gets; an upgrade is noted first.
    let mut upgrade = Upgrade::of(&mut head, &mut parts);
    headers::strip_hop_by_hop(&mut head.headers);
    let (route, params) = {
        let Some(m) = snap.table.find(head.host_str(), head.path(), &head.method, &head.headers) else {
            return Err(ProxyError::NoRoute {
                host: normalize_host(head.host_str()).into_owned(),
                path: head.path().into(),
            });
        };
        (m.value, m.params)
    };
    fin.metrics = route.metrics.clone();
    if let Some(log) = fin.log.as_mut() {
        log.route = Some(route.name.clone());
        log.upstream = Some(route.upstream.name.clone());
    }
    let via = if head.version == Version::HTTP_2 { &VIA_2 } else { &VIA_11 };
    let mut ctx = RequestCtx {
        gw,
        head,
        conn,
        client,
        route,
        params,
        request_id,
        via,
        response_headers,
        caller: None,
        cache: None,
        response_values: None,
        body: RequestBody::Stream(body),
        fin,
    };
    upgrade.allow(gw, route);
    for (i, policy) in route.policies.iter().enumerate() {
        if let Flow::Answer(answer) = policy.on_request(&mut ctx).await? {
            let answer = answer_back(&route.policies[..i], &mut ctx, answer).await?;
            return Ok(decorate(&ctx, answer));
        }
    }
    let (upstream_req, pick) = prepare(gw, &mut ctx, &upgrade)?;
    let sent = match forward(gw, route, upstream_req, pick, &mut *ctx.fin).await {
        Ok(sent) => sent,
        Err(err) => {
            let fallback =
                route.policies.iter().enumerate().rev().find_map(|(i, p)| Some((i, p.on_error(&mut ctx, &err)?)));
            return match fallback {
                Some((i, answer)) => {
                    let answer = answer_back(&route.policies[..i], &mut ctx, answer).await?;
                    Ok(decorate(&ctx, answer))
                }
                None => Err(err),
            };
        }
    };
    let answer = respond(gw, &ctx, sent, upgrade)?;
    let answer = answer_back(&route.policies, &mut ctx, answer).await?;
    Ok(decorate(&ctx, answer))
}

/// An answer on its way back through `policies`, last to first.
async fn answer_back(
    policies: &[super::policy::Policy],
    ctx: &mut RequestCtx<'_>,
    mut answer: Answer,
) -> Result<Answer, ProxyError> {
    for policy in policies.iter().rev() {
        answer = policy.on_response(ctx, answer).await?;
    }
    Ok(answer)
}

/// accept: a request head the later phases can trust.
fn accept(gw: &Gateway, parts: &mut http::request::Parts, conn: &ConnInfo) -> Result<RequestHead, ProxyError> {
    let host = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    let Some(host) = host else { return Err(ProxyError::BadRequest("missing Host header")) };
    check_authority(host.to_str().map_err(|_| ProxyError::BadRequest("invalid Host header"))?)?;
    if parts.uri.authority().is_some() {
        // Absolute form: the target's authority is the Host the upstream
        // gets (RFC 9112 §3.2.2), the same one routing and the cache key use.
        parts.headers.insert(header::HOST, host.clone());
    }
    if !parts.uri.path().starts_with('/') {
        return Err(ProxyError::BadRequest("request target must be an absolute path"));
    }
    // From here on every phase sees the canonical path only.
    if let Cow::Owned(path) = canonical_path(parts.uri.path(), &conn.paths)? {
        parts.uri = with_path(&parts.uri, &path)?;
    }
    let limit = gw.settings.limits.max_body_bytes;
    if headers::content_length(&parts.headers).is_some_and(|len| len > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    Ok(RequestHead {
        method: std::mem::take(&mut parts.method),
        version: parts.version,
        uri: std::mem::take(&mut parts.uri),
        headers: std::mem::take(&mut parts.headers),
        host,
    })
}

/// A WebSocket (or other HTTP/1.1) upgrade the client asked for.
struct Upgrade {
    protocol: Option<HeaderValue>,
    client: Option<hyper::upgrade::OnUpgrade>,
}

impl Upgrade {
    fn of(head: &mut RequestHead, parts: &mut http::request::Parts) -> Self {
        let protocol = if head.version == Version::HTTP_11 { headers::upgrade_protocol(&head.headers) } else { None };
        let client = protocol.as_ref().and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
        Self { protocol, client }
    }

    /// Keep the upgrade only when the route allows its protocol; otherwise
    /// the request goes on as plain HTTP (RFC 9110 §7.8 lets a server ignore
    /// `Upgrade`) and the refusal is counted.
    fn allow(&mut self, gw: &Gateway, route: &Route) {
        let Some(p) = &self.protocol else { return };
        // `websocket`, `WebSocket/13`, ...: the name before any version.
        let name = p.to_str().unwrap_or("").split('/').next().unwrap_or("").trim().to_ascii_lowercase();
        let allowed = route.upgrades.contains(&name);
        let result = if allowed { "tunnelled" } else { "refused" };
        // A label per protocol a route may list; anything else is `other`.
        let label = if allowed || name == "h2c" || name == "websocket" { name.as_str() } else { "other" };
        gw.metrics.upgrades.with_label_values(&[&route.name, label, result]).inc();
        if !allowed {
            tracing::debug!(route = %route.name, protocol = %name, "upgrade not allowed on this route: served as plain HTTP");
            self.protocol = None;
            self.client = None;
        }
    }
}

/// prepare: the request the upstream gets, and how to pick its target.
fn prepare(
    gw: &Gateway,
    ctx: &mut RequestCtx<'_>,
    upgrade: &Upgrade,
) -> Result<(Request<UpstreamBody>, Pick), ProxyError> {
    let up = &ctx.route.upstream;
    let uri = upstream_uri(&mut ctx.head.uri, ctx.route.rewrite.as_ref(), &ctx.params, &ctx.conn.paths)?;
    let h = &ctx.head.headers;
    let pick = Pick {
        hash: balance_key(up.pool.hash_on.as_ref(), &ctx.client, h),
        sticky_id: up
            .sticky
            .as_ref()
            .and_then(|s| headers::cookie(h, &s.cookie).and_then(|v| u64::from_str_radix(v, 16).ok())),
    };
    let mut h = std::mem::take(&mut ctx.head.headers);
    h.remove(header::EXPECT);
    if let Some(proto) = &upgrade.protocol {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, proto.clone());
    }
    if !h.contains_key(header::HOST) {
        h.insert(header::HOST, ctx.head.host.clone());
    }
    forwarding_headers(&mut h, ctx);
    let limit = gw.settings.limits.max_body_bytes;
    let body = match std::mem::replace(&mut ctx.body, RequestBody::Taken) {
        _ if upgrade.protocol.is_some() => UpstreamBody::empty(),
        RequestBody::Stream(body) => UpstreamBody::limited(body, limit),
        RequestBody::Read(bytes) => UpstreamBody::full(bytes),
        RequestBody::Taken => UpstreamBody::empty(),
    };
    let mut req = Request::new(body);
    *req.method_mut() = ctx.head.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = h;
    Ok((req, pick))
}

/// What every request sent upstream carries: `X-Forwarded-*`, `Via`, `X-Request-Id`.
pub(crate) fn forwarding_headers(h: &mut http::HeaderMap, ctx: &RequestCtx<'_>) {
    headers::append_forwarded_for(h, &ctx.conn.client_ip);
    h.insert(&headers::X_FORWARDED_PROTO, ctx.conn.proto.clone());
    h.insert(&headers::X_FORWARDED_HOST, ctx.head.host.clone());
    headers::append_via(h, ctx.via);
    h.insert(&headers::X_REQUEST_ID, ctx.request_id.clone());
}

/// respond: the upstream's answer as the client gets it (before response policies).
fn respond(gw: &Gateway, ctx: &RequestCtx<'_>, sent: Sent, upgrade: Upgrade) -> Result<Answer, ProxyError> {
    let Sent { response, sender, conns, endpoint_id, in_flight, from_cookie } = sent;
    let up = &ctx.route.upstream;
    let (mut head, body) = response.into_parts();
    let switching = head.status == http::StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let (Some(client), Some(_)) = (upgrade.client, upgrade.protocol) else {
            // The upstream switched protocols the client never asked for.
            return Err(ProxyError::UnexpectedUpgrade { target: conns.address.to_string() });
        };
        let upstream_up = head.extensions.remove::<hyper::upgrade::OnUpgrade>();
        super::tunnel::spawn(gw, client, upstream_up, up.name.clone());
    } else {
        headers::strip_hop_by_hop(&mut head.headers);
    }
    if let Some(s) = &up.sticky {
        if !from_cookie {
            let v = format!("{}={:016x}{}", s.cookie, endpoint_id, s.attributes);
            if let Ok(v) = HeaderValue::from_str(&v) {
                head.headers.append(header::SET_COOKIE, v);
            }
        }
    }
    let conn = (!switching).then_some((conns, sender));
    Ok(Answer::Upstream { head, body, conn, in_flight })
}

/// What every answer of the exchange carries: `Via`, `X-Request-Id`, and the
/// headers policies asked for.
fn decorate(ctx: &RequestCtx<'_>, mut answer: Answer) -> Answer {
    let h = &mut answer.head_mut().headers;
    headers::append_via(h, ctx.via);
    h.insert(&headers::X_REQUEST_ID, ctx.request_id.clone());
    add_headers(h, ctx.response_headers);
    answer
}

/// Headers policies asked every answer to carry; `Vary` adds to the
/// upstream's, the others replace.
fn add_headers(h: &mut http::HeaderMap, extra: &[(&'static header::HeaderName, HeaderValue)]) {
    for (name, value) in extra {
        if *name == header::VARY {
            h.append(*name, value.clone());
        } else {
            h.insert(*name, value.clone());
        }
    }
}

/// The end of the phases: the response, with `finish` riding on its body.
fn into_response(answer: Answer, mut fin: Finish) -> Response<ProxyBody> {
    fin.status = answer.status().as_u16();
    match answer {
        Answer::Upstream { head, body, conn, in_flight } => {
            fin.in_flight = Some(in_flight);
            fin.conn = conn;
            Response::from_parts(head, ProxyBody::upstream(body).with_finish(fin))
        }
        Answer::Full { head, body } => Response::from_parts(head, ProxyBody::full(body).with_finish(fin)),
    }
}

/// `uri` with its path replaced (query, scheme and authority kept).
fn with_path(uri: &Uri, path: &str) -> Result<Uri, ProxyError> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|_| ProxyError::BadRequest("invalid request target"))?);
    Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid request target"))
}

/// The path and query sent upstream.
fn upstream_uri(
    uri: &mut Uri,
    rewrite: Option<&Rewrite>,
    params: &Params,
    paths: &PathPolicy,
) -> Result<Uri, ProxyError> {
    match rewrite {
        None if uri.scheme().is_none() && uri.authority().is_none() => Ok(std::mem::take(uri)),
        None => {
            let pq = uri.path_and_query().cloned();
            let mut p = http::uri::Parts::default();
            p.path_and_query = pq;
            Uri::from_parts(p).map_err(|_| ProxyError::BadRequest("invalid request target"))
        }
        Some(rw) => {
            let rewritten = rw.apply(uri.path(), params);
            // A canonical path went in and the rewrite has no dot segments
            // (validation), so this cannot climb out of the rewrite's target;
            // an empty capture can leave `//`, which goes the way of any path.
            let path = canonical_path(&rewritten, paths)?;
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
fn balance_key(hash_on: Option<&HashOn>, client: &ClientAddr, headers: &http::HeaderMap) -> Option<u64> {
    match hash_on? {
        HashOn::ClientIp => Some(hash_key(client.text.as_bytes())),
        HashOn::Header(name) => headers.get(name).map(|v| hash_key(v.as_bytes())),
        HashOn::Cookie(name) => headers::cookie(headers, name).map(|v| hash_key(v.as_bytes())),
    }
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
    if let ProxyError::Unauthorized { challenge, .. } = &err {
        h.insert(header::WWW_AUTHENTICATE, challenge.clone());
    }
    if let ProxyError::RateLimited { retry_after_secs, policy, state } = &err {
        h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        h.insert(&headers::RATELIMIT_POLICY, policy.clone());
        if let Some(s) = state {
            h.insert(&headers::RATELIMIT, s.clone());
        }
    }
    resp
}
