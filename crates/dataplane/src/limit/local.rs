//! In-process counting: GCRA and the sliding-window counter, sharded by key.
//! Pure arithmetic on explicit timestamps, so it is tested without a clock.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// One limit: `requests` per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests: u64,
    pub window_ms: u64,
}

/// The outcome against one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub remaining: u64,
    /// Seconds until the quota is whole again (allowed) or until a retry can pass (denied).
    pub reset_ms: u64,
}

/// GCRA: a request is a cell of `window/requests`; the theoretical arrival
/// time (`tat`) may run at most one window ahead of now (burst = `requests`).
pub fn gcra(tat: &mut f64, now: f64, rate: Rate) -> Verdict {
    let t = rate.window_ms as f64 / rate.requests as f64;
    let w = rate.window_ms as f64;
    let base = tat.max(now);
    let next = base + t;
    if next - now > w + 1e-9 {
        return Verdict { allowed: false, remaining: 0, reset_ms: (next - w - now).ceil().max(1.0) as u64 };
    }
    *tat = next;
    let remaining = ((w - (next - now)) / t).floor().max(0.0) as u64;
    Verdict { allowed: true, remaining, reset_ms: (next - now).ceil() as u64 }
}

/// Sliding-window counter: the previous fixed window counts in proportion to
/// how much of it still overlaps the last `window_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub index: u64,
    pub current: u64,
    pub previous: u64,
}

pub fn estimate(w: &Window, now_ms: u64, rate: Rate) -> f64 {
    let into = (now_ms % rate.window_ms) as f64 / rate.window_ms as f64;
    w.previous as f64 * (1.0 - into) + w.current as f64
}

pub fn sliding(w: &mut Window, now_ms: u64, rate: Rate) -> Verdict {
    let index = now_ms / rate.window_ms;
    if index != w.index {
        w.previous = if index == w.index + 1 { w.current } else { 0 };
        w.current = 0;
        w.index = index;
    }
    let est = estimate(w, now_ms, rate);
    let reset_ms = rate.window_ms - now_ms % rate.window_ms;
    if est + 1.0 > rate.requests as f64 + 1e-9 {
        return Verdict { allowed: false, remaining: 0, reset_ms };
    }
    w.current += 1;
    let remaining = (rate.requests as f64 - est - 1.0).floor().max(0.0) as u64;
    Verdict { allowed: true, remaining, reset_ms }
}

#[derive(Debug, Clone)]
enum State {
    Gcra(Vec<f64>),
    Sliding(Vec<Window>),
}

#[derive(Debug)]
struct Slot {
    state: State,
}

