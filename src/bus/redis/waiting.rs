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
        self.take_while(|_| true).await
    }

    /// Waits until the oldest item `fits`, and takes the items from the
    /// oldest on for as long as they do (`fits` may count what it let
    /// through). Only a push wakes it: whoever makes room asks again.
    pub async fn take_while(&self, mut fits: impl FnMut(&T) -> bool) -> Vec<T> {
        poll_fn(|cx| {
            let mut items = self.items.borrow_mut();
            let taking = items.iter().take_while(|item| fits(item)).count();
            if taking == 0 {
                *self.taker.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(items.drain(..taking).collect())
        })
        .await
    }

    /// Takes what waits now, without waiting.
    pub fn drain(&self) -> Vec<T> {
        self.items.borrow_mut().drain(..).collect()
    }
}
