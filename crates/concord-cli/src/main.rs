//! The `concord` binary: the command-line edge of the product. Parses arguments, loads and
//! checks the configuration, wires store + connectors + engine + HTTP server, and maps errors to
//! exit codes (2 = bad configuration or usage, 1 = runtime failure). `anyhow` lives only here.

mod admin;
mod backfill;
mod demo;
mod dry_run;
mod orders;
mod reconcile;
mod sandbox;
mod showcase;
mod store_copy;
mod token;
mod try_endpoint;
mod wiring;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "concord",
    version,
    about = "Keeps an ERP and every sales channel in agreement"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the built-in demo: a sandbox ERP, two sandbox storefronts, live traffic and an outage.
    Demo(demo::DemoArgs),
    /// Run the sandbox ERP and storefronts on fixed ports, the stores checking out through the
    /// hub's stock pool like the demo's (for `run -c examples/sandbox.toml`).
    Sandbox(sandbox::SandboxArgs),
    /// Run Concord with a configuration file until interrupted (Ctrl-C / SIGTERM).
    Run {
        #[arg(short, long, env = "CONCORD_CONFIG")]
        config: PathBuf,
        /// Capture and plan against the real endpoints but write nothing to them; on stop,
        /// list every planned write. Uses its own store (`--store`, default the configured
        /// one's name with `.dry-run` before its extension), never the configured one.
        #[arg(long)]
        dry_run: bool,
        /// With `--dry-run`: the dry run's store file.
        #[arg(long, requires = "dry_run")]
        store: Option<PathBuf>,
        /// PostgreSQL store only: when another instance is active on the database, wait as its
        /// standby (nothing served, the lock tried every second) and take over when it stops
        /// or dies, instead of exiting.
        #[arg(long, conflicts_with = "dry_run")]
        standby: bool,
    },
    /// Check a configuration file (syntax, fields, flows, mappings, connector capabilities).
    Validate {
        #[arg(short, long, env = "CONCORD_CONFIG")]
        config: PathBuf,
    },
    /// Inspect and act on the dead-letter queue.
    Dlq {
        /// Global so that both `dlq -c FILE list` and `dlq list -c FILE` (as documented) work;
        /// clap forbids required global arguments, so its absence is reported in `main`.
        #[arg(short, long, env = "CONCORD_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: admin::DlqAction,
    },
    /// Run one flow as a one-off migration to completion, with progress; resumable.
    Backfill(backfill::BackfillArgs),
    /// Compare what each destination holds with what the hub says it should hold (drift);
    /// `--heal` plans one corrective write per drifted key (never a delete).
    Reconcile(reconcile::ReconcileArgs),
    /// Make access tokens: `token new --name N --role viewer|operator` (admin API) or
    /// `token new --name N --channel C` (storefront API key). Prints the token once.
    Token {
        #[command(subcommand)]
        action: token::TokenAction,
    },
    /// One order's history: lifecycle state, every event (refused ones with their reason),
    /// journal entries of the order and its shipments/invoices/payments/refunds, every
    /// delivery attempt, dead letters.
    Order {
        #[arg(short, long, env = "CONCORD_CONFIG")]
        config: PathBuf,
        /// The canonical order key, `channel/number` (e.g. `web1/1001`).
        key: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make one read (or, with `--write RECORD.json`, one write) against a real endpoint and
    /// print the requests sent, the answers and the canonical records produced: for debugging
    /// a configuration without running flows (nothing is journaled, no cursor moves).
    Try(try_endpoint::TryArgs),
    /// The configuration file's format: `config schema` prints its JSON Schema.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Act on a store as a whole: `store copy --from PATH.sqlite --to postgres://…` moves a
    /// stopped hub's SQLite store into a fresh PostgreSQL database, verified.
    Store {
        #[command(subcommand)]
        action: store_copy::StoreAction,
    },
    /// Show what is queued, parked, dead-lettered and how far each feed has got.
    Status {
        #[arg(short, long, env = "CONCORD_CONFIG")]
        config: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the JSON Schema of `concord.toml` (draft 07), for editors that complete and check
    /// TOML against a schema (taplo, VS Code's Even Better TOML); `docs/concord.schema.json` is
    /// this output.
    Schema,
}

/// Logs go to stderr; `CONCORD_LOG` (e.g. `info`, `concord_engine=debug`) overrides the
/// default level, which is `warn` (`error` for the demo, whose screen is its summary lines).
fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONCORD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(if matches!(cli.command, Command::Demo(_)) {
        "error"
    } else {
        "warn"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Sandbox(args) => sandbox::run(args).await,
            Command::Run {
                config,
                dry_run,
                store,
                standby,
            } => wiring::run(&config, dry_run.then_some(store), standby).await,
            Command::Validate { config } => wiring::validate(&config),
            Command::Dlq { config, action } => match config {
                Some(config) => admin::dlq(&config, action).await,
                None => Err(wiring::ConfigProblem(
                    "the following required argument was not provided: --config <CONFIG>".into(),
                )
                .into()),
            },
            Command::Status { config, json } => admin::status(&config, json).await,
            Command::Order { config, key, json } => orders::order(&config, &key, json).await,
            Command::Backfill(args) => backfill::run(args).await,
            Command::Reconcile(args) => reconcile::run(args).await,
            Command::Token { action } => token::run(action),
            Command::Store { action } => store_copy::run(action).await,
            Command::Try(args) => try_endpoint::run(args).await,
            Command::Config {
                action: ConfigAction::Schema,
            } => {
                print!("{}", concord_engine::config::schema::schema_text());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(wiring::ConfigProblem(msg)) = e.downcast_ref::<wiring::ConfigProblem>() {
                eprintln!("error: {msg}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
