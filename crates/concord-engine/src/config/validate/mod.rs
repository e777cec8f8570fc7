//! Raw config → checked config. No I/O: durations, addresses, URLs and cron schedules are
//! parsed, jq programs compiled, names and cross-references checked, defaults filled in.
//! The first problem found is reported, with the path of its field.
//!
//! [`validate`] is the only entry point: it checks the store, server, engine, endpoints, flows and
//! ownership here, then hands `[inventory]` to `inventory.rs` and `[pricing]` to `pricing.rs`.
//! Nothing in this module may do I/O or report more than the first problem.

mod access;
mod alerts;
mod inventory;
mod orders;
mod pricing;
mod reconcile;

use super::raw::{RawConfig, RawEndpoint, RawEngine, RawFlow, RawMode, RawPattern, RawServer};
use super::{Config, EngineSettings, FlowConfig, Issue, Mode, Pattern, ServerConfig, StoreConfig};
use crate::connector::EndpointSpec;
use crate::mapping::{Budget, Lane, Mapping};
use concord_core::{Kind, Ownership};
use inventory::inventory;
use pricing::pricing;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

const DEFAULT_STORE: &str = "concord.sqlite";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_OVERLAP: Duration = Duration::from_secs(5);
const DEFAULT_PAGE_SIZE: usize = 500;
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

type Result<T> = std::result::Result<T, Issue>;

pub(crate) fn validate(raw: RawConfig, file: &Path) -> Result<Config> {
    let store = StoreConfig {
        path: store_path(raw.store.path.as_deref(), file)?,
        retention: duration(
            "store.retention",
            raw.store.retention.as_deref(),
            DEFAULT_RETENTION,
            false,
        )?,
        synchronous: synchronous(raw.store.synchronous.as_deref())?,
        write_queue: positive(
            "store.write_queue",
            raw.store.write_queue,
            concord_store::SqliteOptions::DEFAULT_WRITE_QUEUE,
        )?,
    };
    let server = server(&raw.server)?;
    let engine = engine(&raw.engine)?;

    if raw.endpoints.is_empty() {
        return Err(Issue::new(
            "endpoints",
            "at least one endpoint is required (an `[endpoints.NAME]` table)",
        ));
    }
    let mut endpoints = BTreeMap::new();
    for (name, ep) in raw.endpoints {
        let spec = endpoint(&name, ep)?;
        endpoints.insert(name, spec);
    }

    if raw.flows.is_empty() {
        return Err(Issue::new(
            "flows",
            "at least one flow is required (a `[[flows]]` table)",
        ));
    }
    let mut flows: Vec<FlowConfig> = Vec::with_capacity(raw.flows.len());
    for (i, f) in raw.flows.into_iter().enumerate() {
        let at = format!("flows[{i}]");
        let flow = flow(&at, f, &endpoints, &engine.jq)?;
        if let Some(j) = flows.iter().position(|g| g.name == flow.name) {
            return Err(Issue::new(
                format!("{at}.name"),
                format!(
                    "duplicate flow name `{}` (already used by flows[{j}])",
                    flow.name
                ),
            ));
        }
        flows.push(flow);
    }
    inbound_mappings_agree(&flows)?;

    let mut ownership = BTreeMap::new();
    for (kind_name, own) in raw.ownership {
        let mut at = String::from("ownership");
        super::env::push_key(&mut at, &kind_name);
        let kind = Kind::from_str(&kind_name).map_err(|e| Issue::new(&at, e.to_string()))?;
        if let Some(owner) = &own.default {
            known_endpoint(&format!("{at}.default"), owner, &endpoints)?;
        }
        for (field, owner) in &own.fields {
            let mut p = format!("{at}.fields");
            super::env::push_key(&mut p, field);
            known_endpoint(&p, owner, &endpoints)?;
        }
        ownership.insert(
            kind,
            Ownership {
                default: own.default,
                fields: own.fields,
            },
        );
    }

    let inventory = match raw.inventory {
        Some(inv) => Some(inventory(inv, &endpoints, &flows)?),
        None => None,
    };

    let pricing = match raw.pricing {
        Some(p) => Some(pricing(p)?),
        None => None,
    };
    let orders = orders::orders(raw.orders)?;
    let alerts = alerts::alerts(raw.alerts, &endpoints)?;
    let admin = access::admin(raw.admin)?;
    let commerce = access::commerce(raw.commerce, &endpoints)?;
    let metrics = access::metrics(raw.metrics)?;

    Ok(Config {
        path: file.to_path_buf(),
        store,
        server,
        engine,
        endpoints,
        flows,
        ownership,
        inventory,
        pricing,
        orders,
        alerts,
        admin,
        commerce,
        metrics,
        literal_secrets: Vec::new(),
    })
}

