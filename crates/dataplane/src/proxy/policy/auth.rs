//! The authentication policy: find who is calling from the credential the
//! request carries. Methods are tried in a fixed order (API key, then JWT);
//! the first whose credential is present decides, and an invalid credential
//! is refused, never downgraded to `anonymous`. Without any credential the
//! route's anonymous consumer, if it has one, else 401.
//!
//! Credentials never reach logs, metric labels or the error body; the
//! upstream gets `X-Consumer-Name` and `X-Credential-Id` (client-sent copies
//! are removed first).

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};

use super::Flow;
use crate::identity::introspect::{Introspected, Introspector};
use crate::identity::jwt::{Provider, TokenError};
use crate::identity::{Caller, Consumer, Credential, Directory};
use crate::proxy::context::RequestCtx;
use crate::proxy::error::ProxyError;
use crate::proxy::headers;
use meridian_core::config::CredentialSource;

pub static X_CONSUMER_NAME: HeaderName = HeaderName::from_static("x-consumer-name");
pub static X_CONSUMER_GROUPS: HeaderName = HeaderName::from_static("x-consumer-groups");
pub static X_CREDENTIAL_ID: HeaderName = HeaderName::from_static("x-credential-id");

static BEARER: HeaderValue = HeaderValue::from_static("Bearer realm=\"meridian\"");
static API_KEY: HeaderValue = HeaderValue::from_static("ApiKey realm=\"meridian\"");

/// A route's API-key method.
pub struct ApiKeyMethod {
    pub source: CredentialSource,
    pub hide: bool,
}

/// A route's JWT method.
pub struct JwtMethod {
    pub source: CredentialSource,
    pub providers: Vec<Arc<Provider>>,
    pub claims_to_headers: Vec<(String, HeaderName)>,
    pub payload_header: Option<HeaderName>,
    pub hide: bool,
}

/// A route's introspection method.
pub struct IntrospectionMethod {
    pub source: CredentialSource,
    pub introspector: Arc<Introspector>,
    pub hide: bool,
}

/// Headers a client could send to pose as having shown a certificate.
static CLIENT_CERT_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-forwarded-client-cert"),
    HeaderName::from_static("x-client-cert"),
    HeaderName::from_static("x-ssl-client-cert"),
    HeaderName::from_static("x-ssl-client-dn"),
    HeaderName::from_static("x-ssl-client-verify"),
];

/// A route's authentication, compiled.
pub struct RouteAuth {
    pub route: Arc<str>,
    /// The connection's verified client certificate names the consumer.
    pub mtls: bool,
    /// No other method and no anonymous consumer: a request without a
    /// certificate cannot be served here.
    pub certificate_required: bool,
    pub api_key: Option<ApiKeyMethod>,
    pub jwt: Option<JwtMethod>,
    pub introspection: Option<IntrospectionMethod>,
    pub anonymous: Option<Arc<Consumer>>,
    pub directory: Arc<Directory>,
    pub forward_groups: bool,
    pub metrics: Arc<crate::telemetry::GatewayMetrics>,
    /// `auth_decisions_total{result="ok"}` of each method, resolved once.
    pub ok: [prometheus::IntCounter; 5],
    /// `X-Credential-Id: anonymous`.
    pub anonymous_credential: Arc<Credential>,
    /// Request counters of the labelled consumers on this route...
    pub consumer_metrics: std::collections::HashMap<Arc<str>, Arc<[prometheus::IntCounter; 6]>>,
    /// ...and of all others.
    pub other_consumers: Arc<[prometheus::IntCounter; 6]>,
}

/// The methods, in the order of [`RouteAuth::ok`].
#[derive(Clone, Copy)]
pub enum AuthMethod {
    Mtls,
    ApiKey,
    Jwt,
    Introspection,
    Anonymous,
}

/// The `method` label of each of [`AuthMethod`].
pub const METHODS: [&str; 5] = ["mtls", "api_key", "jwt", "introspection", "anonymous"];

impl RouteAuth {
    fn count(&self, method: &str, result: &str) {
        self.metrics.auth_decisions.with_label_values(&[&self.route, method, result]).inc();
    }

    fn challenge(&self) -> &'static HeaderValue {
        if self.jwt.is_some() || self.introspection.is_some() {
            &BEARER
        } else {
            &API_KEY
        }
    }
}

