//! Header and query edits (`docs/transform.md`): on the request after the
//! cache lookup, on the answer before it reaches the client. Each kind of
//! name is edited in a fixed order — remove → rename → replace → add →
//! append — with values rendered from templates before any edit applies,
//! so every template reads the request as it reached this phase.
//!
//! `replace` sets a name only when it is present, `add` only when it is
//! absent (a client's header is never overridden by `add`), `append` always.
//! An edit whose template needs a value the request does not have (a
//! missing header, no consumer, a value that cannot be a header) is skipped
//! and counted (`result="skipped"`).
//!
//! Also here: what templates read from a request ([`RequestValues`], and
//! [`WithBody`] with a JSON body read by [`json_body`]), shared by the
//! protocol translations (`soap`, `graphql`, `aggregate`).

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Uri};
use prometheus::IntCounter;

use super::Flow;
use crate::proxy::context::{Answer, RequestCtx};
use crate::proxy::error::{Failure, ProxyError};
use crate::transform::json::deeper_than;
use meridian_core::config::Edits;
use meridian_core::template::{Template, Values, Var};

/// A value of an edit: fixed when the template has no variable.
enum Value {
    Fixed(HeaderValue),
    Template(Template),
}

impl Value {
    fn of(t: &Template) -> Self {
        match t.literal().map(HeaderValue::from_str) {
            Some(Ok(v)) => Value::Fixed(v),
            _ => Value::Template(t.clone()),
        }
    }
}

/// Compiled edits of one kind of name.
struct Compiled<N> {
    edits: Edits<N>,
    /// The values of `replace`, `add`, `append`, in that order.
    values: Vec<Value>,
    /// Whether a value needs the request.
    templated: bool,
}

impl<N> Compiled<N> {
    fn new(edits: Edits<N>) -> Self {
        let values: Vec<Value> = edits.templates().map(Value::of).collect();
        let templated = values.iter().any(|v| matches!(v, Value::Template(_)));
        Self { edits, values, templated }
    }
}

/// Counters of one stage.
struct Counted {
    applied: IntCounter,
    skipped: IntCounter,
}

impl Counted {
    fn new(gw_metrics: &crate::telemetry::GatewayMetrics, route: &str, stage: &str) -> Self {
        Self {
            applied: gw_metrics.transforms.with_label_values(&[route, stage, "applied"]),
            skipped: gw_metrics.transforms.with_label_values(&[route, stage, "skipped"]),
        }
    }
}

/// A route's header and query edits.
pub(crate) struct RouteTransform {
    route: Arc<str>,
    request_headers: Compiled<HeaderName>,
    query: Compiled<Box<str>>,
    response_headers: Compiled<HeaderName>,
    request: Counted,
    response: Counted,
}

impl RouteTransform {
    pub fn new(
        route: &str,
        v: meridian_core::config::TransformValues,
        metrics: &crate::telemetry::GatewayMetrics,
    ) -> Self {
        Self {
            route: route.into(),
            request_headers: Compiled::new(v.request_headers),
            query: Compiled::new(v.request_query),
            response_headers: Compiled::new(v.response_headers),
            request: Counted::new(metrics, route, "request"),
            response: Counted::new(metrics, route, "response"),
        }
    }

    pub fn edits_request(&self) -> bool {
        !self.request_headers.edits.is_empty() || !self.query.edits.is_empty()
    }

    pub fn edits_response(&self) -> bool {
        !self.response_headers.edits.is_empty()
    }
}

/// What a request has for template variables.
pub(crate) struct RequestValues<'c, 'a>(pub &'c RequestCtx<'a>);

impl Values for RequestValues<'_, '_> {
    fn value(&self, var: &Var) -> Option<Cow<'_, str>> {
        let ctx = self.0;
        match var {
            Var::Header(h) => ctx.head.headers.get(h)?.to_str().ok().map(Cow::Borrowed),
            Var::Query(name) => query_value(ctx.head.uri.query()?, name),
            Var::Path(i, _) => ctx.params.get(ctx.head.path(), *i).map(Cow::Borrowed),
            Var::Consumer => ctx.caller.as_ref().map(|c| Cow::Borrowed(&*c.consumer)),
            Var::Claim(name) => match ctx.caller.as_ref()?.claims.as_ref()?.get(&**name)? {
                serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
                other => Some(Cow::Owned(other.to_string())),
            },
            Var::RequestId => ctx.request_id.to_str().ok().map(Cow::Borrowed),
            // Only protocol translations read the body; they answer it themselves.
            Var::Body(_) => None,
        }
    }
}

/// Deepest JSON request body a translation reads.
pub(crate) const MAX_BODY_DEPTH: usize = 64;

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

