//! The per-core runtime: one glommio `LocalExecutor` per shard, each pinned
//! to a core when there are enough, each serving its own listener. Here a
//! shard starts, accepts, routes each connection to the gateway or the API,
//! reads its inbox, keeps its sessions alive and shuts down.
//!
//! - `listener`: the SO_REUSEPORT sockets, built with socket2;
//! - `accept`: what a failed accept waits and logs;
//! - `front_door`: peek at a request head and route it;
//! - `keepalive`: server pings and the read timeout;
//! - `memory`: freed memory handed back after many connections closed.

pub mod accept;
pub mod front_door;
pub mod keepalive;
pub mod listener;
pub mod memory;

use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

use crossbeam_channel::Sender;
use futures_util::FutureExt;
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;
use glommio::{
    Latency, LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles, Shares, Task, TaskQueueHandle,
};
use http::StatusCode;
use tracing::{debug, error, info, info_span, warn};

use crate::api;
use crate::bus::local::{self, ShardMsg};
use crate::bus::redis::{self, ShardLinks};
use crate::bus::Bus;
use crate::close::CloseReason;
use crate::gateway::session;
use crate::instance::{Instance, ShardParts};
use crate::shard::{Shard, ShardId};
use front_door::{HeadError, Route};
use memory::Census;

/// Memory each executor registers with io_uring. We do socket I/O only, which
/// does not use it; glommio registers it with each of its three rings, so a
/// shard locks 768 KiB, and the common 8 MiB memlock limit holds 10 shards
/// (the deploy files raise it).
const IO_MEMORY: usize = 256 * 1024;
/// How soon taking in work preempts the sessions' writes.
const INGEST_LATENCY: Duration = Duration::from_millis(2);

/// What shards tell the main thread about their lives.
#[derive(Debug)]
pub enum Lifecycle {
    Ready(ShardId),
    Stopped { shard: ShardId, panicked: bool },
    Signal(i32),
}

/// Starts one executor per listener, moving each shard's parts to it; each
/// reports [`Lifecycle`] events.
pub fn start(
    instance: &'static Instance,
    listeners: Vec<OwnedFd>,
    parts: Vec<ShardParts>,
    events: Sender<Lifecycle>,
) -> glommio::Result<PoolThreadHandles<()>, ()> {
    let shards = listeners.len();
    let (assign, assignments) = crossbeam_channel::bounded(shards);
    for assignment in listeners.into_iter().zip(parts) {
        // Cannot fail: the channel holds exactly `shards` items.
        let _ = assign.send(assignment);
    }
    let placement = if shards <= crate::config::default_shards() {
        PoolPlacement::MaxSpread(shards, None)
    } else {
        PoolPlacement::Unbound(shards)
    };
    LocalExecutorPoolBuilder::new(placement).name("shard").io_memory(IO_MEMORY).on_all_shards(
        move || async move {
            let Ok((listener, parts)) = assignments.try_recv() else { return };
            let id = parts.id;
            // Entered for the executor's whole life, so every line logged on
            // this thread, by any task, names its shard.
            let _span = info_span!("shard", shard = id.index()).entered();
            let _notice = StopNotice { shard: id, events: events.clone() };
            run(instance, parts, listener, || {
                let _ = events.send(Lifecycle::Ready(id));
            })
            .await;
        },
    )
}

/// Tells the main thread that a shard has stopped, also when it panics.
struct StopNotice {
    shard: ShardId,
    events: Sender<Lifecycle>,
}

impl Drop for StopNotice {
    fn drop(&mut self) {
        let _ =
            self.events.send(Lifecycle::Stopped { shard: self.shard, panicked: std::thread::panicking() });
    }
}

