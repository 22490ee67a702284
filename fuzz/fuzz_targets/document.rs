//! Any gateway document, as JSON (what `PUT /config` and the region's log
//! carry) and as TOML: parsing and checking never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_core::config::{parse_document, Format};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_document(text, Format::Json);
        let _ = parse_document(text, Format::Toml);
    }
});
