//! Any text as a GraphQL query a client sends: measuring returns figures or
//! a typed refusal, never panics and never runs away (nesting is checked
//! before parsing; fragment expansion is bounded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_dataplane::transform::graphql::measure;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = measure(text) {
        assert!(m.depth <= text.len(), "{m:?}");
    }
});
