//! `concord backfill -c FILE FLOW` (design §10): one flow run as a one-off migration in the
//! foreground, through the engine's normal path, with a progress line on stderr and a summary at
//! the end. Resumable: the engine stores each page of the source's listing with its page token
//! (`runtime/backfill.rs`), so a killed backfill continues from there; `--restart` forgets it.
//!
//! Exit status: 0 when every captured record was delivered or dead-lettered (with its reason,
//! `concord dlq list`), 1 when some still wait for dependencies (parked) or on a runtime error,
//! 130 when interrupted (rerun to resume), 2 for a bad configuration or flow name.

use crate::wiring;
use concord_engine::runtime::backfill::BackfillState;
use concord_engine::{Engine, EngineError};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BackfillArgs {
    #[arg(short, long, env = "CONCORD_CONFIG")]
    config: std::path::PathBuf,
    /// The flow to run (any flow whose sources can list its records).
    flow: String,
    /// Forget where a previous backfill of this flow got to and read everything again.
    #[arg(long)]
    restart: bool,
}

/// How often the progress line is refreshed (on a terminal; every 5 s otherwise).
const TICK: Duration = Duration::from_millis(500);

pub async fn run(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    // Runs the engine's tasks: on PostgreSQL it takes the instance lock (held to the end).
    let (engine, _lock) = wiring::instance_engine(&args.config, false).await?;
    let flow = engine
        .backfill_flow(&args.flow)
        .map_err(|e| config_problem(&args.config, e))?
        .clone();
    if args.restart {
        engine.forget_backfill(&flow.name).await?;
        eprintln!(
            "backfill `{}`: cursor forgotten; reading everything again",
            flow.name
        );
    }
    let before = engine.backfill_state(&flow.name).await?;
    if before.finished() {
        eprintln!(
            "backfill `{}` already finished: every source was read to the end and nothing is left \
             to deliver ({} delivered, {} dead-lettered to {}); `--restart` runs it again",
            flow.name,
            before.done,
            before.dead,
            flow.to.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if before.sources.iter().any(|(_, c)| c.is_some()) {
        let at: Vec<String> = before
            .sources
            .iter()
            .map(|(s, c)| format!("{s} at {}", c.as_deref().unwrap_or("the start")))
            .collect();
        eprintln!("backfill `{}`: resuming ({})", flow.name, at.join(", "));
    }
    eprintln!(
        "backfill `{}`: {} {} → {}",
        flow.name,
        flow.from.join(", "),
        flow.kind,
        flow.to.join(", ")
    );
    let started = Instant::now();
    let mut tasks = engine.start_backfill(&flow.name).await?;
    let outcome = watch(&engine, &flow.name, started).await;
    engine.shutdown();
    while tasks.join_next().await.is_some() {}
    let state = match outcome {
        Watch::Finished(state) => state,
        Watch::Interrupted => {
            eprintln!(
                "\nbackfill `{}` interrupted; run the same command again to resume",
                flow.name
            );
            return Ok(ExitCode::from(130));
        }
        Watch::Failed(e) => return Err(e),
    };
    let s = engine.stats(None);
    let secs = started.elapsed().as_secs_f64();
    let settled = s.delivered + s.dead_lettered;
    let per_record = if settled > 0 {
        format!("{:.2}", s.write_calls as f64 / settled as f64)
    } else {
        "-".to_string()
    };
    eprintln!();
    println!("backfill `{}` finished in {secs:.1} s", flow.name);
    println!(
        "  this run: read {} records ({} unchanged/duplicates), delivered {}, dead-lettered {}, \
         skipped (destination already had them) {}",
        s.captured, s.duplicates, s.delivered, s.dead_lettered, s.skipped
    );
    println!(
        "  write calls to the destination: {} ({per_record} per record); api calls in all: {}",
        s.write_calls, s.api_calls
    );
    println!(
        "  all runs, at {}: delivered {}, dead-lettered {}, waiting for dependencies {}",
        flow.to.join(", "),
        state.done,
        state.dead,
        state.parked
    );
    if state.dead > before.dead {
        println!(
            "  dead letters have their reasons: concord dlq list -c {}",
            args.config.display()
        );
    }
    if state.parked > 0 {
        println!(
            "  {} item(s) still wait for dependencies: concord status -c {}",
            state.parked,
            args.config.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn config_problem(path: &Path, e: EngineError) -> anyhow::Error {
    match e {
        EngineError::UnknownFlow(_)
        | EngineError::Capability { .. }
        | EngineError::MissingConnector(_) => {
            wiring::ConfigProblem(format!("{}: {e}", path.display())).into()
        }
        other => other.into(),
    }
}

enum Watch {
    Finished(BackfillState),
    Interrupted,
    Failed(anyhow::Error),
}

/// Print progress until the backfill is finished or the process is interrupted.
async fn watch(engine: &Engine, flow: &str, started: Instant) -> Watch {
    let tty = std::io::stderr().is_terminal();
    let mut last_line = Instant::now();
    let interrupted = wiring::interrupted();
    tokio::pin!(interrupted);
    let failed = engine.failed();
    tokio::pin!(failed);
    loop {
        tokio::select! {
            _ = &mut interrupted => return Watch::Interrupted,
            f = &mut failed => {
                return Watch::Failed(anyhow::anyhow!(
                    "the engine stopped: task `{}` kept failing ({}); see the log",
                    f.task,
                    f.code()
                ))
            }
            _ = tokio::time::sleep(TICK) => {}
        }
        let state = match engine.backfill_state(flow).await {
            Ok(s) => s,
            Err(e) => return Watch::Failed(e.into()),
        };
        let s = engine.stats(None);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "[{:>5.0}s] read {:>7}  delivered {:>7}  dead {:>5}  skipped {:>6}  queued {:>6}  \
             {:>6.1} rec/s{}",
            secs,
            s.captured,
            s.delivered,
            s.dead_lettered,
            s.skipped,
            state.queued + state.journal_pending,
            (s.delivered + s.dead_lettered) as f64 / secs,
            if state.read_to_end() {
                "  (read to the end)"
            } else {
                ""
            }
        );
        if tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{line}");
            let _ = err.flush();
        } else if last_line.elapsed() >= Duration::from_secs(5) || state.finished() {
            eprintln!("{line}");
            last_line = Instant::now();
        }
        if state.finished() {
            return Watch::Finished(state);
        }
    }
}
