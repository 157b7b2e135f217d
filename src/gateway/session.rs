//! One WebSocket connection, from upgrade to close: the handshake, the
//! `connected` message, then a single task that reacts to whichever comes
//! first — a signal from the shard (close, queued events, ping due) or a frame
//! from the client.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_util::{FutureExt, SinkExt, StreamExt};
use glommio::net::TcpStream;
use socket2::SockRef;
use tracing::{debug, info};

use super::expiry;
use super::flood::{Bucket, FloodGate, Verdict};
use super::handshake::{self, Admitted};
use super::presence;
use crate::auth::jwt::now_secs;
use crate::close::CloseReason;
use crate::config::Config;
use crate::history::Since;
use crate::instance::Admission;
use crate::protocol::{self, ClientMessage, ErrorCode};
use crate::room;
use crate::shard::handle::{SessionHandle, Signal};
use crate::shard::{SessionKey, Shard, SubscribeError, Subscribed, TooManyRooms, MAX_ROOMS_PER_SESSION};

/// Bytes read from a socket at a time; small, since an idle connection keeps it.
const READ_BUFFER: usize = 256;
/// Bytes of frames gathered before a write to the socket.
const WRITE_BATCH: usize = 16 * 1024;
/// The largest WebSocket frame header, which a frame's bytes come with.
const FRAME_HEADER_MAX: usize = 14;
/// The header of a control frame the server sends (no mask, short payload).
const CONTROL_HEADER: usize = 2;
/// How long a closing connection waits for the peer to hang up.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

type Ws = WebSocketStream<TcpStream>;

/// How a session ended, for the log.
enum End {
    Closed(CloseReason),
    PeerGone,
    Failed(WsError),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Closed(reason) => write!(f, "closed: {}", reason.as_str()),
            End::PeerGone => f.write_str("peer hung up"),
            End::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// Upgrades `stream` (already routed to `/ws`) and runs the session.
///
/// The handshake and the session live in separate boxes: the handshake's
/// state is large and short-lived, and a long-lived task should not keep room
/// reserved for it (a few hundred bytes times every idle connection).
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    if let Some(session) = Box::pin(upgrade(shard, stream)).await {
        session.await;
    }
}

/// The handshake; on success, the session's whole remaining life, boxed.
async fn upgrade(shard: Rc<Shard>, stream: TcpStream) -> Option<Pin<Box<impl Future<Output = ()>>>> {
    let instance = shard.instance;
    let config = &instance.config;
    if !bound_writes(&stream, config) {
        return None;
    }
    // The 101 answer and the `connected` message leave in one segment.
    cork(&stream, true);
    // tungstenite's callback can hand back only the response.
    let mut checked = None;
    // tungstenite fixes the callback's error type (an HTTP response).
    #[allow(clippy::result_large_err)]
    let callback = |request: &_, response| {
        let outcome = handshake::check(&shard, request);
        let answer = match outcome {
            Ok(_) => Ok(response),
            Err(rejection) => Err(rejection.response()),
        };
        checked = Some(outcome);
        answer
    };
    let upgraded =
        async_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config(config))).await;
    let admitted = match checked {
        Some(Ok(admitted)) => admitted,
        Some(Err(rejection)) => {
            rejection.record(&shard);
            return None;
        }
        // tungstenite refused the request before asking.
        None => return None,
    };
    match upgraded {
        Ok(ws) => Some(start(shard, ws, admitted)),
        Err(e) => {
            debug!(error = %e, "websocket handshake failed");
            None
        }
    }
}

/// A session on a connection HTTP has already upgraded: a WebSocket asked
/// for on a kept-alive HTTP connection, its checks passed and its 101 written.
pub async fn serve_upgraded(shard: Rc<Shard>, stream: TcpStream, admitted: Admitted) {
    if !bound_writes(&stream, &shard.instance.config) {
        return;
    }
    let config = Some(ws_config(&shard.instance.config));
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, config).await;
    start(shard, ws, admitted).await;
}

/// glommio fails a write that makes no progress for `WS_WRITE_TIMEOUT`;
/// `false` when the socket refuses the setting.
fn bound_writes(stream: &TcpStream, config: &Config) -> bool {
    match stream.set_write_timeout(Some(config.ws_write_timeout)) {
        Ok(()) => true,
        Err(e) => {
            debug!(error = %e, "cannot set write timeout");
            false
        }
    }
}

