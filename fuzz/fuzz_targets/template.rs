//! Any text as a transform template: compiling never panics, and a compiled
//! template renders with every value present and names the first missing one.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use meridian_core::template::{Scope, Template, Values, Var};

struct All;
impl Values for All {
    fn value(&self, _: &Var) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed("v"))
    }
}

struct None_;
impl Values for None_ {
    fn value(&self, _: &Var) -> Option<Cow<'_, str>> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let captures: Vec<Box<str>> = vec!["id".into(), "rest".into()];
    if let Ok(t) = Template::parse(text, Scope { captures: &captures, body: true }) {
        let rendered = t.render(&All).expect("every value present");
        assert!(rendered.len() <= text.len() + t.variables().count());
        match t.variables().next() {
            Some(first) => assert_eq!(t.render(&None_).unwrap_err(), first),
            None => assert_eq!(t.literal(), Some(rendered.as_str())),
        }
    }
});