/// One shard's whole life, on its own executor.
async fn run(instance: &'static Instance, parts: ShardParts, listener: OwnedFd, ready: impl FnOnce()) {
    let listening = listener.as_raw_fd();
    // SAFETY: `listener` is a bound, listening, non-blocking TCP socket, and
    // ownership of the descriptor moves into the glommio listener here.
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let (shard, links) = Shard::new(instance, parts);
    let shard = Rc::new(shard);
    let queues = Queues::create();
    let sessions = Rc::new(Gate::new());
    let census = Rc::new(Census::default());
    let accepting =
        queues.ingest(accept_loop(shard.clone(), listener, sessions.clone(), census.clone(), queues));
    let keepalive = glommio::spawn_local(keepalive::run(shard.clone()));
    let trimming = glommio::spawn_local(memory::run(census, instance.metrics.memory_trims.clone()));
    let leaves = glommio::spawn_local(shard.clone().announce_leaves());
    let redis = redis_links(&shard, links, queues);
    ready();

    queues.ingest(read_inbox(shard.clone())).await;

    // Out of the port first, while the accept loop still owns the
    // descriptor; dropping the loop then closes it.
    listener::stop_listening(listening);
    accepting.cancel().await;
    let open = shard.session_count();
    shard.close_all(CloseReason::GoingAway);
    let drained = glommio::timer::timeout(instance.config.shutdown_timeout, sessions.close()).await;
    let left = shard.session_count();
    if drained.is_err() {
        shard.forget_sessions();
    }
    keepalive.cancel().await;
    trimming.cancel().await;
    leaves.cancel().await;
    shard.finish_presence_writes().await;
    shard.leave_presence().await;
    // Redis goes last: sessions were drained first.
    for link in redis {
        link.cancel().await;
    }
    match drained {
        Ok(()) => info!(closed = open, "shard drained"),
        Err(_) => warn!(left, "shard drain timed out"),
    }
}

/// Takes events from the inbox until shutdown is asked for.
async fn read_inbox(shard: Rc<Shard>) {
    let mut batch = Vec::with_capacity(local::BATCH);
    let mut stopping = false;
    while !stopping {
        shard.recv_inbox(&mut batch, local::BATCH).await;
        // The rest of a batch is still handled after a shutdown request:
        // what was posted before it is delivered before the 1001.
        for msg in batch.drain(..) {
            match msg {
                ShardMsg::Deliver(event) => {
                    shard.metrics.inbox_events.inc();
                    shard.deliver(&event);
                }
                ShardMsg::Shutdown => stopping = true,
                ShardMsg::Keys(keys) => shard.replace_keys(keys),
                ShardMsg::Presence { query, reply } => {
                    let _ = reply.send(shard.answer(&query));
                }
                ShardMsg::Control(control) => shard.control(&control),
                ShardMsg::Tally(change) => shard.tally(change),
                ShardMsg::Sequence(event) => shard.sequence(*event),
                ShardMsg::History(query) => shard.answer_history(query),
                ShardMsg::Recovered { ticket, recovery } => shard.recovered(ticket, Ok(recovery)),
            }
        }
    }
}

/// A shard's two glommio task queues. Work that takes events and
/// connections in (accepting, the inbox, HTTP, Redis) preempts the sessions'
/// writes within [`INGEST_LATENCY`], so events reach the send queues while
/// the sessions are still writing earlier ones, and each session's next write
/// carries more frames. What keeps that from outrunning the writers is
/// [`crate::instance::backlog`].
#[derive(Clone, Copy)]
struct Queues {
    ingest: TaskQueueHandle,
    sessions: TaskQueueHandle,
}

impl Queues {
    fn create() -> Self {
        let executor = glommio::executor();
        Self {
            // Equal shares: while both have work, each gets half the core.
            ingest: executor.create_task_queue(Shares::default(), Latency::Matters(INGEST_LATENCY), "ingest"),
            sessions: executor.create_task_queue(Shares::default(), Latency::NotImportant, "sessions"),
        }
    }

    fn ingest<T: 'static>(self, task: impl Future<Output = T> + 'static) -> Task<T> {
        spawn_into(self.ingest, task)
    }

    fn sessions<T: 'static>(self, task: impl Future<Output = T> + 'static) -> Task<T> {
        spawn_into(self.sessions, task)
    }
}

/// Runs one connection's task so that a panic in it ends that connection
/// alone (its socket closes as the task's state is dropped) instead of the
/// shard's executor, and with it every client of the process. The panic hook
/// has logged where it happened.
///
/// `None` when it panicked.
///
/// A combinator, not an `async fn`: an `async fn` would keep room for
/// `task` twice (as its argument and as what it awaits) in every session's
/// task.
fn contained<T>(shard: Rc<Shard>, task: impl Future<Output = T>) -> impl Future<Output = Option<T>> {
    AssertUnwindSafe(task).catch_unwind().map(move |outcome| {
        if outcome.is_err() {
            shard.instance.metrics.task_panics.inc();
            error!("a connection's task panicked: that connection is closed, the shard goes on");
        }
        outcome.ok()
    })
}

