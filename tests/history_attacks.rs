//! History and recovery (one instance) under attack: what a hostile client
//! or a careless operator can do with `since`, `?rooms=` and racing
//! subscribes, each a regression test of a problem found (README, History
//! and recovery).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tungstenite::Message;

/// Rooms enough that, whichever shard a connection lands on, some are
/// ordered by the other one (a room's owner is a fixed hash of its name);
/// new ones for each `client`.
fn rooms(client: usize) -> Vec<String> {
    (0..8).map(|n| format!("c{client}r{n}")).collect()
}

/// Sends every message in one write, so that the server reads them all
/// before any answer from another shard can come back.
fn send_together(ws: &mut Ws, messages: &[Value]) {
    for message in messages {
        ws.write(Message::text(message.to_string())).expect("write");
    }
    ws.flush().expect("flush");
}

/// Reads until `done` says the messages read so far, grouped by room, are
/// all that is expected.
fn read_by_room(
    ws: &mut Ws,
    done: impl Fn(&HashMap<String, Vec<Value>>) -> bool,
) -> HashMap<String, Vec<Value>> {
    let mut by_room = HashMap::new();
    read_more(ws, &mut by_room, done);
    by_room
}

/// Like [`read_by_room`], adding to what was read before.
fn read_more(
    ws: &mut Ws,
    by_room: &mut HashMap<String, Vec<Value>>,
    done: impl Fn(&HashMap<String, Vec<Value>>) -> bool,
) {
    while !done(by_room) {
        let v = next_json(ws, DEFAULT_DEADLINE);
        let room = v["room"].as_str().unwrap_or_else(|| panic!("a message without a room: {v}")).to_owned();
        by_room.entry(room).or_default().push(v);
    }
}

#[test]
fn an_unsubscribe_sent_before_the_answer_leaves_the_room() {
    let s = server().start();
    let clients = s.connect_on_both_shards(2, |i| s.connect(&format!("a{i}"), "admin").0);
    for (client, mut ws) in clients.into_iter().enumerate() {
        let rooms = rooms(client);
        let pairs: Vec<Value> = rooms
            .iter()
            .flat_map(|room| {
                [json!({"type": "subscribe", "room": room}), json!({"type": "unsubscribe", "room": room})]
            })
            .collect();
        send_together(&mut ws, &pairs);
        let first = read_by_room(&mut ws, |m| {
            rooms.iter().all(|r| m.get(r).is_some_and(|got| got.iter().any(|v| v["type"] == "unsubscribed")))
        });

        // The last word was unsubscribe: the room's events no longer come,
        // and a new subscribe is answered once, after whatever the first got
        // (its `since` tells its answer from the first one's).
        for room in &rooms {
            s.broadcast(room_event(room, 1));
        }
        let again: Vec<Value> = rooms
            .iter()
            .map(|room| json!({"type": "subscribe", "room": room, "since": {"offset": 0, "epoch": "-"}}))
            .collect();
        send_together(&mut ws, &again);
        let mut later = read_by_room(&mut ws, |m| {
            rooms.iter().all(|r| m.get(r).is_some_and(|got| got.iter().any(|v| v["recovered"] == false)))
        });
        let live: HashMap<&str, String> =
            rooms.iter().map(|room| (room.as_str(), s.broadcast(room_event(room, 2)))).collect();
        read_more(&mut ws, &mut later, |m| {
            live.iter().all(|(room, id)| m.get(*room).is_some_and(|got| got.iter().any(|v| v["id"] == *id)))
        });
        for room in &rooms {
            let after: Vec<&Value> = first[room].iter().skip_while(|v| v["type"] != "unsubscribed").collect();
            assert_eq!(after.len(), 1, "{room}: nothing comes after unsubscribed: {:?}", first[room]);
            // The answer to the new subscribe, then the events after its offset.
            let got = &later[room];
            assert_eq!(
                (&got[0]["type"], &got[0]["recovered"]),
                (&json!("subscribed"), &json!(false)),
                "{got:?}"
            );
            let from = got[0]["offset"].as_u64().expect("offset") + 1;
            let want: Vec<Value> = (from..=2).map(Value::from).collect();
            let offsets: Vec<Value> = got[1..].iter().map(|v| v["offset"].clone()).collect();
            assert_eq!(offsets, want, "{room}: one subscribed, then the events after it: {got:?}");
        }
    }
}

/// A TTL too long to count from now stops start-up, like any bad value,
/// instead of a shard panicking at the first event.
#[test]
fn a_history_ttl_beyond_the_clock_is_a_bad_value() {
    let done = server().env("HISTORY_TTL", "18446744073709551615").run(DEFAULT_DEADLINE);
    assert_eq!(done.code(), Some(2), "{done:?}");
    let lines = done.stderr_lines();
    assert!(lines.len() == 1 && lines[0].contains("HISTORY_TTL"), "one line naming the variable: {lines:?}");
}

