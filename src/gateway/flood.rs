//! Per-connection flood control (README, Client protocol): a bucket of 200 messages refilled
//! at 100 a second; a message beyond it is refused with `rate_limited`, and
//! after 100 refusals the connection is closed with 1008. Presence queries
//! have a bucket of their own (README, Presence and control): 10, refilled
//! at 2 a second; one beyond it is refused, never a reason to close.

use std::time::Instant;

const REFUSALS_BEFORE_CLOSE: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse,
    Close,
}

/// Tokens refilled at a steady rate up to a burst.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    refilled: Instant,
    burst: f64,
    per_second: f64,
}

impl Bucket {
    fn full(now: Instant, burst: f64, per_second: f64) -> Self {
        Self { tokens: burst, refilled: now, burst, per_second }
    }

    /// A connection's presence queries.
    pub fn presence(now: Instant) -> Self {
        Self::full(now, 10.0, 2.0)
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled = now;
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        allowed
    }
}

pub struct FloodGate {
    bucket: Bucket,
    refusals: u32,
}

impl FloodGate {
    pub fn new(now: Instant) -> Self {
        Self { bucket: Bucket::full(now, 200.0, 100.0), refusals: 0 }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.bucket.take(now) {
            return Verdict::Allow;
        }
        self.refusals += 1;
        if self.refusals > REFUSALS_BEFORE_CLOSE {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn burst_then_refuse_then_close() {
        let now = Instant::now();
        let mut gate = FloodGate::new(now);
        assert!((0..200).all(|_| gate.check(now) == Verdict::Allow));
        assert!((0..100).all(|_| gate.check(now) == Verdict::Refuse));
        assert_eq!(gate.check(now), Verdict::Close);
    }

    #[test]
    fn refills_at_the_rate() {
        let now = Instant::now();
        let mut gate = FloodGate::new(now);
        for _ in 0..200 {
            gate.check(now);
        }
        let later = now + Duration::from_millis(100);
        assert!((0..10).all(|_| gate.check(later) == Verdict::Allow));
        assert_eq!(gate.check(later), Verdict::Refuse);
    }

    #[test]
    fn presence_has_its_own_smaller_bucket() {
        let now = Instant::now();
        let mut bucket = Bucket::presence(now);
        assert!((0..10).all(|_| bucket.take(now)));
        assert!(!bucket.take(now));
        assert!(
            bucket.take(now + Duration::from_millis(500)) && !bucket.take(now + Duration::from_millis(500))
        );
    }
}
