//! The route table: host, path, method and header matching, compiled once per
//! config version and read without locks. Knows nothing of proxying; the
//! value carried by each route is the caller's.
//!
//! Priority (documented in `docs/configuration.md`):
//! 1. host: an exact host, then wildcards with the longest suffix first, then routes without hosts;
//! 2. within a host bucket: exact path, template (more literal segments first),
//!    prefix (longest first), match-all;
//! 3. then routes with more method/header conditions first;
//! 4. then declaration order.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, Method};

use meridian_core::pattern::{HeaderMatch, HostPattern, Params, PathPattern};

/// What a route matches.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub hosts: Vec<HostPattern>,
    pub path: PathPattern,
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, HeaderMatch)>,
}

impl RouteSpec {
    fn conditions(&self) -> usize {
        usize::from(!self.methods.is_empty()) + self.headers.len()
    }

    fn matches_rest(&self, method: &Method, headers: &HeaderMap) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method) {
            return false;
        }
        self.headers.iter().all(|(name, cond)| match cond {
            HeaderMatch::Present => headers.contains_key(name),
            HeaderMatch::Exact(v) => headers.get_all(name).iter().any(|h| h == v),
        })
    }
}

struct Entry<T> {
    spec: RouteSpec,
    value: T,
}

/// The compiled table. Swapped whole on a config change; a request keeps the
/// table it matched against until it ends.
pub struct RouteTable<T> {
    entries: Vec<Entry<T>>,
    exact: HashMap<Box<str>, Vec<u32>>,
    /// Longest suffix first.
    wildcard: Vec<(HostPattern, Vec<u32>)>,
    any_host: Vec<u32>,
}

/// A matched route and the segments its template captured.
pub struct RouteMatch<'a, T> {
    pub value: &'a T,
    pub spec: &'a RouteSpec,
    pub params: Params,
}

impl<T> RouteTable<T> {
    pub fn new(routes: Vec<(RouteSpec, T)>) -> Self {
        let entries: Vec<Entry<T>> = routes.into_iter().map(|(spec, value)| Entry { spec, value }).collect();
        let mut exact: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut wildcard: Vec<(HostPattern, Vec<u32>)> = Vec::new();
        let mut any_host = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            if e.spec.hosts.is_empty() {
                any_host.push(i);
            }
            for host in &e.spec.hosts {
                match host {
                    HostPattern::Exact(h) => exact.entry(h.clone()).or_default().push(i),
                    HostPattern::Suffix(_) => match wildcard.iter_mut().find(|(p, _)| p == host) {
                        Some((_, list)) => list.push(i),
                        None => wildcard.push((host.clone(), vec![i])),
                    },
                }
            }
        }
        let order = |list: &mut Vec<u32>| {
            list.sort_by_key(|&i| {
                let spec = &entries[i as usize].spec;
                (spec.path.rank(), usize::MAX - spec.conditions(), i)
            });
            list.dedup();
        };
        exact.values_mut().for_each(order);
        wildcard.iter_mut().for_each(|(_, l)| order(l));
        order(&mut any_host);
        wildcard.sort_by_key(|(p, _)| match p {
            HostPattern::Suffix(s) => usize::MAX - s.len(),
            HostPattern::Exact(_) => 0,
        });
        Self { entries, exact, wildcard, any_host }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.value)
    }

    /// Find the route for a request. `host` is normalised here (case, port, trailing dot).
    pub fn find(&self, host: &str, path: &str, method: &Method, headers: &HeaderMap) -> Option<RouteMatch<'_, T>> {
        let host = normalize_host(host);
        let host: &str = &host;
        if let Some(list) = self.exact.get(host) {
            if let Some(m) = self.scan(list, path, method, headers) {
                return Some(m);
            }
        }
        for (pattern, list) in &self.wildcard {
            if pattern.matches(host) {
                if let Some(m) = self.scan(list, path, method, headers) {
                    return Some(m);
                }
            }
        }
        self.scan(&self.any_host, path, method, headers)
    }

    fn scan(&self, list: &[u32], path: &str, method: &Method, headers: &HeaderMap) -> Option<RouteMatch<'_, T>> {
        list.iter().find_map(|&i| {
            let e = &self.entries[i as usize];
            let params = e.spec.path.matches(path)?;
            e.spec.matches_rest(method, headers).then_some(RouteMatch { value: &e.value, spec: &e.spec, params })
        })
    }
}

