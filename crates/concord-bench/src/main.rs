//! `concord-bench`: benchmarks that print a readable table and one JSON line per case (design
//! §11: goals are printed beside the figures, never asserted).
//!
//! Case `pipeline`: the durable push path from a sandbox ERP webhook to a sandbox storefront
//! (see [`pipeline`]). Build with `--release` for real figures.
//!
//! Case `reservations`: concurrent storefront reservations over HTTP on hot SKUs, checked for
//! oversell afterwards (see [`reservations`]).
//!
//! Case `prices`: `GET /v1/prices` lookups over HTTP with 100k SKUs and 1,000 customers'
//! price lists loaded (see [`prices`]).
//!
//! Case `http-job`: the webhook → REST job of `examples/http-inventory.toml` through the
//! generic `http` connector, with a native load generator and receiver (see [`http_job`]).
//!
//! Case `reconcile`: drift on a 50,000-SKU catalogue, 1 % drifted: time to a full report,
//! listing calls, heal time (see [`reconcile`]).
//!
//! Case `store`: the store alone, SQLite against PostgreSQL with 1 and N handles: concurrent
//! reservations on hot SKUs (oversell checked) and ingests (see [`store`]).
//!
//! With no arguments every case runs with its defaults.

mod harness;
mod http_job;
mod pipeline;
mod prices;
mod reconcile;
mod reservations;
mod store;

use clap::{Parser, Subcommand};
use pipeline::PipelineArgs;

#[derive(Parser)]
#[command(
    name = "concord-bench",
    about = "Concord benchmarks (build with --release)"
)]
struct Cli {
    #[command(subcommand)]
    case: Option<Case>,
}

#[derive(Subcommand)]
enum Case {
    /// Durable pipeline throughput and latency, sandbox ERP webhook → sandbox storefront.
    Pipeline(PipelineArgs),
    /// Concurrent reservations over HTTP on hot SKUs; verifies that nothing is oversold.
    Reservations(reservations::ReservationsArgs),
    /// Price lookups over HTTP (`/v1/prices`) with 100k SKUs and 1,000 customers' lists loaded.
    Prices(prices::PricesArgs),
    /// The webhook → REST job of examples/http-inventory.toml: signed webhooks in, PUTs out.
    HttpJob(http_job::HttpJobArgs),
    /// Drift reconciliation: 50,000 SKUs on the sandbox, 1 % drifted; report and heal times.
    Reconcile(reconcile::ReconcileArgs),
    /// The store alone: SQLite vs PostgreSQL (1 and N handles), reservations and ingests.
    Store(store::StoreArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.case {
        Some(Case::Pipeline(a)) => pipeline::run(a).await,
        Some(Case::Reservations(a)) => reservations::run(&a).await,
        Some(Case::Prices(a)) => prices::run(&a).await,
        Some(Case::HttpJob(a)) => http_job::run(&a).await,
        Some(Case::Reconcile(a)) => reconcile::run(&a).await,
        Some(Case::Store(a)) => store::run(&a).await,
        None => {
            pipeline::run(PipelineArgs::default()).await?;
            reservations::run(&reservations::ReservationsArgs::default()).await?;
            prices::run(&prices::PricesArgs::default()).await?;
            http_job::run(&http_job::HttpJobArgs::default()).await?;
            reconcile::run(&reconcile::ReconcileArgs::default()).await?;
            store::run(&store::StoreArgs::default()).await
        }
    }
}
