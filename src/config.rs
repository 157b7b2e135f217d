//! Validated settings (SPEC §1, §8). Built once in `main` from [`ServeArgs`] and
//! then shared read-only by every shard.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use thiserror::Error;

use crate::cli::ServeArgs;

/// A bad setting: start-up stops with this one line and exit code 2.
#[derive(Debug, Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self { var, reason: reason.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Who may open `/ws` from a browser (the `Origin` header), and who gets CORS
/// headers on the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Unset: the Origin's host and port must equal the `Host` header's.
    SameHost,
    /// `*`.
    Any,
    /// Exact origins, lower-cased, without a trailing slash.
    List(Vec<String>),
}

/// Where Redis is, from `REDIS_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    pub db: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `None` is development mode (SPEC §1): a random secret, loopback only.
    pub jwt_secret: Option<String>,
    pub redis: Option<RedisUrl>,
    pub redis_prefix: String,
    pub port: u16,
    pub bind_addr: IpAddr,
    pub allowed_origins: AllowedOrigins,
    pub api_key: Option<String>,
    pub ws_read_timeout: Duration,
    pub ws_write_timeout: Duration,
    pub ws_ping_interval: Duration,
    pub shards: usize,
    pub max_connections: usize,
    pub max_message_size: usize,
    pub send_queue_bytes: usize,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
}

impl Config {
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            jwt_secret: present(&args.jwt_secret).map(str::to_owned),
            redis: present(&args.redis_url).map(parse_redis_url).transpose()?,
            redis_prefix: parse_prefix(present(&args.redis_prefix))?,
            port: parse_port(present(&args.port))?,
            bind_addr: match present(&args.bind_addr) {
                None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some(v) => v
                    .parse()
                    .map_err(|_| ConfigError::new("BIND_ADDR", format!("{v:?} is not an IP address")))?,
            },
            allowed_origins: parse_origins(present(&args.allowed_origins)),
            api_key: present(&args.api_key).map(str::to_owned),
            ws_read_timeout: seconds("WS_READ_TIMEOUT", present(&args.ws_read_timeout), 60)?,
            ws_write_timeout: seconds("WS_WRITE_TIMEOUT", present(&args.ws_write_timeout), 10)?,
            ws_ping_interval: seconds("WS_PING_INTERVAL", present(&args.ws_ping_interval), 30)?,
            shards: positive("SHARDS", present(&args.shards), default_shards())?,
            max_connections: positive("MAX_CONNECTIONS", present(&args.max_connections), 1_000_000)?,
            max_message_size: positive("MAX_MESSAGE_SIZE", present(&args.max_message_size), 65_536)?,
            send_queue_bytes: positive("SEND_QUEUE_BYTES", present(&args.send_queue_bytes), 1_048_576)?,
            shutdown_timeout: seconds("SHUTDOWN_TIMEOUT", present(&args.shutdown_timeout), 10)?,
            log_format: parse_log_format(present(&args.log_format))?,
        })
    }

    /// HTTP connections open at once: their own share, on top of
    /// `MAX_CONNECTIONS`, so idle or trickling HTTP clients can never take a
    /// WebSocket client's slot, and small enough that the descriptors the
    /// deploy files allow (2^20) cover both at the default limit.
    pub fn max_http_connections(&self) -> usize {
        (self.max_connections / HTTP_SHARE).max(MIN_HTTP_CONNECTIONS)
    }

    /// Development mode binds to loopback whatever `BIND_ADDR` says.
    pub fn listen_addr(&self) -> IpAddr {
        match self.jwt_secret {
            Some(_) => self.bind_addr,
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// HTTP connections may number `MAX_CONNECTIONS` divided by this.
const HTTP_SHARE: usize = 32;
/// However small `MAX_CONNECTIONS`, publishers and probes get this many.
const MIN_HTTP_CONNECTIONS: usize = 16;

/// An empty variable counts as unset, as in most shells' `VAR=` idiom.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

pub fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn parse_port(value: Option<&str>) -> Result<u16, ConfigError> {
    let Some(v) = value else { return Ok(8080) };
    match v.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ConfigError::new("PORT", format!("{v:?} is not a port number (1-65535)"))),
    }
}

