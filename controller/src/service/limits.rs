//! In-memory rate limits (token buckets by key): how often one source address may boot or
//! report (never keyed by the serial asked for: anyone can name any serial, and must not
//! spend that node's budget), and how often serials the registry does not know may be
//! recorded. They bound what a
//! flood can write; a restart forgets them, which is fine for that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Conflict events one source address may cause per minute: a refused request is answered
/// every time, recorded only this often.
pub const CONFLICTS_PER_MINUTE: u64 = 6;

/// Keys kept at most; past this, full buckets (idle keys) are dropped.
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` requests per key per minute, in bursts of up to as many; 0 = no limit.
    pub fn new(per_minute: u64) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until a spent key has a token again (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        if self.per_minute <= 0.0 {
            return 1;
        }
        (60.0 / self.per_minute).ceil().max(1.0) as u64
    }

    /// Takes one token for `key`; false when its budget is spent.
    pub fn allow(&self, key: &str) -> bool {
        if self.per_minute <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let cap = self.per_minute;
            let rate = cap / 60.0;
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < cap
            });
            if map.len() >= MAX_KEYS {
                return false;
            }
        }
        let (tokens, at) = map.entry(key.to_string()).or_insert((self.per_minute, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_minute / 60.0)
            .min(self.per_minute);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let l = RateLimiter::new(3);
        assert!((0..3).all(|_| l.allow("a")));
        assert!(!l.allow("a"), "burst spent");
        assert!(l.allow("b"), "per key");
        assert!((0..1000).all(|_| RateLimiter::new(0).allow("a")), "0 = off");
    }
}
