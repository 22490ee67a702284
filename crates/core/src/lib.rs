//! meridian-core: the ground floor every other crate of meridian stands on.
//! It knows nothing of proxying, Raft, VIPs or DNS.
//!
//! # Layout
//!
//! - [`config`]: the node file and the gateway document (serde schema), the
//!   typed values their strings stand for, and `validate`, which names the
//!   key path of every broken rule.
//! - [`pattern`]: host and path patterns and path rewrites, parsed once from
//!   config and matched on every request.
//! - [`admin`]: the admin API's request and answer types, shared by the
//!   admin server and every client.
//! - [`report`]: the health report a region's leader sends every global
//!   balancer: format, HMAC signatures, replay protection.
//! - [`http_server`]: the one HTTP server helper of the admin API, the
//!   balancer API and the sample backend (header timeout, connection cap,
//!   accept backoff, drain), and the one JSON answer.
//! - [`template`]: `$(source.name)` templates of transforms, compiled once.
//! - [`apikey`]: API keys: generation, the peppered hash the document keeps.
//! - [`keys`]: the injective encoding of keys built from client input.
//! - [`metrics`]: the one way a Prometheus metric is built and registered.
//! - [`logging`]: the process's `tracing` subscriber (pretty or JSON).
//! - [`clock`]: monotonic and wall-clock milliseconds, the one source of
//!   time stamps.
#![deny(unsafe_code)]

pub mod admin;
pub mod apikey;
pub mod client;
pub mod clock;
pub mod config;
pub mod http_server;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod pattern;
pub mod report;
pub mod secret;
pub mod template;
