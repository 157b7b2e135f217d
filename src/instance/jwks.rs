//! The JSON Web Key Set of `JWKS_URL` (README, Tokens during a session): fetched once before the
//! shards start, then on a thread of its own (the blocking HTTP client never
//! runs on an executor) every `JWKS_REFRESH` and when a shard meets an
//! unknown `kid`, at most once every [`MIN_GAP`]. A new set is handed to
//! every shard through its inbox, so each verifies against its own copy
//! with no lock; a failed fetch is logged and counted and the last good set
//! stays.

use std::io;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use thiserror::Error;
use tracing::{info, warn};
use ureq::tls::{PemItem, RootCerts, TlsConfig};

use crate::auth::keys::{KeyError, KeySet};
use crate::bus::local::Mailboxes;
use crate::metrics::Metrics;

/// Unknown `kid`s ask for a fetch at most this often, and a failed fetch is
/// tried again after this long (or `JWKS_REFRESH`, if shorter).
pub const MIN_GAP: Duration = Duration::from_secs(10);
/// A whole fetch (connect, TLS, answer) takes at most this long, so start-up
/// never waits longer for the first one.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A key set is a few KiB; a bigger answer is not one.
const MAX_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("cannot fetch the JWKS: {0}")]
    Http(#[from] ureq::Error),
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Never followed: the key set is the root of trust, and a redirect
    /// would let whoever answers the old URL choose where it comes from.
    #[error("the JWKS_URL answered {0}, a redirect, which is not followed: set JWKS_URL to the final URL")]
    Redirect(u16),
    #[error("SSL_CERT_FILE: {0}")]
    CaBundle(String),
}

/// How a shard asks for a fresh key set; never blocks.
pub struct Refetch {
    tx: Sender<()>,
}

/// The fetcher's side of [`Refetch`].
pub struct Requests {
    rx: Receiver<()>,
}

/// A way to ask for refetches, and the fetcher's end of it.
pub fn channel() -> (Refetch, Requests) {
    // One waiting request is as good as many.
    let (tx, rx) = crossbeam_channel::bounded(1);
    (Refetch { tx }, Requests { rx })
}

impl Refetch {
    pub fn ask(&self) {
        let _ = self.tx.try_send(());
    }
}

/// One fetch of the key set: bounded in time and size.
pub fn fetch(url: &str) -> Result<(KeySet, String), FetchError> {
    let tls = TlsConfig::builder().root_certs(root_certs()?).build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .max_redirects(0)
        .tls_config(tls)
        .build()
        .into();
    let mut response = agent.get(url).call()?;
    if response.status().is_redirection() {
        return Err(FetchError::Redirect(response.status().as_u16()));
    }
    let body = response.body_mut().with_config().limit(MAX_BYTES).read_to_string()?;
    let keys = KeySet::from_jwks(&body)?;
    Ok((keys, body))
}

/// Whom `https` trusts: the webpki roots (Mozilla's), or, as with OpenSSL,
/// the PEM bundle `SSL_CERT_FILE` names instead (an identity provider behind
/// a private CA).
fn root_certs() -> Result<RootCerts, FetchError> {
    let Some(path) = std::env::var_os(crate::cli::var::SSL_CERT_FILE).map(std::path::PathBuf::from) else {
        return Ok(RootCerts::WebPki);
    };
    let bundle =
        std::fs::read(&path).map_err(|e| FetchError::CaBundle(format!("{}: {e}", path.display())))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&bundle)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(FetchError::CaBundle(format!("{}: no PEM certificate", path.display())));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// The key set to start with: the first fetch's, or an empty one (logged
/// and counted by the caller) when it fails.
pub struct FirstFetch {
    pub keys: KeySet,
    body: Option<String>,
}

/// The first fetch, before the shards start; bounded by [`FETCH_TIMEOUT`].
pub fn first_fetch(url: &str) -> FirstFetch {
    match fetch(url) {
        Ok((keys, body)) => {
            info!(keys = keys.len(), "JWKS fetched");
            FirstFetch { keys, body: Some(body) }
        }
        Err(e) => {
            warn!(error = %e, "JWKS fetch failed at start-up; starting without its keys, will retry");
            FirstFetch { keys: KeySet::default(), body: None }
        }
    }
}

/// What keeps every shard's key set fresh, on a thread of its own.
pub struct Fetcher {
    pub url: String,
    /// `JWKS_REFRESH`.
    pub refresh: Duration,
    /// Where new sets go: every shard's inbox.
    pub mailboxes: &'static Mailboxes,
    pub metrics: &'static Metrics,
}

impl Fetcher {
    /// Starts the thread, after the first fetch (counted here).
    pub fn spawn(self, first: FirstFetch, requests: Requests) -> io::Result<()> {
        self.metrics.jwks_fetched(first.body.is_some());
        let mut state = State { fetcher: self, requests, last_body: first.body };
        std::thread::Builder::new().name("jwks".into()).spawn(move || state.run()).map(drop)
    }
}

struct State {
    fetcher: Fetcher,
    requests: Requests,
    /// The document the shards' sets came from: an unchanged one is not
    /// handed out again.
    last_body: Option<String>,
}

impl State {
    fn run(&mut self) {
        let refresh = self.fetcher.refresh;
        let retry = refresh.min(MIN_GAP);
        let mut last = Instant::now();
        let mut next = last + if self.last_body.is_some() { refresh } else { retry };
        let mut asked = false;
        loop {
            let due = if asked { next.min(last + MIN_GAP) } else { next };
            match self.requests.rx.recv_deadline(due) {
                Ok(()) => {
                    asked = true;
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The instance lives as long as the process: never.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            asked = false;
            last = Instant::now();
            next = last + if self.fetch_once() { refresh } else { retry };
        }
    }

    /// Fetches, and hands a changed set to the shards; `false` on failure.
    fn fetch_once(&mut self) -> bool {
        let Fetcher { url, mailboxes, metrics, .. } = &self.fetcher;
        match fetch(url) {
            Ok((keys, body)) => {
                metrics.jwks_fetched(true);
                if self.last_body.as_deref() != Some(body.as_str()) {
                    info!(keys = keys.len(), "JWKS changed; handing it to the shards");
                    mailboxes.hand_keys(&keys);
                    self.last_body = Some(body);
                }
                true
            }
            Err(e) => {
                metrics.jwks_fetched(false);
                warn!(error = %e, "JWKS fetch failed; keeping the last good key set");
                false
            }
        }
    }
}
