//! Checks of a route's transformations, producing their typed values:
//! templates are compiled here, once per document.

use http::HeaderName;

use super::error::{ConfigErrorKind as K, ConfigErrors};
use super::transform::EditsConfig;
use super::validate::range;
use super::RouteConfig;
use crate::template::{Scope, Template};

/// Largest body or document cap a route may set.
const MAX_CAP: usize = 64 << 20;
const BYTES: &str = "between 1 byte and 64 MiB";

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
    pub soap: Option<SoapValues>,
    pub graphql: Option<GraphqlValues>,
    /// Each backend's path template and method.
    pub aggregate: Vec<(Template, http::Method)>,
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
    range(errors, format!("{p}.max_bytes"), x.max_bytes, 1, MAX_CAP, BYTES);
    range(errors, format!("{p}.max_depth"), x.max_depth, 1, 256, "between 1 and 256");
    range(errors, format!("{p}.max_elements"), x.max_elements, 1, 1_000_000, "between 1 and 1000000");
    range(errors, format!("{p}.max_attributes"), x.max_attributes, 0, 1024, "between 0 and 1024");
    for (j, path) in x.always_array.iter().enumerate() {
        if path.is_empty() || path.split('.').any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            errors.push(
                format!("{p}.always_array[{j}]"),
                K::Invalid { value: path.clone(), reason: "a dot path of element names, e.g. `list.item`".into() },
            );
        }
    }
}

/// The compiled SOAP mapping of a route.
#[derive(Debug, Clone)]
pub struct SoapValues {
    pub body: Template,
    /// Whether the template reads the JSON request body.
    pub reads_body: bool,
}

fn check_soap(errors: &mut ConfigErrors, p: &str, r: &RouteConfig, captures: &[Box<str>]) -> Option<SoapValues> {
    let s = r.soap.as_ref()?;
    let sp = format!("{p}.soap");
    check_xml(errors, &format!("{sp}.response"), &s.response);
    if !(400..=499).contains(&s.client_fault_status) {
        errors.push(
            format!("{sp}.client_fault_status"),
            K::OutOfRange { value: s.client_fault_status.to_string(), rule: "a 4xx status" },
        );
    }
    range(errors, format!("{sp}.max_request_bytes"), s.max_request_bytes, 1, MAX_CAP, BYTES);
    if let Some(a) = &s.action {
        if a.contains(['"', '\\']) || http::HeaderValue::from_str(a).is_err() {
            errors.push(
                format!("{sp}.action"),
                K::Invalid { value: a.clone(), reason: "an action is visible ASCII without quotes".into() },
            );
        }
    }
    if r.xml_to_json.is_some() {
        errors.push(
            format!("{p}.xml_to_json"),
            K::Invalid { value: "xml_to_json".into(), reason: "a soap route converts its answers itself".into() },
        );
    }
    let body = template(errors, &format!("{sp}.body"), &s.body, Scope { captures, body: true })?;
    if let Err(reason) = well_formed(&body) {
        errors.push(format!("{sp}.body"), K::Invalid { value: s.body.clone(), reason });
        return None;
    }
    let reads_body = body.variables().any(|v| matches!(v, crate::template::Var::Body(_)));
    Some(SoapValues { body, reads_body })
}

/// Whether `t`, rendered with a sample value everywhere, is well-formed
/// XML content (elements closed in order, no DOCTYPE).
fn well_formed(t: &Template) -> Result<(), String> {
    use quick_xml::events::Event;
    struct Sample;
    impl crate::template::Values for Sample {
        fn value(&self, _: &crate::template::Var) -> Option<std::borrow::Cow<'_, str>> {
            Some("x".into())
        }
    }
    let mut text = String::new();
    t.render_with(&Sample, &mut text, crate::template::escape_xml).map_err(|v| format!("{v} has no sample value"))?;
    let mut reader = quick_xml::Reader::from_str(&text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    loop {
        match reader.read_event().map_err(|e| format!("not XML: {e}"))? {
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::DocType(_) => return Err("a DOCTYPE is not accepted".into()),
            Event::Eof if depth == 0 => return Ok(()),
            Event::Eof => return Err("not XML: an element is not closed".into()),
            _ => {}
        }
    }
}

/// What a GraphQL variable's value is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    Int,
    Float,
    Boolean,
    /// `String`, `ID`, enums and custom scalars.
    Text,
    /// Lists and input objects: from one `$(body.…)` as JSON.
    Json,
}

