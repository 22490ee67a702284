//! Answer conversion: XML answers of a route become JSON (`xml_to_json`).
//! Runs on the way back before the cache stores, so a hit is served
//! converted. Answers that are not XML (an HTML error page, an encoded
//! body) pass untouched and are counted `skipped`.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::HeaderMap;
use prometheus::IntCounter;

use crate::proxy::context::{Answer, ReadError, RequestCtx};
use crate::proxy::error::ProxyError;
use crate::transform::xml::{self, XmlRules};

pub(crate) struct XmlToJson {
    pub route: Arc<str>,
    pub rules: XmlRules,
    pub applied: IntCounter,
    pub skipped: IntCounter,
    pub failed: IntCounter,
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// `application/xml`, `text/xml` and `application/<anything>+xml`.
pub(crate) fn is_xml(h: &HeaderMap) -> bool {
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/xml" || mime == "text/xml" || (mime.starts_with("application/") && mime.ends_with("+xml"))
}

/// A body not sent as is (gzip, ...) cannot be read here.
pub(crate) fn encoded(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_ENCODING).is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// The head of an answer whose body is now `len` bytes of JSON.
pub(crate) fn json_head(head: &mut http::response::Parts, len: usize) {
    let h = &mut head.headers;
    h.insert(header::CONTENT_TYPE, JSON.clone());
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.remove(header::TRANSFER_ENCODING);
    // Another representation: a strong validator of the XML does not hold.
    if let Some(tag) = h.get(header::ETAG).filter(|t| !t.as_bytes().starts_with(b"W/")).cloned() {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(tag.as_bytes());
        match HeaderValue::from_bytes(&weak) {
            Ok(w) => h.insert(header::ETAG, w),
            Err(_) => h.remove(header::ETAG),
        };
    }
}

/// Ask for an answer this policy can read: no content coding.
pub(super) fn on_request(_: &XmlToJson, ctx: &mut RequestCtx<'_>) -> super::Flow {
    ctx.head.headers.remove(header::ACCEPT_ENCODING);
    super::Flow::Next
}

pub(super) async fn on_response(c: &XmlToJson, ctx: &mut RequestCtx<'_>, answer: Answer) -> Result<Answer, ProxyError> {
    let h = &answer.head().headers;
    if ctx.head.method == http::Method::HEAD || !is_xml(h) || encoded(h) {
        c.skipped.inc();
        return Ok(answer);
    }
    let upstream = ctx.route.upstream.name.to_string();
    let limit = c.rules.max_bytes;
    let fail = |reason: String| {
        c.failed.inc();
        tracing::warn!(route = %c.route, upstream, %reason, "XML answer not converted");
        ProxyError::UpstreamFormat { upstream: upstream.clone(), reason }
    };
    let (mut head, body) = match answer.read_whole(limit).await {
        Ok(read) => read,
        Err(ReadError::TooLarge) => return Err(fail(xml::XmlError::TooLarge(limit).to_string())),
        Err(e) => return Err(e.into_proxy(limit)),
    };
    let json = xml::to_json(&body, &c.rules).map_err(|e| fail(e.to_string()))?;
    let bytes = bytes::Bytes::from(serde_json::to_vec(&json).map_err(|e| fail(e.to_string()))?);
    json_head(&mut head, bytes.len());
    c.applied.inc();
    Ok(Answer::Full { head, body: bytes })
}
