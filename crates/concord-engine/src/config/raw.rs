//! The configuration file as written: one struct per TOML table, unknown fields rejected.
//!
//! These doc comments are the user reference for `concord.toml`, and the descriptions of its JSON
//! Schema ([`super::schema`], `concord config schema`): every struct here derives `JsonSchema`
//! next to `Deserialize` (a new field needs nothing more; a field of a type from elsewhere names
//! its schema with `#[schemars(with = …)]` or `schema_with`). Every string value may contain
//! `${NAME}` references to environment variables (resolved before anything else; `$${` is a
//! literal `${`). Durations are humantime strings (`"200ms"`, `"30s"`, `"5m"`, `"1h 30m"`).
//! Nothing here is checked beyond its TOML type: [`super::validate`] turns these into the checked
//! types of [`super`].

use crate::secret::Secret;
use concord_core::Kind;
use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The whole file.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[store]`: where the hub keeps its state.
    #[serde(default)]
    pub store: RawStore,
    /// `[server]`: the HTTP server (webhooks, storefront API, admin, metrics).
    #[serde(default)]
    pub server: RawServer,
    /// `[engine]`: delivery tuning; every field optional.
    #[serde(default)]
    pub engine: RawEngine,
    /// `[endpoints.NAME]`: the systems to connect. At least one. Names are `[a-z0-9_-]+`.
    #[serde(default)]
    pub endpoints: BTreeMap<String, RawEndpoint>,
    /// `[[flows]]`: what moves where. At least one.
    #[serde(default)]
    pub flows: Vec<RawFlow>,
    /// `[ownership.KIND]`: which endpoint is the system of record for which fields of a kind.
    #[serde(default)]
    pub ownership: BTreeMap<String, RawOwnership>,
    /// `[inventory]`: one stock pool for every channel (reservations, buffers, available-to-sell).
    /// Optional: without it, stock flows copy the source's figures per location.
    pub inventory: Option<RawInventory>,
    /// `[pricing]`: serve `/v1/prices` from an in-memory index of the hub's price lists and check
    /// channel orders' line prices against it. Optional: without it, `price` flows still sync
    /// but `/v1/prices` answers 404 and orders are not checked.
    pub pricing: Option<RawPricing>,
    /// `[orders]`: how the order lifecycle treats edits. Optional; every field has a default.
    #[serde(default)]
    pub orders: RawOrders,
    /// `[alerts]`: rules watched by the hub and where their notifications go. Optional: without
    /// it nothing is evaluated.
    #[serde(default)]
    pub alerts: RawAlerts,
    /// `[admin]`: who may use the admin API (`/api/v1`) and the dashboard. Without tokens both
    /// refuse every request (never open by default).
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[commerce]`: keys of the storefront API (`/v1/...`). Without keys `/v1` is open to anyone
    /// who can reach the port (a WARN at start and in `concord validate`).
    #[serde(default)]
    pub commerce: RawCommerce,
    /// `[metrics]`: who may read `/metrics` (Prometheus) and what it publishes.
    #[serde(default)]
    pub metrics: RawMetrics,
}

/// `[metrics]`: the Prometheus endpoint `/metrics`.
///
/// On the main port (`[server] listen`, where webhooks and the storefront API are served)
/// `/metrics` is never open: it needs `Authorization: Bearer TOKEN` with a metrics token
/// (`[[metrics.tokens]]`) or an admin token (`[[admin.tokens]]`, any role); with no token of
/// either kind configured it answers 403. For a scraper on a private network, `listen` serves
/// `/metrics` (and nothing else) on a separate address as well: there it needs a metrics token
/// when `[[metrics.tokens]]` are configured, and is open otherwise (bind it to loopback or a
/// private interface; `concord validate` warns when it is open on another address).
///
/// ```toml
/// [metrics]
/// listen = "127.0.0.1:9090"
/// per_sku = false
/// [[metrics.tokens]]
/// name = "prometheus"
/// sha256 = "…"   # `concord token new --name prometheus --metrics` prints it
/// ```
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// A separate address serving only `/metrics`. Default: none (the main port only, with a
    /// token).
    pub listen: Option<String>,
    /// `[[metrics.tokens]]`: bearer tokens that may read `/metrics` and nothing else.
    #[serde(default)]
    pub tokens: Vec<RawMetricsToken>,
    /// Publish `concord_ats{channel, sku}`, one series per channel and SKU (the whole catalogue
    /// and its stock, a series for every SKU ever seen). Default `false`: only per-channel
    /// figures (`concord_ats_updates_total{channel}`).
    pub per_sku: Option<bool>,
}

