//! Request aggregation: the route answers with the merged JSON objects of
//! several backend calls made at once (`transform::aggregate` has the merge
//! rule). Each call has its own path template, method and timeout (never
//! past the route's); a call that fails, times out, answers a non-2xx or
//! something that is not JSON is left out and the answer says
//! `X-Meridian-Complete: false`; when every call fails, 502.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use prometheus::IntCounter;
use serde_json::{Map, Value};

use super::transform::RequestValues;
use super::Flow;
use crate::proxy::body::UpstreamBody;
use crate::proxy::context::{Answer, RequestCtx};
use crate::proxy::error::ProxyError;
use crate::proxy::forward::{forward, Pick};
use crate::proxy::{headers, Route};
use crate::transform::aggregate::{filter, merge};
use meridian_core::template::Template;

/// One backend call of an aggregate.
pub(crate) struct Backend {
    /// The call as a route of its own: its upstream, timeout, no retries.
    pub route: Route,
    pub path: Template,
    pub method: Method,
    pub group: Option<String>,
    pub allow: Vec<Vec<String>>,
    pub deny: Vec<Vec<String>>,
}

pub(crate) struct RouteAggregate {
    pub route: Arc<str>,
    pub backends: Vec<Backend>,
    pub max_backend_bytes: usize,
    pub complete: IntCounter,
    pub partial: IntCounter,
    pub failed: IntCounter,
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static INCOMPLETE: HeaderValue = HeaderValue::from_static("false");

/// Append `s` percent-encoded: a value never adds a path segment or a parameter.
fn encode(s: &str, out: &mut String) {
    out.extend(form_urlencoded::byte_serialize(s.as_bytes()));
}

/// One call: its JSON, or why it is left out.
async fn call(
    a: &RouteAggregate,
    b: &Backend,
    ctx: &RequestCtx<'_>,
    headers: http::HeaderMap,
) -> Result<Value, String> {
    let mut path = String::new();
    b.path
        .render_with(&RequestValues(ctx), &mut path, encode)
        .map_err(|v| format!("the request has no value for {v}"))?;
    let uri: Uri = path.parse().map_err(|_| "the rendered path is not a URI".to_string())?;
    let mut req = Request::new(UpstreamBody::empty());
    *req.method_mut() = b.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    let mut fin = crate::proxy::finish::Finish::new(
        std::time::Instant::now(),
        meridian_core::clock::mono_ms(),
        b.route.metrics.clone(),
        None,
    );
    let pick = Pick { hash: None, sticky_id: None };
    let sent = forward(ctx.gw, &b.route, req, pick, &mut fin).await.map_err(|e| e.to_string())?;
    let status = sent.response.status();
    let (head, body) = sent.response.into_parts();
    let answer = Answer::Upstream { head, body, conn: Some((sent.conns, sent.sender)), in_flight: sent.in_flight };
    let (_, bytes) =
        answer.read_whole(a.max_backend_bytes).await.map_err(|_| "the answer could not be read whole".to_string())?;
    if !status.is_success() {
        return Err(format!("answered {}", status.as_u16()));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| "the answer is not JSON".to_string())?;
    Ok(filter(value, &b.allow, &b.deny))
}

pub(super) async fn on_request(a: &RouteAggregate, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let mut base = ctx.head.headers.clone();
    for name in [header::CONTENT_LENGTH, header::CONTENT_TYPE, header::HOST, header::EXPECT, header::ACCEPT_ENCODING] {
        base.remove(name);
    }
    crate::proxy::service::forwarding_headers(&mut base, ctx);
    let ctx_ref: &RequestCtx<'_> = ctx;
    let calls = a.backends.iter().map(|b| {
        let headers = base.clone();
        async move {
            match tokio::time::timeout(b.route.timeout, call(a, b, ctx_ref, headers)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {:?}", b.route.timeout)),
            }
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut merged = Map::new();
    let mut missing = 0;
    for (i, (b, result)) in a.backends.iter().zip(results).enumerate() {
        let fields = match (result, &b.group) {
            (Ok(v), Some(group)) => Ok(Map::from_iter([(group.clone(), v)])),
            (Ok(Value::Object(m)), None) => Ok(m),
            (Ok(_), None) => Err("the answer is not a JSON object".to_string()),
            (Err(reason), _) => Err(reason),
        };
        let fields = match fields {
            Ok(f) => f,
            Err(reason) => {
                missing += 1;
                tracing::info!(route = %a.route, backend = i, upstream = %b.route.upstream.name, %reason, "aggregate: backend left out");
                continue;
            }
        };
        let collisions = merge(&mut merged, fields);
        if collisions > 0 {
            tracing::debug!(route = %a.route, backend = i, collisions, "aggregate: keys already given by an earlier backend");
        }
    }
    if missing == a.backends.len() {
        a.failed.inc();
        return Err(ProxyError::AggregateFailed { backends: missing });
    }
    let bytes = Bytes::from(serde_json::to_vec(&Value::Object(merged)).unwrap_or_default());
    let mut head = http::Response::new(()).into_parts().0;
    head.status = StatusCode::OK;
    head.headers.insert(header::CONTENT_TYPE, JSON.clone());
    head.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    if missing > 0 {
        a.partial.inc();
        head.headers.insert(&headers::X_MERIDIAN_COMPLETE, INCOMPLETE.clone());
    } else {
        a.complete.inc();
    }
    Ok(Flow::Answer(Answer::Full { head, body: bytes }))
}
