//! The cache policy: `lookup` answers fresh hits (and waits for a request
//! already fetching the same key), `on_error` answers a stale entry when the
//! upstream fails (`stale_if_error`), `on_response` marks misses and stores
//! what may be stored.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

use super::Flow;
use crate::cache::{CachedResponse, Leader, Lookup, Role, RouteCache};
use crate::proxy::context::{Answer, RequestCtx};
use crate::proxy::error::ProxyError;
use crate::proxy::headers;

/// A cacheable request that missed: what storing its answer needs.
pub(crate) struct PendingStore {
    /// The request's primary key, kept whole: the store derives the
    /// variant key from the response's `Vary`.
    primary: String,
    request_headers: HeaderMap,
    /// An expired entry still good for `stale_if_error`.
    stale: Option<(Arc<CachedResponse>, u64)>,
    head: bool,
    /// While held, other requests for the key wait for this one.
    _leader: Option<Leader>,
}

/// What the cache has for a request.
enum Found {
    Hit(Answer),
    Miss(PendingStore),
}

pub(super) async fn on_request(cache: &RouteCache, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    if !crate::cache::request_cacheable(&ctx.head.method, &ctx.head.headers) {
        return Ok(Flow::Next);
    }
    match lookup(cache, ctx).await {
        Some(Found::Hit(answer)) => Ok(Flow::Answer(answer)),
        Some(Found::Miss(pending)) => {
            ctx.cache = Some(pending);
            Ok(Flow::Next)
        }
        // A key too long to keep: served, not cached.
        None => Ok(Flow::Next),
    }
}

async fn lookup(cache: &RouteCache, ctx: &RequestCtx<'_>) -> Option<Found> {
    let head = ctx.head.method == Method::HEAD;
    let h = &ctx.head;
    let scheme = ctx.conn.proto.to_str().unwrap_or("http");
    let key = cache.key(scheme, h.host_str(), h.path(), h.uri.query().unwrap_or(""), &h.headers).await?;
    let (found, full_key) = cache.lookup(&key, &ctx.head.headers).await;
    let stale = match found {
        Lookup::Fresh { response, age_secs } => {
            return Some(Found::Hit(cached_answer(&response, age_secs, "HIT", head)))
        }
        Lookup::Stale { response, age_secs } => Some((response, age_secs)),
        Lookup::Miss => None,
    };
    let leader = match cache.coalesce(&full_key) {
        Role::Leader(l) => Some(l),
        Role::Follower(mut done) => {
            let _ = tokio::time::timeout(ctx.route.timeout, done.wait_for(|d| *d)).await;
            if let (Lookup::Fresh { response, age_secs }, _) = cache.lookup(&key, &ctx.head.headers).await {
                return Some(Found::Hit(cached_answer(&response, age_secs, "HIT", head)));
            }
            None
        }
    };
    let request_headers = ctx.head.headers.clone();
    Some(Found::Miss(PendingStore { primary: key, request_headers, stale, head, _leader: leader }))
}

pub(super) fn on_error(cache: &RouteCache, ctx: &mut RequestCtx<'_>, err: &ProxyError) -> Option<Answer> {
    let pending = ctx.cache.as_ref()?;
    let (response, age) = pending.stale.as_ref()?;
    cache.count_stale();
    tracing::warn!(route = %ctx.route.name, error = %err, "upstream failed: serving a stale cached response");
    Some(cached_answer(response, *age, "STALE", pending.head))
}

pub(super) async fn on_response(
    cache: &RouteCache,
    ctx: &mut RequestCtx<'_>,
    mut answer: Answer,
) -> Result<Answer, ProxyError> {
    let Some(pending) = ctx.cache.take() else { return Ok(answer) };
    let status = answer.status();
    if status.is_server_error() {
        if let Some((response, age)) = &pending.stale {
            cache.count_stale();
            tracing::warn!(route = %ctx.route.name, status = status.as_u16(), "upstream answered 5xx: serving a stale cached response");
            return Ok(cached_answer(response, *age, "STALE", pending.head));
        }
    }
    answer.head_mut().headers.insert(&headers::X_CACHE, HeaderValue::from_static("MISS"));
    let head = match &answer {
        Answer::Upstream { head, .. } => head,
        // A body already in memory (converted by a transform) has its length.
        Answer::Full { head, .. } => head,
    };
    let length = match &answer {
        Answer::Upstream { head, .. } => headers::content_length(&head.headers),
        Answer::Full { body, .. } => Some(body.len() as u64),
    };
    let fits = length.is_some_and(|n| n as usize <= cache.max_entry_bytes);
    let cookie = pending.request_headers.contains_key(header::COOKIE);
    let ttl = cache.storable_for(status.as_u16(), &head.headers, cookie);
    let (false, true, Some(ttl)) = (pending.head, fits, ttl) else {
        return Ok(answer);
    };
    // Read the whole (small) body so it can be stored, then answer from memory.
    let limit = cache.max_entry_bytes;
    let (head, body) = answer.read_whole(limit).await.map_err(|e| e.into_proxy(limit))?;
    cache.store(&pending.primary, &pending.request_headers, status.as_u16(), &head.headers, body.clone(), ttl).await;
    Ok(Answer::Full { head, body })
}

/// An answer from a cache entry: its status and headers, `Age` and `X-Cache`.
fn cached_answer(entry: &CachedResponse, age_secs: u64, label: &'static str, head: bool) -> Answer {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    for (k, v) in &entry.headers {
        if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(v)) {
            parts.headers.append(k, v);
        }
    }
    parts.headers.insert(header::AGE, HeaderValue::from(age_secs));
    parts.headers.insert(&headers::X_CACHE, HeaderValue::from_static(label));
    let body = if head { Bytes::new() } else { Bytes::from(entry.body.clone()) };
    Answer::Full { head: parts, body }
}
