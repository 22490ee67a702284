//! Converters between the shapes clients and backends speak, free of the
//! proxy: XML → JSON ([`xml`]). The policies that apply them to requests
//! and answers live in `proxy::policy`.

pub mod xml;
