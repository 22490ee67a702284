//! Checks of a route's transformations, producing their typed values:
//! templates are compiled here, once per document.

use http::HeaderName;

use super::error::{ConfigErrorKind as K, ConfigErrors};
use super::transform::EditsConfig;
use super::RouteConfig;
use crate::template::{Scope, Template};

/// Edits of one kind of name (headers, query parameters), typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edits<N> {
    pub remove: Vec<N>,
    pub rename: Vec<(N, N)>,
    pub replace: Vec<(N, Template)>,
    pub add: Vec<(N, Template)>,
    pub append: Vec<(N, Template)>,
}

impl<N> Default for Edits<N> {
    fn default() -> Self {
        Self { remove: Vec::new(), rename: Vec::new(), replace: Vec::new(), add: Vec::new(), append: Vec::new() }
    }
}

impl<N> Edits<N> {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    /// Every template, in the order the edits apply.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.replace.iter().chain(&self.add).chain(&self.append).map(|(_, t)| t)
    }
}

/// The typed transformations of one route.
#[derive(Debug, Clone, Default)]
pub struct TransformValues {
    pub request_headers: Edits<HeaderName>,
    /// Parameter names as they read decoded.
    pub request_query: Edits<Box<str>>,
    pub response_headers: Edits<HeaderName>,
}

/// Headers that frame the message: the gateway owns them.
const FRAMING: [&str; 8] =
    ["content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "proxy-connection"];

fn header_name(errors: &mut ConfigErrors, path: &str, name: &str) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(h) if FRAMING.contains(&h.as_str()) => {
            errors.push(
                path,
                K::Invalid {
                    value: name.into(),
                    reason: "a framing header is the gateway's, not a transform's".into(),
                },
            );
            None
        }
        Ok(h) => Some(h),
        Err(_) => {
            errors.push(path, K::InvalidHeaderName(name.into()));
            None
        }
    }
}

fn query_name(errors: &mut ConfigErrors, path: &str, name: &str) -> Option<Box<str>> {
    if name.is_empty() || name.len() > 256 {
        errors.push(path, K::Invalid { value: name.into(), reason: "a parameter name has 1 to 256 bytes".into() });
        return None;
    }
    Some(name.into())
}

/// A template compiled for `scope`, or its error at `path`.
pub(super) fn template(errors: &mut ConfigErrors, path: &str, text: &str, scope: Scope<'_>) -> Option<Template> {
    Template::parse(text, scope)
        .map_err(|e| errors.push(path, K::Invalid { value: text.into(), reason: e.to_string() }))
        .ok()
}

/// Edits of `cfg` at `p`; `header_values`: rendered values must be header values.
fn edits<N>(
    errors: &mut ConfigErrors,
    p: &str,
    cfg: &EditsConfig,
    scope: Scope<'_>,
    name: impl Fn(&mut ConfigErrors, &str, &str) -> Option<N>,
    header_values: bool,
) -> Edits<N> {
    let mut out = Edits::default();
    for (j, n) in cfg.remove.iter().enumerate() {
        out.remove.extend(name(errors, &format!("{p}.remove[{j}]"), n));
    }
    for (from, to) in &cfg.rename {
        let kp = format!("{p}.rename.{from}");
        if let (Some(a), Some(b)) = (name(errors, &kp, from), name(errors, &kp, to)) {
            out.rename.push((a, b));
        }
    }
    let mut valued = |map: &std::collections::BTreeMap<String, String>, op: &str, into: &mut Vec<(N, Template)>| {
        for (n, text) in map {
            let kp = format!("{p}.{op}.{n}");
            let t = template(errors, &kp, text, scope);
            if let Some(lit) = t.as_ref().and_then(|t| t.literal()).filter(|_| header_values) {
                if http::HeaderValue::from_str(lit).is_err() {
                    errors.push(kp.clone(), K::InvalidHeaderValue { name: n.clone(), value: lit.into() });
                    continue;
                }
            }
            if let (Some(n), Some(t)) = (name(errors, &kp, n), t) {
                into.push((n, t));
            }
        }
    };
    valued(&cfg.replace, "replace", &mut out.replace);
    valued(&cfg.add, "add", &mut out.add);
    valued(&cfg.append, "append", &mut out.append);
    out
}

/// Caps and paths of an XML mapping at `p`.
pub(super) fn check_xml(errors: &mut ConfigErrors, p: &str, x: &super::XmlConfig) {
    let mut range = |key: &str, v: usize, lo: usize, hi: usize, rule: &'static str| {
        if v < lo || v > hi {
            errors.push(format!("{p}.{key}"), K::OutOfRange { value: v.to_string(), rule });
        }
    };
    range("max_bytes", x.max_bytes, 1, 64 << 20, "between 1 byte and 64 MiB");
    range("max_depth", x.max_depth, 1, 256, "between 1 and 256");
    range("max_elements", x.max_elements, 1, 1_000_000, "between 1 and 1000000");
    range("max_attributes", x.max_attributes, 0, 1024, "between 0 and 1024");
    for (j, path) in x.always_array.iter().enumerate() {
        if path.is_empty() || path.split('.').any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            errors.push(
                format!("{p}.always_array[{j}]"),
                K::Invalid { value: path.clone(), reason: "a dot path of element names, e.g. `list.item`".into() },
            );
        }
    }
}

/// The transformations of route `p`.
pub(super) fn check_route_transform(
    errors: &mut ConfigErrors,
    p: &str,
    r: &RouteConfig,
    captures: &[Box<str>],
) -> TransformValues {
    if let Some(x) = &r.xml_to_json {
        check_xml(errors, &format!("{p}.xml_to_json"), x);
    }
    let Some(t) = &r.transform else { return TransformValues::default() };
    let scope = Scope { captures, body: false };
    let tp = format!("{p}.transform");
    TransformValues {
        request_headers: edits(errors, &format!("{tp}.request.headers"), &t.request.headers, scope, header_name, true),
        request_query: edits(errors, &format!("{tp}.request.query"), &t.request.query, scope, query_name, false),
        response_headers: edits(
            errors,
            &format!("{tp}.response.headers"),
            &t.response.headers,
            scope,
            header_name,
            true,
        ),
    }
}
