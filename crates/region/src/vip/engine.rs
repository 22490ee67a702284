//! VIP ownership decisions, as pure state machines fed with events and a
//! clock; the agent turns their actions into network changes and proposals.
//!
//! The safety rule. A member keeps a VIP only while its lease is fresh: its
//! last acknowledged renewal was *sent* less than `lease × (1 − drift) −
//! margin` ago. The leader gives a VIP away only when it has not *seen* the
//! owner's renewal applied for `lease × (1 + drift) + margin`. A renewal is
//! seen after it was sent, and clocks run at rates within `drift` of each
//! other, so the owner has let go at least `2 × (lease × drift + margin)`
//! before anyone else may take the VIP — also when the owner is cut off and
//! cannot hear about it. A member whose lease lapsed (restart, lost quorum)
//! does not trust grants it saw before the lapse: it asks for them again
//! through the log (compare-and-set on the VIP's epoch), which cannot race a
//! takeover.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::raft::state::VipView;
use crate::raft::{Command, MoveReason, NodeId};

/// Timing of leases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeasePolicy {
    pub lease: Duration,
    pub renew_interval: Duration,
    /// Largest relative clock-rate difference between members.
    pub drift: f64,
    /// Extra safety for scheduling and delivery delays.
    pub margin: Duration,
    /// How long a preferred owner must be healthy before it takes its VIP back.
    pub hold_down: Duration,
    /// How long a member handing a VIP off waits for requests in flight on it.
    pub handoff_drain: Duration,
}

impl LeasePolicy {
    /// How long an owner may hold its VIPs after sending a renewal that was acknowledged.
    pub fn owner_hold(&self) -> Duration {
        self.lease.mul_f64(1.0 - self.drift).saturating_sub(self.margin)
    }

    /// How long the leader waits after last seeing an owner's renewal before giving its VIPs away.
    pub fn takeover_after(&self) -> Duration {
        self.lease.mul_f64(1.0 + self.drift) + self.margin
    }

    /// A member counts as alive while its renewals keep arriving within this.
    pub fn alive_window(&self) -> Duration {
        (self.renew_interval * 3).min(self.takeover_after())
    }
}

/// What the owner side asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerAction {
    /// Put the address on the interface (and announce it).
    Add { vip: String },
    /// Take the address off.
    Remove { vip: String, why: RemoveReason },
    /// Propose: this member has let go of a VIP it was asked to hand off.
    ConfirmRelease { vip: String, epoch: u64 },
    /// Propose: this member owns the VIP in the table but its lease lapsed since; ask again.
    Reacquire { vip: String, epoch: u64 },
    /// A VIP being handed off was kept until its requests in flight were
    /// done (`timed_out`: until `handoff_drain` ran out); `Remove` follows.
    Drained { vip: String, waited: Duration, timed_out: bool },
}

/// A handoff waits until no request was in flight on the VIP at two looks
/// this far apart; the second look catches a connection that was still
/// queued for accept at the first.
pub const DRAIN_QUIET: Duration = Duration::from_millis(5);

/// A VIP this member was asked to hand off and still holds.
#[derive(Debug, Clone, Copy)]
struct Drain {
    since: Instant,
    quiet_since: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// The table names another owner (or none).
    NotOwner,
    /// Asked to hand the VIP to another member.
    Handoff,
    /// The lease ran out without a renewal: cut off from the quorum (fencing).
    LeaseLost,
}

impl RemoveReason {
    pub fn label(self) -> &'static str {
        match self {
            RemoveReason::NotOwner => "not_owner",
            RemoveReason::Handoff => "handoff",
            RemoveReason::LeaseLost => "lease_lost",
        }
    }
}

/// Which VIPs this member holds. One per member.
#[derive(Debug)]
pub struct OwnerEngine {
    me: NodeId,
    policy: LeasePolicy,
    held: BTreeSet<String>,
    lease_until: Option<Instant>,
    /// Start of the current stretch of unbroken lease.
    valid_since: Option<Instant>,
    /// When each (VIP, epoch) was first seen here.
    first_seen: BTreeMap<String, (u64, Instant)>,
    /// Proposals already made, per VIP and epoch (not repeated every tick).
    proposed: BTreeMap<String, u64>,
    /// Handoffs waiting for requests in flight.
    draining: BTreeMap<String, Drain>,
}

impl OwnerEngine {
    pub fn new(me: NodeId, policy: LeasePolicy) -> Self {
        Self {
            me,
            policy,
            held: BTreeSet::new(),
            lease_until: None,
            valid_since: None,
            first_seen: BTreeMap::new(),
            proposed: BTreeMap::new(),
            draining: BTreeMap::new(),
        }
    }

    /// Some handoff waits for requests in flight: look again soon.
    pub fn draining(&self) -> bool {
        !self.draining.is_empty()
    }

    pub fn held(&self) -> &BTreeSet<String> {
        &self.held
    }

