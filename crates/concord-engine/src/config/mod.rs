//! Configuration: `concord.toml` → a validated, typed [`Config`], with every error naming the
//! faulty field (`flows[2].mode`, `endpoints.erp.url`, …).
//!
//! Loading happens in stages, so that nothing runs on a half-understood file:
//! 1. read the file (the only I/O) and parse the TOML (syntax errors give line and column);
//! 2. resolve `${NAME}` environment references in every string value ([`env`]);
//! 3. deserialize into the raw structs of [`raw`] (their doc comments are the user reference),
//!    rejecting unknown fields, with `serde_path_to_error` giving the field path;
//! 4. [`validate`](validate::validate) (no I/O): parse durations, URLs, cron schedules, compile
//!    the jq programs, check names, references, pattern arities and ownership, fill defaults.
//!
//! Connector types and connector options are *not* checked here: the connector registry does
//! that when it builds connectors from [`EndpointSpec`]s.
//!
//! Secrets: values substituted from the environment are scrubbed from every error message;
//! secrets are held as [`Secret`](crate::secret::Secret)s and [`EndpointSpec`]'s `Debug` masks
//! its URL's credentials and secret-looking options. Secrets written as literals instead of
//! `${ENV}` references are listed in [`Config::literal_secrets`] (a warning at start and in
//! `concord validate`).

pub mod access;
pub mod alerts;
mod env;
pub mod raw;
pub mod schema;
mod validate;

pub use access::{
    AccessToken, AdminConfig, ChannelKey, CommerceConfig, MetricsConfig, MetricsToken, Role,
};
pub use alerts::{AlertCondition, AlertRule, AlertsConfig};

use crate::connector::EndpointSpec;
use crate::mapping::{Budget, Mapping};
use concord_core::{Kind, Ownership};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from (for messages and relative paths).
    pub path: PathBuf,
    pub store: StoreConfig,
    pub server: ServerConfig,
    pub engine: EngineSettings,
    /// By endpoint name.
    pub endpoints: BTreeMap<String, EndpointSpec>,
    /// In file order.
    pub flows: Vec<FlowConfig>,
    /// Field ownership per kind; kinds not listed have no owners (anyone may write any field).
    pub ownership: BTreeMap<Kind, Ownership>,
    /// The stock pool, when configured.
    pub inventory: Option<InventoryConfig>,
    /// Price lookups and order price checks, when configured.
    pub pricing: Option<PricingConfig>,
    /// The order lifecycle's policies (`[orders]`; defaults when absent).
    pub orders: OrdersConfig,
    /// Alert rules and their webhook (no rules when `[alerts]` is absent).
    pub alerts: AlertsConfig,
    /// Admin API tokens and sessions.
    pub admin: AdminConfig,
    /// Storefront API keys.
    pub commerce: CommerceConfig,
    /// Who may read `/metrics`, where, and whether it publishes per-SKU series.
    pub metrics: MetricsConfig,
    /// Field paths of secrets written as literals in the file (not `${ENV}` references).
    pub literal_secrets: Vec<String>,
}

impl Config {
    /// One line per secret written as a literal in the file, naming its field: a WARN at
    /// start and in `concord validate` (a config file is copied, committed and pasted).
    pub fn literal_secret_warnings(&self) -> Vec<String> {
        self.literal_secrets
            .iter()
            .map(|path| {
                format!(
                    "{path} is a secret written as a literal in {}; use an environment reference such as \"${{NAME}}\" so the file holds no secret",
                    self.path.display()
                )
            })
            .collect()
    }
}

/// `[orders]`, checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrdersConfig {
    pub edits: EditPolicy,
}

/// What to do with an edit (before shipment) of an order already created at a destination that
/// cannot amend orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EditPolicy {
    /// Cancel the ERP order (its current reference) and create a replacement `"{key}~{n}"`.
    #[default]
    CancelAndReplace,
    /// Refuse the edit (inbound dead letter with the reason); the ERP order stays as it was.
    Reject,
}

/// `[pricing]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingConfig {
    pub currency: Option<String>,
    pub tolerance_minor: i64,
    pub check_orders: bool,
}

/// `[inventory]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryConfig {
    pub source: String,
    pub reservation_ttl: Duration,
    pub release_grace: Duration,
    /// Least time between two broadcaster passes while changes keep coming (0: none).
    pub broadcast_interval: Duration,
    pub channels: BTreeMap<String, ChannelPolicy>,
    pub buffers: Vec<concord_core::inventory::BufferRule>,
}

