//! Validated settings (README, Configuration and Client protocol). Built once in `main` from [`ServeArgs`] and
//! then shared read-only by every shard.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::cli::{var, ServeArgs};

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
    /// Unset in development mode: the same host, or a page from a frontend
    /// dev server on this machine (`http://localhost:*`, `http://127.0.0.1:*`).
    SameHostOrLocalDev,
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
    /// An ACL user; `None` authenticates as `default`.
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// HS256 secret. Without it, `jwt_public_key` and `jwks_url` the server
    /// is in development mode (README, Configuration): a random secret, loopback only.
    pub jwt_secret: Option<String>,
    /// Path of a PEM public key; read and checked by `main` before start.
    pub jwt_public_key: Option<PathBuf>,
    /// An `http` or `https` URL of a JWKS.
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// How long before a live token's `exp` its client is told (README, Tokens during a session).
    pub token_refresh_notice: Duration,
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
    /// Listen even where another process already does (SO_REUSEPORT).
    pub share_port: bool,
    /// Send `join`/`leave` to rooms (README, Presence and control).
    pub presence_events: bool,
    /// Events kept per room (README, History and recovery); 0: no history,
    /// no offsets.
    pub history_size: usize,
    /// How long a room's history outlives its last event.
    pub history_ttl: Duration,
}

