//! After the upgrade: `connected`, ping/pong, bad input, size and UTF-8
//! limits, server pings and the read timeout.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

#[test]
fn connected_message_for_every_role() {
    let s = server().start();
    for (i, (role, _)) in ROLES.iter().enumerate() {
        let user = format!("user-{i}");
        let (ws, hello) = s.connect(&user, role);
        assert_connected(&hello, &user, role);
        let keys: Vec<&String> = hello.as_object().unwrap().keys().collect();
        assert!(
            keys.iter().all(|k| ["type", "payload", "timestamp"].contains(&k.as_str())),
            "unexpected keys in {hello}"
        );
        close(ws);
    }
}

#[test]
fn ping_gets_pong() {
    let s = server().start();
    let (mut ws, _) = s.connect("p1", "client");
    for _ in 0..3 {
        assert_ping_pong(&mut ws);
    }
    close(ws);
}

fn assert_bad_request(ws: &mut Ws, what: &str) {
    let v = next_json(ws, DEFAULT_DEADLINE);
    assert_eq!(v["type"], "error", "{what}: {v}");
    assert_eq!(v["payload"]["code"], "bad_request", "{what}: {v}");
    assert!(v["payload"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: message in {v}");
}

#[test]
fn bad_input_gets_bad_request_and_connection_stays_open() {
    let s = server().start();
    let (mut ws, _) = s.connect("b1", "seller");
    for (what, text) in [
        ("bad JSON", "{not json"),
        ("empty text", ""),
        ("JSON array", "[1,2,3]"),
        ("JSON string", "\"ping\""),
        ("no type", "{\"room\":\"orders\"}"),
        ("unknown type", "{\"type\":\"dance\"}"),
        ("type not a string", "{\"type\":42}"),
    ] {
        send_text(&mut ws, text);
        assert_bad_request(&mut ws, what);
        assert_ping_pong(&mut ws);
    }
    ws.send(Message::binary(b"{\"type\":\"ping\"}".to_vec())).expect("send binary");
    assert_bad_request(&mut ws, "binary frame");
    assert_ping_pong(&mut ws);
    assert_eq!(s.health()["connections"], 1);
    close(ws);
}

#[test]
fn oversized_message_closes_with_1009() {
    let s = server().env("MAX_MESSAGE_SIZE", "1024").start();
    let (mut ws, _) = s.connect("big", "client");
    // just under the limit is an ordinary (bad) message
    let under = format!("{{\"type\":\"x\",\"pad\":\"{}\"}}", "a".repeat(900));
    assert!(under.len() < 1024);
    send_text(&mut ws, &under);
    assert_bad_request(&mut ws, "message under the limit");
    assert_ping_pong(&mut ws);

    let over = format!("{{\"type\":\"ping\",\"pad\":\"{}\"}}", "a".repeat(4096));
    let _ = ws.send(Message::text(over));
    match expect_close(&mut ws, DEFAULT_DEADLINE) {
        Event::Close(Some(1009)) => {}
        other => panic!("expected close 1009, got {other:?}\n{}", s.output_dump()),
    }
    s.wait_connections(0);
}

#[test]
fn oversized_binary_message_closes_with_1009() {
    let s = server().env("MAX_MESSAGE_SIZE", "1024").start();
    let (mut ws, _) = s.connect("bigbin", "client");
    let _ = ws.send(Message::binary(vec![7u8; 4096]));
    match expect_close(&mut ws, DEFAULT_DEADLINE) {
        Event::Close(Some(1009)) => {}
        other => panic!("expected close 1009, got {other:?}\n{}", s.output_dump()),
    }
}

#[test]
fn invalid_utf8_text_closes_with_1007() {
    let s = server().start();
    let (mut ws, _) = s.connect("utf", "client");
    let bad: Vec<u8> = vec![b'{', 0xff, 0xfe, 0x80, b'}'];
    ws.send(Message::Frame(Frame::message(bad, OpCode::Data(Data::Text), true)))
        .expect("send raw text frame");
    match expect_close(&mut ws, DEFAULT_DEADLINE) {
        Event::Close(Some(1007)) => {}
        other => panic!("expected close 1007, got {other:?}\n{}", s.output_dump()),
    }
}

#[test]
fn silent_client_is_closed_after_read_timeout() {
    let s = server().env("WS_READ_TIMEOUT", "2").env("WS_PING_INTERVAL", "1").start();
    let mut raw = RawWs::connect(s.port, &token(SECRET, "silent", "client"));
    s.wait_connections(1);
    // Read everything the server sends; never write (no pongs).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let outcome = loop {
        match raw.read_frame(deadline) {
            RawRead::Frame(f) => {
                if f.opcode == 0x8 {
                    let code =
                        (f.payload.len() >= 2).then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
                    break format!("close {code:?}");
                }
                seen.push(f.opcode);
            }
            RawRead::Eof => break "eof".to_string(),
            RawRead::Timeout => {
                panic!("silent client still open after 10 s (frames seen: {seen:?})\n{}", s.output_dump())
            }
        }
    };
    eprintln!("silent client: frames {seen:?}, then {outcome}");
    assert!(
        outcome == "close Some(1000)" || outcome == "eof",
        "silent client ended with {outcome}, expected close 1000 or EOF"
    );
    assert_eq!(seen.first(), Some(&0x1), "first frame is connected (text)");
    raw.shutdown();
    s.wait_connections(0);
}

#[test]
fn client_answering_pings_stays_open() {
    // A read timeout of three ping intervals: a pong that a loaded machine
    // delays by a sweep (one second) still arrives in time.
    let s = server().env("WS_READ_TIMEOUT", "3").env("WS_PING_INTERVAL", "1").start();
    let (mut ws, _) = s.connect("alive", "client");
    // Read for 6.5 s (twice the read timeout); tungstenite answers each ping.
    let until = Instant::now() + Duration::from_millis(6500);
    let mut pings = 0;
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        match next_event(&mut ws, left) {
            None => break,
            Some(Event::Ping) => pings += 1,
            Some(Event::Pong) => {}
            Some(other) => panic!("unexpected {other:?} while idle and answering pings\n{}", s.output_dump()),
        }
    }
    assert!(pings >= 1, "no server ping received in 6.5 s");
    assert_ping_pong(&mut ws);
    assert_eq!(s.health()["connections"], 1);
    close(ws);
}

#[test]
fn connected_timestamp_checker() {
    assert!(is_rfc3339_millis_utc("2026-11-27T18:00:00.000Z"));
    assert!(!is_rfc3339_millis_utc("2026-11-27T18:00:00Z"));
    assert!(!is_rfc3339_millis_utc("2026-11-27T18:00:00.000+00:00"));
    assert!(!is_rfc3339_millis_utc("2026-11-27 18:00:00.000Z"));
}