/// One channel's share of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPolicy {
    /// Feeding locations in routing priority order.
    pub locations: Vec<String>,
    pub backorder_limit: Option<i64>,
    pub stock_location: String,
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Database file, already resolved against the config file's directory (SQLite; unused
    /// when `url` is set).
    pub path: PathBuf,
    /// `[store] url`: the PostgreSQL database to use instead of the SQLite file (with `${ENV}`
    /// references resolved; it may hold a password, so it never prints).
    pub url: Option<crate::secret::Secret>,
    /// How long the history tables that grow with traffic (delivery attempts, resolved alert
    /// episodes) are kept; the engine prunes older rows every hour.
    pub retention: std::time::Duration,
    /// Durability of commits (`full` by default).
    pub synchronous: concord_store::Synchronous,
    /// Most writes queued for the store's writer.
    pub write_queue: usize,
}

impl StoreConfig {
    /// How to open the SQLite store.
    pub fn sqlite_options(&self) -> concord_store::SqliteOptions {
        concord_store::SqliteOptions {
            synchronous: self.synchronous,
            write_queue: self.write_queue,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Webhook bodies.
    pub max_body_bytes: usize,
    /// Bodies of every other route (`/v1`, `/api/v1`, the dashboard).
    pub api_max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1 << 20,
            api_max_body_bytes: 256 << 10,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// `[engine]`: delivery tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    pub batch_size: usize,
    pub lease: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub max_attempts: u32,
    pub breaker_threshold: u32,
    pub breaker_open: Duration,
    pub breaker_max_open: Duration,
    pub endpoint_concurrency: usize,
    /// Longest `Retry-After` honoured.
    pub retry_after_max: Duration,
    /// Failures of one engine task within `task_restart_window` beyond which it is not
    /// restarted and the engine reports itself failed.
    pub task_restart_limit: u32,
    pub task_restart_window: Duration,
    /// The budget of every jq program (`jq_steps`, `jq_timeout`, `jq_max_bytes`).
    pub jq: Budget,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            batch_size: 256,
            lease: Duration::from_secs(30),
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(30),
            max_attempts: 10,
            breaker_threshold: 5,
            breaker_open: Duration::from_secs(1),
            breaker_max_open: Duration::from_secs(30),
            endpoint_concurrency: 8,
            retry_after_max: Duration::from_secs(600),
            task_restart_limit: 5,
            task_restart_window: Duration::from_secs(600),
            jq: Budget::default(),
        }
    }
}

/// One `[[flows]]` entry, checked.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub name: String,
    pub kind: Kind,
    pub pattern: Pattern,
    pub mode: Mode,
    /// Source endpoints (for bidirectional: both endpoints).
    pub from: Vec<String>,
    /// Destination endpoints (for bidirectional: both endpoints; never the record's source).
    pub to: Vec<String>,
    /// Must evaluate to a boolean; `false` drops the record for this flow.
    pub filter: Option<Mapping>,
    /// Native source record → canonical record.
    pub map_in: Option<Mapping>,
    /// Destination name (or `"*"`) → canonical record → destination shape.
    pub map_out: BTreeMap<String, Mapping>,
    pub overlap: Duration,
    pub page_size: usize,
    /// `reconcile` / `heal`: drift checks on a schedule (`runtime/reconcile`).
    pub reconcile: Option<ReconcileSchedule>,
}

/// A flow's scheduled drift check.
#[derive(Debug, Clone)]
pub struct ReconcileSchedule {
    pub schedule: Box<cron::Schedule>,
    /// The schedule as written.
    pub expr: String,
    /// Plan corrective writes for what drifted.
    pub heal: bool,
}

impl PartialEq for ReconcileSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.heal == other.heal
    }
}

impl FlowConfig {
    /// The outbound mapping for `dest`: its own entry, else the `"*"` entry.
    pub fn map_out_for(&self, dest: &str) -> Option<&Mapping> {
        self.map_out.get(dest).or_else(|| self.map_out.get("*"))
    }

    /// Where a record from `source` goes: `to` without `source` itself (bidirectional).
    pub fn destinations_for<'a>(&'a self, source: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.to
            .iter()
            .map(String::as_str)
            .filter(move |d| *d != source)
    }
}

/// How records of a flow move between its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    Broadcast,
    Aggregation,
    Bidirectional,
    Correlation,
    Migration,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Broadcast => "broadcast",
            Pattern::Aggregation => "aggregation",
            Pattern::Bidirectional => "bidirectional",
            Pattern::Correlation => "correlation",
            Pattern::Migration => "migration",
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a flow reads its sources.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Webhooks; `poll` = optional safety-net polling period.
    Realtime { poll: Option<Duration> },
    /// Changed-since polling every `interval`.
    Delta { interval: Duration },
    /// Full listing on a cron schedule; `expr` is the schedule as written.
    Batch {
        schedule: Box<cron::Schedule>,
        expr: String,
    },
    /// Once, on request.
    Migration,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Realtime { .. } => "realtime",
            Mode::Delta { .. } => "delta",
            Mode::Batch { .. } => "batch",
            Mode::Migration => "migration",
        }
    }
}

