//! What the accept loop does when accepting fails. Out of descriptors
//! (EMFILE, ENFILE) every retry fails until some connection closes, so it
//! pauses longer than after other failures; and however often it fails, it
//! logs at most one line a second, counting the failures it did not log.

use std::io;
use std::time::{Duration, Instant};

use tracing::warn;

/// Pause after a failed accept before retrying.
const BACKOFF: Duration = Duration::from_millis(20);
/// Pause when the process or the system is out of file descriptors: the
/// kernel keeps the waiting connections in the listen backlog meanwhile.
const OUT_OF_DESCRIPTORS_BACKOFF: Duration = Duration::from_millis(200);
/// At most one `accept failed` line per shard this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Failures {
    logged_at: Option<Instant>,
    /// Failures since the last line.
    unlogged: u64,
}

impl Failures {
    /// Notes a failed accept; returns how long to wait before the next.
    pub fn record(&mut self, error: &io::Error) -> Duration {
        let now = Instant::now();
        if self.logged_at.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            warn!(error = %error, unlogged = self.unlogged, "accept failed");
            self.logged_at = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        match error.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => OUT_OF_DESCRIPTORS_BACKOFF,
            _ => BACKOFF,
        }
    }
}
