//! Peak-EWMA latency estimate (as in Finagle and Linkerd): jumps up to a slow
//! response at once, decays back over `TAU`; the cost also decays while a
//! target is not picked, so a once-slow target gets probed again.

use std::sync::atomic::{AtomicU64, Ordering};

const TAU_MS: f64 = 10_000.0;

#[derive(Debug, Default)]
pub struct PeakEwma {
    /// f64 bits, nanoseconds.
    value: AtomicU64,
    stamp_ms: AtomicU64,
}

impl PeakEwma {
    pub fn observe(&self, rtt_ns: u64, now_ms: u64) {
        let prev = f64::from_bits(self.value.load(Ordering::Relaxed));
        let rtt = rtt_ns as f64;
        let next = if rtt > prev {
            rtt
        } else {
            let dt = now_ms.saturating_sub(self.stamp_ms.load(Ordering::Relaxed)) as f64;
            let w = (-dt / TAU_MS).exp();
            prev * w + rtt * (1.0 - w)
        };
        self.value.store(next.to_bits(), Ordering::Relaxed);
        self.stamp_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Latency estimate × load, per unit of weight.
    pub fn cost(&self, in_flight: u32, weight: u32, now_ms: u64) -> f64 {
        let value = f64::from_bits(self.value.load(Ordering::Relaxed));
        let dt = now_ms.saturating_sub(self.stamp_ms.load(Ordering::Relaxed)) as f64;
        let decayed = value * (-dt / TAU_MS).exp();
        (decayed + 1_000.0) * f64::from(in_flight + 1) / f64::from(weight.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_then_decays() {
        let e = PeakEwma::default();
        e.observe(1_000_000, 0);
        e.observe(100_000_000, 1); // a slow answer counts at once
        assert!(e.cost(0, 1, 1) > 90_000_000.0);
        e.observe(1_000_000, 20_000); // two time constants later, fast again
        assert!(e.cost(0, 1, 20_000) < 20_000_000.0);
        assert!(e.cost(3, 1, 20_000) > e.cost(0, 1, 20_000) * 3.5);
    }
}
