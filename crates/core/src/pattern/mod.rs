//! Host and path patterns, parsed once at config time and matched without
//! allocating, and the path rewrites a route applies after it matched.

pub mod authority;
pub mod canonical;
mod rewrite;

use std::fmt;

pub use rewrite::{Part as RewritePart, Rewrite, RewriteError};

/// A header condition of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    /// The header is present, with any value.
    Present,
    Exact(http::HeaderValue),
}

/// Most templates capture a handful of segments; a fixed array keeps matching allocation-free.
pub const MAX_PARAMS: usize = 8;

/// A host to match: exact (`api.example.com`) or a wildcard over subdomains
/// (`*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(Box<str>),
    /// Stored with its leading dot: `.example.com`.
    Suffix(Box<str>),
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.is_empty() {
            return Err("empty host".into());
        }
        if name.contains('*') {
            return Err("a wildcard is only allowed as the first label (`*.example.com`)".into());
        }
        if name.contains(':') && !name.starts_with('[') {
            return Err("a host pattern has no port".into());
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err("empty label".into());
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'[' || b == b']' || b == b':')
            {
                return Err(format!("invalid character in label \"{label}\""));
            }
        }
        Ok(if wild { HostPattern::Suffix(format!(".{name}").into()) } else { HostPattern::Exact(name.into()) })
    }

    /// `host` must already be normalised (lowercase, no port, no trailing dot).
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => &**h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(&**s),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

/// A parsed `path_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    params: Vec<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param,
    CatchAll,
}

/// A path to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Any,
    Exact(Box<str>),
    /// Segment-aware: `/api` matches `/api` and `/api/x`, not `/apix`.
    Prefix(Box<str>),
    Template(Template),
}

/// Byte ranges of the captured template segments inside the request path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params {
    ranges: [(u32, u32); MAX_PARAMS],
    len: u8,
}

impl Params {
    fn push(&mut self, start: usize, end: usize) {
        if (self.len as usize) < MAX_PARAMS {
            self.ranges[self.len as usize] = (start as u32, end as u32);
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of parameter `i` within `path`.
    pub fn get<'p>(&self, path: &'p str, i: usize) -> Option<&'p str> {
        if i >= self.len as usize {
            return None;
        }
        let (s, e) = self.ranges[i];
        path.get(s as usize..e as usize)
    }
}

fn check_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if s.contains('?') || s.contains('#') {
        return Err("must not contain a query or fragment".into());
    }
    if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(())
}

impl PathPattern {
    pub fn exact(s: &str) -> Result<Self, String> {
        check_path(s)?;
        Ok(PathPattern::Exact(s.into()))
    }

    pub fn prefix(s: &str) -> Result<Self, String> {
        check_path(s)?;
        if s == "/" {
            return Ok(PathPattern::Any);
        }
        Ok(PathPattern::Prefix(s.into()))
    }

