//! The admin API's types: what the admin server answers, and what every
//! client (`meridian ctl`, `cluster status`, the drills) reads. One
//! definition on both sides, so renaming a field breaks the build, not an
//! operator's script. Every answer is JSON.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::config::ConfigErrors;

/// What a region member reports about itself (`/cluster`; also asked of
/// peers over the Raft transport).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub address: String,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// The document version applied from the log.
    pub config_version: u64,
    /// The version this node's data plane serves: behind `config_version`
    /// when the applied document could not be compiled here.
    pub serving_version: u64,
    /// Why the applied version is not served, when it is not.
    pub serving_error: Option<String>,
}

/// One member as another member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub address: String,
    pub voter: bool,
    pub reachable: bool,
    /// What it answered; `None` when it did not in time.
    pub status: Option<NodeStatus>,
}

/// `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub region: String,
    pub node: NodeStatus,
    pub leader: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberView>,
}

/// `PUT /config` accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    pub version: u64,
    /// What the node that took the write serves once it applied it.
    pub serving_version: u64,
    pub serving_error: Option<String>,
}

/// An error answer. `error` is a short code or sentence; the other fields
/// are there when they apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    /// Why (unavailable writes, purges, moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Compare-and-set conflicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// Invalid documents: every broken rule with its key path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PathError>,
}

/// One broken rule of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathError {
    pub path: String,
    pub message: String,
}

impl ApiError {
    pub fn new(error: impl Into<String>) -> Self {
        Self { error: error.into(), ..Default::default() }
    }

    pub fn with_reason(error: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { reason: Some(reason.into()), ..Self::new(error) }
    }

    pub fn conflict(expected: u64, current: u64) -> Self {
        Self { expected_version: Some(expected), current_version: Some(current), ..Self::new("version conflict") }
    }

    pub fn invalid(errors: &ConfigErrors) -> Self {
        let errors = errors.iter().map(|e| PathError { path: e.path.clone(), message: e.kind.to_string() }).collect();
        Self { errors, ..Self::new("invalid document") }
    }
}

/// One applied document version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub version: u64,
    pub log_index: u64,
    /// xxh3 of the document text, hex.
    pub digest: String,
}

/// `GET /config/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryView {
    pub version: u64,
    pub revisions: Vec<Revision>,
}

/// One VIP of the region's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipView {
    pub vip: String,
    pub owner: Option<u64>,
    pub epoch: u64,
    /// During a graceful move: the member giving it up, and the one taking it.
    pub releasing_from: Option<u64>,
    pub next_owner: Option<u64>,
    /// This member holds the address now.
    pub held_here: bool,
}

/// A member's liveness as the region agreed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLiveness {
    pub healthy: bool,
    pub draining: bool,
    pub renewals: u64,
}

/// `GET /vips`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipTableView {
    pub node: u64,
    /// This member's lease is fresh (`None` without a VIP agent).
    pub lease_valid: Option<bool>,
    pub vips: Vec<VipView>,
    /// Member id → liveness.
    pub nodes: BTreeMap<String, MemberLiveness>,
}

/// `POST /vips/move`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipMove {
    pub vip: String,
    pub to: u64,
}

/// What a move did: `moved` is false when the VIP was already there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipMoved {
    pub vip: String,
    pub from: Option<u64>,
    pub to: u64,
    pub epoch: Option<u64>,
    pub moved: bool,
}

/// `POST /cluster/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMember {
    pub id: u64,
    pub address: String,
}

/// `POST /nodes/<id>/drain` and `/undrain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drained {
    pub node: u64,
    pub draining: bool,
}

/// `POST /cache/purge` asks: one route's entries, or (no route) every route's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRequest {
    #[serde(default)]
    pub route: Option<String>,
}

/// `POST /cache/purge` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// The route purged, or `*` for every route.
    pub purged: String,
}

/// One target of an upstream (`GET /upstreams`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetView {
    pub address: String,
    pub weight: u32,
    /// Active checks pass.
    pub healthy: bool,
    /// Ejected by passive outlier detection, for `ejected_for_ms` more.
    pub ejected: bool,
    pub ejected_for_ms: u64,
    pub available: bool,
    pub in_flight: u32,
    pub idle_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamView {
    pub targets: Vec<TargetView>,
    pub in_flight: u32,
}

/// `GET /upstreams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamsView {
    pub version: u64,
    pub upstreams: BTreeMap<String, UpstreamView>,
}

/// Member changes (`/cluster/members`) that took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub ok: bool,
}

/// One region as a global balancer judges it (`GET /v1/regions` of `meridian gslb`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GslbRegionView {
    pub region: String,
    /// In the answers now.
    pub served: bool,
    /// Why (`served`, `stale reports`, `probes failing`, ...).
    pub reason: String,
    pub healthy_vips: Vec<IpAddr>,
    pub vips: Vec<IpAddr>,
}

/// One consumer as `GET /consumers` shows it: its keys by id and prefix only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerView {
    pub name: String,
    pub groups: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    pub prefix: String,
}

/// `GET /consumers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumersView {
    pub version: u64,
    pub consumers: Vec<ConsumerView>,
}

/// `PUT /consumers/{name}`: create, or change groups, metadata and limits
/// (its keys stay).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerPut {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Vec<crate::config::LimitConfig>,
}

/// `POST /consumers/{name}/keys`. Without `key` the node makes one and
/// answers it (once); `meridian ctl keys issue` makes it itself, so every
/// region stores the same key under the same id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyIssue {
    pub id: Option<String>,
    pub key: Option<String>,
}

/// The answer to a consumer or key change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityChange {
    pub version: u64,
    pub consumer: String,
    /// The key's id and prefix (key changes).
    pub key: Option<KeyView>,
    /// The key itself, when this node made it: shown this once.
    pub secret: Option<String>,
    /// The change was there already (a retried write).
    pub unchanged: bool,
}
