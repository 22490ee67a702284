//! meridian-lab: the whole system on one machine, for demos, drills and
//! tests. Nothing in a gateway or balancer needs it; the `meridian` binary
//! carries it behind the default-on `lab` feature.
//!
//! # Layout
//!
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
pub mod netns;
