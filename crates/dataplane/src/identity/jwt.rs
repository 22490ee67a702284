//! A JWT provider at run time: its keys (inline, and a JWK Set kept fresh in
//! the background), token verification with the provider's fixed
//! algorithms and claim rules, and a bounded cache of verified tokens.
//!
//! The key set has a generation that changes whenever its keys change; a
//! cached verification is valid only for the generation it was made with,
//! so a key removed from the set stops admitting its tokens at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use super::jwks;
use crate::telemetry::GatewayMetrics;
use meridian_core::client::AdminClient;
use meridian_core::config::{JwtProviderConfig, JwtProviderValues};

/// Longest token looked at; longer ones are refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `kid` looked up.
const MAX_KID_BYTES: usize = 256;
/// Verified tokens kept per provider.
const CACHE_ENTRIES: u64 = 50_000;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token uses an unsupported critical header")]
    Critical,
    #[error("no key matches the token")]
    UnknownKey,
    #[error("the signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no expiry")]
    NoExpiry,
    #[error("the token's issuer is not accepted")]
    Issuer,
    #[error("the token's audience is not accepted")]
    Audience,
    #[error("the token lives longer than allowed")]
    Lifetime,
    #[error("the token names no consumer")]
    NoConsumer,
    /// No key is known yet because the key set cannot be fetched: 503.
    #[error("the issuer's keys are unavailable")]
    KeysUnavailable,
}

impl TokenError {
    /// The `result` label of the decision metric.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Expired => "expired",
            TokenError::KeysUnavailable => "unavailable",
            _ => "invalid",
        }
    }
}

/// A verified token.
#[derive(Debug)]
pub struct Verified {
    pub claims: Arc<Map<String, Value>>,
    /// The consumer claim's value.
    pub consumer: Arc<str>,
    /// ...as the `X-Consumer-Name` value.
    pub consumer_header: http::HeaderValue,
    /// Groups granted by the groups claim.
    pub groups: Vec<Arc<str>>,
    /// `exp`, seconds since the epoch.
    pub exp: u64,
    generation: u64,
}

/// Fetched keys of one generation.
#[derive(Default)]
struct KeySet {
    generation: u64,
    by_kid: HashMap<String, Arc<DecodingKey>>,
    unkeyed: Vec<Arc<DecodingKey>>,
    /// Fingerprints, sorted: equal sets are the same generation.
    fingerprints: Vec<String>,
}

pub struct Provider {
    pub name: Arc<str>,
    /// `jwt:<name>`, the credential of its tokens.
    pub credential: Arc<super::Credential>,
    pub config: JwtProviderConfig,
    algorithms: Vec<Algorithm>,
    /// The claim checks for each accepted algorithm, built once.
    validations: Vec<(Algorithm, Validation)>,
    inline: Vec<(Option<String>, Arc<DecodingKey>)>,
    jwks_uri: Option<http::Uri>,
    client: Option<AdminClient>,
    fetched: ArcSwap<KeySet>,
    /// Whether any fetch succeeded (else, without inline keys, tokens get 503).
    have_keys: watch::Sender<FetchState>,
    /// Completed fetches, so a waiter can tell whether one ran while it waited.
    fetches: AtomicU64,
    /// Single flight: held while a fetch runs; the time of the last fetch
    /// a token asked for (scheduled ones do not count against the throttle).
    fetch_lock: Mutex<Option<Instant>>,
    cache: moka::future::Cache<[u8; 32], Arc<Verified>>,
    metrics: Arc<GatewayMetrics>,
    stop: CancellationToken,
}

/// What the provider knows of its key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchState {
    /// The first fetch has not finished.
    Pending,
    Failed,
    Ready,
}

impl Provider {
    pub fn new(
        name: &str,
        config: &JwtProviderConfig,
        values: &JwtProviderValues,
        metrics: Arc<GatewayMetrics>,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        crate::tls::install_crypto_provider();
        let jwks_uri = match &config.jwks_uri {
            Some(u) => Some(u.parse::<http::Uri>().map_err(|e| format!("jwks_uri: {e}"))?),
            None => None,
        };
        let client = match &jwks_uri {
            Some(_) => Some(
                meridian_core::client::admin_client(config.jwks_ca_file.as_deref().map(std::path::Path::new))
                    .map_err(|e| format!("jwks_ca_file: {e}"))?,
            ),
            None => None,
        };
        let initial = if jwks_uri.is_some() { FetchState::Pending } else { FetchState::Ready };
        Ok(Arc::new(Self {
            name: name.into(),
            credential: super::Credential::new(&format!("jwt:{name}")),
            config: config.clone(),
            algorithms: values.algorithms.clone(),
            validations: values.algorithms.iter().map(|a| (*a, validation(config, *a))).collect(),
            inline: values.keys.iter().map(|k| (k.kid.clone(), Arc::new(k.key.clone()))).collect(),
            jwks_uri,
            client,
            fetched: ArcSwap::from_pointee(KeySet::default()),
            have_keys: watch::channel(initial).0,
            fetches: AtomicU64::new(0),
            fetch_lock: Mutex::new(None),
            cache: moka::future::Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(config.cache_duration.max(Duration::from_secs(1)))
                .build(),
            metrics,
            stop,
        }))
    }