impl Config {
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let config = Self {
            jwt_secret: secret(args.jwt_secret.as_deref())?,
            jwt_public_key: present(&args.jwt_public_key).map(PathBuf::from),
            jwks_url: present(&args.jwks_url).map(parse_jwks_url).transpose()?,
            jwks_refresh: seconds(var::JWKS_REFRESH, present(&args.jwks_refresh), 300)?,
            jwt_issuer: present(&args.jwt_issuer).map(str::to_owned),
            jwt_audience: present(&args.jwt_audience).map(str::to_owned),
            token_refresh_notice: seconds(
                var::TOKEN_REFRESH_NOTICE,
                present(&args.token_refresh_notice),
                30,
            )?,
            redis: present(&args.redis_url).map(parse_redis_url).transpose()?,
            redis_prefix: parse_prefix(present(&args.redis_prefix))?,
            port: parse_port(present(&args.port))?,
            bind_addr: match present(&args.bind_addr) {
                None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some(v) => v
                    .parse()
                    .map_err(|_| ConfigError::new(var::BIND_ADDR, format!("{v:?} is not an IP address")))?,
            },
            allowed_origins: parse_origins(present(&args.allowed_origins))?,
            api_key: present(&args.api_key).map(str::to_owned),
            ws_read_timeout: seconds(var::WS_READ_TIMEOUT, present(&args.ws_read_timeout), 60)?,
            ws_write_timeout: seconds(var::WS_WRITE_TIMEOUT, present(&args.ws_write_timeout), 10)?,
            ws_ping_interval: seconds(var::WS_PING_INTERVAL, present(&args.ws_ping_interval), 30)?,
            shards: positive(var::SHARDS, present(&args.shards), default_shards())?,
            max_connections: positive(var::MAX_CONNECTIONS, present(&args.max_connections), 1_000_000)?,
            max_message_size: positive(var::MAX_MESSAGE_SIZE, present(&args.max_message_size), 65_536)?,
            send_queue_bytes: positive(var::SEND_QUEUE_BYTES, present(&args.send_queue_bytes), 1_048_576)?,
            shutdown_timeout: seconds(var::SHUTDOWN_TIMEOUT, present(&args.shutdown_timeout), 10)?,
            log_format: parse_log_format(present(&args.log_format))?,
            share_port: flag(var::SHARE_PORT, present(&args.share_port))?,
            presence_events: flag(var::PRESENCE_EVENTS, present(&args.presence_events))?,
            history_size: count(var::HISTORY_SIZE, present(&args.history_size), 100)?,
            history_ttl: seconds(var::HISTORY_TTL, present(&args.history_ttl), 300)?,
        };
        config.check_message_fits_queue()?;
        Ok(config.with_development_origins())
    }

    /// A message the server accepts must fit in a client's send queue
    /// (README, Client protocol): an event bigger than the queue could only be delivered by
    /// closing its readers.
    fn check_message_fits_queue(&self) -> Result<(), ConfigError> {
        if self.max_message_size > self.send_queue_bytes {
            return Err(ConfigError::new(
                var::MAX_MESSAGE_SIZE,
                format!(
                    "{} is above SEND_QUEUE_BYTES ({}): such an event could not be delivered",
                    self.max_message_size, self.send_queue_bytes
                ),
            ));
        }
        Ok(())
    }

    /// A first try's page comes from a frontend dev server (another port of
    /// this machine) or the same host: development mode lets both in unless
    /// `ALLOWED_ORIGINS` says otherwise.
    fn with_development_origins(mut self) -> Self {
        if self.development_mode() && self.allowed_origins == AllowedOrigins::SameHost {
            self.allowed_origins = AllowedOrigins::SameHostOrLocalDev;
        }
        self
    }

    /// No way to check a token is configured: the server makes up a secret.
    pub fn development_mode(&self) -> bool {
        self.jwt_secret.is_none() && self.jwt_public_key.is_none() && self.jwks_url.is_none()
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
        match self.development_mode() {
            false => self.bind_addr,
            true => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// HTTP connections may number `MAX_CONNECTIONS` divided by this.
const HTTP_SHARE: usize = 32;
/// However small `MAX_CONNECTIONS`, publishers and probes get this many.
const MIN_HTTP_CONNECTIONS: usize = 16;

/// Unset is development mode; set but empty is a mistake (a template's
/// `JWT_SECRET=` left blank), not a request for development mode.
fn secret(value: Option<&str>) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(ConfigError::new(
            var::JWT_SECRET,
            "set but empty; set a secret (openssl rand -hex 32) or unset it for development mode",
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

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
        _ => Err(ConfigError::new(var::PORT, format!("{v:?} is not a port number (1-65535)"))),
    }
}

fn positive(var: &'static str, value: Option<&str>, default: usize) -> Result<usize, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::new(var, format!("{v:?} is not a positive integer"))),
    }
}

/// A count where 0 means "off".
fn count(var: &'static str, value: Option<&str>, default: usize) -> Result<usize, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    v.parse::<usize>().map_err(|_| ConfigError::new(var, format!("{v:?} is not a whole number")))
}

/// The longest duration a setting may give: every one is added to the
/// clock (a deadline, an expiry), and a sum past what the clock can count
/// panics where it is made, long after start-up.
const MAX_SECONDS: u64 = 365 * 24 * 3600;

fn seconds(var: &'static str, value: Option<&str>, default: u64) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(Duration::from_secs(default)) };
    match v.parse::<u64>() {
        Ok(n) if (1..=MAX_SECONDS).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(ConfigError::new(
            var,
            format!("{v:?} is not a number of seconds from 1 to {MAX_SECONDS} (a year)"),
        )),
    }
}

fn parse_prefix(value: Option<&str>) -> Result<String, ConfigError> {
    match value {
        None => Ok("realtime".to_owned()),
        Some(v) if v.chars().all(|c| c.is_ascii_graphic()) => Ok(v.to_owned()),
        Some(v) => {
            Err(ConfigError::new(var::REDIS_PREFIX, format!("{v:?} must be printable ASCII without spaces")))
        }
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`); unset is false.
fn flag(var: &'static str, value: Option<&str>) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(v) => Err(ConfigError::new(var, format!("{v:?} is neither true nor false"))),
    }
}

fn parse_jwks_url(value: &str) -> Result<String, ConfigError> {
    let bad = |reason: &str| ConfigError::new(var::JWKS_URL, reason.to_owned());
    let url = url::Url::parse(value).map_err(|_| bad("not a URL"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(value.to_owned()),
        "http" | "https" => Err(bad("no host")),
        _ => Err(bad("the scheme must be http:// or https://")),
    }
}

fn parse_log_format(value: Option<&str>) -> Result<LogFormat, ConfigError> {
    match value {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(v) => Err(ConfigError::new(var::LOG_FORMAT, format!("{v:?} is neither \"text\" nor \"json\""))),
    }
}

fn parse_origins(value: Option<&str>) -> Result<AllowedOrigins, ConfigError> {
    let Some(v) = value else { return Ok(AllowedOrigins::SameHost) };
    let entries: Vec<&str> = v.split(',').map(str::trim).filter(|o| !o.is_empty()).collect();
    if entries.contains(&"*") {
        return Ok(AllowedOrigins::Any);
    }
    entries.into_iter().map(parse_origin).collect::<Result<_, _>>().map(AllowedOrigins::List)
}

/// `scheme://host[:port]`, as a browser writes `Origin`, lower-cased; a
/// trailing `/` is tolerated, a path, query or user is not.
fn parse_origin(entry: &str) -> Result<String, ConfigError> {
    let bad =
        || ConfigError::new(var::ALLOWED_ORIGINS, format!("{entry:?} is not * or scheme://host[:port]"));
    let url = url::Url::parse(entry).map_err(|_| bad())?;
    let bare = url.host_str().is_some_and(|h| !h.is_empty())
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !bare || !entry.contains("://") {
        return Err(bad());
    }
    Ok(entry.trim_end_matches('/').to_ascii_lowercase())
}

/// The `redis` crate's own URL rules: user and password percent-decoded as
/// a URL's (`%2B` is `+`, a literal `+` stays `+`), a user name for Redis ACLs.
fn parse_redis_url(value: &str) -> Result<RedisUrl, ConfigError> {
    let bad = |reason: &str| ConfigError::new(var::REDIS_URL, reason.to_owned());
    match value.split_once("://").map(|(scheme, _)| scheme) {
        Some("redis") => {}
        Some("rediss") => {
            return Err(bad(
                "rediss:// (TLS) is not supported; use redis:// over a private network or a TLS tunnel",
            ))
        }
        _ => return Err(bad("the scheme must be redis:// (redis://[user:password@]host:port[/db])")),
    }
    let info = redis::IntoConnectionInfo::into_connection_info(value).map_err(|e| bad(&e.to_string()))?;
    let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Err(bad("expected redis://[user:password@]host:port[/db]"));
    };
    let settings = info.redis_settings();
    Ok(RedisUrl {
        host: host.clone(),
        port: *port,
        user: settings.username().map(str::to_owned),
        password: settings.password().map(str::to_owned),
        db: u32::try_from(settings.db()).map_err(|_| bad("the database (path) must be 0 or more"))?,
    })
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
        assert_eq!(c.allowed_origins, AllowedOrigins::SameHostOrLocalDev, "no secret: development mode");
        assert_eq!(c.listen_addr(), IpAddr::V4(Ipv4Addr::LOCALHOST), "no secret means loopback only");
        let mut a = args();
        a.jwt_secret = Some("s".into());
        assert_eq!(Config::from_args(&a).expect("valid").allowed_origins, AllowedOrigins::SameHost);
        assert_eq!(c.jwks_refresh, Duration::from_secs(300));
        assert_eq!(c.token_refresh_notice, Duration::from_secs(30));
    }

    #[test]
    fn any_way_to_check_tokens_ends_development_mode() {
        let mut a = args();
        a.jwks_url = Some("https://idp.example/.well-known/jwks.json".into());
        assert!(!Config::from_args(&a).expect("valid").development_mode());
        let mut a = args();
        a.jwt_public_key = Some("/etc/realtime/key.pem".into());
        assert!(!Config::from_args(&a).expect("valid").development_mode());
        let mut a = args();
        a.jwks_url = Some("ftp://idp.example/jwks".into());
        assert_eq!(Config::from_args(&a).expect_err("ftp").var, "JWKS_URL");
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        type Setter = fn(&mut ServeArgs, String);
        let cases: [(&str, Setter); 9] = [
            ("JWKS_URL", |a, v| a.jwks_url = Some(v)),
            ("TOKEN_REFRESH_NOTICE", |a, v| a.token_refresh_notice = Some(v)),
            ("PORT", |a, v| a.port = Some(v)),
            ("SHARDS", |a, v| a.shards = Some(v)),
            ("WS_READ_TIMEOUT", |a, v| a.ws_read_timeout = Some(v)),
            ("LOG_FORMAT", |a, v| a.log_format = Some(v)),
            ("SHARE_PORT", |a, v| a.share_port = Some(v)),
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
    fn a_message_size_above_the_send_queue_is_a_bad_value() {
        let mut a = args();
        a.max_message_size = Some("2000000".to_owned());
        assert_eq!(Config::from_args(&a).expect_err("above the queue").var, "MAX_MESSAGE_SIZE");
        a.send_queue_bytes = Some("2000000".to_owned());
        assert!(Config::from_args(&a).is_ok(), "equal to the queue is allowed");
    }

    #[test]
    fn redis_url_decodes_like_a_url() {
        let r = parse_redis_url("redis://:s%40cret@127.0.0.1:6380/3").expect("valid");
        assert_eq!(
            r,
            RedisUrl {
                host: "127.0.0.1".into(),
                port: 6380,
                user: None,
                password: Some("s@cret".into()),
                db: 3
            }
        );
        let r = parse_redis_url("redis://ops:pa+ss%2B%26tail@redis.internal").expect("valid");
        assert_eq!(r.user.as_deref(), Some("ops"));
        assert_eq!(r.password.as_deref(), Some("pa+ss+&tail"), "a + stays a +, %2B is a +");
        assert_eq!((r.host.as_str(), r.port, r.db), ("redis.internal", 6379, 0));
        for bad in ["rediss://h:1", "http://h", "redis://h/x", "not a url"] {
            assert!(parse_redis_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_list_is_normalised() {
        assert_eq!(
            parse_origins(Some("https://A.example/, http://b:8080")).expect("valid"),
            AllowedOrigins::List(vec!["https://a.example".into(), "http://b:8080".into()])
        );
        assert_eq!(parse_origins(Some("*")).expect("valid"), AllowedOrigins::Any);
        for bad in
            ["example.com", "https://a.example/path", "https://u@a.example", "http://", "https://a?x=1"]
        {
            assert_eq!(parse_origins(Some(bad)).expect_err(bad).var, "ALLOWED_ORIGINS");
        }
    }
}
