//! Virtual IPs that move between the members of a region without ever having
//! two owners: ownership is a lease granted through the region's log.
//!
//! - [`engine`]: the pure decisions (owner side and leader side).

pub mod engine;
