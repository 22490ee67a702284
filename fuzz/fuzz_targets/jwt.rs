//! Any bytes as a bearer token against a provider with RSA, EC and HMAC
//! keys: verification never panics and never admits a token (nothing here
//! can sign with the provider's keys).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use meridian_dataplane::identity::jwt::Provider;

fn provider() -> &'static (tokio::runtime::Runtime, Arc<Provider>) {
    static P: OnceLock<(tokio::runtime::Runtime, Arc<Provider>)> = OnceLock::new();
    P.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let p = rt.block_on(async { meridian_dataplane::identity::jwt::fuzz_provider() });
        // The runtime stays, for the provider's verifications.
        (rt, p)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let (rt, p) = provider();
    let verdict = rt.block_on(p.verify(token));
    assert!(verdict.is_err(), "an unsigned token was admitted: {token:?}");
});
