//! The admin API: liveness, readiness and metrics for probes and scrapers;
//! config and upstream state for operators (bearer token). Errors are JSON
//! and never carry internals.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod consumers;

use crate::raft::{Command, CommandResult, RegionNode, WriteError};
use meridian_core::admin::{
    AddMember, ApiError, ClusterView, Done, Drained, HistoryView, MemberLiveness, MemberView, PurgeRequest, Purged,
    TargetView, UpstreamView, UpstreamsView, VipMove, VipMoved, VipTableView, VipView, WriteAck,
};
use meridian_core::clock::mono_ms;
use meridian_core::config::{parse_document, Format, GatewayDocument};
use meridian_core::http_server::{json_response, text_response, ServerLimits};
use meridian_dataplane::proxy::{ApplyError, Gateway};

/// A small JSON request body (64 KiB at most) as `T`, or the 413/400 answer;
/// `expected` shows the caller the shape it should have sent.
async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    expected: &str,
) -> Result<T, Box<AdminResponse>> {
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Box::new(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large or unreadable"))),
    };
    serde_json::from_slice(&body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &format!("expected {expected}: {e}"))))
}

/// How long a committed write waits for this node to serve it before answering.
const SERVE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Largest document `PUT /config` accepts.
const MAX_DOCUMENT_BYTES: usize = 4 << 20;

pub struct AdminState {
    pub gateway: Arc<Gateway>,
    /// Set when the node is a member of a region: document writes go through it.
    pub region: Option<Arc<RegionNode>>,
    /// What this member holds, when it runs the VIP agent.
    pub vips: Option<Arc<crate::vip::agent::VipStatus>>,
    pub token: Option<String>,
}

type AdminResponse = Response<Full<Bytes>>;

fn error(status: StatusCode, message: &str) -> AdminResponse {
    json_response(status, &ApiError::new(message))
}

fn unavailable(reason: impl ToString) -> AdminResponse {
    json_response(StatusCode::SERVICE_UNAVAILABLE, &ApiError::with_reason("unavailable", reason.to_string()))
}