/// `[[metrics.tokens]]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetricsToken {
    /// Who uses it (logs): `[a-z0-9_.@-]+`, unique.
    pub name: String,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
}

/// `[admin]`: access to the admin API and the dashboard.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `[[admin.tokens]]`: one per person or tool. Create one with
    /// `concord token new --name NAME --role viewer|operator`, which prints the token once and
    /// this entry with its hash.
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    /// How long a dashboard login (`POST /api/v1/session`) lasts, at most a year. Default `"12h"`.
    pub session_ttl: Option<String>,
    /// Mark the session cookie `Secure` (only sent over HTTPS). Set it when the hub is served
    /// behind TLS. Default `false` (the demo and local use are plain HTTP).
    pub secure_cookie: Option<bool>,
    /// Failed authentications one client address may make in a row — unknown admin tokens,
    /// failed logins, unknown storefront keys and metrics tokens alike — before every attempt
    /// of that address is answered 429 with `Retry-After`, unchecked (a correct token too),
    /// until a try comes back. Each failure is in the audit trail (`auth.failed`, and
    /// `auth.throttled` once per spell). IPv6 clients count per /64; behind a reverse proxy all
    /// clients share the proxy's address. Default 10, at most 10000.
    pub failed_attempts: Option<u64>,
    /// How often a client gets one of those tries back. Default `"6s"` (10 a minute).
    pub failed_attempts_refill: Option<String>,
}

/// `[[admin.tokens]]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who holds it (shown in the audit trail): `[a-z0-9_.@-]+`, unique.
    pub name: String,
    /// `"viewer"` (read only) or `"operator"` (also replay, drop, pause, resume, run now).
    #[schemars(schema_with = "super::schema::role")]
    pub role: String,
    /// SHA-256 of the token, 64 hex digits. The token itself is never stored.
    pub sha256: String,
}

/// `[commerce]`: the storefront API.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCommerce {
    /// `[[commerce.keys]]`: keys a storefront sends as `Authorization: Bearer KEY` (or
    /// `X-Concord-Key: KEY`). A key acts only for its channel. Create one with
    /// `concord token new --name NAME --channel CHANNEL`.
    #[serde(default)]
    pub keys: Vec<RawChannelKey>,
}

/// `[[commerce.keys]]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChannelKey {
    /// A name for the key (logs): `[a-z0-9_.@-]+`, unique.
    pub name: String,
    /// The channel (an endpoint name) this key may act for.
    pub channel: String,
    /// SHA-256 of the key, 64 hex digits.
    pub sha256: String,
}