const SHARDS: usize = 32;
/// Keys one route's limiter remembers on a node, at most; past that the
/// least recently used key is forgotten (its next request starts afresh).
/// Each entry is a 64-bit key hash and a few counters: about 64 bytes.
pub const MAX_KEYS: usize = 128 * 1024;
const SHARD_CAPACITY: NonZeroUsize = match NonZeroUsize::new(MAX_KEYS / SHARDS) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Per-key state of a route's limits on this node, bounded in entries and
/// bytes whatever keys clients invent.
pub struct LocalLimiter {
    rates: Vec<Rate>,
    gcra: bool,
    /// Keyed by a per-process keyed hash of the key: no client bytes stored.
    shards: Vec<Mutex<LruCache<u64, Slot>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl LocalLimiter {
    pub fn new(rates: Vec<Rate>, gcra: bool) -> Self {
        Self {
            rates,
            gcra,
            shards: (0..SHARDS).map(|_| Mutex::new(LruCache::new(SHARD_CAPACITY))).collect(),
            hasher: Default::default(),
        }
    }

    pub fn rates(&self) -> &[Rate] {
        &self.rates
    }

    /// Keys remembered now (all shards).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |m| m.len())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Check every limit for `key` at `now_ms`; counts only if all allow.
    pub fn check(&self, key: &str, now_ms: u64) -> Vec<Verdict> {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let slot = map.get_or_insert_mut(hash, || Slot {
            state: if self.gcra {
                State::Gcra(vec![0.0; self.rates.len()])
            } else {
                State::Sliding(vec![Window::default(); self.rates.len()])
            },
        });
        // Decide on a copy, commit only if every limit allows.
        let mut trial = slot.state.clone();
        let verdicts: Vec<Verdict> = match &mut trial {
            State::Gcra(tats) => tats.iter_mut().zip(&self.rates).map(|(t, r)| gcra(t, now_ms as f64, *r)).collect(),
            State::Sliding(ws) => ws.iter_mut().zip(&self.rates).map(|(w, r)| sliding(w, now_ms, *r)).collect(),
        };
        if verdicts.iter().all(|v| v.allowed) {
            slot.state = trial;
        }
        verdicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_keys_cannot_grow_the_state_past_its_bound() {
        let l = LocalLimiter::new(vec![Rate { requests: 1, window_ms: 60_000 }], false);
        for i in 0..MAX_KEYS + 20_000 {
            l.check(&format!("client-{i}"), 1_000);
        }
        assert!(l.len() <= MAX_KEYS, "{} keys kept", l.len());
        // A key seen recently is still counted.
        assert!(!l.check(&format!("client-{}", MAX_KEYS + 19_999), 1_001)[0].allowed);
    }
    use proptest::prelude::*;

    const R: Rate = Rate { requests: 10, window_ms: 1000 };

    #[test]
    fn gcra_bursts_then_paces() {
        let mut tat = 0.0;
        let allowed = (0..15).filter(|_| gcra(&mut tat, 0.0, R).allowed).count();
        assert_eq!(allowed, 10);
        let denied = gcra(&mut tat, 0.0, R);
        assert_eq!(denied.reset_ms, 100);
        assert!(gcra(&mut tat, 100.0, R).allowed);
        assert!(!gcra(&mut tat, 150.0, R).allowed);
    }

    #[test]
    fn sliding_window_weights_the_previous_window() {
        let mut w = Window::default();
        assert_eq!((0..15).filter(|_| sliding(&mut w, 100, R).allowed).count(), 10);
        // Half-way into the next window, half of the previous still counts.
        assert_eq!((0..15).filter(|_| sliding(&mut w, 1500, R).allowed).count(), 5);
    }

    #[test]
    fn all_limits_must_allow_and_only_then_count() {
        let l = LocalLimiter::new(
            vec![Rate { requests: 2, window_ms: 1000 }, Rate { requests: 3, window_ms: 60_000 }],
            true,
        );
        assert!(l.check("k", 0).iter().all(|v| v.allowed));
        assert!(l.check("k", 0).iter().all(|v| v.allowed));
        assert!(!l.check("k", 0).iter().all(|v| v.allowed));
        assert!(l.check("k", 1000).iter().all(|v| v.allowed));
        // The per-minute limit now stops it, though the per-second one has room.
        let v = l.check("k", 2500);
        assert!(v[0].allowed && !v[1].allowed);
        assert!(l.check("other", 2500).iter().all(|v| v.allowed));
    }

    proptest! {
        /// Whatever the arrival pattern, GCRA admits at most `requests` plus
        /// one per emission interval elapsed.
        #[test]
        fn gcra_never_exceeds_its_rate(gaps in proptest::collection::vec(0u64..300, 1..400)) {
            let mut tat = 0.0;
            let mut now = 0u64;
            let mut admitted = 0u64;
            for g in gaps {
                now += g;
                if gcra(&mut tat, now as f64, R).allowed {
                    admitted += 1;
                }
            }
            let bound = R.requests + now * R.requests / R.window_ms;
            prop_assert!(admitted <= bound, "admitted {} bound {}", admitted, bound);
        }

        /// The sliding-window counter never admits more than `requests` within
        /// one fixed window.
        #[test]
        fn sliding_window_caps_each_window(gaps in proptest::collection::vec(0u64..200, 1..400)) {
            let mut w = Window::default();
            let mut now = 0u64;
            let mut per_window = std::collections::HashMap::new();
            for g in gaps {
                now += g;
                if sliding(&mut w, now, R).allowed {
                    *per_window.entry(now / R.window_ms).or_insert(0u64) += 1;
                }
            }
            prop_assert!(per_window.values().all(|c| *c <= R.requests));
        }
    }
}
