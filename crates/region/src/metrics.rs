//! The region layer's metrics: Raft, VIPs and health reports, registered in
//! the node's registry beside the data plane's, built the same way.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use meridian_core::metrics::{counter, counter_vec, gauge, gauge_vec, histogram};

pub struct RegionMetrics {
    pub raft_term: IntGauge,
    pub raft_is_leader: IntGauge,
    pub raft_leader_changes: IntCounter,
    pub raft_commit_index: IntGauge,
    pub raft_applied_index: IntGauge,
    pub raft_last_log_index: IntGauge,
    pub raft_apply_seconds: Histogram,
    pub raft_refused_peers: IntCounter,
    pub vip_owned: IntGaugeVec,
    pub vip_moves: IntCounterVec,
    pub vip_lease_renew_failures: IntCounter,
    pub vip_fencing: IntCounter,
    pub vip_handoff_drain: Histogram,
    pub vip_handoff_drain_timeouts: IntCounter,
    pub vip_actuator_errors: IntCounter,
    pub gslb_reports: IntCounterVec,
    /// The document version applied from the log; `meridian_config_version`
    /// is the one served. They differ while this node cannot compile the
    /// applied document.
    pub config_applied_version: IntGauge,
    /// Applied documents this node could not serve.
    pub config_serve_failures: IntCounter,
}

impl RegionMetrics {
    pub fn new(r: &Registry) -> Self {
        Self {
            raft_term: gauge(r, "raft_term", "Current Raft term of this member."),
            raft_is_leader: gauge(r, "raft_is_leader", "1 while this member leads its region."),
            raft_leader_changes: counter(r, "raft_leader_changes_total", "Leader changes seen by this member."),
            raft_commit_index: gauge(r, "raft_commit_index", "Last committed log index known here (-1: none)."),
            raft_applied_index: gauge(
                r,
                "raft_applied_index",
                "Last log index applied to the state machine (-1: none).",
            ),
            raft_last_log_index: gauge(r, "raft_last_log_index", "Last log index stored here (-1: none)."),
            raft_apply_seconds: histogram(
                r,
                "raft_apply_duration_seconds",
                "Time to apply a batch of committed entries.",
                &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
            ),
            raft_refused_peers: counter(
                r,
                "raft_refused_peers_total",
                "Raft connections refused for failed authentication.",
            ),
            vip_owned: gauge_vec(r, "vip_owned", "1 while this member holds the VIP.", &["vip"]),
            vip_moves: counter_vec(
                r,
                "vip_moves_total",
                "VIP ownership changes committed by this member as leader, by reason.",
                &["reason"],
            ),
            vip_lease_renew_failures: counter(
                r,
                "vip_lease_renew_failures_total",
                "Lease renewals not committed in time.",
            ),
            vip_fencing: counter(
                r,
                "vip_fencing_total",
                "VIPs dropped because the lease ran out (cut off from the quorum).",
            ),
            vip_handoff_drain: histogram(
                r,
                "vip_handoff_drain_seconds",
                "How long handed-off VIPs were kept for requests in flight.",
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
            ),
            vip_handoff_drain_timeouts: counter(
                r,
                "vip_handoff_drain_timeouts_total",
                "Handed-off VIPs let go with requests still in flight (vip.handoff_drain ran out).",
            ),
            vip_actuator_errors: counter(r, "vip_actuator_errors_total", "Failed address changes or announcements."),
            gslb_reports: counter_vec(
                r,
                "gslb_reports_total",
                "Health reports sent to balancers, by endpoint and result.",
                &["endpoint", "result"],
            ),
            config_applied_version: gauge(
                r,
                "config_applied_version",
                "Version of the gateway document applied from the region's log.",
            ),
            config_serve_failures: counter(
                r,
                "config_serve_failures_total",
                "Applied documents this node could not compile and serve (it kept the previous one).",
            ),
        }
    }
}
