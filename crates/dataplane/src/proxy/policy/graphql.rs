//! GraphQL: REST → GraphQL (a fixed query whose variables come from the
//! request; the answer's `data` back, `errors` mapped to a status), and
//! limits on the queries a GraphQL route proxies (depth, aliases, cost,
//! batch size), checked before the upstream sees them.
//!
//! Errors without data: the first error's `extensions.code` decides —
//! `UNAUTHENTICATED` 401, `FORBIDDEN` 403, `NOT_FOUND` 404,
//! `BAD_USER_INPUT`/`GRAPHQL_VALIDATION_FAILED`/`GRAPHQL_PARSE_FAILED` 400,
//! anything else 502. Errors beside data: 200 with the data and
//! `X-Meridian-Complete: false`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use prometheus::IntCounter;
use serde_json::{json, Map, Value};

use super::transform::{body_field, json_body, missing, query_value, RequestValues, WithBody};
use super::Flow;
use crate::proxy::context::{Answer, ReadError, RequestBody, RequestCtx};
use crate::proxy::error::{Failure, ProxyError};
use crate::proxy::headers;
use crate::transform::graphql::measure;
use meridian_core::config::{GraphqlLimitsConfig, VarKind};
use meridian_core::template::{Template, Var};

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static INCOMPLETE: HeaderValue = HeaderValue::from_static("false");

pub(crate) struct RouteGraphql {
    pub route: Arc<str>,
    pub query: Arc<str>,
    pub operation_name: Option<String>,
    pub variables: Vec<(String, VarKind, Template)>,
    pub reads_body: bool,
    pub max_request: usize,
    pub max_response: usize,
    pub applied: IntCounter,
    pub partial: IntCounter,
    pub errors: IntCounter,
    pub failed: IntCounter,
}

fn refuse(path: &str, message: String) -> ProxyError {
    ProxyError::Invalid { failures: vec![Failure { place: "query", path: path.to_string(), message }] }
}

/// A variable's value, converted to its declared type.
fn variable(name: &str, kind: VarKind, t: &Template, values: &WithBody<'_, '_, '_>) -> Result<Value, ProxyError> {
    if let (Some(var @ Var::Body(path)), Some(body)) = (t.single_variable(), values.body) {
        return body_field(body, path).cloned().ok_or_else(|| missing(var));
    }
    let text = t.render(values).map_err(missing)?;
    let typed = match kind {
        VarKind::Text => Some(Value::String(text.clone())),
        VarKind::Int => text.parse::<i64>().ok().map(Value::from),
        VarKind::Float => text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::from),
        VarKind::Boolean => match text.as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        VarKind::Json => Some(serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))),
    };
    typed.ok_or_else(|| refuse(&format!("${name}"), format!("must be {}", format!("{kind:?}").to_lowercase())))
}

pub(super) async fn on_request(g: &RouteGraphql, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let body = if g.reads_body { Some(json_body(ctx, g.max_request).await?) } else { None };
    let values = WithBody { request: RequestValues(ctx), body: body.as_ref() };
    let mut vars = Map::new();
    for (name, kind, t) in &g.variables {
        vars.insert(name.clone(), variable(name, *kind, t, &values)?);
    }
    let payload = json!({ "query": &*g.query, "operationName": g.operation_name, "variables": vars });
    let bytes = Bytes::from(payload.to_string());
    ctx.head.method = Method::POST;
    let h = &mut ctx.head.headers;
    for name in [header::CONTENT_ENCODING, header::TRANSFER_ENCODING, header::ACCEPT_ENCODING] {
        h.remove(name);
    }
    h.insert(header::CONTENT_TYPE, JSON.clone());
    h.insert(header::ACCEPT, JSON.clone());
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    ctx.body = RequestBody::Read(bytes);
    Ok(Flow::Next)
}

/// The status of errors that came without data.
fn status_of(errors: &[Value]) -> StatusCode {
    let code = errors.first().and_then(|e| e.pointer("/extensions/code")).and_then(Value::as_str).unwrap_or("");
    match code {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "BAD_USER_INPUT" | "GRAPHQL_VALIDATION_FAILED" | "GRAPHQL_PARSE_FAILED" => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    }
}

