//! Any two sequences of key parts: equal cache keys mean equal parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_core::keys::check_injective;

fuzz_target!(|data: &[u8]| {
    if let Err(why) = check_injective(data) {
        panic!("{why}");
    }
});
