//! The gateway side of the global balancer: the region's leader sends a
//! signed health report to every balancer endpoint each interval. Whoever
//! leads sends; the others stay quiet, so a new leader takes over by itself.
//! Sending never blocks the data plane: it runs in its own task, with a
//! timeout per endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::raft::RegionNode;
use meridian_core::clock::unix_ms;
use meridian_core::config::ReportConfig;
use meridian_core::report::{sign, HealthReport, REGION_HEADER, SIGNATURE_HEADER};
use meridian_dataplane::proxy::Gateway;

#[derive(Debug, thiserror::Error)]
#[error("report secret: {0}")]
pub struct SecretError(String);

fn secret(cfg: &ReportConfig) -> Result<Vec<u8>, SecretError> {
    meridian_core::secret::read_secret(cfg.secret_file.as_deref(), &cfg.secret_env)
        .map_err(|e| SecretError(format!("report secret: {e}")))
}

/// A report's nonce: random from the operating system (the balancer refuses
/// a nonce it has seen); should that source fail, the clock and a counter
/// still never repeat within this process.
fn report_nonce() -> String {
    static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match meridian_core::secret::random_hex::<16>() {
        Ok(hex) => hex,
        Err(e) => {
            tracing::warn!(error = %e, "no random nonce for a report; using the clock and a counter");
            let n = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{:016x}{n:016x}", unix_ms())
        }
    }
}

/// What the leader knows about its region now.
fn build_report(region: &RegionNode, gateway: &Gateway) -> HealthReport {
    let m = region.raft.metrics().borrow().clone();
    let last = m.last_log_index.unwrap_or(0);
    let mut healthy = vec![region.id];
    if let Some(repl) = &m.replication {
        for (id, matched) in repl {
            // A follower within a short distance of the leader's log is keeping up.
            if *id != region.id && matched.is_some_and(|l| last.saturating_sub(l.index) < 100) {
                healthy.push(*id);
            }
        }
    }
    healthy.sort_unstable();
    let view = region.vip_view().borrow().clone();
    let vips: BTreeMap<String, Option<u64>> = view.vips.iter().map(|(v, r)| (v.clone(), r.owner)).collect();
    let load: f64 = gateway
        .metrics
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "meridian_active_connections")
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_gauge().get_value()))
        .sum();
    HealthReport {
        region: region.region.clone(),
        timestamp_ms: unix_ms(),
        nonce: report_nonce(),
        sender: region.id,
        healthy_nodes: healthy,
        vips,
        config_version: gateway.version(),
        load,
    }
}

/// Send reports while this member leads, until `shutdown`.
pub fn spawn(
    cfg: &ReportConfig,
    region: Arc<RegionNode>,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
) -> Result<(), SecretError> {
    let key = secret(cfg)?;
    let endpoints: Vec<String> =
        cfg.endpoints.iter().map(|e| format!("{}/v1/report", e.trim_end_matches('/'))).collect();
    let (interval, timeout) = (cfg.interval, cfg.timeout);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let sent = region.metrics().gslb_reports.clone();
    tokio::spawn(async move {
        let mut failing: HashMap<String, bool> = HashMap::new();
        let mut tick = meridian_core::clock::Ticker::new(interval, shutdown.clone());
        while tick.next().await {
            if region.leader() != Some(region.id) {
                continue;
            }
            let report = build_report(&region, &gateway);
            let Ok(body) = serde_json::to_vec(&report) else { continue };
            let signature = sign(&key, &body);
            let sends = endpoints.iter().map(|url| {
                let req = http::Request::post(url.as_str())
                    .header("content-type", "application/json")
                    .header(SIGNATURE_HEADER, signature.as_str())
                    .header(REGION_HEADER, report.region.as_str())
                    .body(Full::new(Bytes::from(body.clone())));
                let client = client.clone();
                async move {
                    let Ok(req) = req else { return Err("bad endpoint URL".to_string()) };
                    match tokio::time::timeout(timeout, client.request(req)).await {
                        Ok(Ok(r)) if r.status().is_success() => Ok(()),
                        Ok(Ok(r)) => Err(format!("answered {}", r.status())),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("no answer within {timeout:?}")),
                    }
                }
            });
            let results = futures_util::future::join_all(sends).await;
            for (url, r) in endpoints.iter().zip(results) {
                let was_failing = failing.insert(url.clone(), r.is_err()).unwrap_or(false);
                match r {
                    Ok(()) => {
                        sent.with_label_values(&[url, "ok"]).inc();
                        if was_failing {
                            tracing::info!(endpoint = %url, "health reports delivered again");
                        }
                    }
                    Err(e) => {
                        sent.with_label_values(&[url, "failed"]).inc();
                        if was_failing {
                            tracing::debug!(endpoint = %url, error = %e, "health report not delivered");
                        } else {
                            tracing::warn!(endpoint = %url, error = %e, "health report not delivered");
                        }
                    }
                }
            }
        }
    });
    Ok(())
}
