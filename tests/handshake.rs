//! `GET /ws` before the upgrade: tokens (README, Client protocol), origins, connection
//! limit, and tokens never appearing in logs.

mod support;

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::*;

fn exp_in(secs: i64) -> i64 {
    now_secs() as i64 + secs
}

#[test]
fn token_in_query_is_accepted() {
    let s = server().start();
    let (ws, hello) = s.connect("123", "seller");
    assert_connected(&hello, "123", "seller");
    close(ws);
    let m = parse_metrics(&s.metrics());
    assert!(metric_sum(&m, "realtime_handshakes_total") >= 1.0, "realtime_handshakes_total not counted");
}

#[test]
fn token_in_authorization_header_is_accepted() {
    let s = server().start();
    let tok = token(SECRET, "77", "delivery");
    let url = format!("ws://127.0.0.1:{}/ws", s.port);
    let (mut ws, resp) = ws_connect_with(&url, &[("Authorization", &format!("Bearer {tok}"))])
        .unwrap_or_else(|e| panic!("bearer handshake failed: {e}"));
    assert_eq!(resp.status().as_u16(), 101);
    let hello = next_json(&mut ws, DEFAULT_DEADLINE);
    assert_connected(&hello, "77", "delivery");
    close(ws);
}

#[test]
fn sub_claim_and_numeric_user_id() {
    let s = server().start();

    let t = mint(SECRET, &json!({"sub": "from-sub", "role": "client", "exp": exp_in(3600)}));
    let (ws, hello) = s.connect_token(&t);
    assert_connected(&hello, "from-sub", "client");
    close(ws);

    let t = mint(SECRET, &json!({"userId": 42, "role": "admin", "exp": exp_in(3600)}));
    let (ws, hello) = s.connect_token(&t);
    assert_connected(&hello, "42", "admin");
    close(ws);

    // userId wins over sub when both are present
    let t = mint(SECRET, &json!({"userId": "uid", "sub": "other", "role": "seller", "exp": exp_in(3600)}));
    let (ws, hello) = s.connect_token(&t);
    assert_connected(&hello, "uid", "seller");
    close(ws);
}

