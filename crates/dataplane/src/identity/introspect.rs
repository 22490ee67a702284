//! OAuth 2.0 token introspection (RFC 7662): an opaque token is POSTed to
//! the authorization server with the gateway's client credentials. Answers
//! are cached by the token's SHA-256: an active one for `ttl`, never past
//! the token's `exp`; an inactive one for `negative_ttl`. Concurrent
//! requests with one token wait for one introspection. An endpoint that
//! cannot be reached is not an answer: nothing is cached, the request gets
//! 503.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::fetch::{exchange, FetchError};
use crate::telemetry::GatewayMetrics;
use meridian_core::client::AdminClient;
use meridian_core::config::IntrospectionConfig;

/// Tokens (and answers) kept per endpoint.
const CACHE_ENTRIES: u64 = 50_000;

/// What the authorization server said of a token.
#[derive(Debug)]
pub enum Introspected {
    Active {
        claims: Arc<Map<String, Value>>,
        consumer: Arc<str>,
        consumer_header: http::HeaderValue,
        groups: Vec<Arc<str>>,
        ttl: Duration,
    },
    Inactive {
        ttl: Duration,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("malformed answer: {0}")]
    Malformed(String),
}

struct PerAnswer;

impl moka::Expiry<[u8; 32], Arc<Introspected>> for PerAnswer {
    fn expire_after_create(&self, _: &[u8; 32], v: &Arc<Introspected>, _: Instant) -> Option<Duration> {
        Some(match &**v {
            Introspected::Active { ttl, .. } | Introspected::Inactive { ttl } => *ttl,
        })
    }
}

pub struct Introspector {
    pub name: Arc<str>,
    /// `introspection:<name>`, the credential of its tokens.
    pub credential: Arc<super::Credential>,
    pub config: IntrospectionConfig,
    endpoint: http::Uri,
    /// `Basic base64(client_id:client_secret)`.
    authorization: http::HeaderValue,
    client: AdminClient,
    cache: moka::future::Cache<[u8; 32], Arc<Introspected>>,
    metrics: Arc<GatewayMetrics>,
}

