//! Checks of the identity part of a gateway document (consumers, JWT
//! providers, what routes ask of callers), producing its typed values:
//! verification keys are built here, once per document.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use http::{HeaderName, Method};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::error::{ConfigErrorKind as K, ConfigErrors};
use super::identity::*;
use super::GatewayDocument;

/// A verification key of a provider.
#[derive(Debug, Clone)]
pub struct JwtKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
}

/// The typed values of one JWT provider.
#[derive(Debug, Clone)]
pub struct JwtProviderValues {
    pub algorithms: Vec<Algorithm>,
    /// The inline keys.
    pub keys: Vec<JwtKey>,
}

/// Where a credential is read from a request.
#[derive(Debug, Clone, Default)]
pub struct CredentialSource {
    pub header: Option<HeaderName>,
    /// The header carries `Bearer <token>` (the `Authorization` default of JWT).
    pub bearer: bool,
    pub query: Option<String>,
    pub cookie: Option<String>,
}

/// Typed values of a route's JWT authentication.
#[derive(Debug, Clone)]
pub struct JwtAuthValues {
    pub source: CredentialSource,
    pub claims_to_headers: Vec<(String, HeaderName)>,
    pub payload_header: Option<HeaderName>,
}

/// A principal named by `allow`/`deny`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Consumer(String),
    Group(String),
}

/// An origin a CORS pattern admits: `scheme://<labels>.suffix[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// `scheme://` through the `*`, lower-case.
    pub scheme: String,
    /// `.suffix[:port]` after the `*`, lower-case, default port removed.
    pub suffix: String,
}

/// Typed values of a route's CORS policy.
#[derive(Debug, Clone)]
pub struct CorsValues {
    pub any_origin: bool,
    /// Normalised (`scheme://host[:port]`, lower-case, no default port).
    pub origins: Vec<String>,
    pub patterns: Vec<OriginPattern>,
    pub methods: Vec<Method>,
    pub headers: Vec<HeaderName>,
    pub expose_headers: Vec<HeaderName>,
}

/// Typed identity values of one route.
#[derive(Debug, Clone, Default)]
pub struct RouteAccessValues {
    pub api_key: Option<CredentialSource>,
    pub jwt: Option<JwtAuthValues>,
    pub introspection: Option<CredentialSource>,
    pub allow: Vec<Principal>,
    pub deny: Vec<Principal>,
    pub methods_by_group: Vec<(String, Vec<Method>)>,
    pub cors: Option<CorsValues>,
}

/// Longest consumer, group and credential names.
const MAX_NAME: usize = 128;

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
}

fn bad(value: &str, reason: impl Into<String>) -> K {
    K::Invalid { value: value.to_string(), reason: reason.into() }
}

