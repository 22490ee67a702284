//! The canonical form of a request path: what routing, rate limits, the
//! cache key, rewrites and the upstream all see, so no spelling of a path
//! reaches a route other than the one its canonical form reaches.
//!
//! In order, on the path (never the query):
//! 1. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`,
//!    RFC 3986 §2.3) are decoded; every other escape stays, its hex digits
//!    upper-cased; a `%` not followed by two hex digits is refused;
//! 2. an escaped `/`, `\` or NUL (`%2F`, `%5C`, `%00`) is refused, or kept
//!    escaped when the listener says so ([`EncodedSeparators::Keep`]); a raw
//!    `\` or NUL is always refused (some backends read `\` as `/`);
//! 3. path parameters (`;name=value` inside a segment, which many Java
//!    backends drop) are removed, or refused ([`PathParameters`]);
//! 4. runs of `/` become one (per listener, on by default);
//! 5. dot segments are removed (RFC 3986 §5.2.4); one that would climb above
//!    the root is refused.
//!
//! Paths stay case-sensitive (RFC 3986 §6.2.2.1): `/Login` and `/login` are
//! different paths and match different routes.

use std::borrow::Cow;

/// What happens to `%2F`, `%5C` and `%00` in a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodedSeparators {
    /// 400: the request is refused.
    #[default]
    Reject,
    /// Kept escaped: a segment, not a separator, for routing and upstream alike.
    Keep,
}

/// What happens to `;params` inside path segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathParameters {
    /// Removed from every segment, for routing and forwarding alike.
    #[default]
    Strip,
    /// 400: the request is refused.
    Reject,
}

/// How a listener canonicalises paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathPolicy {
    pub merge_slashes: bool,
    pub encoded_separators: EncodedSeparators,
    pub path_parameters: PathParameters,
}

impl Default for PathPolicy {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            encoded_separators: EncodedSeparators::default(),
            path_parameters: PathParameters::default(),
        }
    }
}

/// Why a path was refused (each becomes a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("a '%' in the path is not followed by two hex digits")]
    BadEscape,
    #[error("the path contains an encoded '/', '\\' or NUL")]
    EncodedSeparator,
    #[error("the path contains a '\\' or a NUL")]
    RawBackslashOrNul,
    #[error("the path has ';' parameters")]
    Parameters,
    #[error("the path climbs above the root")]
    AboveRoot,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `path` may already be canonical: nothing in it that a step changes.
fn plain(path: &[u8], policy: &PathPolicy) -> bool {
    let mut prev = 0u8;
    for &b in path {
        match b {
            b'%' | b';' | b'\\' | 0 => return false,
            b'/' if prev == b'/' && policy.merge_slashes => return false,
            b'.' if prev == b'/' => return false,
            _ => {}
        }
        prev = b;
    }
    true
}

/// The canonical form of `path` (see the module text); borrowed when the
/// path already is canonical, which is the common case.
pub fn canonical_path<'a>(path: &'a str, policy: &PathPolicy) -> Result<Cow<'a, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if plain(bytes, policy) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(bytes, policy)?;
    let mut out = String::with_capacity(decoded.len());
    let mut segments: Vec<&str> = Vec::new();
    // The segments after the leading '/'; an empty last one is a trailing slash.
    let parts: Vec<&str> = decoded[1..].split('/').collect();
    let mut trailing = false;
    for (i, seg) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let seg = match seg.find(';') {
            Some(_) if policy.path_parameters == PathParameters::Reject => return Err(PathError::Parameters),
            Some(at) => &seg[..at],
            None => seg,
        };
        match seg {
            "." => trailing = last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing = last;
            }
            "" if policy.merge_slashes && !last => {}
            "" if last => trailing = true,
            s => {
                segments.push(s);
                trailing = false;
            }
        }
    }
    out.push('/');
    out.push_str(&segments.join("/"));
    if trailing && !segments.is_empty() {
        out.push('/');
    }
    Ok(if out == path { Cow::Borrowed(path) } else { Cow::Owned(out) })
}

/// Step 1 and 2: decode unreserved escapes, upper-case the others, refuse
/// (or keep) separators.
fn decode(bytes: &[u8], policy: &PathPolicy) -> Result<String, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) =
                    (bytes.get(i + 1).and_then(|&c| hex(c)), bytes.get(i + 2).and_then(|&c| hex(c)))
                else {
                    return Err(PathError::BadEscape);
                };
                let c = h << 4 | l;
                if unreserved(c) {
                    out.push(c);
                } else if matches!(c, b'/' | b'\\' | 0) && policy.encoded_separators == EncodedSeparators::Reject {
                    return Err(PathError::EncodedSeparator);
                } else {
                    out.extend_from_slice(&[b'%', b"0123456789ABCDEF"[h as usize], b"0123456789ABCDEF"[l as usize]]);
                }
                i += 3;
            }
            b'\\' | 0 => return Err(PathError::RawBackslashOrNul),
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII bytes were added or kept from a &str: still UTF-8.
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

