//! A running member of a region group: Raft, its storage and transport, the
//! write path (forwarded to the leader, answered after commit), membership
//! changes, status and metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::state::{ConfigRecord, RegionState, StateMachine};
use super::store::{self, LogStore};
use super::transport::{
    self, CallError, ForwardError, ForwardOp, Network, RpcHandler, RpcRequest, RpcResponse, Secret,
};
use super::{Command, CommandResult, NodeId, Raft};
use crate::metrics::RegionMetrics;
use meridian_core::config::ClusterConfig;

pub use meridian_core::admin::NodeStatus;

/// What this node's data plane serves against what the region applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Serving {
    /// The last applied version the data plane was given (compiled or not).
    pub applied: u64,
    /// The version being served.
    pub serving: u64,
    /// Why `applied` is not served, when it is not.
    pub error: Option<String>,
}

/// Why a write was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no leader could be reached within {0:?}")]
    NoLeader(Duration),
    #[error("the write was not committed within {0:?}: no quorum")]
    NoQuorum(Duration),
    #[error("the leader stopped answering; the write may or may not have been applied")]
    Unknown,
    #[error("{0}")]
    Refused(String),
}

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::OpenError),
    #[error("cluster.secret: {0}")]
    Secret(String),
    #[error("raft storage: {0}")]
    Storage(#[from] openraft::StorageError<NodeId>),
    #[error("raft settings: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("raft: {0}")]
    Fatal(#[from] openraft::error::Fatal<NodeId>),
    #[error("cluster.listen: cannot bind {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

pub struct RegionNode {
    pub id: NodeId,
    pub name: String,
    pub region: String,
    pub raft: Raft,
    /// The Raft address others use.
    pub address: String,
    /// Where the Raft listener is bound (differs from `address` with port 0).
    pub bound: SocketAddr,
    sm: StateMachine,
    committed: Arc<AtomicU64>,
    secret: Secret,
    write_timeout: Duration,
    shutdown: CancellationToken,
    metrics: Arc<RegionMetrics>,
    serving: tokio::sync::watch::Sender<Serving>,
}

/// The secret from `cluster.secret_file` or the environment variable `cluster.secret_env`.
pub fn load_secret(cfg: &ClusterConfig) -> Result<Secret, StartError> {
    meridian_core::secret::read_secret(cfg.secret_file.as_deref(), &cfg.secret_env)
        .map(Secret::new)
        .map_err(|e| StartError::Secret(e.to_string()))
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "Leader",
        ServerState::Follower => "Follower",
        ServerState::Candidate => "Candidate",
        ServerState::Learner => "Learner",
        ServerState::Shutdown => "Shutdown",
    }
}

impl RegionNode {
    /// Open storage, restore the state machine (which publishes its
    /// document), start Raft and its listener, and bootstrap a new region
    /// when configured to. `bootstrap_doc` becomes version 1 of a new region.
    pub async fn start(
        cfg: &ClusterConfig,
        name: &str,
        region: &str,
        metrics: Arc<RegionMetrics>,
        bootstrap_doc: Option<String>,
    ) -> Result<Arc<Self>, StartError> {
        let secret = load_secret(cfg)?;
        let db = store::open(&cfg.data_dir)?;
        let log = LogStore::new(db.clone());
        let committed = log.committed_handle();
        let sm = StateMachine::open(db, Some(metrics.raft_apply_seconds.clone()))?;
        let listener =
            TcpListener::bind(cfg.listen).await.map_err(|source| StartError::Bind { address: cfg.listen, source })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind { address: cfg.listen, source })?;
        let address = cfg.advertise.clone().unwrap_or_else(|| bound.to_string());
        let raft_config = openraft::Config {
            cluster_name: region.to_string(),
            heartbeat_interval: cfg.raft.heartbeat_interval.as_millis() as u64,
            election_timeout_min: cfg.raft.election_timeout_min.as_millis() as u64,
            election_timeout_max: cfg.raft.election_timeout_max.as_millis() as u64,
            install_snapshot_timeout: 2_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.raft.snapshot_every),
            max_in_snapshot_log_to_keep: cfg.raft.keep_logs,
            ..Default::default()
        }
        .validate()?;
        let network = Network { secret: secret.clone(), my_id: cfg.node_id, backoff: cfg.raft.heartbeat_interval * 2 };
        let raft = Raft::new(cfg.node_id, Arc::new(raft_config), network, log, sm.clone()).await?;
        let node = Arc::new(Self {
            id: cfg.node_id,
            name: name.to_string(),
            region: region.to_string(),
            raft,
            address,
            bound,
            sm,
            committed,
            secret: secret.clone(),
            write_timeout: cfg.write_timeout,
            shutdown: CancellationToken::new(),
            metrics,
            serving: tokio::sync::watch::channel(Serving::default()).0,
        });
        tokio::spawn(transport::serve(listener, node.clone(), secret, node.shutdown.clone()));
        tokio::spawn(watch_metrics(node.clone()));
        if cfg.bootstrap {
            node.bootstrap(cfg, bootstrap_doc).await?;
        }
        tracing::info!(node_id = node.id, region = %node.region, raft = %node.address, "region member started");
        Ok(node)
    }

    /// First start of a new region: this node initialises the group with the
    /// configured members. Idempotent: a node that already has state skips it.
    async fn bootstrap(self: &Arc<Self>, cfg: &ClusterConfig, doc: Option<String>) -> Result<(), StartError> {
        let initialized = self.raft.is_initialized().await?;
        if !initialized {
            let members: BTreeMap<NodeId, BasicNode> =
                cfg.members.iter().map(|m| (m.id, BasicNode::new(m.address.clone()))).collect();
            match self.raft.initialize(members).await {
                Ok(()) => tracing::info!(members = cfg.members.len(), "region group initialised"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(StartError::Bootstrap(e.to_string())),
            }
        }
        if let Some(document) = doc {
            // The first document of the region: compare-and-set against
            // version 0, so a restart or a second bootstrapping node changes nothing.
            let node = self.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline && !node.shutdown.is_cancelled() {
                    if node.sm.applied().borrow().config_version > 0 {
                        return;
                    }
                    let cmd = Command::PutConfig { expected_version: Some(0), document: document.clone() };
                    match node.submit(ForwardOp::Write(cmd)).await {
                        Ok(CommandResult::ConfigApplied { version }) => {
                            tracing::info!(version, "initial gateway document committed");
                            return;
                        }
                        Ok(CommandResult::VersionConflict { .. }) => return,
                        Ok(other) => {
                            tracing::error!(result = ?other, "initial gateway document refused");
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "initial document not written yet");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
        }
        Ok(())
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    fn member_address(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership().get_node(&id).map(|n| n.addr.clone())
    }

    /// Do `op` on this node, which must be the leader.
    async fn execute_local(&self, op: ForwardOp) -> Result<CommandResult, ForwardError> {
        let timeout = self.write_timeout;
        let no_quorum = ForwardError::NoQuorum { timeout_ms: timeout.as_millis() as u64 };
        let map_err = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                ForwardError::NotLeader { leader: f.leader_id }
            }
            other => ForwardError::Refused(other.to_string()),
        };
        match op {
            ForwardOp::Write(cmd) => match tokio::time::timeout(timeout, self.raft.client_write(cmd)).await {
                Err(_) => Err(no_quorum),
                Ok(Ok(resp)) => Ok(resp.data),
                Ok(Err(e)) => Err(map_err(e)),
            },
            ForwardOp::AddMember { id, address } => {
                // A learner first (it catches up without counting in the quorum), then a voter.
                let learner = self.raft.add_learner(id, BasicNode::new(address.clone()), true);
                match tokio::time::timeout(timeout * 10, learner).await {
                    Err(_) => return Err(no_quorum),
                    Ok(Err(e)) => return Err(map_err(e)),
                    Ok(Ok(_)) => {}
                }
                let mut voters = self.voters();
                voters.insert(id);
                match tokio::time::timeout(timeout, self.raft.change_membership(voters, false)).await {
                    Err(_) => Err(no_quorum),
                    Ok(Err(e)) => Err(map_err(e)),
                    Ok(Ok(_)) => {
                        tracing::info!(member = id, %address, "member added as a voter");
                        Ok(CommandResult::None)
                    }
                }
            }
            ForwardOp::RemoveMember { id } => {
                let mut voters = self.voters();
                if !voters.remove(&id) {
                    return Err(ForwardError::Refused(format!("node {id} is not a voter")));
                }
                match tokio::time::timeout(timeout, self.raft.change_membership(voters, false)).await {
                    Err(_) => Err(no_quorum),
                    Ok(Err(e)) => Err(map_err(e)),
                    Ok(Ok(_)) => {
                        tracing::info!(member = id, "member removed");
                        Ok(CommandResult::None)
                    }
                }
            }
        }
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// Add a member (as a learner, then a voter), through the leader.
    pub async fn add_member(&self, id: NodeId, address: String) -> Result<CommandResult, WriteError> {
        self.submit(ForwardOp::AddMember { id, address }).await
    }

    /// Remove a voter, through the leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<CommandResult, WriteError> {
        self.submit(ForwardOp::RemoveMember { id }).await
    }

    /// Send `op` to the leader (or do it here when this node leads) and wait
    /// for the commit. Retries while the group has no known leader.
    pub async fn submit(&self, op: ForwardOp) -> Result<CommandResult, WriteError> {
        let deadline = Instant::now() + self.write_timeout;
        loop {
            let attempt = match self.leader() {
                Some(l) if l == self.id => self.execute_local(op.clone()).await,
                Some(l) => match self.member_address(l) {
                    Some(addr) => {
                        let req = RpcRequest::Forward(op.clone());
                        match transport::call_once(&addr, &self.secret, self.id, &req, self.write_timeout * 2).await {
                            Ok(RpcResponse::Forward(r)) => r,
                            Ok(_) => Err(ForwardError::Refused("unexpected answer from the leader".into())),
                            Err(CallError::Connect(_)) => Err(ForwardError::NotLeader { leader: None }),
                            Err(CallError::Exchange(e)) => {
                                tracing::warn!(leader = l, error = %e, "forwarded write: no answer from the leader");
                                return Err(WriteError::Unknown);
                            }
                        }
                    }
                    None => Err(ForwardError::NotLeader { leader: None }),
                },
                None => Err(ForwardError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(r) => return Ok(r),
                Err(ForwardError::NoQuorum { .. }) => return Err(WriteError::NoQuorum(self.write_timeout)),
                Err(ForwardError::Refused(msg)) => return Err(WriteError::Refused(msg)),
                Err(ForwardError::NotLeader { .. }) => {
                    if Instant::now() >= deadline {
                        return Err(WriteError::NoLeader(self.write_timeout));
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
        }
    }

    /// Propose a command (see [`RegionNode::submit`]).
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, WriteError> {
        self.submit(ForwardOp::Write(cmd)).await
    }

    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let applied = *self.sm.applied().borrow();
        let committed = self.committed.load(Ordering::Relaxed);
        NodeStatus {
            id: self.id,
            name: self.name.clone(),
            region: self.region.clone(),
            address: self.address.clone(),
            role: role(m.state).to_string(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed_index: (committed != u64::MAX).then_some(committed),
            applied_index: applied.index,
            config_version: applied.config_version,
            serving_version: self.serving.borrow().serving,
            serving_error: self.serving.borrow().error.clone(),
        }
    }

    /// Every member's status (asked over the Raft transport); `None` for
    /// members that did not answer in time.
    pub async fn members(&self) -> Vec<(NodeId, String, bool, Option<NodeStatus>)> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        let nodes: Vec<(NodeId, String)> = m.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
        let mut out = Vec::new();
        let asks = nodes.iter().map(|(id, addr)| {
            let (id, addr) = (*id, addr.clone());
            async move {
                if id == self.id {
                    return Some(self.status());
                }
                match transport::call_once(
                    &addr,
                    &self.secret,
                    self.id,
                    &RpcRequest::Status,
                    Duration::from_millis(500),
                )
                .await
                {
                    Ok(RpcResponse::Status(s)) => Some(s),
                    _ => None,
                }
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        for ((id, addr), status) in nodes.into_iter().zip(answers) {
            out.push((id, addr, voters.contains(&id), status));
        }
        out
    }

    /// Applied index and document version of this member, as they change.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<super::state::Applied> {
        self.sm.applied()
    }

    /// The applied gateway document, as it changes: what this node should serve.
    pub fn documents(&self) -> tokio::sync::watch::Receiver<Option<ConfigRecord>> {
        self.sm.documents()
    }

    /// What this node serves once its data plane has been given `version`
    /// (compiled or not), or what it serves after `within`.
    pub async fn wait_served(&self, version: u64, within: Duration) -> Serving {
        let mut rx = self.serving.subscribe();
        let _ = tokio::time::timeout(within, rx.wait_for(|s| s.applied >= version)).await;
        let now = rx.borrow().clone();
        now
    }

    /// This member's Raft, VIP and report metrics.
    pub fn metrics(&self) -> &Arc<RegionMetrics> {
        &self.metrics
    }

    /// Where this node's data plane reports what it serves.
    pub fn serving(&self) -> &tokio::sync::watch::Sender<Serving> {
        &self.serving
    }

    /// The VIP table and member records, as they change.
    pub fn vip_view(&self) -> tokio::sync::watch::Receiver<super::state::VipView> {
        self.sm.vip_view()
    }

    /// Renewals applied here (taken once, by the VIP agent).
    pub fn take_state_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<super::state::StateEvent>> {
        self.sm.take_events()
    }

    pub async fn state(&self) -> RegionState {
        self.sm.state().await
    }

    /// Stop Raft and the listener. The data directory keeps everything.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
    }
}

impl RpcHandler for RegionNode {
    async fn handle(&self, req: RpcRequest) -> RpcResponse {
        match req {
            RpcRequest::Append(r) => RpcResponse::Append(self.raft.append_entries(r).await),
            RpcRequest::Vote(r) => RpcResponse::Vote(self.raft.vote(r).await),
            RpcRequest::Snapshot(r) => RpcResponse::Snapshot(self.raft.install_snapshot(r).await),
            RpcRequest::Forward(op) => {
                let leader = self.leader();
                if leader != Some(self.id) {
                    return RpcResponse::Forward(Err(ForwardError::NotLeader { leader }));
                }
                RpcResponse::Forward(self.execute_local(op).await)
            }
            RpcRequest::Status => RpcResponse::Status(self.status()),
        }
    }

    fn refused(&self, peer: SocketAddr, why: &std::io::Error) {
        self.metrics.raft_refused_peers.inc();
        tracing::warn!(%peer, reason = %why, "raft peer refused");
    }
}

/// Mirror Raft's metrics into Prometheus and log leadership changes.
async fn watch_metrics(node: Arc<RegionNode>) {
    let mut rx = node.raft.metrics();
    let mut applied = node.sm.applied();
    let mut leader: Option<NodeId> = None;
    let m = &node.metrics;
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
            r = applied.changed() => if r.is_err() { return },
        }
        let snapshot = rx.borrow().clone();
        m.raft_term.set(snapshot.current_term as i64);
        m.raft_last_log_index.set(snapshot.last_log_index.map_or(-1, |i| i as i64));
        m.raft_is_leader.set(i64::from(snapshot.state == ServerState::Leader));
        let committed = node.committed.load(Ordering::Relaxed);
        m.raft_commit_index.set(if committed == u64::MAX { -1 } else { committed as i64 });
        let a = *applied.borrow();
        m.raft_applied_index.set(a.index.map_or(-1, |i| i as i64));
        if snapshot.current_leader != leader {
            if leader.is_some() || snapshot.current_leader.is_some() {
                m.raft_leader_changes.inc();
                tracing::info!(
                    node_id = node.id,
                    term = snapshot.current_term,
                    leader = ?snapshot.current_leader,
                    previous = ?leader,
                    "raft leader changed"
                );
            }
            leader = snapshot.current_leader;
        }
    }
}
