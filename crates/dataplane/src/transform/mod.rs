//! Converters between the shapes clients and backends speak, free of the
//! proxy: XML → JSON ([`xml`]), SOAP envelopes and faults ([`soap`]),
//! checks on untrusted JSON ([`json`]). The policies that apply them to
//! requests and answers live in `proxy::policy`.

pub mod aggregate;
pub mod graphql;
pub mod json;
pub mod soap;
pub mod xml;

/// `s` cut to at most `max` bytes on a character boundary, with `…` when
/// cut: messages that quote untrusted input stay short.
pub fn shorten(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}