/// The properties every canonical form has, checked under every policy:
/// canonicalising it again changes nothing, it holds no dot segment, and
/// with slashes merged no empty segment. What the fuzz target and the
/// corpus regression test assert; `Err` says which property broke.
pub fn check_canonical(path: &str) -> Result<(), String> {
    let policies = [
        PathPolicy::default(),
        PathPolicy {
            merge_slashes: false,
            encoded_separators: EncodedSeparators::Keep,
            path_parameters: PathParameters::Strip,
        },
        PathPolicy {
            merge_slashes: true,
            encoded_separators: EncodedSeparators::Keep,
            path_parameters: PathParameters::Reject,
        },
    ];
    for policy in policies {
        let Ok(once) = canonical_path(path, &policy) else { continue };
        match canonical_path(&once, &policy) {
            Ok(twice) if twice == once => {}
            other => return Err(format!("{policy:?}: {once:?} then {other:?}")),
        }
        if once.split('/').any(|s| s == "." || s == "..") {
            return Err(format!("{policy:?}: {once:?} keeps a dot segment"));
        }
        if policy.merge_slashes && once.contains("//") {
            return Err(format!("{policy:?}: {once:?} keeps an empty segment"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(p: &str) -> Result<String, PathError> {
        canonical_path(p, &PathPolicy::default()).map(Cow::into_owned)
    }

    #[test]
    fn spellings_of_one_path_become_that_path() {
        for p in [
            "/login",
            "//login",
            "/%6cogin",
            "/%6Cogin",
            "/./login",
            "/x/../login",
            "/a/b/../../login",
            "/login;jsessionid=1",
        ] {
            assert_eq!(c(p).as_deref(), Ok("/login"), "{p}");
        }
        assert_eq!(c("/api/%2e%2e/admin").as_deref(), Ok("/admin"));
        assert_eq!(c("/api/.%2E/admin").as_deref(), Ok("/admin"));
        assert_eq!(c("/a/b/").as_deref(), Ok("/a/b/"));
        assert_eq!(c("/a/b/.").as_deref(), Ok("/a/b/"));
        assert_eq!(c("/a//b///c").as_deref(), Ok("/a/b/c"));
        assert_eq!(c("/").as_deref(), Ok("/"));
        assert_eq!(c("/.."), Err(PathError::AboveRoot));
    }

    #[test]
    fn escapes_that_stay_are_upper_case_and_separators_are_refused() {
        assert_eq!(c("/a%c3%a9").as_deref(), Ok("/a%C3%A9"));
        assert_eq!(c("/a%20b").as_deref(), Ok("/a%20b"));
        assert_eq!(c("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(c("/a%5Cb"), Err(PathError::EncodedSeparator));
        assert_eq!(c("/a%00b"), Err(PathError::EncodedSeparator));
        assert_eq!(c("/a\\b"), Err(PathError::RawBackslashOrNul));
        assert_eq!(c("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(c("/a%4"), Err(PathError::BadEscape));
        assert_eq!(c("/../x"), Err(PathError::AboveRoot));
        assert_eq!(c("/a/../../x"), Err(PathError::AboveRoot));
        assert_eq!(c("x"), Err(PathError::NotAbsolute));
        let keep = PathPolicy { encoded_separators: EncodedSeparators::Keep, ..PathPolicy::default() };
        assert_eq!(canonical_path("/a%2fb/../c", &keep).as_deref(), Ok("/c"));
        assert_eq!(canonical_path("/a%2fb", &keep).as_deref(), Ok("/a%2Fb"));
        let strict = PathPolicy { path_parameters: PathParameters::Reject, ..PathPolicy::default() };
        assert_eq!(canonical_path("/login;x=1", &strict), Err(PathError::Parameters));
        let no_merge = PathPolicy { merge_slashes: false, ..PathPolicy::default() };
        assert_eq!(canonical_path("/a//b", &no_merge).as_deref(), Ok("/a//b"));
    }

    #[test]
    fn case_is_kept() {
        assert_eq!(c("/Login").as_deref(), Ok("/Login"));
    }

    /// Every input in the fuzz corpus (and every crash the fuzzer ever saved
    /// there) keeps the properties.
    #[test]
    fn the_fuzz_corpus_keeps_its_properties() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/canonical_path");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            if let Ok(path) = std::str::from_utf8(&bytes) {
                assert_eq!(check_canonical(path), Ok(()), "{path:?}");
            }
            seen += 1;
        }
        assert!(seen > 0);
    }

    proptest! {
        #[test]
        fn canonical_form_is_a_fixed_point(path in "/[a-zA-Z0-9./;%_~-]{0,40}") {
            for policy in [
                PathPolicy::default(),
                PathPolicy { merge_slashes: false, encoded_separators: EncodedSeparators::Keep, path_parameters: PathParameters::Strip },
            ] {
                if let Ok(once) = canonical_path(&path, &policy) {
                    let twice = canonical_path(&once, &policy);
                    prop_assert_eq!(twice.as_deref(), Ok(once.as_ref()));
                    prop_assert!(!once.split('/').any(|s| s == "." || s == ".."), "{}", once);
                }
            }
        }
    }
}
