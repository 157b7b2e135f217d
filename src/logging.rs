//! tracing to stderr, as text or one JSON object per line; level from
//! `RUST_LOG` (default `info`). Lines logged on a shard's thread carry that
//! shard (the `shard` span, `"span":{"shard":N}` in JSON); start-up and
//! shutdown lines of the main thread carry none.

use std::io::IsTerminal;

use tracing::error;
use tracing_subscriber::EnvFilter;

use crate::cli::var;
use crate::config::{ConfigError, LogFormat};

/// Installs the subscriber; an unparsable `RUST_LOG` is a bad value, not a
/// reason to log nothing.
pub fn init(format: LogFormat) -> Result<(), ConfigError> {
    // A panic is logged like any other line (one JSON object under
    // `LOG_FORMAT=json`), on the shard it happened on.
    std::panic::set_hook(Box::new(|panic| error!(%panic, "panic")));
    let filter = filter(std::env::var(var::RUST_LOG).ok().as_deref())?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_span_list(false).init(),
    }
    Ok(())
}

fn filter(rust_log: Option<&str>) -> Result<EnvFilter, ConfigError> {
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(EnvFilter::new("info")),
        Some(v) => {
            EnvFilter::builder().parse(v).map_err(|e| ConfigError::new(var::RUST_LOG, format!("{v:?}: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_is_parsed_or_refused() {
        for good in [
            None,
            Some(""),
            Some("debug"),
            Some("realtime=debug,hyper=warn"),
            Some("warn,realtime::bus=trace"),
        ] {
            assert!(filter(good).is_ok(), "{good:?}");
        }
        for bad in ["realtime=loud", "=info=", "[{"] {
            assert_eq!(filter(Some(bad)).expect_err(bad).var, "RUST_LOG");
        }
    }
}
