//! The Origin rules of README's Client protocol section: no `Origin` (not a browser) is allowed;
//! with `ALLOWED_ORIGINS` unset the Origin's host and port must equal the
//! `Host` header's (in development mode a page from `http://localhost:*` or
//! `http://127.0.0.1:*` may also connect); otherwise only the listed origins
//! (or `*`).

use http::uri::Authority;

use crate::config::AllowedOrigins;

pub fn allowed(rules: &AllowedOrigins, origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    match rules {
        AllowedOrigins::Any => true,
        AllowedOrigins::List(list) => listed(list, origin),
        AllowedOrigins::SameHost => host.is_some_and(|host| same_host(origin, host)),
        AllowedOrigins::SameHostOrLocalDev => {
            local_dev_server(origin) || host.is_some_and(|host| same_host(origin, host))
        }
    }
}

/// A page served over plain HTTP by this machine, on any port: how a
/// frontend dev server (Vite, webpack) serves the page of a first try.
fn local_dev_server(origin: &str) -> bool {
    url::Url::parse(origin)
        .is_ok_and(|url| url.scheme() == "http" && matches!(url.host_str(), Some("localhost" | "127.0.0.1")))
}

/// Is `origin` one of `list` (entries already lower-case, no trailing slash)?
fn listed(list: &[String], origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    list.iter().any(|entry| entry.eq_ignore_ascii_case(origin))
}

fn same_host(origin: &str, host: &str) -> bool {
    let Ok(origin) = url::Url::parse(origin) else { return false };
    let Ok(host) = host.parse::<Authority>() else { return false };
    let (Some(origin_host), Some(origin_port)) = (origin.host_str(), origin.port_or_known_default()) else {
        return false;
    };
    // A Host header without a port means the scheme's default port.
    let host_port = host.port_u16().or_else(|| default_port(origin.scheme()));
    unbracket(origin_host).eq_ignore_ascii_case(unbracket(host.host())) && Some(origin_port) == host_port
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

fn unbracket(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_compares_host_and_port() {
        let rules = AllowedOrigins::SameHost;
        assert!(allowed(&rules, None, Some("a:1")));
        assert!(allowed(&rules, Some("http://shop.example:8080"), Some("shop.example:8080")));
        assert!(allowed(&rules, Some("https://shop.example"), Some("shop.example")));
        assert!(!allowed(&rules, Some("http://evil.example:8080"), Some("shop.example:8080")));
        assert!(!allowed(&rules, Some("http://shop.example:9090"), Some("shop.example:8080")));
        assert!(!allowed(&rules, Some("null"), Some("shop.example")));
    }

    #[test]
    fn development_mode_also_lets_local_dev_servers_in() {
        let rules = AllowedOrigins::SameHostOrLocalDev;
        let host = Some("127.0.0.1:8080");
        assert!(allowed(&rules, Some("http://localhost:5173"), host));
        assert!(allowed(&rules, Some("http://127.0.0.1:3000"), host));
        assert!(allowed(&rules, Some("http://localhost"), host));
        assert!(allowed(&rules, Some("http://127.0.0.1:8080"), host));
        assert!(!allowed(&rules, Some("https://localhost.evil.example"), host));
        assert!(!allowed(&rules, Some("http://localhost.evil.example:5173"), host));
        assert!(!allowed(&rules, Some("http://evil.example:8080"), host));
        assert!(!allowed(&rules, Some("null"), host));
        assert!(!allowed(&AllowedOrigins::SameHost, Some("http://localhost:5173"), host));
    }

    #[test]
    fn list_and_any() {
        let rules = AllowedOrigins::List(vec!["https://shop.example".into()]);
        assert!(allowed(&rules, Some("https://Shop.example"), None));
        assert!(!allowed(&rules, Some("https://other.example"), None));
        assert!(allowed(&AllowedOrigins::Any, Some("https://other.example"), None));
    }
}
