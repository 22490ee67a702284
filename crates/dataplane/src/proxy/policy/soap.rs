//! REST → SOAP: the request becomes a `POST` of an envelope rendered from
//! its path captures, query and JSON body (values XML-escaped), and the
//! service's answer comes back as JSON — the element inside `Body`, or a
//! fault mapped to a status (client faults: `client_fault_status`, 400 by
//! default; server and other faults: 502) with a JSON error body.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use prometheus::IntCounter;

use super::transform::{json_body, missing, RequestValues, WithBody};
use super::Flow;
use crate::proxy::context::{Answer, ReadError, RequestBody, RequestCtx};
use crate::proxy::error::ProxyError;
use crate::transform::soap::{self, Outcome};
use crate::transform::xml::XmlRules;
use meridian_core::config::SoapVersion;
use meridian_core::template::{escape_xml, Template};

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
