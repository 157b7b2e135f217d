//! How one Redis connection's outages are logged: the first failure, then a
//! summary a minute while it lasts, then the recovery with how long it took.
//! One line per reconnection attempt would flood the log during an outage.

use std::fmt::Display;
use std::time::{Duration, Instant};

use tracing::{info, warn};

const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// The outage log of one connection (`link`: "subscriber" or "publisher").
pub struct Outage {
    link: &'static str,
    down: Option<Down>,
    connected_once: bool,
}

struct Down {
    since: Instant,
    attempts: u32,
    last_said: Instant,
}

impl Outage {
    pub fn new(link: &'static str) -> Self {
        Self { link, down: None, connected_once: false }
    }

    /// The connection was lost or an attempt to connect failed.
    pub fn failed(&mut self, error: &impl Display) {
        let now = Instant::now();
        match &mut self.down {
            None => {
                warn!(link = self.link, error = %error, "redis link down; reconnecting with backoff");
                self.down = Some(Down { since: now, attempts: 1, last_said: now });
            }
            Some(down) => {
                down.attempts += 1;
                if now.duration_since(down.last_said) >= SUMMARY_EVERY {
                    down.last_said = now;
                    warn!(
                        link = self.link,
                        error = %error,
                        attempts = down.attempts,
                        down_s = down.since.elapsed().as_secs(),
                        "redis link still down"
                    );
                }
            }
        }
    }

    /// The connection is up (again).
    pub fn connected(&mut self) {
        match self.down.take() {
            Some(down) => info!(
                link = self.link,
                attempts = down.attempts,
                down_ms = down.since.elapsed().as_millis() as u64,
                "redis link recovered"
            ),
            None if !self.connected_once => info!(link = self.link, "redis link connected"),
            None => {}
        }
        self.connected_once = true;
    }
}
