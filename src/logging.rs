//! tracing to stderr, as text or one JSON object per line; level from
//! `RUST_LOG` (default `info`). Lines logged on a shard's thread carry that
//! shard (the `shard` span, `"span":{"shard":N}` in JSON); start-up and
//! shutdown lines of the main thread carry none.

use std::io::IsTerminal;

use tracing::error;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    // A panic is logged like any other line (one JSON object under
    // `LOG_FORMAT=json`), on the shard it happened on.
    std::panic::set_hook(Box::new(|panic| error!(%panic, "panic")));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_span_list(false).init(),
    }
}