fn store_path(raw: Option<&str>, file: &Path) -> Result<PathBuf> {
    let p = raw.unwrap_or(DEFAULT_STORE);
    if p.trim().is_empty() {
        return Err(Issue::new("store.path", "must not be empty"));
    }
    let p = Path::new(p);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new("")).join(p)
    })
}

fn server(raw: &RawServer) -> Result<ServerConfig> {
    let mut s = ServerConfig::default();
    if let Some(listen) = &raw.listen {
        s.listen = listen.trim().parse().map_err(|_| {
            Issue::new(
                "server.listen",
                format!("expected an address and port like \"127.0.0.1:8080\" or \"[::]:8080\", got {listen:?}"),
            )
        })?;
    }
    if let Some(size) = raw.max_body_bytes {
        s.max_body_bytes = positive("server.max_body_bytes", Some(size.0), 0)?;
    }
    if let Some(size) = raw.api_max_body_bytes {
        s.api_max_body_bytes = positive("server.api_max_body_bytes", Some(size.0), 0)?;
    }
    s.header_read_timeout = duration(
        "server.header_read_timeout",
        raw.header_read_timeout.as_deref(),
        s.header_read_timeout,
        false,
    )?;
    s.body_read_timeout = duration(
        "server.body_read_timeout",
        raw.body_read_timeout.as_deref(),
        s.body_read_timeout,
        false,
    )?;
    s.request_timeout = duration(
        "server.request_timeout",
        raw.request_timeout.as_deref(),
        s.request_timeout,
        false,
    )?;
    s.max_connections = positive(
        "server.max_connections",
        raw.max_connections,
        s.max_connections,
    )?;
    Ok(s)
}

fn synchronous(raw: Option<&str>) -> Result<concord_store::Synchronous> {
    use concord_store::Synchronous;
    match raw.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("full") => Ok(Synchronous::Full),
        Some("normal") => Ok(Synchronous::Normal),
        Some(_) => Err(Issue::new(
            "store.synchronous",
            format!(
                "expected \"full\" or \"normal\", got {:?}",
                raw.unwrap_or_default()
            ),
        )),
    }
}

