//! A small HTTP/1.1 client over std `TcpStream`: one-shot requests with
//! `Connection: close`, keep-alive connections, and a response reader that
//! lets tests see exactly what went over the wire.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::DEFAULT_DEADLINE;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Asserts the body is `{"error": "<non-empty string>"}` and returns the message.
    pub fn error_message(&self) -> String {
        let v = self.json();
        let msg =
            v["error"].as_str().unwrap_or_else(|| panic!("no string \"error\" in body {:?}", self.body));
        assert!(!msg.is_empty(), "empty error message in {:?}", self.body);
        msg.to_string()
    }
}

pub(super) fn connect_tcp(port: u16) -> std::io::Result<TcpStream> {
    let s =
        TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(DEFAULT_DEADLINE))?;
    s.set_write_timeout(Some(DEFAULT_DEADLINE))?;
    s.set_nodelay(true)?;
    Ok(s)
}

pub fn build_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    close: bool,
) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    if let Some(b) = body {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    } else if method == "POST" || method == "PUT" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    req
}

/// One HTTP request with `Connection: close`.
pub fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let mut s = connect_tcp(port)?;
    s.write_all(build_request(port, method, path, headers, body, true).as_bytes())?;
    let mut r = BufReader::new(s);
    read_response(&mut r, method == "HEAD")
}

/// Writes `request` as it is (any HTTP version, any headers) and reads one
/// response.
pub fn raw_http(port: u16, request: &str) -> std::io::Result<HttpResponse> {
    let mut s = connect_tcp(port)?;
    s.write_all(request.as_bytes())?;
    read_response(&mut BufReader::new(s), false)
}

pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    try_http(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("HTTP {method} {path} on port {port} failed: {e}"))
}

/// A persistent HTTP/1.1 connection (keep-alive).
pub struct HttpConn {
    port: u16,
    reader: BufReader<TcpStream>,
}

impl HttpConn {
    pub fn open(port: u16) -> HttpConn {
        let s = connect_tcp(port).expect("connect for keep-alive");
        HttpConn { port, reader: BufReader::new(s) }
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("HTTP {method} {path} on a kept-alive connection failed: {e}"))
    }

    /// The socket, for a test that goes on by hand (a WebSocket upgrade)
    /// once every response has been read.
    pub fn into_stream(self) -> TcpStream {
        assert!(self.reader.buffer().is_empty(), "bytes left unread on the kept-alive connection");
        self.reader.into_inner()
    }

    /// [`HttpConn::request`], with the server free to have closed the connection.
    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> std::io::Result<HttpResponse> {
        let req = build_request(self.port, method, path, headers, body, false);
        self.reader.get_mut().write_all(req.as_bytes())?;
        read_response(&mut self.reader, method == "HEAD")
    }
}

pub(super) fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "connection closed before the response"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Read exactly one response (Content-Length, chunked, or until EOF).
pub fn read_response(r: &mut impl BufRead, head: bool) -> std::io::Result<HttpResponse> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        // no body
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let size_line = read_line(r)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // trailers
                loop {
                    if read_line(r)?.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            read_line(r)?;
        }
    } else if let Some(len) = get("content-length") {
        let len: usize =
            len.parse().map_err(|_| std::io::Error::other(format!("bad content-length {len:?}")))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}