pub(super) async fn on_request(a: &RouteAuth, ctx: &mut RequestCtx<'_>) -> Result<Flow, ProxyError> {
    let h = &mut ctx.head.headers;
    // Identity headers come from the gateway only.
    h.remove(&X_CONSUMER_NAME);
    h.remove(&X_CONSUMER_GROUPS);
    h.remove(&X_CREDENTIAL_ID);
    if let Some(j) = &a.jwt {
        for (_, name) in &j.claims_to_headers {
            h.remove(name);
        }
        if let Some(p) = &j.payload_header {
            h.remove(p);
        }
    }
    let caller = match authenticate(a, ctx).await? {
        Some(c) => c,
        None => match &a.anonymous {
            Some(anon) => {
                a.ok[AuthMethod::Anonymous as usize].inc();
                Caller::of(anon, &a.anonymous_credential)
            }
            None => {
                a.count("none", "missing");
                return Err(ProxyError::Unauthorized {
                    challenge: a.challenge().clone(),
                    message: "credentials are required",
                });
            }
        },
    };
    let h = &mut ctx.head.headers;
    h.insert(&X_CONSUMER_NAME, caller.consumer_header.clone());
    h.insert(&X_CREDENTIAL_ID, caller.credential.header.clone());
    if a.forward_groups && !caller.groups.is_empty() {
        let groups = caller.groups.iter().map(|g| &**g).collect::<Vec<_>>().join(", ");
        if let Ok(v) = HeaderValue::from_str(&groups) {
            h.insert(&X_CONSUMER_GROUPS, v);
        }
    }
    if let Some(log) = ctx.fin.log.as_mut() {
        log.consumer = Some(caller.consumer.clone());
    }
    ctx.fin.consumer = Some(a.consumer_metrics.get(&caller.consumer).unwrap_or(&a.other_consumers).clone());
    ctx.caller = Some(caller);
    Ok(Flow::Next)
}

/// The caller proven by the first credential present; `None` without any.
async fn authenticate(a: &RouteAuth, ctx: &mut RequestCtx<'_>) -> Result<Option<Caller>, ProxyError> {
    if a.mtls {
        for h in &CLIENT_CERT_HEADERS {
            ctx.head.headers.remove(h);
        }
        match ctx.conn.client_cert.get() {
            Some(cert) => {
                return match a.directory.find_certificate(cert) {
                    Some((consumer, id)) => {
                        a.ok[AuthMethod::Mtls as usize].inc();
                        Ok(Some(Caller::of(consumer, id)))
                    }
                    None => {
                        a.count("mtls", "invalid");
                        tracing::debug!(route = %a.route, subject = %cert.subject, "client certificate names no consumer");
                        Err(ProxyError::Forbidden("the client certificate names no consumer"))
                    }
                };
            }
            None if a.certificate_required => {
                a.count("mtls", "missing");
                // Over HTTP/2 the connection may have been opened for another
                // host (no certificate asked): a new one will be (RFC 9110 §15.5.20).
                return Err(if ctx.conn.h2.load(std::sync::atomic::Ordering::Relaxed) {
                    ProxyError::Misdirected("this host needs a client certificate: open a new connection")
                } else {
                    ProxyError::Forbidden("a verified client certificate is required")
                });
            }
            None => {}
        }
    }
    if let Some(k) = &a.api_key {
        if let Some(key) = take(&k.source, ctx, k.hide) {
            return match a.directory.find_key(key.as_bytes()) {
                Some((consumer, id)) => {
                    a.ok[AuthMethod::ApiKey as usize].inc();
                    Ok(Some(Caller::of(consumer, id)))
                }
                None => {
                    a.count("api_key", "invalid");
                    tracing::debug!(route = %a.route, "unknown API key");
                    Err(ProxyError::Unauthorized { challenge: API_KEY.clone(), message: "the API key is not valid" })
                }
            };
        }
    }
    if let Some(j) = &a.jwt {
        if let Some(token) = take(&j.source, ctx, j.hide) {
            return jwt(a, j, ctx, &token).await.map(Some);
        }
    }
    if let Some(m) = &a.introspection {
        if let Some(token) = take(&m.source, ctx, m.hide) {
            return introspect(a, m, &token).await.map(Some);
        }
    }
    Ok(None)
}

async fn introspect(a: &RouteAuth, m: &IntrospectionMethod, token: &str) -> Result<Caller, ProxyError> {
    if token.len() > crate::identity::jwt::MAX_TOKEN_BYTES {
        a.count("introspection", "invalid");
        return Err(invalid_token("the token is not valid"));
    }
    match m.introspector.check(token).await {
        Ok(answer) => match &*answer {
            Introspected::Active { claims, consumer, consumer_header, groups: granted, .. } => {
                a.ok[AuthMethod::Introspection as usize].inc();
                Ok(external(a, consumer, consumer_header, granted, &m.introspector.credential, claims))
            }
            Introspected::Inactive { .. } => {
                a.count("introspection", "invalid");
                Err(invalid_token("the token is not active"))
            }
        },
        Err(_) => {
            a.count("introspection", "unavailable");
            Err(ProxyError::AuthUnavailable("the token cannot be checked now"))
        }
    }
}

/// 401 with an RFC 6750 `invalid_token` challenge.
fn invalid_token(message: &'static str) -> ProxyError {
    let text = format!("Bearer realm=\"meridian\", error=\"invalid_token\", error_description=\"{message}\"");
    ProxyError::Unauthorized { challenge: HeaderValue::from_str(&text).unwrap_or_else(|_| BEARER.clone()), message }
}