impl Introspector {
    pub fn new(name: &str, config: &IntrospectionConfig, metrics: Arc<GatewayMetrics>) -> Result<Arc<Self>, String> {
        let endpoint = config.endpoint.parse::<http::Uri>().map_err(|e| format!("endpoint: {e}"))?;
        let secret = match (&config.client_secret, &config.client_secret_env) {
            (Some(s), _) => s.clone(),
            (None, Some(env)) => std::env::var(env).map_err(|_| format!("client_secret_env: {env} is not set"))?,
            (None, None) => return Err("no client secret".into()),
        };
        // RFC 6749 §2.3.1: both form-encoded before they are joined.
        let basic = format!("{}:{}", form_encode(&config.client_id), form_encode(&secret));
        let authorization =
            http::HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(basic)))
                .map_err(|e| format!("client credentials: {e}"))?;
        let client = meridian_core::client::admin_client(config.ca_file.as_deref().map(std::path::Path::new))
            .map_err(|e| format!("ca_file: {e}"))?;
        Ok(Arc::new(Self {
            name: name.into(),
            credential: super::Credential::new(&format!("introspection:{name}")),
            config: config.clone(),
            endpoint,
            authorization,
            client,
            cache: moka::future::Cache::builder().max_capacity(CACHE_ENTRIES).expire_after(PerAnswer).build(),
            metrics,
        }))
    }

    /// What the server says of `token`: cached, or asked once for all who wait.
    pub async fn check(&self, token: &str) -> Result<Arc<Introspected>, Arc<IntrospectionError>> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache.get(&hash).await {
            self.metrics.introspection.with_label_values(&[&self.name, "cached"]).inc();
            return Ok(hit);
        }
        let result = self.cache.try_get_with(hash, async { self.ask(token).await.map(Arc::new) }).await;
        let label = match &result {
            Ok(a) if matches!(**a, Introspected::Active { .. }) => "active",
            Ok(_) => "inactive",
            Err(e) => {
                tracing::warn!(endpoint = %self.name, error = %e, "token introspection failed");
                "failed"
            }
        };
        self.metrics.introspection.with_label_values(&[&self.name, label]).inc();
        result
    }

    async fn ask(&self, token: &str) -> Result<Introspected, IntrospectionError> {
        let body =
            format!("token={}&token_type_hint={}", form_encode(token), form_encode(&self.config.token_type_hint));
        let req = Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::AUTHORIZATION, self.authorization.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| FetchError::Request(e.to_string()))?;
        let bytes = exchange(&self.client, req, self.config.timeout, self.config.max_answer_bytes).await?;
        self.interpret(&bytes)
    }

    /// An answer, judged: `active` must be `true`, `exp` (when given) in the
    /// future, and the consumer claim present; anything else is inactive.
    pub fn interpret(&self, body: &[u8]) -> Result<Introspected, IntrospectionError> {
        let claims: Map<String, Value> =
            serde_json::from_slice(body).map_err(|e| IntrospectionError::Malformed(e.to_string()))?;
        let inactive = Introspected::Inactive { ttl: self.config.negative_ttl };
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Ok(inactive);
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut ttl = self.config.ttl;
        if let Some(exp) = claims.get("exp").and_then(Value::as_f64) {
            let left = (exp as u64).saturating_sub(now);
            if left == 0 {
                return Ok(inactive);
            }
            ttl = ttl.min(Duration::from_secs(left));
        }
        let Some((consumer, groups)) =
            super::identity_of(&claims, &self.config.consumer_claim, self.config.groups_claim.as_deref())
        else {
            return Ok(inactive);
        };
        let consumer_header = super::header_value(&consumer);
        Ok(Introspected::Active { claims: Arc::new(claims), consumer, consumer_header, groups, ttl })
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An introspector for the `introspection_answer` fuzz target (it is never
/// asked anything: only its judgement of answers is exercised).
#[cfg(any(test, fuzzing))]
pub fn fuzz_introspector() -> Arc<Introspector> {
    let cfg = IntrospectionConfig {
        endpoint: "http://127.0.0.1:9/introspect".into(),
        client_id: "fuzz".into(),
        client_secret: Some("fuzz-secret".into()),
        client_secret_env: None,
        token_type_hint: "access_token".into(),
        ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        max_answer_bytes: 4096,
        ca_file: None,
        consumer_claim: "sub".into(),
        groups_claim: Some("groups".into()),
    };
    Introspector::new("fuzz", &cfg, Arc::new(GatewayMetrics::new("fuzz", "fuzz"))).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_corpus_is_judged_without_a_panic() {
        let i = fuzz_introspector();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/introspection_answer");
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            let _ = i.interpret(&bytes);
        }
    }

    #[test]
    fn answers_are_judged_strictly_and_bounded_by_exp() {
        let i = fuzz_introspector();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let active = format!(r#"{{"active": true, "sub": "alice", "groups": "a b", "exp": {}}}"#, now + 10);
        match i.interpret(active.as_bytes()).unwrap() {
            Introspected::Active { consumer, groups, ttl, .. } => {
                assert_eq!(&*consumer, "alice");
                assert_eq!(groups.len(), 2);
                assert!(ttl <= Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        for inactive in [
            r#"{"active": false, "sub": "alice"}"#.to_string(),
            r#"{"active": "true", "sub": "alice"}"#.to_string(),
            r#"{"active": true}"#.to_string(),
            format!(r#"{{"active": true, "sub": "alice", "exp": {}}}"#, now - 1),
        ] {
            assert!(matches!(i.interpret(inactive.as_bytes()).unwrap(), Introspected::Inactive { .. }), "{inactive}");
        }
        assert!(i.interpret(b"[]").is_err());
        assert_eq!(i.authorization, "Basic ZnV6ejpmdXp6LXNlY3JldA==");
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