/// Consumers and providers of the document.
pub(super) fn check_identity(errors: &mut ConfigErrors, doc: &GatewayDocument) -> BTreeMap<String, JwtProviderValues> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut ids: HashMap<&str, String> = HashMap::new();
    let mut hashes: HashMap<&str, String> = HashMap::new();
    let mut cert_names: HashMap<String, String> = HashMap::new();
    for (i, c) in doc.consumers.iter().enumerate() {
        let p = format!("consumers[{i}]");
        if !name_ok(&c.name) {
            errors.push(format!("{p}.name"), bad(&c.name, "1 to 128 of A-Z a-z 0-9 - _ . @ :"));
        }
        if let Some(first) = names.insert(&c.name, i) {
            errors
                .push(format!("{p}.name"), K::Duplicate { name: c.name.clone(), first: format!("consumers[{first}]") });
        }
        for (j, g) in c.groups.iter().enumerate() {
            if !name_ok(g) {
                errors.push(format!("{p}.groups[{j}]"), bad(g, "1 to 128 of A-Z a-z 0-9 - _ . @ :"));
            }
        }
        for (j, k) in c.api_keys.iter().enumerate() {
            let kp = format!("{p}.api_keys[{j}]");
            if !name_ok(&k.id) {
                errors.push(format!("{kp}.id"), bad(&k.id, "1 to 128 of A-Z a-z 0-9 - _ . @ :"));
            }
            if let Some(first) = ids.insert(&k.id, kp.clone()) {
                errors.push(format!("{kp}.id"), K::Duplicate { name: k.id.clone(), first });
            }
            if k.hash.len() != 64 || !k.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(format!("{kp}.hash"), bad(&k.hash, "HMAC-SHA256 of the key, 64 hex digits"));
            } else if let Some(first) = hashes.insert(&k.hash, kp.clone()) {
                errors.push(format!("{kp}.hash"), K::Duplicate { name: "(this key)".into(), first });
            }
            if k.prefix.len() > 16 || !k.prefix.bytes().all(|b| b.is_ascii_graphic()) {
                errors.push(format!("{kp}.prefix"), bad(&k.prefix, "at most 16 visible characters"));
            }
        }
        for (j, k) in c.certificates.iter().enumerate() {
            let kp = format!("{p}.certificates[{j}]");
            if !name_ok(&k.id) {
                errors.push(format!("{kp}.id"), bad(&k.id, "1 to 128 of A-Z a-z 0-9 - _ . @ :"));
            }
            if let Some(first) = ids.insert(&k.id, kp.clone()) {
                errors.push(format!("{kp}.id"), K::Duplicate { name: k.id.clone(), first });
            }
            match (&k.san, &k.subject) {
                (Some(v), None) | (None, Some(v)) if !v.is_empty() && v.len() <= 1024 => {
                    let what = if k.san.is_some() { "san:" } else { "subject:" };
                    if let Some(first) = cert_names.insert(format!("{what}{v}"), kp.clone()) {
                        errors.push(kp.clone(), K::Duplicate { name: v.clone(), first });
                    }
                }
                _ => errors.push(kp, bad("", "set exactly one of san and subject")),
            }
        }
        super::validate::check_limits(errors, &format!("{p}.limits"), &c.limits, false);
    }
    for (group, limits) in &doc.group_limits {
        if !name_ok(group) {
            errors.push(format!("group_limits.{group}"), bad(group, "1 to 128 of A-Z a-z 0-9 - _ . @ :"));
        }
        super::validate::check_limits(errors, &format!("group_limits.{group}"), limits, true);
    }
    for (name, i) in &doc.introspection {
        check_introspection(errors, &format!("introspection.{name}"), i);
    }
    let mut providers = BTreeMap::new();
    for (name, pr) in &doc.jwt_providers {
        if let Some(v) = check_provider(errors, &format!("jwt_providers.{name}"), pr) {
            providers.insert(name.clone(), v);
        }
    }
    providers
}

