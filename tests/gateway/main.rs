//! Data-plane integration tests: a real gateway in-process on 127.0.0.1:0 in
//! front of real sample backends, driven over real sockets.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod aggregate;
mod balancing;
mod cache_keys;
mod client_address;
mod config_samples;
mod convert;
mod cors;
mod errors;
mod graphql;
mod health;
mod identity;
mod introspection;
mod jwt;
mod limits;
mod mtls;
mod paths;
mod protocols;
mod reload;
mod routing;
mod soap;
mod tls;
mod transform;
mod validation;
