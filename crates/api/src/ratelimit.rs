use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Most buckets one limiter keeps (about 100 bytes each).
const MAX_BUCKETS: usize = 100_000;

/// Per-key token buckets: `rate` tokens a second, at most `burst` saved up.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            rate: rate.max(0.001),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; on refusal, the whole seconds until one is due.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    /// Gives back a token `check` took (the attempt turned out not to count).
    pub fn refund(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tokens, _)) = buckets.get_mut(key) {
            *tokens = (*tokens + 1.0).min(self.burst);
        }
    }

    /// Drops buckets that have refilled (they equal a fresh one); if callers
    /// still in debt alone exceed the bound, forgets them all: memory stays
    /// bounded whatever keys (addresses, guessed ids) callers make up.
    fn prune(&self, buckets: &mut HashMap<String, (f64, Instant)>, now: Instant) {
        if buckets.len() < MAX_BUCKETS {
            return;
        }
        buckets.retain(|_, (tokens, last)| {
            *tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate < self.burst
        });
        if buckets.len() >= MAX_BUCKETS {
            buckets.clear();
        }
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        self.prune(&mut buckets, now);
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_burst_then_refuses_then_refills() {
        let rl = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check_at("k", t0).is_ok());
        }
        assert_eq!(rl.check_at("k", t0), Err(1));
        assert!(rl.check_at("other", t0).is_ok(), "keys are independent");
        assert!(rl.check_at("k", t0 + Duration::from_millis(600)).is_ok());
    }

    #[test]
    fn refund_gives_back_at_most_the_burst() {
        let rl = RateLimiter::new(0.001, 2.0);
        let t0 = Instant::now();
        assert!(rl.check_at("k", t0).is_ok());
        assert!(rl.check_at("k", t0).is_ok());
        assert!(rl.check_at("k", t0).is_err());
        rl.refund("k");
        rl.refund("k");
        rl.refund("k");
        assert!(rl.check_at("k", t0).is_ok());
        assert!(rl.check_at("k", t0).is_ok());
        assert!(
            rl.check_at("k", t0).is_err(),
            "refunds never exceed the burst"
        );
    }

    #[test]
    fn made_up_keys_do_not_grow_memory_without_bound() {
        let rl = RateLimiter::new(1.0, 1.0);
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS + 10 {
            let _ = rl.check_at(&format!("k{i}"), t0);
        }
        assert!(rl.buckets.lock().unwrap().len() <= MAX_BUCKETS);
        // A caller still in debt survives the pruning of refilled buckets.
        let later = t0 + Duration::from_secs(5);
        let _ = rl.check_at("in-debt", later);
        for i in 0..MAX_BUCKETS - 2 {
            let _ = rl.check_at(&format!("again{i}"), later);
        }
        assert!(rl.check_at("in-debt", later).is_err());
    }
}