impl AdminState {
    fn authorized(&self, req: &Request<Incoming>) -> Result<(), Box<AdminResponse>> {
        let Some(token) = &self.token else {
            return Err(Box::new(error(StatusCode::FORBIDDEN, "no admin token is configured on this node")));
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(Box::new(error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")))
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> AdminResponse {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/healthz") => text_response(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => {
                if self.gateway.version() > 0 {
                    text_response(StatusCode::OK, "ready\n")
                } else {
                    text_response(StatusCode::SERVICE_UNAVAILABLE, "no gateway document applied yet\n")
                }
            }
            (&Method::GET, "/metrics") => {
                let mut r = Response::new(Full::new(Bytes::from(self.gateway.metrics.render())));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
                r
            }
            (_, p)
                if p == "/config"
                    || p == "/config/history"
                    || p == "/upstreams"
                    || p.starts_with("/cluster")
                    || p.starts_with("/vips")
                    || p.starts_with("/nodes/")
                    || p == "/cache/purge"
                    || p == "/consumers"
                    || p.starts_with("/consumers/") =>
            {
                if let Err(r) = self.authorized(&req) {
                    return *r;
                }
                match (req.method(), path.as_str()) {
                    (&Method::GET, "/config") => self.get_config(),
                    (&Method::PUT, "/config") => self.put_config(req).await,
                    (&Method::GET, "/config/history") => self.history().await,
                    (&Method::GET, "/upstreams") => self.upstreams(),
                    (&Method::GET, "/cluster") => self.cluster().await,
                    (&Method::POST, "/cluster/members") => self.add_member(req).await,
                    (&Method::DELETE, p) if p.starts_with("/cluster/members/") => {
                        self.remove_member(&p["/cluster/members/".len()..]).await
                    }
                    (&Method::GET, "/vips") => self.list_vips(),
                    (_, p) if p == "/consumers" || p.starts_with("/consumers/") => self.consumers(req).await,
                    (&Method::POST, "/cache/purge") => self.purge(req).await,
                    (&Method::POST, "/vips/move") => self.move_vip(req).await,
                    (&Method::POST, p)
                        if p.starts_with("/nodes/") && (p.ends_with("/drain") || p.ends_with("/undrain")) =>
                    {
                        let draining = p.ends_with("/drain");
                        let id =
                            p.trim_start_matches("/nodes/").trim_end_matches("/drain").trim_end_matches("/undrain");
                        self.drain(id, draining).await
                    }
                    _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn get_config(&self) -> AdminResponse {
        let snap = self.gateway.snapshot();
        json_response(StatusCode::OK, &*snap.document)
    }

    async fn put_config(&self, req: Request<Incoming>) -> AdminResponse {
        let expected = match expected_version(&req) {
            Ok(v) => v,
            Err(r) => return *r,
        };
        let format = match req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            Some(ct) if ct.starts_with("application/json") => Format::Json,
            _ => Format::Toml,
        };
        let body = match Limited::new(req.into_body(), MAX_DOCUMENT_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "document too large or body unreadable"),
        };
        let Ok(text) = std::str::from_utf8(&body) else {
            return error(StatusCode::BAD_REQUEST, "document is not UTF-8");
        };
        let doc = match parse_document(text, format) {
            Ok(d) => d,
            Err(errors) => {
                self.gateway.metrics.config_applies.with_label_values(&["admin", "invalid"]).inc();
                tracing::warn!(errors = %errors, "admin: document refused");
                return json_response(StatusCode::UNPROCESSABLE_ENTITY, &ApiError::invalid(&errors));
            }
        };
        self.commit(doc, expected).await
    }

    /// Serve `doc` as the next version (in a region: propose it, answer after
    /// commit); with `expected`, only if that version is served now.
    async fn commit(
        &self,
        doc: meridian_core::config::Validated<meridian_core::config::CheckedDocument>,
        expected: Option<u64>,
    ) -> AdminResponse {
        if let Some(region) = &self.region {
            return self.put_config_region(region, doc.into_inner().into_document(), expected).await;
        }
        match self.gateway.apply_next(doc, expected) {
            Ok(version) => {
                self.gateway.metrics.config_applies.with_label_values(&["admin", "ok"]).inc();
                json_response(StatusCode::OK, &WriteAck { version, serving_version: version, serving_error: None })
            }
            Err(ApplyError::Conflict { expected, current }) => {
                self.gateway.metrics.config_applies.with_label_values(&["admin", "conflict"]).inc();
                json_response(StatusCode::CONFLICT, &ApiError::conflict(expected, current))
            }
            Err(ApplyError::Invalid(errors)) => {
                self.gateway.metrics.config_applies.with_label_values(&["admin", "invalid"]).inc();
                json_response(StatusCode::UNPROCESSABLE_ENTITY, &ApiError::invalid(&errors))
            }
        }
    }

    /// A document write in a region: proposed to the group, answered after commit.
    async fn put_config_region(
        &self,
        region: &RegionNode,
        doc: GatewayDocument,
        expected: Option<u64>,
    ) -> AdminResponse {
        let document = match serde_json::to_string(&doc) {
            Ok(d) => d,
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "could not encode the document"),
        };
        let applies = &self.gateway.metrics.config_applies;
        match region.write(Command::PutConfig { expected_version: expected, document }).await {
            Ok(CommandResult::ConfigApplied { version }) => {
                applies.with_label_values(&["admin", "ok"]).inc();
                // Committed; answer once this node serves it (or says why not),
                // so a client reads its own write here.
                let served = region.wait_served(version, SERVE_WAIT).await;
                let ack = WriteAck { version, serving_version: served.serving, serving_error: served.error };
                json_response(StatusCode::OK, &ack)
            }
            Ok(CommandResult::VersionConflict { expected, current }) => {
                applies.with_label_values(&["admin", "conflict"]).inc();
                json_response(StatusCode::CONFLICT, &ApiError::conflict(expected, current))
            }
            Ok(CommandResult::Invalid { errors }) => {
                applies.with_label_values(&["admin", "invalid"]).inc();
                let errors = errors
                    .into_iter()
                    .map(|(path, message)| meridian_core::admin::PathError { path, message })
                    .collect();
                json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &ApiError { errors, ..ApiError::new("invalid document") },
                )
            }
            Ok(CommandResult::None | CommandResult::Vip { .. } | CommandResult::Stale) => {
                error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected result")
            }
            Err(e) => {
                applies.with_label_values(&["admin", "unavailable"]).inc();
                tracing::warn!(error = %e, "document write not acknowledged");
                let (code, reason) = match &e {
                    WriteError::NoLeader(_) => ("no_leader", e.to_string()),
                    WriteError::NoQuorum(_) => ("no_quorum", e.to_string()),
                    WriteError::Unknown => ("unknown_outcome", e.to_string()),
                    WriteError::Refused(_) => ("refused", e.to_string()),
                };
                json_response(StatusCode::SERVICE_UNAVAILABLE, &ApiError::with_reason(code, reason))
            }
        }
    }

    async fn history(&self) -> AdminResponse {
        let Some(region) = &self.region else {
            return error(StatusCode::NOT_FOUND, "this node is not a member of a region");
        };
        let state = region.state().await;
        let history = HistoryView { version: state.version(), revisions: state.history.into_iter().collect() };
        json_response(StatusCode::OK, &history)
    }

    async fn cluster(&self) -> AdminResponse {
        let Some(region) = &self.region else {
            return error(StatusCode::NOT_FOUND, "this node is not a member of a region");
        };
        let me = region.status();
        let members = region
            .members()
            .await
            .into_iter()
            .map(|(id, address, voter, status)| MemberView { id, address, voter, reachable: status.is_some(), status })
            .collect();
        let view = ClusterView { region: me.region.clone(), leader: me.leader, term: me.term, node: me, members };
        json_response(StatusCode::OK, &view)
    }

    async fn add_member(&self, req: Request<Incoming>) -> AdminResponse {
        let Some(region) = &self.region else {
            return error(StatusCode::NOT_FOUND, "this node is not a member of a region");
        };
        let add: AddMember = match read_json(req, r#"{"id": N, "address": "host:port"}"#).await {
            Ok(a) => a,
            Err(answer) => return *answer,
        };
        if meridian_core::config::check_address(&add.address).is_err() {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "address must be host:port");
        }
        membership_answer(region.add_member(add.id, add.address).await)
    }

    async fn remove_member(&self, id: &str) -> AdminResponse {
        let Some(region) = &self.region else {
            return error(StatusCode::NOT_FOUND, "this node is not a member of a region");
        };
        let Ok(id) = id.parse::<u64>() else {
            return error(StatusCode::BAD_REQUEST, "member id must be a number");
        };
        membership_answer(region.remove_member(id).await)
    }

    /// `{"route": "name"}` purges one route's cache, `{}` every route's, on every node of the region.
    async fn purge(&self, req: Request<Incoming>) -> AdminResponse {
        let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large or unreadable"),
        };
        let route = if body.is_empty() {
            None
        } else {
            match serde_json::from_slice::<PurgeRequest>(&body) {
                Ok(p) => p.route,
                Err(e) => {
                    return error(StatusCode::BAD_REQUEST, &format!("expected {{\"route\": \"name\"}} or {{}}: {e}"))
                }
            }
        };
        match self.gateway.cache.purge(route.as_deref()).await {
            Ok(()) => {
                tracing::info!(route = ?route, "cache purged");
                json_response(StatusCode::OK, &Purged { purged: route.unwrap_or_else(|| "*".into()) })
            }
            Err(e) => unavailable(e),
        }
    }