/// `[alerts]`: alert rules and their webhook.
///
/// Every `interval` the hub evaluates each rule. When a rule's condition starts to hold for a
/// subject (the whole hub, an endpoint, or a `sku@location` stock position) an *episode* opens
/// and one `firing` notification is sent; when it stops holding the episode is resolved and one
/// `resolved` notification is sent. Episodes are stored, so a restart neither repeats a
/// notification already delivered nor loses one not yet delivered. A notification is a JSON
/// POST to `webhook_url`:
///
/// ```json
/// {"status": "firing", "rule": "dead-letters", "condition": "dead_letters", "subject": "",
///  "summary": "3 open dead letters (alert above 0)", "value": 3.0, "threshold": 0.0,
///  "since": "2026-01-01T10:00:00Z", "resolved_at": null, "episode": 17}
/// ```
///
/// A receiver answering anything but 2xx (or unreachable) gets the same notification again with
/// exponential backoff (full jitter, 1 s doubling to 5 min) until it accepts it. Redirects are
/// not followed (a 3xx is a failure).
///
/// With `webhook_secret` set, every notification is signed:
/// `X-Concord-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A
/// receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares it in
/// constant time, and refuses a timestamp older than it tolerates (say 5 minutes) so that a
/// captured notification cannot be replayed later. A retried notification is signed again with
/// a fresh timestamp.
#[derive(Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// `http://` or `https://` URL receiving the notifications. Optional: without it alerts are
    /// only shown (dashboard, `GET /api/v1/alerts`, the log).
    pub webhook_url: Option<String>,
    /// Key of the notifications' `X-Concord-Signature` (HMAC-SHA256). Use a `${ENV}` reference;
    /// it is never printed. Optional: without it notifications are not signed.
    pub webhook_secret: Option<Secret>,
    /// Allow a `webhook_url` whose user info or query string carries credentials over plain
    /// `http://` to a host other than loopback. Default `false`.
    pub allow_insecure_http: Option<bool>,
    /// How often the rules are evaluated. Default `"10s"`.
    pub interval: Option<String>,
    /// Per-request timeout of a notification. Default `"10s"`.
    pub timeout: Option<String>,
    /// `[[alerts.rules]]`: the rules.
    #[serde(default)]
    pub rules: Vec<RawAlertRule>,
}

/// `[[alerts.rules]]`: one rule. Each condition takes only its own threshold field.
///
/// | `condition` | fires when | threshold | `endpoint` |
/// |---|---|---|---|
/// | `dead_letters` | open dead letters > `above` | `above`, default 0 | only that endpoint's; absent: all |
/// | `lag` | a destination's oldest waiting item was captured more than `lag_above` ago | `lag_above` (required) | only that destination; absent: each one |
/// | `breaker_open` | an endpoint's circuit breaker has not been closed for longer than `open_for` | `open_for`, default `"0s"` | only that endpoint; absent: each one |
/// | `oversold_risk` | a stock position's ERP on-hand is more than `above` units below committed + held | `above`, default 0 | not allowed |
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlertRule {
    /// Unique name, `[a-z0-9_-]+`.
    pub name: String,
    /// `dead_letters`, `lag`, `breaker_open`, `oversold_risk` or `drift` (the latest
    /// reconciliation of a flow found more than `above` drifted keys at a destination).
    #[schemars(schema_with = "super::schema::condition")]
    pub condition: String,
    /// Count (dead letters, drifted keys) or units (oversold risk) above which the rule fires.
    pub above: Option<u64>,
    /// `lag`: the duration above which the rule fires.
    pub lag_above: Option<String>,
    /// `breaker_open`: how long the breaker must have been open (or half-open) before it fires.
    pub open_for: Option<String>,
    /// Restrict the rule to one endpoint.
    pub endpoint: Option<String>,
}

/// `[orders]`: the order lifecycle (placed → accepted → partially shipped → shipped → invoiced →
/// paid → closed; cancelled, partially refunded, refunded, returned). Edits of an order before
/// it ships (changed quantities, added or removed lines, changed addresses) go to the ERP as an
/// `amend` when its connector can amend orders; otherwise this policy decides. After shipment an
/// edit is always refused (inbound dead letter naming the reason).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOrders {
    /// `"cancel_and_replace"` (default): cancel the ERP order and create a replacement with
    /// reference `"{channel/number}~{n}"` (n = 2, 3, …). `"reject"`: refuse the edit; the ERP
    /// order stays as it was and the edit waits in the dead letters for an operator.
    #[schemars(schema_with = "super::schema::edits", default)]
    pub edits: Option<String>,
}

/// `[pricing]`: price lookups and order price checks (every field optional).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// Currency (ISO 4217) of lookups and checks that name none; absent: a lookup without
    /// `currency=` matches lists in any currency.
    pub currency: Option<String>,
    /// Largest per-unit difference, in minor units, between an order line's `unit_price_minor`
    /// and the hub's price that is not flagged. Default 0 (any difference is flagged).
    pub tolerance_minor: Option<u64>,
    /// Check the line prices of orders captured from channels. Default `true`.
    pub check_orders: Option<bool>,
}

