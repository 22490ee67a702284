//! Upstream pools and how a target is picked: round robin, smooth weighted
//! round robin, least connections, peak-EWMA power of two choices, Maglev
//! consistent hashing, and sticky sessions. Targets that are down (active
//! checks) or ejected (passive outlier detection) are skipped.

mod ewma;
mod maglev;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

use crate::health::{PassivePolicy, TargetHealth};
use meridian_core::config::HashOn;

pub use ewma::PeakEwma;
pub use maglev::{MaglevTable, TABLE_SIZE as MAGLEV_TABLE_SIZE};

/// One target of one pool. Kept across config versions (same pool, same
/// address) so health, load and latency history survive a reload.
#[derive(Debug)]
pub struct Endpoint {
    pub address: Arc<str>,
    /// Stable identity, equal on every node: sticky cookies and consistent
    /// hashing agree across the region.
    pub id: u64,
    pub health: TargetHealth,
    in_flight: AtomicU32,
    latency: PeakEwma,
}

impl Endpoint {
    pub fn new(address: &str) -> Self {
        Self {
            address: address.into(),
            id: endpoint_id(address),
            health: TargetHealth::new(),
            in_flight: AtomicU32::new(0),
            latency: PeakEwma::default(),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count a request in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub fn observe_latency(&self, rtt: Duration, now_ms: u64) {
        self.latency.observe(rtt.as_nanos() as u64, now_ms);
    }
}

/// Lets the health checker hold an endpoint as its target's health.
#[derive(Debug, Clone)]
pub struct EndpointHealth(pub Arc<Endpoint>);

impl std::ops::Deref for EndpointHealth {
    type Target = TargetHealth;
    fn deref(&self) -> &TargetHealth {
        &self.0.health
    }
}

/// The identity of a target address (also the sticky cookie value).
pub fn endpoint_id(address: &str) -> u64 {
    xxh3_64(address.as_bytes())
}

/// Decrements the target's in-flight count when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hash of a balancing key (client IP bytes, header or cookie value).
pub fn hash_key(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// The algorithm of a pool, with its state.
#[derive(Debug)]
pub enum Picker {
    RoundRobin { next: AtomicUsize },
    SmoothWeighted { current: Mutex<Vec<i64>> },
    LeastConnections { next: AtomicUsize },
    PeakEwma,
    ConsistentHash { table: MaglevTable, fallback: AtomicUsize },
}

/// A pool of targets and how to pick among them.
#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    endpoints: Vec<Arc<Endpoint>>,
    weights: Vec<u32>,
    picker: Picker,
    pub hash_on: Option<HashOn>,
    pub passive: Option<PassivePolicy>,
}

/// Picks already tried by this request (retries go elsewhere when they can).
pub type Tried<'a> = &'a [usize];

impl Pool {
    pub fn new(
        name: Arc<str>,
        endpoints: Vec<Arc<Endpoint>>,
        weights: Vec<u32>,
        algorithm: meridian_core::config::Algorithm,
        hash_on: Option<HashOn>,
        passive: Option<PassivePolicy>,
    ) -> Self {
        use meridian_core::config::Algorithm;
        let picker = match algorithm {
            Algorithm::RoundRobin => {
                Picker::RoundRobin { next: AtomicUsize::new(fastrand::usize(..endpoints.len().max(1))) }
            }
            Algorithm::WeightedRoundRobin => Picker::SmoothWeighted { current: Mutex::new(vec![0; endpoints.len()]) },
            Algorithm::LeastConnections => Picker::LeastConnections { next: AtomicUsize::new(0) },
            Algorithm::PeakEwma => Picker::PeakEwma,
            Algorithm::ConsistentHash => {
                let ids: Vec<u64> = endpoints.iter().map(|e| e.id).collect();
                Picker::ConsistentHash { table: MaglevTable::new(&ids, &weights), fallback: AtomicUsize::new(0) }
            }
        };
        Self { name, endpoints, weights, picker, hash_on, passive }
    }

    /// Whether picks depend on measured latency (callers may skip timing otherwise).
    pub fn measures_latency(&self) -> bool {
        matches!(self.picker, Picker::PeakEwma)
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    pub fn endpoint(&self, i: usize) -> Option<&Arc<Endpoint>> {
        self.endpoints.get(i)
    }

    pub fn weight(&self, i: usize) -> u32 {
        self.weights.get(i).copied().unwrap_or(1)
    }

    #[inline]
    fn usable(&self, i: usize, now_ms: u64, tried: Tried<'_>) -> bool {
        self.endpoints[i].health.is_available(now_ms) && !tried.contains(&i)
    }

    /// The target whose id is `id`, if it can take traffic (sticky sessions).
    pub fn find_by_id(&self, id: u64, now_ms: u64) -> Option<usize> {
        self.endpoints.iter().position(|e| e.id == id).filter(|&i| self.endpoints[i].health.is_available(now_ms))
    }

    /// Pick a target. `key` is the hash of the balancing key for consistent
    /// hashing. Targets in `tried` are avoided while any other can serve.
    pub fn pick(&self, key: Option<u64>, tried: Tried<'_>, now_ms: u64) -> Option<usize> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let chosen = self.pick_among(key, tried, now_ms);
        if chosen.is_some() || tried.is_empty() {
            return chosen;
        }
        // Every untried target is unavailable: a retry may go back to one already tried.
        self.pick_among(key, &[], now_ms)
    }

    fn pick_among(&self, key: Option<u64>, tried: Tried<'_>, now_ms: u64) -> Option<usize> {
        let n = self.endpoints.len();
        match &self.picker {
            Picker::RoundRobin { next } => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| self.usable(i, now_ms, tried))
            }
            Picker::SmoothWeighted { current } => {
                // A poisoned lock only means another request panicked mid-pick;
                // the weights are still usable.
                let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
                let mut total = 0i64;
                let mut best: Option<usize> = None;
                for i in 0..n {
                    if !self.usable(i, now_ms, tried) {
                        continue;
                    }
                    let w = i64::from(self.weights[i]);
                    current[i] += w;
                    total += w;
                    if best.is_none_or(|b| current[i] > current[b]) {
                        best = Some(i);
                    }
                }
                if let Some(b) = best {
                    current[b] -= total;
                }
                best
            }
            Picker::LeastConnections { next } => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                let mut best: Option<(usize, u64, u64)> = None;
                for k in 0..n {
                    let i = (start + k) % n;
                    if !self.usable(i, now_ms, tried) {
                        continue;
                    }
                    let load = u64::from(self.endpoints[i].in_flight()) + 1;
                    let w = u64::from(self.weights[i]);
                    // load/w < best_load/best_w, without division.
                    if best.is_none_or(|(_, bl, bw)| load * bw < bl * w) {
                        best = Some((i, load, w));
                    }
                }
                best.map(|(i, _, _)| i)
            }
            Picker::PeakEwma => {
                let a = self.random_usable(n, now_ms, tried, None)?;
                let Some(b) = self.random_usable(n, now_ms, tried, Some(a)) else {
                    return Some(a);
                };
                let cost =
                    |i: usize| self.endpoints[i].latency.cost(self.endpoints[i].in_flight(), self.weights[i], now_ms);
                Some(if cost(b) < cost(a) { b } else { a })
            }
            Picker::ConsistentHash { table, fallback } => {
                if !(0..n).any(|i| self.usable(i, now_ms, tried)) {
                    return None;
                }
                match key {
                    Some(k) => table.lookup(k, |i| self.usable(i, now_ms, tried)),
                    None => {
                        let start = fallback.fetch_add(1, Ordering::Relaxed);
                        (0..n).map(|k| (start + k) % n).find(|&i| self.usable(i, now_ms, tried))
                    }
                }
            }
        }
    }

