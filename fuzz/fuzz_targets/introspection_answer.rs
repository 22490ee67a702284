//! Any bytes as an introspection endpoint's answer: judged or refused, never
//! a panic; only `"active": true` with a consumer is ever active.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meridian_dataplane::identity::introspect::{Introspected, Introspector};

fuzz_target!(|data: &[u8]| {
    static I: OnceLock<std::sync::Arc<Introspector>> = OnceLock::new();
    let i = I.get_or_init(meridian_dataplane::identity::introspect::fuzz_introspector);
    if let Ok(Introspected::Active { consumer, .. }) = i.interpret(data) {
        let v: serde_json::Value = serde_json::from_slice(data).expect("an active answer is JSON");
        assert_eq!(v["active"], serde_json::Value::Bool(true));
        assert_eq!(v["sub"].as_str(), Some(&*consumer));
    }
});
