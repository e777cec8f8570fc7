//! `concord reconcile -c FILE [FLOW…] [--heal] [--json]` (issue 16): compare what each
//! destination holds with what the hub says it should hold (`concord_engine::runtime::reconcile`)
//! and print the drift; with `--heal`, plan one corrective write per drifted key through the
//! outbox and run the engine's processor and dispatchers (no readers) until they are delivered.
//!
//! Without `--heal` it only reads (the destinations, and the store, which a running hub may be
//! writing: SQLite readers do not block it). With `--heal` it delivers, so it must not run next
//! to a `concord run` on the same store (two dispatchers); on a running hub use `POST
//! /api/v1/reconcile` or the flow's `reconcile` schedule.
//!
//! Exit status: 0 when nothing drifted (or, with `--heal`, every drifted key was healed and
//! delivered and none is unknown to the hub), 1 when drift remains or a check failed, 2 for a
//! bad configuration or flow name.

use crate::wiring;
use concord_core::reconcile::Drift;
use concord_engine::runtime::reconcile::{Check, DestinationDrift, ReconcileRun};
use concord_engine::EngineError;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ReconcileArgs {
    #[arg(short, long, env = "CONCORD_CONFIG")]
    config: PathBuf,
    /// Flows to reconcile (all when none is named).
    flows: Vec<String>,
    /// Plan one corrective write per drifted key (never a delete) and deliver them.
    #[arg(long)]
    heal: bool,
    /// Print the run as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// With `--heal`: how long to wait for the corrective writes, in seconds.
    #[arg(long, default_value_t = 120)]
    wait: u64,
}

/// Most drifted keys printed per check in text (`--json` has them all).
const SHOWN: usize = 50;

pub async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    // `--heal` runs the engine's delivery tasks: on PostgreSQL it takes the instance lock.
    let (engine, _lock) = if args.heal {
        wiring::instance_engine(&args.config, false).await?
    } else {
        (wiring::engine(&args.config).await?, None)
    };
    let tasks = if args.heal {
        Some(engine.start_for_heal().await?)
    } else {
        None
    };
    let result = engine.reconcile(&args.flows, args.heal, "cli").await;
    let mut settled = true;
    if let (Ok(run), true) = (&result, args.heal) {
        let until = Instant::now() + Duration::from_secs(args.wait);
        settled = false;
        while Instant::now() < until {
            if engine.reconcile_settled(run).await? {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if let Some(mut tasks) = tasks {
        engine.shutdown();
        while tasks.join_next().await.is_some() {}
    }
    let run = result.map_err(|e| match e {
        EngineError::UnknownFlow(_) => anyhow::Error::new(wiring::ConfigProblem(format!(
            "{}: {e}",
            args.config.display()
        ))),
        other => other.into(),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        print!("{}", text(&run));
        if args.heal && !settled {
            println!(
                "some corrective writes were not delivered within {} s: concord status -c {}",
                args.wait,
                args.config.display()
            );
        }
    }
    let unhealed = run.results.iter().any(|r| {
        r.comparison
            .drifted
            .iter()
            .any(|d| !r.healed.contains(&d.key))
    });
    Ok(if run.errors() > 0 || unhealed || !settled {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn check_name(c: Check) -> &'static str {
    match c {
        Check::Destination => "records",
        Check::ChannelStock => "channel stock against available-to-sell",
        Check::Ledger => "the ERP's figures against the hub's ledger",
    }
}

/// The human report.
pub fn text(run: &ReconcileRun) -> String {
    let mut out = String::new();
    let in_flight: usize = run
        .results
        .iter()
        .map(|r| r.comparison.in_flight.len())
        .sum();
    out.push_str(&format!(
        "reconcile: {} check(s), {} drifted key(s), {} in flight (not drift), {} failed check(s)\n",
        run.results.len(),
        run.drifted(),
        in_flight,
        run.errors()
    ));
    for r in &run.results {
        out.push_str(&result_text(r));
    }
    for s in &run.skipped {
        out.push_str(&format!("  not reconciled: {s}\n"));
    }
    out
}

fn result_text(r: &DestinationDrift) -> String {
    let c = &r.comparison;
    let mut out = format!(
        "  flow `{}` → {} ({} {}): ",
        r.flow,
        r.dest,
        r.kind,
        check_name(r.check)
    );
    if let Some(e) = &r.error {
        out.push_str(&format!("FAILED: {e}\n"));
        return out;
    }
    out.push_str(&format!(
        "{} expected, {} listed, {} agree, {} in flight, {} drifted ({} different, {} missing, {} unknown to the hub); {} page(s) read\n",
        c.expected,
        c.actual,
        c.matching,
        c.in_flight.len(),
        c.drifted.len(),
        c.count("different"),
        c.count("missing"),
        c.count("unknown"),
        r.reads
    ));
    for d in c.drifted.iter().take(SHOWN) {
        let line = match &d.drift {
            Drift::Different { fields } => fields
                .iter()
                .map(|f| format!("{}: expected {}, actual {}", f.field, f.expected, f.actual))
                .collect::<Vec<_>>()
                .join("; "),
            Drift::Missing { .. } => "not at the destination".into(),
            Drift::Unknown { .. } => "not known to the hub (reported, never deleted)".into(),
        };
        let healed = if r.healed.contains(&d.key) {
            " [healed]"
        } else {
            ""
        };
        out.push_str(&format!(
            "    {:<9} {}  {line}{healed}\n",
            d.drift.label(),
            d.key
        ));
    }
    if c.drifted.len() > SHOWN {
        out.push_str(&format!(
            "    … and {} more (--json lists them all)\n",
            c.drifted.len() - SHOWN
        ));
    }
    out
}