/// `[inventory]`: the stock pool. The ledger is fed by the `stock` flows from `source`; each
/// channel listed under `[inventory.channels.NAME]` then receives, through its `stock` flow,
/// one record per SKU with its available-to-sell instead of the source's per-location figures:
/// `{"sku", "location": <stock_location>, "available": ats, "on_hand": ats, "committed": 0}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// The endpoint that is the system of record for stock (the ERP). It must be the source of
    /// a `stock` flow.
    pub source: String,
    /// How long a reservation made at checkout holds stock before it expires, unless the
    /// channel commits it. Default `"15m"`.
    pub reservation_ttl: Option<String>,
    /// When the ERP's versions cannot be compared (no sequence or timestamp), a committed
    /// reservation is released by the first ERP figure captured this long after the ERP
    /// accepted its order. Default `"5s"`.
    pub release_grace: Option<String>,
    /// Under a continuous stream of ledger changes (checkouts), each channel's available-to-sell
    /// is recomputed and planned at most once per this interval; an isolated change is still
    /// broadcast at once. Trades a little freshness of the channels' copies for much less work
    /// under load (reservations themselves always decide on the ledger). Default `"50ms"`;
    /// `"0s"` recomputes right after every change.
    pub broadcast_interval: Option<String>,
    /// `[inventory.channels.NAME]`: one table per channel that sells from the pool. NAME is an
    /// endpoint that receives a `stock` flow from `source`.
    #[serde(default)]
    pub channels: BTreeMap<String, RawChannelPolicy>,
    /// `[[inventory.buffers]]`: safety stock kept back from channels. The most specific
    /// matching rule wins (exact SKU > SKU pattern > any; then channel; then location).
    #[serde(default)]
    pub buffers: Vec<RawBuffer>,
}

/// `[inventory.channels.NAME]`
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChannelPolicy {
    /// Locations that feed this channel, in routing priority order (first = preferred).
    pub locations: Vec<String>,
    /// Units per SKU that may be sold against incoming stock (purchase orders) when free stock
    /// runs out. Default: no backorders.
    pub backorder_limit: Option<u64>,
    /// Location name carried by the stock records sent to this channel. Default `"default"`.
    pub stock_location: Option<String>,
}

/// `[[inventory.buffers]]`: exactly one of `units` and `percent`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBuffer {
    /// SKU or pattern with `*` wildcards (`"SKU-*"`); absent = every SKU.
    pub sku: Option<String>,
    /// Channel (endpoint name); absent = every channel.
    pub channel: Option<String>,
    /// Location; absent = every location.
    pub location: Option<String>,
    /// Units kept back.
    pub units: Option<u64>,
    /// Percent of on-hand kept back (rounded up), 0–100.
    pub percent: Option<u64>,
}

