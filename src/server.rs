//! The process: bind the listeners, start the shards, wait for them to be
//! ready, print what a person needs, then wait for SIGTERM/SIGINT and shut
//! down in order (stop accepting, close clients with 1001, drain under
//! `SHUTDOWN_TIMEOUT`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

use crate::auth::{jwt, Role, SigningKey, TokenVerifier, TrustSettings, VerifyingKey};
use crate::config::{default_shards, Config};
use crate::instance::{jwks, Instance};
use crate::runtime::{self, listener, Lifecycle};
use crate::shard_id::ShardId;

/// How long shards may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of the development-mode tokens.
const DEV_TOKEN_TTL: u64 = 24 * 3600;

/// Runs the server until a signal stops it; `public_key` is
/// `JWT_PUBLIC_KEY`'s, read by the caller. An error is a failed start or a
/// shard that died.
pub fn run(config: Config, public_key: Option<VerifyingKey>) -> anyhow::Result<()> {
    let dev_secret = config.development_mode().then(random_secret);
    let secret = config.jwt_secret.clone().or(dev_secret.clone());
    if config.shards > default_shards() {
        warn!(shards = config.shards, cpus = default_shards(), "SHARDS is above the CPU count");
    }
    if config.share_port && config.redis.is_none() {
        // Legitimate for a restart without downtime, a trap for scaling out:
        // the kernel spreads clients over processes that share no events.
        warn!(
            "SHARE_PORT=true without REDIS_URL: processes on this port share no events (an event \
             published to one never reaches the clients of another); set REDIS_URL to join them"
        );
    }
    let addr = SocketAddr::new(config.listen_addr(), config.port);
    let listeners = listener::bind_all(addr, config.shards, config.share_port)
        .with_context(|| format!("cannot listen on {addr}"))?;
    let verifier = TokenVerifier::new(TrustSettings {
        secret: secret.as_deref().map(str::as_bytes),
        public_key,
        jwks: config.jwks_url.is_some(),
        issuer: config.jwt_issuer.as_deref(),
        audience: config.jwt_audience.as_deref(),
    });
    // Bounded: start-up never waits long for an identity provider.
    let first_keys = config.jwks_url.as_deref().map(jwks::first_fetch);
    let keys = first_keys.as_ref().map(|first| first.keys.clone()).unwrap_or_default();
    let (refetch, refetch_requests) = jwks::channel();
    let (instance, parts) = Instance::new(config, verifier, keys, refetch);
    let instance: &'static Instance = Box::leak(Box::new(instance));
    if let (Some(url), Some(first)) = (instance.config.jwks_url.clone(), first_keys) {
        let fetcher = jwks::Fetcher {
            url,
            refresh: instance.config.jwks_refresh,
            mailboxes: &instance.mailboxes,
            metrics: &instance.metrics,
        };
        fetcher.spawn(first, refetch_requests).context("cannot start the JWKS thread")?;
    }

    let (events_tx, events) = crossbeam_channel::unbounded();
    // Registered before the shards start, so an early signal is not fatal.
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    let signal_events = events_tx.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal_events.send(Lifecycle::Signal(signal)).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;

    let pool = runtime::start(instance, listeners, parts, events_tx)
        .map_err(|e| anyhow::anyhow!("cannot start the shards: {e}"))?;
    let shards = instance.shard_count();
    let unexpected = match wait_ready(&events, shards, || pool.handles().iter().any(|h| h.is_finished())) {
        Ok(Start::Ready) => {
            info!(%addr, shards, "listening");
            print_listening(addr, shards);
            if let Some(secret) = dev_secret {
                print_dev_banner(&secret, addr.port())?;
            }
            wait_for_stop(&events)
        }
        // The listeners were already accepting: an early signal is an
        // ordinary shutdown.
        Ok(Start::Interrupted(signal)) => {
            info!(signal, "shutting down during start-up");
            None
        }
        Err(e) => {
            stop_shards(instance);
            for result in pool.join_all() {
                if let Err(shard_error) = result {
                    error!(error = %shard_error, "shard failed");
                }
            }
            return Err(e);
        }
    };
    stop_shards(instance);
    let deadline = Instant::now() + instance.config.shutdown_timeout + Duration::from_secs(1);
    let stopped = wait_stopped(&events, shards, deadline, unexpected.is_some());
    if stopped == shards {
        let _ = pool.join_all();
        info!("stopped");
    } else {
        warn!(stopped, shards, "shards did not stop within SHUTDOWN_TIMEOUT; exiting");
    }
    match unexpected {
        Some(shard) => bail!("shard {shard} stopped unexpectedly"),
        None => Ok(()),
    }
}