fn check_provider(errors: &mut ConfigErrors, p: &str, pr: &JwtProviderConfig) -> Option<JwtProviderValues> {
    let before = errors.len();
    if pr.issuer.is_empty() {
        errors.push(format!("{p}.issuer"), K::Empty);
    }
    let mut algorithms = Vec::new();
    for (j, a) in pr.algorithms.iter().enumerate() {
        match Algorithm::from_str(a) {
            Ok(alg) => algorithms.push(alg),
            Err(_) => errors.push(
                format!("{p}.algorithms[{j}]"),
                bad(a, "one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA"),
            ),
        }
    }
    if pr.algorithms.is_empty() {
        errors.push(format!("{p}.algorithms"), K::Empty);
    }
    let hmac = algorithms.iter().any(|a| a.family() == AlgorithmFamily::Hmac);
    if hmac && algorithms.iter().any(|a| a.family() != AlgorithmFamily::Hmac) {
        errors.push(
            format!("{p}.algorithms"),
            bad(&pr.algorithms.join(","), "HMAC and public-key algorithms cannot be mixed in one provider"),
        );
    }
    let families: Vec<AlgorithmFamily> = algorithms.iter().map(|a| a.family()).collect();
    let mut keys = Vec::new();
    for (j, k) in pr.keys.iter().enumerate() {
        let kp = format!("{p}.keys[{j}]");
        let built = match (&k.pem, &k.jwk, &k.secret) {
            (Some(pem), None, None) => pem_key(pem.as_bytes(), &families),
            (None, Some(jwk), None) => serde_json::from_str::<jsonwebtoken::jwk::Jwk>(jwk)
                .map_err(|e| e.to_string())
                .and_then(|j| DecodingKey::from_jwk(&j).map_err(|e| e.to_string())),
            (None, None, Some(secret)) => secret_key(secret),
            _ => Err("set exactly one of pem, jwk and secret".to_string()),
        };
        match built {
            Ok(key) if families.contains(&key.family()) => keys.push(JwtKey { kid: k.kid.clone(), key }),
            Ok(key) => errors.push(
                kp,
                bad(&format!("{:?} key", key.family()), "no algorithm of the provider uses a key of this kind"),
            ),
            Err(reason) => errors.push(kp, bad("(key)", reason)),
        }
    }
    match &pr.jwks_uri {
        Some(u) => {
            let ok = u
                .parse::<http::Uri>()
                .ok()
                .filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some());
            if ok.is_none() {
                errors.push(format!("{p}.jwks_uri"), bad(u, "an absolute http:// or https:// URL"));
            }
            if hmac {
                errors.push(format!("{p}.jwks_uri"), bad(u, "HMAC secrets are given inline, never fetched"));
            }
        }
        None if pr.keys.is_empty() => errors.push(format!("{p}.keys"), bad("[]", "give keys or a jwks_uri")),
        None => {}
    }
    let secs = |d: std::time::Duration| humantime::format_duration(d).to_string();
    if pr.leeway.as_secs() > 300 {
        errors.push(format!("{p}.leeway"), K::OutOfRange { value: secs(pr.leeway), rule: "at most 5m" });
    }
    if pr.min_refetch_interval.as_millis() < 1000 {
        errors.push(
            format!("{p}.min_refetch_interval"),
            K::OutOfRange { value: secs(pr.min_refetch_interval), rule: "at least 1s" },
        );
    }
    if pr.cache_duration < pr.min_refetch_interval {
        errors.push(
            format!("{p}.cache_duration"),
            K::OutOfRange { value: secs(pr.cache_duration), rule: "at least min_refetch_interval" },
        );
    }
    if pr.fetch_timeout.is_zero() || pr.fetch_timeout.as_secs() > 60 {
        errors.push(
            format!("{p}.fetch_timeout"),
            K::OutOfRange { value: secs(pr.fetch_timeout), rule: "between 1ms and 60s" },
        );
    }
    if !(1024..=(4 << 20)).contains(&pr.max_jwks_bytes) {
        errors.push(
            format!("{p}.max_jwks_bytes"),
            K::OutOfRange { value: pr.max_jwks_bytes.to_string(), rule: "between 1 KiB and 4 MiB" },
        );
    }
    if pr.consumer_claim.is_empty() {
        errors.push(format!("{p}.consumer_claim"), K::Empty);
    }
    (errors.len() == before).then_some(JwtProviderValues { algorithms, keys })
}

fn check_introspection(errors: &mut ConfigErrors, p: &str, i: &IntrospectionConfig) {
    let ok = i
        .endpoint
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
    if ok.is_none() {
        errors.push(format!("{p}.endpoint"), bad(&i.endpoint, "an absolute http:// or https:// URL"));
    }
    if i.client_id.is_empty() {
        errors.push(format!("{p}.client_id"), K::Empty);
    }
    if i.client_secret.is_some() == i.client_secret_env.is_some() {
        errors.push(format!("{p}.client_secret"), bad("", "set exactly one of client_secret and client_secret_env"));
    }
    let secs = |d: std::time::Duration| humantime::format_duration(d).to_string();
    if i.ttl.is_zero() || i.ttl.as_secs() > 86_400 {
        errors.push(format!("{p}.ttl"), K::OutOfRange { value: secs(i.ttl), rule: "between 1ms and 24h" });
    }
    if i.negative_ttl.as_secs() > 3600 {
        errors.push(format!("{p}.negative_ttl"), K::OutOfRange { value: secs(i.negative_ttl), rule: "at most 1h" });
    }
    if i.timeout.is_zero() || i.timeout.as_secs() > 60 {
        errors.push(format!("{p}.timeout"), K::OutOfRange { value: secs(i.timeout), rule: "between 1ms and 60s" });
    }
    if !(1024..=(1 << 20)).contains(&i.max_answer_bytes) {
        errors.push(
            format!("{p}.max_answer_bytes"),
            K::OutOfRange { value: i.max_answer_bytes.to_string(), rule: "between 1 KiB and 1 MiB" },
        );
    }
    if i.consumer_claim.is_empty() {
        errors.push(format!("{p}.consumer_claim"), K::Empty);
    }
}

