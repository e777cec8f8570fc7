//! Operator commands that work on the store directly: `dlq list|replay|drop` and `status`
//! (queues, orders by state, parked items and what they wait on, feeds).
//! They are safe to run beside a running `concord run` on the same SQLite file (SQLite's own
//! locking serialises writers; the running engine picks replayed items up on its next poll).

use crate::wiring;
use clap::Subcommand;
use concord_core::Kind;
use concord_store::{DeadLetterFilter, DeadLetterState};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum DlqAction {
    /// List dead letters (open ones unless --state is given).
    List {
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        kind: Option<Kind>,
        /// open, replayed or dropped
        #[arg(long, value_parser = parse_state)]
        state: Option<DeadLetterState>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Replay dead letters by id, or every open one with --all.
    Replay {
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
    /// Drop dead letters by id, or every open one with --all (they stay in the audit trail).
    Drop {
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
}

fn parse_state(s: &str) -> Result<DeadLetterState, String> {
    match s {
        "open" => Ok(DeadLetterState::Open),
        "replayed" => Ok(DeadLetterState::Replayed),
        "dropped" => Ok(DeadLetterState::Dropped),
        other => Err(format!(
            "unknown state `{other}`, expected open, replayed or dropped"
        )),
    }
}

async fn select_ids(
    engine: &concord_engine::Engine,
    ids: Vec<i64>,
    all: bool,
) -> anyhow::Result<Vec<i64>> {
    if all {
        let open = engine
            .store()
            .dead_letters(DeadLetterFilter {
                limit: Some(100_000),
                ..Default::default()
            })
            .await?;
        return Ok(open.into_iter().map(|d| d.id).collect());
    }
    if ids.is_empty() {
        return Err(wiring::ConfigProblem("give dead-letter ids, or --all".into()).into());
    }
    Ok(ids)
}

pub async fn dlq(config: &Path, action: DlqAction) -> anyhow::Result<ExitCode> {
    let engine = wiring::engine(config).await?;
    match action {
        DlqAction::List {
            endpoint,
            kind,
            state,
            limit,
            json,
        } => {
            let list = engine
                .store()
                .dead_letters(DeadLetterFilter {
                    endpoint,
                    kind,
                    state,
                    key: None,
                    limit: Some(limit),
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no dead letters");
            } else {
                println!(
                    "{:>6}  {:<8} {:<10} {:<9} {:<24} {:>3}  reason",
                    "id", "dir", "endpoint", "kind", "key", "att"
                );
                for d in list {
                    let dir = format!("{:?}", d.direction).to_lowercase();
                    println!(
                        "{:>6}  {:<8} {:<10} {:<9} {:<24} {:>3}  {}",
                        d.id, dir, d.endpoint, d.kind, d.key, d.attempts, d.reason
                    );
                }
            }
        }
        DlqAction::Replay { ids, all } => {
            let ids = select_ids(&engine, ids, all).await?;
            let asked = ids.len();
            let done = engine.replay_dead_letters(ids).await?;
            println!(
                "replayed {} of {asked} dead letter(s): {:?}",
                done.len(),
                done
            );
        }
        DlqAction::Drop { ids, all } => {
            let ids = select_ids(&engine, ids, all).await?;
            let asked = ids.len();
            let done = engine.drop_dead_letters(ids).await?;
            println!(
                "dropped {} of {asked} dead letter(s): {:?}",
                done.len(),
                done
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(config: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let engine = wiring::engine(config).await?;
    let store = engine.store();
    let stats = store.stats().await?;
    let parked = engine.parked(50).await?;
    let orders = match engine.order_counts().await {
        Ok(c) => c,
        Err(concord_engine::EngineError::Store(concord_store::StoreError::Unsupported(_))) => {
            Default::default()
        }
        Err(e) => return Err(e.into()),
    };
    let mut cursors = Vec::new();
    for flow in &engine.config().flows {
        for src in &flow.from {
            let stream = match flow.mode {
                concord_engine::config::Mode::Migration => {
                    format!("{}:migration:{}", flow.kind, flow.name)
                }
                _ => flow.kind.as_str().to_string(),
            };
            let value = store.cursor(src, &stream).await?;
            cursors.push(
                json!({"flow": flow.name, "endpoint": src, "kind": flow.kind, "cursor": value}),
            );
        }
    }
    if as_json {
        let out = json!({"store": stats, "orders": orders, "parked": parked, "cursors": cursors});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "journal: {} entries, {} pending, {} rejected; open dead letters: {}",
        stats.journal_total, stats.journal_pending, stats.journal_rejected, stats.dead_letters_open
    );
    println!(
        "\n{:<12} {:>8} {:>8} {:>7} {:>9} {:>6}",
        "destination", "pending", "inflight", "parked", "done", "dead"
    );
    for q in &stats.queues {
        println!(
            "{:<12} {:>8} {:>8} {:>7} {:>9} {:>6}",
            q.dest, q.pending, q.inflight, q.parked, q.done, q.dead
        );
    }
    println!("\nfeeds:");
    for c in &cursors {
        println!(
            "  {:<24} {:<10} {:<9} cursor {}",
            c["flow"].as_str().unwrap_or(""),
            c["endpoint"].as_str().unwrap_or(""),
            c["kind"].as_str().unwrap_or(""),
            c["cursor"]
        );
    }
    if !orders.is_empty() {
        println!("\norders by state:");
        // Lifecycle order, then anything else the store holds.
        let known = concord_core::model::OrderStatus::ALL.map(|s| s.as_str());
        for state in known.iter().copied().chain(
            orders
                .keys()
                .map(String::as_str)
                .filter(|s| !known.contains(s)),
        ) {
            if let Some(n) = orders.get(state) {
                println!("  {state:<20} {n:>8}");
            }
        }
    }
    if !parked.is_empty() {
        println!("\nparked (waiting for dependencies at the destination):");
        let now = engine.now();
        for p in &parked {
            let waiting: Vec<String> = p
                .waiting_on
                .iter()
                .map(|(k, key)| format!("{k} {key}"))
                .collect();
            println!(
                "  #{:<6} {} {} → {} ({}): waiting for {} (for {}s)",
                p.item_id,
                p.kind,
                p.key,
                p.dest,
                p.op,
                waiting.join(", "),
                (now - p.since).max(0) / 1000
            );
        }
        println!("  (`concord order KEY` shows an order's whole history)");
    }
    Ok(ExitCode::SUCCESS)
}
