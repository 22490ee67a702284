//! The region's replicated state machine. Applying a command is a pure
//! function of the state and the command ([`apply_command`]), so every member
//! reaches the same state whatever binary version it runs: documents are
//! validated by whoever proposes them, never here. The applied document is
//! published on a `watch` ([`StateMachine::documents`]); the node's wiring
//! compiles it into the data plane, which this module does not know.

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::Database;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, RwLock};

use super::store::{load_snapshot, save_snapshot};
use super::{bincode_config, Command, CommandResult, NodeId, TypeConfig};
use meridian_core::admin::Revision;
use meridian_core::config::GatewayDocument;

/// Revisions kept in the history (oldest dropped first).
pub const HISTORY_LIMIT: usize = 10_000;

/// The gateway document being served by the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub version: u64,
    /// JSON text of the document.
    pub document: String,
}

/// The digest a [`Revision`] carries: xxh3 of the document text, hex.
pub fn document_digest(document: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(document.as_bytes()))
}

/// Who holds a VIP. Ownership only changes through the log, and the leader
/// only proposes a new owner once the old owner's lease must have run out
/// (or the old owner confirmed it let go), so there is one owner at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipRecord {
    pub owner: Option<NodeId>,
    /// Bumped on every change; commands name the epoch they were based on.
    pub epoch: u64,
    /// During a graceful move: the node giving the VIP up...
    pub releasing_from: Option<NodeId>,
    /// ...and the node that takes it once it has.
    pub next_owner: Option<NodeId>,
}

/// What the region knows about a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Renewals applied (liveness: members compare it over time).
    pub renewals: u64,
    pub healthy: bool,
    pub draining: bool,
}

/// Everything the region agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionState {
    pub config: Option<ConfigRecord>,
    pub history: VecDeque<Revision>,
    pub vips: BTreeMap<String, VipRecord>,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
}

impl RegionState {
    pub fn version(&self) -> u64 {
        self.config.as_ref().map_or(0, |c| c.version)
    }
}

/// Apply one command to the state. Deterministic: the same on every member.
pub fn apply_command(state: &mut RegionState, cmd: &Command, log_index: u64) -> CommandResult {
    match cmd {
        Command::PutConfig { expected_version, document } => {
            let current = state.version();
            if let Some(expected) = *expected_version {
                if expected != current {
                    return CommandResult::VersionConflict { expected, current };
                }
            }
            let version = current + 1;
            state.config = Some(ConfigRecord { version, document: document.clone() });
            state.history.push_back(Revision { version, log_index, digest: document_digest(document) });
            while state.history.len() > HISTORY_LIMIT {
                state.history.pop_front();
            }
            CommandResult::ConfigApplied { version }
        }
        Command::Renew { node, healthy } => {
            let n = state.nodes.entry(*node).or_default();
            n.renewals += 1;
            n.healthy = *healthy;
            CommandResult::None
        }
        Command::RegisterVips { vips } => {
            for v in vips {
                state.vips.entry(v.clone()).or_default();
            }
            CommandResult::None
        }
        Command::AssignVip { vip, expected_epoch, owner, .. } => match state.vips.get_mut(vip) {
            Some(r) if r.epoch == *expected_epoch => {
                r.owner = *owner;
                r.releasing_from = None;
                r.next_owner = None;
                r.epoch += 1;
                CommandResult::Vip { epoch: r.epoch }
            }
            _ => CommandResult::Stale,
        },
        Command::Handoff { vip, expected_epoch, from, to, .. } => match state.vips.get_mut(vip) {
            Some(r) if r.epoch == *expected_epoch && r.owner == Some(*from) && from != to => {
                r.owner = None;
                r.releasing_from = Some(*from);
                r.next_owner = Some(*to);
                r.epoch += 1;
                CommandResult::Vip { epoch: r.epoch }
            }
            _ => CommandResult::Stale,
        },
        Command::Released { vip, epoch, node } => match state.vips.get_mut(vip) {
            Some(r) if r.epoch == *epoch && r.releasing_from == Some(*node) => {
                r.owner = r.next_owner.take();
                r.releasing_from = None;
                r.epoch += 1;
                CommandResult::Vip { epoch: r.epoch }
            }
            _ => CommandResult::Stale,
        },
        Command::SetDrain { node, draining } => {
            state.nodes.entry(*node).or_default().draining = *draining;
            CommandResult::None
        }
    }
}

