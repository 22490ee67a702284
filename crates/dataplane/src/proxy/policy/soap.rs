//! REST → SOAP: the request becomes a `POST` of an envelope rendered from
//! its path captures, query and JSON body (values XML-escaped), and the
//! service's answer comes back as JSON — the element inside `Body`, or a
//! fault mapped to a status (client faults: `client_fault_status`, 400 by
//! default; server and other faults: 502) with a JSON error body.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use prometheus::IntCounter;

use super::transform::RequestValues;
use super::Flow;
use crate::proxy::context::{Answer, ReadError, RequestBody, RequestCtx};
use crate::proxy::error::{Failure, ProxyError};
use crate::transform::json::deeper_than;
use crate::transform::soap::{self, Outcome};
use crate::transform::xml::XmlRules;
use meridian_core::config::SoapVersion;
use meridian_core::template::{escape_xml, Template, Values, Var};

/// Deepest JSON request body a translation reads.
pub(crate) const MAX_BODY_DEPTH: usize = 64;

pub(crate) struct RouteSoap {
    pub route: Arc<str>,
    pub content_type: HeaderValue,
    /// `SOAPAction` (1.1 only), quoted.
    pub soap_action: Option<HeaderValue>,
    pub version: SoapVersion,
    pub body: Template,
    pub reads_body: bool,
    pub max_request: usize,
    pub client_fault_status: StatusCode,
    /// `always_array` paths under `Envelope.Body.`.
    pub rules: XmlRules,
    pub applied: IntCounter,
    pub faults: IntCounter,
    pub failed: IntCounter,
}

/// Request values plus the fields of a JSON body.
pub(crate) struct WithBody<'v, 'c, 'a> {
    pub request: RequestValues<'c, 'a>,
    pub body: Option<&'v serde_json::Value>,
}

/// The field of a JSON body at a dot path (array items by index).
pub(crate) fn body_field<'v>(body: &'v serde_json::Value, path: &[Box<str>]) -> Option<&'v serde_json::Value> {
    let mut v = body;
    for field in path {
        v = match v {
            serde_json::Value::Array(items) => items.get(field.parse::<usize>().ok()?)?,
            other => other.get(&**field)?,
        };
    }
    Some(v)
}

impl Values for WithBody<'_, '_, '_> {
    fn value(&self, var: &Var) -> Option<Cow<'_, str>> {
        let Var::Body(path) = var else { return self.request.value(var) };
        match body_field(self.body?, path)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
            other => Some(Cow::Owned(other.to_string())),
        }
    }
}

/// The JSON body of a request a translation reads (size and depth capped).
pub(crate) async fn json_body(ctx: &mut RequestCtx<'_>, limit: usize) -> Result<serde_json::Value, ProxyError> {
    let bytes = ctx.body_bytes(limit).await?;
    let refuse = |message: String| ProxyError::Invalid {
        failures: vec![Failure { place: "body", path: String::new(), message }],
    };
    if deeper_than(&bytes, MAX_BODY_DEPTH) {
        return Err(refuse(format!("nested deeper than {MAX_BODY_DEPTH} levels")));
    }
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| refuse(format!("not JSON: {e}")))
}

/// The 400 of a template value the request does not have.
pub(crate) fn missing(var: &Var) -> ProxyError {
    let place = match var {
        Var::Body(_) => "body",
        Var::Query(_) => "query",
        Var::Header(_) => "header",
        _ => "request",
    };
    ProxyError::Invalid {
        failures: vec![Failure { place, path: var.to_string(), message: "the request has no value for it".into() }],
    }
}

pub(super) async fn on_request(s: &RouteSoap, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let body = if s.reads_body { Some(json_body(ctx, s.max_request).await?) } else { None };
    let mut content = String::new();
    let values = WithBody { request: RequestValues(ctx), body: body.as_ref() };
    s.body.render_with(&values, &mut content, escape_xml).map_err(missing)?;
    let envelope = Bytes::from(soap::envelope(s.version, &content));
    ctx.head.method = Method::POST;
    let h = &mut ctx.head.headers;
    for name in [header::CONTENT_ENCODING, header::TRANSFER_ENCODING, header::ACCEPT_ENCODING] {
        h.remove(name);
    }
    h.insert(header::CONTENT_TYPE, s.content_type.clone());
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(envelope.len()));
    h.insert(header::ACCEPT, HeaderValue::from_static("text/xml, application/soap+xml"));
    if let Some(a) = &s.soap_action {
        h.insert("soapaction", a.clone());
    }
    ctx.body = RequestBody::Read(envelope);
    Ok(Flow::Next)
}

pub(super) async fn on_response(s: &RouteSoap, ctx: &mut RequestCtx<'_>, answer: Answer) -> Result<Answer, ProxyError> {
    let upstream = ctx.route.upstream.name.to_string();
    let fail = |reason: String| {
        s.failed.inc();
        tracing::warn!(route = %s.route, upstream, %reason, "SOAP answer not understood");
        ProxyError::UpstreamFormat { upstream: upstream.clone(), reason }
    };
    let status = answer.status();
    if !super::convert::is_xml(&answer.head().headers) || super::convert::encoded(&answer.head().headers) {
        return Err(fail(format!("the service answered {} without a SOAP envelope", status.as_u16())));
    }
    let limit = s.rules.max_bytes;
    let (mut head, body) = match answer.read_whole(limit).await {
        Ok(read) => read,
        Err(ReadError::TooLarge) => return Err(fail(format!("larger than {limit} bytes"))),
        Err(e) => return Err(e.into_proxy(limit)),
    };
    let json = match soap::read_answer(&body, &s.rules).map_err(|e| fail(e.to_string()))? {
        Outcome::Answer(v) => {
            s.applied.inc();
            head.status = if status.is_success() { status } else { StatusCode::BAD_GATEWAY };
            v
        }
        Outcome::Fault(f) => {
            s.faults.inc();
            head.status = if f.client { s.client_fault_status } else { StatusCode::BAD_GATEWAY };
            tracing::info!(route = %s.route, code = %f.code, status = head.status.as_u16(), "SOAP fault");
            serde_json::json!({
                "error": "soap_fault",
                "fault": { "code": f.code, "message": f.message, "detail": f.detail },
                "request_id": ctx.request_id.to_str().unwrap_or(""),
            })
        }
    };
    let bytes = Bytes::from(serde_json::to_vec(&json).map_err(|e| fail(e.to_string()))?);
    super::convert::json_head(&mut head, bytes.len());
    Ok(Answer::Full { head, body: bytes })
}
