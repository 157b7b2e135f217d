//! The command line: `realtime [serve]` and `realtime token`, each flag backed by
//! the environment variable of README's Configuration section (flag wins over environment, environment
//! over `.env`, which `main` loads before parsing).
//!
//! Values stay strings here: [`crate::config`] validates them so that every error
//! names the variable, not clap's idea of the flag.

use clap::{Args, CommandFactory, Parser, Subcommand};

/// The environment variables the server reads, each name written once, here:
/// first the flags' (the `env` of [`ServeArgs`] and [`TokenArgs`], and what
/// [`crate::config`]'s errors name), then the three no flag stands for.
/// [`variables`] lists them all, the flags' from clap's own definitions.
pub mod var {
    pub const JWT_SECRET: &str = "JWT_SECRET";
    pub const REDIS_URL: &str = "REDIS_URL";
    pub const REDIS_PREFIX: &str = "REDIS_PREFIX";
    pub const PORT: &str = "PORT";
    pub const BIND_ADDR: &str = "BIND_ADDR";
    pub const ALLOWED_ORIGINS: &str = "ALLOWED_ORIGINS";
    pub const API_KEY: &str = "API_KEY";
    pub const WS_READ_TIMEOUT: &str = "WS_READ_TIMEOUT";
    pub const WS_WRITE_TIMEOUT: &str = "WS_WRITE_TIMEOUT";
    pub const WS_PING_INTERVAL: &str = "WS_PING_INTERVAL";
    pub const SHARDS: &str = "SHARDS";
    pub const MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
    pub const MAX_MESSAGE_SIZE: &str = "MAX_MESSAGE_SIZE";
    pub const SEND_QUEUE_BYTES: &str = "SEND_QUEUE_BYTES";
    pub const SHUTDOWN_TIMEOUT: &str = "SHUTDOWN_TIMEOUT";
    pub const LOG_FORMAT: &str = "LOG_FORMAT";
    pub const SHARE_PORT: &str = "SHARE_PORT";
    pub const JWT_PUBLIC_KEY: &str = "JWT_PUBLIC_KEY";
    pub const JWKS_URL: &str = "JWKS_URL";
    pub const JWKS_REFRESH: &str = "JWKS_REFRESH";
    pub const JWT_ISSUER: &str = "JWT_ISSUER";
    pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
    pub const TOKEN_REFRESH_NOTICE: &str = "TOKEN_REFRESH_NOTICE";
    pub const PRESENCE_EVENTS: &str = "PRESENCE_EVENTS";
    pub const HISTORY_SIZE: &str = "HISTORY_SIZE";
    pub const HISTORY_TTL: &str = "HISTORY_TTL";
    /// tracing's filter of the log (README, Configuration: `LOG_FORMAT`).
    pub const RUST_LOG: &str = "RUST_LOG";
    /// The PEM bundle a JWKS fetch over https trusts instead of webpki's roots.
    pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
    /// The trigger of the faults debug builds inject (`crate::fault`).
    pub const REALTIME_INJECT_PANIC: &str = "REALTIME_INJECT_PANIC";
}

/// Every environment variable the server reads: each flag's, as clap reads
/// it, and the ones without a flag. A test harness clears these to keep its
/// machine's environment out of the server it starts.
pub fn variables() -> Vec<String> {
    let command = Cli::command();
    let arguments =
        command.get_arguments().chain(command.get_subcommands().flat_map(clap::Command::get_arguments));
    let mut names: Vec<String> =
        arguments.filter_map(|arg| arg.get_env()).map(|env| env.to_string_lossy().into_owned()).collect();
    names.extend([var::RUST_LOG, var::SSL_CERT_FILE, var::REALTIME_INJECT_PANIC].map(str::to_owned));
    names.sort();
    names.dedup();
    names
}

#[derive(Debug, Parser)]
#[command(
    name = "realtime",
    version,
    about = "Realtime WebSocket service: rooms, roles, JWT sessions, publish API",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `realtime --port N` is `realtime serve --port N`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Print a JWT signed with JWT_SECRET (or a private key), for testing.
    Token(TokenArgs),
}

