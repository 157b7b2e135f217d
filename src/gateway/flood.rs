//! Per-connection flood control (README, Client protocol): a bucket of 200 messages refilled
//! at 100 a second; a message beyond it is refused with `rate_limited`, and
//! after 100 refusals the connection is closed with 1008.

use std::time::Instant;

const BURST: f64 = 200.0;
const PER_SECOND: f64 = 100.0;
const REFUSALS_BEFORE_CLOSE: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse,
    Close,
}

pub struct FloodGate {
    tokens: f64,
    refilled: Instant,
    refusals: u32,
}

impl FloodGate {
    pub fn new(now: Instant) -> Self {
        Self { tokens: BURST, refilled: now, refusals: 0 }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * PER_SECOND).min(BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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
}
