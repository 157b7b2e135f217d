//! The WebSocket session against random frame sequences (README, Client protocol), on a
//! real server over a real socket: messages whole or in fragments with
//! control frames between them, pings, pongs, bad UTF-8, oversize messages,
//! the protocol's violations and client closes. A model of RFC 6455 and of
//! the protocol says what the client must get back: the answers to each
//! complete message in order, and then either a working connection or the
//! close code of the first fault. Bounded: 32 cases unless `PROPTEST_CASES`
//! says otherwise (`tests/fuzz.sh session` runs it longer).

mod support;

use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use support::*;

/// Small, so oversize messages are cheap to make.
const MAX_MESSAGE: usize = 256;
const CASES_IN_CARGO_TEST: u32 = 32;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// What a complete message says.
#[derive(Debug, Clone)]
enum Content {
    /// `{"type":"ping"}`: answered `pong`.
    Ping,
    /// Valid UTF-8 that is not a client message: answered `error`.
    Other(String),
    /// Bytes that are not UTF-8 (as text: close 1007).
    NotUtf8(Vec<u8>),
    /// More than `MAX_MESSAGE` bytes: close 1009.
    Oversize(usize),
}

impl Content {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Content::Ping => br#"{"type":"ping"}"#.to_vec(),
            Content::Other(s) => s.clone().into_bytes(),
            Content::NotUtf8(b) => b.clone(),
            Content::Oversize(n) => vec![b'a'; *n],
        }
    }
}

/// One step of a client's life; the faults end the connection.
#[derive(Debug, Clone)]
enum Step {
    /// A data message cut into fragments at `cuts`, with a ping between
    /// fragments at the positions in `pings`.
    Message {
        binary: bool,
        content: Content,
        cuts: Vec<usize>,
        pings: Vec<usize>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>),
    ContinuationFirst,
    ReservedOpcode(u8),
    ReservedBits(u8),
    FragmentedControl,
    ControlTooBig,
    Unmasked,
    /// A new data message while one is still in fragments.
    MessageInsideMessage,
}

/// How the connection ends in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    /// The server's close frame: its code (`None`: any code, for a close
    /// frame of the client's without one).
    Closed(Option<u16>),
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        4 => Just(Content::Ping),
        3 => prop_oneof![".{0,40}", "\\{\"type\":\"[a-z]{0,8}\"\\}"].prop_map(Content::Other),
        1 => prop::collection::vec(any::<u8>(), 1..40)
            .prop_filter("not UTF-8", |b| std::str::from_utf8(b).is_err())
            .prop_map(Content::NotUtf8),
        1 => (MAX_MESSAGE + 1..MAX_MESSAGE * 3).prop_map(Content::Oversize),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let payload = prop::collection::vec(any::<u8>(), 0..=125);
    let message = (
        any::<bool>(),
        content(),
        prop::collection::vec(any::<usize>(), 0..4),
        prop::collection::vec(any::<usize>(), 0..3),
    )
        .prop_map(|(binary, content, cuts, pings)| Step::Message { binary, content, cuts, pings });
    prop_oneof![
        12 => message,
        3 => payload.clone().prop_map(Step::Ping),
        2 => payload.prop_map(Step::Pong),
        1 => prop::option::of(prop::sample::select(vec![1000u16, 1001, 3000, 4999])).prop_map(Step::Close),
        1 => Just(Step::ContinuationFirst),
        1 => prop::sample::select(vec![3u8, 7, 0xb, 0xf]).prop_map(Step::ReservedOpcode),
        1 => (1u8..8).prop_map(Step::ReservedBits),
        1 => Just(Step::FragmentedControl),
        1 => Just(Step::ControlTooBig),
        1 => Just(Step::Unmasked),
        1 => Just(Step::MessageInsideMessage),
    ]
}

fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, 0, opcode, payload, true)
}

/// The message's fragments (with pings between), and what the model says
/// of it: its answer, or how it ends the connection.
fn message_frames(
    binary: bool,
    content: &Content,
    cuts: &[usize],
    pings: &[usize],
) -> (Vec<u8>, Result<&'static str, u16>) {
    let bytes = content.bytes();
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    at.retain(|&c| c > 0 && c < bytes.len());
    let bounds: Vec<usize> = std::iter::once(0).chain(at).chain(std::iter::once(bytes.len())).collect();
    let pieces = bounds.len() - 1;
    let mut out = Vec::new();
    for (i, w) in bounds.windows(2).enumerate() {
        let opcode = match (i, binary) {
            (0, true) => BINARY,
            (0, false) => TEXT,
            _ => CONTINUATION,
        };
        out.extend(frame(i + 1 == pieces, opcode, &bytes[w[0]..w[1]]));
        if i + 1 < pieces && pings.iter().any(|p| p % pieces == i) {
            out.extend(frame(true, PING, b"between"));
        }
    }
    let verdict = match content {
        Content::Oversize(_) => Err(1009),
        Content::NotUtf8(_) if !binary => Err(1007),
        Content::Ping if !binary => Ok("pong"),
        _ => Ok("error"),
    };
    (out, verdict)
}