/// Every kind of bad token of README's Client protocol section gets 401 with a JSON error body.
#[test]
fn bad_tokens_get_401_with_json_error() {
    let s = server().start();
    let good = json!({"userId": "1", "role": "seller", "exp": exp_in(3600)});
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing token", None),
        ("empty token", Some(String::new())),
        ("garbage", Some("not-a-jwt".into())),
        ("three garbage parts", Some("aaa.bbb.ccc".into())),
        ("wrong secret", Some(mint("some-other-secret", &good))),
        (
            "expired an hour ago",
            Some(mint(SECRET, &json!({"userId": "1", "role": "seller", "exp": exp_in(-3600)}))),
        ),
        ("alg none", Some(unsigned_token(&good))),
        ("HS384", Some(mint_alg(Algorithm::HS384, SECRET, &good))),
        ("HS512", Some(mint_alg(Algorithm::HS512, SECRET, &good))),
        ("missing exp", Some(mint(SECRET, &json!({"userId": "1", "role": "seller"})))),
        ("missing userId and sub", Some(mint(SECRET, &json!({"role": "seller", "exp": exp_in(3600)})))),
        ("missing role", Some(mint(SECRET, &json!({"userId": "1", "exp": exp_in(3600)})))),
        (
            "unknown role",
            Some(mint(SECRET, &json!({"userId": "1", "role": "superuser", "exp": exp_in(3600)}))),
        ),
        (
            "role in wrong case",
            Some(mint(SECRET, &json!({"userId": "1", "role": "Admin", "exp": exp_in(3600)}))),
        ),
        (
            "tampered payload",
            Some({
                // signature of the good token on a payload claiming admin
                let t = mint(SECRET, &good);
                let parts: Vec<&str> = t.split('.').collect();
                let forged = b64url(
                    json!({"userId": "1", "role": "admin", "exp": exp_in(3600)}).to_string().as_bytes(),
                );
                format!("{}.{}.{}", parts[0], forged, parts[2])
            }),
        ),
    ];
    let mut failures = Vec::new();
    for (name, tok) in &cases {
        let url = match tok {
            None => format!("ws://127.0.0.1:{}/ws", s.port),
            Some(t) => s.ws_url(t),
        };
        match ws_connect_with(&url, &[]) {
            Ok((ws, resp)) => {
                failures.push(format!("{name}: accepted ({})", resp.status()));
                close(ws);
            }
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body =
                    resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
                if status != 401 {
                    failures.push(format!("{name}: status {status}, body {body:?}"));
                    continue;
                }
                match serde_json::from_str::<Value>(&body) {
                    Ok(v) if v["error"].as_str().is_some_and(|m| !m.is_empty()) => {}
                    _ => failures.push(format!("{name}: 401 but body is {body:?}")),
                }
            }
            Err(e) => failures.push(format!("{name}: no HTTP answer: {e}")),
        }
        // the bearer header form must be refused the same way
        if let Some(t) = tok.as_ref().filter(|t| !t.is_empty()) {
            let url = format!("ws://127.0.0.1:{}/ws", s.port);
            match ws_connect_with(&url, &[("Authorization", &format!("Bearer {t}"))]) {
                Err(tungstenite::Error::Http(resp)) if resp.status().as_u16() == 401 => {}
                Err(tungstenite::Error::Http(resp)) => {
                    failures.push(format!("{name} (bearer): status {}", resp.status()))
                }
                Err(e) => failures.push(format!("{name} (bearer): no HTTP answer: {e}")),
                Ok((ws, _)) => {
                    failures.push(format!("{name} (bearer): accepted"));
                    close(ws);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "bad tokens not refused with 401 + JSON error:\n  {}\n{}",
        failures.join("\n  "),
        s.output_dump()
    );
    // the failures are counted
    let m = parse_metrics(&s.metrics());
    assert!(
        metric_sum(&m, "realtime_auth_failures_total") >= cases.len() as f64,
        "realtime_auth_failures_total too low after {} failures",
        cases.len()
    );
    // and nothing was connected
    assert_eq!(s.health()["connections"], 0);
}

#[test]
fn origin_same_host_by_default() {
    let s = server().start();
    let tok = token(SECRET, "o1", "client");
    let url = s.ws_url(&tok);

    // no Origin: not a browser, allowed
    let (ws, _) = ws_connect_with(&url, &[]).expect("no Origin must be allowed");
    close(ws);

    // Origin equal to http://<Host header>
    let same = format!("http://127.0.0.1:{}", s.port);
    let (ws, _) = ws_connect_with(&url, &[("Origin", &same)])
        .unwrap_or_else(|e| panic!("same-host Origin {same} refused: {e}"));
    close(ws);

    // other hosts, or the same host on another port
    for other in [
        "https://evil.example".to_string(),
        format!("http://127.0.0.1:{}", s.port.wrapping_add(1).max(1)),
        format!("http://localhost.evil.example:{}", s.port),
        // a local dev server's page is development mode's alone
        "http://localhost:5173".to_string(),
    ] {
        let (status, body) = ws_reject(&url, &[("Origin", &other)]);
        assert_eq!(status, 403, "Origin {other}: body {body:?}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("403 body not JSON ({e}): {body:?}"));
        assert!(v["error"].is_string(), "403 body {body:?}");
    }
}

#[test]
fn origin_allow_list() {
    let s = server().env("ALLOWED_ORIGINS", "https://shop.example,https://admin.example").start();
    let tok = token(SECRET, "o2", "seller");
    let url = s.ws_url(&tok);
    for ok in ["https://shop.example", "https://admin.example"] {
        let (ws, _) = ws_connect_with(&url, &[("Origin", ok)])
            .unwrap_or_else(|e| panic!("listed Origin {ok} refused: {e}"));
        close(ws);
    }
    let same = format!("http://127.0.0.1:{}", s.port);
    for bad in ["https://evil.example", same.as_str()] {
        let (status, body) = ws_reject(&url, &[("Origin", bad)]);
        assert_eq!(status, 403, "Origin {bad}: body {body:?}");
        assert!(
            serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string()),
            "403 body {body:?}"
        );
    }
    // no Origin is still fine
    let (ws, _) = ws_connect_with(&url, &[]).expect("no Origin must be allowed");
    close(ws);
}

#[test]
fn origin_wildcard_allows_any() {
    let s = server().env("ALLOWED_ORIGINS", "*").start();
    let tok = token(SECRET, "o3", "delivery");
    let url = s.ws_url(&tok);
    for o in ["https://anything.example", "http://localhost:3000"] {
        let (ws, _) = ws_connect_with(&url, &[("Origin", o)])
            .unwrap_or_else(|e| panic!("Origin {o} refused under '*': {e}"));
        close(ws);
    }
}

#[test]
fn max_connections_gives_503() {
    let s = server().env("MAX_CONNECTIONS", "2").start();
    let (a, _) = s.connect("m1", "client");
    let (b, _) = s.connect("m2", "client");
    s.wait_connections(2);
    let tok = token(SECRET, "m3", "client");
    let (status, body) = ws_reject(&s.ws_url(&tok), &[]);
    assert_eq!(status, 503, "third connection: body {body:?}");
    assert!(serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string()), "503 body {body:?}");
    assert_eq!(s.health()["connections"], 2);

    // once one leaves, a new one is let in again
    close(a);
    s.wait_connections(1);
    let (c, _) = s.connect("m4", "client");
    close(b);
    close(c);
}

