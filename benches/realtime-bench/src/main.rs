//! `realtime-bench`: the load generator for `realtime`.
//!
//! Scenarios: `idle` (RSS and CPU per held connection), `storm` (handshake
//! rate and CPU per handshake), `fanout` (room broadcasts, open or closed
//! loop: deliveries/s, loss, latency, CPU per million deliveries), `send`
//! (targeted sends: CPU per event), `ping` (client pings on a few of many
//! open connections: round trips, CPU per ping) and `recover` (clients
//! reconnecting at once with `since` after missing events: time until all
//! have recovered, gaps, duplicates, CPU). Loopback targets only; every
//! run is bounded in connections and time; each prints one JSON line on
//! stdout and a short summary on stderr.
//!
//! Connections live on glommio executors (`--threads`); beyond what one
//! process's file descriptors allow (`--per-process`), the binary runs copies
//! of itself (`worker`, hidden) that each hold a share from their own
//! 127.0.0.x source address and report back over a pipe.

mod cli;
mod client;
mod fleet;
mod hist;
mod procstat;
mod publisher;
mod recover;
mod recovery;
mod scenarios;
mod signal;
mod storm;
mod target;
mod token;
mod window;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Scenario};
use scenarios::{Closed, Fanout, Outcome, RecoverStorm, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    target::raise_fd_limit();
    let name = match &cli.scenario {
        Scenario::Idle { .. } => "idle",
        Scenario::Storm { .. } => "storm",
        Scenario::Fanout { .. } => "fanout",
        Scenario::Send { .. } => "send",
        Scenario::Ping { .. } => "ping",
        Scenario::Recover { .. } => "recover",
        Scenario::Worker => {
            return match fleet::worker_main() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
                    ExitCode::FAILURE
                }
            };
        }
    };
    match run(&cli) {
        Ok(Outcome { json, summary }) => {
            println!("{json}");
            eprintln!("{summary}");
            // A run that measured nothing (no connection, no accepted event) fails.
            if json["ok"] == serde_json::Value::Bool(true) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("{}", serde_json::json!({ "scenario": name, "ok": false, "error": format!("{e:#}") }));
            eprintln!("realtime-bench {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    let settings = Settings::check(&cli.common)?;
    match &cli.scenario {
        Scenario::Idle { no_subscribe } => scenarios::idle(&settings, !no_subscribe),
        Scenario::Storm { concurrency, count, private_key, subscribe } => {
            scenarios::storm(&settings, *concurrency, *count, private_key.as_deref(), *subscribe)
        }
        Scenario::Fanout { publish, no_subscribe, closed_window, publishers, reconnect } => {
            if *no_subscribe && settings.common.room != "all" {
                anyhow::bail!("with --no-subscribe only room `all` reaches the connections: add --room all");
            }
            let closed = closed_window.map(|window| Closed { window, publishers: *publishers });
            let fanout = Fanout { subscribe: !no_subscribe, closed, reconnect: *reconnect };
            scenarios::publish(&settings, publish, false, fanout)
        }
        Scenario::Send { publish } => scenarios::publish(&settings, publish, true, Fanout::default()),
        Scenario::Ping { busy, rate, drain } => scenarios::ping(&settings, *busy, *rate, *drain),
        Scenario::Recover { rooms, missed, pad, window, client_limit } => {
            let storm = RecoverStorm { rooms: *rooms, missed: *missed, pad: *pad, window: *window };
            scenarios::recover(&settings, storm, *client_limit)
        }
        Scenario::Worker => unreachable!("handled in main"),
    }
}
