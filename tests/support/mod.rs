//! Shared helpers for the black-box integration tests, one module per concern,
//! all re-exported here so a test file needs only `use support::*`.
//!
//! Everything talks to the real `realtime` binary (started as a child process
//! on a free loopback port) over real sockets. Every wait is bounded by a
//! deadline; the server guard kills its child on drop and, when a test is
//! panicking, prints what the child wrote to stdout and stderr.
#![allow(dead_code)]
// The no-locks rule (clippy.toml) is for the server's data path, not for test plumbing.
#![allow(clippy::disallowed_types)]

use std::time::Duration;

mod api;
mod http;
mod jwt;
mod keys;
mod metrics;
mod process;
mod protocol;
mod raw_ws;
mod redis_server;
mod server;
mod ws;

// Each test binary uses only some of these; the rest would warn as unused.
#[allow(unused_imports)]
pub use self::{
    api::*, http::*, jwt::*, keys::*, metrics::*, process::*, protocol::*, raw_ws::*, redis_server::*,
    server::*, ws::*,
};

/// The HS256 secret the tests give the server (and sign tokens with).
pub const SECRET: &str = "integration-test-secret-5b1f0c2e9d7a4f63";

/// How long to wait for `/health` to answer 200 after start.
pub const READY_DEADLINE: Duration = Duration::from_secs(15);

/// Generic bound for "something should happen soon".
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// The roles of README's Client protocol section with the rooms `connected` must list, in table order.
pub const ROLES: &[(&str, &[&str])] = &[
    ("admin", &["*"]),
    ("seller", &["orders", "inventory", "products", "notifications"]),
    ("client", &["notifications", "cart", "myOrders"]),
    ("delivery", &["deliveries", "orders"]),
];

pub fn rooms_of(role: &str) -> &'static [&'static str] {
    ROLES
        .iter()
        .find(|(r, _)| *r == role)
        .map(|(_, rooms)| *rooms)
        .unwrap_or_else(|| panic!("unknown role {role}"))
}
