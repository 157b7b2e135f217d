//! Development mode (no `JWT_SECRET`, `JWT_PUBLIC_KEY` or `JWKS_URL`): banner with ready tokens on stdout,
//! loopback-only listener, random secret.

mod support;

use serde_json::json;
use support::*;

fn token_line<'a>(stdout: &'a str, role: &str) -> Option<&'a str> {
    stdout.lines().map(str::trim).find_map(|l| {
        let rest = l.strip_prefix(role)?;
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let tok = rest.trim();
        (tok.split('.').count() == 3 && !tok.contains(char::is_whitespace)).then_some(tok)
    })
}

/// Listening sockets on `port` from /proc/net/tcp{,6}: (file, local address hex).
fn listeners(port: u16) -> Vec<(String, String)> {
    let port_hex = format!("{port:04X}");
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != "0A" {
                continue;
            }
            if let Some((addr, p)) = cols[1].split_once(':') {
                if p == port_hex {
                    out.push((file.to_string(), addr.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn dev_mode_prints_working_tokens_and_binds_loopback_only() {
    // BIND_ADDR says everywhere; dev mode must still bind 127.0.0.1 only.
    let s = server().unset("JWT_SECRET").env("BIND_ADDR", "0.0.0.0").start();
    let out = s.wait_stdout(DEFAULT_DEADLINE, |o| ROLES.iter().all(|(r, _)| token_line(o, r).is_some()));

    assert!(out.contains("Development mode"), "no development-mode warning on stdout:\n{out}");
    let url_line = out
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("WebSocket URL (as dev-client):"))
        .unwrap_or_else(|| panic!("no 'WebSocket URL (as dev-client):' line:\n{out}"))
        .trim()
        .to_string();
    let prefix = format!("ws://127.0.0.1:{}/ws?token=", s.port);
    assert!(url_line.starts_with(&prefix), "URL {url_line:?} should start with {prefix:?}");

    // the URL works as printed, with the least-privileged role
    let mut ws = ws_connect(&url_line).unwrap_or_else(|e| panic!("printed URL refused: {e}"));
    let hello = next_json(&mut ws, DEFAULT_DEADLINE);
    assert_eq!(hello["type"], "connected", "{hello}");
    assert_eq!(hello["payload"]["role"], "client", "{hello}");
    close(ws);

    // each role's token connects with that role
    for (role, rooms) in ROLES {
        let tok = token_line(&out, role).unwrap();
        let (ws, hello) = s.connect_token(tok);
        assert_eq!(hello["payload"]["role"], *role, "{hello}");
        assert_eq!(hello["payload"]["rooms"], json!(rooms), "{hello}");
        assert!(hello["payload"]["userId"].is_string(), "{hello}");
        close(ws);
        // "valid 24h"
        let claims = unverified_claims(tok);
        let left = claims["exp"].as_i64().expect("numeric exp") - now_secs() as i64;
        assert!(
            (23 * 3600..=25 * 3600).contains(&left),
            "{role} token expires in {left} s, expected about 24 h"
        );
        assert_eq!(claims["role"], *role, "{claims}");
    }

    // tokens from a secret the server did not make are refused
    for secret in [SECRET, "secret", "dev-secret", "changeme", ""] {
        let tok = token(secret, "intruder", "admin");
        let (status, body) = ws_reject(&s.ws_url(&tok), &[]);
        assert_eq!(status, 401, "secret {secret:?}: body {body:?}");
    }

    // loopback only, whatever BIND_ADDR says
    let ls = listeners(s.port);
    assert!(!ls.is_empty(), "no listener found for port {}", s.port);
    for (file, addr) in &ls {
        assert!(
            file == "/proc/net/tcp" && addr == "0100007F",
            "listener on {file} address {addr} (expected 127.0.0.1 only): {ls:?}"
        );
    }
    // the tokens are for people: not in the logs
    let err = s.stderr();
    for (role, _) in ROLES {
        let tok = token_line(&out, role).unwrap();
        assert!(!err.contains(tok), "{role} token appears on stderr");
    }
}

#[test]
fn dev_mode_lets_pages_of_a_local_dev_server_connect() {
    let s = server().unset("JWT_SECRET").start();
    let out = s.wait_stdout(DEFAULT_DEADLINE, |o| token_line(o, "client").is_some());
    let url = s.ws_url(token_line(&out, "client").unwrap());
    for page in ["http://localhost:5173", "http://127.0.0.1:3000", &format!("http://127.0.0.1:{}", s.port)] {
        let (ws, _) = ws_connect_with(&url, &[("Origin", page)])
            .unwrap_or_else(|e| panic!("development mode refused a page from {page}: {e}"));
        close(ws);
    }
    for page in ["https://evil.example", "http://localhost.evil.example:5173", "null"] {
        let (status, body) = ws_reject(&url, &[("Origin", page)]);
        assert_eq!(status, 403, "Origin {page}: body {body:?}");
    }
    // ALLOWED_ORIGINS still decides alone where it is set
    let listed = server().unset("JWT_SECRET").env("ALLOWED_ORIGINS", "https://shop.example").start();
    let out = listed.wait_stdout(DEFAULT_DEADLINE, |o| token_line(o, "client").is_some());
    let (status, _) = ws_reject(
        &listed.ws_url(token_line(&out, "client").unwrap()),
        &[("Origin", "http://localhost:5173")],
    );
    assert_eq!(status, 403, "a dev server's page with ALLOWED_ORIGINS set");
}

#[test]
fn dev_mode_banner_says_how_to_publish_and_the_command_works() {
    let s = server().unset("JWT_SECRET").start();
    let out = s.wait_stdout(DEFAULT_DEADLINE, |o| o.contains("curl ") && token_line(o, "client").is_some());
    let listening = format!("listening on http://127.0.0.1:{}", s.port);
    assert!(out.lines().next().is_some_and(|l| l.starts_with(&listening)), "first line of stdout:\n{out}");
    let curl = out.lines().map(str::trim).find(|l| l.starts_with("curl ")).expect("a curl line");
    let (mut ws, _) = s.connect_token(token_line(&out, "client").unwrap());
    // the printed body is what the banner's curl sends
    let body = curl.split("-d '").nth(1).and_then(|b| b.strip_suffix('\'')).expect("a -d '...' body");
    let body: serde_json::Value = serde_json::from_str(body).expect("the printed body is JSON");
    let answer = s.publish("/api/notifications/broadcast", &body);
    assert_eq!(answer.status, 202, "{answer:?}");
    let event = next_json(&mut ws, DEFAULT_DEADLINE);
    assert_eq!(event["payload"]["message"], "hello", "{event}");
    close(ws);
}

#[test]
fn dev_mode_secret_is_random_per_start() {
    let a = server().unset("JWT_SECRET").start();
    let b = server().unset("JWT_SECRET").start();
    let out_a = a.wait_stdout(DEFAULT_DEADLINE, |o| token_line(o, "seller").is_some());
    let tok_a = token_line(&out_a, "seller").unwrap().to_string();
    b.wait_stdout(DEFAULT_DEADLINE, |o| token_line(o, "seller").is_some());
    // a token from one dev-mode server is worthless on another
    let (status, _) = ws_reject(&b.ws_url(&tok_a), &[]);
    assert_eq!(status, 401);
}

#[test]
fn a_public_key_or_jwks_alone_is_not_development_mode() {
    let key = KeyPair::generate(KeyKind::Ed25519);
    let idp = JwksServer::start(&jwks(&[("k", &key)]));
    for (var, value) in [("JWT_PUBLIC_KEY", key.public_pem.to_str().unwrap()), ("JWKS_URL", &idp.url())] {
        let s = server().unset("JWT_SECRET").env(var, value).env("BIND_ADDR", "0.0.0.0").start();
        // BIND_ADDR is obeyed: development mode would bind 127.0.0.1 only.
        let ls = listeners(s.port);
        assert!(ls.iter().any(|(_, addr)| addr == "00000000"), "{var} alone: listeners {ls:?}");
        s.wait_stderr(DEFAULT_DEADLINE, |err| err.contains("listening"));
        assert!(!s.stdout().contains("Development mode"), "{var} alone: {}", s.output_dump());
        // No secret was made up: HS256 tokens have nothing to verify against.
        s.expect_refused(&token(SECRET, "hs", "admin"), "algorithm");
        let (ws, hello) = s.connect_token(&key.token("pk", "admin", Some("k")));
        assert_connected(&hello, "pk", "admin");
        close(ws);
    }
}
