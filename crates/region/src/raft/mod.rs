//! The region's Raft group (openraft): every gateway node of a region is a
//! member; the replicated state machine holds the gateway document (versioned,
//! compare-and-set), its revision history, and grows to hold VIP leases and
//! node liveness.
//!
//! - [`store`]: the durable log, vote and snapshot store (redb).
//! - [`state`]: the state machine and what applying a command does.
//! - [`transport`]: authenticated, length-prefixed bincode frames over TCP.
//! - [`node`]: a running member: start, bootstrap, writes (forwarded to the
//!   leader), membership changes, status and metrics.

// openraft's storage traits fix the (large) error types these modules return.
#![allow(clippy::result_large_err)]

pub mod node;
pub mod state;
pub mod store;
pub mod transport;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use node::{NodeStatus, RegionNode, Serving, WriteError};
pub use state::document_digest;

pub type NodeId = u64;

/// A change proposed to the region. Documents travel as JSON text: the log
/// stays independent of how the document type is laid out in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Replace the gateway document. With `expected_version`, only if the
    /// current version is that one.
    PutConfig { expected_version: Option<u64>, document: String },
    /// A member is alive: renews the leases of the VIPs it owns.
    Renew { node: NodeId, healthy: bool },
    /// Make sure these VIPs have an entry in the table.
    RegisterVips { vips: Vec<String> },
    /// Give a VIP whose owner's lease must have expired (or that has none) to
    /// `owner`. Only if the VIP is still at `expected_epoch`.
    AssignVip { vip: String, expected_epoch: u64, owner: Option<NodeId>, reason: MoveReason },
    /// Start a graceful move: `from` gives the VIP up, then `to` takes it.
    Handoff { vip: String, expected_epoch: u64, from: NodeId, to: NodeId, reason: MoveReason },
    /// `node` has removed the VIP it was asked to give up (at `epoch`).
    Released { vip: String, epoch: u64, node: NodeId },
    /// Drain a member (its VIPs move away, it gets none) or take it back.
    SetDrain { node: NodeId, draining: bool },
}

/// Why a VIP changed hands: a log line and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveReason {
    Initial,
    OwnerLeaseExpired,
    Preempt,
    Drain,
    Unhealthy,
    Admin,
    /// An owner whose lease lapsed (restart, lost quorum) asks for its VIP again.
    Reacquire,
}

impl MoveReason {
    pub fn label(self) -> &'static str {
        match self {
            MoveReason::Initial => "initial",
            MoveReason::OwnerLeaseExpired => "owner_lease_expired",
            MoveReason::Preempt => "preempt",
            MoveReason::Drain => "drain",
            MoveReason::Unhealthy => "unhealthy",
            MoveReason::Admin => "admin",
            MoveReason::Reacquire => "reacquire",
        }
    }
}

/// What applying a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Log entries that are not commands (blank, membership).
    #[default]
    None,
    ConfigApplied {
        version: u64,
    },
    VersionConflict {
        expected: u64,
        current: u64,
    },
    /// Every broken rule, as (key path, message). No longer produced:
    /// members validate before proposing and apply never refuses a
    /// document. Kept in its place so the variants after it keep their
    /// encoding across versions.
    Invalid {
        errors: Vec<(String, String)>,
    },
    /// A VIP command took effect; the VIP is now at `epoch`.
    Vip {
        epoch: u64,
    },
    /// A VIP command was based on an old view and did nothing.
    Stale,
}

openraft::declare_raft_types!(
    /// The region group's types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;

/// bincode settings shared by the log, snapshots and the wire.
pub(crate) fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}
