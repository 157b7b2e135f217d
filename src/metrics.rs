//! The Prometheus metrics of README's Health and metrics section, registered at start-up so `/metrics`
//! shows every family from the first scrape, plus per-shard detail for
//! operators. Handles are atomics: each shard owns the writer of its own
//! series ([`ShardMetrics`], made once and moved to it) and adds to the
//! shared counters once per event, not once per recipient, so no registry
//! lock and little contention is on a hot path. Queue depths and the Redis
//! state are read when scraped, not maintained on the data path.

use std::collections::{BTreeMap, HashSet};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::auth::AuthError;

mod figures;
pub use figures::{Figures, ShardFigures};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// Where an event entered the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Redis,
}

/// Why an event (or one copy of it) was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A shard's inbox was full.
    InboxFull,
    /// An event from Redis that is not an envelope, or that nobody may receive.
    Invalid,
    /// An event from Redis larger than a client's send queue.
    TooLarge,
}

impl DropReason {
    const ALL: [DropReason; 3] = [DropReason::InboxFull, DropReason::Invalid, DropReason::TooLarge];

    fn label(self) -> &'static str {
        match self {
            DropReason::InboxFull => "inbox_full",
            DropReason::Invalid => "invalid",
            DropReason::TooLarge => "too_large",
        }
    }
}

/// A history script in Redis (README, History and recovery: with Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryScript {
    Publish,
    Fetch,
    CatchUp,
}

impl HistoryScript {
    const ALL: [HistoryScript; 3] = [HistoryScript::Publish, HistoryScript::Fetch, HistoryScript::CatchUp];

