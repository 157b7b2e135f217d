//! History and recovery with one instance (README, History and recovery):
//! offsets per room on every shard, recovery after a reconnect (while events
//! keep coming), epoch, size and TTL limits, personal streams, no replay to
//! anyone who would not have had the event live, `?rooms=`, the history API,
//! and `HISTORY_SIZE=0`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const ORDERS: &str = "orders";

/// A `since` for `subscribe` from an event or a `subscribed` answer.
fn since(v: &Value) -> Value {
    json!({"offset": v["offset"], "epoch": v["epoch"]})
}

fn subscribe_since(ws: &mut Ws, room: &str, since: Value) -> Value {
    send_json(ws, &json!({"type": "subscribe", "room": room, "since": since}));
    let v = next_json(ws, DEFAULT_DEADLINE);
    assert_eq!(v["type"], "subscribed", "answer to subscribe {room:?} with since: {v}");
    v
}

/// Waits until `room`'s history holds `offset`: a 202 means accepted, and
/// a session that connects before the event is put in order gets it live.
fn wait_for_offset(s: &Server, room: &str, offset: u64) {
    let history = || s.get(&format!("/api/rooms/{room}/history?limit=1")).json();
    poll(DEFAULT_DEADLINE, Duration::from_millis(10), history, |h| h["offset"] == offset)
        .unwrap_or_else(|h| panic!("{room} did not reach offset {offset}: {h}"));
}

