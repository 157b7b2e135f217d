//! Hands memory back to the system after a crowd of connections has gone.
//! glibc keeps what each shard's thread freed in that thread's arena for
//! reuse, and gives back only the top of a heap: after 5,000 kept-alive HTTP
//! connections came and went, 42 MB of 122 MB stayed resident for good (and
//! 63 of 80 MB after 10,000 idle sockets); one `malloc_trim(0)` brought it
//! to 11 MB (benches/attack_rss.py). jemalloc kept 94 MB 30 s later, and
//! `MALLOC_ARENA_MAX=2` changed nothing. So each shard counts the
//! connections it holds, routed or not, and trims when that count has fallen
//! by [`TRIM_AFTER`] from its peak, or when [`CHURN_AFTER`] connections have
//! closed since its last trim and that was [`CHURN_GAP`] ago: churn that
//! never drops the count far (connections coming and going) fragments the
//! arenas just as well, and kept 329 MB with no connection left. A trim
//! walks every arena under its lock (10-26 ms after those 5,000), so churn
//! trims at most once per [`CHURN_GAP`], and a shard where nothing closes
//! never trims.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tracing::debug;

/// Connections that must have closed, from the peak, before a trim.
const TRIM_AFTER: usize = 1024;
/// Closes since the last trim that are churn worth a trim.
const CHURN_AFTER: usize = 256;
/// The least time between two trims for churn.
const CHURN_GAP: Duration = Duration::from_secs(30);
/// How often a shard looks.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The connections one shard holds.
#[derive(Default)]
pub struct Census {
    open: Cell<usize>,
    /// The most open since the last trim.
    peak: Cell<usize>,
    /// Closed since the last trim.
    closed: Cell<usize>,
}

impl Census {
    /// Counts a connection in for as long as the returned guard lives.
    pub fn enter(self: &Rc<Self>) -> Held {
        let open = self.open.get() + 1;
        self.open.set(open);
        self.peak.set(self.peak.get().max(open));
        Held { census: self.clone() }
    }

    /// Whether what closed since the last trim (`last`, `None` before the
    /// first) is worth one now.
    fn worth_a_trim(&self, last: Option<Instant>) -> bool {
        let dropped = self.peak.get() - self.open.get() >= TRIM_AFTER;
        let churned = self.closed.get() >= CHURN_AFTER && last.is_none_or(|at| at.elapsed() >= CHURN_GAP);
        dropped || churned
    }

    fn trimmed(&self) {
        self.peak.set(self.open.get());
        self.closed.set(0);
    }
}

/// One counted connection.
pub struct Held {
    census: Rc<Census>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.census.open.set(self.census.open.get() - 1);
        self.census.closed.set(self.census.closed.get() + 1);
    }
}

/// The shard's watch over its census, for its whole life; `trims` counts
/// each trim.
pub async fn run(census: Rc<Census>, trims: Counter) {
    let mut last = None;
    loop {
        glommio::timer::sleep(CHECK_EVERY).await;
        if census.worth_a_trim(last) {
            let started = Instant::now();
            trim();
            trims.inc();
            debug!(
                peak = census.peak.get(),
                open = census.open.get(),
                closed = census.closed.get(),
                took = ?started.elapsed(),
                "freed memory handed back"
            );
            census.trimmed();
            last = Some(started);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes the allocator's own locks; it is safe to
    // call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators give memory back on their own schedule.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn churned(census: &Rc<Census>, connections: usize) {
        let held: Vec<Held> = (0..connections).map(|_| census.enter()).collect();
        drop(held);
    }

    #[test]
    fn churn_is_trimmed_at_most_once_per_gap() {
        let census = Rc::new(Census::default());
        let _stays = census.enter();
        churned(&census, CHURN_AFTER - 1);
        assert!(!census.worth_a_trim(None), "too little closed");
        churned(&census, 1);
        assert!(census.worth_a_trim(None));
        assert!(!census.worth_a_trim(Some(Instant::now())), "trimmed a moment ago");
        census.trimmed();
        assert!(!census.worth_a_trim(None), "nothing closed since");
    }

    #[test]
    fn a_crowd_leaving_is_trimmed_at_once() {
        let census = Rc::new(Census::default());
        churned(&census, TRIM_AFTER);
        assert!(census.worth_a_trim(Some(Instant::now())));
    }
}