/// The session of an admitted client, from its first message to its close.
fn start(
    shard: Rc<Shard>,
    ws: WebSocketStream<TcpStream>,
    Admitted { verified, admission, rooms }: Admitted,
) -> Pin<Box<impl Future<Output = ()>>> {
    let config = &shard.instance.config;
    shard.instance.metrics.handshakes.inc();
    let handle = Rc::new(SessionHandle::new(
        verified.identity,
        verified.exp,
        config.send_queue_bytes,
        Instant::now() + config.ws_ping_interval,
    ));
    debug!(user = %handle.identity.user_id, role = %handle.identity.role, "connection opened");
    let registration = Registration::new(shard, handle.clone());
    Box::pin(
        Session {
            ws,
            handle,
            registration,
            _admission: admission,
            flood: FloodGate::new(Instant::now()),
            presence_queries: Cell::new(Bucket::presence(Instant::now())),
            batch: VecDeque::new(),
        }
        .run(rooms),
    )
}

fn ws_config(config: &Config) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        // The session never hands tungstenite more than a batch and one frame
        // at a time (no event is larger than SEND_QUEUE_BYTES: it is refused
        // where it enters), so this only backs up the client's own queue.
        .max_write_buffer_size(WRITE_BATCH + FRAME_HEADER_MAX + config.send_queue_bytes)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size))
}

/// Keeps a session in its shard's registry for exactly as long as it lives.
struct Registration {
    shard: Rc<Shard>,
    key: SessionKey,
}

impl Registration {
    fn new(shard: Rc<Shard>, handle: Rc<SessionHandle>) -> Self {
        let key = shard.register(handle);
        Self { shard, key }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shard.unregister(self.key);
    }
}

enum Step {
    Continue,
    End(End),
}

enum Wake {
    Signal(Signal),
    Inbound(Option<Result<Message, WsError>>),
}

struct Session {
    ws: Ws,
    handle: Rc<SessionHandle>,
    /// In the shard's registry while the session lives.
    registration: Registration,
    /// The `MAX_CONNECTIONS` slot, freed with the session.
    _admission: Admission,
    flood: FloodGate,
    /// Presence queries are dearer than other messages: their own bucket.
    presence_queries: Cell<Bucket>,
    /// Frames being written; trades places with the handle's queue.
    batch: VecDeque<Utf8Bytes>,
}

impl Session {
    async fn run(mut self, rooms: Vec<String>) {
        // A panic tells the client (1011) before the runtime contains it.
        let lived = AssertUnwindSafe(self.live(rooms)).catch_unwind().await;
        let end = match lived {
            Ok(end) => end,
            Err(panic) => {
                Box::pin(self.close(CloseReason::InternalError)).await;
                std::panic::resume_unwind(panic);
            }
        };
        debug!(
            user = %self.handle.identity.user_id,
            role = %self.handle.identity.role,
            end = %end,
            "connection closed"
        );
    }

    fn shard(&self) -> &Shard {
        &self.registration.shard
    }

    async fn live(&mut self, rooms: Vec<String>) -> End {
        if let Err(e) = self.connect(rooms).await {
            return End::Failed(e);
        }
        // A token with less than the notice left is told at once.
        expiry::check(self.shard(), &self.handle, now_secs());
        cork(self.ws.get_ref(), false);
        let end = loop {
            let wake = poll_fn(|cx| match self.handle.poll_signal(cx) {
                Some(signal) => Poll::Ready(Wake::Signal(signal)),
                None => self.ws.poll_next_unpin(cx).map(Wake::Inbound),
            })
            .await;
            // A close (a slow client's, above all) must not wait behind a
            // write to a socket that nobody drains.
            let handle = self.handle.clone();
            let closing = async { Step::End(End::Closed(handle.closing().await)) };
            match futures_lite::future::or(self.act(wake), closing).await {
                Step::Continue => {}
                Step::End(end) => break end,
            }
        };
        if let End::Closed(reason) = end {
            Box::pin(self.close(reason)).await;
        }
        end
    }