/// Server settings, one per variable of README's Configuration section.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    #[arg(long, env = var::JWT_SECRET, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    #[arg(long, env = var::REDIS_URL, hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of the Redis channels (`<prefix>:orders`, ...).
    #[arg(long, env = var::REDIS_PREFIX)]
    pub redis_prefix: Option<String>,
    #[arg(long, env = var::PORT)]
    pub port: Option<String>,
    #[arg(long, env = var::BIND_ADDR)]
    pub bind_addr: Option<String>,
    #[arg(long, env = var::ALLOWED_ORIGINS)]
    pub allowed_origins: Option<String>,
    #[arg(long, env = var::API_KEY, hide_env_values = true)]
    pub api_key: Option<String>,
    #[arg(long, env = var::WS_READ_TIMEOUT)]
    pub ws_read_timeout: Option<String>,
    #[arg(long, env = var::WS_WRITE_TIMEOUT)]
    pub ws_write_timeout: Option<String>,
    #[arg(long, env = var::WS_PING_INTERVAL)]
    pub ws_ping_interval: Option<String>,
    #[arg(long, env = var::SHARDS)]
    pub shards: Option<String>,
    #[arg(long, env = var::MAX_CONNECTIONS)]
    pub max_connections: Option<String>,
    #[arg(long, env = var::MAX_MESSAGE_SIZE)]
    pub max_message_size: Option<String>,
    #[arg(long, env = var::SEND_QUEUE_BYTES)]
    pub send_queue_bytes: Option<String>,
    #[arg(long, env = var::SHUTDOWN_TIMEOUT)]
    pub shutdown_timeout: Option<String>,
    #[arg(long, env = var::LOG_FORMAT)]
    pub log_format: Option<String>,
    /// `true`: share the port with another process deliberately (rolling restarts).
    #[arg(long, env = var::SHARE_PORT)]
    pub share_port: Option<String>,
    /// Path of a PEM public key for RS256/ES256/EdDSA tokens.
    #[arg(long, env = var::JWT_PUBLIC_KEY)]
    pub jwt_public_key: Option<String>,
    /// URL (http or https) of a JSON Web Key Set.
    #[arg(long, env = var::JWKS_URL)]
    pub jwks_url: Option<String>,
    /// Seconds between JWKS refetches.
    #[arg(long, env = var::JWKS_REFRESH)]
    pub jwks_refresh: Option<String>,
    /// A token's `iss` must equal it.
    #[arg(long, env = var::JWT_ISSUER)]
    pub jwt_issuer: Option<String>,
    /// A token's `aud` must contain it.
    #[arg(long, env = var::JWT_AUDIENCE)]
    pub jwt_audience: Option<String>,
    /// Seconds before a live token's `exp` that the client is told.
    #[arg(long, env = var::TOKEN_REFRESH_NOTICE)]
    pub token_refresh_notice: Option<String>,
    /// `true`: send `join`/`leave` events to rooms.
    #[arg(long, env = var::PRESENCE_EVENTS)]
    pub presence_events: Option<String>,
    /// Events kept per room for recovery; 0 turns history off.
    #[arg(long, env = var::HISTORY_SIZE)]
    pub history_size: Option<String>,
    /// Seconds a room's history is kept after its last event.
    #[arg(long, env = var::HISTORY_TTL)]
    pub history_ttl: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[arg(long, env = var::JWT_SECRET, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The `userId` claim.
    #[arg(long)]
    pub user_id: String,
    /// One of admin, seller, client, delivery.
    #[arg(long)]
    pub role: String,
    /// Lifetime in seconds, at least 1.
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true, value_parser = positive_seconds)]
    pub ttl: u64,
    /// Sign with this PEM private key instead of JWT_SECRET: RSA → RS256,
    /// EC P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA.
    #[arg(long)]
    pub private_key: Option<std::path::PathBuf>,
    /// The `kid` header, naming the key in a JWKS.
    #[arg(long)]
    pub kid: Option<String>,
}

/// A token's lifetime: `0` would mint a token that is born expired.
fn positive_seconds(value: &str) -> Result<u64, String> {
    match value.parse::<i128>() {
        Ok(n) if n >= 1 => u64::try_from(n).map_err(|_| "too large".to_owned()),
        Ok(_) => Err("must be at least 1 second (a token born expired is refused everywhere)".to_owned()),
        Err(_) => Err("must be a whole number of seconds".to_owned()),
    }
}
