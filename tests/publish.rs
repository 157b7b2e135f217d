//! The publish API (README, Publish API): validation, the API key and the loopback
//! rule, 404/405/413, CORS; and a slow client cut off while its neighbours
//! keep receiving (README, Running in production).

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn notification(payload: Value) -> Value {
    json!({"room": "notifications", "type": "notification", "payload": payload})
}

#[test]
fn accepted_events_get_unique_ids_that_clients_see() {
    let s = server().start();
    let mut ws = s.subscriber("s1", "seller", &["orders", "inventory", "notifications"]);
    let bodies = [
        notification(json!({"title": "t", "message": "m"})),
        notification(json!({"title": "t", "message": "m", "priority": "low", "action": "open"})),
        notification(json!({"title": "t", "message": "m", "priority": "normal", "action": {"url": "/x"}})),
        notification(json!({"title": "t", "message": "m", "priority": "high"})),
        json!({"room": "orders", "type": "order_update", "payload": {"orderId": 12345, "status": "shipped"}}),
        json!({"room": "orders", "type": "order_update", "payload": {"orderId": "9", "status": "pending", "eta": "soon"}}),
        json!({"room": "inventory", "type": "inventory_alert",
               "payload": {"productId": "p1", "stockLevel": 3, "threshold": 5, "alert": "low_stock"}}),
        json!({"room": "orders", "type": "broadcast", "payload": {"message": "hello"}}),
        json!({"room": "orders", "type": "anything_else", "payload": {"free": ["form", 1]}}),
        json!({"room": "orders", "type": "anything_else", "payload": {}}),
    ];
    let mut seen = Vec::new();
    for body in &bodies {
        let id = s.broadcast(body.clone());
        assert!(!seen.contains(&id), "id {id} handed out twice");
        seen.push(id.clone());
        let v = expect_event(&mut ws, &id);
        assert_eq!(v["type"], body["type"], "{v}");
        assert_eq!(v["room"], body["room"], "{v}");
        assert_eq!(v["payload"], body["payload"], "the payload is passed on unchanged: {v}");
    }

    // the server names and dates what publishers send over HTTP
    let body = json!({"id": "mine", "timestamp": "2000-01-01T00:00:00.000Z", "room": "orders", "type": "x",
        "payload": {}});
    let id = s.broadcast(body);
    assert_ne!(id, "mine");
    assert!(!seen.contains(&id), "id {id} handed out twice");
    let v = expect_event(&mut ws, &id);
    assert_ne!(v["timestamp"], "2000-01-01T00:00:00.000Z", "{v}");
}

