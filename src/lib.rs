//! `realtime`: a thread-per-core WebSocket service that pushes marketplace
//! events (orders, stock alerts, announcements) to browsers and apps.
//!
//! The layers, from the top down; each uses only the ones below it:
//! 1. the process: [`server`] (binds, starts the shards, signals, the
//!    development-mode banner), with [`cli`] and [`logging`] at its edge;
//! 2. the per-core runtime: [`runtime`] — executors, listeners, the accept
//!    loop, the front door (WebSocket or HTTP), the keepalive sweep;
//! 3. the protocols: [`gateway`] (WebSocket sessions: handshake, session
//!    loop, flood control) and [`api`] (HTTP: publish, health, metrics);
//! 4. the per-core state: [`shard`] — one core's sessions, room and user
//!    indexes, the receiving side of its inbox, its own series and backlog;
//! 5. what the shards share: [`instance`] — configuration, verifier,
//!    metrics, the mailboxes, read-only views of each shard's backlog and
//!    Redis links, the JWKS fetcher, and the parts each shard owns, made once;
//! 6. the bus: [`bus`] — `local` (inboxes) and `redis` (per-core subscriber
//!    and publisher), which hand events back without knowing the shards;
//! 7. the vocabulary, no I/O and no executor: [`config`], [`event`],
//!    [`room`], [`origin`], [`close`], [`shard_id`], [`auth`], [`models`],
//!    [`metrics`], [`presence`], [`history`], [`protocol`] (the client
//!    protocol's messages), and [`fault`] (the tests' injected panics,
//!    debug builds only).

pub mod api;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod close;
pub mod config;
pub mod event;
pub mod fault;
pub mod gateway;
pub mod history;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod origin;
pub mod presence;
pub mod protocol;
pub mod room;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod shard_id;
