//! Why a session ends, and the close code each reason sends (README, Client protocol).

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// `WS_READ_TIMEOUT` passed without a frame: 1000.
    ReadTimeout,
    /// Shutdown: 1001.
    GoingAway,
    /// A protocol violation by the client: 1002.
    Protocol,
    /// A text frame that is not UTF-8: 1007.
    InvalidUtf8,
    /// The send queue passed `SEND_QUEUE_BYTES`: 1008.
    SlowClient,
    /// Went on flooding after `rate_limited`: 1008.
    Flooding,
    /// An inbound message over `MAX_MESSAGE_SIZE`: 1009.
    TooBig,
    /// The token's `exp` passed without a refresh (README, Tokens during a session): 4001.
    TokenExpired,
    /// The session's task panicked: 1011.
    InternalError,
    /// The disconnect API (README, Presence and control): 4003, with the caller's reason.
    Disconnected,
}

impl CloseReason {
    pub fn code(self) -> CloseCode {
        match self {
            CloseReason::ReadTimeout => CloseCode::Normal,
            CloseReason::GoingAway => CloseCode::Away,
            CloseReason::Protocol => CloseCode::Protocol,
            CloseReason::InvalidUtf8 => CloseCode::Invalid,
            CloseReason::SlowClient | CloseReason::Flooding => CloseCode::Policy,
            CloseReason::TooBig => CloseCode::Size,
            CloseReason::TokenExpired => CloseCode::Library(4001),
            CloseReason::InternalError => CloseCode::Error,
            CloseReason::Disconnected => CloseCode::from(4003),
        }
    }

    /// The close frame's reason text, also the log field.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ReadTimeout => "read timeout",
            CloseReason::GoingAway => "server shutting down",
            CloseReason::Protocol => "protocol error",
            CloseReason::InvalidUtf8 => "invalid UTF-8",
            CloseReason::SlowClient => "slow client",
            CloseReason::Flooding => "flooding",
            CloseReason::TooBig => "message too big",
            CloseReason::TokenExpired => "token expired",
            CloseReason::InternalError => "internal error",
            CloseReason::Disconnected => crate::presence::DEFAULT_REASON,
        }
    }
}