#[test]
fn validation_errors_are_400_and_deliver_nothing() {
    let s = server().without_history().start();
    let mut admin =
        s.subscriber("a1", "admin", &["orders", "inventory", "notifications", "cart", "myOrders"]);
    let mut target = s.subscriber("u1", "client", &["notifications", "cart", "myOrders"]);

    let cases: Vec<(&str, &str, String)> = vec![
        ("bad JSON", BROADCAST, r#"{"room":"orders","type":"x","payload":{}"#.into()),
        ("not JSON", SEND, "hello".into()),
        ("empty body", BROADCAST, String::new()),
        ("body is an array", BROADCAST, "[1,2]".into()),
        ("body is a string", SEND, r#""text""#.into()),
        ("missing type", BROADCAST, json!({"room": "orders", "payload": {}}).to_string()),
        ("empty type", BROADCAST, json!({"room": "orders", "type": "", "payload": {}}).to_string()),
        ("type not a string", BROADCAST, json!({"room": "orders", "type": 5, "payload": {}}).to_string()),
        ("broadcast without room", BROADCAST, json!({"type": "x", "payload": {}}).to_string()),
        ("broadcast with empty room", BROADCAST, json!({"room": "", "type": "x", "payload": {}}).to_string()),
        (
            "send without userId",
            SEND,
            json!({"type": "notification", "room": "notifications",
            "payload": {"title": "t", "message": "m"}})
            .to_string(),
        ),
        ("userId an object", SEND, json!({"userId": {"id": 1}, "type": "x", "payload": {}}).to_string()),
        ("bad room name", BROADCAST, json!({"room": "bad room", "type": "x", "payload": {}}).to_string()),
        ("bad scope", BROADCAST, json!({"room": "orders:", "type": "x", "payload": {}}).to_string()),
        (
            "send with bad room",
            SEND,
            json!({"userId": "u1", "room": "a/b", "type": "x", "payload": {}}).to_string(),
        ),
        ("cart without userId", BROADCAST, json!({"room": "cart", "type": "x", "payload": {}}).to_string()),
        (
            "myOrders without userId",
            BROADCAST,
            json!({"room": "myOrders", "type": "order_update",
            "payload": {"orderId": "1", "status": "paid"}})
            .to_string(),
        ),
        ("notification without message", BROADCAST, notification(json!({"title": "t"})).to_string()),
        ("notification without title", BROADCAST, notification(json!({"message": "m"})).to_string()),
        (
            "notification title not a string",
            BROADCAST,
            notification(json!({"title": 1, "message": "m"})).to_string(),
        ),
        (
            "notification bad priority",
            BROADCAST,
            notification(json!({"title": "t", "message": "m", "priority": "urgent"})).to_string(),
        ),
        (
            "send notification without message",
            SEND,
            json!({"userId": "u1", "type": "notification",
            "payload": {"title": "t"}})
            .to_string(),
        ),
        (
            "order_update without status",
            BROADCAST,
            json!({"room": "orders", "type": "order_update",
            "payload": {"orderId": "1"}})
            .to_string(),
        ),
        (
            "order_update without orderId",
            BROADCAST,
            json!({"room": "orders", "type": "order_update",
            "payload": {"status": "paid"}})
            .to_string(),
        ),
        (
            "inventory_alert with string stockLevel",
            BROADCAST,
            json!({"room": "inventory", "type": "inventory_alert",
            "payload": {"productId": "p1", "stockLevel": "3", "threshold": 5, "alert": "low_stock"}})
            .to_string(),
        ),
        (
            "inventory_alert without alert",
            BROADCAST,
            json!({"room": "inventory", "type": "inventory_alert",
            "payload": {"productId": "p1", "stockLevel": 3, "threshold": 5}})
            .to_string(),
        ),
        (
            "broadcast without message",
            BROADCAST,
            json!({"room": "all", "type": "broadcast",
            "payload": {"text": "hi"}})
            .to_string(),
        ),
        ("payload a string", BROADCAST, json!({"room": "orders", "type": "x", "payload": "hi"}).to_string()),
        ("payload an array", SEND, json!({"userId": "u1", "type": "x", "payload": [1]}).to_string()),
        ("payload a number", BROADCAST, json!({"room": "orders", "type": "x", "payload": 3}).to_string()),
        ("payload null", BROADCAST, json!({"room": "orders", "type": "x", "payload": null}).to_string()),
        ("no payload", BROADCAST, json!({"room": "orders", "type": "x"}).to_string()),
    ];
    for (what, path, body) in &cases {
        let r = publish(s.port, path, body, &[]);
        assert_eq!(r.status, 400, "{what}: POST {path} {body} answered {r:?}");
        r.error_message();
    }
    let marker = s.marker();
    expect_only_marker(&mut admin, &marker, "admin after the rejected publishes");
    expect_only_marker(&mut target, &marker, "u1 after the rejected publishes");
}

#[test]
fn api_key_in_either_header() {
    let s = server().env("API_KEY", "k3y-for-tests").start();
    let mut ws = s.subscriber("s1", "seller", &["orders"]);
    let body = room_event("orders", 1).to_string();
    let mut accepted = Vec::new();
    for headers in [[("Authorization", "Bearer k3y-for-tests")], [("X-API-Key", "k3y-for-tests")]] {
        let r = publish(s.port, BROADCAST, &body, &headers);
        accepted.push(accepted_id(&r, &format!("{headers:?}")));
    }
    let send = json!({"userId": "s1", "type": "x", "payload": {}}).to_string();
    let r = publish(s.port, SEND, &send, &[("X-API-Key", "k3y-for-tests")]);
    accepted.push(accepted_id(&r, "send with X-API-Key"));

    let refused: &[&[(&str, &str)]] = &[
        &[],
        &[("Authorization", "Bearer wrong")],
        &[("Authorization", "Bearer k3y-for-test")],
        &[("Authorization", "Bearer k3y-for-tests-and-more")],
        &[("Authorization", "k3y-for-tests")],
        &[("Authorization", "Basic k3y-for-tests")],
        &[("X-API-Key", "wrong")],
        &[("X-API-Key", "")],
        &[("X-Forwarded-For", "127.0.0.1")],
    ];
    for headers in refused {
        for (path, body) in [(BROADCAST, &body), (SEND, &send)] {
            let r = publish(s.port, path, body, headers);
            assert_eq!(r.status, 401, "{path} with {headers:?}: {r:?}");
            r.error_message();
        }
    }
    // a wrong key is refused before the body is looked at
    let r = publish(s.port, BROADCAST, "not json", &[("X-API-Key", "wrong")]);
    assert_eq!(r.status, 401, "{r:?}");

    let r = publish(
        s.port,
        BROADCAST,
        &json!({"room": "all", "type": "marker", "payload": {}}).to_string(),
        &[("X-API-Key", "k3y-for-tests")],
    );
    let marker = accepted_id(&r, "marker with key");
    let got = read_until_marker(&mut ws, &marker);
    assert_eq!(ids(&got), accepted, "only the accepted publishes are delivered: {got:?}");
}

#[test]
fn without_api_key_loopback_peers_may_publish() {
    // Bound to 127.0.0.1; peers from 127.0.0.1 and 127.0.0.2 are both
    // loopback. (A non-loopback peer cannot be made on one machine without
    // binding to a routable address; the unit tests cover the refusal.)
    let s = server().without_history().start();
    let mut ws = s.subscriber("s1", "seller", &["orders"]);
    let mut accepted = Vec::new();
    for (from, headers) in [
        ("127.0.0.1", vec![]),
        ("127.0.0.2", vec![]),
        ("127.0.0.1", vec![("X-Forwarded-For", "203.0.113.7")]),
        ("127.0.0.1", vec![("Authorization", "Bearer anything")]),
    ] {
        let stream = tcp_from(from, s.port, None);
        stream.set_read_timeout(Some(DEFAULT_DEADLINE)).unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let req = build_request(
            s.port,
            "POST",
            BROADCAST,
            &headers,
            Some(&room_event("orders", 0).to_string()),
            true,
        );
        reader.get_mut().write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut reader, false).expect("response");
        accepted.push(accepted_id(&r, &format!("from {from} with {headers:?}")));
    }
    let marker = s.marker();
    assert_eq!(ids(&read_until_marker(&mut ws, &marker)), accepted);
}

#[test]
fn without_api_key_another_sites_page_and_a_rebound_name_are_refused() {
    let s = server().without_history().start();
    let mut ws = s.subscriber("s1", "seller", &["orders"]);
    let event = room_event("orders", 0).to_string();
    let evil = [("Origin", "https://evil.example"), ("Content-Type", "text/plain")];
    let forged = http(s.port, "POST", BROADCAST, &evil, Some(&event));
    assert_eq!(forged.status, 401, "a cross-site form post: {forged:?}");
    let kick = http(s.port, "POST", "/api/users/s1/disconnect", &evil, Some("{}"));
    assert_eq!(kick.status, 401, "a cross-site disconnect: {kick:?}");
    let rebound = format!(
        "GET /api/admin/stats HTTP/1.1\r\nHost: evil.example:{}\r\nConnection: close\r\n\r\n",
        s.port
    );
    let read = raw_http(s.port, &rebound).expect("response");
    assert_eq!(read.status, 401, "a name rebound to 127.0.0.1: {read:?}");

    let tunnel = format!(
        "POST {BROADCAST} HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: http://localhost:{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{event}",
        s.port,
        s.port,
        event.len()
    );
    let through = raw_http(s.port, &tunnel).expect("response");
    let accepted = accepted_id(&through, "the page through a tunnel to localhost");
    let marker = s.marker();
    assert_eq!(
        ids(&read_until_marker(&mut ws, &marker)),
        [accepted],
        "only the tunnel's event, s1 still there"
    );
}

#[test]
fn unknown_path_wrong_method_and_too_large() {
    let s = server().without_history().env("MAX_MESSAGE_SIZE", "1024").start();
    let mut ws = s.subscriber("s1", "seller", &["orders"]);
    let small = room_event("orders", 0).to_string();

    for path in ["/api/notifications/other", "/api/notifications", "/api/notifications/send/x", "/api/send"] {
        let r = publish(s.port, path, &small, &[]);
        assert_eq!(r.status, 404, "POST {path}: {r:?}");
        r.error_message();
    }
    for (method, path) in [("GET", SEND), ("GET", BROADCAST), ("PUT", BROADCAST), ("DELETE", SEND)] {
        let body = (method != "GET").then_some(small.as_str());
        let r = http(s.port, method, path, &[], body);
        assert_eq!(r.status, 405, "{method} {path}: {r:?}");
        r.error_message();
    }

    // just under the limit is fine, over it is 413 (declared or chunked)
    let mut fits = room_event("orders", 1);
    let overhead = fits.to_string().len();
    fits["payload"]["pad"] = json!("p".repeat(1024 - overhead - 10));
    let fits = fits.to_string();
    assert!(fits.len() <= 1024, "{}", fits.len());
    let ok = accepted_id(&publish(s.port, BROADCAST, &fits, &[]), "body under MAX_MESSAGE_SIZE");

    let mut big = room_event("orders", 2);
    big["payload"]["pad"] = json!("p".repeat(2000));
    let big = big.to_string();
    for path in [BROADCAST, SEND] {
        let r = publish(s.port, path, &big, &[]);
        assert_eq!(r.status, 413, "{path} with {} bytes: {r:?}", big.len());
        r.error_message();
    }
    let r = post_chunked(s.port, BROADCAST, &big);
    assert_eq!(r.status, 413, "chunked body of {} bytes: {r:?}", big.len());
    r.error_message();

    let marker = s.marker();
    assert_eq!(ids(&read_until_marker(&mut ws, &marker)), [ok], "only the body that fits is delivered");
}

/// `POST` with `Transfer-Encoding: chunked` (no Content-Length), 256-byte chunks.
fn post_chunked(port: u16, path: &str, body: &str) -> HttpResponse {
    let stream = tcp_from("127.0.0.1", port, None);
    stream.set_read_timeout(Some(DEFAULT_DEADLINE)).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in body.as_bytes().chunks(256) {
        req.push_str(&format!("{:x}\r\n{}\r\n", chunk.len(), std::str::from_utf8(chunk).unwrap()));
    }
    req.push_str("0\r\n\r\n");
    // The server may answer before reading everything; a failed write is fine.
    let _ = reader.get_mut().write_all(req.as_bytes());
    read_response(&mut reader, false).expect("response to a chunked POST")
}

fn header_has(r: &HttpResponse, name: &str, item: &str) -> bool {
    r.header(name).is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(item)))
}

