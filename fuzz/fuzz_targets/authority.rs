//! Any Host value: the authority check never panics, and what it accepts
//! carries nothing a cache key or a log line should not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_core::pattern::authority::check_authority;

fuzz_target!(|data: &[u8]| {
    if let Ok(host) = std::str::from_utf8(data) {
        if check_authority(host).is_ok() {
            assert!(host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b)), "{host:?}");
        }
    }
});
