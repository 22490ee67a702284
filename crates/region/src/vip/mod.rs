//! Virtual IPs that move between the members of a region without ever having
//! two owners: ownership is a lease granted through the region's log.
//!
//! - [`engine`]: the pure decisions (owner side and leader side).
//! - [`agent`]: runs the engines on a member: renewals, ticks, proposals,
//!   and the actuator calls they lead to.
//! - [`actuator`]: moves addresses (netlink, an operator's command, nothing).
//! - [`arp`]: gratuitous ARP and unsolicited neighbour advertisements.
//!
//! Renewals are ordinary log entries (a few per second per member); they stay
//! bounded because the log is compacted into snapshots (`cluster.raft.snapshot_every`).
//! A lease carried on Raft heartbeats would save those writes but tie VIP
//! safety to the leader's lease arithmetic; log entries keep the rule simple
//! and the same whoever leads.

pub mod actuator;
pub mod agent;
pub mod arp;
pub mod engine;
pub mod guard;
