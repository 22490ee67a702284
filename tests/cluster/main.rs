//! Region cluster tests: real members (Raft, admin API, data plane) in-process
//! on loopback, talking over real sockets.

#[path = "../support/mod.rs"]
mod support;

mod ctl;
mod harness;
mod history;
mod identity;
mod membership;
mod region;
mod reports;
mod security;
mod storage;
mod vips;
