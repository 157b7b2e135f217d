//! Tokens during a session (README, Tokens during a session): `exp` in `connected`,
//! `token_expiring` before it, `refresh` → `refreshed`, refusals that leave
//! the session as it was, and close 4001 at `exp`. Tokens live 2–4 s and the
//! notice is 1–2 s, so every wait is a few seconds, bounded.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// The sweep runs once a second: a due notice or close comes within it.
const SWEEP_SLACK: Duration = Duration::from_secs(3);

fn short_token(user_id: &str, role: &str, ttl: u64) -> (String, u64) {
    let exp = now_secs() + ttl;
    (mint(SECRET, &json!({"userId": user_id, "role": role, "exp": exp})), exp)
}

fn refresh(ws: &mut Ws, token: &str) -> Value {
    send_json(ws, &json!({"type": "refresh", "token": token}));
    next_json(ws, DEFAULT_DEADLINE)
}

fn expect_expiring(ws: &mut Ws, exp: u64, notice: u64) {
    let told = next_json(ws, Duration::from_secs(notice + 3) + SWEEP_SLACK);
    assert_eq!(told["type"], "token_expiring", "{told}");
    let left = told["payload"]["expiresIn"].as_u64().unwrap_or_else(|| panic!("expiresIn in {told}"));
    assert!(left <= notice && left <= exp.saturating_sub(now_secs()) + 1, "expiresIn {left} in {told}");
}

fn expect_4001(ws: &mut Ws, exp: u64) {
    let bound = Duration::from_secs(exp.saturating_sub(now_secs())) + SWEEP_SLACK;
    match expect_close(ws, bound) {
        Event::Close(Some(4001)) => assert!(now_secs() >= exp, "closed before exp {exp}"),
        other => panic!("expected close 4001 at exp, got {other:?}"),
    }
}

#[test]
fn expiring_tokens_are_told_refreshed_and_closed_with_4001() {
    let notice = 2;
    let s = server().env("TOKEN_REFRESH_NOTICE", &notice.to_string()).start();
    let (first, exp) = short_token("r1", "seller", 4);
    let (mut ws, hello) = s.connect_token(&first);
    assert_connected(&hello, "r1", "seller");
    assert_eq!(hello["payload"]["exp"], exp, "{hello}");
    expect_expiring(&mut ws, exp, notice);

    let (second, new_exp) = short_token("r1", "seller", 5);
    assert!(new_exp > exp);
    let answer = refresh(&mut ws, &second);
    assert_eq!(answer, json!({"type": "refreshed", "payload": {"exp": new_exp}}));
    // The old exp passes and the session lives on; the new one is told, then closes it.
    expect_expiring(&mut ws, new_exp, notice);
    assert!(now_secs() > exp, "the notice for the new token came before the old exp");
    assert_ping_pong(&mut ws);
    expect_4001(&mut ws, new_exp);
    s.wait_connections(0);
}

#[test]
fn refused_refreshes_leave_the_session_as_it_was() {
    let s = server().env("TOKEN_REFRESH_NOTICE", "1").start();
    let (own, exp) = short_token("r2", "client", 3);
    let (mut ws, _) = s.connect_token(&own);
    let refusals = [
        (token(SECRET, "someone-else", "client"), "forbidden"),
        (token(SECRET, "r2", "seller"), "forbidden"),
        (
            mint("not-the-secret", &json!({"userId": "r2", "role": "client", "exp": now_secs() + 60})),
            "unauthorized",
        ),
        (mint(SECRET, &json!({"userId": "r2", "role": "client", "exp": now_secs() - 1})), "unauthorized"),
        ("garbage".to_owned(), "unauthorized"),
    ];
    for (token, code) in &refusals {
        let answer = refresh(&mut ws, token);
        if answer["type"] == "token_expiring" {
            // The notice may come between a refusal and the next answer.
            let answer = next_json(&mut ws, DEFAULT_DEADLINE);
            assert_eq!(answer["payload"]["code"], *code, "{answer}");
            continue;
        }
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["payload"]["code"], *code, "{answer}");
    }
    assert!(s.metric("realtime_auth_failures_total") >= 3.0, "refused refreshes are counted");
    // Still under the first token: closed at its exp.
    expect_4001(&mut ws, exp);
}

#[test]
fn a_token_inside_the_notice_is_told_at_once() {
    let s = server().start();
    let (token, exp) = short_token("r3", "delivery", 10);
    let (mut ws, hello) = s.connect_token(&token);
    assert_eq!(hello["payload"]["exp"], exp);
    let told = next_json(&mut ws, Duration::from_secs(2));
    assert_eq!(told["type"], "token_expiring", "{told}");
    assert!(told["payload"]["expiresIn"].as_u64().is_some_and(|left| (8..=10).contains(&left)), "{told}");
    // A long-lived token is not told.
    let (mut calm, _) = s.connect("r4", "delivery");
    assert_ping_pong(&mut calm);
    close(calm);
    close(ws);
}