/// `[store]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// SQLite database file, relative to the directory of the config file.
    /// Default `"concord.sqlite"`. Not with `url`.
    pub path: Option<String>,
    /// A PostgreSQL database instead of the SQLite file:
    /// `"postgres://USER:${CONCORD_PG_PASSWORD}@HOST:5432/DATABASE"` (or `postgresql://`; write
    /// the password as an `${ENV}` reference). The schema is created and migrated at start. One
    /// running instance per database for now: `concord run` holds the database's instance lock
    /// and a second one refuses to start. Not with `path`, `synchronous` or `write_queue`
    /// (SQLite's settings). Connections are not encrypted yet (no TLS): use it on loopback or a
    /// private network only.
    pub url: Option<String>,
    /// How long history is kept, e.g. `"30d"`: delivery attempts, resolved (notified) alert
    /// episodes, the audit trail, delivered outbox items, and journal entries that are processed
    /// and no longer referred to by an outbox item or an open dead letter. Default 30 days.
    pub retention: Option<String>,
    /// Durability of every commit: `"full"` (the default) flushes each commit to the disk before
    /// anything is acknowledged, so an acknowledged change survives a power loss or an OS crash.
    /// `"normal"` is faster but a power loss (or OS crash) can lose changes already
    /// acknowledged to their sender; a crash of the hub process alone loses nothing either way.
    pub synchronous: Option<String>,
    /// Most writes waiting for the store's single writer. When the queue is full, webhooks and
    /// storefront/admin requests are answered `503` with `Retry-After` (nothing is stored, the
    /// sender retries) and the engine's own tasks wait. Default 2048.
    pub write_queue: Option<u64>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address and port to listen on. Default `"127.0.0.1:8080"`.
    pub listen: Option<String>,
    /// Largest accepted webhook body (`/hooks/...`): an integer number of bytes, or a string
    /// with a unit (`"512KiB"`, `"1MiB"`, `"2MB"`). Default 1 MiB. Larger ones get `413`.
    pub max_body_bytes: Option<ByteSize>,
    /// Largest accepted body of every other route: the storefront API (`/v1/...`), the admin
    /// API (`/api/v1/...`) and the dashboard. Default 256 KiB. Larger ones get `413`.
    pub api_max_body_bytes: Option<ByteSize>,
    /// How long a connection may take to send a request's headers, and how long an idle
    /// keep-alive connection is kept waiting for its next request, before it is closed.
    /// Default `"10s"`.
    pub header_read_timeout: Option<String>,
    /// Longest wait for the next piece of a request's body; a stalled upload is answered
    /// `400` ("failed to buffer the body") and its connection closed. Default `"10s"`.
    pub body_read_timeout: Option<String>,
    /// Longest time one request may take, from its headers to its answer (body upload and
    /// handling included); beyond it the answer is `503` and the sender may retry. Default
    /// `"30s"`.
    pub request_timeout: Option<String>,
    /// Most client connections open at once. Further connections wait in the OS's accept
    /// queue until one closes (each request has its connection, so this also bounds the
    /// requests in flight). Default 1024.
    pub max_connections: Option<u64>,
}

/// `[engine]`: all optional.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// Most outbox items claimed (and journal entries processed) at once. Default 256.
    pub batch_size: Option<u64>,
    /// How long a claimed outbox item stays with its worker before another may take it over.
    /// Default `"30s"`.
    pub lease: Option<String>,
    /// First retry delay (exponential backoff with full jitter). Default `"200ms"`.
    pub backoff_base: Option<String>,
    /// Longest retry delay. Default `"30s"`.
    pub backoff_cap: Option<String>,
    /// Attempts before an item goes to the dead-letter queue. Default 10.
    pub max_attempts: Option<u64>,
    /// Consecutive endpoint failures that open its circuit breaker. Default 5.
    pub breaker_threshold: Option<u64>,
    /// How long an open breaker first waits before a half-open probe. Default `"1s"`.
    pub breaker_open: Option<String>,
    /// Longest open period (the wait doubles on each failed probe). Default `"30s"`.
    pub breaker_max_open: Option<String>,
    /// Most deliveries in flight per endpoint. Default 8.
    pub endpoint_concurrency: Option<u64>,
    /// Longest wait an endpoint's `Retry-After` answer is honoured for (longer ones are cut to
    /// this; an unreadable one is ignored and the normal backoff applies). Default `"10m"`.
    pub retry_after_max: Option<String>,
    /// An engine task (processor, a dispatcher, a poller, …) that fails is restarted after a
    /// backoff (`backoff_base`, doubling up to `backoff_cap`, with full jitter). When it fails
    /// more than this many times within `task_restart_window`, the engine gives up: `/readyz`
    /// answers `503` naming the task and `concord run` exits with status 1 so that its
    /// supervisor (systemd, Kubernetes) restarts the process. Default 5.
    pub task_restart_limit: Option<u64>,
    /// The window of `task_restart_limit`. Default `"10m"`.
    pub task_restart_window: Option<String>,
    /// Most steps one run of a jq program (a `filter`, `map_in` or `map_out`) may take: one
    /// per jq expression evaluated and per number `range` produces. Default 1000000 (a few
    /// hundred milliseconds; some hundred times what mapping an order of a hundred lines
    /// takes). A program over budget is stopped: its record becomes a dead letter naming the
    /// program and the limit (a webhook record is refused), and the hub carries on.
    pub jq_steps: Option<u64>,
    /// Longest wall-clock time of one run of a jq program. Default `"1s"`, at most `"1m"`.
    /// Deep recursion is also stopped (at 16 MiB of native stack), whatever these settings.
    pub jq_timeout: Option<String>,
    /// Largest record a jq program is given, and largest it may produce, in bytes of JSON: an
    /// integer number of bytes or a string with a unit (`"512KiB"`, `"4MiB"`). A larger record
    /// is refused before the program runs. Default 4 MiB, at most 64 MiB.
    pub jq_max_bytes: Option<ByteSize>,
}

