//! Converters between the shapes clients and backends speak, free of the
//! proxy: XML → JSON ([`xml`]), SOAP envelopes and faults ([`soap`]),
//! checks on untrusted JSON ([`json`]). The policies that apply them to
//! requests and answers live in `proxy::policy`.

pub mod aggregate;
pub mod graphql;
pub mod json;
pub mod soap;
pub mod xml;
