//! Who is calling: the consumers of a document and their API keys
//! ([`directory`]), JWT issuers with their key sets ([`jwt`]), and the
//! [`Caller`] a request is found to be. The policies that use them live in
//! `proxy::policy` (`auth`, `access`).

pub mod directory;
pub mod fetch;
pub mod introspect;
pub mod jwks;
pub mod jwt;

use std::sync::Arc;

pub use directory::{Consumer, Directory};

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The consumer's name (a configured consumer, or the value of a JWT
    /// provider's consumer claim).
    pub consumer: Arc<str>,
    /// The configured consumer, when there is one (its groups and limits).
    pub known: Option<Arc<Consumer>>,
    /// Groups of the consumer plus those a token grants.
    pub groups: Arc<[Arc<str>]>,
    /// The consumer's name as the `X-Consumer-Name` value.
    pub consumer_header: http::HeaderValue,
    /// Which credential proved it: an API key's id, `jwt:<provider>`, `anonymous`.
    pub credential: Arc<Credential>,
    /// A verified token's claims.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

/// A credential's id, with its `X-Credential-Id` value made once.
#[derive(Debug)]
pub struct Credential {
    pub id: Arc<str>,
    pub header: http::HeaderValue,
}

impl Credential {
    pub fn new(id: &str) -> Arc<Self> {
        Arc::new(Self { id: id.into(), header: header_value(id) })
    }
}

/// `text` as a header value (names are checked to be visible ASCII; `-` otherwise).
pub fn header_value(text: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(text).unwrap_or_else(|_| http::HeaderValue::from_static("-"))
}

impl Caller {
    /// A configured consumer, proven by `credential`.
    pub fn of(consumer: &Arc<Consumer>, credential: &Arc<Credential>) -> Self {
        Self {
            consumer: consumer.name.clone(),
            consumer_header: consumer.header.clone(),
            known: Some(consumer.clone()),
            groups: consumer.groups.clone(),
            credential: credential.clone(),
            claims: None,
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| &**g == group)
    }

    /// Granted scopes: the `scope` claim (space-delimited) or an array `scope`/`scp`.
    pub fn has_scope(&self, scope: &str) -> bool {
        let Some(claims) = &self.claims else { return false };
        ["scope", "scp"].iter().filter_map(|k| claims.get(*k)).any(|v| match v {
            serde_json::Value::String(s) => s.split(' ').any(|s| s == scope),
            serde_json::Value::Array(a) => a.iter().any(|s| s.as_str() == Some(scope)),
            _ => false,
        })
    }

    /// A claim equals one of `accepted` (a string, number or boolean claim,
    /// or an array containing one).
    pub fn claim_is_one_of(&self, claim: &str, accepted: &[String]) -> bool {
        let Some(v) = self.claims.as_ref().and_then(|c| c.get(claim)) else { return false };
        let matches = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => accepted.iter().any(|a| a == s),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                let text = v.to_string();
                accepted.contains(&text)
            }
            _ => false,
        };
        match v {
            serde_json::Value::Array(items) => items.iter().any(matches),
            v => matches(v),
        }
    }
}

/// The consumer a set of verified claims names (`consumer_claim`: a string
/// of visible ASCII, at most 256 bytes, since it becomes a header value and
/// a log field) and the groups `groups_claim` grants (a space-delimited
/// string or an array).
pub fn identity_of(
    claims: &serde_json::Map<String, serde_json::Value>,
    consumer_claim: &str,
    groups_claim: Option<&str>,
) -> Option<(Arc<str>, Vec<Arc<str>>)> {
    use serde_json::Value;
    let consumer = match claims.get(consumer_claim) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Arc::<str>::from(s.as_str())
        }
        _ => return None,
    };
    let groups = match groups_claim.and_then(|c| claims.get(c)) {
        Some(Value::String(s)) => s.split(' ').filter(|g| !g.is_empty()).map(Arc::from).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(Arc::from).collect(),
        _ => Vec::new(),
    };
    Some((consumer, groups))
}