/// The bytes to write (up to the first step that ends the connection), the
/// answers expected in order, and the end.
fn model(steps: &[Step]) -> (Vec<u8>, Vec<&'static str>, End) {
    let mut bytes = Vec::new();
    let mut answers = Vec::new();
    for step in steps {
        let fault = match step {
            Step::Message { binary, content, cuts, pings } => {
                let (frames, verdict) = message_frames(*binary, content, cuts, pings);
                bytes.extend(frames);
                match verdict {
                    Ok(answer) => {
                        answers.push(answer);
                        continue;
                    }
                    Err(code) => code,
                }
            }
            Step::Ping(payload) => {
                bytes.extend(frame(true, PING, payload));
                continue;
            }
            Step::Pong(payload) => {
                bytes.extend(frame(true, PONG, payload));
                continue;
            }
            Step::Close(code) => {
                let payload = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
                bytes.extend(frame(true, CLOSE, &payload));
                return (bytes, answers, End::Closed(*code));
            }
            Step::ContinuationFirst => {
                bytes.extend(frame(true, CONTINUATION, b"x"));
                1002
            }
            Step::ReservedOpcode(op) => {
                bytes.extend(frame(true, *op, b"x"));
                1002
            }
            Step::ReservedBits(rsv) => {
                bytes.extend(client_frame(true, *rsv, TEXT, br#"{"type":"ping"}"#, true));
                1002
            }
            Step::FragmentedControl => {
                bytes.extend(frame(false, PING, b"x"));
                1002
            }
            Step::ControlTooBig => {
                bytes.extend(frame(true, PING, &[0; 126]));
                1002
            }
            Step::Unmasked => {
                bytes.extend(client_frame(true, 0, TEXT, br#"{"type":"ping"}"#, false));
                1002
            }
            Step::MessageInsideMessage => {
                bytes.extend(frame(false, TEXT, b"{"));
                bytes.extend(frame(true, TEXT, br#"{"type":"ping"}"#));
                1002
            }
        };
        return (bytes, answers, End::Closed(Some(fault)));
    }
    (bytes, answers, End::Open)
}

/// Reads until the connection ends or `wanted` answers came; the answers'
/// types and the close code seen (`Some(None)`: a close frame without one).
fn read_answers(ws: &mut RawWs, wanted: Option<usize>) -> (Vec<String>, Option<Option<u16>>) {
    let deadline = Instant::now() + DEFAULT_DEADLINE;
    let mut answers = Vec::new();
    let mut closed = None;
    while wanted.is_none_or(|n| answers.len() < n) {
        match ws.read_frame(deadline) {
            RawRead::Frame(f) if f.opcode == TEXT => {
                let v: Value = serde_json::from_slice(&f.payload).expect("server text is JSON");
                let kind = v["type"].as_str().unwrap_or_default().to_owned();
                if kind != "connected" {
                    answers.push(kind);
                }
            }
            RawRead::Frame(f) if f.opcode == CLOSE => {
                closed =
                    Some((f.payload.len() >= 2).then(|| u16::from_be_bytes([f.payload[0], f.payload[1]])));
            }
            RawRead::Frame(_) => {}
            RawRead::Eof => break,
            RawRead::Timeout => panic!("no answer within {DEFAULT_DEADLINE:?}; so far {answers:?}"),
        }
    }
    (answers, closed)
}

fn check(server: &Server, steps: &[Step]) -> Result<(), TestCaseError> {
    let (bytes, expected, end) = model(steps);
    let mut ws = RawWs::connect(server.port, &token(SECRET, "frames", "client"));
    // The server may close before it has read everything: a refused write is its answer.
    let _ = ws.write_raw(&bytes);
    match end {
        End::Open => {
            ws.write_raw(&frame(true, TEXT, br#"{"type":"ping"}"#)).expect("the connection is open");
            let (answers, closed) = read_answers(&mut ws, Some(expected.len() + 1));
            prop_assert_eq!(closed, None);
            prop_assert_eq!(&answers[..expected.len()], &expected[..]);
            prop_assert_eq!(answers.last().map(String::as_str), Some("pong"));
        }
        End::Closed(code) => {
            let (answers, closed) = read_answers(&mut ws, None);
            prop_assert_eq!(&answers, &expected);
            match code {
                Some(code) => prop_assert_eq!(closed, Some(Some(code))),
                None => prop_assert!(closed.is_some(), "a close frame answers the client's"),
            }
        }
    }
    ws.shutdown();
    Ok(())
}

#[test]
fn a_session_answers_any_frame_sequence_as_the_protocol_says() {
    let server = server().env("MAX_MESSAGE_SIZE", &MAX_MESSAGE.to_string()).start();
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES_IN_CARGO_TEST;
    }
    let result =
        TestRunner::new(config).run(&prop::collection::vec(step(), 1..12), |steps| check(&server, &steps));
    if let Err(e) = result {
        panic!("{e}\n{}", server.output_dump());
    }
    server.wait_connections(0);
    assert_eq!(server.health()["status"], "healthy");
}