enum Start {
    Ready,
    Interrupted(i32),
}

fn wait_ready(
    events: &Receiver<Lifecycle>,
    shards: usize,
    any_exited: impl Fn() -> bool,
) -> anyhow::Result<Start> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut ready = 0;
    while ready < shards {
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(Lifecycle::Ready(_)) => ready += 1,
            Ok(Lifecycle::Stopped { shard, .. }) => bail!("shard {shard} stopped during start-up"),
            Ok(Lifecycle::Signal(signal)) => return Ok(Start::Interrupted(signal)),
            Err(RecvTimeoutError::Disconnected) => bail!("shards gone during start-up"),
            Err(RecvTimeoutError::Timeout) if any_exited() => bail!("a shard's executor failed to start"),
            Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                bail!("shards not ready after {START_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    Ok(Start::Ready)
}

/// Blocks until a signal (`None`) or a shard stopping on its own (its id).
fn wait_for_stop(events: &Receiver<Lifecycle>) -> Option<ShardId> {
    loop {
        match events.recv() {
            Ok(Lifecycle::Signal(signal)) => {
                info!(signal, "shutting down");
                return None;
            }
            Ok(Lifecycle::Stopped { shard, panicked }) => {
                error!(%shard, panicked, "shard stopped unexpectedly; shutting down");
                return Some(shard);
            }
            Ok(Lifecycle::Ready(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Counts shards that stop before `deadline`.
fn wait_stopped(events: &Receiver<Lifecycle>, shards: usize, deadline: Instant, one_already: bool) -> usize {
    let mut stopped = usize::from(one_already);
    while stopped < shards {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Lifecycle::Stopped { .. }) => stopped += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    stopped
}

fn stop_shards(instance: &Instance) {
    instance.begin_shutdown();
    instance.mailboxes.shut_down_all();
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The line a person (or a script waiting for readiness) reads on stdout
/// once every shard accepts: where to connect, with no token in it.
fn print_listening(addr: SocketAddr, shards: usize) {
    println!(
        "listening on http://{addr} ({shards} shards): WebSocket ws://{addr}/ws, health http://{addr}/health, metrics http://{addr}/metrics, operator page http://{addr}/admin"
    );
}

/// Development mode: a token per role, the URL, and how to publish, on
/// stdout for a person.
fn print_dev_banner(secret: &str, port: u16) -> anyhow::Result<()> {
    warn!("development mode: JWT_SECRET is not set; using a random secret and listening on 127.0.0.1 only");
    let key = SigningKey::hs256(secret.as_bytes());
    let tokens = Role::ALL
        .into_iter()
        .map(|role| Ok((role, jwt::mint(&key, None, &format!("dev-{role}"), role, DEV_TOKEN_TTL)?)))
        .collect::<Result<Vec<_>, jsonwebtoken::errors::Error>>()
        .context("cannot mint development tokens")?;
    let mut banner = String::from(
        "Development mode: JWT_SECRET is not set; using a random secret and listening on 127.0.0.1 only.\n",
    );
    // The URL is the one line people paste into browsers and chats: it carries
    // the least-privileged token, not the admin's.
    if let Some((_, client)) = tokens.iter().find(|(role, _)| *role == Role::Client) {
        banner.push_str(&format!("WebSocket URL (as dev-client): ws://127.0.0.1:{port}/ws?token={client}\n"));
    }
    banner.push_str("Tokens (valid 24h):\n");
    for (role, token) in &tokens {
        banner.push_str(&format!("  {:<9} {token}\n", role.as_str()));
    }
    banner.push_str(&format!(
        "Publish to every connection (from this machine no API_KEY is needed):\n  \
         curl -X POST http://127.0.0.1:{port}/api/notifications/broadcast -H 'Content-Type: application/json' \
         -d '{{\"room\":\"all\",\"type\":\"broadcast\",\"payload\":{{\"message\":\"hello\"}}}}'\n\
         Browser pages from this host and from http://localhost:* or http://127.0.0.1:* (a frontend dev server) may connect.\n"
    ));
    print!("{banner}");
    Ok(())
}
