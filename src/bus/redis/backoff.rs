//! How long a Redis connection waits before it tries again.

use std::time::Duration;

/// Reconnection delays: doubling from 100 ms to at most 5 s, each one drawn
/// from its upper half so that shards and instances do not reconnect in step.
pub struct Backoff {
    next: Duration,
}

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_DELAY }
    }
}

impl Backoff {
    pub fn reset(&mut self) {
        self.next = FIRST_DELAY;
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        ceiling.mul_f64(rand::random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= FIRST_DELAY / 2 && delays[0] <= FIRST_DELAY);
        assert!(delays.iter().all(|d| *d <= MAX_DELAY));
        assert!(delays[9] >= MAX_DELAY / 2);
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST_DELAY);
    }
}
