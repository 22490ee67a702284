//! Region-wide budgets in Redis. `exact`: one atomic script per request (all
//! limits checked and counted together, on Redis's clock). `batched`: the
//! node decides locally from the region's counts as of the last exchange plus
//! its own admissions since, and exchanges deltas every interval in one
//! pipelined round trip. Other nodes' admissions since the last exchange are
//! invisible, so the region can overshoot by at most what all nodes admit in
//! one interval (≤ nodes × per-node rate × interval).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::local::{Rate, Verdict};
use crate::kv::{KvError, RegionStore};

static EXACT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(EXACT_LUA));

/// KEYS: one per limit (same hash slot). ARGV: algorithm (`g`/`s`), then
/// requests and window (ms) per limit. Returns `[allowed, ok1, remaining1, reset1, ...]`.
const EXACT_LUA: &str = r#"
local algo = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {1}
local commits = {}
for i = 1, #KEYS do
  local req = tonumber(ARGV[2 * i])
  local win = tonumber(ARGV[2 * i + 1])
  if algo == 'g' then
    local T = win / req
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    local nxt = tat + T
    if nxt - now > win + 0.000001 then
      out[1] = 0
      table.insert(out, 0)
      table.insert(out, 0)
      table.insert(out, math.max(1, math.ceil(nxt - win - now)))
    else
      table.insert(commits, {KEYS[i], tostring(nxt), math.ceil(nxt - now) + 1})
      table.insert(out, 1)
      table.insert(out, math.floor((win - (nxt - now)) / T))
      table.insert(out, math.ceil(nxt - now))
    end
  else
    local idx = math.floor(now / win)
    local cur = tonumber(redis.call('GET', KEYS[i] .. ':' .. idx) or '0')
    local prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (idx - 1)) or '0')
    local est = prev * (1 - (now % win) / win) + cur
    local reset = win - (now % win)
    if est + 1 > req + 0.000001 then
      out[1] = 0
      table.insert(out, 0)
      table.insert(out, 0)
      table.insert(out, reset)
    else
      table.insert(commits, {KEYS[i] .. ':' .. idx, false, win * 2})
      table.insert(out, 1)
      table.insert(out, math.max(0, math.floor(req - est - 1)))
      table.insert(out, reset)
    end
  end
end
if out[1] == 1 then
  for _, c in ipairs(commits) do
    if c[2] then
      redis.call('SET', c[1], c[2], 'PX', c[3])
    else
      redis.call('INCR', c[1])
      redis.call('PEXPIRE', c[1], c[3])
    end
  end
end
return out
"#;

/// Redis keys of a limited key: one hash slot for all its limits.
pub fn redis_keys(route: &str, key: &str, rates: &[Rate]) -> Vec<String> {
    (0..rates.len()).map(|i| format!("meridian:rl:{{{route}|{key}}}:{i}")).collect()
}

/// One atomic check of every limit.
pub async fn exact(
    store: &RegionStore,
    route: &str,
    key: &str,
    rates: &[Rate],
    gcra: bool,
) -> Result<Vec<Verdict>, KvError> {
    let mut inv = EXACT.prepare_invoke();
    for k in redis_keys(route, key, rates) {
        inv.key(k);
    }
    inv.arg(if gcra { "g" } else { "s" });
    for r in rates {
        inv.arg(r.requests).arg(r.window_ms);
    }
    let out: Vec<i64> = store.script(&inv).await?;
    Ok((0..rates.len())
        .map(|i| {
            let at = |j: usize| out.get(1 + 3 * i + j).copied().unwrap_or(0).max(0) as u64;
            Verdict { allowed: at(0) == 1, remaining: at(1), reset_ms: at(2) }
        })
        .collect())
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    index: u64,
    /// The region's count for `index` at the last exchange (ours included).
    synced: u64,
    /// The region's count for `index - 1`.
    previous: u64,
    /// Admitted here since the last exchange.
    local: u64,
    last_used_ms: u64,
}

/// Keys a batched limiter exchanges with the region at most; past that the
/// least recently used key is dropped from the exchange (its next request
/// starts from the region's count again).
pub const MAX_ACTIVE_KEYS: usize = 16 * 1024;

/// Batched counting for one route.
pub struct Batcher {
    route: Arc<str>,
    rates: Vec<Rate>,
    /// key → one counter per limit; bounded, least recently used first out.
    counters: Mutex<lru::LruCache<String, Vec<Counter>>>,
    /// (key, limit, window index) → admissions not yet sent.
    pending: Mutex<HashMap<(String, usize, u64), u64>>,
}

