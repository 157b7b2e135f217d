//! Command line. Every scenario is bounded: a connection count, a duration,
//! and where it applies an event or handshake count, all with hard caps.

use clap::{Args, Parser, Subcommand};

/// Hard caps, whatever the flags say.
pub const MAX_CONNS: usize = 1_000_000;
pub const MAX_DURATION_S: f64 = 3600.0;
pub const MAX_CONCURRENCY: usize = 10_000;
pub const MAX_WINDOW: usize = 1024;
pub const MAX_THREADS: usize = 64;
/// Sockets one process may hold (open-files limit 20000, less pipes and spare).
pub const PROCESS_SOCKETS: usize = 18_000;
/// Events one `recover` run may publish (rooms × missed).
pub const MAX_RECOVER_EVENTS: u64 = 10_000_000;
/// Messages a second one client may send before the server refuses them
/// (its flood control, README's Client protocol section).
pub const CLIENT_MESSAGES_PER_S: f64 = 100.0;

#[derive(Parser)]
#[command(
    name = "realtime-bench",
    version,
    about = "Load generator for the realtime server: loopback only, bounded in count and time. \
             Prints one JSON line on stdout and a short summary on stderr."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Args, Clone)]
pub struct Common {
    /// Server address (loopback only): ws://127.0.0.1:8080, host:port, or ws://[::1]:8080
    #[arg(long, global = true, default_value = "ws://127.0.0.1:8080")]
    pub url: String,
    /// JWT_SECRET of the server, to mint HS256 client tokens
    #[arg(long, global = true, env = "JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Server pid: RSS from /proc/PID/status, CPU from /proc/PID/stat; a
    /// deployment of several processes on one port: every pid (comma list or
    /// the flag repeated), summed
    #[arg(long, global = true, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Connections (idle, fanout, send, ping)
    #[arg(long, global = true, default_value_t = 1000)]
    pub conns: usize,
    /// Seconds the measured phase lasts
    #[arg(long, global = true, default_value_t = 10.0)]
    pub duration: f64,
    /// Role claim of the client tokens
    #[arg(long, global = true, default_value = "seller")]
    pub role: String,
    /// Room to subscribe to and broadcast into
    #[arg(long, global = true, default_value = "orders")]
    pub room: String,
    /// Executor threads holding connections (per process)
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    /// Connection attempts in flight at once while connecting
    #[arg(long, global = true, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Seconds one connection attempt may take
    #[arg(long, global = true, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Connections per process; above it, child processes share them
    #[arg(long, global = true, default_value_t = PROCESS_SOCKETS)]
    pub per_process: usize,
    /// API key for the publish API, when the server sets API_KEY
    #[arg(long, global = true, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Create this file once every connection is open, as the measured
    /// phase begins (idle: the hold; fanout: just before the first
    /// publish), for a script that measures or acts on the servers meanwhile
    #[arg(long, global = true, value_name = "PATH")]
    pub ready_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum Scenario {
    /// N authenticated connections held idle: server RSS and CPU per connection
    Idle {
        /// Do not subscribe the connections to --room
        #[arg(long)]
        no_subscribe: bool,
    },
    /// connect → upgrade → `connected` → close, in a loop: handshakes/s, CPU per handshake
    Storm {
        /// Parallel connect loops
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Stop after this many handshake attempts
        #[arg(long)]
        count: Option<u64>,
        /// Sign the tokens with this PEM private key instead of --secret
        /// (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA), for a server
        /// started with the public key (JWT_PUBLIC_KEY)
        #[arg(long)]
        private_key: Option<std::path::PathBuf>,
        /// Subscribe to --room (and wait for `subscribed`) before closing
        #[arg(long)]
        subscribe: bool,
    },
    /// N subscribers in --room, broadcasts over HTTP: deliveries/s, loss, latency, CPU
    Fanout {
        #[command(flatten)]
        publish: Publish,
        /// Do not subscribe (use with --room all)
        #[arg(long)]
        no_subscribe: bool,
        /// Closed loop: at most W events published and not yet received by
        /// every subscriber (counted at the subscribers); an event not
        /// everywhere within --drain seconds gives its place up
        #[arg(long, value_name = "W")]
        closed_window: Option<usize>,
        /// Keep-alive publisher connections with --closed-window
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// A connection the server closes reconnects (with retries) and
        /// subscribes again with `since` its last event's offset and epoch,
        /// as a real client does; loss and duplicates are then counted
        /// across the reconnects, and the recovered events apart
        #[arg(long)]
        reconnect: bool,
    },
    /// N connections with distinct users, targeted sends to random ones
    Send {
        #[command(flatten)]
        publish: Publish,
    },
    /// N connections held open, K of them sending the protocol's `ping`:
    /// pongs, round trips, server CPU per ping
    Ping {
        /// Connections that send pings; the others stay idle
        #[arg(long, default_value_t = 10)]
        busy: usize,
        /// Pings per second over all busy connections, spread evenly, sent
        /// on schedule whatever the answers (open loop)
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Seconds to wait after the last ping for pongs; a ping unanswered by then is lost
        #[arg(long, default_value_t = 2.0)]
        drain: f64,
    },
    /// N clients in --rooms rooms disconnect, --missed events per room are
    /// published while they are away, and all reconnect at once and
    /// subscribe with `since`: time until every client has recovered, gaps
    /// and duplicates by offset, server CPU for the storm (and, with --pid,
    /// RSS and history bytes before and after publishing)
    Recover {
        /// Rooms `ROOM:0` … `ROOM:(R-1)` (ROOM is --room); client i is in
        /// room i % R, and rooms past --conns get events but no client
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Events published into each room while the clients are away (at
        /// most the server's HISTORY_SIZE for all of them to be recovered)
        #[arg(long, default_value_t = 20)]
        missed: u64,
        /// Characters of padding in each event's payload, for events of a realistic size
        #[arg(long, default_value_t = 0)]
        pad: usize,
        /// Publish requests in flight at most while the clients are away
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Seconds one client may take to reconnect and recover (or to join)
        #[arg(long, default_value_t = 60.0)]
        client_limit: f64,
    },
    /// (internal) a child process holding a share of the connections
    #[command(hide = true)]
    Worker,
}

#[derive(Args, Clone)]
pub struct Publish {
    /// Events per second; 0 = as fast as the window allows [default: 20; 0 with --closed-window]
    #[arg(long)]
    pub rate: Option<f64>,
    /// Publish requests in flight at most (keep-alive connections); open loop only
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Stop after this many events
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds to wait after the last publish for deliveries still in flight
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
}