    /// `connected`, then the rooms asked for with `?rooms=` (README, Client
    /// protocol): an `error` for each one refused, then their subscribes.
    async fn connect(&mut self, rooms: Vec<String>) -> Result<(), WsError> {
        let identity = &self.handle.identity;
        let mut joined = vec![room::ALL.to_owned(), room::personal_user_room(&identity.user_id)];
        let (mut taken, mut refused) = (Vec::new(), Vec::new());
        for (at, requested) in rooms.into_iter().enumerate() {
            let checked = match at < MAX_ROOMS_PER_SESSION {
                true => room::room_to_join(identity, &requested).map_err(SubscribeError::from),
                false => Err(SubscribeError::TooMany(TooManyRooms)),
            };
            match checked {
                Ok(room) => {
                    if !joined.contains(&room) {
                        joined.push(room);
                    }
                    taken.push(requested);
                }
                Err(e) => refused.push(e.frame(&requested)),
            }
        }
        let connected = protocol::connected(identity, self.handle.token_exp(), &joined);
        self.ws.feed(Message::Text(connected)).await?;
        for frame in refused {
            self.ws.feed(Message::Text(frame)).await?;
        }
        for requested in taken {
            if let Some(answer) = self.subscribe(&requested, None) {
                self.ws.feed(Message::Text(answer)).await?;
            }
        }
        self.ws.flush().await
    }

