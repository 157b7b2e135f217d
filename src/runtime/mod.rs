//! The per-core runtime: one glommio `LocalExecutor` per shard, each pinned
//! to a core when there are enough, each serving its own listener. Here a
//! shard starts, accepts, routes each connection to the gateway or the API,
//! reads its inbox, keeps its sessions alive and shuts down.
//!
//! - `listener`: the SO_REUSEPORT sockets, built with socket2;
//! - `front_door`: peek at a request head and route it;
//! - `keepalive`: server pings and the read timeout.

pub mod front_door;
pub mod keepalive;
pub mod listener;

use std::future::Future;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use crossbeam_channel::Sender;
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;
use glommio::{
    Latency, LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles, Shares, Task, TaskQueueHandle,
};
use tracing::{debug, info, info_span, warn};

use crate::bus::local::ShardMsg;
use crate::bus::redis::{self, ShardLinks};
use crate::bus::Bus;
use crate::close::CloseReason;
use crate::gateway::session;
use crate::instance::{Instance, ShardParts};
use crate::shard::{Shard, ShardId};
use front_door::Route;

/// Memory each executor registers with io_uring. We do socket I/O only, which
/// does not use it; glommio registers it with each of its three rings, so a
/// shard locks 768 KiB, and the common 8 MiB memlock limit holds 10 shards
/// (the deploy files raise it).
const IO_MEMORY: usize = 256 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// Inbox messages handled per wake-up.
const INBOX_BATCH: usize = 256;
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
    // SAFETY: `listener` is a bound, listening, non-blocking TCP socket, and
    // ownership of the descriptor moves into the glommio listener here.
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let (shard, links) = Shard::new(instance, parts);
    let shard = Rc::new(shard);
    let queues = Queues::create();
    let sessions = Rc::new(Gate::new());
    let accepting = queues.ingest(accept_loop(shard.clone(), listener, sessions.clone(), queues));
    let keepalive = glommio::spawn_local(keepalive::run(shard.clone()));
    let redis = redis_links(&shard, links, queues);
    ready();

    queues.ingest(read_inbox(shard.clone())).await;

    // Dropping the accept loop closes this shard's listener.
    accepting.cancel().await;
    let open = shard.session_count();
    shard.close_all(CloseReason::GoingAway);
    let drained = glommio::timer::timeout(instance.config.shutdown_timeout, sessions.close()).await;
    keepalive.cancel().await;
    shard.leave_presence().await;
    // Redis goes last: sessions were drained first.
    for link in redis {
        link.cancel().await;
    }
    match drained {
        Ok(()) => info!(closed = open, "shard drained"),
        Err(_) => warn!(left = shard.session_count(), "shard drain timed out"),
    }
}

/// Takes events from the inbox until shutdown is asked for.
async fn read_inbox(shard: Rc<Shard>) {
    let mut batch = Vec::with_capacity(INBOX_BATCH);
    let mut stopping = false;
    while !stopping {
        shard.recv_inbox(&mut batch, INBOX_BATCH).await;
        // The rest of a batch is still handled after a shutdown request:
        // what was posted before it is delivered before the 1001.
        for msg in batch.drain(..) {
            match msg {
                ShardMsg::Deliver(event) => shard.deliver(&event),
                ShardMsg::Shutdown => stopping = true,
                ShardMsg::Presence { query, reply } => {
                    let _ = reply.send(shard.answer(&query));
                }
                ShardMsg::Control(control) => shard.control(&control),
                ShardMsg::Tally(change) => shard.tally(change),
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

fn spawn_into<T: 'static>(queue: TaskQueueHandle, task: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local_into(task, queue).expect("a shard's task queues live as long as its executor")
}

/// With Redis, this shard's subscriber and publisher tasks.
fn redis_links(shard: &Rc<Shard>, links: ShardLinks, queues: Queues) -> Vec<Task<()>> {
    let (Bus::Redis { publisher, channels }, Some(url)) = (&shard.bus, &shard.instance.config.redis) else {
        return Vec::new();
    };
    let subscriber = redis::Subscriber {
        url: url.clone(),
        channels: channels.clone(),
        link: links.subscriber,
        metrics: &shard.instance.metrics,
        counts: shard.id.index() == 0,
    };
    let (receiver, controlled) = (shard.clone(), shard.clone());
    let handlers = redis::Handlers {
        deliver: move |event| receiver.deliver(&event),
        control: move |control| controlled.control(&control),
    };
    vec![
        queues.ingest(redis::subscriber::run(subscriber, handlers)),
        queues.ingest(redis::publisher::run(publisher.clone(), url.clone(), links.publisher)),
        queues.ingest(shard.clone().keep_presence()),
    ]
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, sessions: Rc<Gate>, queues: Queues) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                queues.sessions(connection(shard.clone(), stream, sessions.clone(), queues.ingest)).detach();
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Routes one accepted socket. WebSocket sessions pass through the gate so
/// shutdown can wait for them; HTTP connections just end with the executor.
async fn connection(shard: Rc<Shard>, stream: TcpStream, sessions: Rc<Gate>, ingest: TaskQueueHandle) {
    // Boxed: the routing state is large and short-lived, and would otherwise
    // stay reserved in every long-lived session's task.
    match Box::pin(front_door::route(&stream)).await {
        Ok(Route::WebSocket) => {
            let Ok(_pass) = sessions.enter() else { return };
            session::serve(shard, stream).await;
        }
        Ok(Route::Http) => spawn_into(ingest, Box::pin(crate::api::serve(shard, stream))).await,
        Err(e) => debug!(error = %e, "connection dropped before routing"),
    }
}
