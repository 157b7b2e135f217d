//! Asymmetric keys made for a test with `openssl` (RSA 2048, EC P-256,
//! Ed25519): PEM files in a temp dir, tokens signed with them, their JWK
//! form; and a JWKS served over HTTP by a small server the test starts and
//! whose document it can change (key rotation).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{json, Value};

use super::{close, next_json, now_secs, ws_connect, ws_reject, Server, TempDir, DEFAULT_DEADLINE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    Ed25519,
}

impl KeyKind {
    pub const ALL: [KeyKind; 3] = [KeyKind::Rsa, KeyKind::P256, KeyKind::Ed25519];

    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::P256 => Algorithm::ES256,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }

    fn genpkey_args(self) -> &'static [&'static str] {
        match self {
            KeyKind::Rsa => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            KeyKind::P256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyKind::Ed25519 => &["-algorithm", "ED25519"],
        }
    }
}

/// A fresh key pair, its PEM files kept while it lives.
pub struct KeyPair {
    pub kind: KeyKind,
    pub private_pem: PathBuf,
    pub public_pem: PathBuf,
    encoding: EncodingKey,
    _dir: TempDir,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for the key tests (apt-get install openssl): {e}"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl KeyPair {
    pub fn generate(kind: KeyKind) -> KeyPair {
        let dir = TempDir::new();
        let private_pem = dir.path().join("private.pem");
        let public_pem = dir.path().join("public.pem");
        let private = private_pem.to_str().expect("utf-8 temp path");
        let public = public_pem.to_str().expect("utf-8 temp path");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(kind.genpkey_args());
        args.extend_from_slice(&["-out", private]);
        openssl(&args);
        openssl(&["pkey", "-in", private, "-pubout", "-out", public]);
        let pem = std::fs::read(&private_pem).expect("read private key");
        let encoding = match kind {
            KeyKind::Rsa => EncodingKey::from_rsa_pem(&pem),
            KeyKind::P256 => EncodingKey::from_ec_pem(&pem),
            KeyKind::Ed25519 => EncodingKey::from_ed_pem(&pem),
        }
        .expect("openssl's private key");
        KeyPair { kind, private_pem, public_pem, encoding, _dir: dir }
    }

    pub fn public_pem_text(&self) -> String {
        std::fs::read_to_string(&self.public_pem).expect("read public key")
    }

    /// A token with `claims`, signed with this key, `kid` in its header.
    pub fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(self.kind.algorithm());
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// A token for `user_id` + `role`, valid for an hour.
    pub fn token(&self, user_id: &str, role: &str, kid: Option<&str>) -> String {
        self.sign(&json!({"userId": user_id, "role": role, "exp": now_secs() + 3600}), kid)
    }

    /// The public key as a JWK with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk = match self.kind {
            KeyKind::Ed25519 => {
                let public = DecodingKey::from_ed_pem(self.public_pem_text().as_bytes()).expect("public key");
                json!({"kty": "OKP", "crv": "Ed25519", "x": super::b64url(public.as_bytes())})
            }
            _ => serde_json::to_value(
                Jwk::from_encoding_key(&self.encoding, self.kind.algorithm()).expect("jwk of the key"),
            )
            .expect("jwk as JSON"),
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk
    }
}

/// `{"keys": [...]}` of these keys by kid.
pub fn jwks(keys: &[(&str, &KeyPair)]) -> String {
    json!({"keys": keys.iter().map(|(kid, key)| key.jwk(kid)).collect::<Vec<_>>()}).to_string()
}

/// What a [`JwksServer`] answers.
#[derive(Clone)]
enum Reply {
    Document(String),
    Failure,
    /// A 302 to this location.
    Redirect(String),
}