    fn label(self) -> &'static str {
        match self {
            HistoryScript::Publish => "publish",
            HistoryScript::Fetch => "fetch",
            HistoryScript::CatchUp => "catch_up",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScriptLabel {
    script: &'static str,
}

/// One shard's own series, made once and moved into its shard: only that
/// shard writes them. Not `Clone`.
pub struct ShardMetrics {
    /// `realtime_connections{shard}`.
    pub connections: Gauge,
    /// `realtime_shard_deliveries_total{shard}`.
    pub deliveries: Counter,
    /// `realtime_shard_inbox_events_total{shard}`: events this shard took
    /// from its inbox to deliver (posted by another shard).
    pub inbox_events: Counter,
    /// `realtime_redis_publish_seconds{shard}`: from an API publish to Redis's
    /// reply. The histogram's lock is only ever taken by its shard and the
    /// scrape, so it is uncontended.
    pub redis_publish: Histogram,
    /// `realtime_history_events{shard}` and `realtime_history_bytes{shard}`:
    /// what the in-memory history of the rooms this shard orders keeps.
    pub history_events: Gauge,
    pub history_bytes: Gauge,
}

/// What everyone else sees of a shard's series: what it writes, read only,
/// and the depths a scrape sets.
struct ShardView {
    connections: Gauge,
    deliveries: Counter,
    history_events: Gauge,
    history_bytes: Gauge,
    /// `realtime_shard_inbox_messages{shard}`: cross-shard messages waiting.
    inbox_messages: Gauge,
    /// `realtime_shard_send_queue_bytes{shard}`: frames queued to clients
    /// and not yet taken by their writers.
    send_queue_bytes: Gauge,
}

pub struct Metrics {
    registry: Registry,
    /// By shard index.
    shards: Vec<ShardView>,
    pub handshakes: Counter,
    auth_failures: Vec<(AuthError, Counter)>,
    published_api: Counter,
    published_redis: Counter,
    pub deliveries: Counter,
    dropped: Vec<(DropReason, Counter)>,
    pub slow_client_closes: Counter,
    pub rate_limited: Counter,
    /// Publishes that waited for the shards' send queues to drain.
    pub publishes_held: Counter,
    redis_connected: Gauge,
    pub redis_reconnects: Counter,
    pub uptime_seconds: Gauge,
    /// `realtime_jwks_fetches_total{result}`: JWKS fetches that brought a
    /// usable key set (`ok`) or did not (`failed`; the last good set stays).
    jwks_fetches_ok: Counter,
    jwks_fetches_failed: Counter,
    /// Connection tasks that panicked; each closed its own connection only.
    pub task_panics: Counter,
    /// `realtime_memory_trims_total`: freed memory handed back to the system.
    pub memory_trims: Counter,
    /// `realtime_recoveries_total{recovered}`: subscribes with `since`.
    recovered: Counter,
    not_recovered: Counter,
    /// Presence queries and control messages (README, Presence and control).
    pub presence: PresenceMetrics,
    /// `realtime_redis_script_failures_total{script}`: history script calls
    /// that Redis refused or answered with something else.
    script_failures: Vec<(HistoryScript, Counter)>,
    /// `realtime_redis_catch_ups_total{result}`: a channel of a shard's
    /// subscriber that came back and handed on all it missed (`complete`) or
    /// told its rooms to resync (`resync`).
    catch_ups_complete: Counter,
    catch_ups_resync: Counter,
}

/// What a presence query asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    Room,
    User,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveredLabel {
    recovered: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// The presence and control series.
pub struct PresenceMetrics {
    /// `realtime_presence_queries_total{kind}`: `room` or `user`.
    room_queries: Counter,
    user_queries: Counter,
    /// `realtime_presence_query_seconds`: from the question to the merged
    /// answer of every shard (and, with Redis, instance).
    pub query_seconds: Histogram,
    /// `realtime_presence_events_total{kind}`: `join` and `leave` published.
    joins: Counter,
    leaves: Counter,
    /// `realtime_control_messages_total{kind="disconnect"}`: disconnects
    /// this instance's API sent out.
    pub disconnects_sent: Counter,
    /// `realtime_disconnected_sessions_total`: sessions closed with 4003.
    pub disconnected_sessions: Counter,
}

impl PresenceMetrics {
    fn register(registry: &mut Registry) -> Self {
        let queries = Family::<KindLabel, Counter>::default();
        registry.register("realtime_presence_queries", "Presence queries by kind", queries.clone());
        // 10 µs to ~1.3 s.
        let query_seconds = Histogram::new(exponential_buckets(1e-5, 2.0, 18));
        registry.register(
            "realtime_presence_query_seconds",
            "Time to answer a presence query over every shard",
            query_seconds.clone(),
        );
        let events = Family::<KindLabel, Counter>::default();
        registry.register("realtime_presence_events", "join and leave events published", events.clone());
        let control = Family::<KindLabel, Counter>::default();
        registry.register("realtime_control_messages", "Control messages sent by kind", control.clone());
        let disconnected_sessions = Counter::default();
        registry.register(
            "realtime_disconnected_sessions",
            "Sessions closed with 4003 by the disconnect API",
            disconnected_sessions.clone(),
        );
        let kind =
            |family: &Family<KindLabel, Counter>, kind| family.get_or_create(&KindLabel { kind }).clone();
        Self {
            room_queries: kind(&queries, "room"),
            user_queries: kind(&queries, "user"),
            query_seconds,
            joins: kind(&events, "join"),
            leaves: kind(&events, "leave"),
            disconnects_sent: kind(&control, "disconnect"),
            disconnected_sessions,
        }
    }

    pub fn queried(&self, kind: PresenceKind) {
        match kind {
            PresenceKind::Room => self.room_queries.inc(),
            PresenceKind::User => self.user_queries.inc(),
        };
    }

    /// A `join` (`true`) or `leave` event was published.
    pub fn event(&self, joined: bool) {
        match joined {
            true => self.joins.inc(),
            false => self.leaves.inc(),
        };
    }
}

impl Metrics {
    /// The registry, and each shard's own series by shard index.
    pub fn new(shards: usize) -> (Self, Vec<ShardMetrics>) {
        let mut registry = Registry::default();

        let (shards, owned) = ShardFamilies::register(&mut registry).build(shards);

        let handshakes = Counter::default();
        registry.register("realtime_handshakes", "Completed WebSocket handshakes", handshakes.clone());

        let auth_family = Family::<ReasonLabel, Counter>::default();
        registry.register("realtime_auth_failures", "Refused tokens by reason", auth_family.clone());
        let auth_failures = AuthError::ALL
            .into_iter()
            .map(|e| (e, auth_family.get_or_create(&ReasonLabel { reason: e.reason() }).clone()))
            .collect();

        let published = Family::<SourceLabel, Counter>::default();
        registry.register("realtime_events_published", "Events accepted for delivery", published.clone());
        let published_api = published.get_or_create(&SourceLabel { source: "api" }).clone();
        let published_redis = published.get_or_create(&SourceLabel { source: "redis" }).clone();

        let deliveries = Counter::default();
        registry.register("realtime_deliveries", "Events queued to a client", deliveries.clone());

        let dropped_family = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "realtime_events_dropped",
            "Events not delivered by reason",
            dropped_family.clone(),
        );
        let dropped = DropReason::ALL
            .into_iter()
            .map(|r| (r, dropped_family.get_or_create(&ReasonLabel { reason: r.label() }).clone()))
            .collect();

        let slow_client_closes = Counter::default();
        registry.register(
            "realtime_slow_client_closes",
            "Clients closed because their send queue overflowed",
            slow_client_closes.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "realtime_rate_limited",
            "Client messages refused by flood control",
            rate_limited.clone(),
        );
        let publishes_held = Counter::default();
        registry.register(
            "realtime_publishes_held",
            "Publishes that waited for the shards' send queues to drain",
            publishes_held.clone(),
        );
        let redis_connected = Gauge::default();
        registry.register("realtime_redis_connected", "1 while Redis is connected", redis_connected.clone());
        let redis_reconnects = Counter::default();
        registry.register("realtime_redis_reconnects", "Redis reconnections", redis_reconnects.clone());
        let uptime_seconds = Gauge::default();
        registry.register("realtime_uptime_seconds", "Seconds since start", uptime_seconds.clone());
        let jwks_family = Family::<ResultLabel, Counter>::default();
        registry.register("realtime_jwks_fetches", "JWKS fetches by result", jwks_family.clone());
        let jwks_fetches_ok = jwks_family.get_or_create(&ResultLabel { result: "ok" }).clone();
        let jwks_fetches_failed = jwks_family.get_or_create(&ResultLabel { result: "failed" }).clone();
        let task_panics = Counter::default();
        registry.register(
            "realtime_task_panics",
            "Connection tasks that panicked (each closed its connection only)",
            task_panics.clone(),
        );
        let memory_trims = Counter::default();
        registry.register(
            "realtime_memory_trims",
            "Times a shard handed freed memory back to the system",
            memory_trims.clone(),
        );
        let presence = PresenceMetrics::register(&mut registry);
        let recoveries = Family::<RecoveredLabel, Counter>::default();
        registry.register(
            "realtime_recoveries",
            "Subscribes with since, by whether every missed event could be replayed",
            recoveries.clone(),
        );
        let recovered = recoveries.get_or_create(&RecoveredLabel { recovered: "true" }).clone();
        let not_recovered = recoveries.get_or_create(&RecoveredLabel { recovered: "false" }).clone();
        let scripts = Family::<ScriptLabel, Counter>::default();
        registry.register(
            "realtime_redis_script_failures",
            "History script calls that failed, by script",
            scripts.clone(),
        );
        let script_failures = HistoryScript::ALL
            .into_iter()
            .map(|s| (s, scripts.get_or_create(&ScriptLabel { script: s.label() }).clone()))
            .collect();
        let catch_ups = Family::<ResultLabel, Counter>::default();
        registry.register(
            "realtime_redis_catch_ups",
            "Channels caught up after a subscriber reconnected, by result",
            catch_ups.clone(),
        );
        let catch_ups_complete = catch_ups.get_or_create(&ResultLabel { result: "complete" }).clone();
        let catch_ups_resync = catch_ups.get_or_create(&ResultLabel { result: "resync" }).clone();

        let metrics = Self {
            registry,
            shards,
            handshakes,
            auth_failures,
            published_api,
            published_redis,
            deliveries,
            dropped,
            slow_client_closes,
            rate_limited,
            publishes_held,
            redis_connected,
            redis_reconnects,
            uptime_seconds,
            jwks_fetches_ok,
            jwks_fetches_failed,
            task_panics,
            memory_trims,
            recovered,
            not_recovered,
            presence,
            script_failures,
            catch_ups_complete,
            catch_ups_resync,
        };
        (metrics, owned)
    }

    /// A subscribe with `since` was answered.
    pub fn recovery(&self, recovered: bool) {
        match recovered {
            true => self.recovered.inc(),
            false => self.not_recovered.inc(),
        };
    }

    /// Connections open on one shard.
    pub fn connections_of(&self, shard: usize) -> i64 {
        self.shards[shard].connections.get()
    }

    pub fn connections_total(&self) -> i64 {
        self.shards.iter().map(|s| s.connections.get()).sum()
    }

    /// Records what is read rather than kept: each shard's queues, by shard
    /// index (messages in its inbox, bytes queued to its clients), and
    /// whether Redis is connected. Called just before a scrape is rendered.
    pub fn set_scraped(
        &self,
        inbox_messages: impl IntoIterator<Item = usize>,
        send_queue_bytes: impl IntoIterator<Item = usize>,
        redis_connected: bool,
    ) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        for ((series, messages), bytes) in self.shards.iter().zip(inbox_messages).zip(send_queue_bytes) {
            series.inbox_messages.set(gauge(messages));
            series.send_queue_bytes.set(gauge(bytes));
        }
        self.redis_connected.set(i64::from(redis_connected));
    }

    pub fn script_failed(&self, script: HistoryScript) {
        if let Some((_, counter)) = self.script_failures.iter().find(|(s, _)| *s == script) {
            counter.inc();
        }
    }

    /// A channel came back with all it missed (`true`) or needing a resync.
    pub fn caught_up(&self, complete: bool) {
        match complete {
            true => self.catch_ups_complete.inc(),
            false => self.catch_ups_resync.inc(),
        };
    }

    pub fn auth_failed(&self, error: AuthError) {
        if let Some((_, counter)) = self.auth_failures.iter().find(|(e, _)| *e == error) {
            counter.inc();
        }
    }

    /// A JWKS fetch brought a usable key set (`true`) or failed.
    pub fn jwks_fetched(&self, ok: bool) {
        match ok {
            true => self.jwks_fetches_ok.inc(),
            false => self.jwks_fetches_failed.inc(),
        };
    }

    pub fn published(&self, source: Source) {
        match source {
            Source::Api => self.published_api.inc(),
            Source::Redis => self.published_redis.inc(),
        };
    }

    pub fn dropped(&self, reason: DropReason) {
        if let Some((_, counter)) = self.dropped.iter().find(|(r, _)| *r == reason) {
            counter.inc();
        }
    }

    /// The text exposition (OpenMetrics, which Prometheus scrapes).
    pub fn render(&self, format: Exposition) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        match format {
            Exposition::OpenMetrics => out,
            Exposition::Text => to_text_format(&out),
        }
    }
}