fn engine(raw: &RawEngine) -> Result<EngineSettings> {
    let d = EngineSettings::default();
    let s = EngineSettings {
        batch_size: positive("engine.batch_size", raw.batch_size, d.batch_size)?,
        lease: duration("engine.lease", raw.lease.as_deref(), d.lease, false)?,
        backoff_base: duration(
            "engine.backoff_base",
            raw.backoff_base.as_deref(),
            d.backoff_base,
            false,
        )?,
        backoff_cap: duration(
            "engine.backoff_cap",
            raw.backoff_cap.as_deref(),
            d.backoff_cap,
            false,
        )?,
        max_attempts: positive_u32("engine.max_attempts", raw.max_attempts, d.max_attempts)?,
        breaker_threshold: positive_u32(
            "engine.breaker_threshold",
            raw.breaker_threshold,
            d.breaker_threshold,
        )?,
        breaker_open: duration(
            "engine.breaker_open",
            raw.breaker_open.as_deref(),
            d.breaker_open,
            false,
        )?,
        breaker_max_open: duration(
            "engine.breaker_max_open",
            raw.breaker_max_open.as_deref(),
            d.breaker_max_open,
            false,
        )?,
        endpoint_concurrency: positive(
            "engine.endpoint_concurrency",
            raw.endpoint_concurrency,
            d.endpoint_concurrency,
        )?,
        retry_after_max: duration(
            "engine.retry_after_max",
            raw.retry_after_max.as_deref(),
            d.retry_after_max,
            true,
        )?,
        task_restart_limit: positive_u32(
            "engine.task_restart_limit",
            raw.task_restart_limit,
            d.task_restart_limit,
        )?,
        task_restart_window: duration(
            "engine.task_restart_window",
            raw.task_restart_window.as_deref(),
            d.task_restart_window,
            false,
        )?,
        jq: jq_budget(raw)?,
    };
    if s.backoff_cap < s.backoff_base {
        return Err(Issue::new(
            "engine.backoff_cap",
            format!(
                "must be at least `backoff_base` ({})",
                humantime::format_duration(s.backoff_base)
            ),
        ));
    }
    if s.breaker_max_open < s.breaker_open {
        return Err(Issue::new(
            "engine.breaker_max_open",
            format!(
                "must be at least `breaker_open` ({})",
                humantime::format_duration(s.breaker_open)
            ),
        ));
    }
    Ok(s)
}

/// Longest `jq_timeout`: a jq thread is held that long by a runaway program.
const MAX_JQ_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest `jq_max_bytes`: every mapping's input is copied once to its jq thread.
const MAX_JQ_BYTES: u64 = 64 << 20;

fn jq_budget(raw: &RawEngine) -> Result<Budget> {
    let d = Budget::default();
    let timeout = duration(
        "engine.jq_timeout",
        raw.jq_timeout.as_deref(),
        d.timeout,
        false,
    )?;
    if timeout > MAX_JQ_TIMEOUT {
        return Err(Issue::new(
            "engine.jq_timeout",
            format!(
                "must be at most {}: a runaway program holds a jq thread that long",
                humantime::format_duration(MAX_JQ_TIMEOUT)
            ),
        ));
    }
    let steps = match raw.jq_steps {
        None => d.steps,
        Some(0) => {
            return Err(Issue::new(
                "engine.jq_steps",
                "must be a positive integer, got 0",
            ))
        }
        Some(n) => n,
    };
    let max_bytes = match raw.jq_max_bytes {
        None => d.max_bytes,
        Some(size) if size.0 > MAX_JQ_BYTES => {
            return Err(Issue::new(
                "engine.jq_max_bytes",
                format!("must be at most 64MiB, got {} bytes", size.0),
            ))
        }
        Some(size) => positive("engine.jq_max_bytes", Some(size.0), 0)?,
    };
    Ok(Budget {
        steps,
        timeout,
        max_bytes,
    })
}

fn endpoint(name: &str, raw: RawEndpoint) -> Result<EndpointSpec> {
    let mut at = String::from("endpoints");
    super::env::push_key(&mut at, name);
    check_name(&at, name, "endpoint name")?;
    if raw.connector.trim().is_empty() {
        return Err(Issue::new(
            format!("{at}.connector"),
            "expected a connector type such as \"sandbox-erp\", got an empty string",
        ));
    }
    check_url(&raw.url).map_err(|m| Issue::new(format!("{at}.url"), m))?;
    if raw.webhook_secret.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(Issue::new(
            format!("{at}.webhook_secret"),
            "is empty (is its environment variable set to an empty value?); remove the field if the endpoint sends no webhooks",
        ));
    }
    let timeout = duration(
        &format!("{at}.timeout"),
        raw.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        false,
    )?;
    let options = match raw.options {
        Some(table) => toml_to_json(toml::Value::Table(table)),
        None => Value::Object(Default::default()),
    };
    let max_response_bytes = match raw.max_response_bytes {
        Some(size) => positive(&format!("{at}.max_response_bytes"), Some(size.0), 0)?,
        None => crate::outbound::DEFAULT_MAX_RESPONSE_BYTES,
    };
    let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
    let credentials = sent_credentials(&raw.url, &options);
    crate::outbound::check_transport(&raw.url, credentials.as_deref(), allow_insecure_http)
        .map_err(|m| Issue::new(format!("{at}.url"), m))?;
    Ok(EndpointSpec {
        name: name.to_string(),
        connector: raw.connector,
        url: raw.url,
        webhook_secret: raw.webhook_secret,
        timeout,
        max_response_bytes,
        allow_insecure_http,
        options,
    })
}