fn positive(var: &'static str, value: Option<&str>, default: usize) -> Result<usize, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::new(var, format!("{v:?} is not a positive integer"))),
    }
}

fn seconds(var: &'static str, value: Option<&str>, default: u64) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(Duration::from_secs(default)) };
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
        _ => Err(ConfigError::new(var, format!("{v:?} is not a positive number of seconds"))),
    }
}

fn parse_prefix(value: Option<&str>) -> Result<String, ConfigError> {
    match value {
        None => Ok("realtime".to_owned()),
        Some(v) if v.chars().all(|c| c.is_ascii_graphic()) => Ok(v.to_owned()),
        Some(v) => {
            Err(ConfigError::new("REDIS_PREFIX", format!("{v:?} must be printable ASCII without spaces")))
        }
    }
}

fn parse_log_format(value: Option<&str>) -> Result<LogFormat, ConfigError> {
    match value {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(v) => Err(ConfigError::new("LOG_FORMAT", format!("{v:?} is neither \"text\" nor \"json\""))),
    }
}

fn parse_origins(value: Option<&str>) -> AllowedOrigins {
    let Some(v) = value else { return AllowedOrigins::SameHost };
    let entries: Vec<String> = v
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .collect();
    if entries.iter().any(|o| o == "*") {
        AllowedOrigins::Any
    } else {
        AllowedOrigins::List(entries)
    }
}

fn parse_redis_url(value: &str) -> Result<RedisUrl, ConfigError> {
    let bad = |reason: &str| ConfigError::new("REDIS_URL", reason.to_owned());
    let url =
        url::Url::parse(value).map_err(|_| bad("not a URL (expected redis://[:password@]host:port[/db])"))?;
    match url.scheme() {
        "redis" => {}
        "rediss" => {
            return Err(bad(
                "rediss:// (TLS) is not supported; use redis:// over a private network or a TLS tunnel",
            ))
        }
        _ => return Err(bad("the scheme must be redis://")),
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        d => d.parse().map_err(|_| bad("the database (path) must be a number"))?,
    };
    let password = url
        .password()
        .map(percent_decode)
        .or_else(|| (!url.username().is_empty()).then(|| percent_decode(url.username())));
    Ok(RedisUrl {
        host: host.trim_matches(['[', ']']).to_owned(),
        port: url.port().unwrap_or(6379),
        password,
        db,
    })
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("p={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs::default()
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = Config::from_args(&args()).expect("defaults are valid");
        assert_eq!(c.port, 8080);
        assert_eq!(c.ws_read_timeout, Duration::from_secs(60));
        assert_eq!(c.max_message_size, 65_536);
        assert_eq!(c.allowed_origins, AllowedOrigins::SameHost);
        assert_eq!(c.listen_addr(), IpAddr::V4(Ipv4Addr::LOCALHOST), "no secret means loopback only");
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        type Setter = fn(&mut ServeArgs, String);
        let cases: [(&str, Setter); 6] = [
            ("PORT", |a, v| a.port = Some(v)),
            ("SHARDS", |a, v| a.shards = Some(v)),
            ("WS_READ_TIMEOUT", |a, v| a.ws_read_timeout = Some(v)),
            ("LOG_FORMAT", |a, v| a.log_format = Some(v)),
            ("REDIS_URL", |a, v| a.redis_url = Some(v)),
            ("BIND_ADDR", |a, v| a.bind_addr = Some(v)),
        ];
        for (var, set) in cases {
            let mut a = args();
            set(&mut a, "0x".to_owned());
            let err = Config::from_args(&a).expect_err(var);
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn redis_url_with_password_and_db() {
        let r = parse_redis_url("redis://:s%40cret@127.0.0.1:6380/3").expect("valid");
        assert_eq!(
            r,
            RedisUrl { host: "127.0.0.1".into(), port: 6380, password: Some("s@cret".into()), db: 3 }
        );
        assert!(parse_redis_url("rediss://h:1").is_err());
    }

    #[test]
    fn origins_list_is_normalised() {
        assert_eq!(
            parse_origins(Some("https://A.example/, http://b:8080")),
            AllowedOrigins::List(vec!["https://a.example".into(), "http://b:8080".into()])
        );
        assert_eq!(parse_origins(Some("*")), AllowedOrigins::Any);
    }
}