/// The compiled REST → GraphQL mapping of a route.
#[derive(Debug, Clone)]
pub struct GraphqlValues {
    pub variables: Vec<(String, VarKind, Template)>,
    pub reads_body: bool,
}

/// Deepest raw nesting of `{`, `(` and `[` a GraphQL text may have before it
/// is parsed (the parser recurses).
pub const GRAPHQL_MAX_NESTING: usize = 128;

/// Whether a GraphQL text nests braces, parentheses and brackets deeper
/// than `max`, found in one pass (strings, block strings and comments skipped).
pub fn graphql_nesting_exceeds(text: &str, max: usize) -> bool {
    let b = text.as_bytes();
    let (mut i, mut depth) = (0, 0usize);
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'(' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

fn var_kind(t: &async_graphql_parser::types::Type) -> VarKind {
    use async_graphql_parser::types::BaseType;
    match &t.base {
        BaseType::List(_) => VarKind::Json,
        BaseType::Named(n) => match n.as_str() {
            "Int" => VarKind::Int,
            "Float" => VarKind::Float,
            "Boolean" => VarKind::Boolean,
            _ => VarKind::Text,
        },
    }
}

fn check_graphql(errors: &mut ConfigErrors, p: &str, r: &RouteConfig, captures: &[Box<str>]) -> Option<GraphqlValues> {
    let g = r.graphql.as_ref()?;
    let gp = format!("{p}.graphql");
    let bad = |value: &str, reason: String| K::Invalid { value: value.into(), reason };
    if r.soap.is_some() || r.xml_to_json.is_some() {
        errors.push(
            gp.clone(),
            bad("graphql", "a route translates to one protocol: soap, graphql or xml_to_json".into()),
        );
    }
    range(errors, format!("{gp}.max_request_bytes"), g.max_request_bytes, 1, MAX_CAP, BYTES);
    range(errors, format!("{gp}.max_response_bytes"), g.max_response_bytes, 1, MAX_CAP, BYTES);
    if graphql_nesting_exceeds(&g.query, GRAPHQL_MAX_NESTING) {
        errors.push(format!("{gp}.query"), bad("query", format!("nested deeper than {GRAPHQL_MAX_NESTING}")));
        return None;
    }
    let doc = match async_graphql_parser::parse_query(&g.query) {
        Ok(d) => d,
        Err(e) => {
            errors.push(format!("{gp}.query"), bad("query", format!("not a GraphQL query: {e}")));
            return None;
        }
    };
    let mut ops = doc.operations.iter();
    let op = match &g.operation_name {
        Some(name) => ops.find(|(n, _)| n.is_some_and(|n| n.as_str() == name)).map(|(_, op)| op),
        None if doc.operations.iter().count() == 1 => ops.next().map(|(_, op)| op),
        None => {
            errors.push(format!("{gp}.operation_name"), bad("", "the query has several operations: name one".into()));
            return None;
        }
    };
    let Some(op) = op else {
        let name = g.operation_name.clone().unwrap_or_default();
        errors.push(format!("{gp}.operation_name"), bad(&name, "no such operation in the query".into()));
        return None;
    };
    let declared: Vec<(&str, &async_graphql_parser::types::VariableDefinition)> =
        op.node.variable_definitions.iter().map(|v| (v.node.name.node.as_str(), &v.node)).collect();
    let mut variables = Vec::new();
    for (name, text) in &g.variables {
        let vp = format!("{gp}.variables.{name}");
        let Some((_, def)) = declared.iter().find(|(n, _)| n == name) else {
            errors.push(vp, bad(name, "the operation declares no such variable".into()));
            continue;
        };
        if let Some(t) = template(errors, &vp, text, Scope { captures, body: true }) {
            variables.push((name.clone(), var_kind(&def.var_type.node), t));
        }
    }
    for (name, def) in &declared {
        if !def.var_type.node.nullable && def.default_value.is_none() && !g.variables.contains_key(*name) {
            errors.push(format!("{gp}.variables"), bad(name, format!("the operation requires ${name}")));
        }
    }
    let reads_body =
        variables.iter().any(|(_, _, t)| t.variables().any(|v| matches!(v, crate::template::Var::Body(_))));
    Some(GraphqlValues { variables, reads_body })
}

/// Limits of a route that proxies GraphQL.
fn check_graphql_limits(errors: &mut ConfigErrors, p: &str, r: &RouteConfig) {
    let Some(l) = &r.graphql_limits else { return };
    let lp = format!("{p}.graphql_limits");
    range(errors, format!("{lp}.max_depth"), l.max_depth, 1, 100, "between 1 and 100");
    range(errors, format!("{lp}.max_aliases"), l.max_aliases, 0, 10_000, "between 0 and 10000");
    range(errors, format!("{lp}.max_cost"), l.max_cost, 1, 1_000_000_000, "between 1 and 10^9");
    range(errors, format!("{lp}.max_batch"), l.max_batch, 1, 100, "between 1 and 100");
    range(errors, format!("{lp}.max_body_bytes"), l.max_body_bytes, 1, MAX_CAP, BYTES);
}

/// Most backends of one aggregate.
pub const MAX_AGGREGATE_BACKENDS: usize = 16;

fn dot_path_ok(p: &str) -> bool {
    !p.is_empty() && p.split('.').all(|s| !s.is_empty())
}

fn check_aggregate(
    errors: &mut ConfigErrors,
    p: &str,
    r: &RouteConfig,
    doc: &super::GatewayDocument,
    captures: &[Box<str>],
) -> Vec<(Template, http::Method)> {
    let Some(a) = &r.aggregate else { return Vec::new() };
    let ap = format!("{p}.aggregate");
    if r.soap.is_some() || r.graphql.is_some() || r.xml_to_json.is_some() {
        errors.push(
            ap.clone(),
            K::Invalid { value: "aggregate".into(), reason: "an aggregate route translates nothing else".into() },
        );
    }
    if a.backends.is_empty() || a.backends.len() > MAX_AGGREGATE_BACKENDS {
        errors.push(
            format!("{ap}.backends"),
            K::OutOfRange { value: a.backends.len().to_string(), rule: "between 1 and 16 backends" },
        );
    }
    range(errors, format!("{ap}.max_backend_bytes"), a.max_backend_bytes, 1, MAX_CAP, BYTES);
    let mut out = Vec::new();
    for (j, b) in a.backends.iter().enumerate() {
        let bp = format!("{ap}.backends[{j}]");
        if let Some(u) = &b.upstream {
            if !doc.upstreams.contains_key(u) {
                errors.push(format!("{bp}.upstream"), K::UnknownUpstream(u.clone()));
            }
        }
        if b.timeout.is_some_and(|t| t.is_zero()) {
            errors
                .push(format!("{bp}.timeout"), K::OutOfRange { value: "0s".into(), rule: "must be greater than zero" });
        }
        for (key, paths) in [("allow", &b.allow), ("deny", &b.deny)] {
            for (k, path) in paths.iter().enumerate().filter(|(_, x)| !dot_path_ok(x)) {
                errors.push(
                    format!("{bp}.{key}[{k}]"),
                    K::Invalid { value: path.clone(), reason: "a dot path of field names, e.g. `user.name`".into() },
                );
            }
        }
        if b.group.as_deref().is_some_and(str::is_empty) {
            errors.push(format!("{bp}.group"), K::Empty);
        }
        let method = http::Method::from_bytes(b.method.as_bytes());
        if method.is_err() {
            errors.push(format!("{bp}.method"), K::InvalidMethod(b.method.clone()));
        }
        let t = template(errors, &format!("{bp}.path"), &b.path, Scope { captures, body: false });
        if !b.path.starts_with('/') {
            errors.push(
                format!("{bp}.path"),
                K::InvalidPath { value: b.path.clone(), reason: "must start with '/'".into() },
            );
        }
        if let (Some(t), Ok(m)) = (t, method) {
            out.push((t, m));
        }
    }
    out
}

/// The transformations of route `p`.
pub(super) fn check_route_transform(
    errors: &mut ConfigErrors,
    p: &str,
    r: &RouteConfig,
    doc: &super::GatewayDocument,
    captures: &[Box<str>],
) -> TransformValues {
    if let Some(x) = &r.xml_to_json {
        check_xml(errors, &format!("{p}.xml_to_json"), x);
    }
    let soap = check_soap(errors, p, r, captures);
    check_graphql_limits(errors, p, r);
    let graphql = check_graphql(errors, p, r, captures);
    let aggregate = check_aggregate(errors, p, r, doc, captures);
    let Some(t) = &r.transform else {
        return TransformValues { soap, graphql, aggregate, ..TransformValues::default() };
    };
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
        soap,
        graphql,
        aggregate,
    }
}

