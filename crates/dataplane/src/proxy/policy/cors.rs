//! The CORS policy: preflights (`OPTIONS` with
//! `Access-Control-Request-Method`) are answered by the gateway, before
//! authentication, advertising only methods the route's authorization lets
//! someone call; other requests from an allowed origin get the
//! `Access-Control-Allow-*` headers. Every answer of the route carries
//! `Vary: Origin`, since what it says depends on the origin.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::Flow;
use crate::proxy::context::{Answer, RequestCtx};
use crate::proxy::error::ProxyError;
use meridian_core::config::{normalise_origin, OriginPattern};

static ORIGIN_VARY: HeaderValue = HeaderValue::from_static("Origin");
static PREFLIGHT_VARY: HeaderValue =
    HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static ANY: HeaderValue = HeaderValue::from_static("*");
static REQUEST_PRIVATE_NETWORK: HeaderName = HeaderName::from_static("access-control-request-private-network");
static ALLOW_PRIVATE_NETWORK: HeaderName = HeaderName::from_static("access-control-allow-private-network");

pub struct RouteCors {
    pub route: Arc<str>,
    pub any_origin: bool,
    pub origins: Vec<String>,
    pub patterns: Vec<OriginPattern>,
    /// Methods advertised: the configured ones a caller may use.
    pub methods: Vec<Method>,
    pub allow_methods: HeaderValue,
    pub allow_headers: Option<HeaderValue>,
    pub expose_headers: Option<HeaderValue>,
    pub allow_credentials: bool,
    pub max_age: HeaderValue,
    pub private_network: bool,
    pub metrics: Arc<crate::telemetry::GatewayMetrics>,
}

impl RouteCors {
    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any_origin && !self.allow_credentials {
            return Some(ANY.clone());
        }
        let o = normalise_origin(origin.to_str().ok()?)?;
        let allowed =
            self.any_origin || self.origins.contains(&o) || self.patterns.iter().any(|p| pattern_matches(p, &o));
        allowed.then(|| origin.clone())
    }

    fn count(&self, result: &str) {
        self.metrics.cors_decisions.with_label_values(&[&self.route, result]).inc();
    }
}

/// `scheme://<labels><suffix>`: at least one non-empty label before the suffix.
fn pattern_matches(p: &OriginPattern, origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix(p.scheme.as_str()) else { return false };
    let Some(labels) = rest.strip_suffix(p.suffix.as_str()) else { return false };
    !labels.is_empty()
        && labels.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

pub(super) fn on_request(c: &RouteCors, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let h = &ctx.head.headers;
    let preflight = ctx.head.method == Method::OPTIONS && h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed = h.get(header::ORIGIN).and_then(|o| c.allow_origin(o));
    if !preflight {
        ctx.response_headers.push((&header::VARY, ORIGIN_VARY.clone()));
        if let Some(origin) = allowed {
            c.count("allowed");
            ctx.response_headers.push((&header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
            if c.allow_credentials {
                ctx.response_headers.push((&header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone()));
            }
            if let Some(e) = &c.expose_headers {
                ctx.response_headers.push((&header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
            }
        } else if h.contains_key(header::ORIGIN) {
            // Served (the browser enforces the refusal), but told nothing.
            c.count("refused");
        }
        return Ok(Flow::Next);
    }
    let method = h.get(header::ACCESS_CONTROL_REQUEST_METHOD).and_then(|m| Method::from_bytes(m.as_bytes()).ok());
    let (mut head, _) = http::Response::new(()).into_parts();
    head.headers.insert(header::VARY, PREFLIGHT_VARY.clone());
    let ok = match (allowed, method) {
        (Some(origin), Some(m)) if c.methods.contains(&m) => {
            let rh = &mut head.headers;
            rh.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            rh.insert(header::ACCESS_CONTROL_ALLOW_METHODS, c.allow_methods.clone());
            if let Some(v) = &c.allow_headers {
                rh.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            if c.allow_credentials {
                rh.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
            }
            rh.insert(header::ACCESS_CONTROL_MAX_AGE, c.max_age.clone());
            if c.private_network && h.get(&REQUEST_PRIVATE_NETWORK).is_some_and(|v| v == "true") {
                rh.insert(&ALLOW_PRIVATE_NETWORK, TRUE.clone());
            }
            true
        }
        _ => false,
    };
    c.count(if ok { "preflight" } else { "preflight_refused" });
    head.status = if ok { StatusCode::NO_CONTENT } else { StatusCode::FORBIDDEN };
    tracing::debug!(route = %c.route, allowed = ok, "CORS preflight answered");
    Ok(Flow::Answer(Answer::Full { head, body: Bytes::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(scheme: &str, suffix: &str) -> OriginPattern {
        OriginPattern { scheme: scheme.into(), suffix: suffix.into() }
    }

    #[test]
    fn patterns_are_anchored_and_need_a_label() {
        let p = pat("https://", ".example.test");
        assert!(pattern_matches(&p, "https://app.example.test"));
        assert!(pattern_matches(&p, "https://a.b.example.test"));
        assert!(!pattern_matches(&p, "https://example.test"));
        assert!(!pattern_matches(&p, "https://.example.test"));
        assert!(!pattern_matches(&p, "http://app.example.test"));
        assert!(!pattern_matches(&p, "https://app.example.test.evil.test"));
        assert!(!pattern_matches(&p, "https://evilexample.test"));
        assert!(!pattern_matches(&p, "https://app.example.test:8443"));
        assert!(!pattern_matches(&p, "null"));
    }
}