impl Metrics {
    /// Reads every series of [`Figures`]. Queue depths are what the last
    /// [`Metrics::set_scraped`] recorded: call it first.
    pub fn figures(&self) -> Figures {
        let shards = self
            .shards
            .iter()
            .enumerate()
            .map(|(shard, view)| ShardFigures {
                shard,
                connections: view.connections.get(),
                deliveries: view.deliveries.get(),
                inbox_messages: view.inbox_messages.get(),
                send_queue_bytes: view.send_queue_bytes.get(),
                history_events: view.history_events.get(),
                history_bytes: view.history_bytes.get(),
            })
            .collect();
        Figures {
            shards,
            handshakes: self.handshakes.get(),
            published: BTreeMap::from([
                ("api", self.published_api.get()),
                ("redis", self.published_redis.get()),
            ]),
            deliveries: self.deliveries.get(),
            auth_failures: self.auth_failures.iter().map(|(e, c)| (e.reason(), c.get())).collect(),
            dropped: self.dropped.iter().map(|(r, c)| (r.label(), c.get())).collect(),
            slow_client_closes: self.slow_client_closes.get(),
            rate_limited: self.rate_limited.get(),
            publishes_held: self.publishes_held.get(),
            redis_reconnects: self.redis_reconnects.get(),
            disconnected_sessions: self.presence.disconnected_sessions.get(),
        }
    }
}

