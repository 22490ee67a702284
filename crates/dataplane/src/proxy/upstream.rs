//! A compiled upstream: its pool of targets, keep-alive connections to each
//! target, the circuit breaker and the retry budget.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::UpstreamBody;
use super::error::ProxyError;
use crate::balance::Pool;

/// Keep-alive HTTP/1.1 connections to one target address, shared by every
/// pool and config version that uses the address.
pub struct ConnPool {
    pub address: Arc<str>,
    /// Sent as `Host` by routes that do not preserve the client's.
    pub host_header: http::HeaderValue,
    /// Idle connections with the time (ms, [`meridian_core::clock::mono_ms`]) they went idle.
    idle: Mutex<Vec<(SendRequest<UpstreamBody>, u64)>>,
    max_idle: AtomicU32,
    idle_timeout_ms: AtomicU64,
}

impl ConnPool {
    pub fn new(address: &str, max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            address: address.into(),
            host_header: http::HeaderValue::from_str(address)
                .unwrap_or_else(|_| http::HeaderValue::from_static("localhost")),
            idle: Mutex::new(Vec::new()),
            max_idle: AtomicU32::new(max_idle as u32),
            idle_timeout_ms: AtomicU64::new(idle_timeout.as_millis() as u64),
        }
    }

    /// Apply the limits of a new config version.
    pub fn configure(&self, max_idle: usize, idle_timeout: Duration) {
        self.max_idle.store(max_idle as u32, Ordering::Relaxed);
        self.idle_timeout_ms.store(idle_timeout.as_millis() as u64, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(SendRequest<UpstreamBody>, u64)>> {
        // The list stays consistent even if a holder panicked.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection that is still open.
    pub fn checkout(&self, now_ms: u64) -> Option<SendRequest<UpstreamBody>> {
        let max_age = self.idle_timeout_ms.load(Ordering::Relaxed);
        let mut idle = self.lock();
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && now_ms.saturating_sub(since) < max_age {
                return Some(sender);
            }
        }
        None
    }

    /// Return a connection whose exchange completed cleanly.
    pub fn checkin(&self, sender: SendRequest<UpstreamBody>, now_ms: u64) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle.load(Ordering::Relaxed) as usize {
            idle.push((sender, now_ms));
        }
    }

    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    /// Open a new connection (TCP + HTTP/1.1 handshake) within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<SendRequest<UpstreamBody>, ProxyError> {
        let target = &self.address;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(&**target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ProxyError::Connect { target: target.to_string(), source }),
            Err(_) => return Err(ProxyError::ConnectTimeout { target: target.to_string(), after: timeout }),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ProxyError::Handshake { target: target.to_string(), source })?;
        let address = self.address.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(target = %address, error = %e, "upstream connection closed with an error");
            }
        });
        Ok(sender)
    }
}

/// Per-pool limits on concurrency: requests in flight and connects pending.
#[derive(Debug)]
pub struct Breaker {
    max_requests: u32,
    max_pending: u32,
    requests: AtomicU32,
    pending: AtomicU32,
}

/// Holds one unit of a breaker's capacity until dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    counter: &'a AtomicU32,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

fn acquire(counter: &AtomicU32, max: u32) -> Option<Permit<'_>> {
    let prev = counter.fetch_add(1, Ordering::Relaxed);
    if prev >= max {
        counter.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Permit { counter })
}

impl Breaker {
    pub fn new(max_requests: u32, max_pending: u32) -> Self {
        Self { max_requests, max_pending, requests: AtomicU32::new(0), pending: AtomicU32::new(0) }
    }

    pub fn request(&self) -> Option<Permit<'_>> {
        acquire(&self.requests, self.max_requests)
    }

    pub fn pending(&self) -> Option<Permit<'_>> {
        acquire(&self.pending, self.max_pending)
    }

    pub fn in_flight(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }
}

const BUDGET_WINDOW_SECS: u64 = 10;

#[derive(Debug, Default)]
struct BudgetBucket {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// Retries may add at most `ratio` of the requests of the last 10 s, plus
/// `min_per_second`: a failing pool is not hammered with retry storms.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: u32,
    buckets: [BudgetBucket; BUDGET_WINDOW_SECS as usize],
}

impl RetryBudget {
    pub fn new(ratio: f64, min_per_second: u32) -> Self {
        Self { ratio, min_per_second, buckets: Default::default() }
    }

    fn bucket(&self, now_s: u64) -> &BudgetBucket {
        let b = &self.buckets[(now_s % BUDGET_WINDOW_SECS) as usize];
        let seen = b.second.load(Ordering::Relaxed);
        if seen != now_s && b.second.compare_exchange(seen, now_s, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    pub fn deposit(&self, now_s: u64) {
        self.bucket(now_s).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Take one retry from the budget if there is one left.
    pub fn try_withdraw(&self, now_s: u64) -> bool {
        let current = self.bucket(now_s);
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            if now_s.saturating_sub(b.second.load(Ordering::Relaxed)) < BUDGET_WINDOW_SECS {
                requests += b.requests.load(Ordering::Relaxed);
                retries += b.retries.load(Ordering::Relaxed);
            }
        }
        let allowed =
            (f64::from(self.min_per_second) * BUDGET_WINDOW_SECS as f64 + self.ratio * requests as f64) as u64;
        if retries >= allowed {
            return false;
        }
        current.retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// The sticky-session cookie of a pool.
#[derive(Debug, Clone)]
pub struct Sticky {
    pub cookie: String,
    /// `; Path=/; Max-Age=...; HttpOnly` appended to `name=value`.
    pub attributes: String,
}

/// Everything a route needs to send a request to an upstream.
pub struct Upstream {
    pub name: Arc<str>,
    pub pool: Pool,
    /// Parallel to `pool.endpoints()`.
    pub conns: Vec<Arc<ConnPool>>,
    pub connect_timeout: Duration,
    pub retry_attempts: u32,
    pub retry_on_5xx: bool,
    pub budget: RetryBudget,
    pub breaker: Breaker,
    pub sticky: Option<Sticky>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_limits_and_releases() {
        let b = Breaker::new(2, 1);
        let p1 = b.request().unwrap();
        let _p2 = b.request().unwrap();
        assert!(b.request().is_none());
        drop(p1);
        assert!(b.request().is_some());
        let _q = b.pending().unwrap();
        assert!(b.pending().is_none());
    }

    #[test]
    fn retry_budget_is_a_share_of_requests() {
        let budget = RetryBudget::new(0.2, 0);
        for _ in 0..100 {
            budget.deposit(1000);
        }
        let granted = (0..100).filter(|_| budget.try_withdraw(1000)).count();
        assert_eq!(granted, 20);
        // Eleven seconds later the window has moved on.
        assert!(!budget.try_withdraw(1011));
        let floor = RetryBudget::new(0.0, 2);
        assert_eq!((0..100).filter(|_| floor.try_withdraw(5)).count(), 20);
    }
}
