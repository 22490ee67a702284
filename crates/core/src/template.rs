//! Templates in transform values: literal text with `$(source.name)`
//! variables that a request fills in.
//!
//! | variable            | value                                                        |
//! |---------------------|--------------------------------------------------------------|
//! | `$(header.x-name)`  | the request header (its first value)                         |
//! | `$(query.name)`     | the query parameter, percent-decoded (its first value)       |
//! | `$(path.name)`      | a segment the route's `path_template` captured               |
//! | `$(consumer)`       | the authenticated consumer's name                            |
//! | `$(claim.name)`     | a claim of the verified token (strings as is, others as JSON)|
//! | `$(request_id)`     | the request's `X-Request-Id`                                 |
//! | `$(body.a.b)`       | a field of the JSON request body (protocol translations only)|
//!
//! `$$` is a literal `$`. A template is compiled once, when the document is
//! checked: an unknown source, a capture the route's path does not have or a
//! malformed variable is refused there with its key path, and rendering a
//! compiled template cannot fail except by a value the request does not have.

use std::borrow::Cow;
use std::fmt;

use http::HeaderName;

/// Longest template accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 4096;
/// Most variables in one template.
pub const MAX_VARIABLES: usize = 32;
/// Deepest `$(body.…)` path.
pub const MAX_BODY_PATH: usize = 16;

/// Where a variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    Header(HeaderName),
    Query(Box<str>),
    /// The capture's index in the route's path template, and its name.
    Path(usize, Box<str>),
    Consumer,
    Claim(Box<str>),
    RequestId,
    /// A dot path into the JSON request body.
    Body(Box<[Box<str>]>),
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Header(h) => write!(f, "$(header.{h})"),
            Var::Query(q) => write!(f, "$(query.{q})"),
            Var::Path(_, n) => write!(f, "$(path.{n})"),
            Var::Consumer => f.write_str("$(consumer)"),
            Var::Claim(c) => write!(f, "$(claim.{c})"),
            Var::RequestId => f.write_str("$(request_id)"),
            Var::Body(p) => write!(f, "$(body.{})", p.join(".")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Var(Var),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Box<[Part]>,
}

/// What a template may refer to where it is used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// The route's path captures, in order.
    pub captures: &'a [Box<str>],
    /// Whether `$(body.…)` is available (protocol translations read the body).
    pub body: bool,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("longer than {MAX_TEMPLATE_BYTES} bytes")]
    TooLong,
    #[error("more than {MAX_VARIABLES} variables")]
    TooManyVariables,
    #[error("unclosed variable at byte {0}: `$(` needs a `)`")]
    Unclosed(usize),
    #[error("`$` at byte {0} starts neither `$(` nor `$$`")]
    StrayDollar(usize),
    #[error("unknown variable `$({0})`: use header., query., path., claim., body., consumer or request_id")]
    UnknownSource(String),
    #[error("`$({0})` needs a name after the dot")]
    MissingName(String),
    #[error("invalid header name in `$(header.{0})`")]
    HeaderName(String),
    #[error("the route's path_template captures no `{0}`")]
    UnknownCapture(String),
    #[error("`$(body.…)` is only available where the request body is read (soap, graphql)")]
    BodyNotAvailable,
    #[error("`$(body.…)` paths have at most {MAX_BODY_PATH} fields, none empty")]
    BodyPath,
}

/// Values a request has for template variables.
pub trait Values {
    fn value(&self, var: &Var) -> Option<Cow<'_, str>>;
}

impl Template {
    /// Compile `text` for `scope`.
    pub fn parse(text: &str, scope: Scope<'_>) -> Result<Self, TemplateError> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLong);
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut vars = 0;
        let mut rest = text;
        let mut at = 0;
        while let Some(i) = rest.find('$') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                at += i + 2;
                rest = tail;
                continue;
            }
            let Some(body) = after.strip_prefix('(') else { return Err(TemplateError::StrayDollar(at + i)) };
            let Some(end) = body.find(')') else { return Err(TemplateError::Unclosed(at + i)) };
            vars += 1;
            if vars > MAX_VARIABLES {
                return Err(TemplateError::TooManyVariables);
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal).into()));
            }
            parts.push(Part::Var(variable(&body[..end], scope)?));
            at += i + 2 + end + 1;
            rest = &body[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        Ok(Self { parts: parts.into() })
    }

    /// A template that is only literal text.
    pub fn literal(&self) -> Option<&str> {
        match &*self.parts {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// The one variable a template is made of, without any text around it.
    pub fn single_variable(&self) -> Option<&Var> {
        match &*self.parts {
            [Part::Var(v)] => Some(v),
            _ => None,
        }
    }

    /// The variables the template uses.
    pub fn variables(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Literal(_) => None,
        })
    }

    /// Render into `out`, each value passed through `escape` (XML or JSON
    /// escaping where the output needs it). The first variable the request
    /// has no value for is the error; `out` is then incomplete.
    pub fn render_with<'t>(
        &'t self,
        values: &impl Values,
        out: &mut String,
        escape: impl Fn(&str, &mut String),
    ) -> Result<(), &'t Var> {
        for p in &*self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Var(v) => escape(&values.value(v).ok_or(v)?, out),
            }
        }
        Ok(())
    }

    /// Render as is.
    pub fn render<'t>(&'t self, values: &impl Values) -> Result<String, &'t Var> {
        let mut out = String::new();
        self.render_with(values, &mut out, |s, o| o.push_str(s))?;
        Ok(out)
    }
}