/// The two formats a scraper may ask for: OpenMetrics 1.0, or the
/// Prometheus text format 0.0.4 that older scrapers and most tools read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    OpenMetrics,
    Text,
}

impl Exposition {
    /// As the Prometheus client libraries negotiate: OpenMetrics when the
    /// `Accept` header names it, the text format otherwise.
    pub fn for_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.to_ascii_lowercase().contains("application/openmetrics-text") => {
                Exposition::OpenMetrics
            }
            _ => Exposition::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The text format 0.0.4 from an OpenMetrics exposition: a counter family
/// is named with its `_total` suffix, and there is no `# UNIT` or `# EOF`.
fn to_text_format(open_metrics: &str) -> String {
    let counters: HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let family_line = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match family_line {
            Some(renamed) => out.push_str(&renamed),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The labelled families behind [`ShardMetrics`].
struct ShardFamilies {
    connections: Family<ShardLabel, Gauge>,
    deliveries: Family<ShardLabel, Counter>,
    inbox_events: Family<ShardLabel, Counter>,
    inbox_messages: Family<ShardLabel, Gauge>,
    send_queue_bytes: Family<ShardLabel, Gauge>,
    redis_publish: Family<ShardLabel, Histogram, fn() -> Histogram>,
    history_events: Family<ShardLabel, Gauge>,
    history_bytes: Family<ShardLabel, Gauge>,
}

impl ShardFamilies {
    fn register(registry: &mut Registry) -> Self {
        let families = Self {
            connections: Family::default(),
            deliveries: Family::default(),
            inbox_events: Family::default(),
            inbox_messages: Family::default(),
            send_queue_bytes: Family::default(),
            // 100 µs to ~1.6 s: a loopback Redis answers in well under a
            // millisecond; the top buckets show a struggling one.
            redis_publish: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e-4, 2.0, 15))
            }),
            history_events: Family::default(),
            history_bytes: Family::default(),
        };
        registry.register("realtime_connections", "Open WebSocket connections", families.connections.clone());
        registry.register(
            "realtime_shard_deliveries",
            "Events queued to a client, by shard",
            families.deliveries.clone(),
        );
        registry.register(
            "realtime_shard_inbox_events",
            "Events a shard took from its inbox to deliver, posted by another shard",
            families.inbox_events.clone(),
        );
        registry.register(
            "realtime_redis_publish_seconds",
            "Time from an API publish to Redis's reply",
            families.redis_publish.clone(),
        );
        let gauges = [
            (
                "realtime_shard_inbox_messages",
                "Cross-shard messages waiting in a shard's inbox",
                &families.inbox_messages,
            ),
            (
                "realtime_shard_send_queue_bytes",
                "Bytes queued to a shard's clients and not yet written",
                &families.send_queue_bytes,
            ),
            (
                "realtime_history_events",
                "Events kept in memory for recovery, by the shard that orders their rooms",
                &families.history_events,
            ),
            (
                "realtime_history_bytes",
                "Bytes of events kept in memory for recovery, by shard",
                &families.history_bytes,
            ),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
        families
    }

    /// Each shard's view and its own writer, by shard index.
    fn build(&self, shards: usize) -> (Vec<ShardView>, Vec<ShardMetrics>) {
        (0..shards)
            .map(|i| {
                let label = ShardLabel { shard: i.to_string() };
                let owned = ShardMetrics {
                    connections: self.connections.get_or_create(&label).clone(),
                    deliveries: self.deliveries.get_or_create(&label).clone(),
                    inbox_events: self.inbox_events.get_or_create(&label).clone(),
                    redis_publish: self.redis_publish.get_or_create(&label).clone(),
                    history_events: self.history_events.get_or_create(&label).clone(),
                    history_bytes: self.history_bytes.get_or_create(&label).clone(),
                };
                let view = ShardView {
                    connections: owned.connections.clone(),
                    deliveries: owned.deliveries.clone(),
                    history_events: owned.history_events.clone(),
                    history_bytes: owned.history_bytes.clone(),
                    inbox_messages: self.inbox_messages.get_or_create(&label).clone(),
                    send_queue_bytes: self.send_queue_bytes.get_or_create(&label).clone(),
                };
                (view, owned)
            })
            .unzip()
    }
}