/// A PEM public key of one of the provider's families.
fn pem_key(pem: &[u8], families: &[AlgorithmFamily]) -> Result<DecodingKey, String> {
    let mut last = "not a public key of the provider's algorithms".to_string();
    for f in families {
        let key = match f {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => continue,
        };
        match key {
            Ok(k) => return Ok(k),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// An HMAC secret in base64 (standard or URL-safe), at least 32 bytes.
fn secret_key(text: &str) -> Result<DecodingKey, String> {
    use base64::Engine;
    let t = text.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
        .map_err(|_| "not base64".to_string())?;
    if bytes.len() < 32 {
        return Err(format!("{} bytes; an HMAC secret needs at least 32", bytes.len()));
    }
    Ok(DecodingKey::from_secret(&bytes))
}

/// What a route asks of its callers.
pub(super) fn check_route_access(
    errors: &mut ConfigErrors,
    p: &str,
    r: &super::RouteConfig,
    doc: &GatewayDocument,
) -> RouteAccessValues {
    let mut v = RouteAccessValues::default();
    if let Some(a) = &r.auth {
        let ap = format!("{p}.auth");
        if a.mtls.is_none() && a.api_key.is_none() && a.jwt.is_none() && a.introspection.is_none() {
            errors.push(ap.clone(), bad("{}", "name at least one method: mtls, api_key, jwt or introspection"));
        }
        if a.jwt.is_some() && a.introspection.is_some() {
            errors.push(
                format!("{ap}.introspection"),
                bad("introspection", "not together with jwt on one route: both read the bearer token"),
            );
        }
        if let Some(i) = &a.introspection {
            let ip = format!("{ap}.introspection");
            if !doc.introspection.contains_key(&i.provider) {
                errors.push(
                    format!("{ip}.provider"),
                    K::Unknown { what: "introspection endpoint", name: i.provider.clone() },
                );
            }
            let mut s = source(errors, &ip, &i.header, &i.query, &i.cookie);
            if s.header.is_none() && s.query.is_none() && s.cookie.is_none() {
                s.header = Some(http::header::AUTHORIZATION);
            }
            s.bearer = s.header.as_ref() == Some(&http::header::AUTHORIZATION);
            v.introspection = Some(s);
        }
        if let Some(k) = &a.api_key {
            let mut s = source(errors, &format!("{ap}.api_key"), &k.header, &k.query, &k.cookie);
            if s.header.is_none() && s.query.is_none() && s.cookie.is_none() {
                s.header = Some(HeaderName::from_static("x-api-key"));
            }
            v.api_key = Some(s);
        }
        if let Some(j) = &a.jwt {
            let jp = format!("{ap}.jwt");
            if j.providers.is_empty() {
                errors.push(format!("{jp}.providers"), K::Empty);
            }
            for (i, name) in j.providers.iter().enumerate() {
                if !doc.jwt_providers.contains_key(name) {
                    errors
                        .push(format!("{jp}.providers[{i}]"), K::Unknown { what: "JWT provider", name: name.clone() });
                }
            }
            let mut s = source(errors, &jp, &j.header, &j.query, &j.cookie);
            if s.header.is_none() && s.query.is_none() && s.cookie.is_none() {
                s.header = Some(http::header::AUTHORIZATION);
            }
            s.bearer = s.header.as_ref() == Some(&http::header::AUTHORIZATION);
            let claims_to_headers = j
                .claims_to_headers
                .iter()
                .filter_map(|(claim, h)| match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(name) => Some((claim.clone(), name)),
                    Err(_) => {
                        errors.push(format!("{jp}.claims_to_headers.{claim}"), K::InvalidHeaderName(h.clone()));
                        None
                    }
                })
                .collect();
            let payload_header = j.forward_payload_header.as_ref().and_then(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| errors.push(format!("{jp}.forward_payload_header"), K::InvalidHeaderName(h.clone())))
                    .ok()
            });
            v.jwt = Some(JwtAuthValues { source: s, claims_to_headers, payload_header });
        }
        if let Some(anon) = &a.anonymous {
            if !doc.consumers.iter().any(|c| &c.name == anon) {
                errors.push(format!("{ap}.anonymous"), K::Unknown { what: "consumer", name: anon.clone() });
            }
        }
    }
    if let Some(acc) = &r.access {
        let ap = format!("{p}.access");
        if r.auth.is_none() {
            errors.push(ap.clone(), bad("access", "needs auth: without it no caller is known"));
        }
        v.allow = principals(errors, &format!("{ap}.allow"), &acc.allow);
        v.deny = principals(errors, &format!("{ap}.deny"), &acc.deny);
        for (group, methods) in &acc.methods_by_group {
            let ms = methods
                .iter()
                .enumerate()
                .filter_map(|(j, m)| match Method::from_bytes(m.as_bytes()) {
                    Ok(method) if !m.is_empty() => Some(method),
                    _ => {
                        errors.push(format!("{ap}.methods_by_group.{group}[{j}]"), K::InvalidMethod(m.clone()));
                        None
                    }
                })
                .collect();
            v.methods_by_group.push((group.clone(), ms));
        }
        for (j, s) in acc.required_scopes.iter().enumerate() {
            if s.is_empty() || s.contains(' ') {
                errors.push(format!("{ap}.required_scopes[{j}]"), bad(s, "one scope, no spaces"));
            }
        }
    }
    if let Some(c) = &r.cors {
        v.cors = Some(check_cors(errors, &format!("{p}.cors"), c));
    }
    if let Some(ip) = &r.ip_rules {
        if ip.allow.is_empty() && ip.deny.is_empty() {
            errors.push(format!("{p}.ip_rules"), bad("{}", "name networks to allow or deny"));
        }
    }
    v
}