#[test]
fn tokens_never_appear_in_logs() {
    let s = server().env("LOG_FORMAT", "json").start();
    let canary = "leakcanary0123456789";
    // a wrongly signed token (its signature and payload are distinctive)
    let bad =
        mint("not-the-server-secret", &json!({"userId": "someone", "role": "seller", "exp": exp_in(3600)}));
    let (status, _) = ws_reject(&s.ws_url(&bad), &[]);
    assert_eq!(status, 401);
    let bad_bearer = format!("{canary}.{canary}.{canary}");
    let (status, _) = ws_reject(
        &format!("ws://127.0.0.1:{}/ws", s.port),
        &[("Authorization", &format!("Bearer {bad_bearer}"))],
    );
    assert_eq!(status, 401);
    // and a good token, used in the query string
    let good = token(SECRET, "logcheck", "client");
    let (ws, hello) = s.connect_token(&good);
    assert_connected(&hello, "logcheck", "client");
    close(ws);
    s.wait_connections(0);

    // The auth failures are logged (with a reason). Wait until the log shows
    // them, which also means the lines about these requests were written.
    let deadline = Instant::now() + DEFAULT_DEADLINE;
    loop {
        let err = s.stderr().to_ascii_lowercase();
        let failures_logged = err
            .lines()
            .filter(|l| {
                l.contains("auth")
                    || l.contains("token")
                    || l.contains("401")
                    || l.contains("unauthorized")
                    || l.contains("signature")
            })
            .count();
        if failures_logged >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no log line about the auth failures\n{}", s.output_dump());
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = s.stdout();
    let err = s.stderr();
    let sig = bad.rsplit('.').next().unwrap();
    for (what, needle) in [
        ("bad token", bad.as_str()),
        ("bad token signature", sig),
        ("bad token payload", bad.split('.').nth(1).unwrap()),
        ("bearer canary", canary),
        ("good token", good.as_str()),
        ("good token signature", good.rsplit('.').next().unwrap()),
    ] {
        assert!(
            !err.contains(needle) && !out.contains(needle),
            "{what} appears in the server output\n{}",
            s.output_dump()
        );
    }
    // LOG_FORMAT=json: every stderr line is one JSON object
    for line in non_empty_lines(&err) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line:?}"));
        assert!(v.is_object(), "stderr line is not an object: {line:?}");
    }
}

#[test]
fn b64url_helper_is_correct() {
    for (input, want) in [
        (&b""[..], ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foobar", "Zm9vYmFy"),
        (&[0xfb, 0xff][..], "-_8"),
    ] {
        assert_eq!(b64url(input), want, "{input:?}");
        assert_eq!(b64url_decode(want).as_deref(), Some(input), "{want:?}");
    }
}

/// A `GET /ws` that asks to upgrade but is no valid RFC 6455 handshake gets
/// an answer (it used to be hung up on without a byte): 401 without a token,
/// then 400, or 426 naming the version we speak.
#[test]
fn malformed_upgrades_are_answered() {
    let s = server().start();
    let token = token(SECRET, "u1", "client");
    let path = format!("/ws?token={token}");
    let key = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), key, ("Sec-WebSocket-Version", "13")];
    let without = |name: &str| upgrade.iter().copied().filter(|(n, _)| *n != name).collect::<Vec<_>>();
    let mut version_8 = without("Sec-WebSocket-Version");
    version_8.push(("Sec-WebSocket-Version", "8"));

    // (what, path, headers, status)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: [Case; 4] = [
        ("no token, no key", "/ws", without("Sec-WebSocket-Key"), 401),
        ("no Sec-WebSocket-Key", &path, without("Sec-WebSocket-Key"), 400),
        ("no Connection: Upgrade", &path, without("Connection"), 400),
        ("version 8", &path, version_8, 426),
    ];
    for (what, path, headers, status) in cases {
        let r = try_http(s.port, "GET", path, &headers, None)
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert!(!r.error_message().is_empty(), "{what}: a JSON error: {r:?}");
        if status == 426 {
            assert_eq!(r.header("sec-websocket-version"), Some("13"), "{what}: {r:?}");
        }
    }
    let http_1_0 = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let r = raw_http(s.port, &http_1_0).expect("HTTP/1.0 upgrade: an answer");
    assert_eq!(r.status, 400, "HTTP/1.0 upgrade: {r:?}");
    // A valid upgrade still works.
    let (mut ws, _) = s.connect("u2", "seller");
    assert_ping_pong(&mut ws);
}