/// A query parameter or header check, compiled.
#[derive(Debug, Clone)]
pub struct ParamCheck {
    pub required: bool,
    pub kind: super::ParamType,
    pub one_of: Vec<String>,
    /// Anchored: the whole value must match.
    pub pattern: Option<regex::Regex>,
}

impl ParamCheck {
    /// Why `value` (absent: `None`) does not pass.
    pub fn refusal(&self, value: Option<&str>) -> Option<String> {
        use super::ParamType as T;
        let Some(v) = value else { return self.required.then(|| "is required".to_string()) };
        if !self.one_of.is_empty() && !self.one_of.iter().any(|o| o == v) {
            return Some(format!("must be one of {}", self.one_of.join(", ")));
        }
        let typed = match self.kind {
            T::String => true,
            T::Integer => v.parse::<i64>().is_ok(),
            T::Number => v.parse::<f64>().is_ok_and(f64::is_finite),
            T::Boolean => v == "true" || v == "false",
        };
        if !typed {
            return Some(format!("must be {}", format!("{:?}", self.kind).to_lowercase()));
        }
        if self.pattern.as_ref().is_some_and(|p| !p.is_match(v)) {
            return Some("does not match the pattern".into());
        }
        None
    }
}

/// The compiled request validation of a route.
#[derive(Debug, Clone)]
pub struct ValidateValues {
    /// Method → the schema its body must match.
    pub body: Vec<(http::Method, std::sync::Arc<jsonschema::Validator>)>,
    pub query: Vec<(Box<str>, ParamCheck)>,
    pub headers: Vec<(HeaderName, ParamCheck)>,
}

