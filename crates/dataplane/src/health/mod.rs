//! Target health: the state a pool consults before picking a target, fed by
//! active HTTP probes ([`active`]) and by the outcome of real requests
//! (passive outlier ejection).

pub mod active;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use std::time::Duration;

/// Passive ejection policy of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassivePolicy {
    pub consecutive_failures: u32,
    pub base_ejection_ms: u64,
    pub max_ejection_ms: u64,
    pub max_ejected_percent: u32,
}

impl PassivePolicy {
    pub fn new(consecutive_failures: u32, base: Duration, max: Duration, max_ejected_percent: u32) -> Self {
        Self {
            consecutive_failures: consecutive_failures.max(1),
            base_ejection_ms: base.as_millis() as u64,
            max_ejection_ms: max.as_millis().max(base.as_millis()) as u64,
            max_ejected_percent,
        }
    }

    /// Ejection length for the `n`-th consecutive ejection (0-based): doubles, capped.
    pub fn ejection_ms(&self, n: u32) -> u64 {
        let factor = 1u64.checked_shl(n.min(32)).unwrap_or(u64::MAX);
        self.base_ejection_ms.saturating_mul(factor).min(self.max_ejection_ms)
    }
}

/// Health of one target in one pool. Shared across config versions so a
/// reload does not forget that a target is down.
#[derive(Debug)]
pub struct TargetHealth {
    active_up: AtomicBool,
    consecutive_failures: AtomicU32,
    /// 0 when not ejected.
    ejected_until_ms: AtomicU64,
    /// Consecutive ejections, for the back-off; forgotten after a long healthy spell.
    ejections: AtomicU32,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl TargetHealth {
    /// A new target is assumed up: a pool must not answer 503 while its first probes run.
    pub fn new() -> Self {
        Self {
            active_up: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
        }
    }

    #[inline]
    pub fn is_available(&self, now_ms: u64) -> bool {
        self.active_up.load(Ordering::Relaxed) && !self.is_ejected(now_ms)
    }

    #[inline]
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until_ms.load(Ordering::Relaxed)
    }

    pub fn active_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    pub fn set_active_up(&self, up: bool) {
        self.active_up.store(up, Ordering::Relaxed);
    }

    pub fn ejected_until_ms(&self) -> u64 {
        self.ejected_until_ms.load(Ordering::Relaxed)
    }

    /// A request to this target succeeded.
    #[inline]
    pub fn record_success(&self, policy: &PassivePolicy, now_ms: u64) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0
            && now_ms > self.ejected_until_ms.load(Ordering::Relaxed) + policy.max_ejection_ms
        {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A request to this target failed. Returns the ejection length when this
    /// failure ejects it; `may_eject` says whether the pool can spare it.
    pub fn record_failure(&self, policy: &PassivePolicy, now_ms: u64, may_eject: impl FnOnce() -> bool) -> Option<u64> {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < policy.consecutive_failures || self.is_ejected(now_ms) || !may_eject() {
            return None;
        }
        let k = self.ejections.fetch_add(1, Ordering::Relaxed);
        let length = policy.ejection_ms(k);
        self.ejected_until_ms.store(now_ms + length, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        Some(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PassivePolicy {
        PassivePolicy::new(3, Duration::from_secs(1), Duration::from_secs(5), 50)
    }

    #[test]
    fn ejects_after_consecutive_failures_with_backoff() {
        let p = policy();
        let h = TargetHealth::new();
        assert_eq!(h.record_failure(&p, 0, || true), None);
        assert_eq!(h.record_failure(&p, 0, || true), None);
        assert_eq!(h.record_failure(&p, 0, || true), Some(1000));
        assert!(!h.is_available(999));
        assert!(h.is_available(1000));
        for _ in 0..2 {
            h.record_failure(&p, 1000, || true);
        }
        assert_eq!(h.record_failure(&p, 1000, || true), Some(2000));
        assert_eq!(p.ejection_ms(10), 5000);
    }

    #[test]
    fn success_resets_the_streak() {
        let p = policy();
        let h = TargetHealth::new();
        h.record_failure(&p, 0, || true);
        h.record_failure(&p, 0, || true);
        h.record_success(&p, 0);
        assert_eq!(h.record_failure(&p, 0, || true), None);
    }

    #[test]
    fn pool_can_refuse_an_ejection() {
        let p = policy();
        let h = TargetHealth::new();
        for _ in 0..5 {
            assert_eq!(h.record_failure(&p, 0, || false), None);
        }
        assert!(h.is_available(0));
    }

    #[test]
    fn backoff_is_forgotten_after_a_healthy_spell() {
        let p = policy();
        let h = TargetHealth::new();
        for _ in 0..3 {
            h.record_failure(&p, 0, || true);
        }
        h.record_success(&p, 1000 + 5001);
        for _ in 0..3 {
            h.record_failure(&p, 7000, || true);
        }
        assert_eq!(h.ejected_until_ms(), 8000);
    }
}