/// The first value of parameter `name` in a query string, decoded.
pub(crate) fn query_value<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A template's value for the request as a header value: a header or the
/// request id alone is reused as it is, anything else rendered once.
fn render_one(t: &Template, values: &RequestValues<'_, '_>, route: &str) -> Option<HeaderValue> {
    match t.single_variable() {
        Some(Var::Header(h)) => return values.0.head.headers.get(h).cloned(),
        Some(Var::RequestId) => return Some(values.0.request_id.clone()),
        _ => {}
    }
    match t.render(values) {
        Ok(s) => HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).ok(),
        Err(var) => {
            tracing::debug!(route, variable = %var, "transform skipped: the request has no value for it");
            None
        }
    }
}

/// The templated values of `c` rendered for the request (`None` when every
/// value is fixed: nothing is allocated).
fn render<N>(c: &Compiled<N>, values: &RequestValues<'_, '_>, route: &str) -> Option<Vec<Option<HeaderValue>>> {
    c.templated.then(|| {
        c.values
            .iter()
            .map(|v| match v {
                Value::Fixed(_) => None,
                Value::Template(t) => render_one(t, values, route),
            })
            .collect()
    })
}

/// Value `i` of `c`: fixed, or taken from what was rendered.
fn value_at<N>(c: &Compiled<N>, rendered: &mut Option<Vec<Option<HeaderValue>>>, i: usize) -> Option<HeaderValue> {
    match c.values.get(i)? {
        Value::Fixed(h) => Some(h.clone()),
        Value::Template(_) => rendered.as_mut()?.get_mut(i)?.take(),
    }
}

pub(super) fn on_request(t: &RouteTransform, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let (mut headers, mut query) = {
        let values = RequestValues(ctx);
        (render(&t.request_headers, &values, &t.route), render(&t.query, &values, &t.route))
    };
    let mut skipped = 0;
    if !t.request_headers.edits.is_empty() {
        let value = |i| value_at(&t.request_headers, &mut headers, i);
        skipped += edit_headers(&mut ctx.head.headers, &t.request_headers.edits, value);
    }
    if !t.query.edits.is_empty() {
        skipped += edit_query(&mut ctx.head.uri, &t.query.edits, |i| value_at(&t.query, &mut query, i))?;
    }
    count(&t.request, skipped);
    Ok(Flow::Next)
}

/// Before the cache: the answer's values rendered while the request is at hand.
pub(super) fn on_request_response(t: &RouteTransform, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    if let Some(rendered) = render(&t.response_headers, &RequestValues(ctx), &t.route) {
        ctx.response_values = Some(rendered.into_boxed_slice());
    }
    Ok(Flow::Next)
}

pub(super) fn on_response(t: &RouteTransform, ctx: &mut RequestCtx<'_>, mut answer: Answer) -> Answer {
    let mut rendered = ctx.response_values.take().map(Vec::from);
    let value = |i| value_at(&t.response_headers, &mut rendered, i);
    let skipped = edit_headers(&mut answer.head_mut().headers, &t.response_headers.edits, value);
    count(&t.response, skipped);
    answer
}

fn count(c: &Counted, skipped: u64) {
    if skipped > 0 {
        c.skipped.inc_by(skipped);
    } else {
        c.applied.inc();
    }
}

/// Apply `e` to a header map, value `i` of `replace`, `add`, `append` (in
/// that order) from `value`; the number of edits skipped for a missing value.
fn edit_headers(h: &mut HeaderMap, e: &Edits<HeaderName>, mut value: impl FnMut(usize) -> Option<HeaderValue>) -> u64 {
    for name in &e.remove {
        h.remove(name);
    }
    for (from, to) in &e.rename {
        let several = h.get_all(from).iter().nth(1).is_some();
        if several {
            let moved: Vec<HeaderValue> = h.get_all(from).iter().cloned().collect();
            h.remove(from);
            for v in moved {
                h.append(to, v);
            }
        } else if let Some(v) = h.remove(from) {
            h.append(to, v);
        }
    }
    // Values are asked for only by edits that apply: an edit with nothing
    // to do is not skipped for want of its value.
    let mut skipped = 0;
    let mut set = |h: &mut HeaderMap, name: &HeaderName, i: usize, append: bool| match value(i) {
        Some(v) if append => {
            h.append(name, v);
        }
        Some(v) => {
            h.insert(name, v);
        }
        None => skipped += 1,
    };
    let (r, a) = (e.replace.len(), e.add.len());
    for (i, (name, _)) in e.replace.iter().enumerate() {
        if h.contains_key(name) {
            set(h, name, i, false);
        }
    }
    for (i, (name, _)) in e.add.iter().enumerate() {
        if !h.contains_key(name) {
            set(h, name, r + i, false);
        }
    }
    for (i, (name, _)) in e.append.iter().enumerate() {
        set(h, name, r + a + i, true);
    }
    skipped
}

