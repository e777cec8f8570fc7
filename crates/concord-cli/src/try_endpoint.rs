//! `concord try -c FILE ENDPOINT KIND [--write RECORD.json]`: one read (or one write of a given
//! record) against the real endpoint, printing every request sent and every answer (credentials
//! redacted), then the records it produced in canonical shape (after the flow's `map_in` and
//! validation) or the write's outcome. For debugging a configuration without running flows:
//! nothing is journaled, no cursor moves.
//!
//! Request traces come from the `http` connector; other connectors show their records only.
//! A credential the endpoint rotates during the call (an OAuth2 refresh token) is kept in the
//! store, exactly as `concord run` would, so trying never locks the hub out.
//!
//! Must never: write to the journal, the outbox or a cursor; print a credential.

use crate::wiring::{self, ConfigProblem};
use anyhow::Context;
use clap::Args;
use concord_connectors::http::client::Exchange;
use concord_connectors::http::HttpConnector;
use concord_core::Kind;
use concord_engine::connector::{Captured, Connector, ReadRequest, WriteOp, WriteOutcome};
use concord_engine::mapping::MapVars;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct TryArgs {
    #[arg(short, long, env = "CONCORD_CONFIG")]
    config: PathBuf,
    /// The endpoint (`[endpoints.NAME]`).
    endpoint: String,
    /// The kind to read or write (`order`, `stock`, …).
    kind: String,
    /// Write this record (a JSON file, in canonical shape: the flow's `map_out` for this
    /// endpoint is applied, as a delivery would) instead of reading.
    #[arg(long, value_name = "RECORD.json")]
    write: Option<PathBuf>,
    /// The write's op: upsert (default), create, update, cancel, delete, amend.
    #[arg(long, default_value = "upsert")]
    op: String,
    /// The record's key (default: its natural key).
    #[arg(long)]
    key: Option<String>,
    /// The record's id at the endpoint, when known (as the xref would give it).
    #[arg(long)]
    id: Option<String>,
    /// An id at the endpoint of what the record refers to: `order:web/1001=ord_123`
    /// (repeatable; bound as `$refs` in the write's programs).
    #[arg(long = "ref", value_name = "KIND:KEY=ID")]
    refs: Vec<String>,
    /// Read from this cursor (default: from the beginning).
    #[arg(long)]
    cursor: Option<String>,
    /// A full listing (`read_snapshot`) instead of a changed-since read.
    #[arg(long)]
    snapshot: bool,
    /// Page size asked for.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

fn print_exchange(x: &Exchange) {
    println!("> {} {}", x.method, x.url);
    for (n, v) in &x.request_headers {
        println!("> {n}: {v}");
    }
    if let Some(b) = &x.request_body {
        println!(">\n{b}");
    }
    match (&x.status, &x.error) {
        (Some(s), _) => {
            println!("< HTTP {s} ({} ms)", x.elapsed_ms);
            for (n, v) in &x.response_headers {
                println!("< {n}: {v}");
            }
            if let Some(b) = &x.response_body {
                println!("<\n{b}");
            }
        }
        (None, Some(e)) => println!("< failed after {} ms: {e}", x.elapsed_ms),
        (None, None) => {}
    }
    println!();
}

pub async fn run(args: TryArgs) -> anyhow::Result<ExitCode> {
    let (config, _) = wiring::load(&args.config)?;
    let kind: Kind = args
        .kind
        .parse()
        .map_err(|e: concord_core::kind::UnknownKind| ConfigProblem(e.to_string()))?;
    let spec = config.endpoints.get(&args.endpoint).ok_or_else(|| {
        ConfigProblem(format!(
            "no endpoint `{}` in {} (it has: {})",
            args.endpoint,
            args.config.display(),
            config
                .endpoints
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut http: Option<Arc<HttpConnector>> = None;
    let connector: Arc<dyn Connector> = if spec.connector == "http" {
        let mut c = HttpConnector::new(spec).map_err(|e| {
            ConfigProblem(format!(
                "endpoints.{}.{}: {}",
                args.endpoint, e.path, e.message
            ))
        })?;
        c.enable_trace();
        let c = Arc::new(c);
        http = Some(c.clone());
        c
    } else {
        concord_connectors::build(spec).map_err(|e| {
            ConfigProblem(format!(
                "endpoints.{}.{}: {}",
                args.endpoint, e.path, e.message
            ))
        })?
    };
    // What the hub kept for this connector (a rotated refresh token), as `run` would.
    let store = wiring::open_store(&config).await?;
    let updates = connector.state_updates();
    if updates.is_some() {
        if let Some(saved) = store
            .connector_state(&args.endpoint)
            .await
            .context("reading the connector's kept state")?
        {
            connector.restore_state(&saved);
        }
    }

    let mut report = json!({"endpoint": args.endpoint, "kind": kind.as_str()});
    let ok = if let Some(file) = &args.write {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let record: Value = serde_json::from_str(&text)
            .map_err(|e| ConfigProblem(format!("{}: not JSON: {e}", file.display())))?;
        let canonical = concord_core::validate(kind, &record)
            .map_err(|e| ConfigProblem(format!("{}: {e}", file.display())))?;
        let key = match &args.key {
            Some(k) => k.clone(),
            None => concord_core::natural_key(kind, &canonical, "")
                .map_err(|e| ConfigProblem(format!("{}: {e} (give --key)", file.display())))?,
        };
        let mapping = config
            .flows
            .iter()
            .filter(|f| f.kind == kind && f.to.contains(&args.endpoint))
            .find_map(|f| f.map_out_for(&args.endpoint));
        let payload = match mapping {
            Some(m) => m
                .apply(
                    &canonical,
                    &MapVars {
                        dest: args.endpoint.clone(),
                        source: String::new(),
                        kind: kind.as_str().into(),
                    },
                )
                .await
                .map_err(|e| ConfigProblem(format!("map_out for `{}`: {e}", args.endpoint)))?,
            None => canonical.clone(),
        };
        let mut refs = BTreeMap::new();
        for r in &args.refs {
            let (k, id) = r
                .split_once('=')
                .ok_or_else(|| ConfigProblem(format!("--ref `{r}`: expected KIND:KEY=ID")))?;
            refs.insert(k.to_string(), id.to_string());
        }
        let op = WriteOp {
            item_id: 0,
            kind,
            key: key.clone(),
            op: args.op.clone(),
            payload: payload.clone(),
            external_id: args.id.clone(),
            refs,
        };
        let outcome = connector.write(vec![op]).await.into_iter().next();
        let (ok, shown) = match &outcome {
            Some(WriteOutcome::Done {
                external_id,
                version,
            }) => (
                true,
                json!({"done": {"external_id": external_id, "version": version}}),
            ),
            Some(WriteOutcome::NoMatch) => (true, json!("no_match")),
            Some(WriteOutcome::CannotAmend { reason }) => (false, json!({"cannot_amend": reason})),
            Some(WriteOutcome::Failed(e)) => (false, json!({"failed": e.to_string()})),
            None => (
                false,
                json!({"failed": "the connector returned no outcome"}),
            ),
        };
        report["key"] = json!(key);
        report["op"] = json!(args.op);
        report["payload"] = payload;
        report["outcome"] = shown;
        ok
    } else {
        let req = ReadRequest {
            kind,
            cursor: args.cursor.as_deref(),
            limit: args.limit.max(1),
            overlap: Duration::ZERO,
        };
        let page = if args.snapshot {
            connector.read_snapshot(req).await
        } else {
            connector.read_changes(req).await
        };
        match page {
            Ok(page) => {
                let map_in = config
                    .flows_for(kind, &args.endpoint)
                    .find_map(|f| f.map_in.clone());
                let mut records = Vec::with_capacity(page.records.len());
                for c in &page.records {
                    records.push(canonical_view(c, map_in.as_ref(), &args.endpoint).await);
                }
                report["records"] = Value::Array(records);
                report["cursor"] = json!(page.cursor);
                report["more"] = json!(page.more);
                true
            }
            Err(e) => {
                report["error"] = json!(e.to_string());
                false
            }
        }
    };
    let trace = http.as_ref().map(|h| h.take_trace()).unwrap_or_default();
    // Keep a credential the call rotated.
    if let Some(rx) = &updates {
        if let Some(v) = rx.borrow().clone() {
            store
                .set_connector_state(&args.endpoint, &v, now_ms())
                .await
                .context("keeping the rotated credential")?;
        }
    }
    if args.json {
        report["requests"] = serde_json::to_value(&trace)?;
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if http.is_none() {
            println!("(request traces are shown for `http` endpoints only)\n");
        }
        for x in &trace {
            print_exchange(x);
        }
        if let Some(obj) = report.as_object_mut() {
            obj.remove("endpoint");
            obj.remove("kind");
        }
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A captured record as the hub would journal it: mapped in and validated, or why not.
async fn canonical_view(
    c: &Captured,
    map_in: Option<&concord_engine::mapping::Mapping>,
    endpoint: &str,
) -> Value {
    let mapped = match map_in {
        Some(m) => {
            m.apply(
                &c.record,
                &MapVars {
                    dest: String::new(),
                    source: endpoint.to_string(),
                    kind: c.kind.as_str().into(),
                },
            )
            .await
        }
        None => Ok(c.record.clone()),
    };
    let mut v = json!({"external_id": c.external_id, "version": c.version, "record": c.record});
    match mapped {
        Err(e) => v["error"] = json!(format!("inbound mapping: {e}")),
        Ok(r) => match concord_core::validate(c.kind, &r) {
            Ok(canonical) => v["canonical"] = canonical,
            Err(e) => v["error"] = json!(e.to_string()),
        },
    }
    v
}
