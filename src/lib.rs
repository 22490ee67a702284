//! meridian: a multi-region, active-active API gateway cluster. The data
//! plane is `meridian-dataplane`, config and patterns `meridian-core`.
//!
//! # Layout
//!
//! - [`raft`]: the region's Raft group (openraft): durable log and snapshots,
//!   the replicated state machine (gateway document, history), the
//!   authenticated transport, writes forwarded to the leader.
//! - [`vip`]: virtual IPs: lease engine, the agent that drives it, and the
//!   actuators that move addresses (netlink + gratuitous ARP, exec, none).
//! - [`gslb`]: the DNS global balancer (hickory-server): health registry,
//!   steering, and the gateway-side report publisher.
//! - [`admin`]: the admin API (health, readiness, metrics, config, upstreams).
//! - [`ctl`]: `meridian ctl`, the operator CLI over the admin API.
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
pub mod chaos;
pub mod cluster;
pub mod ctl;
pub mod gateway;
pub mod gslb;
pub mod netns;
pub mod raft;
pub mod vip;

/// The version string printed by `meridian version` and sent in `Via`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
