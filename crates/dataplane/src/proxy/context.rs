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
    /// Response header values a transform rendered from the request.
    pub response_values: Option<Box<[Option<HeaderValue>]>>,
    /// Metrics and the access-log record of the exchange.
    pub fin: &'a mut Finish,
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

impl Answer {
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
