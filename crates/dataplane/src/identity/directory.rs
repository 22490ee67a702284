//! The consumers of one document version, and their API keys by hash.

use std::collections::HashMap;
use std::sync::Arc;

use super::Credential;
use meridian_core::apikey::{same_hash, unhex32, Pepper};
use meridian_core::config::{ConsumerConfig, LimitConfig};

/// A configured consumer.
#[derive(Debug)]
pub struct Consumer {
    pub name: Arc<str>,
    /// `name` as the `X-Consumer-Name` value.
    pub header: http::HeaderValue,
    /// Shared by every caller it names (no copy per request).
    pub groups: Arc<[Arc<str>]>,
    /// Its own limits on routes that count by consumer (empty: the route's).
    pub limits: Vec<LimitConfig>,
}

/// Consumers by name, API keys by their peppered hash.
#[derive(Debug, Default)]
pub struct Directory {
    by_name: HashMap<Arc<str>, Arc<Consumer>>,
    by_hash: HashMap<[u8; 32], (Arc<Consumer>, Arc<Credential>)>,
    /// `san:<name>` / `subject:<dn>` → consumer and credential id.
    by_cert: HashMap<String, (Arc<Consumer>, Arc<Credential>)>,
    pepper: Option<Arc<Pepper>>,
}

impl Directory {
    pub fn new(consumers: &[ConsumerConfig], pepper: Option<Arc<Pepper>>) -> Self {
        let mut by_name = HashMap::with_capacity(consumers.len());
        let mut by_hash = HashMap::new();
        let mut by_cert = HashMap::new();
        for c in consumers {
            let consumer = Arc::new(Consumer {
                name: c.name.as_str().into(),
                header: super::header_value(&c.name),
                groups: c.groups.iter().map(|g| Arc::from(g.as_str())).collect(),
                limits: c.limits.clone(),
            });
            for k in &c.api_keys {
                // Validation checked the form of every hash.
                if let Some(h) = unhex32(&k.hash) {
                    by_hash.insert(h, (consumer.clone(), Credential::new(&k.id)));
                }
            }
            for k in &c.certificates {
                let key = match (&k.san, &k.subject) {
                    (Some(san), _) => format!("san:{san}"),
                    (None, Some(dn)) => format!("subject:{dn}"),
                    (None, None) => continue,
                };
                by_cert.insert(key, (consumer.clone(), Credential::new(&k.id)));
            }
            by_name.insert(consumer.name.clone(), consumer);
        }
        Self { by_name, by_hash, by_cert, pepper }
    }

    pub fn consumer(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether any API key is configured.
    pub fn has_keys(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// The consumer a verified client certificate names: by one of its
    /// subject alternative names, else by its whole subject DN.
    pub fn find_certificate(
        &self,
        cert: &crate::tls::client_auth::PeerCert,
    ) -> Option<&(Arc<Consumer>, Arc<Credential>)> {
        cert.sans
            .iter()
            .find_map(|san| self.by_cert.get(&format!("san:{san}")))
            .or_else(|| self.by_cert.get(&format!("subject:{}", cert.subject)))
    }

    /// The consumer and credential id of a presented key. The lookup is by
    /// the key's HMAC (so a lookup's timing tells nothing of stored keys),
    /// confirmed by a constant-time comparison.
    pub fn find_key(&self, key: &[u8]) -> Option<(&Arc<Consumer>, &Arc<Credential>)> {
        let pepper = self.pepper.as_ref()?;
        let h = pepper.hash(key);
        let (stored, (consumer, id)) = self.by_hash.get_key_value(&h)?;
        same_hash(stored, &h).then_some((consumer, id))
    }
}
