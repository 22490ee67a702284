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

pub use node::{NodeStatus, RegionNode, WriteError};

pub type NodeId = u64;

/// A change proposed to the region. Documents travel as JSON text: the log
/// stays independent of how the document type is laid out in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Replace the gateway document. With `expected_version`, only if the
    /// current version is that one.
    PutConfig { expected_version: Option<u64>, document: String },
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
    /// Every broken rule, as (key path, message).
    Invalid {
        errors: Vec<(String, String)>,
    },
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
