//! Data-plane errors: what failed, on which side, whether a retry is safe,
//! and — in exactly one place, [`ProxyError::status`] and [`error_body`] — the
//! HTTP answer the client gets. Client-facing bodies never name upstream
//! addresses; the access log and the error log do.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

/// One reason a request failed validation.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `header`, `query` or `body`.
    pub place: &'static str,
    /// The header or parameter name, or a JSON Pointer into the body.
    pub path: String,
    pub message: String,
}

/// Which side of the proxy caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for {host}{path}")]
    NoRoute { host: String, path: String },
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("the request failed validation ({} failures)", failures.len())]
    Invalid { failures: Vec<Failure> },
    #[error("bad path: {0}")]
    BadPath(#[from] meridian_core::pattern::canonical::PathError),
    #[error("bad host: {0}")]
    BadHost(#[from] meridian_core::pattern::authority::AuthorityError),
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the client's body did not arrive before the upstream's deadline ({after:?})")]
    BodyTimeout { after: Duration },
    #[error("upstream {upstream}: no healthy target")]
    NoHealthyTarget { upstream: String },
    #[error("upstream {upstream}: circuit open ({limit} reached)")]
    CircuitOpen { upstream: String, limit: &'static str },
    #[error("connect to {target} failed: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to {target} timed out after {after:?}")]
    ConnectTimeout { target: String, after: Duration },
    #[error("handshake with {target} failed: {source}")]
    Handshake {
        target: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{target} sent no response head within {after:?}")]
    UpstreamTimeout { target: String, after: Duration },
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64, policy: http::HeaderValue, state: Option<http::HeaderValue> },
    #[error("authentication failed: {message}")]
    Unauthorized { challenge: http::HeaderValue, message: &'static str },
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// HTTP/2 coalescing brought the request to a connection that cannot
    /// serve it (no client certificate): the client retries on its own.
    #[error("misdirected: {0}")]
    Misdirected(&'static str),
    #[error("the credentials cannot be checked now: {0}")]
    AuthUnavailable(&'static str),
    #[error("the rate limiter's store is unreachable and the route fails closed")]
    LimiterUnavailable,
    #[error("reading the body from {target}: {reason}")]
    UpstreamBody { target: String, reason: String },
    /// The upstream's answer could not be converted to what the route promises.
    #[error("converting the answer of upstream {upstream}: {reason}")]
    UpstreamFormat { upstream: String, reason: String },
    #[error("none of the {backends} backends of the aggregate answered")]
    AggregateFailed { backends: usize },
    #[error("{target} switched protocols without being asked")]
    UnexpectedUpgrade { target: String },
    #[error("exchange with {target} failed: {source}")]
    Upstream {
        target: String,
        #[source]
        source: hyper::Error,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::LimiterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamBody { .. }
            | ProxyError::UpstreamFormat { .. }
            | ProxyError::AggregateFailed { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::BadRequest(_)
            | ProxyError::Invalid { .. }
            | ProxyError::BadPath(_)
            | ProxyError::BadHost(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::NoHealthyTarget { .. } | ProxyError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. }
            | ProxyError::Handshake { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UnexpectedUpgrade { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout { .. } | ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::BadRequest(_)
            | ProxyError::Invalid { .. }
            | ProxyError::BadPath(_)
            | ProxyError::BadHost(_)
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::BodyTimeout { .. }
            | ProxyError::RateLimited { .. }
            | ProxyError::Unauthorized { .. }
            | ProxyError::Forbidden(_)
            | ProxyError::Misdirected(_) => Side::Client,
            ProxyError::LimiterUnavailable | ProxyError::AuthUnavailable(_) => Side::Internal,
            ProxyError::NoHealthyTarget { .. } | ProxyError::CircuitOpen { .. } => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// Safe to retry on another target whatever the method: nothing reached the upstream.
    pub fn retry_safe(&self) -> bool {
        matches!(self, ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. } | ProxyError::Handshake { .. })
    }

    /// A short stable name for metrics and the client body.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no_route",
            ProxyError::RateLimited { .. } => "rate_limited",
            ProxyError::LimiterUnavailable => "limiter_unavailable",
            ProxyError::Unauthorized { .. } => "unauthorized",
            ProxyError::Forbidden(_) => "forbidden",
            ProxyError::Misdirected(_) => "misdirected_request",
            ProxyError::AuthUnavailable(_) => "auth_unavailable",
            ProxyError::UpstreamBody { .. } => "upstream_body",
            ProxyError::UpstreamFormat { .. } => "upstream_format",
            ProxyError::AggregateFailed { .. } => "aggregate_failed",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::Invalid { .. } => "invalid_request",
            ProxyError::BadPath(_) => "bad_path",
            ProxyError::BadHost(_) => "bad_host",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::BodyTimeout { .. } => "body_timeout",
            ProxyError::NoHealthyTarget { .. } => "no_healthy_target",
            ProxyError::CircuitOpen { .. } => "circuit_open",
            ProxyError::Connect { .. } => "connect_failed",
            ProxyError::ConnectTimeout { .. } => "connect_timeout",
            ProxyError::Handshake { .. } => "handshake_failed",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
            ProxyError::Upstream { .. } => "upstream_failed",
            ProxyError::UnexpectedUpgrade { .. } => "unexpected_upgrade",
        }
    }

    /// What the client is told (no internal addresses).
    fn public_message(&self) -> String {
        match self {
            ProxyError::NoRoute { .. } => "no route matches this request".into(),
            ProxyError::RateLimited { retry_after_secs, .. } => {
                format!("rate limit exceeded; retry after {retry_after_secs} s")
            }
            ProxyError::LimiterUnavailable => "rate limiting is unavailable and this route fails closed".into(),
            // Fixed texts: never the credential that was sent.
            ProxyError::Unauthorized { message, .. } => (*message).into(),
            ProxyError::Forbidden(why) | ProxyError::Misdirected(why) => (*why).into(),
            ProxyError::AuthUnavailable(why) => (*why).into(),
            ProxyError::UpstreamBody { .. } => "the upstream response could not be read".into(),
            // What was wrong with the document, never where it came from.
            ProxyError::AggregateFailed { .. } => "no backend of this route answered".into(),
            ProxyError::UpstreamFormat { reason, .. } => {
                format!("the upstream answer could not be converted: {reason}")
            }
            ProxyError::BadRequest(why) => (*why).into(),
            ProxyError::Invalid { .. } => "the request does not match what this route accepts".into(),
            ProxyError::BadPath(why) => why.to_string(),
            ProxyError::BadHost(why) => format!("invalid Host: {why}"),
            ProxyError::BodyTooLarge { limit } => format!("request body exceeds {limit} bytes"),
            ProxyError::BodyTimeout { .. } => "the request body did not arrive in time".into(),
            ProxyError::NoHealthyTarget { upstream } => {
                format!("no healthy target in upstream \"{upstream}\"")
            }
            ProxyError::CircuitOpen { upstream, .. } => {
                format!("upstream \"{upstream}\" is at capacity")
            }
            ProxyError::Connect { .. } | ProxyError::Handshake { .. } => "could not connect to the upstream".into(),
            ProxyError::ConnectTimeout { .. } => "timed out connecting to the upstream".into(),
            ProxyError::UpstreamTimeout { .. } => "the upstream did not answer in time".into(),
            ProxyError::Upstream { .. } | ProxyError::UnexpectedUpgrade { .. } => {
                "the upstream connection failed".into()
            }
        }
    }
}

/// The JSON body of a gateway-generated error.
pub fn error_body(err: &ProxyError, request_id: &str) -> Bytes {
    let mut body = serde_json::json!({
        "error": err.kind(),
        "message": err.public_message(),
        "request_id": request_id,
    });
    if let ProxyError::Invalid { failures } = err {
        body["failures"] = failures
            .iter()
            .map(|f| serde_json::json!({ "in": f.place, "path": f.path, "message": f.message }))
            .collect();
    }
    let mut s = body.to_string();
    s.push('\n');
    Bytes::from(s)
}
