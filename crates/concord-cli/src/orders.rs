//! `concord order KEY [--json]`: one order's whole history from the store — its lifecycle state
//! and facts, every lifecycle event (refused ones with their reason), the journal entries of the
//! order and of its shipments, invoices, payments and refunds, every delivery attempt and every
//! dead letter. Read-only; safe beside a running `concord run`. Must never write to the store.

use crate::wiring;
use std::path::Path;
use std::process::ExitCode;

pub async fn order(config: &Path, key: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let engine = wiring::engine(config).await?;
    let Some(h) = engine.order_history(key).await? else {
        return Err(wiring::ConfigProblem(format!(
            "no order `{key}` (keys are `channel/number`, e.g. `web1/1001`)"
        ))
        .into());
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(ExitCode::SUCCESS);
    }
    let o = &h.order;
    println!("order {}  (channel {})", o.key, o.channel);
    println!("state: {}", o.state);
    if let Some(at) = o.accepted_at {
        println!("accepted by the ERP: {}", fmt_millis(at));
    }
    if let Some(r) = o.facts.get("reference").and_then(|v| v.as_str()) {
        println!("ERP reference: {r}");
    }
    println!("facts: {}", o.facts);
    if !h.children.is_empty() {
        let c: Vec<String> = h
            .children
            .iter()
            .map(|(k, key)| format!("{k} {key}"))
            .collect();
        println!("records: {}", c.join(", "));
    }
    println!("\nevents:");
    for e in &h.events {
        let ev = &e.event;
        let from = ev.from.as_deref().unwrap_or("-");
        let cause = match (&ev.cause_kind, &ev.cause_key) {
            (Some(k), Some(key)) => format!(" by {k} {key}"),
            _ => String::new(),
        };
        let verdict = if ev.applied { "" } else { " REFUSED" };
        let reason = ev
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        println!(
            "  {}  {:<10} {from} → {}{verdict}{cause}{reason}",
            fmt_millis(ev.at),
            ev.event,
            ev.to
        );
    }
    println!("\njournal:");
    for j in &h.journal {
        println!(
            "  #{:<6} {}  {} {} from {} v{}: {:?} {}",
            j.id,
            fmt_millis(j.received_at),
            j.kind,
            j.key.as_deref().unwrap_or(&j.external_id),
            j.endpoint,
            j.version,
            j.status,
            j.note.as_deref().unwrap_or("")
        );
    }
    println!("\ndelivery attempts:");
    for a in &h.attempts {
        println!(
            "  {}  {} {} {} → {}: {}{}",
            fmt_millis(a.at),
            a.op,
            a.kind,
            a.key,
            a.dest,
            a.outcome,
            a.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    if !h.dead_letters.is_empty() {
        println!("\ndead letters:");
        for d in &h.dead_letters {
            println!(
                "  #{:<5} {:?} {:?} {} {} at {}: {}",
                d.id, d.state, d.direction, d.kind, d.key, d.endpoint, d.reason
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// UTC RFC 3339 with milliseconds from epoch milliseconds.
fn fmt_millis(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_millis(t).to_string()
}