    pub fn lease_valid(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|u| now < u)
    }

    /// A renewal sent at `sent_at` was committed.
    pub fn renew_acked(&mut self, sent_at: Instant) {
        let until = sent_at + self.policy.owner_hold();
        if self.lease_until.is_none_or(|u| until > u) {
            self.lease_until = Some(until);
        }
    }

    /// Reconcile with the table at `now`; `busy(vip)` tells whether a
    /// request is in flight on a VIP (a handoff lets it finish first).
    pub fn step(&mut self, now: Instant, view: &VipView, busy: &dyn Fn(&str) -> bool) -> Vec<OwnerAction> {
        let valid = self.lease_valid(now);
        if !valid {
            self.valid_since = None;
        } else if self.valid_since.is_none() {
            self.valid_since = Some(now);
        }
        let mut actions = Vec::new();
        let mut want = BTreeSet::new();
        for (vip, rec) in &view.vips {
            let seen = match self.first_seen.get(vip) {
                Some((epoch, at)) if *epoch == rec.epoch => *at,
                _ => {
                    self.first_seen.insert(vip.clone(), (rec.epoch, now));
                    now
                }
            };
            if rec.owner == Some(self.me) && valid {
                let granted_in_this_lease = self.valid_since.is_some_and(|since| seen >= since);
                if granted_in_this_lease {
                    want.insert(vip.clone());
                } else if self.proposed.get(vip) != Some(&rec.epoch) {
                    self.proposed.insert(vip.clone(), rec.epoch);
                    actions.push(OwnerAction::Reacquire { vip: vip.clone(), epoch: rec.epoch });
                }
            }
            if rec.releasing_from == Some(self.me)
                && !self.held.contains(vip)
                && self.proposed.get(vip) != Some(&rec.epoch)
            {
                // Confirmed only once the address is gone (below, or on an earlier step).
                if !want.contains(vip) {
                    self.proposed.insert(vip.clone(), rec.epoch);
                    actions.push(OwnerAction::ConfirmRelease { vip: vip.clone(), epoch: rec.epoch });
                }
            }
        }
        let drop: Vec<String> = self.held.difference(&want).cloned().collect();
        self.draining.retain(|vip, _| drop.contains(vip));
        for vip in drop {
            let rec = view.vips.get(&vip);
            let why = match rec {
                Some(r) if r.owner == Some(self.me) && !valid => RemoveReason::LeaseLost,
                Some(r) if r.releasing_from == Some(self.me) => RemoveReason::Handoff,
                _ => RemoveReason::NotOwner,
            };
            // A handoff keeps the address (the new owner waits for our
            // release) while requests are in flight, within the drain time
            // and never past the lease.
            if why == RemoveReason::Handoff && valid {
                match self.drain(&vip, now, busy) {
                    None => continue,
                    Some(done) => actions.extend(done),
                }
            }
            self.draining.remove(&vip);
            self.held.remove(&vip);
            actions.push(OwnerAction::Remove { vip: vip.clone(), why });
            if let Some(r) = rec.filter(|r| r.releasing_from == Some(self.me)) {
                self.proposed.insert(vip.clone(), r.epoch);
                actions.push(OwnerAction::ConfirmRelease { vip, epoch: r.epoch });
            }
        }
        for vip in want {
            if self.held.insert(vip.clone()) {
                actions.push(OwnerAction::Add { vip });
            }
        }
        actions
    }

    /// `None` while the handoff of `vip` waits; then what to report, if it waited.
    fn drain(&mut self, vip: &str, now: Instant, busy: &dyn Fn(&str) -> bool) -> Option<Option<OwnerAction>> {
        let limit = self.policy.handoff_drain;
        let d = self.draining.entry(vip.to_string()).or_insert(Drain { since: now, quiet_since: None });
        let waited = now.duration_since(d.since);
        let report =
            |timed_out| (!waited.is_zero()).then(|| OwnerAction::Drained { vip: vip.to_string(), waited, timed_out });
        if waited >= limit {
            return Some(report(!limit.is_zero()));
        }
        if busy(vip) {
            d.quiet_since = None;
            return None;
        }
        match d.quiet_since {
            Some(q) if now.duration_since(q) >= DRAIN_QUIET => Some(report(false)),
            Some(_) => None,
            None => {
                d.quiet_since = Some(now);
                None
            }
        }
    }
}

/// The leader's side: who should own each VIP. Every member keeps one, fed
/// with the renewals it sees applied, so a new leader starts informed.
#[derive(Debug)]
pub struct Assigner {
    policy: LeasePolicy,
    /// Members never seen are treated as seen at this time (a restarted leader waits).
    started: Instant,
    seen: BTreeMap<NodeId, Instant>,
    alive_since: BTreeMap<NodeId, Instant>,
    /// VIP → preferred owner.
    preferred: BTreeMap<String, NodeId>,
    /// VIP → (epoch, when this member first saw it): a VIP that just moved
    /// (an admin move, a takeover) is not pulled back before the hold-down.
    changed: BTreeMap<String, (u64, Instant)>,
}