/// What a snapshot holds.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    state: RegionState,
}

#[derive(Default)]
struct Data {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    state: RegionState,
}

/// What the VIP agent of this member learns from applied entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateEvent {
    /// A renewal of `node` was applied here (the agent notes the local time).
    Renewed(NodeId),
}

/// The VIP table and member records, as of the last applied entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VipView {
    pub vips: BTreeMap<String, VipRecord>,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
}

/// Applied progress, for status and waiters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub index: Option<u64>,
    pub config_version: u64,
}

struct Shared {
    data: RwLock<Data>,
    db: Arc<Database>,
    snapshot_seq: AtomicU64,
    /// The applied document, for whoever serves it.
    document: watch::Sender<Option<ConfigRecord>>,
    applied: watch::Sender<Applied>,
    vip_view: watch::Sender<VipView>,
    events: tokio::sync::mpsc::UnboundedSender<StateEvent>,
    /// Taken once by the VIP agent.
    events_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<StateEvent>>>,
    apply_seconds: Option<prometheus::Histogram>,
}

/// The state machine of a member. Clones share state.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

impl StateMachine {
    /// Restore from the persisted snapshot (the log after it is re-applied by
    /// Raft from the committed index) and publish its document.
    pub fn open(db: Arc<Database>, apply_seconds: Option<prometheus::Histogram>) -> Result<Self, StorageError<NodeId>> {
        let mut data = Data::default();
        if let Some(snap) = load_snapshot(&db)? {
            let payload: SnapshotPayload = decode_payload(&snap.data, &snap.meta)?;
            data = Data {
                last_applied: payload.last_applied,
                last_membership: payload.last_membership,
                state: payload.state,
            };
        }
        let (applied, _) =
            watch::channel(Applied { index: data.last_applied.map(|l| l.index), config_version: data.state.version() });
        let (document, _) = watch::channel(data.state.config.clone());
        let (vip_view, _) = watch::channel(VipView { vips: data.state.vips.clone(), nodes: data.state.nodes.clone() });
        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let sm = Self {
            shared: Arc::new(Shared {
                snapshot_seq: AtomicU64::new(0),
                db,
                document,
                applied,
                vip_view,
                events,
                events_rx: std::sync::Mutex::new(Some(events_rx)),
                apply_seconds,
                data: RwLock::new(data),
            }),
        };
        Ok(sm)
    }

    /// The applied gateway document (version and JSON text), as it changes.
    pub fn documents(&self) -> watch::Receiver<Option<ConfigRecord>> {
        self.shared.document.subscribe()
    }

    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.shared.applied.subscribe()
    }

    pub fn vip_view(&self) -> watch::Receiver<VipView> {
        self.shared.vip_view.subscribe()
    }

    /// The stream of [`StateEvent`]s (once: the VIP agent owns it).
    pub fn take_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<StateEvent>> {
        self.shared.events_rx.lock().ok()?.take()
    }

    /// A copy of the agreed state.
    pub async fn state(&self) -> RegionState {
        self.shared.data.read().await.state.clone()
    }

    /// Publish `config` as the applied document when its version is new.
    fn publish_document(&self, config: Option<ConfigRecord>) {
        let Some(c) = config else { return };
        self.shared.document.send_if_modified(|current| {
            let new = current.as_ref().is_none_or(|d| d.version != c.version);
            if new {
                *current = Some(c);
            }
            new
        });
    }

    fn publish(&self, data: &Data, vips_changed: bool) {
        self.shared
            .applied
            .send_replace(Applied { index: data.last_applied.map(|l| l.index), config_version: data.state.version() });
        if vips_changed {
            self.shared
                .vip_view
                .send_replace(VipView { vips: data.state.vips.clone(), nodes: data.state.nodes.clone() });
        }
    }
}

