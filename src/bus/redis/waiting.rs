//! Work that one task of a shard waits for: other tasks of the same shard
//! push, the one task takes all that waits at once and writes it in one
//! pipeline. Lives on the shard's thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

pub struct Waiting<T> {
    items: RefCell<VecDeque<T>>,
    taker: RefCell<Option<Waker>>,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Self { items: RefCell::default(), taker: RefCell::default() }
    }
}

impl<T> Waiting<T> {
    /// Queues `item` and wakes the taker.
    pub fn push(&self, item: T) {
        self.items.borrow_mut().push_back(item);
        let taker = self.taker.borrow_mut().take();
        if let Some(taker) = taker {
            taker.wake();
        }
    }

    /// Waits for at least one item and takes them all.
    pub async fn take_all(&self) -> Vec<T> {
        poll_fn(|cx| {
            let mut items = self.items.borrow_mut();
            if items.is_empty() {
                *self.taker.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(items.drain(..).collect())
        })
        .await
    }

    /// Takes what waits now, without waiting.
    pub fn drain(&self) -> Vec<T> {
        self.items.borrow_mut().drain(..).collect()
    }
}