/// A pattern compiled for the linear-time engine, anchored, size-capped.
fn pattern(errors: &mut ConfigErrors, path: String, p: &str) -> Option<regex::Regex> {
    regex::RegexBuilder::new(&format!("^(?:{p})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            errors.push(path, K::Invalid { value: p.into(), reason: format!("not a pattern this engine runs: {e}") })
        })
        .ok()
}

fn param(errors: &mut ConfigErrors, p: &str, spec: &super::ParamSpec) -> Option<ParamCheck> {
    let before = errors.len();
    let pattern = spec.pattern.as_deref().and_then(|x| pattern(errors, format!("{p}.pattern"), x));
    (errors.len() == before).then(|| ParamCheck {
        required: spec.required,
        kind: spec.kind,
        one_of: spec.one_of.clone(),
        pattern,
    })
}

/// A JSON Schema (draft 2020-12) compiled: no remote `$ref`, patterns on
/// the linear-time engine, formats checked.
pub fn compile_schema(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::draft202012::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| e.to_string())
}

/// The request validation of route `p`.
pub(super) fn check_validate(errors: &mut ConfigErrors, p: &str, r: &RouteConfig) -> Option<ValidateValues> {
    let v = r.validate.as_ref()?;
    let vp = format!("{p}.validate");
    range(errors, format!("{vp}.max_body_bytes"), v.max_body_bytes, 1, MAX_CAP, BYTES);
    range(errors, format!("{vp}.max_depth"), v.max_depth, 1, 128, "between 1 and 128");
    range(errors, format!("{vp}.max_errors"), v.max_errors, 1, 100, "between 1 and 100");
    let mut out = ValidateValues { body: Vec::new(), query: Vec::new(), headers: Vec::new() };
    for (method, doc) in &v.body {
        let mp = format!("{vp}.body.{method}");
        let Ok(m) = http::Method::from_bytes(method.as_bytes()) else {
            errors.push(mp, K::InvalidMethod(method.clone()));
            continue;
        };
        match doc.value().and_then(|schema| compile_schema(&schema)) {
            Ok(s) => out.body.push((m, std::sync::Arc::new(s))),
            Err(reason) => errors.push(mp, K::Invalid { value: "schema".into(), reason }),
        }
    }
    for (name, spec) in &v.query {
        if let Some(c) = param(errors, &format!("{vp}.query.{name}"), spec) {
            out.query.push((name.as_str().into(), c));
        }
    }
    for (name, spec) in &v.headers {
        let hp = format!("{vp}.headers.{name}");
        let Ok(h) = HeaderName::from_bytes(name.as_bytes()) else {
            errors.push(hp, K::InvalidHeaderName(name.clone()));
            continue;
        };
        if let Some(c) = param(errors, &hp, spec) {
            out.headers.push((h, c));
        }
    }
    Some(out)
}
