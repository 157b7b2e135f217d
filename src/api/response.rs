//! What every HTTP answer is made of: a full body, JSON, and
//! `{"error": ...}` for failures; and the refusals written without hyper.

use std::time::Duration;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body_util::Full;

pub type Body = Full<Bytes>;

/// A JSON response.
pub fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }))
}

/// How long a refusal may take to leave before the connection is dropped
/// anyway: a client that does not read gets no answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers `{"error": message}` with `status` on a connection outside hyper
/// (one hyper has given up, or never got) and closes it.
pub async fn refuse(mut stream: TcpStream, status: StatusCode, message: &str) {
    let body = serde_json::json!({ "error": message }).to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = glommio::timer::timeout(REFUSAL_TIMEOUT, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.close().await?;
        Ok(())
    })
    .await;
}
