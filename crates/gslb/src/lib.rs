//! meridian-gslb, the DNS global balancer (`meridian gslb`): an authoritative server for a
//! zone whose service names answer with the VIPs of the nearest healthy
//! region. Health comes from signed reports of each region's leader and from
//! this instance's own probes of every VIP; instances share nothing, so any
//! number can run side by side and answer alike for the same health.
//!
//! # Layout
//!
//! - [`config`]: the `gslb.toml` schema and its checks.
//! - [`registry`]: region verdicts and the answer table.
//! - [`steer`]: client location and the choice of region.
//! - [`dns`]: the request handler.
//!
//! Reports (format, signatures, replay protection) are
//! `meridian_core::report`: the region's publisher and this receiver share it.

#![deny(unsafe_code)]

pub mod config;
pub mod dns;
pub mod registry;
pub mod steer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use prometheus::{IntCounterVec, IntGaugeVec, Registry as PromRegistry};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use config::GslbConfig;
use dns::{DnsMetrics, GslbHandler, Zone};
use meridian_core::admin::GslbRegionView;
use meridian_core::config::Validated;
use meridian_core::http_server::{text_response, ServerLimits};
use meridian_core::metrics::{counter, counter_vec, gauge_vec, histogram};
use meridian_core::report::{Refusal, Verifier, REGION_HEADER, SIGNATURE_HEADER};
use meridian_dataplane::health::active::{probe, ActiveCheck, ProbeStreak};
use registry::{AnswerTable, RegionHealthState, Registry, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum GslbError {
    #[error("cannot bind {what} {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("regions[{index}]: cannot read the report secret: {reason}")]
    Secret { index: usize, reason: String },
    #[error("zone: {0}")]
    Zone(#[from] dns::ZoneError),
    #[error("{0}")]
    Config(#[from] meridian_core::config::ConfigErrors),
}

struct Metrics {
    registry: PromRegistry,
    dns: Arc<DnsMetrics>,
    region_served: IntGaugeVec,
    reports: IntCounterVec,
    probes: IntCounterVec,
}

fn metrics(name: &str) -> Metrics {
    let mut labels = std::collections::HashMap::new();
    labels.insert("gslb".to_string(), name.to_string());
    let r = PromRegistry::new_custom(None, Some(labels)).unwrap_or_default();
    let queries = counter_vec(
        &r,
        "gslb_queries_total",
        "DNS queries answered, by name, type, chosen region and rcode.",
        &["name", "type", "region", "rcode"],
    );
    let fail_open =
        counter(&r, "gslb_fail_open_total", "Answers with every region's addresses because none looked healthy.");
    let answer_seconds = histogram(
        &r,
        "gslb_answer_duration_seconds",
        "Time to compute a steered answer.",
        &[0.000_005, 0.00001, 0.000_025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005],
    );
    let region_served = gauge_vec(&r, "gslb_region_served", "1 while the region is in the answers.", &["region"]);
    let reports =
        counter_vec(&r, "gslb_reports_total", "Health reports received, by region and result.", &["region", "result"]);
    let probes =
        counter_vec(&r, "gslb_probes_total", "VIP probes, by region, VIP and result.", &["region", "vip", "result"]);
    Metrics {
        dns: Arc::new(DnsMetrics { queries, answer_seconds, fail_open }),
        region_served,
        reports,
        probes,
        registry: r,
    }
}

/// A running balancer instance.
pub struct RunningGslb {
    pub dns_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub table: Arc<ArcSwap<AnswerTable>>,
    shutdown: CancellationToken,
}

impl RunningGslb {
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read_secret(index: usize, r: &config::RegionConfig) -> Result<Vec<u8>, GslbError> {
    let env = match (&r.secret_file, &r.secret_env) {
        (None, None) => return Err(GslbError::Secret { index, reason: "no secret configured".into() }),
        (_, env) => env.clone().unwrap_or_default(),
    };
    meridian_core::secret::read_secret(r.secret_file.as_deref(), &env)
        .map_err(|e| GslbError::Secret { index, reason: e.to_string() })
}

/// Every configured region, with no report received yet.
fn registry(cfg: &GslbConfig) -> Registry {
    let regions = cfg
        .regions
        .iter()
        .map(|r| {
            let loc = r.location.map(|p| steer::Coordinates { lat: p.lat, lon: p.lon });
            (r.name.clone(), Arc::new(RegionHealthState::new(&r.name, loc, r.weight, &r.vips)))
        })
        .collect();
    Registry {
        regions,
        order: cfg.regions.iter().map(|r| r.name.clone()).collect(),
        freshness: cfg.gslb.report_freshness,
    }
}

/// The DNS side of a balancer over `cfg`, without sockets and before any
/// report: what [`start`] serves, for answering packets directly
/// ([`GslbHandler::answer_packet`]; the DNS fuzz target).
pub fn offline_handler(cfg: &GslbConfig) -> Result<GslbHandler, GslbError> {
    let table = Arc::new(ArcSwap::from_pointee(registry(cfg).table(Instant::now())));
    Ok(GslbHandler::new(Arc::new(Zone::build(cfg)?), table, metrics(&cfg.gslb.name).dns))
}

/// Start DNS (UDP + TCP), the report API, the probes and the table refresher.
pub async fn start(cfg: Validated<GslbConfig>) -> Result<RunningGslb, GslbError> {
    let cfg = cfg.into_inner();
    let m = metrics(&cfg.gslb.name);
    let mut secrets = HashMap::new();
    for (i, r) in cfg.regions.iter().enumerate() {
        secrets.insert(r.name.clone(), read_secret(i, r)?);
    }
    let registry = Arc::new(registry(&cfg));
    let table = Arc::new(ArcSwap::from_pointee(registry.table(Instant::now())));
    let zone = Arc::new(Zone::build(&cfg)?);
    let shutdown = CancellationToken::new();

    let (udp, tcp, dns_addr) = bind_dns(cfg.gslb.dns).await?;
    let api = TcpListener::bind(cfg.gslb.api).await.map_err(|source| GslbError::Bind {
        what: "API",
        addr: cfg.gslb.api,
        source,
    })?;
    let api_addr = api.local_addr().map_err(|source| GslbError::Bind { what: "API", addr: cfg.gslb.api, source })?;

    let handler = GslbHandler::new(zone, table.clone(), m.dns.clone());
    let mut server = hickory_server::Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 32);
    let token = server.shutdown_token().clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            r = server.block_until_done() => if let Err(e) = r { tracing::error!(error = %e, "DNS server stopped") },
            _ = stop.cancelled() => token.cancel(),
        }
    });

    // Probes: one task per VIP.
    for r in &cfg.regions {
        let state = registry.regions.get(&r.name).cloned();
        let Some(state) = state else { continue };
        for vip in &state.vips {
            let check = ActiveCheck {
                path: r.probe.path.clone(),
                host: r.probe.host.clone(),
                interval: r.probe.interval,
                timeout: r.probe.timeout,
                rise: r.probe.rise,
                fall: r.probe.fall,
                expected_status: Vec::new(),
            };
            let address = SocketAddr::new(vip.ip, r.probe.port).to_string();
            let vip = vip.clone();
            let (ok, failed) = (
                m.probes.with_label_values(&[&r.name, &vip.ip.to_string(), "ok"]),
                m.probes.with_label_values(&[&r.name, &vip.ip.to_string(), "failed"]),
            );
            let stop = shutdown.clone();
            let region = r.name.clone();
            tokio::spawn(async move {
                let mut streak = ProbeStreak::new(false);
                let mut tick = meridian_core::clock::Ticker::new(check.interval, stop.clone());
                while tick.next().await {
                    let result = probe(&address, &check).await;
                    if result.is_ok() {
                        ok.inc()
                    } else {
                        failed.inc()
                    }
                    if let Some(up) = streak.observe(result.is_ok(), check.rise, check.fall) {
                        vip.up.store(up, Ordering::Relaxed);
                        match result {
                            Ok(()) => tracing::info!(region = %region, vip = %vip.ip, "VIP probe passing"),
                            Err(e) => tracing::warn!(region = %region, vip = %vip.ip, error = %e, "VIP probe failing"),
                        }
                    }
                }
            });
        }
    }

    // The answer table, recomputed often enough that a stale report takes a
    // region out within the freshness window plus one tick.
    {
        let (registry, table, stop, served) =
            (registry.clone(), table.clone(), shutdown.clone(), m.region_served.clone());
        tokio::spawn(async move {
            let mut last: HashMap<String, Verdict> = HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let t = registry.table(Instant::now());
                for r in &t.regions {
                    served.with_label_values(&[&r.name]).set(i64::from(r.verdict == Verdict::Served));
                    let prev = last.insert(r.name.clone(), r.verdict);
                    if prev != Some(r.verdict) && prev.is_some() {
                        if r.verdict == Verdict::Served {
                            tracing::info!(region = %r.name, vips = r.healthy.len(), "region back in the answers");
                        } else {
                            tracing::warn!(region = %r.name, reason = r.verdict.label(), "region taken out of the answers");
                        }
                    }
                }
                table.store(Arc::new(t));
            }
        });
    }

    // The report API.
    let api_state = Arc::new(ApiState {
        verifier: Verifier::new(secrets, cfg.gslb.replay_window.as_millis() as u64),
        registry,
        table: table.clone(),
        reports: m.reports.clone(),
        prom: m.registry,
    });
    tokio::spawn(serve_api(api, api_state, shutdown.clone()));
    tracing::info!(name = %cfg.gslb.name, dns = %dns_addr, api = %api_addr, regions = cfg.regions.len(), "global balancer started");
    Ok(RunningGslb { dns_addr, api_addr, table, shutdown })
}

