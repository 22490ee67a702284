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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_time_does_not_go_back_and_wall_time_is_after_2020() {
        let a = mono_ms();
        let b = mono_ms();
        assert!(b >= a);
        assert!(unix_ms() > 1_577_836_800_000);
    }
}
