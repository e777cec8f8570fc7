//! `concord demo`: the product doing its main job in one command, on the embedded default.
//!
//! It starts a sandbox ERP and two sandbox storefronts, writes a normal configuration file for
//! them into the demo's data directory, and runs the real engine on it with an embedded SQLite
//! store. Both stores sell from one stock pool (design §5): they check out through the hub's
//! `/v1/reservations`, concurrently, on the same SKUs, and a few hot SKUs have less stock than
//! demand, so the hub refuses some checkouts (409). Every second it prints one line; at the end
//! it checks every system against the others and exits 0 only if nothing was lost and nothing
//! oversold. Price lists flow from the ERP to both stores (with a contract list for one B2B
//! customer); the summary shows that customer's price from `/v1/prices`. One order at web1 is
//! driven through its whole lifecycle next to the traffic (`showcase.rs`: an edit before
//! shipment, two shipments with two tracking numbers, invoice, payment, a partial refund with a
//! return); the summary shows each step and the hub's states, and a step that does not happen
//! fails the run.
//!
//! This module runs the demo from start to exit code; its parts are `topology` (the sandboxes,
//! their catalogue and the hub's config), `traffic` (the load and the faults), `checks` (every
//! system against the others) and `summary` (what is printed).
//!
//! Must never reach into the engine's internals: it drives the sandboxes from outside and reads
//! the results from the systems themselves, as a user would.

mod checks;
mod summary;
mod topology;
mod traffic;

use crate::wiring;
use anyhow::Context;
use clap::Args;
use concord_sandbox::Faults;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use topology::{Systems, HOT_SKUS};
use traffic::Traffic;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Stop after this many seconds of traffic, check every system and exit (0 = nothing lost).
    /// Without it the demo runs until Ctrl-C.
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Keep the demo's files (config, SQLite store) here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Address of Concord's HTTP server (webhooks, /metrics).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// After the final check, keep the hub (dashboard, admin API) and the sandboxes running until
    /// Ctrl-C or SIGTERM, for exploring the result (the browser test uses it).
    #[arg(long)]
    pub keep_serving: bool,
    /// Number of SKUs in the sandbox catalogue.
    #[arg(long, default_value_t = 20)]
    pub skus: usize,
    /// Checkouts per second across both stores.
    #[arg(long, default_value_t = 8.0)]
    pub orders_per_sec: f64,
    /// ERP stock changes per second.
    #[arg(long, default_value_t = 20.0)]
    pub stock_changes_per_sec: f64,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::Builder::new().prefix("concord-demo-").tempdir()?;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let secret = format!("demo-{:016x}", fastrand::u64(..));
    let systems = Systems::start(addr, &secret, args.skus).await?;
    let config_path = systems.write_config(&dir, addr, &secret)?;
    let engine = wiring::engine(&config_path).await?;
    let running = wiring::start_on(engine.clone(), listener).await?;
    systems.print_banner(&dir, addr, &config_path);

    let systems = Arc::new(systems);
    let traffic = Arc::new(Traffic::default());
    let stop = Arc::new(AtomicBool::new(false));
    let skus: Vec<String> = (1..=args.skus).map(|i| format!("SKU-{i:04}")).collect();
    let total = args.seconds.map(Duration::from_secs);
    let driver = tokio::spawn(traffic::drive(
        systems.clone(),
        traffic.clone(),
        stop.clone(),
        skus.clone(),
        args.clone(),
        total,
        format!("http://{addr}"),
    ));

    // One order driven through its whole lifecycle next to the traffic (edit, split shipment,
    // invoice, payment, partial refund, return); its steps end up in the summary.
    let showcase = (args.skus >= HOT_SKUS + 3).then(|| {
        let (engine, sys) = (engine.clone(), systems.clone());
        let skus = [
            format!("SKU-{:04}", HOT_SKUS + 1),
            format!("SKU-{:04}", HOT_SKUS + 2),
            format!("SKU-{:04}", HOT_SKUS + 3),
        ];
        tokio::spawn(async move {
            let [a, b, c] = &skus;
            crate::showcase::run(&engine, &sys.erp, &sys.shops[0].1, [a, b, c]).await
        })
    });

    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => { println!("\ninterrupted"); break; }
        }
        summary::print_line(&engine, &systems, &traffic, started.elapsed()).await;
        if total.is_some_and(|t| started.elapsed() >= t) {
            break;
        }
    }
    stop.store(true, Ordering::Release);
    let _ = driver.await;
    let showcase = match showcase {
        Some(task) => Some(task.await.unwrap_or_else(|e| crate::showcase::Showcase {
            failed: Some(format!("the showcase task panicked: {e}")),
            ..Default::default()
        })),
        None => None,
    };
    // Whatever the traffic left behind: the store must be up and the throttle off to converge.
    let _ = systems.shops[1].1.set_down(false).await;
    systems.erp.set_faults(Faults::default());

    println!(
        "traffic stopped after {:.1} s; waiting for every system to agree (up to 60 s)…",
        started.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut report = checks::verify(&engine, &systems, &skus).await?;
    while !report.ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        report = checks::verify(&engine, &systems, &skus).await?;
    }
    let ok = report.ok() && showcase.as_ref().is_none_or(|s| s.failed.is_none());
    summary::print_final(
        &engine,
        &systems,
        &traffic,
        &report,
        showcase.as_ref(),
        started.elapsed(),
    )
    .await?;
    if args.keep_serving {
        println!(
            "keep-serving: the hub (dashboard http://{addr}/) and the sandboxes stay up until Ctrl-C or SIGTERM"
        );
        wait_for_stop_signal().await;
    }
    running.stop().await;
    systems.shutdown().await;
    if args.dir.is_none() {
        drop(tmp);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Ctrl-C, or SIGTERM where there is one.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