/// One `name=value` of a query string: its decoded name and its text as sent.
struct Param {
    name: String,
    raw: String,
}

fn encoded(name: &str, value: &str) -> String {
    form_urlencoded::Serializer::new(String::new()).append_pair(name, value).finish()
}

/// Apply `e` to the query of `uri`. Parameters no edit names keep their
/// encoding as sent; names and values an edit writes are form-encoded.
fn edit_query(
    uri: &mut Uri,
    e: &Edits<Box<str>>,
    value: impl FnMut(usize) -> Option<HeaderValue>,
) -> Result<u64, ProxyError> {
    let mut params: Vec<Param> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|raw| Param {
            name: form_urlencoded::parse(raw.as_bytes()).next().map(|(k, _)| k.into_owned()).unwrap_or_default(),
            raw: raw.to_string(),
        })
        .collect();
    params.retain(|p| !e.remove.iter().any(|r| **r == p.name));
    for (from, to) in &e.rename {
        for p in params.iter_mut().filter(|p| *p.name == **from) {
            let value =
                form_urlencoded::parse(p.raw.as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
            p.raw = encoded(to, &value);
            p.name = to.to_string();
        }
    }
    let mut value = value;
    let mut text = |i: usize| value(i).and_then(|v| v.to_str().ok().map(str::to_string));
    let (r, a) = (e.replace.len(), e.add.len());
    let mut skipped = 0;
    for (i, (name, _)) in e.replace.iter().enumerate() {
        let Some(first) = params.iter().position(|p| *p.name == **name) else { continue };
        let Some(v) = text(i) else {
            skipped += 1;
            continue;
        };
        params[first].raw = encoded(name, &v);
        let mut n = 0;
        params.retain(|p| {
            n += 1;
            n - 1 == first || *p.name != **name
        });
    }
    for (i, (name, _)) in e.add.iter().enumerate() {
        if params.iter().any(|p| *p.name == **name) {
            continue;
        }
        match text(r + i) {
            Some(v) => params.push(Param { name: name.to_string(), raw: encoded(name, &v) }),
            None => skipped += 1,
        }
    }
    for (i, (name, _)) in e.append.iter().enumerate() {
        match text(r + a + i) {
            Some(v) => params.push(Param { name: name.to_string(), raw: encoded(name, &v) }),
            None => skipped += 1,
        }
    }
    let query: Vec<&str> = params.iter().map(|p| p.raw.as_str()).collect();
    let pq = if query.is_empty() { uri.path().to_string() } else { format!("{}?{}", uri.path(), query.join("&")) };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|_| ProxyError::BadRequest("invalid request target"))?);
    *uri = Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::template::Scope;

    fn t(s: &str) -> Template {
        Template::parse(s, Scope::default()).unwrap()
    }

    #[test]
    fn query_edits_keep_untouched_parameters_as_sent() {
        let mut uri: Uri = "/p?keep=a%2Fb&drop=1&old=x+y&set=1&set=2".parse().unwrap();
        let e = Edits {
            remove: vec!["drop".into()],
            rename: vec![("old".into(), "new".into())],
            replace: vec![("set".into(), t("3")), ("absent".into(), t("z"))],
            add: vec![("keep".into(), t("no")), ("fresh".into(), t("a b&c"))],
            append: vec![("keep".into(), t("again"))],
        };
        let values: Vec<_> = e.templates().map(|t| HeaderValue::from_str(t.literal().unwrap()).ok()).collect();
        assert_eq!(edit_query(&mut uri, &e, |i| values[i].clone()).unwrap(), 0);
        assert_eq!(uri.to_string(), "/p?keep=a%2Fb&new=x+y&set=3&fresh=a+b%26c&keep=again");
    }

    #[test]
    fn a_missing_value_skips_only_its_edit() {
        let mut h = HeaderMap::new();
        h.insert("a", HeaderValue::from_static("1"));
        let e = Edits {
            replace: vec![(HeaderName::from_static("a"), t("x"))],
            add: vec![(HeaderName::from_static("b"), t("y"))],
            ..Edits::default()
        };
        let values = [None, Some(HeaderValue::from_static("y"))];
        assert_eq!(edit_headers(&mut h, &e, |i| values[i].clone()), 1);
        assert_eq!(h["a"], "1");
        assert_eq!(h["b"], "y");
    }
}
