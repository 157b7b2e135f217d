//! `realtime`: a thread-per-core WebSocket service that pushes marketplace
//! events (orders, stock alerts, announcements) to browsers and apps.
//!
//! The map, from the outside in:
//! - [`cli`], [`config`], [`logging`]: flags, environment and `.env` → a
//!   validated [`config::Config`];
//! - [`server`]: the process — binds, starts the shards, handles signals,
//!   prints the development-mode banner;
//! - [`instance`]: what all shards of the process share (config, verifier,
//!   metrics, mailboxes);
//! - [`shard`]: one core's owner of its connections — executors, listener,
//!   inbox, keepalive;
//! - [`gateway`]: socket → session — routing, handshake checks, the session
//!   loop, close codes;
//! - [`auth`]: the JWT check and the role table; [`room`]: room names and
//!   who may join them;
//! - [`event`]: the envelope, encoded once, and its audience; [`models`]: the
//!   REST service's domain types;
//! - [`bus`]: how events reach every shard (and, with Redis, every instance);
//! - [`api`]: HTTP endpoints on the same port;
//! - [`metrics`]: the Prometheus registry.

pub mod api;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod config;
pub mod event;
pub mod gateway;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod room;
pub mod server;
pub mod shard;