/// A session that stays in a room while the room's history expires and
/// starts again (a new epoch, offsets from 1) has had every event of the new
/// epoch live: a recovery in the new epoch replays none of them again, though
/// their offsets are below the one the session came in at. So for a room it
/// joined and for `all`, which it is always in.
#[test]
fn a_session_in_the_room_across_a_new_epoch_gets_no_event_twice() {
    let s = server().env("HISTORY_TTL", "1").start();
    for room in ["orders", "all"] {
        for n in 0..3 {
            s.broadcast(room_event(room, n));
        }
        let (mut ws, _) = s.connect("u1", "seller");
        let came_in = match room {
            "all" => expect_event(&mut ws, &s.broadcast(room_event(room, 3))),
            _ => subscribe(&mut ws, room),
        };
        assert!(came_in["offset"].as_u64() >= Some(3), "{came_in}");
        // The room goes a TTL without an event: its history starts again.
        poll(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || s.get(&format!("/api/rooms/{room}/history")).json()["epoch"].clone(),
            |epoch| *epoch != came_in["epoch"],
        )
        .expect("a new epoch after the TTL");
        let live: Vec<Value> =
            (0..2).map(|n| expect_event(&mut ws, &s.broadcast(room_event(room, n)))).collect();
        assert_eq!(live[1]["offset"], 2, "{live:?}");

        let since = json!({"offset": 0, "epoch": live[0]["epoch"]});
        send_json(&mut ws, &json!({"type": "subscribe", "room": room, "since": since}));
        let answer = next_json(&mut ws, DEFAULT_DEADLINE);
        assert_eq!((&answer["type"], &answer["recovered"]), (&json!("subscribed"), &json!(true)), "{answer}");
        let marker = s.broadcast(room_event(room, 9));
        let again = read_until_marker(&mut ws, &marker);
        assert!(again.is_empty(), "{room}: events had live are not replayed: {again:?}");
    }
}

/// A `since` that is not a position is `bad_request` (the connection goes
/// on): so is an epoch longer than any the server gives, which the subscribe
/// waiting for its answer would hold (200 of 64 KB each per connection). One
/// that is not this room's is not recovered; answers name the room as the
/// client wrote it.
#[test]
fn positions_a_client_makes_up_are_answered_not_obeyed() {
    let s = server().start();
    let (mut ws, _) = s.connect("7", "client");
    let latest = subscribe(&mut ws, "cart");
    let epoch = latest["epoch"].clone();
    for since in [
        json!({"offset": -1, "epoch": epoch}),
        json!({"offset": 1.5, "epoch": epoch}),
        json!({"offset": "3", "epoch": epoch}),
        json!({}),
        json!("x"),
        json!({"offset": 0, "epoch": 7}),
        json!({"offset": 0, "epoch": "e".repeat(65)}),
    ] {
        send_json(&mut ws, &json!({"type": "subscribe", "room": "cart", "since": since}));
        assert_error(&next_json(&mut ws, DEFAULT_DEADLINE), "bad_request", &format!("since {since}"));
    }
    for (room, since) in [
        ("cart", json!({"offset": u64::MAX, "epoch": epoch})),
        ("user", json!({"offset": 0, "epoch": "e".repeat(64)})),
        ("cart:7", json!({"offset": 1, "epoch": epoch})),
    ] {
        send_json(&mut ws, &json!({"type": "subscribe", "room": room, "since": since}));
        let answer = next_json(&mut ws, DEFAULT_DEADLINE);
        assert_eq!(
            (&answer["type"], &answer["room"], &answer["recovered"]),
            (&json!("subscribed"), &json!(room), &json!(false)),
            "{answer}"
        );
    }
    assert_ping_pong(&mut ws);
}

