//! The time limits of one HTTP connection (README, Client protocol), kept around the socket
//! hyper reads: a request head must be complete within [`HEAD_TIMEOUT`] of
//! its first byte, every request on the connection alike, and a connection
//! that makes no progress for [`IDLE_TIMEOUT`] (no request, a stalled body,
//! a response nobody reads) is closed.
//!
//! Not hyper's `header_read_timeout`: hyper starts that clock as soon as it
//! waits for a head, which on a kept-alive connection is right after the last
//! answer, so it would close idle connections after 10 s instead of 60. Nor
//! glommio's socket read timeout: its timer stays in the reactor until it
//! would have fired, holding the finished task's memory for a minute after
//! the connection closed. One glommio timer per connection, withdrawn with it.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::timer::Timer;

/// A request head must be complete within this time of its first byte.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with nothing moving for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests: the next byte starts a head.
    Idle,
    /// A head has begun and is not complete yet.
    Head,
    /// A request is being handled (its body read, its answer written).
    Request,
}

/// Where a connection is in its requests, shared by the socket wrapper,
/// which sees bytes arrive, and the service, which sees heads complete.
pub struct Clock {
    phase: Cell<Phase>,
    deadline: Cell<Instant>,
    /// The phase whose deadline passed, once one has.
    expired: Cell<Option<Phase>>,
}

impl Clock {
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            phase: Cell::new(Phase::Idle),
            deadline: Cell::new(Instant::now() + IDLE_TIMEOUT),
            expired: Cell::new(None),
        })
    }

    /// hyper has parsed a head and called the service.
    pub fn head_complete(&self) {
        self.enter(Phase::Request);
    }

    /// The service has answered: the next bytes belong to the next head.
    pub fn answered(&self) {
        self.enter(Phase::Idle);
    }

    /// The phase whose limit ended the connection, if one did.
    pub fn expired(&self) -> Option<Phase> {
        self.expired.get()
    }

    fn enter(&self, phase: Phase) {
        self.phase.set(phase);
        self.deadline.set(Instant::now() + IDLE_TIMEOUT);
    }

    /// Bytes moved: a head's clock starts with its first byte and does not
    /// move after; otherwise progress restarts the idle clock.
    fn progress(&self, read: bool) {
        match self.phase.get() {
            Phase::Head => {}
            Phase::Idle if read => {
                self.phase.set(Phase::Head);
                self.deadline.set(Instant::now() + HEAD_TIMEOUT);
            }
            Phase::Idle | Phase::Request => self.deadline.set(Instant::now() + IDLE_TIMEOUT),
        }
    }
}

/// A socket whose reads and writes fail with `TimedOut` once its [`Clock`]'s
/// deadline passes while they wait.
pub struct Clocked<S> {
    inner: S,
    clock: Rc<Clock>,
    /// Created at the first wait; armed for `armed_for`.
    timer: Option<Timer>,
    armed_for: Option<Instant>,
}

impl<S> Clocked<S> {
    pub fn new(inner: S, clock: Rc<Clock>) -> Self {
        Self { inner, clock, timer: None, armed_for: None }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// After the socket said "not yet": `Ready(Err)` once the deadline has
    /// passed, otherwise `Pending` with the timer armed to wake this task.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self.clock.deadline.get();
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        let timer = self.timer.get_or_insert_with(|| Timer::new(left));
        if self.armed_for != Some(deadline) {
            timer.reset(left);
            self.armed_for = Some(deadline);
        }
        match Pin::new(timer).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                self.clock.expired.set(Some(self.clock.phase.get()));
                Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "http connection deadline passed"))
            }
        }
    }

    fn moved<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        read: bool,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                if result.is_ok() {
                    self.clock.progress(read);
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.wait(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Clocked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        // A read of 0 bytes is the peer hanging up, not a head beginning.
        let read = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        this.moved(polled, read, cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Clocked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.moved(polled, false, cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.moved(polled, false, cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
