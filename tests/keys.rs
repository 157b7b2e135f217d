//! Asymmetric tokens (README, Tokens during a session): `JWT_PUBLIC_KEY` of each type, a JWKS
//! served by a test server (keys by `kid`, rotation, failed fetches), the
//! algorithm always taken from the key, and the claims of README's Tokens during a session section
//! (`nbf`, `exp` = now, `iss`, `aud`), each refusal counted by its reason.

mod support;

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::*;

const EXIT_BOUND: Duration = Duration::from_secs(10);
/// Unknown `kid`s make the server refetch at most once every 10 s.
const REFETCH_BOUND: Duration = Duration::from_secs(20);

fn claims(user_id: &str, role: &str) -> serde_json::Value {
    json!({"userId": user_id, "role": role, "exp": now_secs() + 3600})
}

#[test]
fn a_public_key_of_each_type_verifies_its_tokens_beside_the_secret() {
    for kind in KeyKind::ALL {
        let key = KeyPair::generate(kind);
        let s = server().env("JWT_PUBLIC_KEY", key.public_pem.to_str().unwrap()).start();
        let (ws, hello) = s.connect_token(&key.token("pk-user", "seller", None));
        assert_connected(&hello, "pk-user", "seller");
        close(ws);
        // JWT_SECRET set as well: HS256 tokens still pass.
        let (ws, hello) = s.connect("hs-user", "client");
        assert_connected(&hello, "hs-user", "client");
        close(ws);
        // Another key of the same type is not this one.
        let stranger = KeyPair::generate(kind);
        s.expect_refused(&stranger.token("x", "seller", None), "signature");
    }
}

#[test]
fn the_algorithm_comes_from_the_key_never_from_the_token() {
    let rsa = KeyPair::generate(KeyKind::Rsa);
    let s = server().unset("JWT_SECRET").env("JWT_PUBLIC_KEY", rsa.public_pem.to_str().unwrap()).start();
    // HS256 "signed" with the public key's PEM as the secret: the classic confusion.
    let confused = mint_alg(Algorithm::HS256, &rsa.public_pem_text(), &claims("1", "admin"));
    s.expect_refused(&confused, "algorithm");
    s.expect_refused(&unsigned_token(&claims("1", "admin")), "malformed");
    let ec = KeyPair::generate(KeyKind::P256);
    s.expect_refused(&ec.token("1", "admin", None), "algorithm");
    assert_eq!(s.health()["connections"], 0);
}

#[test]
fn a_bad_public_key_stops_start_up() {
    let dir = TempDir::new();
    dir.write("garbage.pem", "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n");
    let private = KeyPair::generate(KeyKind::Rsa);
    for path in [dir.path().join("absent.pem"), dir.path().join("garbage.pem"), private.private_pem.clone()] {
        let done = server().env("JWT_PUBLIC_KEY", path.to_str().unwrap()).run(EXIT_BOUND);
        assert_eq!(done.code(), Some(2), "{path:?}: {done:?}");
        let lines = done.stderr_lines();
        assert_eq!(lines.len(), 1, "{path:?}: one line expected: {lines:?}");
        assert!(lines[0].contains("JWT_PUBLIC_KEY"), "{lines:?}");
    }
}

#[test]
fn jwks_keys_are_chosen_by_kid_and_a_new_kid_is_fetched() {
    let rsa = KeyPair::generate(KeyKind::Rsa);
    let ed = KeyPair::generate(KeyKind::Ed25519);
    let idp = JwksServer::start(&jwks(&[("k1", &rsa)]));
    let s = server().unset("JWT_SECRET").env("JWKS_URL", &idp.url()).start();
    assert_eq!(idp.requests(), 1, "fetched once before the shards start");

    let (ws, hello) = s.connect_token(&rsa.token("jw-1", "delivery", Some("k1")));
    assert_connected(&hello, "jw-1", "delivery");
    close(ws);
    // The right key under the wrong kid, and kid k1 with the HS256 confusion.
    s.expect_refused(&ed.token("jw-2", "seller", Some("k1")), "algorithm");
    let confused = mint_alg(Algorithm::HS256, &rsa.public_pem_text(), &claims("1", "admin"));
    s.expect_refused(&confused, "algorithm");

    // Rotation: the provider publishes k2; tokens naming it are refused until
    // the refetch that the unknown kid asked for, at most 10 s after the last.
    let rotated = ed.token("jw-2", "seller", Some("k2"));
    s.expect_refused(&rotated, "unknown_kid");
    idp.set(Some(&jwks(&[("k1", &rsa), ("k2", &ed)])));
    let hello = s.connect_eventually(&rotated, REFETCH_BOUND);
    assert_connected(&hello, "jw-2", "seller");
    assert_eq!(idp.requests(), 2, "many unknown-kid refusals, one refetch");
    // No JWT_SECRET: no HS256 token passes.
    s.expect_refused(&token(SECRET, "hs", "seller"), "algorithm");
}