/// What held: `all` and `user:U`, which a connection is in from its first
/// moment, recovered right after reconnecting while their events keep
/// coming: every offset after `since` exactly once (the replayed ones may
/// follow the live ones they came before).
#[test]
fn rooms_a_connection_is_always_in_recover_exactly_once_under_load() {
    // History long enough for what the publisher sends while the client is
    // away, however slow the machine makes the reconnect; a publisher paced
    // at about 1,000 a second keeps the replay well within the client's queue.
    let s = server().env("HISTORY_SIZE", "100000").start();
    for (room, body) in [
        ("all", json!({"room": "all", "type": "t", "payload": {}})),
        ("user", json!({"userId": "u5", "type": "t", "payload": {}})),
    ] {
        let path = if room == "all" { BROADCAST } else { SEND };
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = {
            let (port, stop, body) = (s.port, stop.clone(), body.to_string());
            thread::spawn(move || {
                let mut conn = HttpConn::open(port);
                while !stop.load(Ordering::SeqCst) {
                    accepted_id(&conn.request("POST", path, &[], Some(&body)), "steady publish");
                    thread::sleep(Duration::from_millis(1));
                }
            })
        };
        for round in 0..3 {
            let (mut ws, _) = s.connect("u5", "client");
            let seen: Vec<Value> = (0..10).map(|_| next_json(&mut ws, DEFAULT_DEADLINE)).collect();
            drop(ws);
            let last = seen.last().expect("ten events");
            let (mut ws, _) = s.connect("u5", "client");
            let since = json!({"offset": last["offset"], "epoch": last["epoch"]});
            send_json(&mut ws, &json!({"type": "subscribe", "room": room, "since": since}));
            let mut offsets = Vec::new();
            let mut answer = None;
            while answer.is_none()
                || offsets.iter().max()
                    < answer.as_ref().map(|a: &Value| a["offset"].as_u64().expect("offset") + 10).as_ref()
            {
                let v = next_json(&mut ws, DEFAULT_DEADLINE);
                match v["type"].as_str() {
                    Some("subscribed") => answer = Some(v),
                    _ => offsets.push(v["offset"].as_u64().expect("an offset")),
                }
            }
            let answer = answer.expect("answered");
            assert_eq!(answer["recovered"], true, "{room} round {round}: {answer}");
            let from = last["offset"].as_u64().expect("offset") + 1;
            offsets.retain(|&o| o >= from);
            offsets.sort_unstable();
            let want: Vec<u64> = (from..from + offsets.len() as u64).collect();
            assert_eq!(offsets, want, "{room} round {round}: every offset after since once");
        }
        stop.store(true, Ordering::SeqCst);
        publisher.join().expect("publisher");
    }
}

/// What held: another user's personal streams, however the name is
/// written (scoped, upper case, percent-encoded in `?rooms=`), are refused
/// to a non-admin, with `since` or without, and nothing of them arrives.
#[test]
fn another_users_personal_stream_cannot_be_named_into() {
    let s = server().start();
    s.send(json!({"userId": "8", "type": "t", "payload": {}}));
    s.broadcast(json!({"room": "cart", "userId": "8", "type": "t", "payload": {}}));
    let token = token(SECRET, "7", "client");
    let url = format!("{}&rooms=user%3A8,cart%3A8,USER:8", s.ws_url(&token));
    let mut ws = ws_connect(&url).expect("connect");
    let hello = next_json(&mut ws, DEFAULT_DEADLINE);
    assert_eq!(hello["payload"]["joined"], json!(["all", "user:7"]), "{hello}");
    for room in ["user:8", "cart:8", "USER:8"] {
        assert_error(&next_json(&mut ws, DEFAULT_DEADLINE), "forbidden", room);
    }
    for room in ["user:8", "cart:8", "USER:8", "Cart:8", "myOrders:8"] {
        let since = json!({"offset": 0, "epoch": "any"});
        send_json(&mut ws, &json!({"type": "subscribe", "room": room, "since": since}));
        assert_error(&next_json(&mut ws, DEFAULT_DEADLINE), "forbidden", room);
    }
    let marker = s.marker();
    expect_only_marker(&mut ws, &marker, "client 7");
}

/// What held: a replay larger than half of what the connection's queue can
/// still take is not sent (`recovered:false`, the connection goes on), so a
/// recovery cannot close its own client as slow; a smaller one is.
#[test]
fn a_replay_larger_than_the_queue_allows_is_refused_not_fatal() {
    let s = server().env("SEND_QUEUE_BYTES", "65536").env("MAX_MESSAGE_SIZE", "16384").start();
    let (mut ws, _) = s.connect("u1", "seller");
    let start = subscribe(&mut ws, "orders");
    drop(ws);
    let pad = "x".repeat(6_000);
    let ids: Vec<String> = (0..10)
        .map(|n| s.broadcast(json!({"room": "orders", "type": "t", "payload": {"n": n, "pad": pad}})))
        .collect();
    let (mut ws, _) = s.connect("u1", "seller");
    send_json(
        &mut ws,
        &json!({"type": "subscribe", "room": "orders", "since": {"offset": start["offset"], "epoch": start["epoch"]}}),
    );
    let answer = next_json(&mut ws, DEFAULT_DEADLINE);
    assert_eq!(
        (&answer["recovered"], &answer["offset"]),
        (&json!(false), &json!(10)),
        "60 KB do not fit: {answer}"
    );
    assert_ping_pong(&mut ws);
    send_json(
        &mut ws,
        &json!({"type": "subscribe", "room": "orders", "since": {"offset": 7, "epoch": start["epoch"]}}),
    );
    let answer = next_json(&mut ws, DEFAULT_DEADLINE);
    assert_eq!(answer["recovered"], true, "18 KB do: {answer}");
    let replayed: Vec<Value> = (0..3).map(|_| next_json(&mut ws, DEFAULT_DEADLINE)).collect();
    assert_eq!(support::ids(&replayed), ids[7..]);
}