/// What an endpoint sends to its server that must not travel in clear: the first non-empty
/// option under a secret-looking name (`options.password`), else user info or a query string
/// in its URL. (Its `webhook_secret` is only used to check what the endpoint sends us.)
fn sent_credentials(url: &str, options: &Value) -> Option<String> {
    fn find(v: &Value, path: &mut String) -> bool {
        match v {
            Value::Object(map) => map.iter().any(|(k, v)| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let secret = crate::secret::is_secret_name(k)
                    && !matches!(v, Value::Null)
                    && v.as_str().is_none_or(|s| !s.is_empty());
                if secret || find(v, path) {
                    return true;
                }
                path.truncate(len);
                false
            }),
            Value::Array(items) => items.iter().any(|i| find(i, path)),
            _ => false,
        }
    }
    let mut path = String::from("options");
    if find(options, &mut path) {
        return Some(format!("credentials (`{path}`)"));
    }
    crate::outbound::url_carries_credentials(url)
        .then(|| "the credentials in the url's user info or query string".to_string())
}

fn flow(
    at: &str,
    raw: RawFlow,
    endpoints: &BTreeMap<String, EndpointSpec>,
    budget: &Budget,
) -> Result<FlowConfig> {
    check_name(&format!("{at}.name"), &raw.name, "flow name")?;
    let field = |name: &str| format!("{at}.{name}");

    // Pattern and endpoints.
    let pattern = match raw.pattern {
        RawPattern::Broadcast => Pattern::Broadcast,
        RawPattern::Aggregation => Pattern::Aggregation,
        RawPattern::Bidirectional => Pattern::Bidirectional,
        RawPattern::Correlation => Pattern::Correlation,
        RawPattern::Migration => Pattern::Migration,
    };
    let (from, to) = if pattern == Pattern::Bidirectional {
        for (name, given) in [("from", raw.from.is_some()), ("to", raw.to.is_some())] {
            if given {
                return Err(Issue::new(
                    field(name),
                    "a bidirectional flow names its two endpoints in `between = [\"a\", \"b\"]`, not in `from`/`to`",
                ));
            }
        }
        let Some(between) = raw.between else {
            return Err(Issue::new(
                field("between"),
                "missing: a bidirectional flow needs `between = [\"a\", \"b\"]` (two endpoints)",
            ));
        };
        endpoint_list(&field("between"), &between, endpoints)?;
        if between.len() != 2 {
            return Err(Issue::new(
                field("between"),
                format!(
                    "expected exactly 2 distinct endpoints, got {}",
                    between.len()
                ),
            ));
        }
        (between.clone(), between)
    } else {
        if raw.between.is_some() {
            return Err(Issue::new(
                field("between"),
                format!(
                    "`between` is only for bidirectional flows; a {} flow uses `from` and `to`",
                    pattern.as_str()
                ),
            ));
        }
        let from = required_list(&field("from"), raw.from, "source")?;
        let to = required_list(&field("to"), raw.to, "destination")?;
        endpoint_list(&field("from"), &from, endpoints)?;
        endpoint_list(&field("to"), &to, endpoints)?;
        let (from_rule, to_rule) = match pattern {
            Pattern::Broadcast => (Arity::One, Arity::AtLeastOne),
            Pattern::Aggregation => (Arity::AtLeastOne, Arity::One),
            _ => (Arity::AtLeastOne, Arity::AtLeastOne),
        };
        from_rule.check(&field("from"), pattern, from.len(), "source")?;
        to_rule.check(&field("to"), pattern, to.len(), "destination")?;
        if let Some(both) = to.iter().find(|t| from.contains(t)) {
            return Err(Issue::new(
                field("to"),
                format!(
                    "`{both}` is both a source and a destination; only a bidirectional flow (`between`) may do that"
                ),
            ));
        }
        (from, to)
    };

    // Mode and its fields.
    let mode_kind = match (raw.mode, pattern) {
        (Some(m), _) => m,
        (None, Pattern::Migration) => RawMode::Migration,
        (None, _) => {
            return Err(Issue::new(
                field("mode"),
                "missing: expected one of \"realtime\", \"delta\", \"batch\", \"migration\"",
            ))
        }
    };
    if pattern == Pattern::Migration && mode_kind != RawMode::Migration {
        return Err(Issue::new(
            field("mode"),
            "the migration pattern runs once: expected mode \"migration\"",
        ));
    }
    let mode_name = match mode_kind {
        RawMode::Realtime => "realtime",
        RawMode::Delta => "delta",
        RawMode::Batch => "batch",
        RawMode::Migration => "migration",
    };
    for (name, given, allowed) in [
        ("poll", raw.poll.is_some(), RawMode::Realtime),
        ("interval", raw.interval.is_some(), RawMode::Delta),
        ("schedule", raw.schedule.is_some(), RawMode::Batch),
    ] {
        if given && mode_kind != allowed {
            let owner = match allowed {
                RawMode::Realtime => "realtime",
                RawMode::Delta => "delta",
                _ => "batch",
            };
            return Err(Issue::new(
                field(name),
                format!("`{name}` is only for mode \"{owner}\", but this flow's mode is \"{mode_name}\""),
            ));
        }
    }
    let mode = match mode_kind {
        RawMode::Realtime => Mode::Realtime {
            poll: match raw.poll.as_deref() {
                None => None,
                Some(p) => Some(duration(&field("poll"), Some(p), Duration::ZERO, false)?),
            },
        },
        RawMode::Delta => {
            let Some(interval) = raw.interval.as_deref() else {
                return Err(Issue::new(
                    field("interval"),
                    "missing: mode \"delta\" needs `interval`, how often to poll (e.g. \"2s\")",
                ));
            };
            Mode::Delta {
                interval: duration(&field("interval"), Some(interval), Duration::ZERO, false)?,
            }
        }
        RawMode::Batch => {
            let Some(expr) = raw.schedule else {
                return Err(Issue::new(
                    field("schedule"),
                    "missing: mode \"batch\" needs `schedule`, a cron expression with seconds (e.g. \"0 */5 * * * *\")",
                ));
            };
            let schedule = cron::Schedule::from_str(expr.trim()).map_err(|e| {
                Issue::new(
                    field("schedule"),
                    format!("invalid cron schedule {expr:?}: {e} (expected 6 or 7 fields: sec min hour day-of-month month day-of-week [year])"),
                )
            })?;
            Mode::Batch {
                schedule: Box::new(schedule),
                expr,
            }
        }
        RawMode::Migration => Mode::Migration,
    };

    // jq programs.
    let filter = raw
        .filter
        .as_deref()
        .map(|src| compile(&field("filter"), src, budget, Lane::Outbound))
        .transpose()?;
    let map_in = raw
        .map_in
        .as_deref()
        .map(|src| compile(&field("map_in"), src, budget, Lane::Inbound))
        .transpose()?;
    let mut map_out = BTreeMap::new();
    for (dest, src) in raw.map_out {
        let mut p = field("map_out");
        super::env::push_key(&mut p, &dest);
        if dest != "*" && !to.contains(&dest) {
            return Err(Issue::new(
                p,
                format!(
                    "`{dest}` is not a destination of this flow (expected one of {} or \"*\")",
                    quoted_list(&to)
                ),
            ));
        }
        let m = compile(&p, &src, budget, Lane::Outbound)?;
        map_out.insert(dest, m);
    }

    let reconcile = reconcile::schedule(at, raw.kind, pattern, raw.reconcile, raw.heal)?;
    Ok(FlowConfig {
        name: raw.name,
        kind: raw.kind,
        pattern,
        reconcile,
        mode,
        from,
        to,
        filter,
        map_in,
        map_out,
        overlap: duration(
            &field("overlap"),
            raw.overlap.as_deref(),
            DEFAULT_OVERLAP,
            true,
        )?,
        page_size: positive(&field("page_size"), raw.page_size, DEFAULT_PAGE_SIZE)?,
    })
}