/// Serves one document at every path over HTTP/1.1 (one request per
/// connection), until dropped. The document may change, and the server may
/// be made to fail (500) or to redirect.
pub struct JwksServer {
    pub port: u16,
    reply: Arc<Mutex<Reply>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JwksServer {
    pub fn start(body: &str) -> JwksServer {
        JwksServer::start_on(0, body)
    }

    /// On a given port (0: any free one).
    pub fn start_on(port: u16, body: &str) -> JwksServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the JWKS server");
        let port = listener.local_addr().expect("local addr").port();
        let reply = Arc::new(Mutex::new(Reply::Document(body.to_owned())));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, r, s) = (reply.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    r.fetch_add(1, Ordering::SeqCst);
                    let current = b.lock().unwrap().clone();
                    answer(stream, current);
                }
            }
        });
        JwksServer { port, reply, requests, stop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/jwks.json", self.port)
    }

    /// Serve this document from now on (`None`: answer 500).
    pub fn set(&self, body: Option<&str>) {
        *self.reply.lock().unwrap() = body.map_or(Reply::Failure, |b| Reply::Document(b.to_owned()));
    }

    /// Answer a 302 to `location` from now on.
    pub fn redirect(&self, location: &str) {
        *self.reply.lock().unwrap() = Reply::Redirect(location.to_owned());
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn answer(stream: TcpStream, reply: Reply) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let response = match reply {
        Reply::Document(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        Reply::Failure => {
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
        }
        Reply::Redirect(location) => format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    };
    let _ = (&stream).write_all(response.as_bytes());
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A JWKS over https: `openssl s_server -WWW` serving `jwks.json` from a
/// temp dir, with a certificate for 127.0.0.1 signed by a CA made here
/// (`ca_pem`: what a client must trust). Killed on drop.
pub struct HttpsJwks {
    pub port: u16,
    pub ca_pem: PathBuf,
    child: std::process::Child,
    _dir: TempDir,
}

impl HttpsJwks {
    pub fn start(body: &str) -> HttpsJwks {
        let dir = TempDir::new();
        let at = |name: &str| dir.path().join(name).to_str().expect("utf-8 temp path").to_owned();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=realtime-test-ca"];
        ca.extend_from_slice(&ec);
        openssl(&[&ca[..], &["-keyout", &at("ca.key"), "-out", &at("ca.pem")]].concat());
        let mut leaf = vec!["req", "-subj", "/CN=127.0.0.1"];
        leaf.extend_from_slice(&ec);
        openssl(&[&leaf[..], &["-keyout", &at("leaf.key"), "-out", &at("leaf.csr")]].concat());
        dir.write("ext", "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
        openssl(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &at("leaf.csr"),
            "-CA",
            &at("ca.pem"),
            "-CAkey",
            &at("ca.key"),
            "-set_serial",
            "1",
            "-extfile",
            &at("ext"),
            "-out",
            &at("leaf.pem"),
        ]);
        dir.write("jwks.json", body);
        let port = super::free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", &at("leaf.pem"), "-key", &at("leaf.key")])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        super::poll(
            DEFAULT_DEADLINE,
            Duration::from_millis(20),
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
            |up| *up,
        )
        .expect("openssl s_server did not listen");
        HttpsJwks { port, ca_pem: dir.path().join("ca.pem"), child, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/jwks.json", self.port)
    }
}

impl Drop for HttpsJwks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Failures counted so far for one reason of `realtime_auth_failures_total`.
    pub fn auth_failures(&self, reason: &str) -> f64 {
        let key = format!("realtime_auth_failures_total{{reason=\"{reason}\"}}");
        self.metric_samples().get(&key).copied().unwrap_or_else(|| panic!("{key} missing from /metrics"))
    }

    /// Connects with `token` until the server accepts it (bounded), and
    /// returns `connected`; panics with the server's output when it never does.
    pub fn connect_eventually(&self, token: &str, within: Duration) -> Value {
        let accepted = super::poll(
            within,
            Duration::from_millis(250),
            || ws_connect(&self.ws_url(token)).ok(),
            Option::is_some,
        );
        let mut ws = accepted
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("token never accepted within {within:?}\n{}", self.output_dump()));
        let hello = next_json(&mut ws, DEFAULT_DEADLINE);
        close(ws);
        hello
    }

    /// The upgrade with `token` is refused with 401, counted under `reason`.
    pub fn expect_refused(&self, token: &str, reason: &str) {
        let before = self.auth_failures(reason);
        let (status, body) = ws_reject(&self.ws_url(token), &[]);
        assert_eq!(status, 401, "expected 401 ({reason}), body {body:?}");
        // Counted once the answer is written: wait for it.
        super::poll(
            DEFAULT_DEADLINE,
            Duration::from_millis(20),
            || self.auth_failures(reason),
            |n| *n > before,
        )
        .unwrap_or_else(|n| panic!("refusal not counted as {reason:?} ({n})\n{}", self.output_dump()));
    }
}
