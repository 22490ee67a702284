//! Any text as an `Origin` header: normalisation is a fixed point, and what
//! it yields is `scheme://host[:port]` with nothing else in it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_core::config::normalise_origin;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(n) = normalise_origin(text) {
        assert_eq!(normalise_origin(&n).as_deref(), Some(n.as_str()), "not a fixed point: {text:?}");
        let rest = n.split_once("://").expect("a scheme").1;
        assert!(!rest.contains('/') && !rest.contains('@') && !rest.contains('?'), "{n}");
        assert_eq!(n, n.to_ascii_lowercase());
    }
});
