//! Any bytes as an upstream's XML answer: conversion returns JSON or a
//! typed refusal within its caps, never panics; what converts serialises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_dataplane::transform::xml::{to_json, XmlRules};

fuzz_target!(|data: &[u8]| {
    let rules = XmlRules {
        always_array: ["a.b".to_string(), "r.item".to_string()].into(),
        max_depth: 16,
        max_elements: 256,
        max_attributes: 8,
        ..XmlRules::default()
    };
    if let Ok(v) = to_json(data, &rules) {
        assert!(v.as_object().is_some_and(|m| m.len() == 1), "one root: {v}");
        serde_json::to_vec(&v).expect("serialises");
    }
});