#[test]
fn cors_preflight_and_headers() {
    let s = server().env("ALLOWED_ORIGINS", "https://shop.example").env("API_KEY", "k").start();
    for path in [SEND, BROADCAST] {
        // a preflight carries no credentials: answered without the key
        let r = http(
            s.port,
            "OPTIONS",
            path,
            &[
                ("Origin", "https://shop.example"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type, x-api-key"),
            ],
            None,
        );
        assert_eq!(r.status, 204, "preflight of {path}: {r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some("https://shop.example"), "{r:?}");
        assert!(header_has(&r, "access-control-allow-methods", "POST"), "{r:?}");
        for h in ["Content-Type", "X-API-Key", "Authorization"] {
            assert!(header_has(&r, "access-control-allow-headers", h), "{h} not allowed: {r:?}");
        }

        // an unlisted origin gets no CORS headers
        let r = http(
            s.port,
            "OPTIONS",
            path,
            &[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")],
            None,
        );
        assert!(
            r.headers.iter().all(|(k, _)| !k.starts_with("access-control-")),
            "unlisted origin got CORS headers: {r:?}"
        );
    }

    // the real request: allowed origin echoed, unlisted origin handled without CORS headers
    let body = room_event("orders", 0).to_string();
    let r = publish(s.port, BROADCAST, &body, &[("Origin", "https://shop.example"), ("X-API-Key", "k")]);
    accepted_id(&r, "POST from the allowed origin");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://shop.example"), "{r:?}");
    let r = publish(s.port, BROADCAST, &body, &[("Origin", "https://evil.example"), ("X-API-Key", "k")]);
    accepted_id(&r, "POST from an unlisted origin");
    assert!(r.headers.iter().all(|(k, _)| !k.starts_with("access-control-")), "{r:?}");
    // errors get the header too, so the browser can read them
    let r = publish(s.port, BROADCAST, &body, &[("Origin", "https://shop.example")]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://shop.example"), "{r:?}");
}

#[test]
fn slow_client_is_cut_off_while_neighbours_keep_receiving() {
    let s = server()
        .without_history()
        .env("SEND_QUEUE_BYTES", "65536")
        // the queue limit, not the write timeout, must be what cuts it off
        .env("WS_WRITE_TIMEOUT", "120")
        .start();

    // The slow client: a small receive buffer, subscribes, then never reads.
    let stream = tcp_from("127.0.0.1", s.port, Some(4096));
    let mut slow = ws_connect_over(&s.ws_url(&token(SECRET, "slow", "seller")), stream).expect("slow client");
    assert_eq!(next_json(&mut slow, DEFAULT_DEADLINE)["type"], "connected");
    subscribe(&mut slow, "orders");

    // The neighbour reads every event on its own thread until the marker.
    let mut neighbour = s.subscriber("fast", "seller", &["orders"]);
    let received = Arc::new(AtomicUsize::new(0));
    let reader = {
        let received = received.clone();
        thread::spawn(move || {
            let mut ids = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(Instant::now() < deadline, "neighbour: no marker within 60 s ({} events)", ids.len());
                match next_event(&mut neighbour, Duration::from_millis(500)) {
                    Some(Event::Text(t)) => {
                        let v: Value = serde_json::from_str(&t).expect("JSON");
                        let id = v["id"].as_str().expect("event id").to_string();
                        if v["type"] == "marker" {
                            return (ids, id, neighbour);
                        }
                        assert_eq!(v["type"], "bulk", "neighbour got {t:.200}");
                        ids.push(id);
                        received.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(Event::Ping) | Some(Event::Pong) | None => {}
                    Some(other) => panic!("neighbour connection ended: {other:?}"),
                }
            }
        })
    };

    // Publish ~8 KiB events; keep at most 4 unread by the neighbour, so that
    // only the client that does not read can fall behind.
    let blob = "x".repeat(8 * 1024);
    let mut conn = HttpConn::open(s.port);
    let mut published = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while s.metric("realtime_slow_client_closes_total") < 1.0 {
        assert!(
            Instant::now() < deadline && published.len() < 5000,
            "slow client not cut off after {} events of 8 KiB\n{}",
            published.len(),
            s.output_dump()
        );
        for _ in 0..10 {
            while published.len() - received.load(Ordering::SeqCst) > 4 {
                assert!(!reader.is_finished(), "neighbour reader stopped");
                assert!(Instant::now() < deadline, "neighbour stopped receiving at {}", published.len());
                thread::sleep(Duration::from_millis(1));
            }
            let body =
                json!({"room": "orders", "type": "bulk", "payload": {"n": published.len(), "blob": blob}});
            let r = conn.request("POST", BROADCAST, &[], Some(&body.to_string()));
            published.push(accepted_id(&r, "bulk publish"));
        }
    }

    // The neighbour got every event, once, in order...
    let marker = s.marker();
    let (got, marker_seen, mut neighbour) = reader.join().expect("neighbour reader");
    assert_eq!(marker_seen, marker);
    assert_eq!(got.len(), published.len(), "neighbour events vs published");
    assert_eq!(got, published, "neighbour got every event once, in order");
    assert_ping_pong(&mut neighbour);

    // ...and the slow client is gone: not counted any more, and what it
    // reads ends (after the events already in its socket) in a 1008 close or
    // a plain EOF. WS_WRITE_TIMEOUT is 120 s, so only the queue limit can
    // have closed it within the deadline.
    let deadline = Instant::now() + DEFAULT_DEADLINE;
    while s.health()["connections"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the slow client was counted in realtime_slow_client_closes_total but is still connected \
             {DEFAULT_DEADLINE:?} later (/health connections = {})\n{}",
            s.health()["connections"],
            s.output_dump()
        );
        thread::sleep(Duration::from_millis(50));
    }
    match expect_close(&mut slow, DEFAULT_DEADLINE) {
        Event::Close(code) => assert_eq!(code, Some(1008), "the slow client's close code"),
        Event::Eof(_) => {}
        _ => unreachable!(),
    }
}

/// With `role`, an event reaches only sessions of that role: where a REST
/// service numbers sellers and clients separately, seller 5 is not client 5.
#[test]
fn role_scopes_send_and_broadcast() {
    let s = server().without_history().start();
    let roles = ["client", "seller", "delivery"];
    let mut fives: Vec<Ws> = roles.iter().map(|role| s.connect("5", role).0).collect();
    let to_seller_5 = s.send(json!({"userId": 5, "role": "seller", "type": "t", "payload": {}}));
    let to_clients = s.broadcast(json!({"room": "all", "role": "client", "type": "t", "payload": {}}));
    let to_user_5 = s.send(json!({"userId": "5", "type": "t", "payload": {}}));
    let marker = s.marker();
    for (role, ws) in roles.iter().zip(&mut fives) {
        let got = read_until_marker(ws, &marker);
        let want = match *role {
            "seller" => vec![to_seller_5.clone(), to_user_5.clone()],
            "client" => vec![to_clients.clone(), to_user_5.clone()],
            _ => vec![to_user_5.clone()],
        };
        assert_eq!(ids(&got), want, "{role} 5: {got:?}");
    }
    let r = s.publish(SEND, &json!({"userId": "5", "role": "superuser", "type": "t", "payload": {}}));
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error_message().contains("role"), "{r:?}");
}
