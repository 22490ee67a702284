//! Route policies: what a route does to a request between `route` and the
//! upstream, and to the answer after it. A route's policies are compiled
//! into an ordered list, in the order the design fixes (IP rules → CORS →
//! authentication → authorization → rate limit → validation → cache →
//! transforms); requests go through it front to back, answers back to
//! front — also an answer a policy gives itself (a cache hit, a preflight)
//! goes back through the policies before it. A policy is a module of its own; adding one is a variant here and
//! a file beside this one, and the driver (`service`) does not change.

pub(crate) mod access;
pub(crate) mod aggregate;
pub(crate) mod auth;
pub(crate) mod cache;
pub(crate) mod convert;
pub(crate) mod cors;
pub(crate) mod graphql;
pub(crate) mod ip_rules;
pub(crate) mod rate_limit;
pub(crate) mod soap;
pub(crate) mod transform;
pub(crate) mod validate;

use std::sync::Arc;

use super::context::{Answer, RequestCtx};
use super::error::ProxyError;

/// One policy of a route, with its compiled state.
pub(crate) enum Policy {
    IpRules(Arc<ip_rules::IpRules>),
    Cors(Arc<cors::RouteCors>),
    Auth(Arc<auth::RouteAuth>),
    Access(Arc<access::RouteAccess>),
    RateLimit(Arc<rate_limit::RouteLimit>),
    Validate(Arc<validate::RouteValidate>),
    GraphqlLimits(Arc<graphql::GraphqlLimits>),
    Cache(Arc<crate::cache::RouteCache>),
    /// Response header edits: before the cache, so that hits and answers of
    /// later policies get them, with templates rendered from this request.
    ResponseHeaders(Arc<transform::RouteTransform>),
    /// Request header and query edits.
    Transform(Arc<transform::RouteTransform>),
    /// XML answers to JSON.
    XmlToJson(Arc<convert::XmlToJson>),
    /// REST → SOAP and the answer back to JSON.
    Soap(Arc<soap::RouteSoap>),
    /// REST → GraphQL and the answer's data back.
    Graphql(Arc<graphql::RouteGraphql>),
    /// The merged answers of several backend calls.
    Aggregate(Arc<aggregate::RouteAggregate>),
}

/// What a request policy decided.
pub(crate) enum Flow {
    /// On to the next policy, then the upstream.
    Next,
    /// The policy answered the client; the chain stops here.
    Answer(Answer),
}

impl Policy {
    /// Before the upstream. An error ends the exchange with its response.
    pub async fn on_request(&self, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
        match self {
            Policy::IpRules(r) => ip_rules::on_request(r, ctx),
            Policy::Cors(c) => cors::on_request(c, ctx),
            Policy::Auth(a) => auth::on_request(a, ctx).await,
            Policy::Access(a) => access::on_request(a, ctx),
            Policy::RateLimit(limit) => rate_limit::on_request(limit, ctx).await,
            Policy::Validate(v) => validate::on_request(v, ctx).await,
            Policy::GraphqlLimits(l) => graphql::on_limits(l, ctx).await,
            Policy::Cache(cache) => cache::on_request(cache, ctx).await,
            Policy::ResponseHeaders(t) => transform::on_request_response(t, ctx),
            Policy::Transform(t) => transform::on_request(t, ctx),
            Policy::XmlToJson(c) => Ok(convert::on_request(c, ctx)),
            Policy::Soap(s) => soap::on_request(s, ctx).await,
            Policy::Graphql(g) => graphql::on_request(g, ctx).await,
            Policy::Aggregate(a) => aggregate::on_request(a, ctx).await,
        }
    }

    /// The upstream could not answer; a policy may answer instead.
    pub fn on_error(&self, ctx: &mut RequestCtx<'_>, err: &ProxyError) -> Option<Answer> {
        match self {
            Policy::Cache(cache) => cache::on_error(cache, ctx, err),
            _ => None,
        }
    }

    /// After the upstream answered.
    pub async fn on_response(&self, ctx: &mut RequestCtx<'_>, answer: Answer) -> Result<Answer, ProxyError> {
        match self {
            Policy::Cache(cache) => cache::on_response(cache, ctx, answer).await,
            Policy::ResponseHeaders(t) => Ok(transform::on_response(t, ctx, answer)),
            Policy::XmlToJson(c) => convert::on_response(c, ctx, answer).await,
            Policy::Soap(s) => soap::on_response(s, ctx, answer).await,
            Policy::Graphql(g) => graphql::on_response(g, ctx, answer).await,
            _ => Ok(answer),
        }
    }
}
