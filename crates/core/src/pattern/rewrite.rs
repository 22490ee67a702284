//! Path rewrites applied after a route matched.

use std::borrow::Cow;

use super::{Params, PathPattern};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(Box<str>),
    Param(usize),
}

/// How the path sent upstream is derived from the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Replace the first `len` bytes (the matched prefix) with `with`.
    ReplacePrefix { len: usize, with: Box<str> },
    /// Send this path instead.
    Replace(Box<str>),
    /// Fill a template from the captured segments.
    Template(Vec<Part>),
}

/// Why a rewrite could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteError {
    StripWithoutPrefix,
    StripAndRewrite,
    UnknownParam(String),
    Invalid(String),
}

impl Rewrite {
    /// Build the rewrite of a route; `None` forwards the path unchanged.
    pub fn new(path: &PathPattern, strip_prefix: bool, rewrite: Option<&str>) -> Result<Option<Self>, RewriteError> {
        match (strip_prefix, rewrite) {
            (true, Some(_)) => Err(RewriteError::StripAndRewrite),
            (true, None) => match path {
                PathPattern::Prefix(p) => {
                    Ok(Some(Rewrite::ReplacePrefix { len: p.trim_end_matches('/').len(), with: "".into() }))
                }
                _ => Err(RewriteError::StripWithoutPrefix),
            },
            (false, None) => Ok(None),
            (false, Some(r)) => {
                if !r.starts_with('/') {
                    return Err(RewriteError::Invalid("must start with '/'".into()));
                }
                if r.split('/').any(|s| s == "." || s == "..") {
                    return Err(RewriteError::Invalid("must not contain '.' or '..' segments".into()));
                }
                match path {
                    PathPattern::Prefix(p) => Ok(Some(Rewrite::ReplacePrefix {
                        len: p.trim_end_matches('/').len(),
                        with: r.trim_end_matches('/').into(),
                    })),
                    PathPattern::Any => {
                        Ok(Some(Rewrite::ReplacePrefix { len: 0, with: r.trim_end_matches('/').into() }))
                    }
                    PathPattern::Exact(_) => Ok(Some(Rewrite::Replace(r.into()))),
                    PathPattern::Template(_) => Ok(Some(Rewrite::Template(parse_template(r, path.param_names())?))),
                }
            }
        }
    }

    /// The path to send upstream.
    pub fn apply<'p>(&self, path: &'p str, params: &Params) -> Cow<'p, str> {
        match self {
            Rewrite::ReplacePrefix { len, with } => {
                let rest = path.get(*len..).unwrap_or("");
                if with.is_empty() && rest.starts_with('/') {
                    return Cow::Borrowed(rest);
                }
                let mut out = String::with_capacity(with.len() + rest.len() + 1);
                out.push_str(with);
                if !rest.starts_with('/') {
                    out.push('/');
                }
                out.push_str(rest);
                Cow::Owned(out)
            }
            Rewrite::Replace(p) => Cow::Owned(p.to_string()),
            Rewrite::Template(parts) => {
                let mut out = String::with_capacity(path.len() + 16);
                for part in parts {
                    match part {
                        Part::Literal(l) => out.push_str(l),
                        Part::Param(i) => out.push_str(params.get(path, *i).unwrap_or("")),
                    }
                }
                Cow::Owned(out)
            }
        }
    }
}

fn parse_template(r: &str, names: &[Box<str>]) -> Result<Vec<Part>, RewriteError> {
    let mut parts = Vec::new();
    let mut rest = r;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(rest[..open].into()));
        }
        let close = rest[open..].find('}').ok_or_else(|| RewriteError::Invalid("unclosed '{'".into()))? + open;
        let name = rest[open + 1..close].trim_start_matches('*');
        let idx =
            names.iter().position(|n| &**n == name).ok_or_else(|| RewriteError::UnknownParam(name.to_string()))?;
        parts.push(Part::Param(idx));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.into()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pattern: PathPattern, strip: bool, rw: Option<&str>, path: &str) -> String {
        let params = pattern.matches(path).unwrap();
        Rewrite::new(&pattern, strip, rw).unwrap().unwrap().apply(path, &params).into_owned()
    }

    #[test]
    fn strip_and_replace_prefix() {
        assert_eq!(run(PathPattern::prefix("/api").unwrap(), true, None, "/api/users"), "/users");
        assert_eq!(run(PathPattern::prefix("/api").unwrap(), true, None, "/api"), "/");
        assert_eq!(run(PathPattern::prefix("/api/").unwrap(), true, None, "/api/users"), "/users");
        assert_eq!(run(PathPattern::prefix("/api").unwrap(), false, Some("/v2"), "/api/users"), "/v2/users");
        assert_eq!(run(PathPattern::Any, false, Some("/base"), "/x"), "/base/x");
    }

    #[test]
    fn templates_and_exact() {
        let t = PathPattern::template("/users/{id}/orders/{*rest}").unwrap();
        assert_eq!(
            run(t, false, Some("/v2/orders/{rest}?user={id}"), "/users/42/orders/a/b"),
            "/v2/orders/a/b?user=42"
        );
        assert_eq!(run(PathPattern::exact("/old").unwrap(), false, Some("/new"), "/old"), "/new");
        let t = PathPattern::template("/users/{id}").unwrap();
        assert_eq!(Rewrite::new(&t, false, Some("/{nope}")), Err(RewriteError::UnknownParam("nope".into())));
        assert_eq!(Rewrite::new(&PathPattern::Any, true, None), Err(RewriteError::StripWithoutPrefix));
    }
}
