//! Bounded polling: every wait in the harness has a limit.

use std::time::{Duration, Instant};

/// The limit passed and the condition never held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out")
    }
}

/// Polls `ready` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, ready: impl FnMut() -> bool) -> Result<(), TimedOut> {
    poll(limit, Duration::from_millis(50), ready)
}

/// Polls `ready` every `every` until it holds or `limit` passes (checked once more at the end).
pub fn poll(
    limit: Duration,
    every: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), TimedOut> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(every);
    }
    if ready() {
        Ok(())
    } else {
        Err(TimedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_stops_at_the_limit_and_reports_success_once_ready() {
        let start = Instant::now();
        assert!(poll(
            Duration::from_millis(200),
            Duration::from_millis(20),
            || false
        )
        .is_err());
        assert!(start.elapsed() >= Duration::from_millis(200));
        let mut n = 0;
        assert!(poll(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            n == 3
        })
        .is_ok());
        assert_eq!(n, 3);
    }
}
