//! meridian: a multi-region, active-active API gateway cluster.
//!
//! # Layout
//!
//! - [`routing`]: the compiled route table (host, path, method, header
//!   matching; rewrites); knows nothing of HTTP proxying.
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
//! - [`tls`]: rustls server configuration with certificates chosen by SNI.
//! - [`proxy`]: the data plane: listeners, the per-request phases, upstream
//!   connection pools, retries, circuit breaking, and the one place where
//!   errors become HTTP responses.
//! - [`raft`]: the region's Raft group (openraft): durable log and snapshots,
//!   the replicated state machine (gateway document, history), the
//!   authenticated transport, writes forwarded to the leader.
//! - [`vip`]: virtual IPs: lease engine, the agent that drives it, and the
//!   actuators that move addresses (netlink + gratuitous ARP, exec, none).
//! - [`gslb`]: the DNS global balancer (hickory-server): health registry,
//!   steering, and the gateway-side report publisher.
//! - [`admin`]: the admin API (health, readiness, metrics, config, upstreams).
//! - [`ctl`]: `meridian ctl`, the operator CLI over the admin API.
//! - [`telemetry`]: logging setup and the Prometheus metrics of a node.
//! - [`netns`]: network-namespace labs for tests and drills (hosts on a
//!   bridge, partitions with nft, guaranteed cleanup).
//! - [`cluster`]: `meridian cluster up|down|status`: a topology file, the
//!   node and balancer files it implies, and the whole system started in
//!   namespaces (or on loopback).
//! - [`chaos`]: failover drills: a fault, client load through DNS and VIPs,
//!   measurements, bounds, JSON and HTML reports.
//! - [`backend`]: a small HTTP server used as a sample backend in demos and tests.
//! - [`gateway`]: starts and stops a whole gateway node (data plane + admin).
#![deny(unsafe_code)]

pub mod admin;
pub mod backend;
pub mod balance;
pub mod cache;
pub mod chaos;
pub mod cluster;
pub mod ctl;
pub mod gateway;
pub mod gslb;
pub mod health;
pub mod kv;
pub mod limit;
pub mod netns;
pub mod proxy;
pub mod raft;
pub mod routing;
pub mod telemetry;
pub mod tls;
pub mod vip;

/// The version string printed by `meridian version` and sent in `Via`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
