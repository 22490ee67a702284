//! meridian: a multi-region, active-active API gateway cluster. The data
//! plane is `meridian-dataplane`, config and patterns `meridian-core`, the
//! region (Raft, VIPs, admin API, a whole node) `meridian-region`, the DNS
//! global balancer `meridian-gslb`.
//!
//! # Layout
//!
//! - [`ctl`]: `meridian ctl`, the operator CLI over the admin API.
//! - [`netns`]: network-namespace labs for tests and drills (hosts on a
//!   bridge, partitions with nft, guaranteed cleanup).
//! - [`cluster`]: `meridian cluster up|down|status`: a topology file, the
//!   node and balancer files it implies, and the whole system started in
//!   namespaces (or on loopback).
//! - [`chaos`]: failover drills: a fault, client load through DNS and VIPs,
//!   measurements, bounds, JSON and HTML reports.
//! - [`backend`]: a small HTTP server used as a sample backend in demos and tests.
#![deny(unsafe_code)]

pub mod backend;
pub mod chaos;
pub mod cluster;
pub mod ctl;
pub mod netns;

/// The version string `meridian version` prints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