fn source(
    errors: &mut ConfigErrors,
    p: &str,
    header: &Option<String>,
    query: &Option<String>,
    cookie: &Option<String>,
) -> CredentialSource {
    let header = header.as_ref().and_then(|h| {
        HeaderName::from_bytes(h.as_bytes())
            .map_err(|_| errors.push(format!("{p}.header"), K::InvalidHeaderName(h.clone())))
            .ok()
    });
    let param_ok =
        |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if let Some(q) = query.as_ref().filter(|q| !param_ok(q)) {
        errors.push(format!("{p}.query"), bad(q, "a parameter name of A-Z a-z 0-9 - _ ."));
    }
    if let Some(c) = cookie.as_ref().filter(|c| !param_ok(c)) {
        errors.push(format!("{p}.cookie"), bad(c, "a cookie name of A-Z a-z 0-9 - _ ."));
    }
    CredentialSource { header, bearer: false, query: query.clone(), cookie: cookie.clone() }
}

fn principals(errors: &mut ConfigErrors, p: &str, items: &[String]) -> Vec<Principal> {
    let mut out = Vec::new();
    for (j, s) in items.iter().enumerate() {
        match s.split_once(':') {
            Some(("consumer", n)) if name_ok(n) => out.push(Principal::Consumer(n.to_string())),
            Some(("group", n)) if name_ok(n) => out.push(Principal::Group(n.to_string())),
            _ => errors.push(format!("{p}[{j}]"), bad(s, "consumer:<name> or group:<name>")),
        }
    }
    out
}

