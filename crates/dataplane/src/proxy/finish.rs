//! The end of an exchange: metrics, the access-log line, and returning the
//! upstream connection to its pool when the response body completed cleanly.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Version};
use hyper::client::conn::http1::SendRequest;

use super::body::UpstreamBody;
use super::upstream::ConnPool;
use crate::balance::InFlight;
use crate::telemetry::RouteMetrics;

/// Fields of the access-log line that only exist when logging is on.
pub(crate) struct AccessRecord {
    pub method: Method,
    pub version: Version,
    pub host: String,
    pub path: String,
    /// The request's client ([`super::server::ConnInfo::client_of`])...
    pub client: IpAddr,
    /// ...and the socket peer it came through (a proxy, or the client itself).
    pub peer: IpAddr,
    pub request_id: HeaderValue,
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub target: Option<Arc<str>>,
    pub upstream_time: Option<Duration>,
    pub attempts: u32,
    pub error: Option<&'static str>,
    /// The authenticated consumer.
    pub consumer: Option<Arc<str>>,
    pub request_bytes: Option<u64>,
}

pub(crate) struct Finish {
    pub start: Instant,
    /// `start` on the [`meridian_core::clock::mono_ms`] clock.
    pub start_ms: u64,
    pub status: u16,
    pub bytes_sent: u64,
    pub metrics: Arc<RouteMetrics>,
    pub conn: Option<(Arc<ConnPool>, SendRequest<UpstreamBody>)>,
    pub in_flight: Option<InFlight>,
    pub log: Option<Box<AccessRecord>>,
    /// The authenticated consumer's counters, by status class.
    pub consumer: Option<Arc<[prometheus::IntCounter; 6]>>,
}

impl Finish {
    pub fn new(start: Instant, start_ms: u64, metrics: Arc<RouteMetrics>, log: Option<Box<AccessRecord>>) -> Self {
        Self { start, start_ms, status: 0, bytes_sent: 0, metrics, conn: None, in_flight: None, log, consumer: None }
    }

    /// `clean`: the response body was sent whole. Only then is the upstream
    /// connection in a state where it can carry another request.
    pub fn complete(mut self, clean: bool) {
        let elapsed = self.start.elapsed();
        self.metrics.observe(self.status, elapsed.as_secs_f64());
        if let Some(c) = &self.consumer {
            c[crate::telemetry::status_class(self.status)].inc();
        }
        if let Some((pool, sender)) = self.conn.take() {
            if clean {
                pool.checkin(sender, self.start_ms + elapsed.as_millis() as u64);
            }
        }
        self.in_flight = None;
        if let Some(r) = self.log.take() {
            tracing::info!(
                target: "meridian::access",
                method = %r.method,
                host = %r.host,
                path = %r.path,
                version = ?r.version,
                status = self.status,
                route = r.route.as_deref().unwrap_or("-"),
                consumer = r.consumer.as_deref().unwrap_or("-"),
                upstream = r.upstream.as_deref().unwrap_or("-"),
                target = r.target.as_deref().unwrap_or("-"),
                attempts = r.attempts,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                upstream_ms = r.upstream_time.map(|d| d.as_secs_f64() * 1000.0),
                request_bytes = r.request_bytes,
                bytes_sent = self.bytes_sent,
                complete = clean,
                error = r.error,
                client = %r.client,
                peer = %r.peer,
                request_id = r.request_id.to_str().unwrap_or("-"),
                "request"
            );
        }
    }
}