    fn random_usable(&self, n: usize, now_ms: u64, tried: Tried<'_>, not: Option<usize>) -> Option<usize> {
        let start = fastrand::usize(..n);
        (0..n).map(|k| (start + k) % n).find(|&i| Some(i) != not && self.usable(i, now_ms, tried))
    }

    /// Feed the outcome of a request to passive outlier detection. Returns the
    /// ejection length when this failure ejected the target.
    pub fn report(&self, i: usize, ok: bool, now_ms: u64) -> Option<u64> {
        let policy = self.passive.as_ref()?;
        let endpoint = self.endpoints.get(i)?;
        if ok {
            endpoint.health.record_success(policy, now_ms);
            return None;
        }
        endpoint.health.record_failure(policy, now_ms, || {
            // One more ejection must keep the ejected share within the limit,
            // so a pool of one is never emptied by its own errors.
            let ejected = self.endpoints.iter().filter(|e| e.health.is_ejected(now_ms)).count();
            (ejected + 1) * 100 <= self.endpoints.len() * policy.max_ejected_percent as usize
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::config::Algorithm;

    fn pool(alg: Algorithm, weights: &[u32]) -> Pool {
        let eps = (0..weights.len()).map(|i| Arc::new(Endpoint::new(&format!("10.0.0.{i}:80")))).collect();
        Pool::new("p".into(), eps, weights.to_vec(), alg, None, None)
    }

    fn counts(p: &Pool, picks: usize, key: impl Fn(usize) -> Option<u64>) -> Vec<usize> {
        let mut c = vec![0; p.endpoints.len()];
        for k in 0..picks {
            c[p.pick(key(k), &[], 0).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_rotates_and_skips_down_targets() {
        let p = pool(Algorithm::RoundRobin, &[1, 1, 1]);
        assert_eq!(counts(&p, 300, |_| None), vec![100, 100, 100]);
        p.endpoints[1].health.set_active_up(false);
        let c = counts(&p, 300, |_| None);
        assert_eq!(c[1], 0);
        assert_eq!(c[0] + c[2], 300);
    }

    #[test]
    fn smooth_weighted_is_exact_and_interleaved() {
        let p = pool(Algorithm::WeightedRoundRobin, &[5, 1, 1]);
        let seq: Vec<usize> = (0..7).map(|_| p.pick(None, &[], 0).unwrap()).collect();
        // nginx's smooth WRR: a a b a c a a
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(counts(&p, 700, |_| None), vec![500, 100, 100]);
    }

    #[test]
    fn least_connections_prefers_idle_targets() {
        let p = pool(Algorithm::LeastConnections, &[1, 1, 1]);
        let _g1 = p.endpoints[0].start();
        let _g2 = p.endpoints[0].start();
        let _g3 = p.endpoints[1].start();
        for _ in 0..10 {
            assert_eq!(p.pick(None, &[], 0), Some(2));
        }
        // Weight counts: 2 in flight on weight 4 beats 0 in flight on weight 1? (2+1)/4 < (0+1)/1
        let w = pool(Algorithm::LeastConnections, &[4, 1]);
        let _a = w.endpoints[0].start();
        let _b = w.endpoints[0].start();
        assert_eq!(w.pick(None, &[], 0), Some(0));
    }

    #[test]
    fn peak_ewma_avoids_slow_targets() {
        let p = pool(Algorithm::PeakEwma, &[1, 1, 1]);
        p.endpoints[0].observe_latency(Duration::from_millis(200), 0);
        p.endpoints[1].observe_latency(Duration::from_millis(1), 0);
        p.endpoints[2].observe_latency(Duration::from_millis(1), 0);
        let c = counts(&p, 3000, |_| None);
        // The slow one only wins when both choices are itself, which P2C never draws.
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > 1000 && c[2] > 1000, "{c:?}");
    }

    #[test]
    fn consistent_hash_is_stable_and_fails_over() {
        let p = pool(Algorithm::ConsistentHash, &[1, 1, 1, 1]);
        let owner: Vec<usize> =
            (0..1000u64).map(|k| p.pick(Some(hash_key(&k.to_le_bytes())), &[], 0).unwrap()).collect();
        let again: Vec<usize> =
            (0..1000u64).map(|k| p.pick(Some(hash_key(&k.to_le_bytes())), &[], 0).unwrap()).collect();
        assert_eq!(owner, again);
        p.endpoints[2].health.set_active_up(false);
        for k in 0..1000u64 {
            let now = p.pick(Some(hash_key(&k.to_le_bytes())), &[], 0).unwrap();
            assert_ne!(now, 2);
            if owner[k as usize] != 2 {
                assert_eq!(now, owner[k as usize], "keys of healthy targets stay put");
            }
        }
    }

    #[test]
    fn retries_avoid_tried_targets_when_they_can() {
        let p = pool(Algorithm::RoundRobin, &[1, 1]);
        for _ in 0..10 {
            assert_eq!(p.pick(None, &[0], 0), Some(1));
        }
        p.endpoints[1].health.set_active_up(false);
        assert_eq!(p.pick(None, &[0], 0), Some(0));
    }

    #[test]
    fn no_available_target() {
        let p = pool(Algorithm::LeastConnections, &[1, 1]);
        for e in &p.endpoints {
            e.health.set_active_up(false);
        }
        assert_eq!(p.pick(None, &[], 0), None);
    }
}