    /// Keep the key set fresh until stopped: fetch now, then every
    /// `cache_duration` (after a failure, every `min_refetch_interval`).
    pub fn spawn_refresh(self: &Arc<Self>) {
        if self.jwks_uri.is_none() {
            return;
        }
        let p = self.clone();
        tokio::spawn(async move {
            loop {
                let ok = p.fetch(true).await;
                let wait = if ok { p.config.cache_duration } else { p.config.min_refetch_interval };
                tokio::select! {
                    _ = p.stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// Stop the background refresh (the provider left the document).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Wait until the first fetch finished, whatever its outcome.
    pub async fn first_fetch(&self) {
        let mut rx = self.have_keys.subscribe();
        let _ = rx.wait_for(|s| *s != FetchState::Pending).await;
    }

    /// Fetch the key set. `scheduled` fetches always run; others (an unknown
    /// `kid`) at most once per `min_refetch_interval`, and not at all when
    /// another fetch finished while this one waited for its turn.
    async fn fetch(&self, scheduled: bool) -> bool {
        let (Some(uri), Some(client)) = (&self.jwks_uri, &self.client) else { return false };
        let seen = self.fetches.load(Ordering::Acquire);
        let mut last = self.fetch_lock.lock().await;
        if !scheduled {
            if self.fetches.load(Ordering::Acquire) != seen {
                return true;
            }
            if last.is_some_and(|t| t.elapsed() < self.config.min_refetch_interval) {
                self.metrics.jwks_fetches.with_label_values(&[&self.name, "throttled"]).inc();
                return false;
            }
        }
        if !scheduled {
            *last = Some(Instant::now());
        }
        let result = jwks::fetch(client, uri, self.config.fetch_timeout, self.config.max_jwks_bytes).await;
        self.fetches.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(keys) => {
                let mut fingerprints: Vec<String> = keys.iter().map(|k| k.fingerprint.clone()).collect();
                fingerprints.sort();
                let old = self.fetched.load();
                let changed = old.fingerprints != fingerprints;
                if changed {
                    let mut set = KeySet { generation: old.generation + 1, fingerprints, ..KeySet::default() };
                    for k in keys {
                        match k.kid {
                            Some(kid) => {
                                set.by_kid.insert(kid, Arc::new(k.key));
                            }
                            None => set.unkeyed.push(Arc::new(k.key)),
                        }
                    }
                    let count = (set.by_kid.len() + set.unkeyed.len()) as i64;
                    tracing::info!(provider = %self.name, keys = count, generation = set.generation, "JWK Set changed");
                    self.fetched.store(Arc::new(set));
                    self.metrics.jwks_keys.with_label_values(&[&self.name]).set(count);
                }
                let label = if changed { "changed" } else { "unchanged" };
                self.metrics.jwks_fetches.with_label_values(&[&self.name, label]).inc();
                self.have_keys.send_replace(FetchState::Ready);
                true
            }
            Err(e) => {
                // The last good set stays in use.
                tracing::warn!(provider = %self.name, uri = %uri, error = %e, "JWK Set fetch failed");
                self.metrics.jwks_fetches.with_label_values(&[&self.name, "failed"]).inc();
                self.have_keys.send_if_modified(|s| {
                    let first = *s == FetchState::Pending;
                    if first {
                        *s = FetchState::Failed;
                    }
                    first
                });
                false
            }
        }
    }

    /// Verify `token`: from the cache when it was verified with the keys of
    /// this generation, else in full.
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        if let Some(v) = self.cache.get(&hash).await {
            if v.generation == self.fetched.load().generation && v.exp + self.config.leeway.as_secs() > now {
                self.metrics.jwt_cache.with_label_values(&[&self.name, "hit"]).inc();
                return Ok(v);
            }
        }
        self.metrics.jwt_cache.with_label_values(&[&self.name, "miss"]).inc();
        let v = Arc::new(self.verify_uncached(token, now).await?);
        self.cache.insert(hash, v.clone()).await;
        Ok(v)
    }

    async fn verify_uncached(&self, token: &str, now: u64) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.crit.as_ref().is_some_and(|c| !c.is_empty()) {
            // No extension is understood, so none may be critical (RFC 7515 §4.1.11).
            return Err(TokenError::Critical);
        }
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        if header.kid.as_ref().is_some_and(|k| k.len() > MAX_KID_BYTES) {
            return Err(TokenError::Malformed);
        }
        let generation = self.fetched.load().generation;
        let mut keys = self.keys_for(header.kid.as_deref(), header.alg);
        if keys.is_empty() && self.jwks_uri.is_some() {
            let state = *self.have_keys.borrow();
            match state {
                // The first fetch is under way: wait for it rather than refuse.
                FetchState::Pending => self.first_fetch().await,
                FetchState::Failed if self.inline.is_empty() => {
                    // No key was ever fetched: try again (throttled).
                    self.fetch(false).await;
                }
                _ if header.kid.is_some() => {
                    // A kid the set does not have: perhaps a new key.
                    self.fetch(false).await;
                }
                _ => {}
            }
            keys = self.keys_for(header.kid.as_deref(), header.alg);
            let ready = *self.have_keys.borrow() == FetchState::Ready;
            if keys.is_empty() && !ready && self.inline.is_empty() {
                return Err(TokenError::KeysUnavailable);
            }
        }
        if keys.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(TokenError::Algorithm);
        };
        let mut last = TokenError::Signature;
        for key in &keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
                Ok(data) => return self.accept(data.claims, now, generation),
                Err(e) => {
                    last = classify(e.kind());
                    if last != TokenError::Signature {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// Keys of the token's family: by `kid` when it has one (else all of them).
    fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<DecodingKey>> {
        let family = alg.family();
        let set = self.fetched.load();
        let mut out: Vec<Arc<DecodingKey>> = Vec::new();
        let fits = |k: &Arc<DecodingKey>| k.family() == family;
        for (k_kid, k) in &self.inline {
            if fits(k) && (k_kid.is_none() || kid.is_none() || k_kid.as_deref() == kid) {
                out.push(k.clone());
            }
        }
        match kid {
            Some(kid) => out.extend(set.by_kid.get(kid).filter(|k| fits(k)).cloned()),
            None => out.extend(set.by_kid.values().filter(|k| fits(k)).cloned()),
        }
        out.extend(set.unkeyed.iter().filter(|k| fits(k)).cloned());
        out
    }

    /// Checks the library does not make, and the caller's identity.
    fn accept(&self, claims: Map<String, Value>, now: u64, generation: u64) -> Result<Verified, TokenError> {
        let exp = claims.get("exp").and_then(Value::as_f64).ok_or(TokenError::NoExpiry)? as u64;
        let leeway = self.config.leeway.as_secs();
        let iat = claims.get("iat").and_then(Value::as_f64).map(|f| f as u64);
        if iat.is_some_and(|iat| iat > now + leeway) {
            return Err(TokenError::NotYetValid);
        }
        if let Some(max) = self.config.max_lifetime {
            let iat = iat.ok_or(TokenError::Lifetime)?;
            if exp.saturating_sub(iat) > max.as_secs() {
                return Err(TokenError::Lifetime);
            }
        }
        let (consumer, groups) =
            super::identity_of(&claims, &self.config.consumer_claim, self.config.groups_claim.as_deref())
                .ok_or(TokenError::NoConsumer)?;
        let consumer_header = super::header_value(&consumer);
        Ok(Verified { claims: Arc::new(claims), consumer, consumer_header, groups, exp, generation })
    }
}

/// The claim checks of `config` for tokens signed with `alg`.
fn validation(config: &JwtProviderConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = config.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_issuer(&[&config.issuer]);
    let mut required = vec!["exp", "iss"];
    if config.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&config.audiences);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

fn classify(kind: &jsonwebtoken::errors::ErrorKind) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as E;
    match kind {
        E::InvalidSignature => TokenError::Signature,
        E::ExpiredSignature => TokenError::Expired,
        E::ImmatureSignature => TokenError::NotYetValid,
        E::InvalidIssuer => TokenError::Issuer,
        E::InvalidAudience => TokenError::Audience,
        E::MissingRequiredClaim(c) if c == "exp" => TokenError::NoExpiry,
        E::InvalidAlgorithm | E::InvalidAlgorithmName => TokenError::Algorithm,
        _ => TokenError::Malformed,
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A provider with fixed keys (an EC public key whose private half is
/// nowhere, and an HMAC secret nothing signs with), for the `jwt` fuzz
/// target and the replay of its corpus.
#[cfg(any(test, fuzzing))]
pub fn fuzz_provider() -> Arc<Provider> {
    let doc = r#"
[jwt_providers.fuzz]
issuer = "https://fuzz.test"
algorithms = ["ES256"]
keys = [{ kid = "ec", pem = """
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE/UgSLu9uirtNDx1fUXpz59Jl0mG4
giFk8dOK1pi9vgoCWpOteHGUyfoh9KE9JqWSWLWkUHXfNYtire7/fZ9+4w==
-----END PUBLIC KEY-----
""" }]
[jwt_providers.hmac]
issuer = "https://fuzz.test"
algorithms = ["HS256"]
keys = [{ secret = "c2VjcmV0LW5vYm9keS1zaWducy13aXRoLTAxMjM0NTY3ODk=" }]
"#;
    let checked = meridian_core::config::parse_document(doc, meridian_core::config::Format::Toml)
        .unwrap_or_else(|e| panic!("the fuzz document: {e}"))
        .into_inner();
    let (doc, values) = checked.into_parts();
    let name = "fuzz";
    let (cfg, v) = (&doc.jwt_providers[name], &values.jwt_providers[name]);
    let metrics = Arc::new(GatewayMetrics::new("fuzz", "fuzz"));
    Provider::new(name, cfg, v, metrics, CancellationToken::new()).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fuzz_corpus_admits_no_token() {
        let p = fuzz_provider();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/jwt");
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            if let Ok(token) = std::str::from_utf8(&bytes) {
                assert!(p.verify(token).await.is_err(), "{token:?}");
            }
        }
    }
}
