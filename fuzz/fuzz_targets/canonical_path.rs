//! Any request path: canonicalising never panics, and what comes out is a
//! fixed point with no dot segments, under every listener policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_core::pattern::canonical::check_canonical;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        if let Err(why) = check_canonical(path) {
            panic!("{path:?}: {why}");
        }
    }
});
