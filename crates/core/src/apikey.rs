//! API keys: how they are made and how the document knows them. A key is
//! shown once, when issued; documents store `HMAC-SHA256(pepper, key)` and a
//! short display prefix. The pepper is one operator secret shared by every
//! node of every region (`[identity]` in the node file), so a key issued once
//! works wherever its consumer is written.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::{random_bytes, SecretError};

/// Characters of a key kept in the document to recognise it by.
pub const PREFIX_LEN: usize = 8;

/// The shared secret API keys are hashed with.
#[derive(Clone)]
pub struct Pepper(Hmac<Sha256>);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper([redacted])")
    }
}

impl Pepper {
    /// From the secret's bytes (at least 16, checked where it is read).
    pub fn new(secret: &[u8]) -> Self {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        Self(mac)
    }

    /// `HMAC-SHA256(pepper, key)`.
    pub fn hash(&self, key: &[u8]) -> [u8; 32] {
        let mut m = self.0.clone();
        m.update(key);
        m.finalize().into_bytes().into()
    }

    /// The hash as the document stores it.
    pub fn hash_hex(&self, key: &[u8]) -> String {
        hex(&self.hash(key))
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored hash back to bytes; `None` unless 64 hex digits.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equal in time independent of where they differ.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// A new key: `mk_` and 32 random bytes in URL-safe base64 (46 characters).
pub fn generate_key() -> Result<String, SecretError> {
    let bytes: [u8; 32] = random_bytes()?;
    Ok(format!("mk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// A new credential id: `key-` and 8 random hex digits.
pub fn generate_id() -> Result<String, SecretError> {
    let bytes: [u8; 4] = random_bytes()?;
    Ok(format!("key-{}", hex(&bytes)))
}

/// What the document keeps to recognise a key by.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(PREFIX_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_by_pepper_and_round_trip_through_hex() {
        let a = Pepper::new(b"0123456789abcdef0123");
        let b = Pepper::new(b"another pepper of 32 bytes......");
        let key = generate_key().unwrap();
        assert_eq!(key.len(), 46);
        assert_ne!(a.hash(key.as_bytes()), b.hash(key.as_bytes()));
        let stored = a.hash_hex(key.as_bytes());
        assert!(same_hash(&unhex32(&stored).unwrap(), &a.hash(key.as_bytes())));
        assert_eq!(unhex32("zz"), None);
        assert_ne!(generate_key().unwrap(), key);
        assert_eq!(display_prefix(&key).len(), PREFIX_LEN);
        assert!(!format!("{a:?}").contains("0123"));
    }
}