    /// Handles one wake-up.
    async fn act(&mut self, wake: Wake) -> Step {
        let written = match wake {
            Wake::Signal(Signal::Close(reason)) => return Step::End(End::Closed(reason)),
            Wake::Signal(Signal::Outbound) => self.write_outbound().await,
            Wake::Signal(Signal::Ping) => self.ws.send(Message::Ping(Bytes::new())).await,
            Wake::Inbound(None) => return Step::End(End::PeerGone),
            // Boxed: a client message is rare next to the session's idle life,
            // and its future would otherwise enlarge every idle session's.
            Wake::Inbound(Some(Ok(message))) => match Box::pin(self.on_message(message)).await {
                Ok(Some(reason)) => return Step::End(End::Closed(reason)),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Wake::Inbound(Some(Err(e))) => match close_reason(&e) {
                Some(reason) => return Step::End(End::Closed(reason)),
                None => Err(e),
            },
        };
        match written {
            Ok(()) => Step::Continue,
            Err(e) => Step::End(End::Failed(e)),
        }
    }

    /// Everything queued, in one flush.
    async fn write_outbound(&mut self) -> Result<(), WsError> {
        // Out of the backlog before the first await: this write may be
        // abandoned for a close, and the count must not wait for it.
        let released = self.handle.take_outbound(&mut self.batch);
        self.shard().release_backlog(released);
        while let Some(frame) = self.batch.pop_front() {
            self.ws.feed(Message::Text(frame)).await?;
        }
        let flushed = self.ws.flush().await;
        self.handle.flushed();
        flushed
    }

    /// Answers one client message; `Some(reason)` when the session must close.
    /// Every frame but a close counts against flood control, control frames
    /// included (README, Client protocol).
    async fn on_message(&mut self, message: Message) -> Result<Option<CloseReason>, WsError> {
        self.handle.saw_frame();
        let pong = match &message {
            Message::Close(_) => {
                // tungstenite's close reply and our FIN leave in one segment.
                cork(self.ws.get_ref(), true);
                return Ok(None);
            }
            Message::Frame(_) => return Ok(None),
            // tungstenite has queued the pong itself; it is written below.
            Message::Ping(data) => CONTROL_HEADER + data.len(),
            Message::Pong(_) | Message::Text(_) | Message::Binary(_) => 0,
        };
        let reply = match self.flood.check(Instant::now()) {
            Verdict::Close => return Ok(Some(CloseReason::Flooding)),
            Verdict::Refuse => {
                self.shard().instance.metrics.rate_limited.inc();
                Some(protocol::error(ErrorCode::RateLimited, "too many messages; slow down"))
            }
            Verdict::Allow => match &message {
                Message::Text(text) => self.on_text(text).await,
                Message::Binary(_) => {
                    Some(protocol::error(ErrorCode::BadRequest, "binary frames are not supported"))
                }
                _ => None,
            },
        };
        self.answer(pong, reply).await
    }

    /// Writes what the client is owed for its message — the pong tungstenite
    /// queued (`pong` bytes) and our reply — before anything more is read
    /// from it: a client that sends without reading stops being read, instead
    /// of growing a queue. The bytes count against its send queue until they
    /// are in the socket.
    async fn answer(
        &mut self,
        pong: usize,
        reply: Option<Utf8Bytes>,
    ) -> Result<Option<CloseReason>, WsError> {
        let bytes = pong + reply.as_ref().map_or(0, |r| r.len());
        if bytes == 0 {
            return Ok(None);
        }
        if !self.handle.owe(bytes) {
            self.shard().instance.metrics.slow_client_closes.inc();
            return Ok(Some(CloseReason::SlowClient));
        }
        let written = match reply {
            Some(reply) => self.ws.send(Message::Text(reply)).await,
            None => self.ws.flush().await,
        };
        self.handle.flushed();
        written.map(|()| None)
    }

    /// The answer to a text message; `None` when it comes later (a
    /// subscribe waiting for its room's history).
    async fn on_text(&self, text: &str) -> Option<Utf8Bytes> {
        let answer = match protocol::parse(text) {
            Ok(ClientMessage::Ping) => protocol::pong(),
            Ok(ClientMessage::Refresh { token }) => self.refresh(&token),
            Ok(ClientMessage::Presence { room }) => {
                let mut bucket = self.presence_queries.get();
                let allowed = bucket.take(Instant::now());
                self.presence_queries.set(bucket);
                match allowed {
                    true => presence::answer(self.shard(), &self.handle, &room).await,
                    false => {
                        self.shard().instance.metrics.rate_limited.inc();
                        presence::rate_limited()
                    }
                }
            }
            Err(message) => protocol::error(ErrorCode::BadRequest, &message),
            Ok(ClientMessage::Subscribe { room, since }) => return self.subscribe(&room, since),
            Ok(ClientMessage::Unsubscribe { room }) => match self.shard().unsubscribe(&self.handle, &room) {
                Ok(()) => protocol::unsubscribed(&room),
                Err(e) => e.frame(&room),
            },
        };
        Some(answer)
    }

    /// `subscribed` now, or (history on) once the room's history answers.
    fn subscribe(&self, room: &str, since: Option<Since>) -> Option<Utf8Bytes> {
        match self.shard().subscribe(&self.handle, room, since) {
            Ok(Subscribed::Now) => Some(protocol::subscribed(room, None, None)),
            Ok(Subscribed::Later) => None,
            Err(e) => Some(e.frame(room)),
        }
    }

    /// README's Tokens during a session section: a valid token of the same user and role moves the session's
    /// expiry; any other leaves the session as it was.
    fn refresh(&self, token: &str) -> Utf8Bytes {
        let shard = self.shard();
        let verified = match shard.verify(token) {
            Ok(verified) => verified,
            Err(reason) => {
                shard.instance.metrics.auth_failed(reason);
                info!(reason = reason.reason(), "token refresh refused");
                return protocol::error(ErrorCode::Unauthorized, reason.message());
            }
        };
        if verified.identity != self.handle.identity {
            return protocol::error(ErrorCode::Forbidden, "the token is for another user or role");
        }
        self.handle.renew(verified.exp);
        // Queued, so it follows the answer: a short-lived new token is told at once.
        expiry::check(shard, &self.handle, now_secs());
        protocol::refreshed(verified.exp)
    }

    /// Sends the close frame, hangs up our side, and waits (bounded) for the
    /// peer to hang up too, so our close frame is not lost to a reset.
    /// The whole of it is bounded by [`CLOSE_LINGER`]: a client that does not
    /// read (a slow one) cannot hold the session open with a stalled write.
    async fn close(&mut self, reason: CloseReason) {
        let text = self.handle.take_close_text().map(|t| Utf8Bytes::from(t.to_string()));
        let frame = CloseFrame {
            code: reason.code(),
            reason: text.unwrap_or(Utf8Bytes::from_static(reason.as_str())),
        };
        let ws = &mut self.ws;
        let _ = glommio::timer::timeout(CLOSE_LINGER, async {
            if ws.close(Some(frame)).await.is_err() {
                return Ok(());
            }
            let stream = ws.get_mut();
            if stream.close().await.is_err() {
                return Ok(());
            }
            let mut sink = [0u8; 256];
            while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            Ok(())
        })
        .await;
    }
}

/// TCP_CORK on or off: while on, the kernel holds partial segments, so
/// consecutive small writes share a segment (one trip through the network
/// stack, one wake-up of the peer) when it is turned off or the socket closes.
fn cork(stream: &TcpStream, on: bool) {
    // SAFETY: the descriptor belongs to `stream`, which outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    // Only an optimisation: a socket that refuses it works as before.
    let _ = SockRef::from(&fd).set_tcp_cork(on);
}

/// Errors from the client that end the session with a close frame.
fn close_reason(error: &WsError) -> Option<CloseReason> {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => Some(CloseReason::TooBig),
        WsError::Utf8(_) => Some(CloseReason::InvalidUtf8),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(CloseReason::Protocol),
        _ => None,
    }
}