fn decode_payload(
    bytes: &[u8],
    meta: &SnapshotMeta<NodeId, BasicNode>,
) -> Result<SnapshotPayload, StorageError<NodeId>> {
    bincode::serde::decode_from_slice(bytes, bincode_config())
        .map(|(p, _)| p)
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e).into())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (bytes, last_applied, last_membership) = {
            let d = self.shared.data.read().await;
            let payload = SnapshotPayload {
                last_applied: d.last_applied,
                last_membership: d.last_membership.clone(),
                state: d.state.clone(),
            };
            let bytes = bincode::serde::encode_to_vec(&payload, bincode_config())
                .map_err(|e| StorageIOError::read_state_machine(&e))?;
            (bytes, d.last_applied, d.last_membership.clone())
        };
        let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id };
        save_snapshot(&self.shared.db, &meta, bytes.clone()).await?;
        tracing::debug!(snapshot = %meta.snapshot_id, bytes = bytes.len(), "snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let d = self.shared.data.read().await;
        Ok((d.last_applied, d.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut results = Vec::new();
        let mut changed = None;
        let mut vips_changed = false;
        {
            let mut d = self.shared.data.write().await;
            for entry in entries {
                d.last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => CommandResult::None,
                    EntryPayload::Membership(m) => {
                        d.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        CommandResult::None
                    }
                    EntryPayload::Normal(cmd) => {
                        let r = apply_command(&mut d.state, &cmd, entry.log_id.index);
                        match (&cmd, &r) {
                            (_, CommandResult::ConfigApplied { .. }) => changed = d.state.config.clone(),
                            (Command::Renew { node, .. }, _) => {
                                let _ = self.shared.events.send(StateEvent::Renewed(*node));
                                // Health or a first renewal changes the view; counting renewals does not.
                                vips_changed |= d.state.nodes.get(node).is_some_and(|n| n.renewals == 1);
                            }
                            (Command::PutConfig { .. }, _) => {}
                            _ => vips_changed = true,
                        }
                        r
                    }
                };
                results.push(result);
            }
            self.publish(&d, vips_changed);
        }
        self.publish_document(changed);
        if let Some(h) = &self.shared.apply_seconds {
            h.observe(started.elapsed().as_secs_f64());
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let payload = decode_payload(&bytes, meta)?;
        save_snapshot(&self.shared.db, meta, bytes).await?;
        let config = payload.state.config.clone();
        {
            let mut d = self.shared.data.write().await;
            d.state = payload.state;
            d.last_applied = meta.last_log_id;
            d.last_membership = meta.last_membership.clone();
            self.publish(&d, true);
        }
        tracing::info!(snapshot = %meta.snapshot_id, version = config.as_ref().map_or(0, |c| c.version), "snapshot installed");
        self.publish_document(config);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(load_snapshot(&self.shared.db)?.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

/// The document of a state, parsed (for `GET /config` on a member).
pub fn document_of(state: &RegionState) -> Option<GatewayDocument> {
    let c = state.config.as_ref()?;
    let mut doc: GatewayDocument = serde_json::from_str(&c.document).ok()?;
    doc.version = c.version;
    Some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(route: &str) -> String {
        serde_json::json!({
            "upstreams": { "u": { "targets": [{ "address": "127.0.0.1:1" }] } },
            "routes": [{ "name": route, "upstream": "u" }],
        })
        .to_string()
    }

    #[test]
    fn put_config_is_compare_and_set() {
        let mut s = RegionState::default();
        let put = |v: Option<u64>, d: String| Command::PutConfig { expected_version: v, document: d };
        assert_eq!(apply_command(&mut s, &put(Some(0), doc("a")), 1), CommandResult::ConfigApplied { version: 1 });
        assert_eq!(apply_command(&mut s, &put(None, doc("b")), 2), CommandResult::ConfigApplied { version: 2 });
        assert_eq!(
            apply_command(&mut s, &put(Some(1), doc("c")), 3),
            CommandResult::VersionConflict { expected: 1, current: 2 }
        );
        assert_eq!(s.version(), 2);
        assert_eq!(s.history.iter().map(|r| r.version).collect::<Vec<_>>(), vec![1, 2]);
        // Applying does not judge the document: proposers validate, so every
        // member, whatever its version, reaches the same state.
        let unknown_to_this_version = serde_json::json!({ "routes": [], "added_later": true }).to_string();
        assert_eq!(
            apply_command(&mut s, &put(None, unknown_to_this_version.clone()), 4),
            CommandResult::ConfigApplied { version: 3 }
        );
        assert_eq!(s.config.as_ref().map(|c| c.document.as_str()), Some(unknown_to_this_version.as_str()));
        assert_eq!(s.history.back().map(|r| r.digest.clone()), Some(document_digest(&unknown_to_this_version)));
    }
}