async fn jwt(a: &RouteAuth, j: &JwtMethod, ctx: &mut RequestCtx<'_>, token: &str) -> Result<Caller, ProxyError> {
    let refuse = |e: TokenError| {
        a.count("jwt", e.label());
        tracing::debug!(route = %a.route, reason = %e, "token refused");
        if e == TokenError::KeysUnavailable {
            return ProxyError::AuthUnavailable("the token issuer's keys cannot be fetched");
        }
        invalid_token(token_message(e))
    };
    let provider = match j.providers.as_slice() {
        [one] => one,
        many => {
            let iss = issuer_of(token).ok_or_else(|| refuse(TokenError::Malformed))?;
            many.iter().find(|p| p.config.issuer == iss).ok_or_else(|| refuse(TokenError::Issuer))?
        }
    };
    let v = provider.verify(token).await.map_err(refuse)?;
    a.ok[AuthMethod::Jwt as usize].inc();
    let h = &mut ctx.head.headers;
    for (claim, name) in &j.claims_to_headers {
        let text = match v.claims.get(claim) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(n @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => n.to_string(),
            _ => continue,
        };
        if let Ok(value) = HeaderValue::from_str(&text) {
            h.insert(name, value);
        }
    }
    if let Some(name) = &j.payload_header {
        if let Some(Ok(value)) = token.split('.').nth(1).map(HeaderValue::from_str) {
            h.insert(name, value);
        }
    }
    Ok(external(a, &v.consumer, &v.consumer_header, &v.groups, &provider.credential, &v.claims))
}

/// A caller a token names: a configured consumer of that name lends its
/// groups (and limits), the token adds its own groups.
fn external(
    a: &RouteAuth,
    consumer: &Arc<str>,
    consumer_header: &HeaderValue,
    granted: &[Arc<str>],
    credential: &Arc<Credential>,
    claims: &Arc<serde_json::Map<String, serde_json::Value>>,
) -> Caller {
    let known = a.directory.consumer(consumer).cloned();
    // The consumer's groups as they are when the token grants none.
    let groups = match (&known, granted.is_empty()) {
        (Some(c), true) => c.groups.clone(),
        (known, _) => known.iter().flat_map(|c| c.groups.iter()).chain(granted).cloned().collect(),
    };
    Caller {
        consumer: consumer.clone(),
        consumer_header: consumer_header.clone(),
        known,
        groups,
        credential: credential.clone(),
        claims: Some(claims.clone()),
    }
}

/// What the client is told about a refused token (never the token).
fn token_message(e: TokenError) -> &'static str {
    match e {
        TokenError::Expired => "the token has expired",
        TokenError::NotYetValid => "the token is not valid yet",
        _ => "the token is not valid",
    }
}

/// The `iss` of a token's payload, to pick its provider (verified after).
fn issuer_of(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    if payload.len() > crate::identity::jwt::MAX_TOKEN_BYTES {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    serde_json::from_slice::<Iss>(&bytes).ok().map(|i| i.iss)
}

/// The credential from the first place that has it; removed from the
/// request when `hide` (a query parameter always is: it must reach neither
/// the cache key nor the upstream's logs).
fn take(source: &CredentialSource, ctx: &mut RequestCtx<'_>, hide: bool) -> Option<String> {
    let h = &mut ctx.head.headers;
    if let Some(name) = &source.header {
        if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            let found = if source.bearer {
                v.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim().to_string())
            } else {
                Some(v.to_string())
            };
            if let Some(found) = found.filter(|f| !f.is_empty()) {
                if hide {
                    h.remove(name);
                }
                return Some(found);
            }
        }
    }
    if let Some(q) = &source.query {
        if let Some(found) = take_query(&mut ctx.head.uri, q) {
            return Some(found);
        }
    }
    if let Some(c) = &source.cookie {
        if let Some(found) = headers::cookie(h, c).map(str::to_string).filter(|f| !f.is_empty()) {
            if hide {
                headers::remove_cookie(h, c);
            }
            return Some(found);
        }
    }
    None
}

/// Remove the parameter `name` from the query and return its (decoded) value.
fn take_query(uri: &mut http::Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    let mut found = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            if found.is_none() {
                found = Some(percent_decode(v));
            }
        } else {
            kept.push(pair);
        }
    }
    let found = found?;
    let path = uri.path();
    let pq = if kept.is_empty() { path.to_string() } else { format!("{path}?{}", kept.join("&")) };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = pq.parse().ok();
    *uri = http::Uri::from_parts(parts).unwrap_or_default();
    Some(found)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_credential_is_taken_out_of_the_target() {
        let mut uri: http::Uri = "/a/b?x=1&apikey=mk_%2Fz&y=2".parse().unwrap();
        assert_eq!(take_query(&mut uri, "apikey").as_deref(), Some("mk_/z"));
        assert_eq!(uri.to_string(), "/a/b?x=1&y=2");
        let mut uri: http::Uri = "/a?apikey=k".parse().unwrap();
        assert_eq!(take_query(&mut uri, "apikey").as_deref(), Some("k"));
        assert_eq!(uri.to_string(), "/a");
        let mut uri: http::Uri = "/a?other=k".parse().unwrap();
        assert_eq!(take_query(&mut uri, "apikey"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
    }
}