    fn list_vips(&self) -> AdminResponse {
        let Some(region) = &self.region else {
            return error(StatusCode::NOT_FOUND, "this node is not a member of a region");
        };
        let view = region.vip_view().borrow().clone();
        let held = self.vips.as_ref().map(|v| v.held()).unwrap_or_default();
        let vips = view
            .vips
            .iter()
            .map(|(vip, r)| VipView {
                vip: vip.clone(),
                owner: r.owner,
                epoch: r.epoch,
                releasing_from: r.releasing_from,
                next_owner: r.next_owner,
                held_here: held.contains(vip),
            })
            .collect();
        let nodes = view
            .nodes
            .iter()
            .map(|(id, n)| {
                let liveness = MemberLiveness { healthy: n.healthy, draining: n.draining, renewals: n.renewals };
                (id.to_string(), liveness)
            })
            .collect();
        let lease_valid = self.vips.as_ref().map(|v| v.lease_valid.load(std::sync::atomic::Ordering::Relaxed));
        json_response(StatusCode::OK, &VipTableView { node: region.id, lease_valid, vips, nodes })
    }

    async fn move_vip(&self, req: Request<Incoming>) -> AdminResponse {
        let Some(region) = &self.region else {
            return error(StatusCode::NOT_FOUND, "this node is not a member of a region");
        };
        let m: VipMove = match read_json(req, r#"{"vip": "10.0.0.100/24", "to": N}"#).await {
            Ok(m) => m,
            Err(answer) => return *answer,
        };
        let view = region.vip_view().borrow().clone();
        let Some(rec) = view.vips.get(&m.vip) else {
            return error(StatusCode::NOT_FOUND, "unknown VIP (use the address/prefix form listed by GET /vips)");
        };
        let Some(from) = rec.owner else {
            return error(StatusCode::CONFLICT, "the VIP has no owner right now; it will be assigned");
        };
        if from == m.to {
            let stays = VipMoved { vip: m.vip, from: Some(from), to: from, epoch: None, moved: false };
            return json_response(StatusCode::OK, &stays);
        }
        let cmd = Command::Handoff {
            vip: m.vip.clone(),
            expected_epoch: rec.epoch,
            from,
            to: m.to,
            reason: crate::raft::MoveReason::Admin,
        };
        match region.write(cmd).await {
            Ok(CommandResult::Vip { epoch }) => {
                region.metrics().vip_moves.with_label_values(&["admin"]).inc();
                tracing::info!(vip = %m.vip, from, to = m.to, epoch, reason = "admin", "VIP handoff started");
                let moved = VipMoved { vip: m.vip, from: Some(from), to: m.to, epoch: Some(epoch), moved: true };
                json_response(StatusCode::OK, &moved)
            }
            Ok(_) => error(StatusCode::CONFLICT, "the VIP changed meanwhile; look again"),
            Err(e) => unavailable(e),
        }
    }

