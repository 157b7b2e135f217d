//! The closed loop's window: which published events have not yet reached
//! every subscriber. The publisher opens a slot per event; the fleet's
//! executors (other threads) count each subscriber's first receipt down; the
//! last one wakes the publisher. An HTTP answer says only that the server
//! took the event, so it cannot be what frees a place in the window.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use crate::cli::{self, MAX_WINDOW};

/// Slots, indexed by sequence number: more than the largest window, so an
/// event in flight never shares its slot with another in flight.
const SLOTS: usize = 4 * MAX_WINDOW;
/// A slot is `seq << COUNT_BITS | receivers still to reach`.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const _: () = assert!(cli::MAX_CONNS as u64 <= COUNT_MASK, "a slot must count every connection");

pub struct DeliveryWindow {
    slots: Box<[AtomicU64]>,
    /// Events that reached every receiver, so far.
    completions: AtomicU64,
    waker: AtomicWaker,
}

impl Default for DeliveryWindow {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            completions: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        }
    }
}

impl DeliveryWindow {
    fn slot(&self, seq: u64) -> &AtomicU64 {
        &self.slots[(seq % SLOTS as u64) as usize]
    }

    /// Event `seq` is about to be published to `receivers` connections.
    pub fn open(&self, seq: u64, receivers: u64) {
        self.slot(seq).store(seq << COUNT_BITS | receivers, Ordering::Release);
    }

    /// Event `seq` will not be waited for any more (refused, or too late).
    /// Receipts still arriving for it leave the slot alone.
    pub fn abandon(&self, seq: u64) {
        self.slot(seq).store(seq << COUNT_BITS, Ordering::Release);
    }

    pub fn is_complete(&self, seq: u64) -> bool {
        let v = self.slot(seq).load(Ordering::Acquire);
        v >> COUNT_BITS != seq || v & COUNT_MASK == 0
    }

    /// One receiver saw event `seq` for the first time.
    pub fn delivered(&self, seq: u64) {
        let counted = self.slot(seq).fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (v >> COUNT_BITS == seq && v & COUNT_MASK > 0).then(|| v - 1)
        });
        if counted.is_ok_and(|before| before & COUNT_MASK == 1) {
            self.completions.fetch_add(1, Ordering::AcqRel);
            self.waker.wake();
        }
    }

    pub fn completions(&self) -> u64 {
        self.completions.load(Ordering::Acquire)
    }

    /// Resolves once more than `seen` events have completed. One task at a
    /// time may wait (a single waker slot).
    pub fn completed_after(&self, seen: u64) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            self.waker.register(cx.waker());
            if self.completions() > seen {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_completes_at_its_last_receiver() {
        let w = DeliveryWindow::default();
        w.open(5, 3);
        w.delivered(5);
        w.delivered(5);
        assert!(!w.is_complete(5));
        assert_eq!(w.completions(), 0);
        w.delivered(5);
        assert!(w.is_complete(5));
        assert_eq!(w.completions(), 1);
        // A receipt past the count, or of another event, changes nothing.
        w.delivered(5);
        w.delivered(5 + SLOTS as u64);
        assert_eq!(w.completions(), 1);
    }

    #[test]
    fn an_abandoned_event_ignores_late_receipts() {
        let w = DeliveryWindow::default();
        w.open(7, 2);
        w.abandon(7);
        assert!(w.is_complete(7));
        w.delivered(7);
        w.delivered(7);
        assert_eq!(w.completions(), 0);
        // The slot's next event is counted on its own.
        let next = 7 + SLOTS as u64;
        w.open(next, 1);
        w.delivered(7);
        assert!(!w.is_complete(next));
        w.delivered(next);
        assert_eq!(w.completions(), 1);
    }
}
