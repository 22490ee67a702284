//! meridian-region: what makes the gateway nodes of a region one cluster.
//! It stands on the data plane and core; nothing here is on a request's
//! way except the document it hands the data plane.
//!
//! # Layout
//!
//! - [`raft`]: the region's Raft group (openraft): durable log and snapshots,
//!   the replicated state machine (gateway document, history, VIP table,
//!   liveness), the authenticated transport, writes forwarded to the leader.
//! - [`vip`]: virtual IPs: lease engine, the agent that drives it, and the
//!   actuators that move addresses (netlink + gratuitous ARP, exec, none).
//! - [`serving`]: applied versus serving: compiles each applied document
//!   into the data plane, keeps the previous one when that fails here, and
//!   says so.
//! - [`metrics`]: Raft, VIP and report metrics, in the node's registry.
//! - [`publisher`]: the region's leader sends signed health reports to every
//!   global balancer.
//! - [`admin`]: the admin API (health, readiness, metrics, config, cluster,
//!   VIPs, upstreams).
//! - [`gateway`]: starts and stops a whole gateway node (data plane, region
//!   member, VIP agent, publisher, admin API).
#![deny(unsafe_code)]

pub mod admin;
pub mod gateway;
pub mod metrics;
pub mod publisher;
pub mod raft;
pub mod serving;
pub mod vip;