/// `scheme://host[:port]` lower-cased, without the scheme's default port;
/// `None` unless it is exactly an origin.
pub fn normalise_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || rest.is_empty() || rest.len() > 253 + 6 {
        return None;
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)) {
        return None;
    }
    let rest = rest.to_ascii_lowercase();
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']')?;
        let (h, after) = rest.split_at(end + 1);
        match after {
            "" => (h, None),
            _ => (h, Some(after.strip_prefix(':')?.parse::<u16>().ok()?)),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (rest.as_str(), None),
        }
    };
    if host.is_empty() || (!host.starts_with('[') && host.split('.').any(str::is_empty)) {
        return None;
    }
    let default = if scheme == "https" { 443 } else { 80 };
    Some(match port {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

fn check_cors(errors: &mut ConfigErrors, p: &str, c: &CorsConfig) -> CorsValues {
    let mut any_origin = false;
    let mut origins = Vec::new();
    for (j, o) in c.origins.iter().enumerate() {
        if o == "*" {
            any_origin = true;
            if c.allow_credentials {
                errors.push(format!("{p}.origins[{j}]"), bad(o, "\"*\" cannot be used with allow_credentials"));
            }
        } else if o == "null" {
            errors.push(
                format!("{p}.origins[{j}]"),
                bad(o, "the null origin is never allowed (sandboxed and file pages share it)"),
            );
        } else {
            match normalise_origin(o) {
                Some(n) => origins.push(n),
                None => errors.push(format!("{p}.origins[{j}]"), bad(o, "scheme://host[:port] or *")),
            }
        }
    }
    let mut patterns = Vec::new();
    for (j, o) in c.origin_patterns.iter().enumerate() {
        let parsed = o.split_once("://*.").and_then(|(scheme, rest)| {
            let n = normalise_origin(&format!("{scheme}://x.{rest}"))?;
            let (s, after) = n.split_once("://x")?;
            Some(OriginPattern { scheme: format!("{s}://"), suffix: after.to_string() })
        });
        match parsed {
            Some(pat) => patterns.push(pat),
            None => errors.push(format!("{p}.origin_patterns[{j}]"), bad(o, "scheme://*.suffix[:port]")),
        }
    }
    if c.origins.is_empty() && c.origin_patterns.is_empty() {
        errors.push(format!("{p}.origins"), K::Empty);
    }
    let methods = c
        .methods
        .iter()
        .enumerate()
        .filter_map(|(j, m)| match Method::from_bytes(m.as_bytes()) {
            Ok(method) if !m.is_empty() => Some(method),
            _ => {
                errors.push(format!("{p}.methods[{j}]"), K::InvalidMethod(m.clone()));
                None
            }
        })
        .collect();
    let names = |errors: &mut ConfigErrors, key: &str, items: &[String]| -> Vec<HeaderName> {
        items
            .iter()
            .enumerate()
            .filter_map(|(j, h)| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| errors.push(format!("{p}.{key}[{j}]"), K::InvalidHeaderName(h.clone())))
                    .ok()
            })
            .collect()
    };
    let headers = names(errors, "headers", &c.headers);
    let expose_headers = names(errors, "expose_headers", &c.expose_headers);
    if c.max_age.as_secs() > 86_400 {
        errors.push(
            format!("{p}.max_age"),
            K::OutOfRange { value: humantime::format_duration(c.max_age).to_string(), rule: "at most 24h" },
        );
    }
    CorsValues { any_origin, origins, patterns, methods, headers, expose_headers }
}

#[cfg(test)]
mod tests {
    use super::normalise_origin;

    #[test]
    fn origins_are_normalised_and_anything_else_refused() {
        assert_eq!(normalise_origin("HTTPS://App.Example.TEST:443").as_deref(), Some("https://app.example.test"));
        assert_eq!(normalise_origin("http://a.test:8080").as_deref(), Some("http://a.test:8080"));
        assert_eq!(normalise_origin("http://[::1]:80").as_deref(), Some("http://[::1]"));
        for bad in [
            "null",
            "a.test",
            "https://a.",
            "https://.a",
            "https://a..b",
            "ftp://a.test",
            "https://",
            "https://a.test/",
            "https://a.test:x",
            "https://u@a.test",
        ] {
            assert_eq!(normalise_origin(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod corpus {
    use super::normalise_origin;

    #[test]
    fn the_fuzz_corpus_normalises_to_fixed_points() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/origin");
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            let Ok(text) = std::str::from_utf8(&bytes) else { continue };
            if let Some(n) = normalise_origin(text) {
                assert_eq!(normalise_origin(&n).as_deref(), Some(n.as_str()), "{text:?}");
            }
        }
    }
}
