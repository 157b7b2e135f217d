//! `/health` and `/ready` (README, Health and metrics).

use std::time::Duration;

use http::{Response, StatusCode};

use super::response::{json, Body};
use crate::instance::Instance;

pub fn health(instance: &Instance) -> serde_json::Value {
    let uptime = instance.started.elapsed();
    serde_json::json!({
        "status": "healthy",
        "connections": instance.connections(),
        "uptime": go_duration(uptime),
        "uptimeSeconds": uptime.as_secs(),
        "shards": instance.shard_count(),
        "redis": redis_state(instance),
    })
}

/// 503 while this instance cannot take publishes: Redis down, or shutting down.
pub fn ready(instance: &Instance) -> Response<Body> {
    if instance.is_shutting_down() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "shutting down", "redis": redis_state(instance) }),
        );
    }
    match redis_state(instance) {
        "disconnected" => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "not ready", "redis": "disconnected" }),
        ),
        state => json(StatusCode::OK, serde_json::json!({ "status": "ready", "redis": state })),
    }
}

fn redis_state(instance: &Instance) -> &'static str {
    match instance.redis_connected() {
        None => "disabled",
        Some(false) => "disconnected",
        Some(true) => "connected",
    }
}

/// Whole seconds written like Go's `time.Duration`: `45s`, `5m0s`, `2h30m15s`.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(Duration::from_secs(45)), "45s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(9015)), "2h30m15s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
