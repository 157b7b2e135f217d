//! Faults the tests inject, compiled into debug builds only: a release build
//! has no way in, whatever its clients send or its environment says. With
//! `REALTIME_INJECT_PANIC` set to a trigger, an HTTP request for `/trigger`
//! or a `subscribe` to that room panics inside its connection's task.

/// Panics when `trigger` is the one the environment names.
#[cfg(debug_assertions)]
pub fn panic_on(trigger: &str) {
    if std::env::var(crate::cli::var::REALTIME_INJECT_PANIC).is_ok_and(|armed| armed == trigger) {
        panic!("fault injected: {trigger}");
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn panic_on(_: &str) {}