impl Batcher {
    pub fn new(route: Arc<str>, rates: Vec<Rate>) -> Arc<Self> {
        let cap = std::num::NonZeroUsize::new(MAX_ACTIVE_KEYS).unwrap_or(std::num::NonZeroUsize::MIN);
        Arc::new(Self {
            route,
            rates,
            counters: Mutex::new(lru::LruCache::new(cap)),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// Decide from the last exchanged counts plus this node's admissions; no I/O.
    pub fn check(&self, key: &str, now_ms: u64) -> Vec<Verdict> {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let rates = self.rates.len();
        let cs = counters.get_or_insert_mut_ref(key, || vec![Counter::default(); rates]);
        let mut verdicts = Vec::with_capacity(self.rates.len());
        for (c, rate) in cs.iter_mut().zip(&self.rates) {
            let index = now_ms / rate.window_ms;
            if c.index != index {
                c.previous = if index == c.index + 1 { c.synced + c.local } else { 0 };
                c.synced = 0;
                c.local = 0;
                c.index = index;
            }
            c.last_used_ms = now_ms;
            let into = (now_ms % rate.window_ms) as f64 / rate.window_ms as f64;
            let est = c.previous as f64 * (1.0 - into) + (c.synced + c.local) as f64;
            verdicts.push(Verdict {
                allowed: est + 1.0 <= rate.requests as f64 + 1e-9,
                remaining: (rate.requests as f64 - est - 1.0).floor().max(0.0) as u64,
                reset_ms: rate.window_ms - now_ms % rate.window_ms,
            });
        }
        if verdicts.iter().all(|v| v.allowed) {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (i, c) in cs.iter_mut().enumerate() {
                c.local += 1;
                match pending.get_mut(&(key.to_string(), i, c.index)) {
                    Some(n) => *n += 1,
                    None => {
                        pending.insert((key.to_string(), i, c.index), 1);
                    }
                }
            }
        }
        verdicts
    }

    /// One exchange: send pending admissions, learn every active counter's region-wide count.
    pub async fn sync(&self, store: &RegionStore, now_ms: u64) -> Result<(), KvError> {
        let sent: HashMap<(String, usize, u64), u64> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let active: Vec<(String, usize, Counter)> = {
            let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            let longest = self.rates.iter().map(|r| r.window_ms).max().unwrap_or(0);
            // Least recently used first: drop from the cold end while idle.
            while counters
                .peek_lru()
                .is_some_and(|(_, cs)| cs.iter().all(|c| now_ms.saturating_sub(c.last_used_ms) > 2 * longest))
            {
                counters.pop_lru();
            }
            counters.iter().flat_map(|(k, cs)| cs.iter().enumerate().map(move |(i, c)| (k.clone(), i, *c))).collect()
        };
        if active.is_empty() && sent.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut reads = Vec::new();
        for (key, i, c) in &active {
            let rk = &redis_keys(&self.route, key, &self.rates)[*i];
            let delta = sent.get(&(key.clone(), *i, c.index)).copied().unwrap_or(0);
            pipe.cmd("INCRBY").arg(format!("{rk}:{}", c.index)).arg(delta);
            pipe.cmd("PEXPIRE").arg(format!("{rk}:{}", c.index)).arg(self.rates[*i].window_ms * 2).ignore();
            pipe.cmd("GET").arg(format!("{rk}:{}", c.index.saturating_sub(1)));
            reads.push((key.clone(), *i, c.index, delta));
        }
        // Admissions of windows that are no longer active still count.
        for ((key, i, index), delta) in &sent {
            if !reads.iter().any(|(k, j, idx, _)| k == key && j == i && idx == index) {
                let rk = &redis_keys(&self.route, key, &self.rates)[*i];
                pipe.cmd("INCRBY").arg(format!("{rk}:{index}")).arg(*delta).ignore();
            }
        }
        let result: Result<Vec<(u64, Option<u64>)>, KvError> = store.pipeline(pipe).await;
        match result {
            Ok(values) => {
                let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
                for ((key, i, index, delta), (count, prev)) in reads.into_iter().zip(values) {
                    if let Some(c) = counters.peek_mut(&key).and_then(|cs| cs.get_mut(i)) {
                        if c.index == index {
                            c.synced = count;
                            c.local = c.local.saturating_sub(delta);
                            c.previous = prev.unwrap_or(0);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Keep the admissions for the next exchange.
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (k, d) in sent {
                    *pending.entry(k).or_default() += d;
                }
                Err(e)
            }
        }
    }

    /// Exchange every `interval` until `shutdown` or until the route's limiter is gone.
    pub fn spawn(self: &Arc<Self>, store: Arc<RegionStore>, interval: Duration, shutdown: CancellationToken) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = meridian_core::clock::Ticker::new(interval, shutdown.clone());
            while tick.next().await {
                let Some(me) = weak.upgrade() else { return };
                if store.available() {
                    let _ = me.sync(&store, meridian_core::clock::unix_ms()).await;
                }
            }
        });
    }
}