    async fn drain(&self, id: &str, draining: bool) -> AdminResponse {
        let Some(region) = &self.region else {
            return error(StatusCode::NOT_FOUND, "this node is not a member of a region");
        };
        let Ok(node) = id.parse::<u64>() else {
            return error(StatusCode::BAD_REQUEST, "node id must be a number");
        };
        match region.write(Command::SetDrain { node, draining }).await {
            Ok(_) => {
                tracing::info!(node, draining, "member drain state changed");
                json_response(StatusCode::OK, &Drained { node, draining })
            }
            Err(e) => unavailable(e),
        }
    }

    fn upstreams(&self) -> AdminResponse {
        let snap = self.gateway.snapshot();
        let now = mono_ms();
        let upstreams = snap
            .upstreams
            .iter()
            .map(|(name, up)| {
                let targets = up
                    .pool
                    .endpoints()
                    .iter()
                    .enumerate()
                    .map(|(i, e)| TargetView {
                        address: e.address.to_string(),
                        weight: up.pool.weight(i),
                        healthy: e.health.active_up(),
                        ejected: e.health.is_ejected(now),
                        ejected_for_ms: e.health.ejected_until_ms().saturating_sub(now),
                        available: e.health.is_available(now),
                        in_flight: e.in_flight(),
                        idle_connections: up.conns[i].idle_count(),
                    })
                    .collect();
                (name.clone(), UpstreamView { targets, in_flight: up.breaker.in_flight() })
            })
            .collect();
        json_response(StatusCode::OK, &UpstreamsView { version: snap.version, upstreams })
    }
}

fn membership_answer(r: Result<CommandResult, WriteError>) -> AdminResponse {
    match r {
        Ok(_) => json_response(StatusCode::OK, &Done { ok: true }),
        Err(WriteError::Refused(msg)) => error(StatusCode::CONFLICT, &msg),
        Err(e) => unavailable(e),
    }
}

/// `If-Match: <version>` or `?expected_version=<version>`.
fn expected_version(req: &Request<Incoming>) -> Result<Option<u64>, Box<AdminResponse>> {
    let from_header =
        req.headers().get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(|s| s.trim_matches('"').to_string());
    let from_query = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("expected_version=")).map(str::to_string));
    match from_header.or(from_query) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "expected version must be a number"))),
    }
}

/// Serve the admin API on `listener` until `shutdown`; HTTPS with `tls`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    tracing::info!(address = ?listener.local_addr().ok(), tls = tls.is_some(), "admin API listening");
    let handler = move |req| {
        let state = state.clone();
        async move { state.handle(req).await }
    };
    let limits = ServerLimits { tls, ..ServerLimits::default() };
    meridian_core::http_server::serve("admin", listener, limits, shutdown, tracker.clone(), handler).await;
}
