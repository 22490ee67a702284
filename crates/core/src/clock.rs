//! The two clocks of a node: monotonic milliseconds for timers and ages kept
//! in atomics, wall-clock milliseconds for what crosses processes (signed
//! reports, cache entries, limiter windows shared through Redis).

use std::sync::LazyLock;
use std::time::Instant;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Monotonic milliseconds since the process started: cheap to store in
/// atomics, never goes back.
pub fn mono_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// Milliseconds since the Unix epoch (0 if the clock is before it): for
/// values other processes read.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The loop of every refresher: wake every `period` (late ticks are
/// delayed, never bunched) until `shutdown`.
/// `while ticker.next().await { refresh(); }`
pub struct Ticker {
    interval: tokio::time::Interval,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Ticker {
    pub fn new(period: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { interval, shutdown }
    }

    /// Wait for the next tick: `false` once shutdown is asked.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = self.interval.tick() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_ticker_ticks_until_shutdown() {
        let stop = tokio_util::sync::CancellationToken::new();
        let mut t = Ticker::new(std::time::Duration::from_secs(1), stop.clone());
        let start = tokio::time::Instant::now();
        assert!(t.next().await);
        assert!(t.next().await);
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(1));
        stop.cancel();
        assert!(!t.next().await);
    }

    #[test]
    fn monotonic_time_does_not_go_back_and_wall_time_is_after_2020() {
        let a = mono_ms();
        let b = mono_ms();
        assert!(b >= a);
        assert!(unix_ms() > 1_577_836_800_000);
    }
}
