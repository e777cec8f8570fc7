//! `concord sandbox`: run the built-in ERP and storefront emulators on fixed ports, as separate
//! systems, for `concord run -c examples/sandbox.toml`, dry runs of a config, or poking at the
//! sandbox HTTP APIs by hand. Must never start the engine: that is `concord run`'s job.

use anyhow::Context;
use clap::Args;
use concord_sandbox::erp::{ErpOptions, ErpSim};
use concord_sandbox::shop::{ShopOptions, ShopSim};
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Where the sandbox ERP listens.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub erp: SocketAddr,
    /// Where the first sandbox storefront (`web1`) listens.
    #[arg(long, default_value = "127.0.0.1:7002")]
    pub web1: SocketAddr,
    /// Where the second sandbox storefront (`web2`) listens.
    #[arg(long, default_value = "127.0.0.1:7003")]
    pub web2: SocketAddr,
    /// Concord's base URL: webhooks go to `<hub>/hooks/<endpoint>`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub hub: String,
    /// SKUs to seed in the ERP (SKU-0001…), with stock in WH1 and WH2.
    #[arg(long, default_value_t = 20)]
    pub skus: usize,
    /// Ship each accepted sales order after this many milliseconds (0 = never).
    #[arg(long, default_value_t = 2000)]
    pub auto_ship_ms: u64,
}

fn secret(var: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| {
        crate::wiring::ConfigProblem(format!(
            "environment variable {var} is not set: the sandbox signs its webhooks with it (set the same value Concord's config reads)"
        ))
        .into()
    })
}

pub async fn run(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let hook = |ep: &str| format!("{}/hooks/{ep}", args.hub.trim_end_matches('/'));
    let erp = ErpSim::start(ErpOptions {
        bind: args.erp,
        webhook_url: Some(hook("erp")),
        webhook_secret: Some(secret("CONCORD_ERP_WEBHOOK_SECRET")?),
        auto_ship_after: (args.auto_ship_ms > 0)
            .then(|| std::time::Duration::from_millis(args.auto_ship_ms)),
        ..ErpOptions::default()
    })
    .await
    .context("starting the sandbox ERP")?;
    erp.seed(args.skus, &["WH1", "WH2"], 30)?;
    let mut shops = Vec::new();
    for (name, bind, var) in [
        ("web1", args.web1, "CONCORD_WEB1_WEBHOOK_SECRET"),
        ("web2", args.web2, "CONCORD_WEB2_WEBHOOK_SECRET"),
    ] {
        let shop = ShopSim::start(ShopOptions {
            bind,
            name: name.to_string(),
            webhook_url: Some(hook(name)),
            webhook_secret: Some(secret(var)?),
            ..ShopOptions::default()
        })
        .await
        .with_context(|| format!("starting the sandbox storefront {name}"))?;
        shops.push(shop);
    }
    println!(
        "sandbox ERP    {}  (webhooks to {})",
        erp.base_url(),
        hook("erp")
    );
    for s in &shops {
        println!(
            "sandbox store  {}  (webhooks to {})",
            s.base_url(),
            hook(s.name())
        );
    }
    println!(
        "place an order:  curl -s -XPOST {}/api/checkout -H 'content-type: application/json' \\",
        shops[0].base_url()
    );
    println!("                   -d '{{\"email\":\"ann@example.com\",\"name\":\"Ann\",\"lines\":[{{\"sku\":\"SKU-0001\",\"quantity\":2}}]}}'");
    println!("change stock:    curl -s -XPUT {}/api/stock/SKU-0001/WH1 -H 'content-type: application/json' -d '{{\"sku\":\"SKU-0001\",\"location\":\"WH1\",\"on_hand\":50}}'", erp.base_url());
    // The order lifecycle: what the merchant, the customer and the warehouse do (control calls).
    let (shop, erp_url) = (shops[0].base_url(), erp.base_url());
    println!("edit an order:   curl -s -XPOST {shop}/_control/orders/ord_1/edit -d '{{\"lines\":[{{\"sku\":\"SKU-0001\",\"quantity\":3}}]}}'");
    println!("cancel it:       curl -s -XPOST {shop}/_control/orders/ord_1/cancel");
    println!("capture / refund: curl -s -XPOST {shop}/_control/orders/ord_1/capture; curl -s -XPOST {shop}/_control/orders/ord_1/refund -d '{{\"amount_minor\":500}}'");
    println!("ship part of SO-1: curl -s -XPOST {erp_url}/_control/sales-orders/SO-1/ship -d '{{\"lines\":[{{\"sku\":\"SKU-0001\",\"quantity\":1}}],\"carrier\":\"DHL\",\"tracking_number\":\"JD0146\"}}'");
    println!("invoice it:      curl -s -XPOST {erp_url}/_control/sales-orders/SO-1/invoice");
    println!("receive a return: curl -s -XPOST {erp_url}/_control/returns/RMA-1/receive");
    println!("Ctrl-C to stop");
    let _ = tokio::signal::ctrl_c().await;
    erp.shutdown().await;
    for s in &shops {
        s.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}