/// A `GET /ws` with two faults gets the same answer whichever way it comes:
/// as a connection's first request, or on a kept-alive connection after an
/// ordinary request. The first check in README's order decides: a foreign
/// Origin before the token, the token before the handshake.
#[test]
fn a_request_refused_on_two_grounds_gets_the_same_answer_on_both_paths() {
    let s = server().start();
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let foreign = ("Origin", "https://evil.example");
    let with = |extra: &[(&'static str, &'static str)], without: &str| {
        let mut headers: Vec<_> = upgrade.iter().copied().filter(|(name, _)| *name != without).collect();
        headers.extend_from_slice(extra);
        headers
    };
    let good = format!("/ws?token={}", token(SECRET, "two", "client"));
    // (what, path, headers, the answer's status)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: [Case; 4] = [
        ("foreign Origin and a bad token", "/ws?token=not-a-token", with(&[foreign], ""), 403),
        (
            "a bad token and no Sec-WebSocket-Key",
            "/ws?token=not-a-token",
            with(&[], "Sec-WebSocket-Key"),
            401,
        ),
        ("foreign Origin and no Sec-WebSocket-Key", &good, with(&[foreign], "Sec-WebSocket-Key"), 403),
        (
            "no token and version 8",
            "/ws",
            with(&[("Sec-WebSocket-Version", "8")], "Sec-WebSocket-Version"),
            401,
        ),
    ];
    for (what, path, headers, status) in cases {
        let fresh = try_http(s.port, "GET", path, &headers, None)
            .unwrap_or_else(|e| panic!("{what}, fresh connection: no answer: {e}"));
        let mut conn = HttpConn::open(s.port);
        assert_eq!(conn.request("GET", "/health", &[], None).status, 200, "{what}: the ordinary request");
        let kept = conn.request("GET", path, &headers, None);
        assert_eq!(
            (fresh.status, fresh.error_message()),
            (kept.status, kept.error_message()),
            "{what}: fresh connection (left), kept-alive (right)"
        );
        assert_eq!(fresh.status, status, "{what}: {fresh:?}");
    }
    assert_eq!(s.health()["connections"], 0, "no refused request became a session");
}

/// A WebSocket upgrade on a connection that already carried HTTP requests is
/// answered as an upgrade (it used to get 426: only a connection's first
/// request was routed to the WebSocket side), with the same checks.
#[test]
fn an_upgrade_on_a_kept_alive_connection_becomes_a_session() {
    let s = server().start();
    let mut conn = HttpConn::open(s.port);
    assert_eq!(conn.request("GET", "/health", &[], None).status, 200);
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let refused = conn.request("GET", "/ws?token=not-a-token", &upgrade, None);
    assert_eq!(refused.status, 401, "a bad token, after a request: {refused:?}");

    let url = s.ws_url(&token(SECRET, "kept", "seller"));
    let mut ws = ws_connect_over(&url, conn.into_stream()).expect("an upgrade after two HTTP requests");
    let hello = next_json(&mut ws, DEFAULT_DEADLINE);
    assert_eq!(hello["type"], "connected", "{hello}");
    assert_eq!(hello["payload"]["userId"], "kept", "{hello}");
    assert_ping_pong(&mut ws);
    s.wait_connections(1);
    let id = s.broadcast(json!({"room": "all", "type": "t", "payload": {}}));
    expect_event(&mut ws, &id);
}
