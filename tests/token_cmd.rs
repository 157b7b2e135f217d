//! `realtime token`: mints an HS256 token with JWT_SECRET (README, Configuration and Client protocol), or
//! an RS256/ES256/EdDSA one with `--private-key`.

mod support;

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use support::*;

const EXIT_BOUND: Duration = Duration::from_secs(10);

fn decode(tok: &str) -> Value {
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims.clear();
    v.required_spec_claims.insert("exp".into());
    jsonwebtoken::decode::<Value>(tok, &DecodingKey::from_secret(SECRET.as_bytes()), &v)
        .unwrap_or_else(|e| panic!("token {tok:?} does not verify with JWT_SECRET: {e}"))
        .claims
}

fn mint_with_cli(args: &[&str]) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let done = server().no_port_env().args(&all).run(EXIT_BOUND);
    assert_eq!(done.code(), Some(0), "realtime {all:?}: {done:?}");
    let lines = done.stdout_lines();
    assert_eq!(lines.len(), 1, "stdout should be the token alone: {lines:?}");
    let tok = lines[0].trim();
    assert_eq!(tok, lines[0], "token line has surrounding whitespace");
    tok.to_string()
}

#[test]
fn token_command_mints_a_working_token() {
    let tok = mint_with_cli(&["--user-id", "123", "--role", "seller"]);
    let claims = decode(&tok);
    assert_eq!(claims["userId"], "123", "userId must be a string: {claims}");
    assert_eq!(claims["role"], "seller", "{claims}");
    let exp = claims["exp"].as_i64().expect("numeric exp");
    let ttl = exp - now_secs() as i64;
    assert!((3500..=3700).contains(&ttl), "default ttl should be 3600 s, exp is {ttl} s away");

    let s = server().start();
    let (ws, hello) = s.connect_token(&tok);
    assert_connected(&hello, "123", "seller");
    close(ws);
}

#[test]
fn token_command_ttl_flag() {
    let tok = mint_with_cli(&["--user-id", "9", "--role", "delivery", "--ttl", "60"]);
    let claims = decode(&tok);
    let ttl = claims["exp"].as_i64().unwrap() - now_secs() as i64;
    assert!((1..=120).contains(&ttl), "--ttl 60 gave exp {ttl} s away");
    assert_eq!(claims["role"], "delivery");
}

#[test]
fn token_command_without_secret_exits_2() {
    let done = server()
        .no_port_env()
        .unset("JWT_SECRET")
        .args(&["token", "--user-id", "1", "--role", "admin"])
        .run(EXIT_BOUND);
    assert_eq!(done.code(), Some(2), "{done:?}");
    assert!(done.stderr.contains("JWT_SECRET"), "stderr does not name JWT_SECRET: {:?}", done.stderr);
    assert!(done.stdout.trim().is_empty(), "no token expected: {:?}", done.stdout);
}

#[test]
fn token_command_unknown_role_exits_2() {
    let done =
        server().no_port_env().args(&["token", "--user-id", "1", "--role", "superuser"]).run(EXIT_BOUND);
    assert_eq!(done.code(), Some(2), "{done:?}");
    assert!(done.stdout.trim().is_empty(), "no token expected: {:?}", done.stdout);
}

/// A token that is born expired (`--ttl 0`) or a negative lifetime is a bad
/// value with a message that says what is wrong, not a silent dud.
#[test]
fn token_command_ttl_must_be_positive() {
    for ttl in ["0", "-5"] {
        let done = server()
            .no_port_env()
            .args(&["token", "--user-id", "1", "--role", "admin", "--ttl", ttl])
            .run(EXIT_BOUND);
        assert_eq!(done.code(), Some(2), "--ttl {ttl}: {done:?}");
        assert!(done.stdout.trim().is_empty(), "--ttl {ttl}: no token expected: {:?}", done.stdout);
        assert!(done.stderr.contains("--ttl") && done.stderr.contains(ttl), "--ttl {ttl}: {}", done.stderr);
    }
}

#[test]
fn token_command_signs_with_a_private_key_of_each_type() {
    for kind in KeyKind::ALL {
        let key = KeyPair::generate(kind);
        let done = server()
            .no_port_env()
            .unset("JWT_SECRET")
            .args(&["token", "--private-key", key.private_pem.to_str().unwrap(), "--kid", "k9"])
            .args(&["--user-id", "pk", "--role", "client"])
            .run(EXIT_BOUND);
        assert_eq!(done.code(), Some(0), "{kind:?}: {done:?}");
        let tok = done.stdout.trim().to_owned();
        let header = jsonwebtoken::decode_header(&tok).expect("a JWT header");
        assert_eq!((header.alg, header.kid.as_deref()), (kind.algorithm(), Some("k9")), "{kind:?}");

        let s = server().unset("JWT_SECRET").env("JWT_PUBLIC_KEY", key.public_pem.to_str().unwrap()).start();
        let (ws, hello) = s.connect_token(&tok);
        assert_connected(&hello, "pk", "client");
        close(ws);
    }
}

#[test]
fn token_command_with_a_bad_private_key_exits_2() {
    let dir = TempDir::new();
    dir.write("public.pem", &KeyPair::generate(KeyKind::Ed25519).public_pem_text());
    let path = dir.path().join("public.pem");
    let done = server()
        .no_port_env()
        .args(&["token", "--private-key", path.to_str().unwrap(), "--user-id", "1", "--role", "admin"])
        .run(EXIT_BOUND);
    assert_eq!(done.code(), Some(2), "{done:?}");
    assert!(done.stderr.contains("--private-key"), "{:?}", done.stderr);
    assert!(done.stdout.trim().is_empty(), "no token expected: {:?}", done.stdout);
}
