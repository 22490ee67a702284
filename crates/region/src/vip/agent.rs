//! The VIP agent of a member: renews its lease through the log, feeds the
//! engines, executes their actions, and — on the leader — proposes moves.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::actuator::{Actuator, ActuatorError};
use super::engine::{Assigner, LeasePolicy, OwnerAction, OwnerEngine, RemoveReason, DRAIN_QUIET};
use crate::metrics::RegionMetrics;
use crate::raft::state::StateEvent;
use crate::raft::{Command, CommandResult, RegionNode};
use meridian_core::config::VipAddr;
use meridian_core::config::VipConfig;
use meridian_dataplane::proxy::AddressLoad;

/// What this member holds, for the admin API.
#[derive(Debug, Default)]
pub struct VipStatus {
    pub held: Mutex<BTreeSet<String>>,
    pub lease_valid: std::sync::atomic::AtomicBool,
}

impl VipStatus {
    pub fn held(&self) -> BTreeSet<String> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Actuator(#[from] ActuatorError),
    #[error("the region's state events are already taken")]
    Events,
}

pub fn policy(cfg: &VipConfig) -> LeasePolicy {
    LeasePolicy {
        lease: cfg.lease,
        renew_interval: cfg.renew_interval,
        drift: cfg.clock_drift,
        margin: cfg.margin,
        hold_down: cfg.hold_down,
        handoff_drain: cfg.handoff_drain,
    }
}

struct Agent {
    region: Arc<RegionNode>,
    cfg: VipConfig,
    vips: BTreeMap<String, VipAddr>,
    actuator: Arc<Actuator>,
    metrics: Arc<RegionMetrics>,
    status: Arc<VipStatus>,
    owner: OwnerEngine,
    assigner: Assigner,
    in_flight: Arc<Mutex<HashSet<(String, u64)>>>,
    last_register: Option<Instant>,
    announces: Vec<(VipAddr, u32, Instant)>,
    /// Requests in flight per local address (the data plane's count).
    load: Arc<AddressLoad>,
    /// Last refresh of the addresses' lifetimes.
    refreshed: Option<Instant>,
}

/// Start the agent. VIP addresses left on the interface by an earlier run
/// are removed first: this member holds nothing until the region grants it.
pub async fn start(
    region: Arc<RegionNode>,
    cfg: &VipConfig,
    load: Arc<AddressLoad>,
    shutdown: CancellationToken,
) -> Result<Arc<VipStatus>, AgentError> {
    let metrics = region.metrics().clone();
    let mut vips = BTreeMap::new();
    let mut preferred = BTreeMap::new();
    for a in &cfg.addresses {
        let v = a.address.clone();
        let key = v.to_string();
        if let Some(p) = a.preferred {
            preferred.insert(key.clone(), p);
        }
        vips.insert(key, v);
    }
    let actuator = Arc::new(Actuator::from_config(cfg)?);
    for v in vips.values() {
        if let Err(e) = actuator.remove(v).await {
            tracing::warn!(vip = %v, error = %e, "could not clear a VIP left from an earlier run");
        }
        metrics.vip_owned.with_label_values(&[&v.to_string()]).set(0);
    }
    let events = region.take_state_events().ok_or(AgentError::Events)?;
    let policy = policy(cfg);
    let status = Arc::new(VipStatus::default());
    let agent = Agent {
        owner: OwnerEngine::new(region.id, policy),
        assigner: Assigner::new(policy, Instant::now(), preferred),
        region,
        cfg: cfg.clone(),
        vips,
        actuator,
        metrics,
        status: status.clone(),
        in_flight: Arc::new(Mutex::new(HashSet::new())),
        last_register: None,
        announces: Vec::new(),
        load,
        refreshed: None,
    };
    tokio::spawn(agent.run(events, shutdown));
    Ok(status)
}

impl Agent {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<StateEvent>, shutdown: CancellationToken) {
        let (ack_tx, mut acks) = mpsc::unbounded_channel::<Instant>();
        let mut view = self.region.vip_view();
        let mut renew = tokio::time::interval(self.cfg.renew_interval);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let step_every = (self.cfg.renew_interval / 3).clamp(Duration::from_millis(10), Duration::from_millis(50));
        let mut step = tokio::time::interval(step_every);
        step.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = renew.tick() => self.renew(ack_tx.clone()),
                Some(sent_at) = acks.recv() => {
                    self.owner.renew_acked(sent_at);
                    self.step().await;
                    self.refresh().await;
                }
                Some(ev) = events.recv() => match ev {
                    StateEvent::Renewed(node) => self.assigner.renewal_seen(node, Instant::now()),
                },
                // A grant or a release was applied: act on it now, not at the next tick.
                Ok(()) = view.changed() => self.step().await,
                _ = step.tick() => self.step().await,
                // A handoff waiting for requests in flight looks again soon.
                _ = tokio::time::sleep(DRAIN_QUIET), if self.owner.draining() => self.step().await,
            }
        }
        // Stopping: give every address up so nothing stays behind.
        let held: Vec<String> = self.owner.held().iter().cloned().collect();
        for vip in held {
            if let Some(v) = self.vips.get(&vip) {
                let _ = self.actuator.remove(v).await;
                self.metrics.vip_owned.with_label_values(&[&vip]).set(0);
                tracing::info!(vip = %vip, "VIP released: member stopping");
            }
        }
    }

    /// VIP addresses expire by themselves this long after their last refresh.
    fn lifetime(&self) -> Option<Duration> {
        (!self.cfg.address_lifetime.is_zero()).then_some(self.cfg.address_lifetime)
    }

    /// Refresh the lifetime of every held address while the lease holds
    /// (at most every quarter lifetime): a process that stops renewing, or
    /// hangs, stops refreshing and its addresses leave the host by
    /// themselves.
    async fn refresh(&mut self) {
        let Some(lifetime) = self.lifetime() else { return };
        let now = Instant::now();
        if !self.owner.lease_valid(now) || self.refreshed.is_some_and(|t| now.duration_since(t) < lifetime / 4) {
            return;
        }
        self.refreshed = Some(now);
        for vip in self.owner.held().clone() {
            let Some(v) = self.vips.get(&vip) else { continue };
            if let Err(e) = self.actuator.add(v, Some(lifetime)).await {
                self.metrics.vip_actuator_errors.inc();
                tracing::warn!(vip = %vip, error = %e, "could not refresh a VIP's lifetime");
            }
        }
    }

    /// Propose a renewal; its commit extends the lease from the time it was sent.
    fn renew(&self, acks: mpsc::UnboundedSender<Instant>) {
        let region = self.region.clone();
        let lease = self.cfg.lease;
        let failures = self.metrics.vip_lease_renew_failures.clone();
        tokio::spawn(async move {
            let sent_at = Instant::now();
            let cmd = Command::Renew { node: region.id, healthy: true };
            match tokio::time::timeout(lease, region.write(cmd)).await {
                Ok(Ok(_)) => {
                    let _ = acks.send(sent_at);
                }
                Ok(Err(e)) => {
                    failures.inc();
                    tracing::debug!(error = %e, "lease renewal failed");
                }
                Err(_) => {
                    failures.inc();
                    tracing::debug!("lease renewal not committed within the lease");
                }
            }
        });
    }

    async fn step(&mut self) {
        let now = Instant::now();
        let view = self.region.vip_view().borrow().clone();
        let busy = |vip: &str| self.vips.get(vip).is_some_and(|v| self.load.busy(v.ip) > 0);
        let actions = self.owner.step(now, &view, &busy);
        for a in actions {
            self.act(a, now).await;
        }
        self.status.lease_valid.store(self.owner.lease_valid(now), std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut h) = self.status.held.lock() {
            *h = self.owner.held().clone();
        }
        if self.region.leader() == Some(self.region.id) {
            self.lead(now, &view);
        }
        self.announce_due(now).await;
    }

    async fn act(&mut self, action: OwnerAction, now: Instant) {
        match action {
            OwnerAction::Add { vip } => {
                let Some(v) = self.vips.get(&vip).cloned() else {
                    tracing::warn!(vip = %vip, "granted a VIP this node has no configuration for; ignoring it");
                    return;
                };
                match self.actuator.add(&v, self.lifetime()).await {
                    Ok(()) => {
                        self.metrics.vip_owned.with_label_values(&[&vip]).set(1);
                        tracing::info!(vip = %vip, node = self.region.id, "VIP acquired");
                        if self.cfg.announce_count > 0 {
                            self.announces.push((v, self.cfg.announce_count, now));
                        }
                    }
                    Err(e) => {
                        self.metrics.vip_actuator_errors.inc();
                        tracing::error!(vip = %vip, error = %e, "could not add the VIP address");
                    }
                }
            }
            OwnerAction::Remove { vip, why } => {
                if let Some(v) = self.vips.get(&vip) {
                    if let Err(e) = self.actuator.remove(v).await {
                        self.metrics.vip_actuator_errors.inc();
                        tracing::error!(vip = %vip, error = %e, "could not remove the VIP address");
                    }
                }
                self.announces.retain(|(v, _, _)| v.to_string() != vip);
                self.metrics.vip_owned.with_label_values(&[&vip]).set(0);
                if why == RemoveReason::LeaseLost {
                    self.metrics.vip_fencing.inc();
                    tracing::warn!(vip = %vip, node = self.region.id, "VIP released: lease not renewed (fenced off from the quorum)");
                } else {
                    tracing::info!(vip = %vip, node = self.region.id, reason = why.label(), "VIP released");
                }
            }
            OwnerAction::Drained { vip, waited, timed_out } => {
                self.metrics.vip_handoff_drain.observe(waited.as_secs_f64());
                if timed_out {
                    let busy = self.vips.get(&vip).map_or(0, |v| self.load.busy(v.ip));
                    self.metrics.vip_handoff_drain_timeouts.inc();
                    tracing::warn!(vip = %vip, waited_ms = waited.as_millis() as u64, busy, "VIP handed off with connections still busy (vip.handoff_drain ran out)");
                } else {
                    tracing::info!(vip = %vip, waited_ms = waited.as_millis() as u64, "VIP handoff waited for requests in flight");
                }
            }
            OwnerAction::ConfirmRelease { vip, epoch } => {
                self.propose(Command::Released { vip, epoch, node: self.region.id }, None);
            }
            OwnerAction::Reacquire { vip, epoch } => {
                let cmd = Command::AssignVip {
                    vip,
                    expected_epoch: epoch,
                    owner: Some(self.region.id),
                    reason: crate::raft::MoveReason::Reacquire,
                };
                self.propose(cmd, None);
            }
        }
    }

    /// Leader duties: every configured VIP has an entry; moves the plan asks for.
    fn lead(&mut self, now: Instant, view: &crate::raft::state::VipView) {
        let missing: Vec<String> = self.vips.keys().filter(|v| !view.vips.contains_key(*v)).cloned().collect();
        if !missing.is_empty() && self.last_register.is_none_or(|t| now.duration_since(t) > Duration::from_secs(1)) {
            self.last_register = Some(now);
            self.propose(Command::RegisterVips { vips: missing }, None);
        }
        for cmd in self.assigner.plan(now, view) {
            let key = match &cmd {
                Command::AssignVip { vip, expected_epoch, .. } | Command::Handoff { vip, expected_epoch, .. } => {
                    (vip.clone(), *expected_epoch)
                }
                _ => continue,
            };
            let fresh = self.in_flight.lock().map(|mut s| s.insert(key.clone())).unwrap_or(false);
            if fresh {
                self.propose(cmd, Some(key));
            }
        }
    }

    fn propose(&self, cmd: Command, key: Option<(String, u64)>) {
        let region = self.region.clone();
        let in_flight = self.in_flight.clone();
        let moves = self.metrics.vip_moves.clone();
        tokio::spawn(async move {
            let described = describe(&cmd);
            let result = region.write(cmd.clone()).await;
            match (&result, &cmd) {
                (Ok(CommandResult::Vip { epoch }), Command::AssignVip { vip, owner, reason, .. }) => {
                    moves.with_label_values(&[reason.label()]).inc();
                    tracing::info!(vip = %vip, owner = ?owner, epoch, reason = reason.label(), "VIP assigned");
                }
                (Ok(CommandResult::Vip { epoch }), Command::Handoff { vip, from, to, reason, .. }) => {
                    moves.with_label_values(&[reason.label()]).inc();
                    tracing::info!(vip = %vip, from, to, epoch, reason = reason.label(), "VIP handoff started");
                }
                (Ok(_), _) => {}
                (Err(e), _) => tracing::debug!(command = %described, error = %e, "VIP proposal not committed"),
            }
            if let Some(k) = key {
                if let Ok(mut s) = in_flight.lock() {
                    s.remove(&k);
                }
            }
        });
    }

    async fn announce_due(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (v, left, next) in &mut self.announces {
            if *next <= now && *left > 0 {
                due.push(v.clone());
                *left -= 1;
                *next = now + self.cfg.announce_interval;
            }
        }
        self.announces.retain(|(_, left, _)| *left > 0);
        for v in due {
            if let Err(e) = self.actuator.announce(&v).await {
                tracing::warn!(vip = %v, error = %e, "announcement failed");
            }
        }
    }
}

fn describe(cmd: &Command) -> String {
    match cmd {
        Command::AssignVip { vip, owner, .. } => format!("assign {vip} to {owner:?}"),
        Command::Handoff { vip, from, to, .. } => format!("hand {vip} from {from} to {to}"),
        Command::Released { vip, node, .. } => format!("{node} released {vip}"),
        Command::RegisterVips { vips } => format!("register {vips:?}"),
        other => format!("{other:?}"),
    }
}