/// `[endpoints.NAME]`: one configured system.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Connector type: `sandbox-erp`, `sandbox-shop`, `tryton`, `vendure`, … (checked against
    /// the connector registry when the hub starts).
    pub connector: String,
    /// Base URL of the API: `http://` or `https://`, with a host.
    pub url: String,
    /// Shared secret of the webhook signatures (HMAC) this endpoint sends. Use a `${ENV}`
    /// reference; it is never printed.
    pub webhook_secret: Option<Secret>,
    /// Per-request timeout. Default `"10s"`.
    pub timeout: Option<String>,
    /// Largest response body read from this endpoint: bytes, or a size like `"64MiB"`. A larger
    /// answer is an error (dead letter for a write). Default 16 MiB.
    pub max_response_bytes: Option<ByteSize>,
    /// Allow credentials (a password, token or key in `options`, or user info or a query string
    /// in `url`) to be sent over plain `http://` to a host other than loopback. Without it such
    /// a config is refused at load. Default `false`; use https instead where you can.
    pub allow_insecure_http: Option<bool>,
    /// `[endpoints.NAME.options]`: connector-specific settings, passed through as JSON. Put
    /// passwords, tokens and keys here as `${ENV}` references (a literal one is warned about).
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub options: Option<toml::Table>,
}

// The raw structs hold secrets in clear (options, URLs with credentials): their `Debug` shows
// what is safe only, like the checked types'.
impl fmt::Debug for RawEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEndpoint")
            .field("connector", &self.connector)
            .field("url", &crate::outbound::redact_url(&self.url))
            .field("webhook_secret", &self.webhook_secret)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field(
                "options",
                &self
                    .options
                    .as_ref()
                    .map(|t| t.keys().cloned().collect::<Vec<_>>()),
            )
            .finish()
    }
}

impl fmt::Debug for RawAlerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAlerts")
            .field(
                "webhook_url",
                &self.webhook_url.as_deref().map(crate::outbound::url_host),
            )
            .field("webhook_secret", &self.webhook_secret)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("rules", &self.rules)
            .finish()
    }
}

/// How records of a flow move between its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawPattern {
    /// One source, one or more destinations.
    Broadcast,
    /// One or more sources, exactly one destination.
    Aggregation,
    /// Two endpoints (`between`), each the source and the destination of the other.
    Bidirectional,
    /// Only records found on both sides are synced (matched by natural key, never created).
    Correlation,
    /// A one-off copy (`mode = "migration"`).
    Migration,
}

/// When a flow reads its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    /// Webhooks as they come; optional `poll` safety net.
    Realtime,
    /// Changed-since polling every `interval`.
    Delta,
    /// Full listing on a cron `schedule`.
    Batch,
    /// Once, on request (`concord backfill`).
    Migration,
}

