//! Fetching a JWK Set: one GET to the configured URL (never one a token
//! names), redirects not followed, the body capped, within a timeout, TLS
//! verified. Keys the gateway cannot use (encryption keys, unknown types)
//! are skipped one by one; a set without a single usable key is an error.

use std::time::Duration;

use http::Request;
use http_body_util::Full;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::DecodingKey;

use super::fetch::{exchange, FetchError};
use meridian_core::client::AdminClient;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("not a JWK Set: {0}")]
    Malformed(String),
    #[error("no usable key in the set ({skipped} skipped)")]
    NoKeys { skipped: usize },
}

/// A usable key of a fetched set.
pub struct FetchedKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// The JWK's own text, to tell a changed set from the same one.
    pub fingerprint: String,
}

#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// GET `uri` and parse the keys.
pub async fn fetch(
    client: &AdminClient,
    uri: &http::Uri,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Vec<FetchedKey>, JwksError> {
    let req = Request::get(uri.clone())
        .header(http::header::ACCEPT, "application/jwk-set+json, application/json")
        .body(Full::default())
        .map_err(|e| FetchError::Request(e.to_string()))?;
    parse(&exchange(client, req, timeout, max_bytes).await?)
}

/// The usable signature keys of a JWK Set document.
pub fn parse(body: &[u8]) -> Result<Vec<FetchedKey>, JwksError> {
    let raw: RawSet = serde_json::from_slice(body).map_err(|e| JwksError::Malformed(e.to_string()))?;
    let mut keys = Vec::with_capacity(raw.keys.len());
    let mut skipped = 0;
    for value in raw.keys {
        let usable = value.get("use").and_then(|u| u.as_str()).is_none_or(|u| u == "sig");
        let jwk = usable.then(|| serde_json::from_value::<Jwk>(value.clone()).ok()).flatten();
        match jwk.and_then(|j| DecodingKey::from_jwk(&j).ok().map(|k| (j.common.key_id.clone(), k))) {
            Some((kid, key)) => keys.push(FetchedKey { kid, key, fingerprint: value.to_string() }),
            None => skipped += 1,
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoKeys { skipped });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_skipped_and_an_empty_set_refused() {
        let set = r#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"a","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","kid":"enc","use":"enc","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"XYZ","kid":"odd"}
        ]}"#;
        let keys = parse(set.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert!(matches!(parse(br#"{"keys":[{"kty":"XYZ"}]}"#), Err(JwksError::NoKeys { skipped: 1 })));
        assert!(matches!(parse(b"[]"), Err(JwksError::Malformed(_))));
        assert!(matches!(parse(b"{\"keys\": 5}"), Err(JwksError::Malformed(_))));
    }

    #[test]
    fn the_fuzz_corpus_parses_or_is_refused() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/jwks");
        for entry in std::fs::read_dir(dir).expect("the corpus is in the repository") {
            let bytes = std::fs::read(entry.expect("a corpus entry").path()).expect("readable");
            let _ = parse(&bytes);
        }
    }
}
