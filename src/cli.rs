//! The command line: `realtime [serve]` and `realtime token`, each flag backed by
//! the environment variable of README's Configuration section (flag wins over environment, environment
//! over `.env`, which `main` loads before parsing).
//!
//! Values stay strings here: [`crate::config`] validates them so that every error
//! names the variable, not clap's idea of the flag.

use clap::{Args, Parser, Subcommand};

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
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of the Redis channels (`<prefix>:orders`, ...).
    #[arg(long, env = "REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    #[arg(long, env = "PORT")]
    pub port: Option<String>,
    #[arg(long, env = "BIND_ADDR")]
    pub bind_addr: Option<String>,
    #[arg(long, env = "ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[arg(long, env = "WS_READ_TIMEOUT")]
    pub ws_read_timeout: Option<String>,
    #[arg(long, env = "WS_WRITE_TIMEOUT")]
    pub ws_write_timeout: Option<String>,
    #[arg(long, env = "WS_PING_INTERVAL")]
    pub ws_ping_interval: Option<String>,
    #[arg(long, env = "SHARDS")]
    pub shards: Option<String>,
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<String>,
    #[arg(long, env = "MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<String>,
    #[arg(long, env = "SEND_QUEUE_BYTES")]
    pub send_queue_bytes: Option<String>,
    #[arg(long, env = "SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
    /// `true`: share the port with another process deliberately (rolling restarts).
    #[arg(long, env = "SHARE_PORT")]
    pub share_port: Option<String>,
    /// Path of a PEM public key for RS256/ES256/EdDSA tokens.
    #[arg(long, env = "JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,
    /// URL (http or https) of a JSON Web Key Set.
    #[arg(long, env = "JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Seconds between JWKS refetches.
    #[arg(long, env = "JWKS_REFRESH")]
    pub jwks_refresh: Option<String>,
    /// A token's `iss` must equal it.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// A token's `aud` must contain it.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Seconds before a live token's `exp` that the client is told.
    #[arg(long, env = "TOKEN_REFRESH_NOTICE")]
    pub token_refresh_notice: Option<String>,
    /// `true`: send `join`/`leave` events to rooms.
    #[arg(long, env = "PRESENCE_EVENTS")]
    pub presence_events: Option<String>,
    /// Events kept per room for recovery; 0 turns history off.
    #[arg(long, env = "HISTORY_SIZE")]
    pub history_size: Option<String>,
    /// Seconds a room's history is kept after its last event.
    #[arg(long, env = "HISTORY_TTL")]
    pub history_ttl: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
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