/// Publishes to a room back to back, on one kept-alive connection, until
/// stopped.
struct Steady {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Steady {
    fn start(s: &Server, room: &str) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let (port, room, stopped) = (s.port, room.to_owned(), stop.clone());
        let thread = thread::spawn(move || {
            let mut conn = HttpConn::open(port);
            let mut n = 0;
            while !stopped.load(Ordering::SeqCst) {
                let r = conn.request("POST", BROADCAST, &[], Some(&room_event(&room, n).to_string()));
                accepted_id(&r, "steady publish");
                n += 1;
            }
        });
        Steady { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("publisher");
    }
}

fn offsets(events: &[Value]) -> Vec<u64> {
    events.iter().filter_map(|v| v["offset"].as_u64()).collect()
}

#[test]
fn every_shard_sees_the_same_offsets_per_room() {
    let s = server().start();
    let mut clients =
        s.connect_on_both_shards(2, |i| s.subscriber(&format!("s{i}"), "seller", &[ORDERS, "inventory"]));
    let orders: Vec<String> = (0..5).map(|n| s.broadcast(room_event(ORDERS, n))).collect();
    let stock: Vec<String> = (0..3).map(|n| s.broadcast(room_event("inventory", n))).collect();
    for ws in &mut clients {
        // Order is per room: read each room's events as they come.
        let mut got = Vec::new();
        while got.len() < orders.len() + stock.len() {
            got.push(next_json(ws, DEFAULT_DEADLINE));
        }
        let of = |room: &str| -> Vec<Value> { got.iter().filter(|v| v["room"] == room).cloned().collect() };
        assert_eq!(ids(&of(ORDERS)), orders);
        assert_eq!(ids(&of("inventory")), stock);
        assert_eq!(offsets(&of(ORDERS)), [1, 2, 3, 4, 5]);
        assert_eq!(offsets(&of("inventory")), [1, 2, 3]);
        assert!(of(ORDERS).iter().all(|v| v["epoch"] == of(ORDERS)[0]["epoch"]), "one epoch: {got:?}");
    }
}

#[test]
fn subscribed_tells_the_position_and_recovery_replays_what_was_missed() {
    let s = server().start();
    let mut ws = s.subscriber("u1", "seller", &[]);
    let first = subscribe(&mut ws, ORDERS);
    assert_eq!(first["offset"], 0, "a room without events starts at 0: {first}");
    let seen = expect_event(&mut ws, &s.broadcast(room_event(ORDERS, 1)));
    assert_eq!((seen["offset"].as_u64(), &seen["epoch"]), (Some(1), &first["epoch"]));
    drop(ws);

    let missed: Vec<String> = (2..=4).map(|n| s.broadcast(room_event(ORDERS, n))).collect();
    let (mut ws, _) = s.connect("u1", "seller");
    let answer = subscribe_since(&mut ws, ORDERS, since(&seen));
    assert_eq!(answer["recovered"], true, "{answer}");
    assert_eq!(answer["offset"], 4, "{answer}");
    let replayed: Vec<Value> = (0..3).map(|_| next_json(&mut ws, DEFAULT_DEADLINE)).collect();
    assert_eq!(ids(&replayed), missed);
    assert_eq!(offsets(&replayed), [2, 3, 4]);
    // then live, with no gap
    let live = expect_event(&mut ws, &s.broadcast(room_event(ORDERS, 5)));
    assert_eq!(live["offset"], 5);
    assert_eq!(s.metric("realtime_recoveries_total{recovered=\"true\"}"), 1.0);
}

#[test]
fn recovery_has_no_gap_and_no_duplicate_while_events_keep_coming() {
    // A history long enough for what a steady publisher sends while a client reconnects.
    let s = server().env("HISTORY_SIZE", "100000").start();
    let publisher = Steady::start(&s, ORDERS);
    for round in 0..5 {
        let mut ws = s.subscriber(&format!("r{round}"), "seller", &[ORDERS]);
        let mut got: Vec<Value> = (0..20).map(|_| next_json(&mut ws, DEFAULT_DEADLINE)).collect();
        drop(ws);
        let (mut ws, _) = s.connect(&format!("r{round}"), "seller");
        let answer = subscribe_since(&mut ws, ORDERS, since(got.last().expect("20 events")));
        assert_eq!(answer["recovered"], true, "round {round}: {answer}");
        // Replayed and live alike, until well past the answer's offset.
        let target = answer["offset"].as_u64().expect("offset") + 20;
        while got.last().and_then(|v| v["offset"].as_u64()).is_some_and(|o| o < target) {
            got.push(next_json(&mut ws, DEFAULT_DEADLINE));
        }
        let offsets = offsets(&got);
        let first = offsets[0];
        let want: Vec<u64> = (first..first + offsets.len() as u64).collect();
        assert_eq!(offsets, want, "round {round}: every offset once, in order");
        assert!(got.iter().all(|v| v["epoch"] == got[0]["epoch"]), "round {round}");
    }
    publisher.stop();
}

/// What held: a subscribe to a room no session of its shard is in yet,
/// while the room's events keep coming, gets every event after the offset
/// its answer names. The shard must hold the room (and so be posted its
/// events) from before it asks for the position, not from when the session
/// joins, which is after the answer.
#[test]
fn a_subscribe_new_to_its_shard_misses_nothing_after_its_answer() {
    let s = server().start();
    let publisher = Steady::start(&s, ORDERS);
    for round in 0..12 {
        // Alone in the room on its shard: the last round's client is gone.
        s.wait_connections(0);
        let (mut ws, _) = s.connect(&format!("n{round}"), "seller");
        send_json(&mut ws, &json!({"type": "subscribe", "room": ORDERS}));
        let answer = next_json(&mut ws, DEFAULT_DEADLINE);
        assert_eq!(answer["type"], "subscribed", "round {round}: {answer}");
        let from = answer["offset"].as_u64().expect("offset") + 1;
        let got: Vec<Value> = (0..5).map(|_| next_json(&mut ws, DEFAULT_DEADLINE)).collect();
        assert_eq!(offsets(&got), (from..from + 5).collect::<Vec<_>>(), "round {round}: after {answer}");
    }
    publisher.stop();
}

#[test]
fn a_restart_a_full_history_or_an_expired_one_is_not_recovered() {
    let s = server().env("HISTORY_SIZE", "5").env("HISTORY_TTL", "1").start();
    let mut ws = s.subscriber("u1", "seller", &[ORDERS]);
    let seen = expect_event(&mut ws, &s.broadcast(room_event(ORDERS, 0)));

    // Six more than the one seen: the history keeps five.
    for n in 1..=6 {
        s.broadcast(room_event(ORDERS, n));
    }
    let (mut late, _) = s.connect("u1", "seller");
    let answer = subscribe_since(&mut late, ORDERS, since(&seen));
    assert_eq!((answer["recovered"].clone(), answer["offset"].clone()), (json!(false), json!(7)), "{answer}");
    let marker = s.marker();
    assert!(read_until_marker(&mut late, &marker).is_empty(), "nothing is replayed when not recovered");

    // Another epoch is another stream's past.
    let (mut other, _) = s.connect("u1", "seller");
    let answer = subscribe_since(&mut other, ORDERS, json!({"offset": 7, "epoch": "not-this-one"}));
    assert_eq!(answer["recovered"], false, "{answer}");

    // A second after its last event, the room's history is gone, and with it its epoch.
    let ask = || {
        let (mut ws, _) = s.connect("u1", "seller");
        subscribe_since(&mut ws, ORDERS, json!({"offset": 7, "epoch": seen["epoch"]}))
    };
    let expired = poll(Duration::from_secs(10), Duration::from_millis(200), ask, |a| a["recovered"] == false)
        .unwrap_or_else(|a| panic!("the history did not expire: {a}"));
    assert_eq!(expired["offset"], 0, "{expired}");
    assert_ne!(expired["epoch"], seen["epoch"], "{expired}");
    assert!(s.metric("realtime_recoveries_total{recovered=\"false\"}") >= 3.0);
    drop(ws);
}

#[test]
fn a_restarted_instance_has_a_new_epoch() {
    let port = free_port();
    let s = server().port(port).start();
    let mut ws = s.subscriber("u1", "seller", &[ORDERS]);
    let seen = expect_event(&mut ws, &s.broadcast(room_event(ORDERS, 0)));
    drop(ws);
    drop(s);
    let s = server().port(port).start();
    let (mut ws, _) = s.connect("u1", "seller");
    let answer = subscribe_since(&mut ws, ORDERS, since(&seen));
    assert_eq!(answer["recovered"], false, "{answer}");
    assert_ne!(answer["epoch"], seen["epoch"], "{answer}");
}

#[test]
fn a_users_personal_stream_is_recovered_by_that_user_only() {
    let s = server().start();
    let (mut ws, hello) = s.connect("u7", "client");
    assert_eq!(hello["payload"]["joined"], json!(["all", "user:u7"]));
    let seen = expect_event(&mut ws, &s.send(json!({"userId": "u7", "type": "t", "payload": {"n": 0}})));
    assert_eq!((seen["room"].as_str(), seen["offset"].as_u64()), (Some("user:u7"), Some(1)), "{seen}");
    drop(ws);

    let missed: Vec<String> =
        (1..=3).map(|n| s.send(json!({"userId": "u7", "type": "t", "payload": {"n": n}}))).collect();
    wait_for_offset(&s, "user:u7", 4);
    let (mut ws, _) = s.connect("u7", "client");
    let answer = subscribe_since(&mut ws, "user", since(&seen));
    assert_eq!(
        (answer["room"].as_str(), answer["recovered"].as_bool()),
        (Some("user"), Some(true)),
        "{answer}"
    );
    let replayed: Vec<Value> = (0..3).map(|_| next_json(&mut ws, DEFAULT_DEADLINE)).collect();
    assert_eq!(ids(&replayed), missed);

    let (mut other, _) = s.connect("u8", "client");
    let refused = subscribe_answer(&mut other, "user:u7");
    assert_error(&refused, "forbidden", "another user's personal room");
    // An admin may watch it, and recover it.
    let (mut admin, _) = s.connect("boss", "admin");
    let answer = subscribe_since(&mut admin, "user:u7", since(&seen));
    assert_eq!(answer["recovered"], true, "{answer}");
    let watched: Vec<Value> = (0..3).map(|_| next_json(&mut admin, DEFAULT_DEADLINE)).collect();
    assert_eq!(ids(&watched), missed);
}

#[test]
fn a_room_the_session_is_always_in_replays_only_what_it_did_not_have_live() {
    let s = server().start();
    let send = |n: u64| s.send(json!({"userId": "u9", "type": "t", "payload": {"n": n}}));
    let (mut ws, _) = s.connect("u9", "client");
    let seen = expect_event(&mut ws, &send(1));
    drop(ws);
    let missed = [send(2), send(3)];
    wait_for_offset(&s, "user:u9", 3);
    // The new session is in user:u9 from its start: this one reaches it
    // live, before it asks to recover.
    let (mut ws, _) = s.connect("u9", "client");
    let live = expect_event(&mut ws, &send(4));
    let answer = subscribe_since(&mut ws, "user", since(&seen));
    assert_eq!((answer["recovered"].as_bool(), answer["offset"].as_u64()), (Some(true), Some(4)), "{answer}");
    let replayed: Vec<Value> = (0..2).map(|_| next_json(&mut ws, DEFAULT_DEADLINE)).collect();
    assert_eq!(ids(&replayed), missed, "only what came before the first live event");
    let marker = send(5);
    assert!(read_until_marker(&mut ws, &marker).is_empty(), "{live} came once");
}

#[test]
fn a_replay_reaches_only_whom_the_event_would_have_reached_live() {
    let s = server().start();
    let (mut a, _) = s.connect("a", "seller");
    let (mut b, _) = s.connect("b", "seller");
    let start_a = subscribe(&mut a, ORDERS);
    let start_b = subscribe(&mut b, ORDERS);
    drop((a, b));
    let for_a = s.broadcast(json!({"room": ORDERS, "userId": "a", "type": "t", "payload": {}}));
    // Neither a nor b may see this one (for clients), nor, for b, the one for a.
    s.broadcast(json!({"room": ORDERS, "role": "client", "type": "t", "payload": {}}));
    let everyone = s.broadcast(room_event(ORDERS, 0));
    let cart_of_c = s.broadcast(json!({"room": "cart", "userId": "c", "type": "t", "payload": {}}));

    let (mut a, _) = s.connect("a", "seller");
    assert_eq!(subscribe_since(&mut a, ORDERS, since(&start_a))["recovered"], true);
    let (mut b, _) = s.connect("b", "seller");
    assert_eq!(subscribe_since(&mut b, ORDERS, since(&start_b))["recovered"], true);
    let marker = s.broadcast(room_event(ORDERS, 1));
    assert_eq!(ids(&read_until_marker(&mut a, &marker)), [for_a.clone(), everyone.clone()]);
    assert_eq!(ids(&read_until_marker(&mut b, &marker)), [everyone]);

    // A cart's stream is its owner's: another client cannot even ask.
    let (mut d, _) = s.connect("d", "client");
    let refused = subscribe_answer(&mut d, "cart:c");
    assert_error(&refused, "forbidden", "another user's cart");
    let (mut c, _) = s.connect("c", "client");
    let answer = subscribe_since(
        &mut c,
        "cart",
        json!({"offset": 0, "epoch": s.get("/api/rooms/cart:c/history").json()["epoch"]}),
    );
    assert_eq!(answer["recovered"], true, "{answer}");
    expect_event(&mut c, &cart_of_c);
}

#[test]
fn rooms_at_connect_are_joined_and_refusals_follow_connected() {
    let s = server().start();
    let token = token(SECRET, "u1", "seller");
    let url = format!("{}&rooms=orders,cart,inventory,orders", s.ws_url(&token));
    let mut ws = ws_connect(&url).expect("connect");
    let hello = next_json(&mut ws, DEFAULT_DEADLINE);
    assert_eq!(hello["payload"]["joined"], json!(["all", "user:u1", "orders", "inventory"]), "{hello}");
    assert_error(&next_json(&mut ws, DEFAULT_DEADLINE), "forbidden", "cart for a seller");
    // Each room's answer comes when its history has answered: in any order.
    let mut answered: Vec<String> = (0..3)
        .map(|_| next_json(&mut ws, DEFAULT_DEADLINE))
        .inspect(|a| assert_subscribed(a, a["room"].as_str().unwrap_or_default()))
        .map(|a| a["room"].as_str().unwrap_or_default().to_owned())
        .collect();
    answered.sort();
    assert_eq!(answered, ["inventory", ORDERS, ORDERS]);
    expect_event(&mut ws, &s.broadcast(room_event("inventory", 0)));
}

#[test]
fn the_history_api_pages_a_rooms_events() {
    let s = server().env("API_KEY", "k").start();
    let key = [("X-API-Key", "k")];
    let ids: Vec<String> = (0..5)
        .map(|n| {
            accepted_id(&publish(s.port, BROADCAST, &room_event(ORDERS, n).to_string(), &key), "publish")
        })
        .collect();
    let get = |path: &str| http(s.port, "GET", path, &key, None);
    let all = get(&format!("/api/rooms/{ORDERS}/history"));
    assert_eq!(all.status, 200, "{}", all.body);
    let v = all.json();
    assert_eq!(
        (v["room"].as_str(), v["offset"].as_u64(), v["recovered"].as_bool()),
        (Some(ORDERS), Some(5), Some(true))
    );
    assert_eq!(support::ids(v["events"].as_array().expect("events")), ids);

    let epoch = v["epoch"].as_str().expect("epoch");
    let page = get(&format!("/api/rooms/{ORDERS}/history?since=2&epoch={epoch}&limit=2")).json();
    assert_eq!(support::ids(page["events"].as_array().expect("events")), ids[2..4]);
    let stale = get(&format!("/api/rooms/{ORDERS}/history?since=2&epoch=old")).json();
    assert_eq!(
        (stale["recovered"].as_bool(), stale["events"].as_array().map(Vec::len)),
        (Some(false), Some(0))
    );

    assert_eq!(s.get(&format!("/api/rooms/{ORDERS}/history")).status, 401, "publisher authentication");
    assert_eq!(get("/api/rooms/bad%20room/history").status, 400);
    assert_eq!(get(&format!("/api/rooms/{ORDERS}/history?since=2")).status, 400);
}

#[test]
fn without_history_events_have_no_offset() {
    let s = server().env("HISTORY_SIZE", "0").start();
    let mut ws = s.subscriber("u1", "seller", &[]);
    assert_eq!(subscribe_answer(&mut ws, ORDERS), json!({"type": "subscribed", "room": ORDERS}));
    let v = expect_event(&mut ws, &s.broadcast(room_event(ORDERS, 0)));
    assert!(v.get("offset").is_none() && v.get("epoch").is_none(), "{v}");
    assert_eq!(s.get(&format!("/api/rooms/{ORDERS}/history")).status, 404);
}

#[test]
fn history_memory_is_counted_and_given_back() {
    let s = server().env("HISTORY_TTL", "1").start();
    for n in 0..10 {
        s.broadcast(room_event(&format!("orders:{n}"), n));
    }
    let kept = s.wait_metric("realtime_history_events", DEFAULT_DEADLINE, |v| v >= 10.0);
    assert_eq!(kept, 10.0);
    assert!(s.metric("realtime_history_bytes") > 0.0);
    s.wait_metric("realtime_history_events", Duration::from_secs(10), |v| v == 0.0);
    s.wait_metric("realtime_history_bytes", Duration::from_secs(1), |v| v == 0.0);
}
