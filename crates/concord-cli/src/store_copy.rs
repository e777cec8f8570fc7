//! `concord store copy --from PATH.sqlite --to postgres://… [--json]`: moves a stopped hub's
//! SQLite store into a fresh PostgreSQL database (`concord_store::copy`), then prints each
//! table's row counts and content hashes on both sides (a table, or JSON lines).
//!
//! Must never print the target URL (it may hold a password), and never report success unless
//! every table's count and hash agree (the library commits only then; exit code 1 otherwise).

use anyhow::Context;
use clap::{Args, Subcommand};
use concord_store::copy::{self, CopyError, CopyReport};
use concord_store::{PgOptions, PgStore};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum StoreAction {
    /// Copy a SQLite store into a fresh PostgreSQL database, verified table by table (the hub
    /// must be stopped; the target must hold no rows).
    Copy(CopyArgs),
}

#[derive(Args)]
pub struct CopyArgs {
    /// The SQLite store file (`[store] path` of the stopped hub).
    #[arg(long)]
    from: PathBuf,
    /// The PostgreSQL database, `postgres://user[:password]@host[:port]/db`.
    #[arg(long, env = "CONCORD_STORE_COPY_TO", hide_env_values = true)]
    to: String,
    /// Print JSON lines (one per table, then a summary) instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(action: StoreAction) -> anyhow::Result<ExitCode> {
    match action {
        StoreAction::Copy(args) => run_copy(args).await,
    }
}

async fn run_copy(args: CopyArgs) -> anyhow::Result<ExitCode> {
    if let Err(reason) = PgStore::check_url(&args.to) {
        return Err(crate::wiring::ConfigProblem(format!("--to: {reason}")).into());
    }
    match copy::sqlite_to_postgres(&args.from, &args.to, &PgOptions::default()).await {
        Ok(report) => {
            print_report(&report, args.json, true)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(CopyError::Mismatch { tables, report }) => {
            print_report(&report, args.json, false)?;
            Err(anyhow::anyhow!(
                "verification failed for {tables}: the copy was rolled back, the target is unchanged"
            ))
        }
        Err(e) => Err(e).with_context(|| format!("copying {}", args.from.display())),
    }
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

fn print_report(report: &CopyReport, json: bool, committed: bool) -> anyhow::Result<()> {
    if json {
        for t in &report.tables {
            let mut line = serde_json::to_value(t)?;
            if let Some(obj) = line.as_object_mut() {
                obj.insert("equal".into(), t.equal().into());
            }
            println!("{line}");
        }
        println!(
            "{}",
            serde_json::json!({
                "result": if committed { "copied" } else { "mismatch" },
                "committed": committed,
                "tables": report.tables.len(),
                "rows": report.rows(),
                "tokens_above": report.tokens_above,
            })
        );
        return Ok(());
    }
    println!(
        "{:<20} {:>12} {:>12}  {:<16}  {:<16}  check",
        "table", "source rows", "target rows", "source hash", "target hash"
    );
    for t in &report.tables {
        println!(
            "{:<20} {:>12} {:>12}  {:<16}  {:<16}  {}",
            t.table,
            t.source_rows,
            t.target_rows,
            short(&t.source_hash),
            short(&t.target_hash),
            if t.equal() { "ok" } else { "MISMATCH" }
        );
    }
    if committed {
        println!(
            "copied {} tables, {} rows; every count and hash equal; committed \
             (concord_tokens continues above {})",
            report.tables.len(),
            report.rows(),
            report.tokens_above
        );
    }
    Ok(())
}