    /// `/users/{id}/orders/{order}` or with a trailing `{*rest}`.
    pub fn template(s: &str) -> Result<Self, String> {
        check_path(s)?;
        let mut segments = Vec::new();
        let mut params: Vec<Box<str>> = Vec::new();
        let parts: Vec<&str> = s[1..].split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (catch_all, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("invalid parameter name \"{name}\""));
                }
                if params.iter().any(|p| &**p == name) {
                    return Err(format!("parameter \"{name}\" appears twice"));
                }
                if catch_all && i + 1 != parts.len() {
                    return Err("{*name} must be the last segment".into());
                }
                params.push(name.into());
                segments.push(if catch_all { Segment::CatchAll } else { Segment::Param });
            } else if part.contains('{') || part.contains('}') {
                return Err(format!("segment \"{part}\" mixes text and a parameter"));
            } else {
                segments.push(Segment::Literal((*part).into()));
            }
        }
        if params.len() > MAX_PARAMS {
            return Err(format!("at most {MAX_PARAMS} parameters"));
        }
        Ok(PathPattern::Template(Template { segments, params }))
    }

    /// Names captured by a template, in order.
    pub fn param_names(&self) -> &[Box<str>] {
        match self {
            PathPattern::Template(t) => &t.params,
            _ => &[],
        }
    }

    /// Match `path` (no query), returning the captured segments.
    pub fn matches(&self, path: &str) -> Option<Params> {
        match self {
            PathPattern::Any => Some(Params::default()),
            PathPattern::Exact(p) => (&**p == path).then(Params::default),
            PathPattern::Prefix(p) => {
                let ok = path.starts_with(&**p)
                    && (path.len() == p.len() || p.ends_with('/') || path.as_bytes()[p.len()] == b'/');
                ok.then(Params::default)
            }
            PathPattern::Template(t) => match_template(t, path),
        }
    }

    /// Priority inside one host bucket: lower sorts first. Exact paths, then
    /// templates with more literal segments (fixed length before catch-all),
    /// then longer prefixes, then match-all.
    pub fn rank(&self) -> (u8, usize, usize) {
        match self {
            PathPattern::Exact(_) => (0, 0, 0),
            PathPattern::Template(Template { segments, .. }) => {
                let literals = segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
                let catch_all = segments.iter().any(|s| matches!(s, Segment::CatchAll));
                (1, usize::MAX - literals, usize::from(catch_all))
            }
            PathPattern::Prefix(p) => (2, usize::MAX - p.len(), 0),
            PathPattern::Any => (3, 0, 0),
        }
    }
}

fn match_template(t: &Template, path: &str) -> Option<Params> {
    if !path.starts_with('/') {
        return None;
    }
    let mut params = Params::default();
    let mut pos = 1usize; // just after a '/'
    for seg in &t.segments {
        if let Segment::CatchAll = seg {
            params.push(pos.min(path.len()), path.len());
            return Some(params);
        }
        if pos > path.len() {
            return None;
        }
        let end = path[pos..].find('/').map_or(path.len(), |i| pos + i);
        let part = &path[pos..end];
        match seg {
            Segment::Literal(l) if **l == *part => {}
            Segment::Param if !part.is_empty() => params.push(pos, end),
            _ => return None,
        }
        pos = end + 1;
    }
    // Every segment consumed and nothing left over.
    (pos == path.len() + 1).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("API.example.com.").unwrap();
        assert!(exact.matches("api.example.com"));
        let wild = HostPattern::parse("*.example.com").unwrap();
        assert!(wild.matches("a.example.com"));
        assert!(wild.matches("a.b.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("aexample.com"));
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("a.com:80").is_err());
    }

    #[test]
    fn prefix_is_segment_aware() {
        let p = PathPattern::prefix("/api").unwrap();
        assert!(p.matches("/api").is_some());
        assert!(p.matches("/api/x").is_some());
        assert!(p.matches("/apix").is_none());
        let slash = PathPattern::prefix("/api/").unwrap();
        assert!(slash.matches("/api/x").is_some());
        assert!(slash.matches("/api").is_none());
    }

    #[test]
    fn templates_capture_segments() {
        let t = PathPattern::template("/users/{id}/orders/{order}").unwrap();
        let path = "/users/42/orders/7";
        let m = t.matches(path).unwrap();
        assert_eq!(m.get(path, 0), Some("42"));
        assert_eq!(m.get(path, 1), Some("7"));
        assert!(t.matches("/users/42/orders").is_none());
        assert!(t.matches("/users//orders/7").is_none());
        assert!(t.matches("/users/42/orders/7/x").is_none());

        let c = PathPattern::template("/static/{*rest}").unwrap();
        let path = "/static/css/site.css";
        assert_eq!(c.matches(path).unwrap().get(path, 0), Some("css/site.css"));
        assert_eq!(c.matches("/static").unwrap().get("/static", 0), Some(""));
        assert!(c.matches("/other/x").is_none());

        assert!(PathPattern::template("/a/{*rest}/b").is_err());
        assert!(PathPattern::template("/a/x{id}").is_err());
        assert!(PathPattern::template("/a/{id}/{id}").is_err());
    }
}
