//! Socket → session. Everything here runs on the shard that accepted the
//! socket.
//!
//! - `front_door`: peek at the request head and route (WebSocket or HTTP);
//! - `handshake`: token, origin and capacity checks before the upgrade;
//! - `origin`: the `ALLOWED_ORIGINS` rules;
//! - `session`: one connection's read/write loop;
//! - `handle`: the shard's side of a session (outbound queue, signals);
//! - `flood`: per-connection flood control;
//! - `protocol`: client messages in, server messages out;
//! - `close`: why a session ends, and its close code.

pub mod close;
pub mod flood;
pub mod front_door;
pub mod handle;
pub mod handshake;
pub mod origin;
pub mod protocol;
pub mod session;