pub(super) async fn on_response(
    g: &RouteGraphql,
    ctx: &mut RequestCtx<'_>,
    answer: Answer,
) -> Result<Answer, ProxyError> {
    let upstream = ctx.route.upstream.name.to_string();
    let fail = |reason: String| {
        g.failed.inc();
        tracing::warn!(route = %g.route, upstream, %reason, "GraphQL answer not understood");
        ProxyError::UpstreamFormat { upstream: upstream.clone(), reason }
    };
    let limit = g.max_response;
    let (mut head, body) = match answer.read_whole(limit).await {
        Ok(read) => read,
        Err(ReadError::TooLarge) => return Err(fail(format!("larger than {limit} bytes"))),
        Err(e) => return Err(e.into_proxy(limit)),
    };
    let reply: Value = serde_json::from_slice(&body)
        .map_err(|_| fail(format!("the service answered {} without a GraphQL response", head.status.as_u16())))?;
    let errors = reply.get("errors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let data = reply.get("data").filter(|d| !d.is_null());
    let out = match (data, errors.is_empty()) {
        (Some(d), true) => {
            g.applied.inc();
            head.status = StatusCode::OK;
            d.clone()
        }
        (Some(d), false) => {
            g.partial.inc();
            head.status = StatusCode::OK;
            head.headers.insert(&headers::X_MERIDIAN_COMPLETE, INCOMPLETE.clone());
            tracing::info!(route = %g.route, errors = errors.len(), "GraphQL answer with errors beside data");
            d.clone()
        }
        (None, false) => {
            g.errors.inc();
            head.status = status_of(errors);
            tracing::info!(route = %g.route, status = head.status.as_u16(), "GraphQL errors without data");
            let listed: Vec<Value> = errors
                .iter()
                .take(10)
                .map(|e| json!({ "message": e.get("message"), "path": e.get("path"), "code": e.pointer("/extensions/code") }))
                .collect();
            json!({ "error": "graphql_errors", "errors": listed, "request_id": ctx.request_id.to_str().unwrap_or("") })
        }
        (None, true) => return Err(fail("neither data nor errors".into())),
    };
    let bytes = Bytes::from(serde_json::to_vec(&out).map_err(|e| fail(e.to_string()))?);
    super::convert::json_head(&mut head, bytes.len());
    Ok(Answer::Full { head, body: bytes })
}

/// Limits of a route that proxies a GraphQL endpoint.
pub(crate) struct GraphqlLimits {
    pub route: Arc<str>,
    pub limits: GraphqlLimitsConfig,
    pub max_body: usize,
    pub applied: IntCounter,
    pub refused: IntCounter,
}

/// The query texts of a request: `?query=` of a GET, or the body of a POST
/// (`application/graphql`, a JSON request, or a batch of them).
async fn queries(l: &GraphqlLimits, ctx: &mut RequestCtx<'_>) -> Result<Vec<String>, ProxyError> {
    if ctx.head.method == Method::GET {
        return Ok(ctx
            .head
            .uri
            .query()
            .and_then(|q| query_value(q, "query"))
            .map(|q| vec![q.into_owned()])
            .unwrap_or_default());
    }
    if ctx.head.method != Method::POST {
        return Ok(Vec::new());
    }
    let graphql_text = ctx
        .head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/graphql"));
    if graphql_text {
        let bytes = ctx.body_bytes(l.max_body).await?;
        return Ok(vec![String::from_utf8_lossy(&bytes).into_owned()]);
    }
    let request = json_body(ctx, l.max_body).await?;
    let items = match &request {
        Value::Array(items) if items.len() > l.limits.max_batch => {
            return Err(refuse("", format!("a batch of {} operations; at most {}", items.len(), l.limits.max_batch)))
        }
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    items
        .into_iter()
        .map(|item| {
            item.get("query").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
                refuse("query", "no query to check (persisted queries are not accepted on this route)".into())
            })
        })
        .collect()
}

pub(super) async fn on_limits(l: &GraphqlLimits, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let texts = queries(l, ctx).await.inspect_err(|_| l.refused.inc())?;
    for text in &texts {
        let m = measure(text).map_err(|e| refuse("query", e.to_string()));
        let why = match m {
            Err(e) => Some(e),
            Ok(m) if m.depth > l.limits.max_depth => {
                Some(refuse("query", format!("depth {} exceeds {}", m.depth, l.limits.max_depth)))
            }
            Ok(m) if m.aliases > l.limits.max_aliases => {
                Some(refuse("query", format!("{} aliases exceed {}", m.aliases, l.limits.max_aliases)))
            }
            Ok(m) if m.cost > l.limits.max_cost => {
                Some(refuse("query", format!("cost {} exceeds {}", m.cost, l.limits.max_cost)))
            }
            Ok(_) => None,
        };
        if let Some(err) = why {
            l.refused.inc();
            tracing::debug!(route = %l.route, error = %err, "GraphQL query refused");
            return Err(err);
        }
    }
    l.applied.inc();
    Ok(Flow::Next)
}