/// Lowercase, without port or trailing dot. Borrows when the host is already clean.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        // IPv6 literal: keep up to the closing bracket.
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn spec(hosts: &[&str], path: PathPattern) -> RouteSpec {
        RouteSpec {
            hosts: hosts.iter().map(|h| HostPattern::parse(h).unwrap()).collect(),
            path,
            methods: vec![],
            headers: vec![],
        }
    }

    #[test]
    fn priority_host_then_path_then_conditions() {
        let mut post = spec(&[], PathPattern::prefix("/api").unwrap());
        post.methods = vec![Method::POST];
        let table = RouteTable::new(vec![
            (spec(&[], PathPattern::Any), "catch-all"),
            (spec(&[], PathPattern::prefix("/api").unwrap()), "api"),
            (post, "api-post"),
            (spec(&[], PathPattern::prefix("/api/v2").unwrap()), "api-v2"),
            (spec(&[], PathPattern::template("/api/users/{id}").unwrap()), "user"),
            (spec(&[], PathPattern::exact("/api/users/me").unwrap()), "me"),
            (spec(&["*.example.com"], PathPattern::Any), "wild"),
            (spec(&["*.eu.example.com"], PathPattern::Any), "wild-eu"),
            (spec(&["shop.example.com"], PathPattern::prefix("/cart").unwrap()), "shop-cart"),
        ]);
        let h = HeaderMap::new();
        let get = |host: &str, path: &str, m: Method| table.find(host, path, &m, &h).map(|m| *m.value);
        assert_eq!(get("x", "/", Method::GET), Some("catch-all"));
        assert_eq!(get("x", "/api/x", Method::GET), Some("api"));
        assert_eq!(get("x", "/api/x", Method::POST), Some("api-post"));
        assert_eq!(get("x", "/api/v2/x", Method::GET), Some("api-v2"));
        assert_eq!(get("x", "/api/users/7", Method::GET), Some("user"));
        assert_eq!(get("x", "/api/users/me", Method::GET), Some("me"));
        assert_eq!(get("a.example.com", "/api", Method::GET), Some("wild"));
        assert_eq!(get("a.EU.example.com:8080", "/", Method::GET), Some("wild-eu"));
        assert_eq!(get("shop.example.com", "/cart/1", Method::GET), Some("shop-cart"));
        // No route of the exact host matches: the wildcard bucket is next.
        assert_eq!(get("shop.example.com", "/other", Method::GET), Some("wild"));
    }

    #[test]
    fn header_conditions() {
        let mut v2 = spec(&[], PathPattern::Any);
        v2.headers = vec![(HeaderName::from_static("x-version"), HeaderMatch::Exact(HeaderValue::from_static("2")))];
        let mut beta = spec(&[], PathPattern::Any);
        beta.headers = vec![(HeaderName::from_static("x-beta"), HeaderMatch::Present)];
        let table = RouteTable::new(vec![(spec(&[], PathPattern::Any), "v1"), (v2, "v2"), (beta, "beta")]);
        let mut h = HeaderMap::new();
        assert_eq!(table.find("x", "/", &Method::GET, &h).map(|m| *m.value), Some("v1"));
        h.insert("x-version", HeaderValue::from_static("2"));
        assert_eq!(table.find("x", "/", &Method::GET, &h).map(|m| *m.value), Some("v2"));
        h.clear();
        h.insert("x-beta", HeaderValue::from_static("yes"));
        assert_eq!(table.find("x", "/", &Method::GET, &h).map(|m| *m.value), Some("beta"));
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert!(matches!(normalize_host("a.b"), std::borrow::Cow::Borrowed(_)));
    }
}