impl PartialEq for Mode {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Mode::Realtime { poll: a }, Mode::Realtime { poll: b }) => a == b,
            (Mode::Delta { interval: a }, Mode::Delta { interval: b }) => a == b,
            (Mode::Batch { expr: a, .. }, Mode::Batch { expr: b, .. }) => a == b,
            (Mode::Migration, Mode::Migration) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The configuration is unusable. Display: `<file>: <path>: <message>` (path omitted when
/// empty, e.g. for a TOML syntax error, whose message gives the line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// Field path in the file, like `flows[2].mode` or `endpoints.erp.url`; may be empty.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.path,
                self.message
            )
        }
    }
}

/// A problem found while loading, before the file name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub path: String,
    pub message: String,
}

impl Issue {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Attach the file and remove any value that came from the environment (secrets).
    fn into_error(self, file: &Path, substituted: &[String]) -> ConfigError {
        let mut message = self.message;
        // Very short values would garble the message and are not secrets worth the name.
        for value in substituted.iter().filter(|v| v.chars().count() >= 4) {
            message = message.replace(value.as_str(), "***");
        }
        ConfigError {
            file: file.to_path_buf(),
            path: self.path,
            message,
        }
    }
}

impl Config {
    /// Read and check the file at `path`, resolving `${NAME}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with `${NAME}` looked up by `env` (tests, dry runs).
    pub fn load_with_env(
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
        })?;
        Self::from_toml_str_with_env(&text, path, env)
    }

    /// Check a configuration given as text; `path` is used for messages and to resolve
    /// relative paths (the store), never read. `${NAME}` comes from the process environment.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::from_toml_str_with_env(text, path, |name| std::env::var(name).ok())
    }

    /// [`Config::from_toml_str`] with `${NAME}` looked up by `env`.
    pub fn from_toml_str_with_env(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut substituted = Vec::new();
        parse(text, path, &env, &mut substituted)
            .map_err(|issue| issue.into_error(path, &substituted))
    }

    /// Flows of `kind` that read from `source`, in file order. The flows borrow from `self`
    /// only, not from `source`.
    pub fn flows_for<'a, 'b>(
        &'a self,
        kind: Kind,
        source: &'b str,
    ) -> impl Iterator<Item = &'a FlowConfig> + use<'a, 'b> {
        self.flows
            .iter()
            .filter(move |f| f.kind == kind && f.from.iter().any(|s| s == source))
    }

    /// The inbound mapping for records of `kind` from `source` (all flows that have one agree).
    pub fn map_in_for(&self, kind: Kind, source: &str) -> Option<&Mapping> {
        self.flows_for(kind, source).find_map(|f| f.map_in.as_ref())
    }

    /// The flow called `name`.
    pub fn flow(&self, name: &str) -> Option<&FlowConfig> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The ownership of `kind` (empty when not configured).
    pub fn ownership_of(&self, kind: Kind) -> Ownership {
        self.ownership.get(&kind).cloned().unwrap_or_default()
    }
}

fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    substituted: &mut Vec<String>,
) -> Result<Config, Issue> {
    let table: toml::Table = toml::from_str(text).map_err(|e| syntax_issue(text, &e))?;
    let mut value = toml::Value::Table(table);
    let literal_secrets = env::literal_secrets(&value);
    *substituted = env::resolve(&mut value, env)?;
    let raw: raw::RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        let message = e.inner().message().to_string();
        // Name the unknown field itself in the path, if the deserializer did not.
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            let mut parent = String::new();
            env::push_key(&mut parent, field);
            if path != parent && !path.ends_with(&format!(".{parent}")) {
                env::push_key(&mut path, field);
            }
        }
        Issue::new(path, message)
    })?;
    let mut config = validate::validate(raw, path)?;
    config.literal_secrets = literal_secrets;
    Ok(config)
}

fn syntax_issue(text: &str, e: &toml::de::Error) -> Issue {
    let at = e
        .span()
        .map(|span| {
            let offset = span.start.min(text.len());
            let before = text.get(..offset).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {col}")
        })
        .unwrap_or_default();
    Issue::new(
        "",
        format!("TOML syntax error{at}: {}", e.message().trim_end()),
    )
}

#[cfg(test)]
mod tests;
