//! Any bytes as a JWK Set document: parsed or refused, never a panic; every
//! key it yields is one a verifier can use.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = meridian_dataplane::identity::jwks::parse(data) {
        assert!(!keys.is_empty());
        for k in keys {
            assert!(!k.fingerprint.is_empty());
            assert!(k.kid.as_ref().is_none_or(|kid| data.len() >= kid.len()));
        }
    }
});
