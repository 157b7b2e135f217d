//! The `realtime` binary: `realtime [serve]` runs the server, `realtime token`
//! mints a test JWT. Errors become one line on stderr; bad configuration
//! exits with 2, anything else that stops the server with 1.

use std::process::ExitCode;

use clap::Parser;
use realtime::auth::{jwt, Role};
use realtime::cli::{Cli, Command, ServeArgs, TokenArgs};
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
    if let Err(e) = realtime::logging::init(config.log_format) {
        return usage_error(&e);
    }
    match realtime::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "server stopped");
            ExitCode::FAILURE
        }
    }
}

fn token(args: &TokenArgs) -> ExitCode {
    let Some(secret) = args.jwt_secret.as_deref().filter(|s| !s.is_empty()) else {
        return usage_error(&ConfigError::new("JWT_SECRET", "required to sign a token"));
    };
    let role = match args.role.parse::<Role>() {
        Ok(role) => role,
        Err(e) => return usage_error(&ConfigError::new("--role", e.to_string())),
    };
    if args.user_id.is_empty() {
        return usage_error(&ConfigError::new("--user-id", "must not be empty"));
    }
    match jwt::mint(secret.as_bytes(), &args.user_id, role, args.ttl) {
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