impl Assigner {
    pub fn new(policy: LeasePolicy, now: Instant, preferred: BTreeMap<String, NodeId>) -> Self {
        Self {
            policy,
            started: now,
            seen: BTreeMap::new(),
            alive_since: BTreeMap::new(),
            preferred,
            changed: BTreeMap::new(),
        }
    }

    /// A renewal of `node` was applied on this member at `now`.
    pub fn renewal_seen(&mut self, node: NodeId, now: Instant) {
        let fresh = self.seen.get(&node).is_some_and(|t| now.duration_since(*t) < self.policy.alive_window());
        if !fresh {
            self.alive_since.insert(node, now);
        }
        self.seen.insert(node, now);
    }

    fn alive(&self, now: Instant, view: &VipView, n: NodeId) -> bool {
        let fresh = self.seen.get(&n).is_some_and(|t| now.duration_since(*t) < self.policy.alive_window());
        let rec = view.nodes.get(&n);
        fresh && rec.is_some_and(|r| r.healthy && !r.draining)
    }

    fn expired(&self, now: Instant, n: NodeId) -> bool {
        let last = self.seen.get(&n).copied().unwrap_or(self.started).max(self.started);
        now.duration_since(last) >= self.policy.takeover_after()
    }

    fn candidate(&self, now: Instant, view: &VipView, vip: &str, exclude: Option<NodeId>) -> Option<NodeId> {
        if let Some(p) = self.preferred.get(vip) {
            if Some(*p) != exclude && self.alive(now, view, *p) {
                return Some(*p);
            }
        }
        let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
        for r in view.vips.values() {
            for n in [r.owner, r.next_owner].into_iter().flatten() {
                *load.entry(n).or_default() += 1;
            }
        }
        view.nodes
            .keys()
            .copied()
            .filter(|n| Some(*n) != exclude && self.alive(now, view, *n))
            .min_by_key(|n| (load.get(n).copied().unwrap_or(0), *n))
    }

    /// The commands the leader should propose now.
    pub fn plan(&mut self, now: Instant, view: &VipView) -> Vec<Command> {
        for (vip, rec) in &view.vips {
            if self.changed.get(vip).is_none_or(|(e, _)| *e != rec.epoch) {
                self.changed.insert(vip.clone(), (rec.epoch, now));
            }
        }
        let mut out = Vec::new();
        for (vip, rec) in &view.vips {
            let epoch = rec.epoch;
            if let Some(from) = rec.releasing_from {
                // A handoff in progress: if the releasing member vanished, its
                // lease settles it; otherwise wait for its confirmation.
                if self.expired(now, from) {
                    let to = rec
                        .next_owner
                        .filter(|n| self.alive(now, view, *n))
                        .or_else(|| self.candidate(now, view, vip, Some(from)));
                    out.push(Command::AssignVip {
                        vip: vip.clone(),
                        expected_epoch: epoch,
                        owner: to,
                        reason: MoveReason::OwnerLeaseExpired,
                    });
                }
                continue;
            }
            match rec.owner {
                None => {
                    if let Some(c) = self.candidate(now, view, vip, None) {
                        out.push(Command::AssignVip {
                            vip: vip.clone(),
                            expected_epoch: epoch,
                            owner: Some(c),
                            reason: MoveReason::Initial,
                        });
                    }
                }
                Some(o) if self.expired(now, o) => {
                    if let Some(c) = self.candidate(now, view, vip, Some(o)) {
                        out.push(Command::AssignVip {
                            vip: vip.clone(),
                            expected_epoch: epoch,
                            owner: Some(c),
                            reason: MoveReason::OwnerLeaseExpired,
                        });
                    }
                }
                Some(o) => {
                    let rec_o = view.nodes.get(&o);
                    let reason = match rec_o {
                        Some(r) if r.draining => Some(MoveReason::Drain),
                        Some(r) if !r.healthy => Some(MoveReason::Unhealthy),
                        _ => None,
                    };
                    if let Some(reason) = reason {
                        if let Some(c) = self.candidate(now, view, vip, Some(o)) {
                            out.push(Command::Handoff {
                                vip: vip.clone(),
                                expected_epoch: epoch,
                                from: o,
                                to: c,
                                reason,
                            });
                        }
                        continue;
                    }
                    if let Some(p) = self.preferred.get(vip).copied() {
                        let hold = self.policy.hold_down;
                        let settled = self.alive_since.get(&p).is_some_and(|s| now.duration_since(*s) >= hold);
                        let quiet = self.changed.get(vip).is_some_and(|(_, at)| now.duration_since(*at) >= hold);
                        if p != o && self.alive(now, view, p) && settled && quiet && self.alive(now, view, o) {
                            out.push(Command::Handoff {
                                vip: vip.clone(),
                                expected_epoch: epoch,
                                from: o,
                                to: p,
                                reason: MoveReason::Preempt,
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "engine_test.rs"]
mod tests;