struct ApiState {
    verifier: Verifier,
    registry: Arc<Registry>,
    table: Arc<ArcSwap<AnswerTable>>,
    reports: IntCounterVec,
    prom: PromRegistry,
}

impl ApiState {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => text_response(StatusCode::OK, "ok\n"),
            (&Method::GET, "/metrics") => text_response(
                StatusCode::OK,
                prometheus::TextEncoder::new().encode_to_string(&self.prom.gather()).unwrap_or_default(),
            ),
            (&Method::GET, "/v1/regions") => {
                let t = self.table.load();
                let v: Vec<GslbRegionView> = t
                    .regions
                    .iter()
                    .map(|r| GslbRegionView {
                        region: r.name.clone(),
                        served: r.verdict == Verdict::Served,
                        reason: r.verdict.label().to_string(),
                        healthy_vips: r.healthy.clone(),
                        vips: r.all.clone(),
                    })
                    .collect();
                text_response(StatusCode::OK, serde_json::to_string(&v).unwrap_or_default())
            }
            (&Method::POST, "/v1/report") => {
                let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                let (sig, claimed) = (header(SIGNATURE_HEADER), header(REGION_HEADER).unwrap_or_default());
                let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => return text_response(StatusCode::PAYLOAD_TOO_LARGE, "report too large\n"),
                };
                let now = meridian_core::clock::unix_ms();
                let verdict = self.verifier.verify(&claimed, &body, sig.as_deref(), now);
                match verdict {
                    Ok(report) => {
                        self.reports.with_label_values(&[&report.region, "accepted"]).inc();
                        if let Some(state) = self.registry.regions.get(&report.region) {
                            state.record(Instant::now(), report);
                        }
                        text_response(StatusCode::NO_CONTENT, Bytes::new())
                    }
                    Err(why) => {
                        // A label only for configured regions: a stranger cannot add series.
                        let region = if self.registry.regions.contains_key(&claimed) { claimed } else { "-".into() };
                        self.reports.with_label_values(&[&region, why.label()]).inc();
                        tracing::warn!(region = %region, reason = why.label(), "health report refused");
                        let status = match why {
                            Refusal::Malformed => StatusCode::BAD_REQUEST,
                            _ => StatusCode::UNAUTHORIZED,
                        };
                        text_response(status, format!("{why}\n"))
                    }
                }
            }
            _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

async fn serve_api(listener: TcpListener, state: Arc<ApiState>, shutdown: CancellationToken) {
    let handler = move |req| {
        let state = state.clone();
        async move { state.handle(req).await }
    };
    let tracker = tokio_util::task::TaskTracker::new();
    let limits = ServerLimits::default();
    meridian_core::http_server::serve("gslb-api", listener, limits, shutdown, tracker, handler).await;
}

/// UDP and TCP on one port. With port 0, the port UDP got may be taken for
/// TCP; then try another pair.
async fn bind_dns(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), GslbError> {
    let mut attempts = if addr.port() == 0 { 16 } else { 1 };
    loop {
        attempts -= 1;
        let udp = UdpSocket::bind(addr).await.map_err(|source| GslbError::Bind { what: "DNS (UDP)", addr, source })?;
        let bound = udp.local_addr().map_err(|source| GslbError::Bind { what: "DNS (UDP)", addr, source })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(_) if attempts > 0 => continue,
            Err(source) => return Err(GslbError::Bind { what: "DNS (TCP)", addr: bound, source }),
        }
    }
}