#[test]
fn a_failed_jwks_fetch_keeps_the_last_good_set() {
    let key = KeyPair::generate(KeyKind::P256);
    let idp = JwksServer::start(&jwks(&[("ec", &key)]));
    let s = server().unset("JWT_SECRET").env("JWKS_URL", &idp.url()).env("JWKS_REFRESH", "1").start();
    let failed = "realtime_jwks_fetches_total{result=\"failed\"}";
    let count = |name: &str| s.metric_samples().get(name).copied().unwrap_or(0.0);
    assert_eq!(count(failed), 0.0);
    idp.set(None);
    s.wait_metric("realtime_jwks_fetches_total", DEFAULT_DEADLINE, |_| count(failed) >= 1.0);
    idp.set(Some(r#"{"keys":[]}"#));
    let after_500 = count(failed);
    s.wait_metric("realtime_jwks_fetches_total", DEFAULT_DEADLINE, |_| count(failed) > after_500);
    let (ws, hello) = s.connect_token(&key.token("kept", "client", Some("ec")));
    assert_connected(&hello, "kept", "client");
    close(ws);
    s.wait_stderr(DEFAULT_DEADLINE, |err| err.contains("JWKS fetch failed"));
}

#[test]
fn start_up_does_not_wait_for_an_absent_jwks_and_picks_it_up_later() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let s = server().unset("JWT_SECRET").env("JWKS_URL", &url).start();
    assert_eq!(s.metric_samples()["realtime_jwks_fetches_total{result=\"failed\"}"], 1.0);
    let key = KeyPair::generate(KeyKind::Rsa);
    let _idp = JwksServer::start_on(port, &jwks(&[("late", &key)]));
    let hello = s.connect_eventually(&key.token("late-user", "admin", Some("late")), REFETCH_BOUND);
    assert_connected(&hello, "late-user", "admin");
}

#[test]
fn a_jwks_redirect_is_not_followed() {
    let key = KeyPair::generate(KeyKind::Rsa);
    let elsewhere = JwksServer::start(&jwks(&[("moved", &key)]));
    let idp = JwksServer::start("");
    idp.redirect(&format!("http://127.0.0.1:{}/other/path.json", elsewhere.port));
    let s = server().unset("JWT_SECRET").env("JWKS_URL", &idp.url()).start();
    assert_eq!(s.metric_samples()["realtime_jwks_fetches_total{result=\"failed\"}"], 1.0);
    assert_eq!(elsewhere.requests(), 0, "the redirect's target is never asked");
    s.expect_refused(&key.token("moved-user", "client", Some("moved")), "unknown_kid");
    s.wait_stderr(DEFAULT_DEADLINE, |err| err.contains("redirect, which is not followed"));
}

#[test]
fn start_up_is_bounded_when_the_jwks_never_answers() {
    // Accepts connections (the kernel does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://127.0.0.1:{}/jwks.json", silent.local_addr().unwrap().port());
    let s = server().unset("JWT_SECRET").env("JWKS_URL", &url).start();
    assert_eq!(s.health()["status"], "healthy");
}

#[test]
fn issuer_and_audience_are_checked_when_set() {
    let s = server().env("JWT_ISSUER", "https://idp.example/").env("JWT_AUDIENCE", "realtime").start();
    let with = |extra: serde_json::Value| {
        let mut c = claims("ia", "seller");
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        mint(SECRET, &c)
    };
    let (ws, _) = s.connect_token(&with(json!({"iss": "https://idp.example/", "aud": "realtime"})));
    close(ws);
    let (ws, _) =
        s.connect_token(&with(json!({"iss": "https://idp.example/", "aud": ["other", "realtime"]})));
    close(ws);
    s.expect_refused(&with(json!({"iss": "https://evil.example/", "aud": "realtime"})), "issuer");
    s.expect_refused(&with(json!({"aud": "realtime"})), "issuer");
    s.expect_refused(&with(json!({"iss": "https://idp.example/", "aud": "other"})), "audience");
    s.expect_refused(&with(json!({"iss": "https://idp.example/"})), "audience");
}

#[test]
fn nbf_in_the_future_and_exp_now_are_refused() {
    let s = server().start();
    let now = now_secs();
    s.expect_refused(
        &mint(SECRET, &json!({"userId": "n", "role": "seller", "exp": now + 3600, "nbf": now + 60})),
        "not_yet_valid",
    );
    // A token whose exp is now is expired (README, Client protocol); one second later would pass.
    s.expect_refused(&mint(SECRET, &json!({"userId": "n", "role": "seller", "exp": now_secs()})), "expired");
    let (ws, _) = s.connect_token(&mint(
        SECRET,
        &json!({"userId": "n", "role": "seller", "exp": now + 3600, "nbf": now}),
    ));
    close(ws);
}

#[test]
fn a_jwks_over_https_is_trusted_through_the_webpki_roots_or_ssl_cert_file() {
    let key = KeyPair::generate(KeyKind::Rsa);
    let idp = HttpsJwks::start(&jwks(&[("tls", &key)]));
    let token = key.token("tls-user", "seller", Some("tls"));
    // A private CA is not among the webpki roots: the fetch fails, start-up goes on.
    let s = server().unset("JWT_SECRET").unset("SSL_CERT_FILE").env("JWKS_URL", &idp.url()).start();
    assert_eq!(s.metric_samples()["realtime_jwks_fetches_total{result=\"failed\"}"], 1.0);
    s.expect_refused(&token, "unknown_kid");
    s.wait_stderr(DEFAULT_DEADLINE, |err| err.contains("UnknownIssuer"));
    drop(s);
    let s = server()
        .unset("JWT_SECRET")
        .env("JWKS_URL", &idp.url())
        .env("SSL_CERT_FILE", idp.ca_pem.to_str().unwrap())
        .start();
    assert_eq!(s.metric_samples()["realtime_jwks_fetches_total{result=\"ok\"}"], 1.0);
    let (ws, hello) = s.connect_token(&token);
    assert_connected(&hello, "tls-user", "seller");
    close(ws);
}
