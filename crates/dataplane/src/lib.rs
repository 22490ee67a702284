//! meridian-dataplane: everything a request meets on its way through a
//! gateway node, from accept to the access log. It stands on
//! `meridian-core` alone and knows nothing of Raft, VIPs or DNS: the region
//! hands it gateway documents, it hands back health and metrics.
//!
//! # Layout
//!
//! - [`routing`]: the compiled route table (host, path, method, header
//!   matching); knows nothing of HTTP proxying.
//! - [`health`]: per-target health state, active HTTP checks and passive
//!   outlier ejection.
//! - [`balance`]: upstream pools and the target-picking algorithms (round robin,
//!   smooth weighted round robin, least connections, peak-EWMA P2C, Maglev
//!   consistent hashing, sticky cookies).
//! - [`kv`]: the region's Redis (single, Sentinel, Cluster) with short
//!   timeouts and automatic fallback and recovery.
//! - [`limit`]: rate limiting (GCRA, sliding window; local, or the region's
//!   budget in Redis, exact or batched).
//! - [`cache`]: the response cache (L1 in process, L2 in the region's Redis,
//!   request coalescing, purge by generation and pub/sub).
//! - [`identity`]: consumers and API keys, JWT providers with their key
//!   sets, the authenticated caller.
//! - [`transform`]: converters between message shapes (XML → JSON, ...),
//!   with caps on what untrusted documents may cost.
//! - [`tls`]: rustls server configuration with certificates chosen by SNI,
//!   and the check that a node's certificate files load.
//! - [`proxy`]: listeners, the per-request phases, upstream connection
//!   pools, retries, circuit breaking, and the one place where errors become
//!   HTTP responses.
//! - [`telemetry`]: the Prometheus metrics of a node.
#![deny(unsafe_code)]

pub mod balance;
pub mod cache;
pub mod health;
pub mod identity;
pub mod kv;
pub mod limit;
pub mod proxy;
pub mod routing;
pub mod telemetry;
pub mod tls;
pub mod transform;
