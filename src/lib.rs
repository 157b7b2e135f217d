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
//! - [`auth`]: the JWT check and the role table;
//! - [`api`]: HTTP endpoints on the same port;
//! - [`metrics`]: the Prometheus registry.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod shard;
