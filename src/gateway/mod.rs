//! WebSocket sessions: a socket the front door routed to `/ws` becomes a
//! session here. Everything runs on the shard that accepted the socket.
//!
//! - `upgrade`: whether a request is a valid RFC 6455 opening handshake;
//! - `handshake`: token, origin and capacity checks before the upgrade;
//! - `session`: one connection's read/write loop;
//! - `flood`: per-connection flood control;
//! - `expiry`: a session's token over time (notice, close 4001).
//! - `presence`: the client's `presence` message.

pub mod expiry;
pub mod flood;
pub mod handshake;
pub mod presence;
pub mod session;
pub mod upgrade;