/// All flows that read one kind from one endpoint must map it in the same way: the record is
/// captured (and mapped) once per endpoint and kind, not once per flow.
fn inbound_mappings_agree(flows: &[FlowConfig]) -> Result<()> {
    let mut seen: BTreeMap<(&str, Kind), (usize, &Mapping)> = BTreeMap::new();
    for (i, f) in flows.iter().enumerate() {
        let Some(m) = &f.map_in else { continue };
        for source in &f.from {
            match seen.get(&(source.as_str(), f.kind)) {
                Some((j, other)) if other.source().trim() != m.source().trim() => {
                    return Err(Issue::new(
                        format!("flows[{i}].map_in"),
                        format!(
                            "inbound mapping must agree: flows[{j}] (`{}`) also reads {} from `{source}` with a different `map_in`",
                            flows[*j].name, f.kind
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert((source.as_str(), f.kind), (i, m));
                }
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Arity {
    One,
    AtLeastOne,
}

impl Arity {
    fn check(self, path: &str, pattern: Pattern, n: usize, what: &str) -> Result<()> {
        match self {
            Arity::One if n != 1 => Err(Issue::new(
                path,
                format!("{} flow has exactly one {what}, got {n}", article(pattern)),
            )),
            Arity::AtLeastOne if n == 0 => Err(Issue::new(
                path,
                format!(
                    "{} flow needs at least one {what}, got none",
                    article(pattern)
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// "a broadcast", "an aggregation".
fn article(pattern: Pattern) -> String {
    let name = pattern.as_str();
    let an = name.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {name}", if an { "an" } else { "a" })
}

fn required_list(path: &str, list: Option<Vec<String>>, what: &str) -> Result<Vec<String>> {
    list.ok_or_else(|| {
        Issue::new(
            path,
            format!("missing: expected a list of {what} endpoint names, like [\"erp\"]"),
        )
    })
}

/// Every name is a defined endpoint, and none is listed twice.
fn endpoint_list(
    path: &str,
    names: &[String],
    endpoints: &BTreeMap<String, EndpointSpec>,
) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        let p = format!("{path}[{i}]");
        known_endpoint(&p, name, endpoints)?;
        if !seen.insert(name) {
            return Err(Issue::new(p, format!("`{name}` is listed twice")));
        }
    }
    Ok(())
}

fn known_endpoint(
    path: &str,
    name: &str,
    endpoints: &BTreeMap<String, EndpointSpec>,
) -> Result<()> {
    if endpoints.contains_key(name) {
        return Ok(());
    }
    let known: Vec<String> = endpoints.keys().cloned().collect();
    Err(Issue::new(
        path,
        format!(
            "unknown endpoint `{name}` (expected one of {})",
            quoted_list(&known)
        ),
    ))
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_name(path: &str, name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Issue::new(
            path,
            format!(
                "invalid {what} {name:?}: expected lowercase letters, digits, `_` and `-` only"
            ),
        ))
    }
}

/// Compile the jq program at `path`, named by that path and run under `budget` on `lane`.
/// Nothing is run here: a program's cost depends on the records it will be fed.
fn compile(path: &str, source: &str, budget: &Budget, lane: Lane) -> Result<Mapping> {
    Mapping::compile_as(path, source, *budget, lane).map_err(|e| Issue::new(path, e.to_string()))
}

fn duration(path: &str, raw: Option<&str>, default: Duration, zero_ok: bool) -> Result<Duration> {
    let Some(text) = raw else {
        return Ok(default);
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        Issue::new(
            path,
            format!("expected a duration like \"200ms\", \"30s\" or \"5m\", got {text:?}: {e}"),
        )
    })?;
    if d.is_zero() && !zero_ok {
        return Err(Issue::new(path, "must be longer than zero"));
    }
    // The engine adds durations to millisecond timestamps (i64): keep them far from overflow.
    if d > MAX_DURATION {
        return Err(Issue::new(
            path,
            format!("must be at most 100 years, got {text:?}"),
        ));
    }
    Ok(d)
}

/// A config number that is a quantity or an amount (`check`: `concord_core::limits::quantity` or
/// `money`): within the bounded domain the rest of the hub assumes, named by its path.
fn config_amount(
    path: &str,
    raw: u64,
    check: fn(&str, i64) -> std::result::Result<i64, concord_core::limits::LimitError>,
) -> Result<i64> {
    let n = i64::try_from(raw).map_err(|_| Issue::new(path, format!("{raw} is too large")))?;
    check(path, n).map_err(|e| Issue::new(path, e.message))
}

fn positive(path: &str, raw: Option<u64>, default: usize) -> Result<usize> {
    match raw {
        None => Ok(default),
        Some(0) => Err(Issue::new(path, "must be a positive integer, got 0")),
        Some(n) => usize::try_from(n).map_err(|_| Issue::new(path, format!("{n} is too large"))),
    }
}

fn positive_u32(path: &str, raw: Option<u64>, default: u32) -> Result<u32> {
    match raw {
        None => Ok(default),
        Some(0) => Err(Issue::new(path, "must be a positive integer, got 0")),
        Some(n) => u32::try_from(n).map_err(|_| Issue::new(path, format!("{n} is too large"))),
    }
}

/// An `http://` or `https://` URL with a host (and a numeric port, if any). The value is never
/// quoted back: URLs can carry credentials.
fn check_url(url: &str) -> std::result::Result<(), String> {
    const EXPECTED: &str =
        "expected an http(s) URL like \"https://erp.example.com\" or \"http://127.0.0.1:7001\"";
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else if let Some((scheme, _)) = url.split_once("://") {
        let scheme: String = scheme.chars().take(16).collect();
        return Err(format!(
            "{EXPECTED}; scheme `{scheme}` is not http or https"
        ));
    } else {
        return Err(format!(
            "{EXPECTED}; the scheme (http:// or https://) is missing"
        ));
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{EXPECTED}; it contains whitespace"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, tail)) if !h.is_empty() => match tail {
                "" => (h, None),
                t => match t.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => return Err(format!("{EXPECTED}; the host is malformed")),
                },
            },
            _ => return Err(format!("{EXPECTED}; the IPv6 host is malformed")),
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{EXPECTED}; the host is missing"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(format!(
                "{EXPECTED}; the port is not a number from 0 to 65535"
            ));
        }
    }
    Ok(())
}

/// Connector options go to connectors as JSON. TOML datetimes become their RFC 3339 text.
fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:7001",
            "https://erp.example.com",
            "HTTPS://erp.example.com/api/v1?x=1",
            "http://user:pw@host:80/",
            "http://[::1]:8080/x",
            "http://localhost",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ftp://x", "scheme `ftp`"),
            ("erp.example.com", "scheme (http:// or https://) is missing"),
            ("http://", "host is missing"),
            ("http:///path", "host is missing"),
            ("http://host:99999", "port"),
            ("http://host:abc", "port"),
            ("http://ho st", "whitespace"),
            ("http://[::1", "IPv6"),
        ] {
            let err = check_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
