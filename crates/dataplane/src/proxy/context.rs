//! What the phases of one request share: a request head that does not depend
//! on the HTTP codec (hyper's server fills it today; another codec can fill
//! the same type, so policies are written once), the route it matched, and
//! what the exchange has gathered so far; and [`Answer`], what the phases
//! hand back before the driver makes it a response.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::body::UpstreamBody;
use super::finish::Finish;
use super::policy::cache::PendingStore;
use super::server::{ClientAddr, ConnInfo};
use super::upstream::ConnPool;
use super::Route;
use crate::balance::InFlight;
use meridian_core::pattern::Params;

/// The request as policies read and change it.
pub(crate) struct RequestHead {
    pub method: Method,
    pub version: Version,
    /// As received: origin-form, or absolute-form from a proxy-aware client.
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The authority the client addressed: the URI's, else `Host`.
    pub host: HeaderValue,
}

impl RequestHead {
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// `host` as text; `accept` refuses requests whose host is not.
    pub fn host_str(&self) -> &str {
        self.host.to_str().unwrap_or("")
    }
}

/// The per-request context every phase after `route` works on.
pub(crate) struct RequestCtx<'a> {
    /// The gateway serving the request (metrics, settings, upstream calls).
    pub gw: &'a super::Gateway,
    pub head: RequestHead,
    /// The client's connection: its address (formatted once), scheme, listener.
    pub conn: &'a ConnInfo,
    /// The request's client ([`ConnInfo::client_of`]): what limits, balancing and logs use.
    pub client: ClientAddr,
    pub route: &'a Arc<Route>,
    /// Segments a path template captured.
    pub params: Params,
    pub request_id: &'a HeaderValue,
    /// `Via` for this request's protocol version.
    pub via: &'static HeaderValue,
    /// Headers every answer of this exchange carries, whoever produces it
    /// (the rate limit's state, ...).
    pub response_headers: &'a mut Vec<(&'static HeaderName, HeaderValue)>,
    /// Who is calling, once authenticated.
    pub caller: Option<crate::identity::Caller>,
    /// The cache policy's request, between lookup and store.
    pub cache: Option<PendingStore>,
    /// The client's body: streamed to the upstream unless a policy read it.
    pub body: RequestBody,
    /// Response header values a transform rendered from the request.
    pub response_values: Option<Box<[Option<HeaderValue>]>>,
    /// Metrics and the access-log record of the exchange.
    pub fin: &'a mut Finish,
}

/// The request body as the phases hold it.
pub(crate) enum RequestBody {
    /// Not read yet: streamed to the upstream as it arrives.
    Stream(Incoming),
    /// Read whole by a policy (validation, a translation).
    Read(Bytes),
    /// Handed to the upstream request.
    Taken,
}

impl RequestCtx<'_> {
    /// The whole request body, read once: at most `limit` bytes (413
    /// beyond), within the route's timeout (408 after).
    pub async fn body_bytes(&mut self, limit: usize) -> Result<Bytes, super::error::ProxyError> {
        use super::error::ProxyError;
        use http_body_util::BodyExt;
        match std::mem::replace(&mut self.body, RequestBody::Taken) {
            RequestBody::Read(b) => {
                self.body = RequestBody::Read(b.clone());
                Ok(b)
            }
            RequestBody::Taken => Ok(Bytes::new()),
            RequestBody::Stream(b) => {
                let too_large = ProxyError::BodyTooLarge { limit: limit as u64 };
                if super::headers::content_length(&self.head.headers).is_some_and(|n| n > limit as u64) {
                    return Err(too_large);
                }
                let after = self.route.timeout;
                let read = tokio::time::timeout(after, http_body_util::Limited::new(b, limit).collect())
                    .await
                    .map_err(|_| ProxyError::BodyTimeout { after })?;
                let bytes = match read {
                    Ok(c) => c.to_bytes(),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large),
                    Err(_) => return Err(ProxyError::BadRequest("the request body could not be read")),
                };
                self.body = RequestBody::Read(bytes.clone());
                Ok(bytes)
            }
        }
    }
}

/// What the phases answer with; the driver makes it a response.
pub(crate) enum Answer {
    /// Streamed from the upstream. The connection goes back to its pool when
    /// the body has been sent whole (`None` after an upgrade).
    Upstream {
        head: http::response::Parts,
        body: Incoming,
        conn: Option<(Arc<ConnPool>, SendRequest<UpstreamBody>)>,
        in_flight: InFlight,
    },
    /// A complete body in memory: cache hits, responses read to be stored.
    Full { head: http::response::Parts, body: Bytes },
}

/// Why an answer's body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Longer than the limit.
    TooLarge,
    /// The upstream's body failed (where from, why).
    Failed { target: String, reason: String },
}

impl ReadError {
    /// As the error of reading an upstream body.
    pub fn into_proxy(self, limit: usize) -> super::error::ProxyError {
        match self {
            ReadError::TooLarge => super::error::ProxyError::UpstreamBody {
                target: String::new(),
                reason: format!("longer than {limit} bytes"),
            },
            ReadError::Failed { target, reason } => super::error::ProxyError::UpstreamBody { target, reason },
        }
    }
}

impl Answer {
    /// The head and the whole body, at most `limit` bytes. A streamed body is
    /// read to its end and its connection goes back to the pool.
    pub async fn read_whole(self, limit: usize) -> Result<(http::response::Parts, Bytes), ReadError> {
        match self {
            Answer::Full { head, body } if body.len() <= limit => Ok((head, body)),
            Answer::Full { .. } => Err(ReadError::TooLarge),
            Answer::Upstream { head, body, conn, in_flight } => {
                if super::headers::content_length(&head.headers).is_some_and(|n| n > limit as u64) {
                    return Err(ReadError::TooLarge);
                }
                use http_body_util::BodyExt;
                let collected = http_body_util::Limited::new(body, limit).collect().await.map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        return ReadError::TooLarge;
                    }
                    let target = conn.as_ref().map_or_else(String::new, |(pool, _)| pool.address.to_string());
                    ReadError::Failed { target, reason: e.to_string() }
                })?;
                drop(in_flight);
                if let Some((pool, sender)) = conn {
                    pool.checkin(sender, meridian_core::clock::mono_ms());
                }
                Ok((head, collected.to_bytes()))
            }
        }
    }

    pub fn head(&self) -> &http::response::Parts {
        match self {
            Answer::Upstream { head, .. } | Answer::Full { head, .. } => head,
        }
    }

    pub fn head_mut(&mut self) -> &mut http::response::Parts {
        match self {
            Answer::Upstream { head, .. } | Answer::Full { head, .. } => head,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Answer::Upstream { head, .. } | Answer::Full { head, .. } => head.status,
        }
    }
}
