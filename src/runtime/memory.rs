//! Hands memory back to the system after a crowd of connections has gone.
//! glibc keeps what each shard's thread freed in that thread's arena for
//! reuse, and gives back only the top of a heap: after 5,000 kept-alive HTTP
//! connections came and went, 42 MB of 122 MB stayed resident for good (and
//! 63 of 80 MB after 10,000 idle sockets); one `malloc_trim(0)` brought it
//! to 11 MB (benches/attack_rss.py). jemalloc kept 94 MB 30 s later, and
//! `MALLOC_ARENA_MAX=2` changed nothing. So each shard counts the
//! connections it holds, routed or not, and when that count has fallen by
//! [`TRIM_AFTER`] from its peak, it trims once. Only then: a trim walks every
//! arena under its lock (10-26 ms after those 5,000), which no steady state
//! needs.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::debug;

/// Connections that must have closed, from the peak, before a trim.
const TRIM_AFTER: usize = 1024;
/// How often a shard looks.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The connections one shard holds.
#[derive(Default)]
pub struct Census {
    open: Cell<usize>,
    /// The most open since the last trim.
    peak: Cell<usize>,
}

impl Census {
    /// Counts a connection in for as long as the returned guard lives.
    pub fn enter(self: &Rc<Self>) -> Held {
        let open = self.open.get() + 1;
        self.open.set(open);
        self.peak.set(self.peak.get().max(open));
        Held { census: self.clone() }
    }
}

/// One counted connection.
pub struct Held {
    census: Rc<Census>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.census.open.set(self.census.open.get() - 1);
    }
}

/// The shard's watch over its census, for its whole life.
pub async fn run(census: Rc<Census>) {
    loop {
        glommio::timer::sleep(CHECK_EVERY).await;
        let open = census.open.get();
        if census.peak.get() - open >= TRIM_AFTER {
            let started = Instant::now();
            trim();
            debug!(peak = census.peak.get(), open, took = ?started.elapsed(), "freed memory handed back");
            census.peak.set(open);
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
