//! Request validation: headers and query parameters against their typed
//! checks, the body against the JSON Schema of the request's method. The
//! body is read whole (size capped: 413), its nesting checked before it is
//! parsed, and a request that fails gets a 400 listing each failure with
//! where it is (`header`, `query`, `body` and a JSON Pointer).

use std::sync::Arc;

use prometheus::IntCounter;

use super::transform::query_value;
use super::Flow;
use crate::proxy::context::RequestCtx;
use crate::proxy::error::{Failure, ProxyError};
use crate::transform::json::deeper_than;
use meridian_core::config::ValidateValues;

pub(crate) struct RouteValidate {
    pub route: Arc<str>,
    pub values: ValidateValues,
    /// The route's `max_body_bytes`, within the node's body limit.
    pub max_body: usize,
    pub max_depth: usize,
    pub max_errors: usize,
    pub passed: IntCounter,
    pub refused: IntCounter,
}

/// A message of at most 200 bytes (a failure may quote the input).
fn short(s: String) -> String {
    crate::transform::shorten(s, 200)
}

pub(super) async fn on_request(v: &RouteValidate, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let mut failures = Vec::new();
    for (name, check) in &v.values.headers {
        let value = ctx.head.headers.get(name).map(|h| h.to_str().unwrap_or("\u{fffd}"));
        if let Some(why) = check.refusal(value) {
            failures.push(Failure { place: "header", path: name.to_string(), message: why });
        }
    }
    for (name, check) in &v.values.query {
        let value = ctx.head.uri.query().and_then(|q| query_value(q, name));
        if let Some(why) = check.refusal(value.as_deref()) {
            failures.push(Failure { place: "query", path: name.to_string(), message: why });
        }
    }
    let schema = v.values.body.iter().find(|(m, _)| *m == ctx.head.method).map(|(_, s)| s);
    if let Some(schema) = schema {
        let body = ctx.body_bytes(v.max_body).await.inspect_err(|_| v.refused.inc())?;
        if deeper_than(&body, v.max_depth) {
            failures.push(Failure {
                place: "body",
                path: String::new(),
                message: format!("nested deeper than {} levels", v.max_depth),
            });
        } else {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(doc) => failures.extend(schema.iter_errors(&doc).map(|e| Failure {
                    place: "body",
                    path: e.instance_path().to_string(),
                    message: short(e.to_string()),
                })),
                Err(e) => failures.push(Failure {
                    place: "body",
                    path: String::new(),
                    message: short(format!("not JSON: {e}")),
                }),
            }
        }
    }
    if failures.is_empty() {
        v.passed.inc();
        return Ok(Flow::Next);
    }
    v.refused.inc();
    tracing::debug!(route = %v.route, failures = failures.len(), first = %failures[0].message, "request refused by validation");
    failures.truncate(v.max_errors);
    Err(ProxyError::Invalid { failures })
}