fn variable(inner: &str, scope: Scope<'_>) -> Result<Var, TemplateError> {
    match inner {
        "consumer" => return Ok(Var::Consumer),
        "request_id" => return Ok(Var::RequestId),
        _ => {}
    }
    let Some((source, name)) = inner.split_once('.') else { return Err(TemplateError::UnknownSource(inner.into())) };
    if name.is_empty() {
        return Err(TemplateError::MissingName(inner.into()));
    }
    match source {
        "header" => {
            HeaderName::from_bytes(name.as_bytes()).map(Var::Header).map_err(|_| TemplateError::HeaderName(name.into()))
        }
        "query" => Ok(Var::Query(name.into())),
        "claim" => Ok(Var::Claim(name.into())),
        "path" => scope
            .captures
            .iter()
            .position(|c| &**c == name)
            .map(|i| Var::Path(i, name.into()))
            .ok_or_else(|| TemplateError::UnknownCapture(name.into())),
        "body" if !scope.body => Err(TemplateError::BodyNotAvailable),
        "body" => {
            let fields: Vec<Box<str>> = name.split('.').map(Into::into).collect();
            if fields.len() > MAX_BODY_PATH || fields.iter().any(|f| f.is_empty()) {
                return Err(TemplateError::BodyPath);
            }
            Ok(Var::Body(fields.into()))
        }
        _ => Err(TemplateError::UnknownSource(inner.into())),
    }
}

/// Append `s` to `out` escaped for XML text and attribute values.
pub fn escape_xml(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<String, String>);

    impl Values for Map {
        fn value(&self, var: &Var) -> Option<Cow<'_, str>> {
            self.0.get(&var.to_string()).map(|s| Cow::Borrowed(s.as_str()))
        }
    }

    fn caps() -> Vec<Box<str>> {
        vec!["id".into(), "rest".into()]
    }

    #[test]
    fn variables_and_literals_compile_and_render() {
        let c = caps();
        let t = Template::parse(
            "u=$(path.id);k=$(header.X-Key);q=$(query.page) $(consumer)/$(claim.sub) $(request_id) $$5",
            Scope { captures: &c, body: false },
        )
        .unwrap();
        let values = Map(HashMap::from([
            ("$(path.id)".to_string(), "42".to_string()),
            ("$(header.x-key)".to_string(), "k1".to_string()),
            ("$(query.page)".to_string(), "3".to_string()),
            ("$(consumer)".to_string(), "acme".to_string()),
            ("$(claim.sub)".to_string(), "u-1".to_string()),
            ("$(request_id)".to_string(), "r".to_string()),
        ]));
        assert_eq!(t.render(&values).unwrap(), "u=42;k=k1;q=3 acme/u-1 r $5");
        assert_eq!(Template::parse("plain", Scope::default()).unwrap().literal(), Some("plain"));
    }

    #[test]
    fn a_missing_value_names_its_variable() {
        let t = Template::parse("a-$(query.x)", Scope::default()).unwrap();
        let err = t.render(&Map(HashMap::new())).unwrap_err();
        assert_eq!(err.to_string(), "$(query.x)");
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        let c = caps();
        let s = Scope { captures: &c, body: false };
        assert_eq!(Template::parse("$(path.nope)", s), Err(TemplateError::UnknownCapture("nope".into())));
        assert_eq!(Template::parse("x $(header.a", s), Err(TemplateError::Unclosed(2)));
        assert_eq!(Template::parse("5$", s), Err(TemplateError::StrayDollar(1)));
        assert_eq!(Template::parse("$(cookie.a)", s), Err(TemplateError::UnknownSource("cookie.a".into())));
        assert_eq!(Template::parse("$(query.)", s), Err(TemplateError::MissingName("query.".into())));
        assert_eq!(Template::parse("$(header.a b)", s), Err(TemplateError::HeaderName("a b".into())));
        assert_eq!(Template::parse("$(body.a)", s), Err(TemplateError::BodyNotAvailable));
        let body = Scope { captures: &c, body: true };
        assert_eq!(Template::parse("$(body.a..b)", body), Err(TemplateError::BodyPath));
        assert!(Template::parse(&"$(consumer)".repeat(MAX_VARIABLES + 1), s).is_err());
        assert_eq!(Template::parse(&"a".repeat(MAX_TEMPLATE_BYTES + 1), s), Err(TemplateError::TooLong));
    }

    #[test]
    fn xml_escaping_covers_markup_and_drops_control_characters() {
        let mut out = String::new();
        escape_xml("<a href=\"x\">&'\u{1}</a>", &mut out);
        assert_eq!(out, "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;");
    }

    /// Every input of the fuzz corpus compiles or is refused, never panics.
    #[test]
    fn the_fuzz_corpus_compiles_or_is_refused() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/template");
        let c = caps();
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            let _ = Template::parse(&String::from_utf8_lossy(&bytes), Scope { captures: &c, body: true });
        }
    }

    proptest::proptest! {
        /// Compiling never panics, and what compiles renders its literals back.
        #[test]
        fn compiling_any_text_is_total(text in "[a-z$().{}_ -]{0,64}") {
            let c = caps();
            if let Ok(t) = Template::parse(&text, Scope { captures: &c, body: true }) {
                if !text.contains('$') {
                    proptest::prop_assert_eq!(t.literal(), Some(text.as_str()));
                }
            }
        }
    }
}
