//! A WebSocket client with a hand-made handshake and hand-parsed frames, for
//! tests that need a peer which never answers pings, never writes, or writes
//! without ever reading, or which writes frames of its own making, well
//! formed or not ([`client_frame`]).

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::{connect_tcp, read_line, DEFAULT_DEADLINE, POLL_READ};

/// A WebSocket client that does the handshake by hand and then reads frames
/// and writes only the bytes it is given: it never answers pings.
pub struct RawWs {
    reader: BufReader<TcpStream>,
}

/// A frame as the server sent it.
#[derive(Debug)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub enum RawRead {
    Frame(RawFrame),
    Eof,
    Timeout,
}

impl RawWs {
    pub fn connect(port: u16, token: &str) -> RawWs {
        let s = connect_tcp(port).expect("raw connect");
        let req = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        let mut reader = BufReader::new(s);
        reader.get_mut().write_all(req.as_bytes()).expect("write handshake");
        let status = read_line(&mut reader).expect("handshake status line");
        assert!(status.starts_with("HTTP/1.1 101"), "raw handshake answered {status:?}");
        let mut accept = None;
        loop {
            let line = read_line(&mut reader).expect("handshake header");
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("sec-websocket-accept") {
                    accept = Some(v.trim().to_string());
                }
            }
        }
        // RFC 6455's example key and accept value.
        assert_eq!(accept.as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "Sec-WebSocket-Accept");
        reader.get_ref().set_read_timeout(Some(POLL_READ)).expect("set read timeout");
        RawWs { reader }
    }

    /// Read one frame, waiting at most until `deadline`.
    pub fn read_frame(&mut self, deadline: Instant) -> RawRead {
        // Wait for the first byte, polling so the deadline is honoured.
        let mut b0 = [0u8; 1];
        loop {
            match self.reader.read(&mut b0) {
                Ok(0) => return RawRead::Eof,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    if Instant::now() >= deadline {
                        return RawRead::Timeout;
                    }
                }
                Err(_) => return RawRead::Eof,
            }
        }
        // The rest of a frame follows quickly; allow a generous bound.
        self.reader.get_ref().set_read_timeout(Some(DEFAULT_DEADLINE)).expect("set read timeout");
        let rest = (|| -> std::io::Result<RawFrame> {
            let mut b1 = [0u8; 1];
            self.reader.read_exact(&mut b1)?;
            let masked = b1[0] & 0x80 != 0;
            let mut len = (b1[0] & 0x7f) as u64;
            if len == 126 {
                let mut l = [0u8; 2];
                self.reader.read_exact(&mut l)?;
                len = u16::from_be_bytes(l) as u64;
            } else if len == 127 {
                let mut l = [0u8; 8];
                self.reader.read_exact(&mut l)?;
                len = u64::from_be_bytes(l);
            }
            let mut mask = [0u8; 4];
            if masked {
                self.reader.read_exact(&mut mask)?;
            }
            let mut payload = vec![0u8; len as usize];
            self.reader.read_exact(&mut payload)?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            Ok(RawFrame { fin: b0[0] & 0x80 != 0, opcode: b0[0] & 0x0f, payload })
        })();
        let _ = self.reader.get_ref().set_read_timeout(Some(POLL_READ));
        match rest {
            Ok(f) => RawRead::Frame(f),
            Err(_) => RawRead::Eof,
        }
    }

    /// Writes bytes as they are: frames from [`client_frame`], or anything.
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Writes one whole frame, masked as a client's must be; an error when
    /// the socket does not take it within `timeout` (a server that stopped
    /// reading) or is gone.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8], timeout: Duration) -> std::io::Result<()> {
        self.reader.get_mut().set_write_timeout(Some(timeout))?;
        self.write_raw(&client_frame(true, 0, opcode, payload, true))
    }

    pub fn shutdown(&self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Both);
    }
}

/// The mask key of the frames this client writes (RFC 6455's example).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame as a client writes it, with every field ours to choose:
/// `rsv` is the three reserved bits (0 in a valid frame), `masked` false
/// breaks the rule that clients mask.
pub fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut frame = vec![(u8::from(fin) << 7) | ((rsv & 0b111) << 4) | (opcode & 0x0f)];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => frame.push(mask_bit | len as u8),
        len @ 126..=0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}
