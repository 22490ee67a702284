//! Active health checks: an HTTP probe per target on an interval, with
//! rise/fall thresholds so one lost probe does not flap a target.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntGauge};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::TargetHealth;

/// How a pool probes its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    pub path: String,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Empty: any 2xx or 3xx.
    pub expected_status: Vec<u16>,
}

impl ActiveCheck {
    fn accepts(&self, status: u16) -> bool {
        if self.expected_status.is_empty() {
            (200..400).contains(&status)
        } else {
            self.expected_status.contains(&status)
        }
    }
}

/// Counts of consecutive probe results; decides transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeStreak {
    pub up: bool,
    successes: u32,
    failures: u32,
}

impl ProbeStreak {
    pub fn new(up: bool) -> Self {
        Self { up, successes: 0, failures: 0 }
    }

    /// Record one probe; returns the new state when it changes.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.up && self.successes >= rise.max(1) {
                self.up = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.up && self.failures >= fall.max(1) {
                self.up = false;
                return Some(false);
            }
        }
        None
    }
}

/// Where a checker reports: metric handles and log labels of one target.
pub struct ProbeSink {
    pub upstream: Arc<str>,
    pub target: Arc<str>,
    pub healthy: IntGauge,
    pub probes_ok: IntCounter,
    pub probes_failed: IntCounter,
}

/// Why a probe failed, for the log line of a transition.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("unexpected status {0}")]
    Status(u16),
    #[error("bad request: {0}")]
    Request(#[from] http::Error),
}

/// One probe: a fresh connection, `GET path`, the status checked.
pub async fn probe(address: &str, check: &ActiveCheck) -> Result<(), ProbeError> {
    let fut = async {
        let stream = TcpStream::connect(address).await.map_err(ProbeError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = check.host.as_deref().unwrap_or(address);
        let req = http::Request::get(check.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, concat!("meridian-health/", env!("CARGO_PKG_VERSION")))
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        if check.accepts(status) {
            Ok(())
        } else {
            Err(ProbeError::Status(status))
        }
    };
    match tokio::time::timeout(check.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(check.timeout)),
    }
}

/// Probe `address` until `cancel` fires; `health` is told of transitions.
pub fn spawn<H>(
    address: Arc<str>,
    health: H,
    check: Arc<ActiveCheck>,
    sink: ProbeSink,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    H: std::ops::Deref<Target = TargetHealth> + Send + 'static,
{
    tokio::spawn(async move {
        let mut streak = ProbeStreak::new(health.active_up());
        sink.healthy.set(i64::from(streak.up));
        // Spread the probes of many targets over the interval.
        let jitter = check.interval.mul_f64(fastrand::f64() * 0.1);
        let mut next = tokio::time::Instant::now() + jitter;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            next += check.interval;
            let result = probe(&address, &check).await;
            match &result {
                Ok(()) => sink.probes_ok.inc(),
                Err(_) => sink.probes_failed.inc(),
            }
            if cancel.is_cancelled() {
                return;
            }
            if let Some(up) = streak.observe(result.is_ok(), check.rise, check.fall) {
                health.set_active_up(up);
                sink.healthy.set(i64::from(up));
                match result {
                    Ok(()) => {
                        tracing::info!(upstream = %sink.upstream, target = %sink.target, "target up: active check passed {} times", check.rise)
                    }
                    Err(e) => {
                        tracing::warn!(upstream = %sink.upstream, target = %sink.target, error = %e, "target down: active check failed {} times", check.fall)
                    }
                }
            }
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_thresholds() {
        let mut s = ProbeStreak::new(true);
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(true, 2, 3), None); // a success resets the failure streak
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), None);
        assert_eq!(s.observe(false, 2, 3), Some(false));
        assert_eq!(s.observe(true, 2, 3), None);
        assert_eq!(s.observe(true, 2, 3), Some(true));
    }
}
