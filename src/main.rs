//! The `realtime` binary: `realtime [serve]` runs the server, `realtime token`
//! mints a test JWT. Errors become one line on stderr; bad configuration
//! exits with 2, anything else that stops the server with 1.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use realtime::auth::{jwt, Role, SigningKey, VerifyingKey};
use realtime::cli::{var, Cli, Command, ServeArgs, TokenArgs};
use realtime::config::{Config, ConfigError};

fn main() -> ExitCode {
    if let Err(e) = load_dotenv() {
        return usage_error(&e);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => token(&args),
        Some(Command::Serve(args)) => serve(&args),
        None => serve(&cli.serve),
    }
}

/// `.env` in the working directory fills in variables the environment lacks.
fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(ConfigError::new(".env", e.to_string())),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => return usage_error(&e),
    };
    let public_key = match config.jwt_public_key.as_deref().map(read_public_key).transpose() {
        Ok(key) => key,
        Err(e) => return usage_error(&e),
    };
    if let Err(e) = realtime::logging::init(config.log_format) {
        return usage_error(&e);
    }
    match realtime::server::run(config, public_key) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "server stopped");
            ExitCode::FAILURE
        }
    }
}

/// `JWT_PUBLIC_KEY`: a readable PEM public key of a supported type.
fn read_public_key(path: &Path) -> Result<VerifyingKey, ConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new(var::JWT_PUBLIC_KEY, format!("cannot read {}: {e}", path.display())))?;
    VerifyingKey::from_public_pem(&pem)
        .map_err(|e| ConfigError::new(var::JWT_PUBLIC_KEY, format!("{}: {e}", path.display())))
}

/// The key `realtime token` signs with: `--private-key`, else `JWT_SECRET`.
fn signing_key(args: &TokenArgs) -> Result<SigningKey, ConfigError> {
    if let Some(path) = &args.private_key {
        let pem = std::fs::read(path)
            .map_err(|e| ConfigError::new("--private-key", format!("cannot read {}: {e}", path.display())))?;
        return SigningKey::from_private_pem(&pem)
            .map_err(|e| ConfigError::new("--private-key", format!("{}: {e}", path.display())));
    }
    match args.jwt_secret.as_deref().filter(|s| !s.is_empty()) {
        Some(secret) => Ok(SigningKey::hs256(secret.as_bytes())),
        None => Err(ConfigError::new(var::JWT_SECRET, "required to sign a token (or --private-key)")),
    }
}

fn token(args: &TokenArgs) -> ExitCode {
    let key = match signing_key(args) {
        Ok(key) => key,
        Err(e) => return usage_error(&e),
    };
    let role = match args.role.parse::<Role>() {
        Ok(role) => role,
        Err(e) => return usage_error(&ConfigError::new("--role", e.to_string())),
    };
    if args.user_id.is_empty() {
        return usage_error(&ConfigError::new("--user-id", "must not be empty"));
    }
    match jwt::mint(&key, args.kid.as_deref(), &args.user_id, role, args.ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("realtime: cannot sign the token: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One line on stderr and exit code 2.
fn usage_error(e: &ConfigError) -> ExitCode {
    eprintln!("realtime: {e}");
    ExitCode::from(2)
}