/// `[[flows]]`: one flow.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    /// Unique name, `[a-z0-9_-]+`.
    pub name: String,
    /// The kind it moves: product, stock, price, customer, order, shipment, invoice, payment,
    /// refund.
    #[schemars(schema_with = "super::schema::kind")]
    pub kind: Kind,
    /// broadcast: exactly one `from`, one or more `to`. aggregation: one or more `from`, exactly
    /// one `to`. bidirectional: `between = ["a", "b"]` instead of `from`/`to`. correlation: one
    /// or more of each. migration: like correlation, with `mode = "migration"`.
    /// `from` and `to` never share an endpoint (except through `between`).
    pub pattern: RawPattern,
    /// realtime, delta, batch or migration. Required (defaults to migration for the migration
    /// pattern).
    pub mode: Option<RawMode>,
    /// realtime only, optional: also poll for changes this often (safety net for lost webhooks).
    pub poll: Option<String>,
    /// delta only, required: poll for changes this often.
    pub interval: Option<String>,
    /// batch only, required: cron schedule with seconds, 6 or 7 fields
    /// (`"sec min hour day-of-month month day-of-week [year]"`, e.g. `"0 */5 * * * *"`).
    pub schedule: Option<String>,
    /// Source endpoints.
    pub from: Option<Vec<String>>,
    /// Destination endpoints.
    pub to: Option<Vec<String>>,
    /// bidirectional only: the two endpoints.
    pub between: Option<Vec<String>>,
    /// jq, optional: records for which it is `false` are not synced by this flow. Must produce
    /// exactly one boolean. Sees `$source`, `$kind` (and `$dest` = `""`).
    pub filter: Option<String>,
    /// jq, optional: maps a source's native record to the canonical shape before validation.
    /// All flows reading the same kind from the same endpoint must agree on it.
    pub map_in: Option<String>,
    /// `[flows.map_out]`: destination name → jq program mapping the canonical record to that
    /// destination's shape. The key `"*"` applies to destinations without their own entry.
    /// Each sees `$dest`, `$source`, `$kind`.
    #[serde(default)]
    pub map_out: BTreeMap<String, String>,
    /// How far before its cursor a poll re-reads (late commits). Default `"5s"`.
    pub overlap: Option<String>,
    /// Records per read. Default 500.
    pub page_size: Option<u64>,
    /// optional: check this flow's destinations for drift on this cron schedule (with seconds,
    /// like `schedule`; e.g. `"0 0 3 * * *"` every night at 3): what each holds against what
    /// the hub says it should (for a stock-pool flow also the ERP's figures against the
    /// ledger). Each run is stored (`GET /api/v1/reconcile`); `concord reconcile` runs one now.
    pub reconcile: Option<String>,
    /// With `reconcile`: plan one corrective write per drifted key through the outbox (never a
    /// delete: records unknown to the hub are only reported). Default `false`.
    pub heal: Option<bool>,
}

/// `[ownership.KIND]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOwnership {
    /// Endpoint that owns every field not listed in `fields`.
    pub default: Option<String>,
    /// Field name → owning endpoint, e.g. `{ description = "web1" }`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// A byte count: an integer, or a string such as `"1MiB"`, `"512 KiB"`, `"2MB"`, `"100B"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parse `"<number>[ ]<unit>"`; units B, KB, MB, GB (powers of 1000), KiB, MiB, GiB
    /// (powers of 1024), case-insensitive.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let expected =
            || format!("expected a size like 1048576, \"512KiB\" or \"1MiB\", got {s:?}");
        let n: u64 = digits.parse().map_err(|_| expected())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "mb" => 1000 * 1000,
            "gb" => 1000 * 1000 * 1000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            _ => return Err(expected()),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of bytes or a size like \"1MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("expected a positive size, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("1MiB"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("512 kib"), Ok(ByteSize(512 * 1024)));
        assert_eq!(ByteSize::parse("2MB"), Ok(ByteSize(2_000_000)));
        assert_eq!(ByteSize::parse("100"), Ok(ByteSize(100)));
        assert!(ByteSize::parse("1 parsec").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert!(ByteSize::parse("99999999999999GiB").is_err());
    }

    proptest::proptest! {
        /// Any text is an answer, never a panic; every `u64` reads back as itself, with a unit
        /// exactly when the product fits.
        #[test]
        fn byte_sizes_over_the_whole_domain(text in ".*", n in proptest::num::u64::ANY) {
            let _ = ByteSize::parse(&text);
            proptest::prop_assert_eq!(ByteSize::parse(&n.to_string()), Ok(ByteSize(n)));
            proptest::prop_assert_eq!(
                ByteSize::parse(&format!(" {n} MiB ")).ok(),
                n.checked_mul(1 << 20).map(ByteSize)
            );
            proptest::prop_assert_eq!(
                ByteSize::parse(&format!("{n}gb")).ok(),
                n.checked_mul(1_000_000_000).map(ByteSize)
            );
        }
    }
}