fn spawn_into<T: 'static>(queue: TaskQueueHandle, task: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local_into(task, queue).expect("a shard's task queues live as long as its executor")
}

/// With Redis, this shard's subscriber and publisher tasks.
fn redis_links(shard: &Rc<Shard>, links: ShardLinks, queues: Queues) -> Vec<Task<()>> {
    let (Bus::Redis { publisher, channels, history, recoveries }, Some(url)) =
        (&shard.bus, &shard.instance.config.redis)
    else {
        return Vec::new();
    };
    let subscriber = redis::Subscriber {
        url: url.clone(),
        channels: channels.clone(),
        link: links.subscriber,
        metrics: &shard.instance.metrics,
        send_queue_bytes: shard.instance.config.send_queue_bytes,
        counts: shard.id.index() == 0,
        history: history.as_ref().map(|history| (history.clone(), recoveries.clone())),
    };
    let (receiver, controlled, answered, resynced) =
        (shard.clone(), shard.clone(), shard.clone(), shard.clone());
    let resync_channels = channels.clone();
    let handlers = redis::Handlers {
        deliver: move |event| receiver.deliver(&event),
        control: move |control| controlled.control(&control),
        recovered: move |ticket, answer| answered.recovered(ticket, answer),
        resync: move |channel: &str| resynced.resync(|room| resync_channels.for_room(Some(room)) == channel),
    };
    let scripts = history.as_ref().map(|history| history.scripts().to_vec()).unwrap_or_default();
    vec![
        queues.ingest(redis::subscriber::run(subscriber, handlers)),
        queues.ingest(redis::publisher::run(publisher.clone(), url.clone(), links.publisher, scripts)),
        queues.ingest(shard.clone().keep_presence()),
    ]
}

async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    sessions: Rc<Gate>,
    census: Rc<Census>,
    queues: Queues,
) {
    let mut failures = accept::Failures::default();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let held = census.enter();
                queues
                    .sessions(connection(shard.clone(), stream, sessions.clone(), queues.ingest, held))
                    .detach();
            }
            Err(e) => glommio::timer::sleep(failures.record(&e.into())).await,
        }
    }
}

/// Plain HTTP, in the ingest queue; a connection it upgrades to a WebSocket
/// (a kept-alive one, which the front door routed on its first request)
/// becomes a session here, through the gate like any other.
async fn http(shard: Rc<Shard>, stream: TcpStream, sessions: Rc<Gate>, ingest: TaskQueueHandle) {
    let served = spawn_into(ingest, Box::pin(contained(shard.clone(), api::serve(shard.clone(), stream))));
    if let Some(Some(upgraded)) = served.await {
        let Ok(_pass) = sessions.enter() else { return };
        contained(shard.clone(), session::serve_upgraded(shard, upgraded.stream, upgraded.client)).await;
    }
}

/// Routes one accepted socket, counted in its shard's census while it lives.
/// WebSocket sessions pass through the gate so shutdown can wait for them;
/// HTTP connections just end with the executor.
async fn connection(
    shard: Rc<Shard>,
    stream: TcpStream,
    sessions: Rc<Gate>,
    ingest: TaskQueueHandle,
    _held: memory::Held,
) {
    // Boxed: the routing state is large and short-lived, and would otherwise
    // stay reserved in every long-lived session's task.
    match Box::pin(front_door::route(&stream)).await {
        Ok(Route::WebSocket) => {
            let Ok(_pass) = sessions.enter() else { return };
            contained(shard.clone(), session::serve(shard, stream)).await;
        }
        // Boxed too: what HTTP hands back for an upgrade would otherwise be
        // room reserved in every session's task (about 200 bytes each).
        Ok(Route::Http) => Box::pin(http(shard, stream, sessions, ingest)).await,
        Err(HeadError::TimedOut) => {
            debug!("request head not complete in time");
            // Boxed like the routing: every session's task would otherwise
            // keep room for this rare answer (about 400 bytes).
            Box::pin(api::refuse(stream, StatusCode::REQUEST_TIMEOUT, "request head not complete in time"))
                .await;
        }
        Err(e) => debug!(error = %e, "connection dropped before routing"),
    }
}
